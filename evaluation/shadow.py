"""How a challenger scored in the shadow compares with the champion, on the same live applications.

The rows are what the service recorded (`records.shadow_rows`): for each scored answer, the champion's
PD and grade as answered and the challenger's for the same history, amount and term. No outcome is
needed: this is the evidence a model-risk team asks for before a promotion, long before labels mature.

- **grade agreement**: share of applications given the same grade;
- **rank correlation**: Spearman's rho between the two PDs (does the challenger order applicants the
  same way?);
- **the grade migration matrix**: champion grade (rows) by challenger grade (columns), counts;
- **the approval-rate change at the cut-off**: the share approved (PD at or under `cutoff_pd`, the
  operating cut-off, grades A to D) by the challenger minus by the champion.

Every figure has a bootstrap 95% interval (rows resampled together, so the pair stays paired); the
promotion gate (`governance.promotion.shadow_gate`) decides on the interval, not the point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from evaluation.champion import OPERATING_PD
from evaluation.metrics import Estimate
from training.scaling import GRADE_UPPER_PD

GRADES = tuple(g for g, _ in GRADE_UPPER_PD)
REQUIRED = ("champion_pd", "challenger_pd", "champion_grade", "challenger_grade", "champion_version",
            "challenger_version")


@dataclass(frozen=True)
class ShadowReport:
    subject_type: str
    challenger_version: str
    champion_versions: tuple[str, ...]
    n: int
    first_at: str | None
    last_at: str | None
    cutoff_pd: float
    grade_agreement: Estimate
    rank_correlation: Estimate
    approval_champion: float
    approval_challenger: float
    approval_change: Estimate
    mean_pd_change: Estimate
    migration: pd.DataFrame  # champion grade x challenger grade, counts

    def as_dict(self) -> dict:
        def est(e: Estimate) -> dict:
            return {"value": e.value, "low": e.low, "high": e.high}
        return {"subject_type": self.subject_type, "challenger_version": self.challenger_version,
                "champion_versions": list(self.champion_versions), "n": self.n,
                "first_at": self.first_at, "last_at": self.last_at, "cutoff_pd": self.cutoff_pd,
                "grade_agreement": est(self.grade_agreement), "rank_correlation": est(self.rank_correlation),
                "approval_champion": self.approval_champion, "approval_challenger": self.approval_challenger,
                "approval_change": est(self.approval_change), "mean_pd_change": est(self.mean_pd_change),
                "migration": {str(k): {str(c): int(v) for c, v in row.items()}
                              for k, row in self.migration.to_dict(orient="index").items()}}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def shadow_report(rows: pd.DataFrame, subject_type: str = "member", cutoff_pd: float = OPERATING_PD,
                  n_boot: int = 1000, seed: int = 0) -> ShadowReport:
    """The comparison of one challenger version with the champion over recorded shadow rows."""
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"shadow rows need the columns {', '.join(missing)}")
    if rows.empty:
        raise ValueError(f"no shadow rows recorded for {subject_type} subjects: is a version aliased "
                         "`challenger` in the registry, and has the service scored since?")
    versions = rows["challenger_version"].astype(str).unique()
    if len(versions) != 1:
        raise ValueError(f"the rows mix challenger versions {', '.join(sorted(versions))}: "
                         "report one at a time (--challenger-version)")
    if not 0 < cutoff_pd < 1:
        raise ValueError(f"cutoff_pd must lie in (0, 1), not {cutoff_pd}")
    champ = rows["champion_pd"].to_numpy(dtype=float)
    chall = rows["challenger_pd"].to_numpy(dtype=float)
    same = (rows["champion_grade"].to_numpy() == rows["challenger_grade"].to_numpy()).astype(float)
    a_champ, a_chall = (champ <= cutoff_pd).astype(float), (chall <= cutoff_pd).astype(float)
    n = len(rows)
    rng = np.random.default_rng(seed)
    boots = {"agree": [], "rho": [], "approval": [], "pd": []}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        boots["agree"].append(same[idx].mean())
        boots["rho"].append(_spearman(champ[idx], chall[idx]))
        boots["approval"].append(a_chall[idx].mean() - a_champ[idx].mean())
        boots["pd"].append((chall[idx] - champ[idx]).mean())

    def estimate(value: float, key: str) -> Estimate:
        values = np.asarray(boots[key], dtype=float)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return Estimate(value, float("nan"), float("nan"))
        low, high = np.percentile(values, [2.5, 97.5])
        return Estimate(float(value), float(low), float(high))

    migration = pd.crosstab(pd.Categorical(rows["champion_grade"], categories=GRADES),
                            pd.Categorical(rows["challenger_grade"], categories=GRADES), dropna=False)
    migration.index.name, migration.columns.name = "champion", "challenger"
    at = rows["at"] if "at" in rows.columns else None
    return ShadowReport(
        subject_type=subject_type, challenger_version=str(versions[0]),
        champion_versions=tuple(sorted(rows["champion_version"].astype(str).unique())), n=n,
        first_at=str(at.min()) if at is not None else None, last_at=str(at.max()) if at is not None else None,
        cutoff_pd=cutoff_pd, grade_agreement=estimate(same.mean(), "agree"),
        rank_correlation=estimate(_spearman(champ, chall), "rho"),
        approval_champion=float(a_champ.mean()), approval_challenger=float(a_chall.mean()),
        approval_change=estimate(a_chall.mean() - a_champ.mean(), "approval"),
        mean_pd_change=estimate((chall - champ).mean(), "pd"), migration=migration)
