"""Fairness tables: how the score treats each group of members.

A bank's model-risk team reads one table per grouping column (gender of the household
head, ethnic-minority household, mountainous commune, region, business sector). Each row
is one group and answers four questions:

* Who gets approved? ``approval_rate`` is the share of the group whose PD is at or below
  the cut-off. The ratio of the lowest to the highest approval rate is the "four-fifths
  rule" figure: below 0.8 is the usual flag for disparate impact.
* Does the score rank equally well inside each group? ``auc`` per group. A model that
  separates good from bad payers well for men but barely for women is unfair even when
  approval rates match. Groups too small (or with only one class) get NaN and a note,
  because an AUC on a handful of rows is noise, not evidence.
* Is the PD honest for each group? ``calibration_gap = mean_pd - bad_rate``: positive means
  the model overstates the group's risk (it is penalised, priced too high or refused);
  negative means it understates it (the bank carries hidden losses there).
* Do approved members of each group repay alike? ``bad_rate_among_approved``: if one
  group's approved members default more, the cut-off is effectively looser for them.

``gaps`` turns each table into a few numbers (largest minus smallest across groups) and
``largest_gap`` points at the single worst one, which is what goes in the summary memo.

Protected attributes are used here only, never as model features (see data_contracts).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from data_contracts.vocabulary import REGION_OF_PROVINCE

# Below this many rows a per-group AUC swings too much to read anything into it.
MIN_ROWS_FOR_AUC = 30
TOO_FEW_NOTE = "too few to measure"
MISSING_GROUP = "(missing)"

# Metrics whose spread across groups `gaps` reports, all on a 0..1 scale so they compare.
GAP_METRICS = ("approval_rate", "auc", "calibration_gap", "bad_rate_among_approved")

TABLE_COLUMNS = [
    "group", "count", "bads", "bad_rate", "mean_pd", "calibration_gap", "auc", "note",
    "approval_rate", "bad_rate_among_approved",
]


def region_of(provinces: pd.Series) -> pd.Series:
    """Region of each province; an unknown province raises rather than silently becoming NaN."""
    regions = provinces.map(REGION_OF_PROVINCE)
    unknown = provinces[regions.isna() & provinces.notna()].unique()
    if len(unknown):
        raise ValueError(f"unknown province(s), not in REGION_OF_PROVINCE: {sorted(map(str, unknown))}")
    return regions.rename("region")


def _check(frame: pd.DataFrame, columns: list[str], threshold: float) -> None:
    if frame is None or len(frame) == 0:
        raise ValueError("fairness needs a non-empty frame of scored members")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; frame has {list(frame.columns)}")
    if not (isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0 < threshold < 1):
        raise ValueError(f"threshold must be a PD strictly between 0 and 1, got {threshold!r}")


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney rank sum (ties averaged); equals sklearn's roc_auc_score.

    Done by hand so that this module does not pull in scikit-learn's slow import.
    """
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    n_bad = int(labels.sum())
    n_good = len(labels) - n_bad
    return float((ranks[labels == 1].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * n_good))


def _group_row(group, part: pd.DataFrame, y: str, pd_col: str, threshold: float) -> dict:
    labels = part[y].astype(int).to_numpy()
    pds = part[pd_col].astype(float).to_numpy()
    approved = pds <= threshold  # lower PD is better: at or below the cut-off is approved
    bad_rate = labels.mean()
    mean_pd = pds.mean()

    # AUC needs both classes and enough rows to mean something.
    if len(part) < MIN_ROWS_FOR_AUC or len(np.unique(labels)) < 2:
        auc, note = math.nan, TOO_FEW_NOTE
    else:
        auc, note = _auc(labels, pds), ""

    return {
        "group": group,
        "count": len(part),
        "bads": int(labels.sum()),
        "bad_rate": float(bad_rate),
        "mean_pd": float(mean_pd),
        "calibration_gap": float(mean_pd - bad_rate),
        "auc": auc,
        "note": note,
        "approval_rate": float(approved.mean()),
        # NaN when nobody in the group is approved: there is no approved book to judge.
        "bad_rate_among_approved": float(labels[approved].mean()) if approved.any() else math.nan,
    }


