"""How a lender's table is cut for validation: out of time when it has a date, random on request.

Out of time (`time_splits`) is the default whenever the table has a date column, because that is how
the model will be used: fitted on the past, applied to loans that arrive later. It is an expanding
window. The latest part of the data is cut, on month boundaries, into `folds` consecutive test
periods holding roughly equal numbers of loans; each period is scored by a model fitted on every
loan dated at least `gap_months` before the period starts. The gap is the label window: a loan's
outcome is only known `gap_months` after its date, so a loan dated inside the gap could not have
been a training row when the test loans were decided. Loans inside the gap of a fold are in neither
its training nor its test rows. The date itself is never a feature (roles.prepare leaves it out).

Random repeated stratified cross-validation (`random_splits`) is there on request (`--cv random`),
for a table without dates or one whose dates are too short to validate out of time.

`inner_splits` cuts the training rows of one outer fold again, to choose hyper-parameters without
looking at that fold's test rows (nested cross-validation, see selection.py).

Positions, not index labels: every `Split` holds integer positions into the rows as given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedStratifiedKFold

from loan_book.errors import TableError

# Inner folds are cut from one outer fold's training rows, which can be short: they need fewer
# defaults to learn from than the outer folds do.
INNER_MIN_DEFAULTS = 10


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to a single bool
class Split:
    """One train/test cut: integer positions into the rows, and a name a lender reads.

    `repeat` numbers the repetition of random cross-validation (0 for out of time, where every row
    is tested at most once); `gap_months` is the label-window gap of an out-of-time split and None
    for a random one, so that whoever receives the splits knows how they were made.
    """

    train: np.ndarray
    test: np.ndarray
    name: str
    repeat: int = 0
    gap_months: int | None = None


def _month_numbers(dates: pd.Series) -> np.ndarray:
    """Months since year 0 (year * 12 + month - 1) of each date; TableError if a date is missing."""
    when = pd.to_datetime(pd.Series(dates).reset_index(drop=True))
    missing = int(when.isna().sum())
    if missing:
        raise TableError(
            f"{missing:,} of {len(when):,} rows have no date, so they cannot be placed in time for "
            "out-of-time validation. Fill in their dates, drop those rows, or use random "
            "cross-validation (--cv random).")
    return (when.dt.year * 12 + when.dt.month - 1).to_numpy(dtype=int)


def _month_name(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def time_splits(dates: pd.Series, y: np.ndarray, folds: int = 4, gap_months: int = 12,
                min_defaults: int = 20) -> list[Split]:
    """Expanding-window out-of-time splits with a label-window gap between train and test.

    Parameters: `dates` one date per row (parsed, or ISO text); `y` 0/1 per row (1 = default);
    `folds` the number of consecutive test periods; `gap_months` the label window: a training row is
    dated at least this many months before its test period starts (month granularity: a loan dated
    in month m trains a period starting in month m + gap_months + 1 or later); `min_defaults` the
    defaults (and non-defaults) the first fold must train on.

    Returns `folds` splits, oldest test period first. The test periods cover the latest half of
    the rows (later if the first fold would otherwise have too few defaults to train on), cut on
    month boundaries into periods of roughly equal numbers of loans.

    Raises TableError, saying how many months the dates cover and what to change (fewer folds, a
    shorter label window, random cross-validation), when the dates cannot give `folds` such splits.
    """
    y = np.asarray(y).astype(int)
    months = _month_numbers(dates)
    if len(months) != len(y):
        raise ValueError(f"dates and y have different lengths ({len(months)} and {len(y)})")
    if folds < 1 or gap_months < 0:
        raise ValueError(f"folds must be >= 1 and gap_months >= 0, got {folds} and {gap_months}")
    first, last = int(months.min()), int(months.max())
    span = last - first + 1
    offset = months - first  # 0 .. span-1
    per_month = np.bincount(offset, minlength=span)
    bad_per_month = np.bincount(offset, weights=y, minlength=span)
    good_per_month = per_month - bad_per_month

    def advice(why: str) -> TableError:
        return TableError(
            f"The dates cover {span} month(s), {_month_name(first)} to {_month_name(last)}, which "
            f"cannot give {folds} out-of-time folds: {why} Each fold trains only on loans dated at "
            f"least {gap_months} month(s) (the label window) before its test period and needs at "
            f"least {min_defaults} defaults to train on. Use fewer folds (--folds), a shorter "
            "label window (--label-months) if outcomes are known sooner, or random "
            "cross-validation (--cv random).")

    # The first month a test period may start in: by then the training rows (months before
    # start - gap) hold min_defaults defaults and min_defaults non-defaults.
    enough = np.flatnonzero((np.cumsum(bad_per_month) >= min_defaults)
                            & (np.cumsum(good_per_month) >= min_defaults))
    if enough.size == 0:
        raise advice(f"the whole table holds fewer than {min_defaults} defaults or non-defaults.")
    feasible = int(enough[0]) + gap_months + 1
    # Test periods are the latest part of the data: from the month that holds the median loan.
    half = int(np.searchsorted(np.cumsum(per_month), len(y) / 2))
    start = max(feasible, half)
    region = per_month[start:] if start < span else np.array([], dtype=int)
    if region.size < folds:
        raise advice(f"after the first {start} month(s) (the training rows of the first fold plus "
                     f"the gap) only {max(region.size, 0)} month(s) are left to test on.")

    # Cut the test region on month boundaries into periods of roughly equal numbers of loans.
    cumulative = np.cumsum(region)
    ends, previous = [], -1
    for k in range(1, folds):
        end = int(np.searchsorted(cumulative, k * cumulative[-1] / folds))
        end = min(max(end, previous + 1), region.size - 1 - (folds - k))  # >= 1 month per period
        ends.append(end)
        previous = end
    ends.append(region.size - 1)

    splits, begin = [], 0
    for end in ends:
        lo, hi = start + begin, start + end  # offsets of the period's first and last month
        test = np.flatnonzero((offset >= lo) & (offset <= hi))
        train = np.flatnonzero(offset < lo - gap_months)
        defaults = int(y[test].sum())
        if defaults == 0 or defaults == len(test):
            raise advice(f"the test period {_month_name(first + lo)}..{_month_name(first + hi)} "
                         f"holds {len(test)} loan(s) and {'no' if defaults == 0 else 'only'} "
                         "default(s), so its AUC is undefined.")
        name = (f"test {_month_name(first + lo)}..{_month_name(first + hi)}, "
                f"train to {_month_name(first + lo - gap_months - 1)}")
        splits.append(Split(train=train, test=test, name=name, gap_months=gap_months))
        begin = end + 1
    return splits


def random_splits(y: np.ndarray, folds: int = 5, repeats: int = 2, seed: int = 0) -> list[Split]:
    """Repeated stratified k-fold: every row is tested once per repeat, each fold keeps the default rate.

    Raises TableError when a class has fewer rows than `folds` (a fold would miss it).
    """
    y = np.asarray(y).astype(int)
    smaller = int(min(y.sum(), len(y) - y.sum()))
    if smaller < folds:
        raise TableError(f"The table has {smaller} row(s) in its smaller class, fewer than the "
                         f"{folds} cross-validation folds: use fewer folds or add more history.")
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    return [Split(train=train, test=test, name=f"repeat {i // folds + 1}, fold {i % folds + 1}",
                  repeat=i // folds)
            for i, (train, test) in enumerate(cv.split(np.zeros(len(y)), y))]


def inner_splits(dates: pd.Series | None, y: np.ndarray, folds: int = 3, gap_months: int = 12,
                 seed: int = 0) -> list[Split]:
    """Splits of one outer fold's training rows, for choosing hyper-parameters inside that fold.

    With dates: out of time like the outer folds (same gap, fewer defaults needed); when the
    training rows span too short a time for that, stratified random folds of the same rows (this
    only affects which hyper-parameters are chosen; the outer test rows are never seen). Without
    dates: stratified random folds, one repeat. Positions are into the rows given.
    """
    if dates is not None:
        try:
            return time_splits(dates, y, folds=folds, gap_months=gap_months,
                               min_defaults=INNER_MIN_DEFAULTS)
        except TableError:
            pass  # too short a history inside this fold: random inner folds, as documented above
    return random_splits(y, folds=folds, repeats=1, seed=seed)
