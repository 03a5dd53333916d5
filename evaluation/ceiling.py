"""How good could a model on these features be? The feature ceiling, on synthetic data.

The generator records the true PD of every application and each driver's term of its log-odds
(`true_pd` table: driver_creditworthiness, driver_revenue_shock, ...). Regressing the true log-odds
on the features, with no label noise at all, gives the best PD any model of these features could
learn: the *ceiling*. The gap from a model to the true PD then splits in two:

    information  true PD AUC - ceiling AUC   what the features do not carry: no model can close it
    estimation   ceiling AUC - model AUC     what a better fit on the same features could still win

`driver_table` says which driver the missing information belongs to: each driver's share of the
true log-odds' variance, how much of it the features recover (R² of the driver regressed on the
features, measured on later applications than it was fitted on), and whether it can be seen at all
before the application date.
"""
from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

DRIVER_PREFIX = "driver_"
# What of each driver exists in the data before the application date (the generator's terms).
VISIBLE_BEFORE_APPLICATION = {
    "creditworthiness": "partly: latent, seen only through the behaviour it drives",
    "cooperative_health": "partly: latent, seen through the cooperative's own history",
    "revenue_shock": "mostly not: a shock of the application month, of which only the days before "
                     "the application are in the data",
    "leverage": "yes: the amount asked against the revenue before the date",
    "burden": "yes: the instalment against the revenue before the date",
    "sector": "yes: the member's business sector",
    "existing_loan": "yes: the loans and repayments before the date",
    "harvest": "yes: the harvest calendar of the sector and region",
}
_PARAMS = dict(n_estimators=400, learning_rate=0.05, num_leaves=15, min_child_samples=20,
               subsample=1.0, colsample_bytree=1.0, random_state=7, deterministic=True,
               force_row_wise=True, n_jobs=1, verbose=-1)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


@dataclass
class CeilingModel:
    """A regressor of the true log-odds on the features (fitted without labels)."""

    features: list[str]
    regressor: lgb.LGBMRegressor

    def log_odds(self, rows: pd.DataFrame) -> np.ndarray:
        """The ceiling's log-odds of default for `rows` (feature columns in any order)."""
        return self.regressor.predict(rows[self.features].to_numpy(dtype=float))

    def pd(self, rows: pd.DataFrame) -> np.ndarray:
        """The ceiling's PD for `rows`."""
        return 1.0 / (1.0 + np.exp(-self.log_odds(rows)))


def fit_ceiling(train: pd.DataFrame, features: list[str]) -> CeilingModel:
    """Fit the ceiling on `train` rows that carry `true_pd` (the labels are never used).

    ValueError when a row has no true PD (real data has none: the ceiling is a synthetic-data tool)."""
    if "true_pd" not in train or train["true_pd"].isna().any():
        raise ValueError("the feature ceiling needs the generator's true_pd for every training row; "
                         "it exists only for synthetic data")
    regressor = lgb.LGBMRegressor(**_PARAMS)
    regressor.fit(train[features].to_numpy(dtype=float), _logit(train["true_pd"].to_numpy()))
    return CeilingModel(list(features), regressor)


def _r2(actual: np.ndarray, predicted: np.ndarray) -> float:
    total = float(np.sum((actual - actual.mean()) ** 2))
    return float("nan") if total == 0 else 1.0 - float(np.sum((actual - predicted) ** 2)) / total


def driver_table(train: pd.DataFrame, test: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """One row per driver of the true log-odds (columns `driver_*` on both frames).

    Columns: driver; share (of the true log-odds' variance on `test`); r2_from_features (the driver
    regressed on the features on `train`, measured on `test`); unexplained (share x (1 - R²),
    floored at 0: the part of the true risk this driver leaves out of reach); visible (before the
    application date). A last row `all` is the true log-odds itself (the ceiling's own R²)."""
    drivers = [c for c in test.columns if c.startswith(DRIVER_PREFIX)]
    if not drivers:
        raise ValueError("no driver_* columns: the true_pd table of this data set has no drivers "
                         "(regenerate it with `coopscore generate`)")
    x_train, x_test = train[features].to_numpy(dtype=float), test[features].to_numpy(dtype=float)
    total = test[drivers].to_numpy().sum(axis=1)
    variance = float(np.var(total))
    rows = []
    for column in drivers:
        name = column[len(DRIVER_PREFIX):]
        actual = test[column].to_numpy()
        share = float(np.var(actual)) / variance if variance else float("nan")
        if np.var(train[column].to_numpy()) == 0:
            r2 = float("nan")  # a constant driver: nothing to recover
        else:
            fitted = lgb.LGBMRegressor(**_PARAMS).fit(x_train, train[column].to_numpy())
            r2 = _r2(actual, fitted.predict(x_test))
        rows.append({"driver": name, "share": share, "r2_from_features": r2,
                     "unexplained": share * (1 - max(0.0, r2)) if r2 == r2 else share,
                     "visible": VISIBLE_BEFORE_APPLICATION.get(name, "unknown")})
    whole = lgb.LGBMRegressor(**_PARAMS).fit(x_train, train[drivers].to_numpy().sum(axis=1))
    r2_all = _r2(total, whole.predict(x_test))
    rows.append({"driver": "all", "share": 1.0, "r2_from_features": r2_all,
                 "unexplained": 1 - max(0.0, r2_all), "visible": ""})
    return pd.DataFrame(rows)
