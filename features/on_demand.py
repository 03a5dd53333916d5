"""On-demand features: the ones that need the loan application, defined once, in numpy.

Why Python and not SQL: the service computes them per request in microseconds, and training,
evaluation, the online scorer and the offline batch scorer all call these same functions, so
there is one definition. They are vectorised: every argument is an array (or a scalar) and rows
are independent. Semantics are those of the SQL they replaced (kept as the reference in
tests/test_scorer_fast.py): division by a zero revenue gives NaN (SQL NULLIF), a non-positive net
inflow gives NaN (SQL CASE without ELSE), NaN in gives NaN out (SQL NULL propagation).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# The history columns (snapshot / stage-1 output) the on-demand features read.
HISTORY_INPUTS = ("inflow_sum_365d", "outflow_sum_365d")


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def requested_amount_vnd(history: Mapping[str, np.ndarray], amount_vnd, term_months) -> np.ndarray:
    """The requested amount itself, as a float feature."""
    return _f(amount_vnd) + np.zeros(len(_f(history["inflow_sum_365d"])))


def term_months(history: Mapping[str, np.ndarray], amount_vnd, term_months) -> np.ndarray:
    """The loan term in months, as a float feature."""
    return _f(term_months) + np.zeros(len(_f(history["inflow_sum_365d"])))


def loan_to_revenue(history: Mapping[str, np.ndarray], amount_vnd, term_months) -> np.ndarray:
    """Requested amount / 12-month inflows; NaN when the inflows are zero."""
    revenue = _f(history["inflow_sum_365d"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _f(amount_vnd) / np.where(revenue == 0, np.nan, revenue)
    return out


def instalment_to_net_inflow(history: Mapping[str, np.ndarray], amount_vnd,
                             term_months) -> np.ndarray:
    """Monthly annuity instalment at 12% a year / mean monthly net inflow (last 365 days);
    NaN unless the net inflow is positive."""
    net = _f(history["inflow_sum_365d"]) - _f(history["outflow_sum_365d"])
    # 1% a month; amount / 100 (not * 0.01) rounds like the SQL's exact DECIMAL product
    instalment = (_f(amount_vnd) / 100.0) / (1 - np.power(1.01, -_f(term_months)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = instalment / (net / 12.0)
    return np.where(net > 0, out, np.nan)
