"""Read a lender's table as it was exported: CSV (any of four delimiters) or Parquet.

Loan books arrive from core-banking exports and from Excel. The awkward cases are handled here
and nowhere else:

* the delimiter is sniffed among `,` `;` tab `|` (the one that splits the header and the first
  rows into the same number of fields, the most fields winning);
* a semicolon file may write numbers with a decimal comma and dots between thousands
  (`1.234,5`, `1234,5`, `12.500`: common in Vietnamese and European exports); a column where
  every number is written so is rewritten (`1234.5`, `12500`) so it reads as a number. A column
  with any number that cannot be read that way is left alone (`0.5`, `1.25` keep their point);
* in a comma file, numbers grouped with a thousands comma (`"1,234,567.5"`) are read likewise;
* UTF-8 with or without a byte-order mark; anything else is refused with advice to save as
  "CSV UTF-8" (guessing a code page would mangle Vietnamese names without a word);
* the columns rewritten and the delimiter are in `frame.attrs["reading"]`, for the lender to see;
* Excel workbooks are refused with the same advice, also when renamed `.csv` (their bytes start
  like a zip or an OLE file);
* column names are stripped of spaces and the BOM and NFC-normalised (Vietnamese diacritics kept:
  a name typed on a Mac and one typed on Windows are then the same name).

Cells are kept as text (stripped of surrounding spaces); `loan_book.roles` decides what a token
means. Parquet keeps its types. Missing-value tokens are defined here, at the bottom of the
package, because reading (decimal commas), labels and roles all need them.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pandas as pd

from loan_book.errors import TableError

MISSING_TOKENS = ("", "?", "NA", "N/A", "n/a", "na", "-", "--", "null", "NULL", "None", "NaN", "nan",
                  "#N/A")
# Matched case-insensitively after stripping spaces ("NONE", "Null", " ? ").
_MISSING_LOWER = frozenset(t.lower() for t in MISSING_TOKENS)

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_BYTES = 256 * 1024
_SAMPLE_ROWS = 200
_SAVE_AS_CSV = ('In Excel: File > Save As > "CSV UTF-8 (Comma delimited) (*.csv)", then give that '
                "file (or save the table as Parquet).")

_EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".tab", "")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_PARQUET_MAGIC = b"PAR1"

# 1.234.567,5 or 1234,5 or -0,25 or 12.500 (a decimal comma, dots grouping thousands; a group
# never starts with 0, so 0.125 is not read as 125).
_DECIMAL_COMMA = re.compile(r"^[+-]?(?:[1-9]\d{0,2}(?:\.\d{3})+|\d+)(?:,\d+)?$")
_COMMA_OR_GROUPS = re.compile(r",|\.\d{3}")
# 1,234,567.5 (thousands commas, a decimal point).
_THOUSANDS_COMMA = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")


def is_missing(values: pd.Series) -> pd.Series:
    """True where a cell is empty, NaN/None, or one of MISSING_TOKENS (case and spaces ignored)."""
    absent = values.isna()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        lowered = values.where(~absent, "").astype(str).str.strip().str.lower()
        return absent | lowered.isin(_MISSING_LOWER)
    return absent


def clean_name(name: object) -> str:
    """A column name as the lender meant it: no BOM, no surrounding spaces, NFC-normalised."""
    return unicodedata.normalize("NFC", str(name).replace("\ufeff", "").strip())


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet loan book; every cell of a CSV as text, Parquet with its own types.

    Raises TableError, with what to do, for a missing file, an Excel workbook (by suffix or by its
    bytes), a file that is not UTF-8, an empty or header-only table, rows with the wrong number of
    fields, and duplicate column names.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"No such file: {path}. Give the path to the loan book as a .csv or "
                         ".parquet file.")
    suffix = path.suffix.lower()
    if suffix in _EXCEL_SUFFIXES:
        raise TableError(f"{path.name} is an Excel/spreadsheet file, which is not read directly "
                         f"(formats, hidden sheets and dates typed as numbers go wrong). {_SAVE_AS_CSV}")
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head:
        raise TableError(f"{path.name} is empty (0 bytes). Export the loan book again: one header "
                         "row with the column names, then one row per loan.")
    if head.startswith(_ZIP_MAGIC) or head.startswith(_OLE_MAGIC):
        kind = "an Excel workbook (.xlsx)" if head.startswith(_ZIP_MAGIC) else "an old Excel workbook (.xls)"
        raise TableError(f"{path.name} is named {suffix or 'without a suffix'} but its content is "
                         f"{kind}, not a text CSV: renaming a workbook does not convert it. {_SAVE_AS_CSV}")
    if suffix in _PARQUET_SUFFIXES or head.startswith(_PARQUET_MAGIC):
        frame = _read_parquet(path)
    elif suffix in _TEXT_SUFFIXES:
        frame = _read_csv(path)
    else:
        raise TableError(f"{path.name}: a {suffix} file is not read. Save the table as CSV UTF-8 "
                         "(.csv) or Parquet (.parquet).")
    if frame.columns.empty:
        raise TableError(f"{path.name} has no columns. Export the loan book with a header row.")
    if len(frame) == 0:
        raise TableError(f"{path.name} has a header ({len(frame.columns)} columns) but no rows. "
                         "Export the loans themselves, one row per loan.")
    return frame


def _check_names(names: list[str], path: Path) -> list[str]:
    # An empty header cell (a trailing delimiter, an unlabelled index) gets a name by position.
    cleaned = [clean_name(n) or f"unnamed_{i + 1}" for i, n in enumerate(names)]
    repeated = sorted(n for n, k in Counter(cleaned).items() if k > 1)
    if repeated:
        raise TableError(f"{path.name} has duplicate column names: {', '.join(map(repr, repeated))}. "
                         "Every column needs its own name: rename the repeats and export again.")
    return cleaned


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # a broken or truncated file: say so plainly
        raise TableError(f"Could not read {path.name} as Parquet ({type(exc).__name__}: {exc}). "
                         "Write the file again, or export the table as CSV UTF-8.") from exc
    frame.columns = _check_names(list(frame.columns), path)
    frame = frame.reset_index(drop=True)
    frame.attrs["reading"] = {"format": "parquet"}
    return frame


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise TableError(f"{path.name} is UTF-16 text (Excel's \"Unicode Text\"), not UTF-8. "
                         f"{_SAVE_AS_CSV}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise TableError(f"{path.name} is not UTF-8 text (byte {exc.start}, line {line}): probably "
                         "saved as plain \"CSV\" in a Windows code page, which garbles Vietnamese "
                         f"letters. {_SAVE_AS_CSV}") from exc


def sniff_delimiter(text: str) -> str:
    """The delimiter among `,` `;` tab `|` that splits the header and the first rows into the same
    number of fields (at least two), the one giving the most fields winning; `,` when none does."""
    sample = text[:_SAMPLE_BYTES]
    if len(text) > _SAMPLE_BYTES and "\n" in sample:
        sample = sample[:sample.rindex("\n")]  # a cut row would look like a wrong field count
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        rows = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if r]
        if not rows:
            continue
        fields = len(rows[0])
        body = rows[1:_SAMPLE_ROWS]
        agree = sum(len(r) == fields for r in body)
        if fields > best_fields and (not body or agree >= 0.9 * len(body)):
            best, best_fields = delimiter, fields
    return best


def _read_csv(path: Path) -> pd.DataFrame:
    text = _decode(path)
    if not text.strip():
        raise TableError(f"{path.name} holds only blank lines. Export the loan book again: one "
                         "header row with the column names, then one row per loan.")
    delimiter = sniff_delimiter(text)
    try:
        # header=None: a row longer than the header is an error here, where pandas would otherwise
        # take the first column as the index or drop the extra field.
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=str,
                            keep_default_na=False, na_filter=False, skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        shown = {"\t": "tab"}.get(delimiter, delimiter)
        raise TableError(f"{path.name} could not be read as a table with {shown!r} between "
                         f"fields: {exc}. A row has more fields than the header, usually a value "
                         "containing the delimiter without quotes: quote such values or export "
                         "again as CSV UTF-8.") from exc
    names = _check_names([("" if pd.isna(n) else n) for n in frame.iloc[0]], path)
    frame = frame.iloc[1:].reset_index(drop=True)
    frame.columns = names
    for column in frame.columns:  # spaces around a cell are export noise ("Ha Noi " = "Ha Noi")
        frame[column] = frame[column].str.strip()
    rewritten: list[str] = []
    if delimiter == ";":
        rewritten = _decimal_commas(frame)
    elif delimiter == ",":
        rewritten = _thousands_commas(frame)
    frame.attrs["reading"] = {"format": "csv", "delimiter": delimiter, "numbers_rewritten": rewritten}
    return frame


def _rewrite_numbers(frame: pd.DataFrame, pattern: re.Pattern, marker: re.Pattern,
                     rewrite) -> list[str]:
    """Rewrite, in place, every column whose numbers all follow `pattern`; the columns rewritten."""
    done = []
    for column in frame.columns:
        values = frame[column]
        present = values[~is_missing(values)]
        if present.empty or not present.str.contains(marker).any():
            continue  # no comma anywhere: the column is whatever it looks like
        if present.str.match(pattern).all():
            frame[column] = values.where(is_missing(values), values.map(rewrite))
            done.append(column)
    return done


def _decimal_commas(frame: pd.DataFrame) -> list[str]:
    """In a semicolon file, columns of numbers written 1.234,5 become 1234.5."""
    return _rewrite_numbers(frame, _DECIMAL_COMMA, _COMMA_OR_GROUPS,
                            lambda v: v.replace(".", "").replace(",", "."))


def _thousands_commas(frame: pd.DataFrame) -> list[str]:
    """In a comma file, quoted columns of numbers written 1,234,567.5 become 1234567.5."""
    return _rewrite_numbers(frame, _THOUSANDS_COMMA, re.compile(","), lambda v: v.replace(",", ""))
