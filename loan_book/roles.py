"""Every column's role, inferred with a reason the lender reads, and overridable.

Roles: `numeric` and `category` are features; `date` is the one column that orders the loans in
time (validation out of time; never a feature); `id` identifies a row or a borrower (never a
feature: a row number that follows export order predicts whatever the export was sorted by);
`target` is the label; `ignored` is anything else (one value only, empty, a second date).

Inference, column by column (the lender's overrides win and are marked `overridden`):

* numeric: every cell that is not a missing token (`MISSING_TOKENS`: empty, `?`, `NA`, `-`...)
  is a number, so one `?` does not turn a column into text; the tokens are counted in `missing`.
  Integers with leading zeros (`007`) are codes, not amounts: text;
* id: text that is distinct on >= 95% of its non-missing cells (a missing cell does not rescue it),
  or integers that are distinct on >= 95% of cells and monotone in row order (a row number), or
  integers or text whose name looks like an id (`id`, `*_id`, `ma_*`, `mã*`, `so_hop_dong`, `stt`,
  `cccd`...) and distinct on >= 50% of cells (a borrower id repeated over a few loans). An amount
  with many distinct values is not an id: German credit's `credit.amount` (~920 distinct integers in
  1,000 rows, in no order) stays numeric;
* date: > 95% of the non-missing cells are ISO dates (`2021-03-31`, optionally with a time), or a
  Parquet datetime column. The first date (or `--date`) orders the loans; any other date column
  is ignored. Dates written `31/03/2021` are ignored with advice to write them ISO (day first or
  month first cannot be told safely);
* one value on every row, or no value at all: ignored;
* anything else: category (its levels, sorted, are kept for scoring). In a category column the
  tokens `?`, `NA`, `none`... are kept as levels (German credit's `none` is a real answer); only
  empty cells are missing.

`prepare` turns the raw table into the feature matrix the models see; `check_leaks` refuses a
column that alone separates the classes (AUC > 0.98) unless the lender allows it.
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from loan_book.errors import LeakError, TableError
from loan_book.reading import MISSING_TOKENS, clean_name, is_missing

__all__ = ["ROLES", "MISSING_TOKENS", "ColumnRole", "RoleOverrides", "TableRoles", "infer_roles",
           "prepare", "dates_of", "check_leaks"]

ROLES = ("numeric", "category", "date", "id", "target", "ignored")

ID_SHARE = 0.95  # distinct share (of non-missing cells) that makes text or a row number an id
NAMED_ID_SHARE = 0.5  # distinct share enough for a column whose name says it is an id
DATE_SHARE = 0.95
LEAK_AUC = 0.98
LEAK_FOLDS = 5
MIN_CLASS_FOR_AUC = 10  # fewer rows of a class among a column's non-missing cells: no AUC from them

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_LOCAL_DATE = re.compile(r"^\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})$")
_LEADING_ZERO = re.compile(r"^[+-]?0\d")
# Name tokens (after folding diacritics, lower case, split on non-letters and camelCase).
_ID_TOKENS = {"id", "ids", "uuid", "guid", "stt", "cmnd", "cccd", "mst", "cif", "msisdn"}
_ID_NAMES = {"no", "#", "index", "idx", "row", "rownum", "row_number", "row_no", "so_thu_tu",
             "so_hop_dong", "so_hd", "contract_no", "contract_number", "loan_no", "loan_number",
             "account_no", "account_number", "so_tai_khoan", "so_tk", "unnamed_1", "unnamed: 0"}
# Which override flag sets which role (for the reason text and the roles file).
_FLAG_ROLE = {"id": "id", "date": "date", "category": "category", "numeric": "numeric",
              "ignore": "ignored"}
_FILE_ROLE = {"id": "id", "date": "date", "category": "category", "categorical": "category",
              "numeric": "numeric", "number": "numeric", "ignore": "ignore", "ignored": "ignore",
              "allow_leak": "allow_leak", "allow-leak": "allow_leak", "leak": "allow_leak"}


@dataclass(frozen=True)
class ColumnRole:
    """One column's role, why (a sentence a lender reads), how many cells were read as missing,
    and whether the lender set it."""

    column: str
    role: str
    reason: str
    missing: int = 0
    overridden: bool = False


def _names(values) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(clean_name(v) for v in values)


@dataclass(frozen=True)
class RoleOverrides:
    """The lender's word on column roles (`--id`, `--date`, `--category`, `--numeric`, `--ignore`,
    `--allow-leak`, or a roles file); each field is a tuple of column names."""

    id: tuple[str, ...] = ()
    date: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    allow_leak: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):  # lists from the CLI, names as `read_table` cleans them
            object.__setattr__(self, f.name, _names(getattr(self, f.name)))

    @classmethod
    def from_file(cls, path: Path) -> "RoleOverrides":
        """Read a roles file: CSV rows `column,role` (a header row `column,role` is optional) or
        JSON `{column: role}` (a role may be a list, e.g. ["numeric", "allow_leak"]). Roles: id,
        date, category, numeric, ignore, allow_leak."""
        path = Path(path)
        if not path.is_file():
            raise TableError(f"No such roles file: {path}. Give a CSV with rows column,role or a "
                             "JSON object {column: role}.")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TableError(f"The roles file {path.name} is not UTF-8 text: save it as CSV UTF-8.") from exc
        pairs: list[tuple[str, str]] = []
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TableError(f"The roles file {path.name} is not valid JSON ({exc}). Write it as "
                                 '{"column": "role", ...}.') from exc
            if not isinstance(data, dict):
                raise TableError(f"The roles file {path.name} must be a JSON object "
                                 '{"column": "role", ...}.')
            for column, role in data.items():
                for r in ([role] if isinstance(role, str) else role):
                    pairs.append((column, str(r)))
        else:
            for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != 2:
                    raise TableError(f"Line {number} of the roles file {path.name} has {len(row)} "
                                     "fields; each line is column,role.")
                if number == 1 and [c.strip().lower() for c in row] == ["column", "role"]:
                    continue
                pairs.append((row[0], row[1]))
        chosen: dict[str, list[str]] = {k: [] for k in ("id", "date", "category", "numeric", "ignore",
                                                         "allow_leak")}
        for column, role in pairs:
            kind = _FILE_ROLE.get(role.strip().lower())
            if kind is None:
                raise TableError(f"The roles file {path.name} gives column {column!r} the role "
                                 f"{role!r}; the roles are id, date, category, numeric, ignore and "
                                 "allow_leak (the target is given with --target).")
            chosen[kind].append(column)
        return cls(**chosen)

    def merge(self, other: "RoleOverrides") -> "RoleOverrides":
        """Both sets of overrides (e.g. the roles file and the command line), in that order."""
        return RoleOverrides(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                                for f in fields(self)})

    def role_of(self) -> dict[str, str]:
        """column -> role for every column given a role (allow_leak is not a role)."""
        out = {}
        for flag, role in _FLAG_ROLE.items():
            for column in getattr(self, flag):
                out.setdefault(column, role)
        return out


@dataclass
class TableRoles:
    """The roles of a table's columns, the category levels seen in training, and warnings.

    `allow_leak` holds the columns the lender allowed with `--allow-leak` (read by `check_leaks`).
    """

    target: str
    roles: list[ColumnRole]
    categories: dict[str, list[str]]
    warnings: list[str]
    allow_leak: tuple[str, ...] = ()

    def _with(self, role: str) -> list[str]:
        return [r.column for r in self.roles if r.role == role]

    @property
    def numeric(self) -> list[str]:
        """The numeric feature columns, in table order."""
        return self._with("numeric")

    @property
    def category(self) -> list[str]:
        """The category feature columns, in table order."""
        return self._with("category")

    @property
    def features(self) -> list[str]:
        """numeric + category, in table order (never id, date, target or ignored)."""
        return [r.column for r in self.roles if r.role in ("numeric", "category")]

    @property
    def date(self) -> str | None:
        """The one date column ordering the loans in time (not a feature), or None."""
        dates = self._with("date")
        return dates[0] if dates else None

    def role(self, column: str) -> ColumnRole:
        """The ColumnRole of one column."""
        for r in self.roles:
            if r.column == column:
                return r
        raise KeyError(column)

    def table(self) -> pd.DataFrame:
        """column, role, reason, missing: one row per column, what the CLI prints."""
        return pd.DataFrame([{"column": r.column, "role": r.role, "reason": r.reason,
                              "missing": r.missing} for r in self.roles],
                            columns=["column", "role", "reason", "missing"])

    def to_dict(self) -> dict:
        """JSON-safe (logged to MLflow as roles.json)."""
        return {"target": self.target, "roles": [asdict(r) for r in self.roles],
                "categories": {k: list(v) for k, v in self.categories.items()},
                "warnings": list(self.warnings), "allow_leak": list(self.allow_leak)}

    @classmethod
    def from_dict(cls, d: dict) -> "TableRoles":
        """The inverse of `to_dict`."""
        return cls(target=d["target"], roles=[ColumnRole(**r) for r in d["roles"]],
                   categories={k: list(v) for k, v in d["categories"].items()},
                   warnings=list(d.get("warnings", [])), allow_leak=tuple(d.get("allow_leak", ())))


# --- reading cells -------------------------------------------------------------------------------

def _fold(name: str) -> str:
    """Lower case without diacritics, đ as d: 'Mã KH' -> 'ma kh'."""
    text = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def looks_like_id(name: str) -> bool:
    """Whether a column name says it identifies a row, a loan or a borrower."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))  # loanId -> loan Id
    folded = _fold(spaced).strip()
    tokens = [t for t in re.split(r"[^0-9a-z#]+", folded) if t]
    joined = "_".join(tokens)
    if not tokens:
        return False
    return (bool(_ID_TOKENS & set(tokens)) or joined in _ID_NAMES or folded in _ID_NAMES
            or tokens[0] == "ma" or joined.startswith(("so_hop_dong", "so_hd_")))


