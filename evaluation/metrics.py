"""Discrimination and calibration of a probability of default (PD) against binary outcomes.

A bank needs two things from a PD: that it *ranks* applicants (AUC, Gini, KS, lift) and that it is
*right on average and per band* (Brier, log loss, calibration-in-the-large, ECE, reliability curve).
Every headline metric comes with a bootstrap 95% interval, because on pilot-sized samples a point
estimate alone overstates how much we know.

Conventions: ``y`` is 1 for a bad (default) and 0 for a good; ``pd`` is the predicted probability of
being bad, so a higher PD means riskier. (``pd`` here is never pandas; pandas is imported as ``pandas``.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas
from scipy.special import expit
from scipy.stats import rankdata

# Clip for log loss: a PD of exactly 0 or 1 on a wrong outcome would give an infinite loss.
_LOG_LOSS_EPS = 1e-15


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95% confidence interval."""

    value: float
    low: float
    high: float


# --------------------------------------------------------------------------- validation


def _check(y, pd, *, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return (y, pd) as float arrays, or raise ValueError saying what is wrong with the input."""
    y = np.asarray(y, dtype=float).ravel()
    pd = np.asarray(pd, dtype=float).ravel()
    if y.shape != pd.shape:
        raise ValueError(f"y and pd must have the same length, got {y.size} and {pd.size}")
    if y.size == 0:
        raise ValueError("y and pd are empty")
    if np.isnan(y).any():
        raise ValueError(f"y contains {int(np.isnan(y).sum())} NaN value(s)")
    if np.isnan(pd).any():
        raise ValueError(f"pd contains {int(np.isnan(pd).sum())} NaN value(s)")
    if not np.isin(y, (0.0, 1.0)).all():
        bad = np.unique(y[~np.isin(y, (0.0, 1.0))])[:5]
        raise ValueError(f"y must contain only 0 (good) and 1 (bad) labels, found {bad.tolist()}")
    if (pd < 0).any() or (pd > 1).any():
        raise ValueError(f"pd must lie in [0, 1], found range [{pd.min():.4g}, {pd.max():.4g}]")
    if both_classes and (y.min() == y.max()):
        raise ValueError(f"y has only one class ({int(y[0])}); need both goods and bads")
    return y, pd


def _quantile_bins(pd: np.ndarray, bins: int) -> np.ndarray:
    """Bin index per row from PD quantiles; tied quantiles are merged, so fewer bins may result."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    inner = np.unique(np.quantile(pd, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(inner, pd, side="right")


# --------------------------------------------------------------------------- discrimination


def auc(y, pd) -> float:
    """Area under the ROC curve: P(PD of a random bad > PD of a random good), ties count half."""
    y, pd = _check(y, pd)
    ranks = rankdata(pd)  # average ranks handle ties (Mann-Whitney U)
    n_bad = y.sum()
    n_good = y.size - n_bad
    u = ranks[y == 1].sum() - n_bad * (n_bad + 1) / 2
    return float(u / (n_bad * n_good))


def gini(y, pd) -> float:
    """Gini (accuracy ratio) = 2 * AUC - 1."""
    return 2.0 * auc(y, pd) - 1.0


def ks(y, pd) -> float:
    """Kolmogorov-Smirnov: the largest gap between the PD distributions of bads and goods."""
    y, pd = _check(y, pd)
    thresholds = np.unique(pd)
    bads, goods = np.sort(pd[y == 1]), np.sort(pd[y == 0])
    # Empirical CDFs evaluated at every distinct PD (including ties on both sides).
    cdf_bad = np.searchsorted(bads, thresholds, side="right") / bads.size
    cdf_good = np.searchsorted(goods, thresholds, side="right") / goods.size
    return float(np.max(np.abs(cdf_bad - cdf_good)))


# --------------------------------------------------------------------------- calibration


def brier(y, pd) -> float:
    """Mean squared error of the PD."""
    y, pd = _check(y, pd, both_classes=False)
    return float(np.mean((pd - y) ** 2))


def log_loss(y, pd) -> float:
    """Mean negative log-likelihood (natural log); PDs are clipped away from 0 and 1."""
    y, pd = _check(y, pd, both_classes=False)
    p = np.clip(pd, _LOG_LOSS_EPS, 1 - _LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_in_the_large(y, pd) -> float:
    """mean(PD) - observed bad rate; positive means the model is too pessimistic."""
    y, pd = _check(y, pd, both_classes=False)
    return float(pd.mean() - y.mean())


def calibration_slope(y, pd) -> float:
    """Slope of the logistic regression of the outcome on the PD's log-odds: 1 when the PD's spread
    is right, below 1 when it is too extreme, above 1 when too timid, <= 0 when it ranks backwards."""
    y, pd = _check(y, pd)
    p = np.clip(pd, 1e-6, 1 - 1e-6)
    x = np.log(p / (1 - p))
    design = np.column_stack([np.ones_like(x), x])
    beta = np.array([np.log(y.mean() / (1 - y.mean())), 0.0])  # start at the base rate: always converges
    for _ in range(50):  # Newton-Raphson on two parameters: fast enough to bootstrap
        mu = expit(design @ beta)
        w = mu * (1 - mu)
        hessian = design.T @ (design * w[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, design.T @ (y - mu))
        beta = beta + step
        if np.abs(step).max() < 1e-8:
            break
    return float(beta[1])


def reliability_curve(y, pd, bins: int = 10) -> pandas.DataFrame:
    """Mean PD against observed bad rate in quantile bins of PD (bin 0 = lowest PDs)."""
    y, pd = _check(y, pd, both_classes=False)
    idx = _quantile_bins(pd, bins)
    frame = pandas.DataFrame({"bin": idx, "pd": pd, "y": y})
    out = frame.groupby("bin").agg(mean_pd=("pd", "mean"), bad_rate=("y", "mean"), count=("y", "size"))
    return out.reset_index()


def expected_calibration_error(y, pd, bins: int = 10) -> float:
    """Count-weighted mean of |mean PD - bad rate| over quantile bins of PD."""
    y, pd = _check(y, pd, both_classes=False)
    idx = _quantile_bins(pd, bins)
    count = np.bincount(idx)
    keep = count > 0
    mean_pd = np.bincount(idx, weights=pd)[keep] / count[keep]
    bad_rate = np.bincount(idx, weights=y)[keep] / count[keep]
    return float(np.sum(count[keep] * np.abs(mean_pd - bad_rate)) / y.size)


# --------------------------------------------------------------------------- business views


def lift_table(y, pd, groups: int = 10) -> pandas.DataFrame:
    """Equal-sized groups by PD, riskiest first, with lift and cumulative capture of bads.

    Groups are cut on the sorted order (not on quantile values) so each holds ~n/groups rows even when
    PDs tie; tied rows at a boundary are split in a stable order.
    """
    y, pd = _check(y, pd)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    order = np.argsort(-pd, kind="stable")
    decile = np.arange(y.size) * groups // y.size + 1
    frame = pandas.DataFrame({"decile": decile, "y": y[order], "pd": pd[order]})
    out = frame.groupby("decile").agg(
        count=("y", "size"), bads=("y", "sum"), min_pd=("pd", "min"), max_pd=("pd", "max")
    )
    out["bads"] = out["bads"].astype(int)
    out["bad_rate"] = out["bads"] / out["count"]
    out["lift"] = out["bad_rate"] / y.mean()
    out["capture"] = out["bads"].cumsum() / y.sum()
    return out.reset_index()


def approval_curve(y, pd, steps=None) -> pandas.DataFrame:
    """Bad rate among approved applicants when approving the lowest-PD share of them.

    ``steps`` are approval rates in (0, 1]; default 5%, 10%, ..., 100%. ``pd_threshold`` is the
    highest PD approved at that rate.
    """
    y, pd = _check(y, pd, both_classes=False)
    steps = np.round(np.arange(1, 21) * 0.05, 10) if steps is None else np.asarray(steps, dtype=float)
    if steps.size == 0 or (steps <= 0).any() or (steps > 1).any():
        raise ValueError("steps must be approval rates in (0, 1]")
    order = np.argsort(pd, kind="stable")
    cum_bads = np.cumsum(y[order])
    approved = np.maximum(np.ceil(steps * y.size - 1e-9).astype(int), 1)
    return pandas.DataFrame(
        {
            "approval_rate": steps,
            "approved": approved,
            "bad_rate": cum_bads[approved - 1] / approved,
            "pd_threshold": pd[order][approved - 1],
        }
    )


# --------------------------------------------------------------------------- uncertainty


def bootstrap(metric: Callable, y, pd, n: int = 500, seed: int = 0) -> Estimate:
    """Point estimate plus a percentile 95% CI from resampling rows with replacement.

    Resamples that contain a single class are skipped (ranking metrics are undefined on them).
    """
    y, pd = _check(y, pd)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, y.size, y.size)
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        values.append(metric(yb, pd[idx]))
    if not values:
        raise ValueError("every bootstrap resample had a single class; too few bads or goods")
    low, high = np.percentile(values, [2.5, 97.5])
    return Estimate(value=float(metric(y, pd)), low=float(low), high=float(high))


METRICS: dict[str, Callable] = {
    "auc": auc,
    "gini": gini,
    "ks": ks,
    "brier": brier,
    "log_loss": log_loss,
    "calibration_in_the_large": calibration_in_the_large,
    "ece": expected_calibration_error,
    "calibration_slope": calibration_slope,
}


def evaluate(y, pd, n_boot: int = 500, seed: int = 0) -> dict[str, Estimate]:
    """All headline metrics with bootstrap CIs; each metric uses the same seed (same resamples)."""
    y, pd = _check(y, pd)
    return {name: bootstrap(fn, y, pd, n=n_boot, seed=seed) for name, fn in METRICS.items()}
