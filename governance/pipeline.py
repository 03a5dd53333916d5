"""Train a subject's model and put the new version through the promotion gates, in one call.

Training registers a version; only `governance.promotion.promote` may make it `champion` (AUC
against the champion's, calibration, feature stability and fairness, the first version included).
A refused version keeps the alias `challenger` and the gates' reasons as tags. The chain lives here,
above both, so that training never imports evaluation or governance.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

from evaluation.backtest import run_backtest

from governance.promotion import Decision, Gates, promote
from settings import Paths
from training.fit import MIN_CALIBRATION_DEFAULTS
from training.train import TrainResult, train_subject


@dataclass
class GatedRun(TrainResult):
    """A training run and the promotion gates' verdict on the version it registered."""

    decision: Decision = field(kw_only=True)

    @property
    def promoted(self) -> bool:
        """Whether the new version is now champion."""
        return self.decision.promoted


def train_and_promote(paths: Paths, subject: str, progress: Callable[[str], None] = lambda _: None,
                      gates: Gates = Gates(), n_boot: int = 200,
                      min_calibration_defaults: int = MIN_CALIBRATION_DEFAULTS,
                      reject_inference: str = "measured") -> GatedRun:
    """Backtest as deployed, train and register a new version of `subject`'s model (the backtest
    is its logged evidence), then run the promotion gates on it.

    `seconds` counts both steps; `n_boot` is the bootstrap size of the backtest's and the gates'
    CIs; `min_calibration_defaults`: below it no calibrator is fitted (training.fit);
    `reject_inference`: how declined applicants enter the model (training.reject_inference)."""
    started = time.perf_counter()
    backtest = functools.partial(run_backtest, n_boot=n_boot)
    trained = train_subject(paths, subject, progress, backtest=backtest,
                            min_calibration_defaults=min_calibration_defaults,
                            reject_inference=reject_inference)
    progress("checking the promotion gates against the champion")
    decision = promote(paths, subject, trained.version, gates, n_boot=n_boot)
    return GatedRun(**{**vars(trained), "seconds": time.perf_counter() - started}, decision=decision)
