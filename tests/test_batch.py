"""Batch scoring: the API batch keeps order and reports item errors; the file scorer accounts for
every input row."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring import schemas
from serving.batch import score_file
from scoring.scorer import Scorer


@pytest.fixture(scope="module")
def scorer(pipeline_home) -> Scorer:
    return Scorer(pipeline_home)


@pytest.fixture(scope="module")
def people(pipeline_home):
    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    good = snap[(snap.entity_type == "member") & (snap.history_days >= 180)
                & (snap.transactions_365d >= 12)].entity_id.head(5).tolist()
    members = pd.read_parquet(pipeline_home.clean / "members.parquet")
    household = members[members.member_type == "household"].member_id.iloc[0]
    coop = snap[snap.entity_type == "cooperative"].entity_id.iloc[0]
    return good, household, coop


def _app(subject_id, amount=50_000_000, subject_type="member"):
    return {"subject_type": subject_type, "subject_id": subject_id,
            "application": {"amount_vnd": amount, "term_months": 12, "purpose": "inputs"}}


def test_batch_limits_are_in_the_schema():
    spec = schemas.BatchScoreRequest.model_json_schema()["properties"]["applications"]
    assert (spec["minItems"], spec["maxItems"]) == (1, 1000)
    with pytest.raises(ValueError):
        schemas.BatchScoreRequest(applications=[])
    with pytest.raises(ValueError):
        schemas.BatchScoreRequest(applications=[_app("TV0000001")] * 1001)


def test_batch_keeps_order_and_reports_item_errors(scorer, people):
    good, household, coop = people
    batch = schemas.BatchScoreRequest(applications=[
        _app(good[0]), _app("TV9999999"), _app(good[1]), _app(household, 300_000_001),
        _app(coop, 700_000_000, "cooperative"), _app(good[0])])
    response = scorer.score_batch(batch, "batch-0123456789abcdef")
    results = response.results
    assert len(results) == 6 and response.request_id == "batch-0123456789abcdef"
    assert [r.status for r in results] == ["scored", "rejected", "scored", "rejected", "scored", "scored"]
    assert (results[1].index, results[1].http_status, results[1].error) == (1, 404, "unknown_subject")
    assert "TV9999999" in results[1].message
    assert results[3].index == 3 and results[3].http_status == 422
    assert results[3].fields[0]["field"] == "application.amount_vnd"
    assert "Decree 156/2025" in results[3].message
    assert [results[i].subject_id for i in (0, 2, 4)] == [good[0], good[1], coop]
    assert results[0].request_id == "batch-0123456789abcdef-0"
    # each item is what a single call gives
    single = scorer.score(schemas.ScoreRequest(**_app(good[1])), "batch-0123456789abcdef-2")
    assert results[2].model_dump_json() == single.model_dump_json()
    assert results[5].pd == results[0].pd
    # and the whole response is valid against its own schema, item errors included
    body = response.model_dump(mode="json")
    assert schemas.BatchScoreResponse.model_validate(body).model_dump(mode="json") == body


def _write(frame: pd.DataFrame, path):
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


@pytest.mark.parametrize("suffix_in,suffix_out", [(".csv", ".parquet"), (".parquet", ".csv")])
def test_score_file_accounts_for_every_row(tmp_path, pipeline_home, scorer, people, suffix_in, suffix_out):
    good, household, coop = people
    rows = pd.DataFrame({
        "subject_type": ["member", "member", "member", "cooperative", "member", "member", "member"],
        "subject_id": [good[0], "TV9999999", household, coop, good[1], good[2], good[0]],
        "amount_vnd": [50_000_000, 50_000_000, 300_000_001, 900_000_000, 0, 20_000_000, 60_000_000],
        "term_months": [12, 12, 12, 24, 12, 500, 36],
        "purpose": ["inputs", "inputs", "inputs", "equipment", "inputs", "inputs", "other"],
        "as_of_date": ["", "", "", str(scorer.snapshot_date), "", "", ""],
    })
    src, dst = tmp_path / f"in{suffix_in}", tmp_path / f"out{suffix_out}"
    _write(rows, src)
    seen = []
    report = score_file(pipeline_home, src, dst, progress=seen.append, chunk_rows=3, scorer=scorer)
    out = pd.read_parquet(dst) if suffix_out == ".parquet" else pd.read_csv(dst)
    assert len(out) == len(rows) == report.rows
    assert out["row_number"].tolist() == list(range(1, 8))
    assert out["status"].tolist() == ["scored", "rejected", "rejected", "scored", "rejected",
                                      "rejected", "scored"]
    assert out.loc[1, "error"] == "unknown_subject" and "TV9999999" in out.loc[1, "message"]
    assert "Decree 156/2025" in out.loc[2, "message"]
    assert "amount_vnd" in out.loc[4, "message"] and "term_months" in out.loc[5, "message"]
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) == 3
    assert (report.scored, report.rejected) == (3, 4)
    # the file scorer gives what the API gives
    api = scorer.score(schemas.ScoreRequest(subject_type="member", subject_id=good[0], application={
        "amount_vnd": 60_000_000, "term_months": 36, "purpose": "other"}))
    assert out.loc[6, "pd"] == pytest.approx(api.pd, rel=1e-12)
    assert out.loc[6, "score"] == api.score and out.loc[6, "grade"] == api.grade
    assert out.loc[6, "reason_1_code"] == api.reasons[0].code
    assert out.loc[6, "reason_1_vi"] == api.reasons[0].text_vi
    assert out.loc[6, "model_name"] == "coopscore-member"


def test_missing_column_is_named(tmp_path, pipeline_home, scorer):
    src = tmp_path / "in.csv"
    pd.DataFrame({"subject_type": ["member"], "subject_id": ["TV0000001"],
                  "amount_vnd": [1]}).to_csv(src, index=False)
    with pytest.raises(ValueError, match="term_months, purpose"):
        score_file(pipeline_home, src, tmp_path / "out.parquet", scorer=scorer)
    assert not (tmp_path / "out.parquet").exists()


def test_missing_file_and_bad_extension_say_so(tmp_path, pipeline_home, scorer):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        score_file(pipeline_home, tmp_path / "nope.csv", tmp_path / "out.parquet", scorer=scorer)
    with pytest.raises(ValueError, match="unsupported input file type '.xlsx'"):
        score_file(pipeline_home, tmp_path / "in.xlsx", tmp_path / "out.parquet", scorer=scorer)
    with pytest.raises(ValueError, match="unsupported output file type '.json'"):
        score_file(pipeline_home, tmp_path / "in.csv", tmp_path / "out.json", scorer=scorer)


@pytest.mark.parametrize("subject", ["member", "cooperative"])
def test_table_treeshap_equals_lightgbm_pred_contrib(scorer, subject):
    """The offline scorer's TreeSHAP must be LightGBM's, missing values included."""
    from serving.batch import PathTreeShap

    plan = scorer.plans[subject]
    history = scorer.matrix[subject][:3000]
    rng = np.random.default_rng(1)
    n = len(history)
    x = plan.matrix(history, rng.integers(1, 900, n) * 1e6, rng.integers(1, 121, n).astype(float))
    x[rng.random(x.shape) < 0.05] = np.nan
    x[:50] = 0.0
    got = PathTreeShap(plan.model.booster).contributions(x)
    np.testing.assert_allclose(got, plan.model.booster.predict(x, pred_contrib=True), rtol=0, atol=1e-12)


def test_a_file_for_a_lender_passes_the_apis_consent_step_and_is_audited(pipeline_home, scorer, people,
                                                                        records, grant, tmp_path):
    """`coopscore score --for-lender`: a lender's file is a door like the API: consent per row (an
    unknown id refused like an unconsented one), one audit row per output row, before the output."""
    from serving.batch import ForLender

    good, household, _ = people
    records.add_bank("file-bank", "File bank", ["scores:batch"])
    grant("member", good[0], "file-bank")
    rows = [(good[0], 50_000_000), (good[1], 50_000_000), ("TV9999997", 50_000_000), (good[0], 10**13)]
    pd.DataFrame({"subject_type": "member", "subject_id": [r[0] for r in rows],
                  "amount_vnd": [r[1] for r in rows], "term_months": 12,
                  "purpose": "inputs"}).to_csv(tmp_path / "apps.csv", index=False)
    before = records.audit_count(bank_id="file-bank", endpoint="cli.score")
    score_file(pipeline_home, tmp_path / "apps.csv", tmp_path / "out.csv", scorer=scorer,
               for_lender=ForLender("file-bank", records, "operator:tests"))
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert out["status"].tolist() == ["scored", "rejected", "rejected", "rejected"]
    assert out["error"].tolist()[1:] == ["no_consent", "no_consent", "invalid_request"]
    unconsented, unknown = out["message"][1], out["message"][2]
    assert unconsented.replace(good[1], "X") == unknown.replace("TV9999997", "X")
    assert records.audit_count(bank_id="file-bank", endpoint="cli.score") == before + 4
    assert records.audit_count(bank_id="file-bank", endpoint="cli.score", outcome="scored") == 1
    assert records.verify_audit_chain().intact
