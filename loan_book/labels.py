"""Which value of the target means default: `--bad-value`, or a coding that cannot be misread.

A label coded 1/2, Y/N, yes/no or positive/negative says nothing about which value is the bad one
(in one bank's export Y means "defaulted", in another "repaid as agreed"), so such a coding is
refused until the lender names the bad value with `--bad-value VALUE`; the refusal lists the
values found with their counts. Only codings whose meaning is fixed are accepted without it:
0/1 (1 = default), true/false, default/non-default, bad/good, defaulted/repaid. The default rate is
reported with the coding so that a label the wrong way round shows at once (a 60% "default" rate).

Values match ignoring case and surrounding spaces, and `1.0` equals `1` (a Parquet float column or
an Excel export of integers).
"""
from __future__ import annotations

import difflib
import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from loan_book.errors import TableError
from loan_book.reading import is_missing

MIN_DEFAULTS = 50  # fewer defaults (or non-defaults) than this: refused
WARN_DEFAULTS = 200  # fewer defaults than this: a warning (the interval of the AUC is wide)

# (bad, good) pairs whose meaning is fixed; keys are normalised by `_key` (lower case, no spaces,
# hyphens or underscores).
UNAMBIGUOUS = (
    ("1", "0"),
    ("true", "false"),
    ("default", "nondefault"),
    ("default", "nodefault"),
    ("defaulted", "nondefaulted"),
    ("bad", "good"),
    ("defaulted", "repaid"),
)


@dataclass(frozen=True)
class LabelCoding:
    """How the target column was read: which value means default, and how many defaults.

    `bad` and `good` are the values as found in the table (for display and for the model's
    metadata); `how` says why this coding was taken ("--bad-value 2" or
    "unambiguous coding 0/1 (1 = default)").
    """

    column: str
    bad: object
    good: object
    defaults: int
    rows: int
    how: str

    @property
    def default_rate(self) -> float:
        """Share of rows that are defaults."""
        return self.defaults / self.rows if self.rows else float("nan")

    def describe(self) -> str:
        """One line for the lender: the bad value, the count and the rate, and why."""
        return (f"target {self.column!r}: default = {self.bad!r} on {self.defaults:,} of "
                f"{self.rows:,} rows ({self.default_rate:.1%}); good = {self.good!r}; {self.how}")

    def to_dict(self) -> dict:
        """JSON-safe (for MLflow)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LabelCoding":
        """The inverse of `to_dict`."""
        return cls(**{k: d[k] for k in ("column", "bad", "good", "defaults", "rows", "how")})


def _plain(value: object) -> object:
    """A numpy scalar as the Python value (JSON-safe)."""
    return value.item() if isinstance(value, np.generic) else value


def _key(value: object) -> str:
    """A label value normalised for comparison: 'Bad ' = 'bad', 1.0 = '1', 'Non-Default' = 'nondefault'."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return text.replace(" ", "").replace("-", "").replace("_", "")
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


def _found(counts: Counter, originals: dict) -> str:
    return ", ".join(f"{originals[k]!r} ({n:,} rows)" for k, n in counts.most_common())