def fairness_table(frame: pd.DataFrame, group_column: str, y: str = "label", pd_col: str = "pd",
                   *, threshold: float) -> pd.DataFrame:
    """One row per value of ``group_column``; see the module docstring for how to read it."""
    _check(frame, [group_column, y, pd_col], threshold)
    # Missing group values stay visible as their own row: dropping them would hide members.
    groups = frame[group_column].astype(object).where(frame[group_column].notna(), MISSING_GROUP)
    rows = [_group_row(g, part, y, pd_col, threshold)
            for g, part in frame.groupby(groups, sort=True)]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _spread(values: pd.Series) -> float:
    values = values.dropna()
    # A gap needs at least two groups that could be measured.
    return float(values.max() - values.min()) if len(values) >= 2 else math.nan


def gaps(table: pd.DataFrame) -> dict[str, float]:
    """Largest minus smallest across groups for each metric, plus the four-fifths ratio.

    ``calibration_gap`` is the spread of the signed gaps (max - min, never negative);
    ``worst_abs_calibration_gap`` is the largest miscalibration of any single group.
    """
    out = {metric: _spread(table[metric]) for metric in GAP_METRICS}
    cal = table["calibration_gap"].dropna()
    out["worst_abs_calibration_gap"] = float(cal.abs().max()) if len(cal) else math.nan
    rates = table["approval_rate"].dropna()
    top = rates.max() if len(rates) else 0.0
    # Four-fifths rule: lowest approval rate over highest; below 0.8 is the usual red flag.
    out["approval_rate_ratio"] = float(rates.min() / top) if len(rates) >= 2 and top > 0 else math.nan
    return out


def fairness_report(frame: pd.DataFrame, group_columns: list[str], threshold: float,
                    y: str = "label", pd_col: str = "pd") -> dict[str, pd.DataFrame]:
    """One fairness table per grouping column, keyed by column name."""
    if not group_columns:
        raise ValueError("fairness_report needs at least one group column")
    _check(frame, [*group_columns, y, pd_col], threshold)
    return {col: fairness_table(frame, col, y, pd_col, threshold=threshold) for col in group_columns}


def largest_gap(report: dict[str, pd.DataFrame]) -> tuple[str, str, float]:
    """(group column, metric, gap) of the widest gap in the report: the headline finding.

    Only the spreads in GAP_METRICS compete; the ratio is on another scale.
    """
    best: tuple[str, str, float] | None = None
    for column, table in report.items():
        for metric, value in gaps(table).items():
            if metric not in GAP_METRICS or math.isnan(value):
                continue
            if best is None or value > best[2]:
                best = (column, metric, value)
    if best is None:
        raise ValueError("no measurable gap: every table has fewer than two measurable groups")
    return best


# --------------------------------------------------------------------------- gaps with intervals
#
# The gates decide on intervals, not on point estimates: a gap whose 95% CI merely reaches over a
# bound is "maybe over", not evidence. `gap_intervals` measures, per grouping column, two gaps at
# the operating threshold, each as (largest - smallest) across groups with a bootstrap CI:
# * approval_rate: share of the group approved (PD at or below the threshold);
# * equal_opportunity: share approved among those who repaid (label 0), i.e. whether good payers
#   of every group get the same chance.
# It also measures how much one scorer widens a gap against another (the challenger against the
# champion, or against the true PD on synthetic data) on the same resamples (paired), so the noise
# they share cancels. Groups with too few defaults are listed as too small to judge, never dropped
# silently and never used in a gap.