def _text(values: pd.Series) -> pd.Series:
    """Cells as stripped strings (None where empty/NaN); integral floats written as integers."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: None if pd.isna(v) else str(bool(v)))
    if pd.api.types.is_numeric_dtype(values):
        def one(v):
            if pd.isna(v):
                return None
            v = v.item() if isinstance(v, np.generic) else v
            return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        return values.map(one).astype(object)
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.map(lambda v: None if pd.isna(v) else v.isoformat()).astype(object)
    absent = values.isna()
    out = values.where(~absent, "").astype(str).str.strip().astype(object)
    return out.where(~absent & (out != ""), None)


def _numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(float values, missing mask, not-a-number mask): tokens are missing, other text is 'bad'."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = pd.to_numeric(values.astype("float64"), errors="coerce")
        missing = numbers.isna()
        return numbers, missing, pd.Series(False, index=values.index)
    missing = is_missing(values)
    text = values.where(~missing, "").astype(str).str.strip().astype(object).where(~missing, None)
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = ~missing & numbers.isna()
    return numbers, missing, bad


def _parse_dates(values: pd.Series) -> pd.Series:
    """Datetimes (tz-naive, UTC if an offset was given); NaT where a cell is not an ISO date."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            return values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values
    text = _text(values)
    iso = text.where(text.notna() & text.fillna("").str.match(_ISO_DATE), None)
    parsed = pd.to_datetime(iso, errors="coerce", format="ISO8601", utc=True)
    return parsed.dt.tz_localize(None)


