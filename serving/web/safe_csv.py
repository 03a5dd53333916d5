"""CSV that a spreadsheet opens as data, never as formulas (CSV injection).

Excel, LibreOffice and Google Sheets run a cell that starts with =, +, - or @ as a formula (and
tab or carriage return can hide such a start); `=HYPERLINK(...)` in an exported cell can send the
sheet's contents elsewhere. OWASP's advice: prefix such cells with a single quote, whatever the
column, so they read as text.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from datetime import date

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """The cell as text: empty for a missing value, ISO for a date, and a leading ' before any
    text that a spreadsheet would run (a negative number too: '-5 stays readable as text)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        value = value.date()
    text = value.isoformat() if isinstance(value, date) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(header: Sequence[str], rows: Iterable[Sequence]) -> bytes:
    """UTF-8 CSV with a BOM (Excel then reads Vietnamese correctly), every cell through safe_cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([safe_cell(h) for h in header])
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return out.getvalue().encode("utf-8-sig")