def encode_label(frame: pd.DataFrame, target: str,
                 bad_value: str | None = None) -> tuple[np.ndarray, LabelCoding]:
    """y (int 0/1, 1 = default) from the target column, and how it was read.

    Raises TableError for a missing column (the columns listed), missing values, one class only,
    more than two values, an ambiguous coding without `bad_value` (the values with their counts and
    the option `--bad-value VALUE`), a `bad_value` that is not among the values, and fewer than
    MIN_DEFAULTS defaults or non-defaults. Fewer than WARN_DEFAULTS defaults is not an error: see
    `label_warnings`.
    """
    if target not in frame.columns:
        names = [str(c) for c in frame.columns]
        close = ([n for n in names if n.strip().lower() == str(target).strip().lower()]
                 or difflib.get_close_matches(str(target), names, n=1))
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TableError(f"No target column {target!r}.{hint} The columns are: "
                         f"{', '.join(map(repr, frame.columns))}. Pass with --target the column that "
                         "says whether the loan defaulted.")
    label = frame[target]
    missing = is_missing(label)
    if missing.any():
        raise TableError(f"The target column {target!r} has {int(missing.sum()):,} missing value(s) "
                         f"of {len(label):,} rows (empty or a token such as 'NA'). Every row needs a "
                         "known outcome: drop unlabelled rows (loans still running whose outcome is "
                         "not known yet) and give the table again.")
    keys = label.map(_key)
    counts = Counter(keys)
    # The value shown for each key: the spelling most common in the table.
    originals = {}
    for k in counts:
        spellings = Counter(label[keys == k].map(lambda v: v.strip() if isinstance(v, str) else v))
        originals[k] = _plain(spellings.most_common(1)[0][0])
    if len(counts) == 1:
        only = next(iter(counts))
        raise TableError(f"The target column {target!r} has one value only ({originals[only]!r} on "
                         f"all {len(label):,} rows). Both defaults and loans that were repaid are "
                         "needed: check the export has every loan, not only one outcome.")
    if len(counts) > 2:
        raise TableError(f"The target column {target!r} has {len(counts)} values: "
                         f"{_found(counts, originals)}. It must have two, one meaning default: map "
                         "the others (e.g. 'current', 'late') to default or not, or drop loans whose "
                         "outcome is not known yet.")
    if bad_value is not None:
        bad = _key(bad_value)
        if bad not in counts:
            raise TableError(f"--bad-value {bad_value} is not a value of {target!r}; the values are "
                             f"{_found(counts, originals)}. Pass the one that means default.")
        how = f"--bad-value {bad_value}"
    else:
        bad, how = _unambiguous(counts, originals, target)
    good = next(k for k in counts if k != bad)
    y = (keys == bad).to_numpy(dtype=int)
    defaults, rows = int(y.sum()), len(y)
    coding = LabelCoding(column=str(target), bad=originals[bad], good=originals[good],
                         defaults=defaults, rows=rows, how=how)
    if defaults < MIN_DEFAULTS or rows - defaults < MIN_DEFAULTS:
        small, n = ("defaults", defaults) if defaults < MIN_DEFAULTS else ("non-defaults", rows - defaults)
        raise TableError(f"Only {n} {small} in {rows:,} rows ({coding.describe()}). At least "
                         f"{MIN_DEFAULTS} of each are needed to learn and to measure anything: add "
                         "more history (older loans, other branches).")
    return y, coding


def _unambiguous(counts: Counter, originals: dict, target: str) -> tuple[str, str]:
    found = set(counts)
    for bad, good in UNAMBIGUOUS:
        if found == {bad, good}:
            first, second = (good, bad) if bad == "1" else (bad, good)  # written 0/1, as usual
            return bad, (f"unambiguous coding {originals[first]}/{originals[second]} "
                         f"({originals[bad]} = default)")
    example = originals[sorted(counts)[-1]]
    raise TableError(f"The target column {target!r} is coded {_found(counts, originals)}: which "
                     "one means default cannot be told from the values. Name it with --bad-value "
                     f"VALUE (for example --bad-value {example}). Without it only 0/1 (1 = default), "
                     "true/false, default/non-default, bad/good and defaulted/repaid are accepted.")


def label_warnings(coding: LabelCoding) -> list[str]:
    """What the lender should know about the label but that does not stop training."""
    warnings = []
    if coding.defaults < WARN_DEFAULTS:
        warnings.append(f"Only {coding.defaults} defaults: the model's AUC will have a wide interval "
                        f"and small effects will not be found; {WARN_DEFAULTS} or more are advised "
                        "(add more history if you have it).")
    if coding.default_rate > 0.5:
        warnings.append(f"{coding.default_rate:.0%} of the rows are defaults ({coding.bad!r}): check "
                        f"that {coding.bad!r} means default; if it means repaid, pass --bad-value "
                        f"{coding.good}.")
    return warnings