def _count_tokens(values: pd.Series, mask: pd.Series) -> str:
    """"'?' x1, 'NA' x2" for the cells under `mask`."""
    counts = _text(values[mask]).fillna("").value_counts()
    shown = ", ".join(f"{'empty' if k == '' else repr(k)} x{n:,}" for k, n in counts.head(4).items())
    return shown + (", ..." if len(counts) > 4 else "")


# --- inference -------------------------------------------------------------------------------------

def _infer(name: str, values: pd.Series) -> ColumnRole:
    rows = len(values)
    if pd.api.types.is_datetime64_any_dtype(values):
        missing = int(values.isna().sum())
        if missing == rows:
            return ColumnRole(name, "ignored", "empty: no value on any row", missing)
        return ColumnRole(name, "date", "a datetime column" + _missing_note(missing), missing)
    numbers, missing, bad = _numbers(values)
    n_missing, present = int(missing.sum()), int((~missing).sum())
    if present == 0:
        return ColumnRole(name, "ignored", "empty: no value on any row", n_missing)
    text = _text(values)
    if not bad.any():
        known = numbers[~missing]
        distinct = int(known.nunique())
        if distinct == 1:
            return ColumnRole(name, "ignored", f"one value ({_fmt(known.iloc[0])}) on every row"
                              + _missing_note(n_missing, "that has one"), n_missing)
        integral = bool(np.all(np.isfinite(known)) and np.all(known == np.round(known)))
        coded = (not pd.api.types.is_numeric_dtype(values)
                 and text[~missing].str.match(_LEADING_ZERO).any())
        if not coded:
            share = distinct / present
            if integral and share >= ID_SHARE and (known.is_monotonic_increasing
                                                   or known.is_monotonic_decreasing):
                return ColumnRole(name, "id", f"integers in row order, distinct on {share:.0%} of "
                                  "rows: a row number", n_missing)
            if integral and share >= NAMED_ID_SHARE and looks_like_id(name):
                return ColumnRole(name, "id", f"named like an id, {distinct:,} distinct integers "
                                  f"in {present:,} rows", n_missing)
            note = (f"; {n_missing:,} cell(s) read as missing: {_count_tokens(values, missing)}"
                    if n_missing else "")
            return ColumnRole(name, "numeric", f"numbers, {distinct:,} distinct{note}", n_missing)
    if bad.any() and int(bad.sum()) <= (1 - ID_SHARE) * present:
        # Numbers but for a few odd cells ('n.a.', '1O0'): neither an amount nor a category with a
        # level per number. Not used until the lender says what the odd cells are.
        return ColumnRole(name, "ignored", f"numbers except {int(bad.sum()):,} cell(s) "
                          f"({_count_tokens(values, bad)}): not used; pass --numeric {name} to read "
                          f"those cells as missing (or --category {name}), or correct them", n_missing)
    # Text. Tokens ("?", "NA") count as missing for deciding date and id, but stay category levels.
    tokens = is_missing(values)
    known_text = text[~tokens]
    n_known = len(known_text)
    iso = known_text.str.match(_ISO_DATE)
    if iso.mean() > DATE_SHARE:
        parsed = int(_parse_dates(values).notna().sum())
        if parsed > DATE_SHARE * n_known:
            unread = rows - parsed  # missing, or not a date: both missing for the time order
            return ColumnRole(name, "date", f"ISO dates on {parsed:,} of {rows:,} rows"
                              + _missing_note(unread), unread)
    if known_text.str.match(_LOCAL_DATE).mean() > DATE_SHARE:
        return ColumnRole(name, "ignored", "dates written like 31/03/2021 (day or month first cannot "
                          "be told safely): not used; write them as ISO yyyy-mm-dd (or pass --date "
                          "after converting) to order the loans in time", int(tokens.sum()))
    levels = int(known_text.nunique())
    empty = int(text.isna().sum())
    if int(text.nunique()) == 1:
        return ColumnRole(name, "ignored", f"one value ({text.dropna().iloc[0]!r}) on every row"
                          + _missing_note(empty, "that has one"), empty)
    share = levels / n_known if n_known else 0.0
    if share >= ID_SHARE:
        return ColumnRole(name, "id", f"text distinct on {levels:,} of {n_known:,} rows that have a "
                          "value: identifies the row" + _missing_note(rows - n_known), int(tokens.sum()))
    if share >= NAMED_ID_SHARE and looks_like_id(name):
        return ColumnRole(name, "id", f"named like an id, {levels:,} distinct values in "
                          f"{n_known:,} rows", int(tokens.sum()))
    why = "text" if bad.any() or not _coded_numbers(values, text) else "codes with leading zeros"
    return ColumnRole(name, "category", f"{why}, {int(text.nunique()):,} levels"
                      + _missing_note(empty), empty)


