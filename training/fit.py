"""Fitting: LightGBM with monotone constraints, then Platt calibration of its margin."""
from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from features.catalogue import FEATURES_BY_NAME


@dataclass
class FittedModel:
    """A LightGBM booster and its Platt calibration, with the parameters it was fitted with."""

    booster: lgb.Booster
    features: list[str]
    slope: float
    intercept: float
    params: dict

    def log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated log-odds of default of each row."""
        margin = self.booster.predict(frame[self.features].to_numpy(dtype=float), raw_score=True)
        return self.slope * margin + self.intercept


def lightgbm_params(n_rows: int, features: list[str], seed: int = 7) -> dict:
    """Conservative defaults for small, noisy credit data; leaves scale with the data size."""
    return {
        "objective": "binary",
        "learning_rate": 0.03,
        "num_leaves": 15,
        "max_depth": 5,
        "min_data_in_leaf": int(max(10, min(100, n_rows // 100))),
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 5.0,
        "monotone_constraints": [FEATURES_BY_NAME[f].risk for f in features],
        "monotone_constraints_method": "advanced",
        "seed": seed,
        "deterministic": True,
        "num_threads": 2,
        "verbose": -1,
    }


def fit(train: pd.DataFrame, calibration: pd.DataFrame, features: list[str],
        max_rounds: int = 1000, seed: int = 7) -> FittedModel:
    """Fit LightGBM on `train`, stopping early on `calibration`, then Platt-calibrate on `calibration`.

    RuntimeError when the calibration months reverse the ranking (leakage or drift)."""
    params = lightgbm_params(len(train), features, seed)
    dtrain = lgb.Dataset(train[features].to_numpy(dtype=float), label=train["label"],
                         feature_name=features, free_raw_data=False)
    dcal = lgb.Dataset(calibration[features].to_numpy(dtype=float), label=calibration["label"],
                       reference=dtrain)
    booster = lgb.train(params, dtrain, num_boost_round=max_rounds, valid_sets=[dcal],
                        valid_names=["calibration"],
                        callbacks=[lgb.early_stopping(50, verbose=False)])
    margin = booster.predict(calibration[features].to_numpy(dtype=float), raw_score=True)
    # Platt scaling: affine in the margin, so explanations stay exact (see credit_model.py)
    platt = LogisticRegression(C=1e6).fit(margin.reshape(-1, 1), calibration["label"])
    slope, intercept = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    if slope <= 0:
        raise RuntimeError("calibration found the model's ranking reversed on the calibration "
                           "months; the model is not usable. Check the data for leakage or drift.")
    params["num_boost_round"] = booster.best_iteration or booster.current_iteration()
    return FittedModel(booster=booster, features=features, slope=slope, intercept=intercept,
                       params=params)
