"""Paired comparison of two models' AUC on the same applications: is the challenger worse?

Comparing a challenger's AUC with the champion's own confidence interval ignores that both were
measured on the same applications: most of the noise is shared and cancels in the difference. Two
paired estimates of `AUC(challenger) - AUC(champion)` are given here:

* `delong_auc_difference`: DeLong, DeLong & Clarke-Pearson (1988), computed with midranks
  (Sun & Xu 2014). Deterministic, so a gate built on it cannot flip with a bootstrap seed; this is
  what the promotion gate uses.
* `paired_auc_difference`: the paired bootstrap (resample applications once, compute both AUCs on
  the same resample), the check that DeLong's normal approximation holds on our data.

`auc_not_worse` is the gate's rule: refuse only a challenger whose whole 95% interval lies below
`-tolerance`, i.e. one that is significantly worse by more than an immaterial amount.

Conventions as in `evaluation.metrics`: ``y`` is 1 for a bad, a higher PD (or score) is riskier.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

from evaluation.metrics import Estimate

# A loss of AUC smaller than half a point is immaterial to a lender; the gate refuses only a
# challenger whose whole interval lies below -AUC_TOLERANCE (on a large sample a loss of 0.001
# can be significant without mattering).
AUC_TOLERANCE = 0.005


def _check(y, p_challenger, p_champion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    a = np.asarray(p_challenger, dtype=float).ravel()
    b = np.asarray(p_champion, dtype=float).ravel()
    if not (y.size == a.size == b.size):
        raise ValueError(f"y, p_challenger and p_champion must be the same applications, got lengths "
                         f"{y.size}, {a.size} and {b.size}")
    for name, values in (("y", y), ("p_challenger", a), ("p_champion", b)):
        if np.isnan(values).any():
            raise ValueError(f"{name} contains {int(np.isnan(values).sum())} NaN value(s)")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 (good) and 1 (bad) labels")
    n_bad = int(y.sum())
    if n_bad < 2 or y.size - n_bad < 2:
        raise ValueError(f"comparing AUCs needs at least 2 bads and 2 goods, got {n_bad} bads "
                         f"of {y.size}")
    return y, a, b


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count half); inputs already checked."""
    n_bad = y.sum()
    return float((rankdata(p)[y == 1].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * (y.size - n_bad)))


def delong_auc_difference(y, p_challenger, p_champion, level: float = 0.95) -> Estimate:
    """AUC(challenger) - AUC(champion) on the same applications with DeLong's paired CI."""
    y, a, b = _check(y, p_challenger, p_champion)
    bad, good = y == 1, y == 0
    m, n = int(bad.sum()), int(good.sum())
    v10, v01 = [], []  # per-bad and per-good structural components, one row per model
    for p in (a, b):
        ranks = rankdata(p)
        # a bad's component: share of goods it outranks; a good's: share of bads that outrank it
        v10.append((ranks[bad] - rankdata(p[bad])) / n)
        v01.append(1 - (ranks[good] - rankdata(p[good])) / m)
    v10, v01 = np.array(v10), np.array(v01)
    aucs = v10.mean(axis=1)
    s10, s01 = np.cov(v10), np.cov(v01)
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n
    diff = float(aucs[0] - aucs[1])
    half = float(norm.ppf(0.5 + level / 2) * np.sqrt(max(variance, 0.0)))
    return Estimate(diff, diff - half, diff + half)


def paired_auc_difference(y, p_challenger, p_champion, n_boot: int = 1000,
                          seed: int = 0) -> Estimate:
    """AUC(challenger) - AUC(champion) with a paired percentile bootstrap 95% CI.

    Each resample draws applications once and scores both models on it, so the noise they share
    cancels. Resamples with a single class are skipped."""
    y, a, b = _check(y, p_challenger, p_champion)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        diffs.append(_auc(yb, a[idx]) - _auc(yb, b[idx]))
    if not diffs:
        raise ValueError("every bootstrap resample had a single class; too few bads or goods")
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Estimate(_auc(y, a) - _auc(y, b), float(low), float(high))


def auc_not_worse(difference: Estimate, tolerance: float = AUC_TOLERANCE) -> bool:
    """The AUC gate: False only when the challenger is significantly worse by more than
    `tolerance` (the interval's upper bound of challenger - champion is below -tolerance)."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance is an AUC loss, >= 0; got {tolerance!r}")
    return difference.high >= -tolerance