def _coded_numbers(values: pd.Series, text: pd.Series) -> bool:
    """Whether a text column is integers written with leading zeros (codes such as '007')."""
    known = text.dropna()
    return (not pd.api.types.is_numeric_dtype(values) and bool(len(known))
            and known.str.match(r"^[+-]?\d+$").all() and known.str.match(_LEADING_ZERO).any())


def _fmt(value: object) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _missing_note(n: int, where: str = "") -> str:
    if not n:
        return ""
    return f" {where}; {n:,} missing" if where else f"; {n:,} missing"


def _check_overrides(frame: pd.DataFrame, target: str, overrides: RoleOverrides) -> dict[str, str]:
    columns = [str(c) for c in frame.columns]
    named = {f.name: getattr(overrides, f.name) for f in fields(overrides)}
    unknown = sorted({c for cols in named.values() for c in cols if c not in columns})
    if unknown:
        hints = []
        for c in unknown:
            close = difflib.get_close_matches(c, columns, n=1)
            if close:
                hints.append(f"{c!r} -> {close[0]!r}?")
        raise TableError(f"The overrides name column(s) the table does not have: "
                         f"{', '.join(map(repr, unknown))}"
                         + (f" (did you mean {'; '.join(hints)})" if hints else "")
                         + f". The columns are: {', '.join(map(repr, columns))}.")
    on_target = sorted(f for f, cols in named.items() if target in cols and f != "allow_leak")
    if on_target:
        raise TableError(f"{target!r} is the target; it cannot also be given "
                         f"{', '.join('--' + f for f in on_target)}. Remove that option or choose "
                         "another --target.")
    given: dict[str, list[str]] = {}
    for flag in _FLAG_ROLE:
        for c in getattr(overrides, flag):
            given.setdefault(c, []).append(flag)
    clashes = {c: flags for c, flags in given.items() if len(set(flags)) > 1}
    if clashes:
        raise TableError("A column was given two roles: " + "; ".join(
            f"{c!r} ({', '.join('--' + f for f in flags)})" for c, flags in clashes.items())
            + ". Keep one role per column.")
    return overrides.role_of()


