"""Issue 12 item 4: member type, sector, harvest season and recent-shock features, each checked on a
hand-made tiny data set whose answers are worked out by hand below, plus point in time."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts import vocabulary as v
from features import engine, snapshot
from features.catalogue import FEATURES_BY_NAME, feature_names
from features.reasons import REASONS

D = pd.Timestamp("2025-06-15")  # June: harvest in the north, next to July's in the Mekong delta
NEW = ("household_business", "harvest_season", "inflow_30d_vs_usual_month",
       "inflow_60d_vs_usual_month", "weeks_without_inflow_13w", "customers_change_90d")
M = 1_000_000

# TV1's inflows: (age in days before D, amount, customer). Buckets of 30 days 2..11 (days 61-360)
# hold 10, 10, 10, 10, nothing, 20, 20, 20, 20, 20 million: the usual month is their median with
# the empty bucket as 0, i.e. (10 + 20) / 2 = 15 million (20 if the empty month were skipped).
TV1_INFLOWS = [
    (3, 1 * M, "A"), (5, 3 * M, "B"), (20, 3 * M, "A"),  # last 30 days: 7 million
    (45, 12 * M, "C"),  # days 31-60: the last 60 days hold 19 million
    (75, 10 * M, None), (105, 10 * M, "D"), (135, 10 * M, "D"), (165, 10 * M, "E"),
    (225, 20 * M, None), (255, 20 * M, None), (285, 20 * M, None), (315, 20 * M, None),
    (345, 20 * M, None),
]


def _tx(entity_id, age, amount, customer, direction="inflow", category="sales", ts=None):
    return {"transaction_id": f"T{entity_id}{age}{direction}{category}", "entity_type": "member",
            "entity_id": entity_id, "ts": ts if ts is not None else D - pd.Timedelta(days=age)
            + pd.Timedelta(hours=12), "amount_vnd": amount, "direction": direction,
            "channel": "cash" if customer is None else "vietqr", "counterparty_hash": customer,
            "category": category}


def _write_world(path, extra_tx=()):
    """Two members of one cooperative, and the cooperative; only TV1 has transactions."""
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"cooperative_id": ["HTX1"], "province": ["Cần Thơ"], "sector": ["agriculture"],
                  "founding_date": [pd.Timestamp("2015-01-01")], "member_count": [10],
                  "legal_capital_vnd": [1_000_000_000]}).to_parquet(path / "cooperatives.parquet")
    pd.DataFrame({
        "member_id": ["TV1", "TV2", "TV3"], "cooperative_id": ["HTX1"] * 3,
        "province": ["Hà Nội", "Cần Thơ", "Hà Nội"],
        "member_type": ["household_business", "household", "household"],
        "business_sector": ["crop_farming", "aquaculture", "retail"],
        "join_date": [pd.Timestamp("2020-01-01")] * 3, "capital_contribution_vnd": [10 * M] * 3,
    }).to_parquet(path / "members.parquet")
    rows = [_tx("TV1", a, x, c) for a, x, c in TV1_INFLOWS]
    rows += [_tx("TV1", 400, 5 * M, None, direction="outflow", category="inputs"),  # history: 400 days
             _tx("TV1", 10, 50 * M, None, category="loan_disbursal")]  # borrowed: not an inflow
    pd.DataFrame(rows + list(extra_tx)).to_parquet(path / "transactions.parquet")
    pd.DataFrame({"invoice_id": pd.Series(dtype=str), "entity_type": pd.Series(dtype=str),
                  "entity_id": pd.Series(dtype=str), "issued_at": pd.Series(dtype="datetime64[ns]"),
                  "status": pd.Series(dtype=str)}).to_parquet(path / "e_invoices.parquet")
    pd.DataFrame({"loan_id": pd.Series(dtype=str), "entity_type": pd.Series(dtype=str),
                  "entity_id": pd.Series(dtype=str),
                  "disbursal_date": pd.Series(dtype="datetime64[ns]")}).to_parquet(path / "loans.parquet")
    pd.DataFrame({"loan_id": pd.Series(dtype=str), "month": pd.Series(dtype="datetime64[ns]"),
                  "days_past_due": pd.Series(dtype="int64")}).to_parquet(path / "repayments.parquet")
    return path


SPINE = pd.DataFrame({"spine_id": ["m1", "m2", "m3", "c1"],
                      "entity_type": ["member", "member", "member", "cooperative"],
                      "entity_id": ["TV1", "TV2", "TV3", "HTX1"], "as_of": [D] * 4})


def _features(path, spine=SPINE):
    return engine.history_features(engine.connect(path), spine).set_index("spine_id")


@pytest.fixture
def tiny(tmp_path):
    return _write_world(tmp_path / "clean")


def test_member_type_and_sector_indicators(tiny):
    f = _features(tiny)
    assert f.loc[["m1", "m2", "m3"], "household_business"].tolist() == [1.0, 0.0, 0.0]
    assert f.loc["m1", "sector_crop_farming"] == 1 and f.loc["m2", "sector_aquaculture"] == 1
    assert f.loc["m3", "sector_retail"] == 1
    sectors = [f"sector_{s}" for s in v.MEMBER_SECTORS]
    assert (f.loc[["m1", "m2", "m3"], sectors].sum(axis=1) == 1).all()  # exactly one sector each
    assert f.loc["c1", "coop_sector_agriculture"] == 1
    assert f.loc["c1", [f"coop_sector_{s}" for s in v.COOPERATIVE_SECTORS]].sum() == 1


def test_harvest_season_by_sector_region_and_month(tiny):
    f = _features(tiny)
    assert f.loc["m1", "harvest_season"] == 1.0  # crop farming, Hà Nội (north: June) in June
    assert f.loc["m2", "harvest_season"] == 0.35  # aquaculture, Cần Thơ (Mekong: July), June
    assert f.loc["m3", "harvest_season"] == 0.0  # retail does not follow the harvest
    assert f.loc["c1", "harvest_season"] == 0.35  # agricultural cooperative in Cần Thơ
    in_august = SPINE.assign(as_of=pd.Timestamp("2025-08-20"))  # Hà Nội: none; Mekong: shoulder
    g = _features(tiny, in_august)
    assert g.loc[["m1", "m2", "c1"], "harvest_season"].tolist() == [0.0, 0.35, 0.35]


def test_recent_shock_features_on_known_answers(tiny):
    f = _features(tiny)
    assert f.loc["m1", "inflow_30d_vs_usual_month"] == pytest.approx(7 / 15)
    assert f.loc["m1", "inflow_60d_vs_usual_month"] == pytest.approx(19 / 30)
    # inflows in weeks 0 (days 3 and 5), 2 (day 20), 6 (day 45) and 10 (day 75): 9 of 13 empty
    assert f.loc["m1", "weeks_without_inflow_13w"] == 9
    # customers A, B, C in the last 90 days; D, E in days 91-180: (3 - 2) / 2
    assert f.loc["m1", "customers_change_90d"] == pytest.approx(0.5)
    # no history: no usual month to compare with, no customers before, every week empty
    for sid in ("m2", "m3"):
        assert np.isnan(f.loc[sid, "inflow_30d_vs_usual_month"])
        assert np.isnan(f.loc[sid, "inflow_60d_vs_usual_month"])
        assert np.isnan(f.loc[sid, "customers_change_90d"])
        assert f.loc[sid, "weeks_without_inflow_13w"] == 13


def test_a_short_history_has_no_usual_month(tiny):
    """Fewer than three whole 30-day buckets in days 61-360: the ratio is unknown, not a guess."""
    early = SPINE.assign(as_of=D - pd.Timedelta(days=400 - 120))  # TV1 has 120 days
    f = _features(tiny, early)
    assert f.loc["m1", "history_days"] == 120  # buckets 2 and 3 only
    assert np.isnan(f.loc["m1", "inflow_30d_vs_usual_month"])
    # 150 days: buckets 2-4 hold 20, 20 and nothing, a usual month of 20 million (the median of
    # three, the empty one counted); the last 30 days hold one inflow of 20 million
    g = _features(tiny, SPINE.assign(as_of=D - pd.Timedelta(days=400 - 150)))
    assert g.loc["m1", "inflow_30d_vs_usual_month"] == 1.0


def test_data_on_or_after_the_as_of_date_changes_no_new_feature(tmp_path):
    before = _features(_write_world(tmp_path / "a"))
    late = [_tx("TV1", 0, 9 * M, "Z", ts=D), _tx("TV1", -1, 9 * M, "Y"),
            _tx("TV2", -30, 9 * M, "X"), _tx("TV1", -200, 9 * M, None)]
    after = _features(_write_world(tmp_path / "b", late))
    pd.testing.assert_frame_equal(before, after)
    # the same inflows one second before D are seen: the check above could not pass by accident
    seen = _features(_write_world(tmp_path / "c", [_tx("TV1", 0, 9 * M, "Z",
                                                       ts=D - pd.Timedelta(seconds=1))]))
    assert seen.loc["m1", "inflow_30d_vs_usual_month"] == pytest.approx(16 / 15)
    assert seen.loc["m1", "customers_change_90d"] == pytest.approx(1.0)


def test_the_snapshot_carries_the_new_columns(tiny, tmp_path):
    snapshot.build_snapshot(tiny, tmp_path / "features", as_of=D.date())
    snap = pd.read_parquet(tmp_path / "features" / snapshot.SNAPSHOT_FILE)
    for subject in ("member", "cooperative"):
        assert set(feature_names(subject)) - set(engine.APPLICATION_FEATURES) <= set(snap.columns)
    row = snap.set_index("entity_id").loc["TV1"]
    assert row["inflow_30d_vs_usual_month"] == pytest.approx(7 / 15)
    assert row["harvest_season"] == 1.0


def test_new_features_are_declared_with_texts_and_reasons():
    names = [*NEW, *(f"sector_{s}" for s in v.MEMBER_SECTORS),
             *(f"coop_sector_{s}" for s in v.COOPERATIVE_SECTORS)]
    for name in names:
        f = FEATURES_BY_NAME[name]
        assert f.vi and f.en and f.reason in REASONS and f.risk in (-1, 0, 1)
    assert "household_business" in feature_names("member")
    assert "household_business" not in feature_names("cooperative")  # cooperatives have no type


def test_the_harvest_calendar_is_the_generators():
    """The features read the season the synthetic generator writes: one calendar, not two."""
    from coopscore import synthetic

    weights = synthetic.harvest_weights()
    for i, region in enumerate(synthetic.REGIONS):
        np.testing.assert_allclose(weights[i], v.HARVEST_INTENSITY[region], err_msg=region)
    assert dict(synthetic.HARVEST_MONTHS) == v.HARVEST_MONTHS
    farming_coops = set(v.COOPERATIVE_SECTORS[:synthetic.CS["forestry"] + 1])
    assert farming_coops == v.HARVEST_COOPERATIVE_SECTORS
