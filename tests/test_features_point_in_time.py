"""Point in time: a feature as of D uses only data strictly before D."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from features import engine
from features.catalogue import FEATURES, feature_names


def _spine(clean_dir, n=60):
    """The first n labelled applicants, all as of one date D. One date, because the cooperative
    features read other members' loans: data added at one row's as-of date would be legitimately
    in the past of a later row of the same cooperative."""
    apps = pd.read_parquet(clean_dir / "loan_applications.parquet")
    apps = apps[apps["default_12m"].notna()].head(n)
    apps = apps.rename(columns={"application_id": "spine_id", "application_date": "as_of"})
    return apps.assign(as_of=apps["as_of"].max())


def _append(path, rows: pd.DataFrame):
    old = pd.read_parquet(path)
    pd.concat([old, rows.astype(old.dtypes.to_dict())], ignore_index=True).to_parquet(path, index=False)


def _later_rows(clean_dir, spine, offset):
    """For each spine row, one transaction, e-invoice, loan and repayment at as_of + offset."""
    tx = pd.read_parquet(clean_dir / "transactions.parquet").head(1)
    inv = pd.read_parquet(clean_dir / "e_invoices.parquet").head(1)
    n = len(spine)
    when = spine["as_of"].to_numpy() + np.timedelta64(offset)
    txs = pd.DataFrame({
        "transaction_id": [f"LATE{i}" for i in range(n)], "entity_type": spine["entity_type"].values,
        "entity_id": spine["entity_id"].values, "ts": when, "amount_vnd": 9_000_000_000,
        "direction": "inflow", "channel": "cash", "counterparty_hash": None, "category": "sales"})
    invs = pd.DataFrame({
        "invoice_id": [f"LATEINV{i}" for i in range(n)], "entity_type": spine["entity_type"].values,
        "entity_id": spine["entity_id"].values, "issued_at": when, "status": "cancelled",
        "total_vnd": 1_000_000, "vat_rate_percent": 8, "buyer_tax_code_present": False})
    loans = pd.DataFrame({
        "loan_id": [f"LATELOAN{i}" for i in range(n)], "application_id": [f"X{i}" for i in range(n)],
        "entity_type": spine["entity_type"].values, "entity_id": spine["entity_id"].values,
        "disbursal_date": when, "principal_vnd": 10_000_000, "term_months": 12})
    reps = pd.DataFrame({"loan_id": loans["loan_id"], "month": when, "days_past_due": 400,
                         "amount_due_vnd": 1_000_000, "amount_paid_vnd": 0})
    assert set(txs.columns) == set(tx.columns) and set(invs.columns) == set(inv.columns)
    return {"transactions": txs[tx.columns], "e_invoices": invs[inv.columns], "loans": loans,
            "repayments": reps}


def _features_after_adding(clean_dir, tmp_path, spine, offset):
    copy = tmp_path / "clean"
    shutil.copytree(clean_dir, copy)
    for table, rows in _later_rows(clean_dir, spine, offset).items():
        _append(copy / f"{table}.parquet", rows)
    return engine.history_features(engine.connect(copy), spine)


def test_data_on_or_after_the_as_of_date_changes_no_feature(clean_dir, tmp_path):
    spine = _spine(clean_dir)
    before = engine.history_features(engine.connect(clean_dir), spine)
    for offset in (np.timedelta64(0, "s"), np.timedelta64(1, "D"), np.timedelta64(400, "D")):
        after = _features_after_adding(clean_dir, tmp_path / str(offset), spine, offset)
        pdt.assert_frame_equal(before, after)


def test_the_same_data_one_second_earlier_does_change_features(clean_dir, tmp_path):
    """The check above could pass by computing nothing; this proves the rows would be seen."""
    spine = _spine(clean_dir)
    before = engine.history_features(engine.connect(clean_dir), spine)
    after = _features_after_adding(clean_dir, tmp_path, spine, -np.timedelta64(1, "s"))
    assert (after["inflow_sum_30d"] > before["inflow_sum_30d"]).all()
    assert (after["worst_days_past_due"] == 400).all()
    # the recent-shock features see it too: an inflow in week 0 and in the last 30 days
    assert (after["weeks_without_inflow_13w"] <= before["weeks_without_inflow_13w"]).all()
    assert (after["weeks_without_inflow_13w"] < 13).all()
    usual = before["inflow_30d_vs_usual_month"].notna()
    assert usual.any()
    assert (after.loc[usual, "inflow_30d_vs_usual_month"]
            > before.loc[usual, "inflow_30d_vs_usual_month"]).all()


def test_every_declared_feature_is_computed_and_typed():
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names)), "a feature is declared twice"
    for f in FEATURES:
        assert f.risk in (-1, 0, 1) and f.vi and f.en


def test_protected_attributes_are_never_features():
    from data_contracts.contracts import PROTECTED_ATTRIBUTES

    for subject in ("member", "cooperative"):
        assert not PROTECTED_ATTRIBUTES & set(feature_names(subject))
    for f in FEATURES:
        for attr in PROTECTED_ATTRIBUTES:
            assert attr not in engine.history_sql()


def test_window_sums_match_a_plain_pandas_computation(clean_dir):
    """Cross-check the SQL against an independent computation for a few subjects."""
    spine = _spine(clean_dir, n=10)
    got = engine.history_features(engine.connect(clean_dir), spine).set_index("spine_id")
    tx = pd.read_parquet(clean_dir / "transactions.parquet")
    for row in spine.itertuples():
        mine = tx[(tx.entity_type == row.entity_type) & (tx.entity_id == row.entity_id)]
        start = row.as_of - pd.Timedelta(days=90)
        window = mine[(mine.ts < row.as_of) & (mine.ts >= start) & (mine.direction == "inflow")]
        assert got.loc[row.spine_id, "inflow_sum_90d"] == pytest.approx(window.amount_vnd.sum())
        assert got.loc[row.spine_id, "inflow_count_90d"] == len(window)
