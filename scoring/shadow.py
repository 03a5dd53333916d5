"""The challenger in the shadow: what the version aliased `challenger` would answer to live traffic.

The champion answers; the challenger is scored afterwards on the very same inputs (the scorer's
history row for the subject and date, the application's amount and term) through the same columnar
path as the answer (`_Plan.matrix`, the booster's margin, the Platt calibration, the scaling), without
TreeSHAP: nobody is shown the challenger's reasons. serving/shadow.py runs it off the answer's
critical path and records the rows; evaluation/shadow.py compares them.

A challenger whose features the snapshot does not have cannot be shadowed: it is reported (the
status says why) and skipped, never half-scored.
"""
from __future__ import annotations

import logging

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from governance.promotion import CHALLENGER
from scoring.scorer import Scorer, _Plan, load_version
from training import registry, scaling

log = logging.getLogger("coopscore.shadow")


def challenger_version(subject: str) -> tuple[str, str] | None:
    """(version, run id) of the subject's `challenger` alias, or None when there is none."""
    try:
        v = MlflowClient().get_model_version_by_alias(registry.model_name(subject), CHALLENGER)
    except MlflowException:
        return None
    return str(v.version), v.run_id or ""


class ShadowModels:
    """The challenger of each subject type, loaded beside the scorer's champions."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.plans: dict[str, _Plan] = {}
        self.versions: dict[str, str] = {}
        self.failed: dict[str, str] = {}  # subject -> "version N: why"

    def refresh(self) -> None:
        """Follow the registry's `challenger` alias: load a new version, drop a removed alias."""
        for subject in self.scorer.plans:
            found = challenger_version(subject)
            if found is not None and found[0] == self.scorer.served_version(subject):
                found = None  # the champion itself: nothing to compare
            if found is None:
                self.plans.pop(subject, None)
                self.versions.pop(subject, None)
                continue
            version, run_id = found
            if self.versions.get(subject) == version or self.failed.get(subject, "").startswith(f"version {version}:"):
                continue
            try:
                loaded = load_version(registry.model_name(subject), version, run_id)
                plan = _Plan(loaded, self.scorer.columns)
            except Exception as exc:  # a broken challenger must never disturb the champion's answers
                self.failed[subject] = f"version {version}: {exc}"
                log.warning("the %s challenger (version %s) cannot be shadowed: %s", subject, version, exc)
                continue
            self.plans[subject], self.versions[subject] = plan, version
            self.failed.pop(subject, None)

    def score(self, subject: str, history: np.ndarray, amount, term) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(PD, score, grade) of the challenger for history rows and their amounts and terms."""
        plan = self.plans[subject]
        x = plan.matrix(history, np.asarray(amount, dtype=float), np.asarray(term, dtype=float))
        margin = plan.model.booster.predict(x, raw_score=True, num_threads=1)
        log_odds = plan.model.slope * margin + plan.model.intercept
        pd_values = scaling.pd_from_log_odds(log_odds)
        return pd_values, scaling.score_from_log_odds(log_odds), scaling.grade_from_pd(pd_values)
