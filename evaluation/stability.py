"""Population Stability Index (PSI): has a score or feature drifted since the model was built?

PSI = sum over bins of (actual% - expected%) * ln(actual% / expected%), with bins cut on the
expected (reference, e.g. training) sample. Conventional reading in credit risk:
< 0.1 stable, 0.1-0.25 watch, > 0.25 act (investigate, likely recalibrate or retrain).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas

# Empty bins would give ln(0) = -inf; flooring each share at this small value keeps PSI finite
# while still heavily penalising a bin that empties or appears.
SHARE_FLOOR = 1e-4

STABLE_BELOW = 0.1
ACT_ABOVE = 0.25


def _as_float(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric (NaN allowed for missing): {exc}") from exc
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Share of rows per bin; the last entry is the NaN bin (missing is its own category)."""
    missing = np.isnan(values)
    idx = np.searchsorted(inner_edges, values[~missing], side="right")
    counts = np.bincount(idx, minlength=inner_edges.size + 1).astype(float)
    counts = np.append(counts, missing.sum())
    return counts / values.size


def psi(expected, actual, bins: int = 10) -> float:
    """PSI of ``actual`` against ``expected`` on quantile bins of ``expected``.

    Bin edges are expected's unique interior quantiles, with open outer ends so actual values outside
    expected's range still land in the first or last bin. NaN values form an extra bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    e = _as_float(expected, "expected")
    a = _as_float(actual, "actual")
    present = e[~np.isnan(e)]
    if present.size:
        inner = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
    else:
        inner = np.array([])  # expected is all missing: one value bin plus the NaN bin
    pe = np.maximum(_shares(e, inner), SHARE_FLOOR)
    pa = np.maximum(_shares(a, inner), SHARE_FLOOR)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def band(value: float) -> str:
    """Traffic-light reading of a PSI: 'stable' (< 0.1), 'watch' (0.1 to 0.25), 'act' (> 0.25)."""
    if value is None or np.isnan(value):
        raise ValueError("PSI value is missing (NaN)")
    if value < STABLE_BELOW:
        return "stable"
    if value <= ACT_ABOVE:
        return "watch"
    return "act"


def psi_table(expected: pandas.DataFrame, actual: pandas.DataFrame, columns: Iterable[str],
              bins: int = 10) -> pandas.DataFrame:
    """PSI and band per column, most drifted first."""
    columns = list(columns)
    for name, frame in (("expected", expected), ("actual", actual)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}")
    rows = []
    for col in columns:
        value = psi(expected[col], actual[col], bins=bins)
        rows.append({"column": col, "psi": value, "band": band(value)})
    out = pandas.DataFrame(rows, columns=["column", "psi", "band"])
    return out.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)