def _overridden(name: str, values: pd.Series, role: str, flag: str) -> ColumnRole:
    said = f"set by the lender (--{flag})"
    if role == "numeric":
        numbers, missing, bad = _numbers(values)
        n = int((missing | bad).sum())
        note = ""
        if bad.any():
            note = (f"; {int(bad.sum()):,} cell(s) that are not numbers read as missing: "
                    f"{_count_tokens(values, bad)}")
        if bad.sum() == len(values) - int(missing.sum()):
            raise TableError(f"--numeric {name}: no cell of {name!r} is a number "
                             f"(e.g. {_count_tokens(values, bad)}). Give it another role.")
        return ColumnRole(name, "numeric", said + note + _missing_note(int(missing.sum())), n, True)
    if role == "date":
        parsed = _parse_dates(values)
        if parsed.notna().sum() == 0:
            raise TableError(f"--date {name}: no cell of {name!r} is an ISO date (yyyy-mm-dd). "
                             "Write the dates as 2021-03-31 (optionally with a time) and give the "
                             "table again.")
        unread = int(parsed.isna().sum())
        return ColumnRole(name, "date", said + _missing_note(unread), unread, True)
    if role == "category":
        empty = int(_text(values).isna().sum())
        return ColumnRole(name, "category", said + _missing_note(empty), empty, True)
    return ColumnRole(name, role, said, int(is_missing(_text(values).fillna("")).sum()), True)