PROTECTED_GROUPS = ("household_head_gender", "ethnic_minority", "mountainous_commune")
PROXY_GROUPS = ("region", "province", "business_sector")
# Below this many defaults a group's rates are too noisy to judge (the rule of 30).
MIN_DEFAULTS_TO_JUDGE = 30
TOO_SMALL_TO_JUDGE = "too small to judge"
GAP_KINDS = ("approval_rate", "equal_opportunity")
INTERVAL_COLUMNS = ["group_column", "gap", "scorer", "versus", "value", "low", "high",
                    "groups_judged", "widest", "too_small"]


def _group_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, names): missing values are their own group, as in `fairness_table`."""
    values = column.astype(object).where(column.notna(), MISSING_GROUP)
    codes, names = pd.factorize(values, sort=True)
    return codes, np.asarray(names, dtype=object)


def _rates(codes: np.ndarray, k: int, weights: np.ndarray, approved: np.ndarray,
           eligible: np.ndarray) -> np.ndarray:
    """Weighted approval rate per group among eligible rows (NaN for a group with none)."""
    w = weights * eligible
    n = np.bincount(codes, weights=w, minlength=k)
    a = np.bincount(codes, weights=w * approved, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, a / np.where(n > 0, n, 1), np.nan)


def _range(rates: np.ndarray) -> float:
    rates = rates[~np.isnan(rates)]
    return float(rates.max() - rates.min()) if rates.size >= 2 else math.nan


def gap_intervals(frame: pd.DataFrame, group_columns: list[str], threshold: float,
                  scorers: dict[str, str], versus: list[tuple[str, str]] = (),
                  y: str = "label", n_boot: int = 500, seed: int = 0,
                  min_defaults: int = MIN_DEFAULTS_TO_JUDGE) -> pd.DataFrame:
    """Approval-rate and equal-opportunity gaps across groups with paired bootstrap 95% CIs.

    Parameters
    ----------
    frame: one row per application: ``y`` (0/1), the group columns and one PD column per scorer.
    group_columns: the groupings to measure (a missing value is its own group).
    threshold: the operating PD; at or below it an application is approved.
    scorers: display name -> PD column, e.g. ``{"challenger": "pd", "champion": "pd_champion"}``.
    versus: (scorer, reference) pairs: the row gives ``gap(scorer) - gap(reference)``, how much
        the scorer widens the gap, with its paired CI.
    min_defaults: a group with fewer defaults is too small to judge: listed in ``too_small``,
        left out of every gap.

    Returns
    -------
    One row per (group_column, gap, scorer) with ``versus`` empty, plus one per comparison in
    ``versus``: value, low, high; ``groups_judged`` (gaps are NaN below 2), ``widest`` (the two
    groups furthest apart at the point estimate) and ``too_small`` ("group (n defaults)", ...).
    """
    pd_cols = list(scorers.values())
    _check(frame, [*group_columns, y, *pd_cols], threshold)
    unknown = {s for pair in versus for s in pair} - set(scorers)
    if unknown:
        raise ValueError(f"versus names scorer(s) {sorted(unknown)} not in scorers {list(scorers)}")
    if n_boot < 1 or min_defaults < 1:
        raise ValueError(f"n_boot and min_defaults must be >= 1, got {n_boot} and {min_defaults}")
    labels = frame[y].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{y} must be 0 (repaid) or 1 (default)")
    for col in pd_cols:
        if frame[col].isna().any():
            raise ValueError(f"PD column {col!r} has {int(frame[col].isna().sum())} missing value(s)")
    labels = labels.astype(int)
    approved = {s: (frame[c].to_numpy(dtype=float) <= threshold).astype(float)
                for s, c in scorers.items()}
    eligible = {"approval_rate": np.ones(len(frame)), "equal_opportunity": (labels == 0).astype(float)}

    groupings = []
    for column in group_columns:
        codes, names = _group_codes(frame[column])
        defaults = np.bincount(codes, weights=labels, minlength=len(names)).astype(int)
        judged = defaults >= min_defaults
        too_small = ", ".join(f"{n} ({d} defaults)" for n, d, j in zip(names, defaults, judged) if not j)
        # rows of groups too small to judge are left out of every rate (weight 0)
        keep = judged[codes].astype(float)
        groupings.append((column, codes, names, judged, keep, too_small))

    def all_gaps(weights: np.ndarray) -> dict[tuple[str, str, str], float]:
        out = {}
        for column, codes, names, judged, keep, _ in groupings:
            for kind in GAP_KINDS:
                for s in scorers:
                    rates = _rates(codes, len(names), weights * keep, approved[s], eligible[kind])
                    out[column, kind, s] = _range(rates[judged])
        return out

    point = all_gaps(np.ones(len(frame)))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        # one resample of applications, shared by every scorer: the comparisons are paired
        boots.append(all_gaps(np.bincount(rng.integers(0, len(frame), len(frame)),
                                          minlength=len(frame)).astype(float)))

    rows = []
    for column, codes, names, judged, keep, too_small in groupings:
        for kind in GAP_KINDS:
            for s in scorers:
                rates = _rates(codes, len(names), keep, approved[s], eligible[kind])[judged]
                jn = names[judged]
                widest = (f"{jn[np.nanargmax(rates)]} vs {jn[np.nanargmin(rates)]}"
                          if judged.sum() >= 2 else "")
                for ref in [None, *(r for scorer, r in versus if scorer == s)]:
                    value = point[column, kind, s] - (point[column, kind, ref] if ref else 0.0)
                    draws = np.array([b[column, kind, s] - (b[column, kind, ref] if ref else 0.0)
                                      for b in boots])
                    draws = draws[~np.isnan(draws)]
                    low, high = (np.percentile(draws, [2.5, 97.5]) if draws.size and value == value
                                 else (math.nan, math.nan))
                    rows.append({"group_column": column, "gap": kind, "scorer": s,
                                 "versus": ref or "", "value": value, "low": float(low),
                                 "high": float(high), "groups_judged": int(judged.sum()),
                                 "widest": widest, "too_small": too_small})
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def model_gap_intervals(frame: pd.DataFrame, threshold: float, champion_pd: np.ndarray | None = None,
                        n_boot: int = 500, seed: int = 0,
                        min_defaults: int = MIN_DEFAULTS_TO_JUDGE) -> pd.DataFrame:
    """`gap_intervals` of an evaluation's per-application frame, as the gate and the card read it.

    Measures every PROTECTED_GROUPS and PROXY_GROUPS column the frame has, for scorer "model"
    (column ``pd``), "champion" (``champion_pd``, row by row with the frame) and "true_pd" (when
    every row has one), with the model compared with each of the other two. Empty (with
    INTERVAL_COLUMNS) when the frame has no group column, as for cooperatives."""
    columns = [c for c in (*PROTECTED_GROUPS, *PROXY_GROUPS) if c in frame.columns]
    if not columns:
        return pd.DataFrame(columns=INTERVAL_COLUMNS)
    scorers, versus = {"model": "pd"}, []
    if champion_pd is not None:
        champion_pd = np.asarray(champion_pd, dtype=float)
        if champion_pd.shape != (len(frame),):
            raise ValueError(f"champion_pd must have one PD per row of the frame ({len(frame)}), "
                             f"got shape {champion_pd.shape}")
        frame = frame.assign(pd_champion=champion_pd)
        scorers["champion"] = "pd_champion"
        versus.append(("model", "champion"))
    if "true_pd" in frame.columns and frame["true_pd"].notna().all():
        scorers["true_pd"] = "true_pd"
        versus.append(("model", "true_pd"))
    return gap_intervals(frame, columns, threshold, scorers, versus, n_boot=n_boot, seed=seed,
                         min_defaults=min_defaults)
