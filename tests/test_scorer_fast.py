"""The fast scorer: on-demand features equal the SQL they replaced, the numpy path equals the
pandas reference path, and many-at-once equals one-by-one."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from features import engine
from scoring import schemas
from scoring.scorer import ApiError, Scorer, explain_matrix, top_reasons
from training.dataset import application_spine

# The catalogue's SQL for the application features before they became on-demand numpy
# (features/on_demand.py): the reference the numpy functions must reproduce.
REFERENCE_SQL = {
    "requested_amount_vnd": "requested_amount_vnd",
    "term_months": "term_months",
    "loan_to_revenue": "requested_amount_vnd * 1.0 / NULLIF(inflow_sum_365d, 0)",
    "instalment_to_net_inflow":
        "CASE WHEN inflow_sum_365d - outflow_sum_365d > 0 THEN "
        "(requested_amount_vnd * 0.01 / (1 - POWER(1.01, -term_months))) "
        "/ ((inflow_sum_365d - outflow_sum_365d) / 12.0) END",
}


# Two engines, one formula: DuckDB's POWER (libm) and numpy's ** (SIMD kernels chosen per CPU) may
# round the last bit differently (1.35e-15 relative seen on an Intel Xeon), so a cross-engine
# comparison allows 1e-12 relative; NaN must still sit exactly where SQL gave NULL.
CROSS_ENGINE_RTOL = 1e-12


def assert_equal_across_engines(got, ref, name: str) -> None:
    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{name}: NaN pattern")
    np.testing.assert_allclose(got, ref, rtol=CROSS_ENGINE_RTOL, atol=0, equal_nan=True, err_msg=name)


def _sql_reference(frame: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    con.register("h", frame)
    cols = ", ".join(f"CAST({sql} AS DOUBLE) AS {name}" for name, sql in REFERENCE_SQL.items())
    return con.execute(f"SELECT spine_id, {cols} FROM h ORDER BY spine_id").df()


@pytest.fixture(scope="module")
def scorer(pipeline_home) -> Scorer:
    return Scorer(pipeline_home)


@pytest.fixture(scope="module")
def snap(pipeline_home) -> pd.DataFrame:
    return pd.read_parquet(pipeline_home.features / "snapshot.parquet")


def _req(subject_id, amount=50_000_000, subject_type="member", term=12, **extra):
    return schemas.ScoreRequest(subject_type=subject_type, subject_id=subject_id,
                                application={"amount_vnd": amount, "term_months": term,
                                             "purpose": "working_capital"}, **extra)


def test_application_features_equal_the_sql_reference_on_the_training_set(pipeline_home):
    spine = application_spine(pipeline_home.clean, "member")
    con = engine.connect(pipeline_home.clean)
    history = engine.history_features(con, spine)
    got = engine.application_features(history, spine).set_index("spine_id")
    merged = history.merge(spine[["spine_id", "requested_amount_vnd", "term_months"]], on="spine_id")
    ref = _sql_reference(merged).set_index("spine_id")
    assert len(got) == len(spine) > 500
    for name in REFERENCE_SQL:  # NaN where SQL gave NULL, values within the cross-engine tolerance
        assert_equal_across_engines(got.loc[ref.index, name], ref[name], name)


def test_on_demand_edge_cases_equal_the_sql_reference():
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame({
        "spine_id": [f"s{i:05d}" for i in range(n)],
        "inflow_sum_365d": rng.uniform(-1e8, 5e9, n), "outflow_sum_365d": rng.uniform(0, 5e9, n),
        "requested_amount_vnd": rng.integers(1, 3_000_000_000, n),
        "term_months": rng.integers(1, 121, n)})
    frame.loc[:99, "inflow_sum_365d"] = 0.0  # NULLIF -> NaN
    frame.loc[100:199, "inflow_sum_365d"] = -2_000_000.0  # negative revenue
    frame.loc[200:299, "inflow_sum_365d"] = np.nan  # unknown
    frame.loc[300:399, "outflow_sum_365d"] = frame.loc[300:399, "inflow_sum_365d"]  # net exactly 0
    ref = _sql_reference(frame)
    got = engine.on_demand_features(
        {c: frame[c].to_numpy(float) for c in ("inflow_sum_365d", "outflow_sum_365d")},
        frame["requested_amount_vnd"].to_numpy(), frame["term_months"].to_numpy())
    for name in REFERENCE_SQL:
        assert_equal_across_engines(got[name], ref[name], name)
    assert np.isnan(got["loan_to_revenue"][:100]).all()
    assert np.isnan(got["instalment_to_net_inflow"][100:400]).all()


def _scorable(snap, subject, n):
    rows = snap[(snap.entity_type == subject) & (snap.history_days >= 180)
                & (snap.transactions_365d >= 12)]
    return rows.entity_id.head(n).tolist()


def test_explain_matrix_is_credit_model_explain(scorer, snap):
    model = scorer.models["member"].model
    ids = _scorable(snap, "member", 50)
    frame = snap[snap.entity_id.isin(ids)].assign(requested_amount_vnd=7e7, term_months=24.0)
    frame = engine.application_features(frame.drop(columns=["requested_amount_vnd", "term_months"],
                                                    errors="ignore"),
                                         frame[["spine_id", "requested_amount_vnd", "term_months"]])
    ref = model.explain(frame)
    got = explain_matrix(model, frame[model.features].to_numpy(float))
    # exact: both sides are LightGBM's pred_contrib on the same matrix and the same numpy sum
    np.testing.assert_array_equal(got.contributions, ref.contributions)
    np.testing.assert_array_equal(got.log_odds, ref.log_odds)
    assert got.base_value == ref.base_value


@pytest.mark.parametrize("subject", ["member", "cooperative"])
def test_fast_path_equals_the_pandas_reference(scorer, snap, subject):
    """Snapshot row -> engine.application_features -> CreditModel.explain -> top_reasons, the
    pre-numpy path, gives the same numbers as Scorer.score."""
    model = scorer.models[subject].model
    amount = 40_000_000 if subject == "member" else 600_000_000
    for subject_id in _scorable(snap, subject, 25):
        got = scorer.score(_req(subject_id, amount, subject_type=subject, term=18))
        history = snap[(snap.entity_type == subject) & (snap.entity_id == subject_id)]
        row = engine.application_features(history, pd.DataFrame({
            "spine_id": history.spine_id, "requested_amount_vnd": [amount], "term_months": [18]}))
        exp = model.explain(row)
        # exact: same on-demand numpy functions and the same LightGBM call on both sides
        assert got.explanation.log_odds == float(exp.log_odds[0])
        assert [c.contribution for c in got.explanation.contributions] == exp.contributions[0].tolist()
        values = row[model.features].iloc[0]
        reasons = top_reasons(model.features, exp.contributions[0], values)
        assert [r.model_dump() for r in got.reasons] == [r.model_dump() for r in reasons]
        total = got.explanation.base_value + sum(c.contribution for c in got.explanation.contributions)
        assert total == pytest.approx(got.explanation.log_odds, abs=1e-9)
        used = Scorer.features_used(got)
        assert list(used) == model.features
        assert used == {c.feature: c.value for c in got.explanation.contributions}
        assert "features_used" not in got.model_dump_json()


def test_constructed_json_equals_validated_json(scorer, snap):
    response = scorer.score(_req(_scorable(snap, "member", 1)[0]))
    validated = schemas.ScoreResponse.model_validate(response.model_dump())
    assert response.model_dump_json() == validated.model_dump_json()
    assert response.model_dump(mode="json") == validated.model_dump(mode="json")


def test_score_many_equals_score_one_by_one(scorer, snap, pipeline_home):
    members = pd.read_parquet(pipeline_home.clean / "members.parquet")
    good = _scorable(snap, "member", 6)
    coop = _scorable(snap, "cooperative", 2)
    thin = snap[(snap.entity_type == "member") & (snap.transactions_365d < 12)].entity_id.head(1).tolist()
    household = members[members.member_type == "household"].member_id.iloc[0]
    requests = ([_req(i, 30_000_000 + k * 1_000_000) for k, i in enumerate(good)]
                + [_req(c, 800_000_000, subject_type="cooperative") for c in coop]
                + [_req(t) for t in thin]
                + [_req("TV9999999"), _req(household, 300_000_001),
                   _req(good[0], as_of_date=scorer.snapshot_date.replace(year=scorer.snapshot_date.year + 1)),
                   _req(good[1], as_of_date=pd.Timestamp(scorer.snapshot_date).date().replace(day=1)),
                   _req(good[2])])  # the same subject twice in one call
    ids = [f"req-{i:04d}-abcdefghijkl" for i in range(len(requests))]
    many = scorer.score_many(requests, ids)
    assert len(many) == len(requests)
    for request, request_id, got in zip(requests, ids, many):
        try:
            one = scorer.score(request, request_id)
        except ApiError as exc:
            assert isinstance(got, ApiError)
            assert (got.status, got.error, got.message, got.fields) == \
                   (exc.status, exc.error, exc.message, exc.fields)
            continue
        assert got.model_dump_json() == one.model_dump_json()
    statuses = [r.status if isinstance(r, ApiError) else r.status for r in many]
    assert statuses.count(404) == 1 and statuses.count(422) == 2
    if thin:
        assert many[len(good) + len(coop)].status == "insufficient_history"
        assert many[len(good) + len(coop)].missing
    assert "after the latest data" in [m.message for m in many if isinstance(m, ApiError)][2]
