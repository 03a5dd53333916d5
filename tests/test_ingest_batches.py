"""Ingest in batches: the verdicts do not depend on the batch size.

The same dirty data ingested a few rows at a time and as whole tables must give the same accepted
and quarantined rows, rule by rule, with duplicates whose first occurrence lies in another batch.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from coopscore.synthetic import generate
from data_contracts.ingest import TABLE_ORDER, IngestError, ingest
from test_ingest import RECEIVED_AT, add_row, valid_export, write_export

WHOLE = 10**9  # larger than any table: each table is one batch, as ingest was before batches
SMALL_BATCH = 997  # a prime: batch boundaries fall everywhere in the tables


@pytest.fixture(scope="module")
def dirty_raw(tmp_path_factory) -> tuple[Path, dict]:
    raw = tmp_path_factory.mktemp("dirty") / "raw"
    summary = generate(raw, members=400, cooperatives=20, seed=5, dirty=True)
    return raw, summary.dirt


def ingest_into(out: Path, raw: Path, batch_rows: int):
    return ingest(raw, out / "clean", out / "quarantine", received_at=RECEIVED_AT.replace(year=2026),
                  batch_rows=batch_rows)


def test_dirty_data_gives_the_same_verdicts_in_small_batches_as_whole(tmp_path, dirty_raw):
    raw, dirt = dirty_raw
    whole = ingest_into(tmp_path / "whole", raw, WHOLE)
    batched = ingest_into(tmp_path / "batched", raw, SMALL_BATCH)

    assert [t.table for t in batched.tables] == [t.table for t in whole.tables]
    for w, b in zip(whole.tables, batched.tables):
        assert (b.input_rows, b.accepted, b.quarantined, b.reasons) == \
               (w.input_rows, w.accepted, w.quarantined, w.reasons), w.table
        assert b.reconciles
    transactions = batched.table("transactions")
    assert transactions.input_rows > 20 * SMALL_BATCH  # many batches
    assert transactions.quarantined > 0 and len(transactions.reasons) >= 5  # really dirty
    # every injected duplicate is found, though the copies sit at the end of the file
    assert transactions.reasons["duplicate_key"] == dirt["transactions"]["duplicate"]

    for table in TABLE_ORDER:  # the files too, row for row and reason for reason
        for kind in ("clean", "quarantine"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(tmp_path / "batched" / kind / f"{table}.parquet"),
                pd.read_parquet(tmp_path / "whole" / kind / f"{table}.parquet"), obj=f"{kind}/{table}")
    saved = json.loads((tmp_path / "batched" / "quarantine" / "ingest_report.json").read_text())
    assert saved["reconciles"] is True
    assert not list((tmp_path / "batched" / "quarantine").glob(".ingest-work-*"))  # work files gone


def test_duplicates_across_batch_boundaries_name_their_first_row(tmp_path, dirty_raw):
    raw, _ = dirty_raw
    ingest_into(tmp_path, raw, SMALL_BATCH)
    q = pd.read_parquet(tmp_path / "quarantine" / "transactions.parquet")
    dups = q[q["rule"] == "duplicate_key"]
    first = dups["reason"].str.extract(r"already appeared at source_row (\d+)")[0].astype(int)
    straddling = (dups["source_row"] // SMALL_BATCH) != (first // SMALL_BATCH)
    assert straddling.sum() > 100  # the first occurrence was in an earlier batch
    tx = pq.read_table(raw / "transactions.parquet", columns=["transaction_id"]).column(0).to_pylist()
    for row, first_row in zip(dups["source_row"].head(200), first.head(200)):
        assert tx[row] == tx[first_row] and first_row < row
        assert tx.index(tx[row]) == first_row  # the very first occurrence, not just an earlier one


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_hand_made_dirt_is_judged_alike_one_row_at_a_time(tmp_path, fmt):
    tables = valid_export()
    add_row(tables, "transactions")  # a copy of T1, three batches after it at batch size 1
    add_row(tables, "transactions", transaction_id="T2", amount_vnd=7)  # a duplicate with a new amount
    add_row(tables, "transactions", transaction_id="TX1", amount_vnd="abc")
    # A whole number beyond 2**53, written in full, beside a fraction: the fraction makes the
    # column floating point when both are read together; the whole number is still exact.
    add_row(tables, "transactions", transaction_id="TX2", amount_vnd="9007199254740993")
    add_row(tables, "transactions", transaction_id="TX3", amount_vnd="1500.5")
    add_row(tables, "repayments", days_past_due=3)  # composite key (loan_id, month) repeated
    add_row(tables, "loan_applications", application_id="HS00000009", requested_amount_vnd=900_000_000)
    raw = write_export(tmp_path / "raw", tables, fmt)
    whole = ingest(raw, tmp_path / "w" / "clean", tmp_path / "w" / "quarantine", received_at=RECEIVED_AT,
                   batch_rows=WHOLE)
    single = ingest(raw, tmp_path / "s" / "clean", tmp_path / "s" / "quarantine", received_at=RECEIVED_AT,
                    batch_rows=1)

    assert [(t.table, t.accepted, t.quarantined, t.reasons) for t in single.tables] == \
           [(t.table, t.accepted, t.quarantined, t.reasons) for t in whole.tables]
    for kind in ("clean", "quarantine"):
        for table in tables:
            pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s" / kind / f"{table}.parquet"),
                                          pd.read_parquet(tmp_path / "w" / kind / f"{table}.parquet"))
    tx = single.table("transactions")
    assert tx.reasons == {"above_maximum": 1, "duplicate_key": 2, "not_a_number": 1, "not_whole_number": 1}
    assert single.table("repayments").reasons == {"duplicate_key": 1}
    assert single.table("loan_applications").reasons == {"above_unsecured_limit": 1}
    q = pd.read_parquet(tmp_path / "s" / "quarantine" / "transactions.parquet").set_index("source_row")
    assert "transaction_id='T1' already appeared at source_row 0" in q.loc[4, "reason"]
    assert "transaction_id='T2' already appeared at source_row 1" in q.loc[5, "reason"]
    assert "amount_vnd=9007199254740993 is above the maximum" in q.loc[7, "reason"]


def test_the_batch_size_comes_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("COOPSCORE_INGEST_BATCH_ROWS", "2")
    tables = valid_export()
    raw = write_export(tmp_path / "raw", tables)
    calls: list[tuple[str, float]] = []
    ingest(raw, tmp_path / "clean", tmp_path / "quarantine", received_at=RECEIVED_AT,
           progress=lambda message, fraction: calls.append((message, fraction)))
    # 4 transactions in batches of 2: two batches, each reported with the rows done so far
    assert [m for m, _ in calls if m.startswith("ingesting transactions: ") and m.endswith(" rows")] == \
           ["ingesting transactions: 2 rows", "ingesting transactions: 4 rows"]
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_a_bad_setting_is_refused_with_its_name(tmp_path, monkeypatch):
    from settings import SettingsError

    monkeypatch.setenv("COOPSCORE_INGEST_BATCH_ROWS", "0")
    raw = write_export(tmp_path / "raw", valid_export())
    with pytest.raises(SettingsError, match="COOPSCORE_INGEST_BATCH_ROWS='0'"):
        ingest(raw, tmp_path / "clean", tmp_path / "quarantine", received_at=RECEIVED_AT)


def test_a_csv_broken_after_its_first_batch_leaves_no_half_written_table(tmp_path):
    tables = valid_export()
    raw = write_export(tmp_path / "raw", tables)
    with open(raw / "transactions.csv", "a", encoding="utf-8") as f:
        f.write("T9,member,TV0000001,2025-01-05T08:30:00,1\n")  # too few fields, on the last line
    with pytest.raises(IngestError, match=r"cannot read .*transactions.csv"):
        ingest(raw, tmp_path / "clean", tmp_path / "quarantine", received_at=RECEIVED_AT, batch_rows=1)
    assert not (tmp_path / "clean" / "transactions.parquet").exists()
    assert not list((tmp_path / "clean").glob("*.tmp")) and not list((tmp_path / "quarantine").glob("*.tmp"))
    assert (tmp_path / "clean" / "members.parquet").exists()  # tables before it were complete
