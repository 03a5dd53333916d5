"""The model we register: a LightGBM booster, its Platt calibration, and the score scaling.

It is an MLflow pyfunc model, so `mlflow.pyfunc.load_model("models:/<name>@champion").predict(X)`
gives PD, score and grade with nothing else installed but coopscore. `explain` gives the exact
decomposition the service returns: calibrated log-odds = base value + sum of contributions.

Why exact: LightGBM's own TreeSHAP (`pred_contrib=True`) splits the raw margin exactly into one
contribution per feature plus the expected value. Platt calibration is affine in the margin
(log-odds = a * margin + b), so scaling each contribution by `a` and the base by `a` and `b`
keeps the sum exact for the calibrated log-odds, and the score is affine in that again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from training import scaling


@dataclass
class Explanation:
    """Exact additive explanation: base_value + the sum of a row's contributions = its log-odds."""

    log_odds: np.ndarray  # (n,) calibrated log-odds of default
    base_value: float  # the same for every row
    contributions: np.ndarray  # (n, n_features), in log-odds


class CreditModel(mlflow.pyfunc.PythonModel):
    """Booster + calibration + scaling. Parameters live in the `meta` artifact (JSON)."""

    def load_context(self, context) -> None:
        """Load the booster and the calibration from the model's artifacts (MLflow calls this)."""
        self.booster = lgb.Booster(model_file=context.artifacts["booster"])
        with open(context.artifacts["meta"], encoding="utf-8") as fh:
            self.meta = json.load(fh)
        self.features: list[str] = self.meta["features"]
        self.slope = float(self.meta["calibration"]["slope"])
        self.intercept = float(self.meta["calibration"]["intercept"])

    # -- what MLflow calls --------------------------------------------------------------------
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """PD, score, grade and log-odds of each row (the MLflow pyfunc interface)."""
        log_odds = self.log_odds(model_input)
        pd_values = scaling.pd_from_log_odds(log_odds)
        return pd.DataFrame({
            "pd": pd_values,
            "score": np.round(scaling.score_from_log_odds(log_odds), 1),
            "grade": scaling.grade_from_pd(pd_values),
            "log_odds": log_odds,
        })

    # -- what the service calls ---------------------------------------------------------------
    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's features of `frame` as a float matrix, in the model's order."""
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"model input is missing features: {missing}")
        return frame[self.features].to_numpy(dtype=float)

    def log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated log-odds of default of each row."""
        margin = self.booster.predict(self.matrix(frame), raw_score=True)
        return self.slope * margin + self.intercept

    def explain(self, frame: pd.DataFrame) -> Explanation:
        """Each row's log-odds split into a base value and one contribution per feature (TreeSHAP)."""
        contrib = self.booster.predict(self.matrix(frame), pred_contrib=True)
        # last column is the expected margin; the same for every row
        base_margin = float(contrib[0, -1]) if len(contrib) else 0.0
        contributions = self.slope * contrib[:, :-1]
        base_value = self.slope * base_margin + self.intercept
        log_odds = base_value + contributions.sum(axis=1)
        return Explanation(log_odds=log_odds, base_value=base_value, contributions=contributions)