def infer_roles(frame: pd.DataFrame, target: str,
                overrides: RoleOverrides = RoleOverrides()) -> TableRoles:
    """Every column's role with its reason, the overrides applied, category levels and warnings.

    Raises TableError for a missing target column, an override naming a column the table does not
    have (the columns listed), an override on the target, a column given two roles, and a table
    left with no feature.
    """
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise TableError(f"No target column {target!r}. The columns are: "
                         f"{', '.join(map(repr, columns))}.")
    set_by = _check_overrides(frame, target, overrides)
    flag_of = {c: f for f in _FLAG_ROLE for c in getattr(overrides, f)}
    roles: list[ColumnRole] = []
    for name, column in zip(columns, frame.columns):
        values = frame[column]
        if name == target:
            roles.append(ColumnRole(name, "target", "the outcome to predict (--target)",
                                    int(is_missing(values).sum())))
        elif name in set_by:
            roles.append(_overridden(name, values, set_by[name], flag_of[name]))
        else:
            roles.append(_infer(name, values))
    roles = _one_date(roles, overrides)
    categories = {r.column: sorted(set(_text(frame[r.column]).dropna()))
                  for r in roles if r.role == "category"}
    result = TableRoles(target=target, roles=roles, categories=categories,
                        warnings=_warnings(frame, roles, categories), allow_leak=overrides.allow_leak)
    if not result.features:
        raise TableError("No column can be used as a feature: "
                         + "; ".join(f"{r.column!r} {r.role} ({r.reason})" for r in roles)
                         + ". Add columns describing the borrower and the loan, or override a role "
                         "(--numeric, --category).")
    return result


def _one_date(roles: list[ColumnRole], overrides: RoleOverrides) -> list[ColumnRole]:
    """Keep one date column (the lender's --date, else the first); the others are ignored."""
    dates = [r.column for r in roles if r.role == "date"]
    if len(dates) <= 1:
        return roles
    keep = overrides.date[0] if overrides.date else dates[0]
    out = []
    for r in roles:
        if r.role == "date" and r.column != keep:
            r = ColumnRole(r.column, "ignored", f"another date column: the time order uses {keep!r}, "
                           "and dates are not features", r.missing, r.overridden)
        out.append(r)
    return out


