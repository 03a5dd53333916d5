"""Alert levels of the month-by-month monitor: one configuration, and the rules that read it.

Every threshold the monitor alerts on is a field of `AlertConfig` (defaults below, one place to
change them). A rule turns one month's measured figure into an `Alert` that names what moved, by how
much, against which threshold, so a risk analyst can act without opening the tables:

- PSI of the score and of every model feature against the training population: `watch` above
  `psi_watch` (0.1), `act` above `psi_act` (0.25), the bands of evaluation.stability; and only when
  the PSI is also above what sampling alone would give at that month's size (a month of 150
  applications has a PSI of about 0.06 by chance: see `psi_noise`), and above what one month of
  the training population itself reaches against the whole of it (evaluation.monitoring.
  reference_months_psi) (seasonal features and
  features shared by a cooperative's members move month to month by nature); so a small month does
  not cry wolf on every feature;
- the expected default rate (the mean calibrated PD) against the training population's: a relative
  change of `pd_change_watch` / `pd_change_act`;
- early delinquency (30+ days past due at 3 months on book) against the training population's
  rate: a ratio of `dpd30_ratio_watch` / `dpd30_ratio_act`;
- the realised AUC below the lower end of its estimate's interval (the calibrated PDs no longer
  rank as they promised): `act`; the realised default rate outside the expected one's interval:
  `watch`;
- a reason code whose share as the first reason moves by `reason_share_watch` / `reason_share_act`
  (absolute) from the training population's: a reason that suddenly dominates;
- the share of new entrants (applicants on the platform for less than `new_entrant_years`, by the
  `tenure_years` feature) moving by `new_entrant_share_watch` / `new_entrant_share_act` (absolute)
  from the training population's, with the month's 95% interval excluding it: a wave of newcomers
  (a programme founding cooperatives, a new partner) changes who applies before any feature's
  distribution over everyone has to.

A month with fewer than `min_applications` scored applications is not judged (said in its row).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import chi2

from evaluation import stability

LEVELS = ("watch", "act")


@dataclass(frozen=True)
class AlertConfig:
    """Every threshold of the monitor's alerts (see the module docstring)."""

    psi_watch: float = stability.STABLE_BELOW  # 0.1
    psi_act: float = stability.ACT_ABOVE  # 0.25
    psi_noise_quantile: float = 0.999  # a PSI below this quantile of pure sampling is noise
    psi_bins: int = 10
    # features that drift by design: on the synthetic platform members join only in its first two
    # years, so tenure grows a year a year; alerted at `watch`, never `act`
    psi_watch_only: tuple[str, ...] = ("tenure_years",)
    pd_change_watch: float = 0.25  # relative change of the mean PD
    pd_change_act: float = 0.5
    dpd30_ratio_watch: float = 1.5  # early delinquency rate / the training population's
    dpd30_ratio_act: float = 2.0
    dpd30_min_loans: int = 50  # loans 3 months on book needed to judge early delinquency
    reason_share_watch: float = 0.15  # absolute change of a code's share as the first reason
    reason_share_act: float = 0.25
    new_entrant_years: float = 1.5  # tenure below this: a new entrant (12 months of history needed)
    new_entrant_share_watch: float = 0.10  # absolute change of the share of new entrants
    new_entrant_share_act: float = 0.20
    min_applications: int = 50  # fewer scored applications in a month: not judged
    min_labelled_defaults: int = 5  # fewer defaults matured in a month: no realised AUC

    def as_params(self) -> dict[str, float]:
        """The configuration as MLflow parameters (`alert_<field>`)."""
        return {f"alert_{k}": (",".join(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Alert:
    """One alert: the month, its level, what moved (kind and target, e.g. psi / inflow_sum_90d),
    the value measured, the threshold it crossed and a sentence saying so."""

    month: str
    level: str
    kind: str
    target: str
    value: float
    threshold: float
    message: str


def psi_noise(n_actual: int, n_expected: int, config: AlertConfig) -> float:
    """The PSI sampling alone exceeds with probability 1 - psi_noise_quantile: PSI of two samples of
    one population is about chi-square(bins - 1) x (1/n_actual + 1/n_expected)."""
    if n_actual <= 0 or n_expected <= 0:
        return float("inf")
    return float(chi2.ppf(config.psi_noise_quantile, config.psi_bins - 1)
                 * (1.0 / n_actual + 1.0 / n_expected))


def psi_alert(month: str, column: str, value: float, noise: float, baseline: float, n: int,
              config: AlertConfig) -> Alert | None:
    """`watch` / `act` when the PSI is above its band, above sampling noise and above the largest
    PSI a month of the training population showed (`baseline`); `watch` at most for the features
    of `psi_watch_only`."""
    floor = max(noise, baseline)
    if not np.isfinite(value) or value <= floor:
        return None
    for level, bound in (("act", config.psi_act), ("watch", config.psi_watch)):
        if value > bound:
            if level == "act" and column in config.psi_watch_only:
                level = "watch"
            what = "the score" if column == "score" else f"feature {column}"
            return Alert(month, level, "psi", column, value, max(bound, floor),
                         f"PSI of {what} is {value:.3f} (above {bound:g}, above sampling noise "
                         f"{noise:.3f} at {n} applications and above {baseline:.3f}, what the "
                         f"training months' own PSI reaches)")
    return None


def ratio_alert(month: str, kind: str, target: str, value: float, reference: float,
                watch: float, act: float, what: str) -> Alert | None:
    """`watch` / `act` when value / reference reaches a bound (both sides for a change)."""
    if not (np.isfinite(value) and np.isfinite(reference)) or reference <= 0:
        return None
    ratio = value / reference
    for level, bound in (("act", act), ("watch", watch)):
        if ratio >= bound:
            return Alert(month, level, kind, target, value, reference * bound,
                         f"{what} is {value:.2%}, {ratio:.2f} times the training population's "
                         f"{reference:.2%} (bound x{bound:g})")
    return None


def change_alert(month: str, kind: str, target: str, value: float, reference: float,
                 watch: float, act: float, what: str, relative: bool) -> Alert | None:
    """`watch` / `act` when |value - reference| (relative to the reference if asked) passes a bound."""
    if not (np.isfinite(value) and np.isfinite(reference)) or (relative and reference <= 0):
        return None
    change = (value - reference) / reference if relative else value - reference
    for level, bound in (("act", act), ("watch", watch)):
        if abs(change) > bound:
            size = f"{change:+.0%}" if relative else f"{change:+.1%} points"
            return Alert(month, level, kind, target, value, bound,
                         f"{what} is {value:.2%} against {reference:.2%} in the training population "
                         f"({size}; bound {bound:g})")
    return None


def interval_alert(month: str, kind: str, value: float, low: float, high: float, level: str,
                   what: str, only_below: bool = False) -> Alert | None:
    """`level` when a realised value falls outside its estimate's interval."""
    if not all(np.isfinite(x) for x in (value, low, high)):
        return None
    if value < low:
        return Alert(month, level, kind, kind, value, low,
                     f"realised {what} {value:.3f} is below its estimate's interval "
                     f"[{low:.3f}, {high:.3f}]")
    if value > high and not only_below:
        return Alert(month, level, kind, kind, value, high,
                     f"realised {what} {value:.3f} is above its estimate's interval "
                     f"[{low:.3f}, {high:.3f}]")
    return None


def share_alert(month: str, kind: str, target: str, value: float, low: float, high: float,
                reference: float, watch: float, act: float, what: str) -> Alert | None:
    """`watch` / `act` when a share moves by more than a bound from the reference's and its 95%
    interval [low, high] excludes the reference (a small month's share is not judged on its point)."""
    if not all(np.isfinite(x) for x in (value, low, high, reference)) or low <= reference <= high:
        return None
    change = value - reference
    for level, bound in (("act", act), ("watch", watch)):
        if abs(change) > bound:
            return Alert(month, level, kind, target, value, bound,
                         f"{what} is {value:.1%} [{low:.1%}, {high:.1%}] against {reference:.1%} in "
                         f"the training population ({change:+.1%} points; bound {bound:g})")
    return None
