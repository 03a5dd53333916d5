"""A fully transparent challenger: a WoE-binned logistic scorecard (optbinning).

Each feature is cut into a few bins (optimal binning, with the event rate forced monotone in the
feature's catalogued direction of risk; NaN goes to a "Missing" bin), each bin is replaced by its
weight of evidence, and a logistic regression is fitted on those. The result is a points table:
one number of points per (feature, bin), and a score is the sum of the points of the bins an
applicant falls in. The scaling is the same as the champion's (training/scaling.py):

    score = OFFSET + FACTOR * ln(odds_good) = scaling.score_from_log_odds(logit(PD))

so higher score = lower PD, 600 points at odds 50:1, 20 points to double the odds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from optbinning import BinningProcess, Scorecard
from sklearn.linear_model import LogisticRegression

from features.catalogue import FEATURES_BY_NAME
from training import scaling

# Direction of risk (+1 higher value = higher risk) -> monotone trend of the default (event) rate.
_TREND = {1: "ascending", -1: "descending", 0: "auto"}
# Missing/special bins keep their own empirical WoE (not 0), in the points table and in scoring.
_METRIC = "empirical"


def monotonic_trend(feature: str) -> str:
    """optbinning's monotone trend for a feature, from its direction of risk in the catalogue."""
    return _TREND[FEATURES_BY_NAME[feature].risk]


@dataclass
class ScorecardModel:
    """The transparent challenger: a WoE scorecard (optbinning) on the same features."""

    scorecard: Scorecard
    features: list[str]

    def _x(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[self.features].astype(float)

    def pd(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of default of each row."""
        return self.scorecard.predict_proba(self._x(frame))[:, 1]

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Score of each row: the sum of the points of its bins (= scaling of logit(PD))."""
        return self.scorecard.score(self._x(frame))

    def bins(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Bin id (the `bin_id` of points_table) each row falls in, one column per feature."""
        bp = self.scorecard.binning_process_
        return bp.transform(self._x(frame)[bp.variable_names], metric="indices",
                            metric_special=_METRIC, metric_missing=_METRIC)[self.features]

    def points_table(self) -> pd.DataFrame:
        """One row per (feature, bin): feature, bin_id, bin (text), points.

        The points already include each feature's equal share of the intercept and of the scaling
        offset, so a row's score is exactly the sum of the points of its bins."""
        t = self.scorecard.table(style="detailed")
        return pd.DataFrame({
            "feature": t["Variable"].astype(str).to_numpy(),
            "bin_id": t["Bin id"].astype(int).to_numpy(),
            "bin": [_bin_text(b) for b in t["Bin"]],
            "points": t["Points"].astype(float).to_numpy(),
        })


def _bin_text(b) -> str:
    if isinstance(b, (list, tuple, np.ndarray)):
        return "[" + ", ".join(map(str, b)) + "]"
    return str(b)


def fit_scorecard(train: pd.DataFrame, features: list[str], seed: int = 0) -> ScorecardModel:
    """Fit the scorecard on `train` (column "label", 1 = default) with the given features."""
    features = list(features)
    binning = BinningProcess(
        variable_names=features,
        binning_fit_params={f: {"monotonic_trend": monotonic_trend(f)} for f in features},
    )
    estimator = LogisticRegression(max_iter=1000, random_state=seed)
    card = Scorecard(
        binning_process=binning,
        estimator=estimator,
        scaling_method="pdo_odds",
        scaling_method_params={"pdo": scaling.PDO, "odds": scaling.BASE_ODDS,
                               "scorecard_points": scaling.BASE_SCORE},
        reverse_scorecard=False,  # optbinning: score = offset - factor * log-odds(default)
    )
    card.fit(train[features].astype(float), train["label"].astype(int).to_numpy(),
             metric_special=_METRIC, metric_missing=_METRIC)
    return ScorecardModel(scorecard=card, features=features)