def _warnings(frame: pd.DataFrame, roles: list[ColumnRole], categories: dict) -> list[str]:
    warnings = []
    duplicated = int(frame.duplicated(keep="first").sum())
    if duplicated:
        warnings.append(f"{duplicated:,} row(s) repeat another row exactly (every column equal): "
                        "kept; if the export repeated them, remove the repeats and train again.")
    rows = len(frame)
    for r in roles:
        if r.role == "ignored" and r.reason.startswith("numbers except"):
            warnings.append(f"{r.column!r} is not used: {r.reason}.")
        if r.role == "id":
            text = _text(frame[r.column])
            repeats = int(text.dropna().duplicated().sum())
            if repeats and not r.reason.startswith("named like an id"):
                warnings.append(f"The id column {r.column!r} repeats {repeats:,} value(s): check "
                                "for loans exported twice.")
        if r.role == "category" and len(categories[r.column]) > max(100, rows // 2):
            warnings.append(f"{r.column!r} has {len(categories[r.column]):,} levels in {rows:,} rows: "
                            "most levels are too rare to learn from; group them, or --ignore it if "
                            "it is a name or free text.")
    return warnings


# --- the feature matrix ----------------------------------------------------------------------------

def prepare(frame: pd.DataFrame, roles: TableRoles) -> tuple[pd.DataFrame, dict[str, int]]:
    """The feature matrix (roles.features, in order): numeric columns float64 (tokens -> NaN),
    category columns pandas `category` with the training levels.

    The dict counts, per column, the cells that could not be read as in training and became
    missing: a category level not seen in training, or text in a numeric column. The caller
    reports them (never silent). A feature column absent from `frame` is a TableError.
    """
    absent = [c for c in roles.features if c not in frame.columns]
    if absent:
        raise TableError(f"The table lacks the column(s) {', '.join(map(repr, absent))} that the "
                         f"model uses. The model needs: {', '.join(map(repr, roles.features))}.")
    out: dict[str, pd.Series] = {}
    unseen: dict[str, int] = {}
    for column in roles.features:
        values = frame[column]
        if roles.role(column).role == "numeric":
            numbers, _, bad = _numbers(values)
            out[column] = numbers.astype("float64")
            if bad.any():
                unseen[column] = int(bad.sum())
        else:
            text = _text(values)
            levels = roles.categories.get(column, [])
            coded = pd.Categorical(text, categories=levels)
            lost = int((text.notna() & pd.isna(coded)).sum())
            if lost:
                unseen[column] = lost
            out[column] = pd.Series(coded, index=frame.index)
    return pd.DataFrame(out, index=frame.index, columns=roles.features), unseen


def dates_of(frame: pd.DataFrame, roles: TableRoles) -> pd.Series | None:
    """The time column parsed (tz-naive datetime64; NaT where a cell is missing), or None."""
    if roles.date is None:
        return None
    if roles.date not in frame.columns:
        raise TableError(f"The table lacks the date column {roles.date!r}.")
    return _parse_dates(frame[roles.date]).rename(roles.date)


# --- leaks -----------------------------------------------------------------------------------------

def _folded_auc(y: np.ndarray, score: np.ndarray) -> float:
    auc = roc_auc_score(y, score)
    return max(auc, 1 - auc)


def _numeric_auc(values: np.ndarray, y: np.ndarray) -> float:
    """max(AUC, 1-AUC) of the column alone: on its non-missing rows, and with missing placed below
    or above every value (a column filled only after a default leaks through its missingness)."""
    present = ~np.isnan(values)
    aucs = []
    yp = y[present]
    if present.any() and min(yp.sum(), len(yp) - yp.sum()) >= MIN_CLASS_FOR_AUC:
        aucs.append(_folded_auc(yp, values[present]))
    if not present.all() and present.any():
        low, high = np.nanmin(values) - 1, np.nanmax(values) + 1
        aucs.append(_folded_auc(y, np.where(present, values, low)))
        aucs.append(_folded_auc(y, np.where(present, values, high)))
    return max(aucs) if aucs else 0.5


def _category_auc(values: pd.Series, y: np.ndarray, seed: int = 0) -> float:
    """AUC of each level's default rate, the rate computed out of fold (a level seen once cannot
    score itself)."""
    levels = values.astype(object).where(values.notna(), "\0missing").to_numpy()
    folds = min(LEAK_FOLDS, int(y.sum()), int(len(y) - y.sum()))
    if folds < 2:
        return 0.5
    score = np.empty(len(y), dtype=float)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(levels, y):
        rates = pd.Series(y[train]).groupby(levels[train]).mean()
        score[test] = pd.Series(levels[test]).map(rates).fillna(y[train].mean()).to_numpy()
    return _folded_auc(y, score)


def check_leaks(X: pd.DataFrame, y: np.ndarray, roles: TableRoles,
                threshold: float = LEAK_AUC) -> list[str]:
    """Refuse a feature that alone separates defaults from non-defaults (AUC above `threshold`).

    Numeric: rank AUC (missing rows excluded; also with missing as the lowest or highest value),
    max(AUC, 1-AUC). Category: out-of-fold AUC of the level's default rate (5 folds). A leak not in
    `roles.allow_leak` raises LeakError naming the column, its AUC and `--allow-leak COL`; the
    allowed leaks found are returned (to report).
    """
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return []
    found: dict[str, float] = {}
    for column in roles.features:
        if column not in X.columns:
            continue
        values = X[column]
        if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values):
            auc = _category_auc(values, y)
        else:
            auc = _numeric_auc(values.to_numpy(dtype=float), y)
        if auc > threshold:
            found[column] = auc
    refused = {c: a for c, a in found.items() if c not in roles.allow_leak}
    if refused:
        worst = max(refused, key=refused.get)
        listed = ", ".join(f"{c!r} (AUC {a:.3f})" for c, a in sorted(refused.items(), key=lambda kv: -kv[1]))
        raise LeakError(worst, refused[worst], (
            f"Likely leak: {listed} alone separate{'s' if len(refused) == 1 else ''} defaults from "
            f"non-defaults almost perfectly (above {threshold}). Such a column is usually filled in "
            "after the outcome is known (days past due, recovery, write-off), and a model using it "
            "fails on new loans. Remove it or pass --ignore " + " --ignore ".join(refused)
            + "; if it is really known when the loan is granted, pass --allow-leak "
            + " --allow-leak ".join(refused) + "."))
    return [c for c in found if c in roles.allow_leak]
