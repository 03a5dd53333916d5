"""The models a lender's table is offered to, each a small scikit-learn style object.

Every candidate takes its hyper-parameters in `__init__` (stored, nothing else), learns in
`fit(X, y, dates=None)` and gives, for a frame X prepared like the training frame (float64 and
pandas `category` columns, see roles.prepare):

    log_odds(X)       ln(PD / (1 - PD)) per row
    pd(X)             the probability of default per row
    contributions(X)  one column per feature of X plus "base"; each row sums exactly (to rounding,
                      far below 1e-9) to log_odds(X), so a reason is a term of the sum, not an
                      approximation of it

The candidates:

* `GbmCandidate`: LightGBM with native categorical splits, shallow trees at a low learning rate
  (small loan books need near-additive trees and many of them). The number of trees comes from
  early stopping inside the training rows: the rows are cut into `calibration_folds` stratified
  parts, a booster per part is trained on the others and early-stopped on it, and the final
  booster is trained on every row with the mean of their best iterations. The out-of-fold margins
  of those boosters then fit a Platt scaling (a logistic regression of the outcome on the
  margin). Platt scaling is affine in the margin, so the calibrated log-odds is
  `a * margin + b` and the contributions are LightGBM's exact TreeSHAP terms times `a`, with
  `a * expected value + b` as the base: the sum stays exact.
* `ScorecardCandidate`: a WoE scorecard. optbinning's BinningProcess bins every feature (category
  columns as categorical variables; a missing value has its own bin with its empirical WoE; a
  category never seen in training gets WoE 0, neutral), and a logistic regression with L2 penalty
  `C` is fitted on the WoE values. Contribution of a feature = its coefficient times its WoE;
  base = the intercept. `points_table()` gives the points of every bin on the project's scale.
* `BlendCandidate`: the weighted mean of the GBM's and the scorecard's calibrated log-odds
  (weight 0.5: the plain mean); the contributions are the same weighted mean of theirs.
* `LogisticBaseline`: one-hot categories (a missing category is its own level) and standardised
  numbers (median-imputed, with a missing indicator), plain LogisticRegression (C = 1): what a
  competent analyst fits first. It is the yardstick, never chosen; its contributions are exact
  too (the coefficients' terms of each feature summed).

`GRIDS` holds the small hyper-parameter grids searched inside each outer fold (selection.py): the
same for every table, nothing tuned by hand per data set.
"""
from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
from optbinning import BinningProcess
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from loan_book.errors import TableError
from training import scaling

CANDIDATES = ("gbm", "scorecard", "blend")
BASELINE = "logistic"

# Searched inside every outer fold (selection.py), for every table alike. GBM: near-additive trees
# at a low learning rate for small books, deeper and faster ones for books with more rows or
# interactions; min_child_samples keeps leaves from fitting a handful of loans.
GRIDS: dict[str, list[dict]] = {
    "gbm": [
        {"num_leaves": 4, "min_child_samples": 20, "learning_rate": 0.02},
        {"num_leaves": 8, "min_child_samples": 40, "learning_rate": 0.02},
        {"num_leaves": 16, "min_child_samples": 80, "learning_rate": 0.05},
    ],
    # The L2 penalty of the logistic regression on WoE values (smaller C: stronger shrinkage).
    "scorecard": [{"C": 0.05}, {"C": 0.2}, {"C": 1.0}],
    # The blend's components take the GBM's and the scorecard's chosen parameters; only the weight
    # of the GBM is searched here. The plain mean is the recipe.
    "blend": [{"weight": 0.5}],
    "logistic": [{}],
}

# The WoE of a missing (or special) value is the empirical one of its own bin, not 0.
_WOE = dict(metric="woe", metric_missing="empirical", metric_special="empirical")


def _check_fitted(model, attribute: str) -> None:
    if not hasattr(model, attribute):
        raise RuntimeError(f"{type(model).__name__} is not fitted: call fit(X, y) first.")


def _category_columns(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]


def _check_xy(X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """y as int 0/1 of X's length; TableError if it is not usable."""
    y = np.asarray(y).astype(int).ravel()
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows and y {len(y)}")
    if not np.isin(y, (0, 1)).all() or y.min() == y.max():
        raise TableError("The outcome must hold both 0 (repaid) and 1 (defaulted) to fit a model.")
    return y


# --------------------------------------------------------------------------- GBM


class GbmCandidate:
    """LightGBM with native categories, trees by early stopping, Platt-calibrated out of fold.

    Parameters: `num_leaves`, `min_child_samples`, `learning_rate` (searched, see GRIDS);
    `calibration_folds` the stratified parts of the training rows used for early stopping and for
    the out-of-fold margins Platt scaling is fitted on; `seed`.
    """

    FIXED = {
        "objective": "binary",
        "feature_fraction": 0.7,  # decorrelates trees on a few strong columns
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 5.0,  # shrinks leaf values fitted on few loans
        "max_cat_to_onehot": 32,  # one-against-the-rest splits: less overfitting on small books
        "verbose": -1,
        "num_threads": 1,  # small tables train fastest on one thread; selection runs folds in parallel
    }
    MAX_TREES = 5000
    PATIENCE = 150

    def __init__(self, num_leaves: int = 4, min_child_samples: int = 20, learning_rate: float = 0.02,
                 calibration_folds: int = 4, seed: int = 0) -> None:
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.learning_rate = learning_rate
        self.calibration_folds = calibration_folds
        self.seed = seed

    def _params(self) -> dict:
        return {**self.FIXED, "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples,
                "min_data_per_group": self.min_child_samples,  # same floor for category splits
                "learning_rate": self.learning_rate, "seed": self.seed}

    def fit(self, X: pd.DataFrame, y: np.ndarray, dates: pd.Series | None = None) -> "GbmCandidate":
        """Fit on X, y (1 = default). `dates` is accepted for a uniform interface and not used:
        calibration folds are stratified random parts of the training rows."""
        y = _check_xy(X, y)
        params = self._params()
        margins = np.zeros(len(y))
        best = []
        folds = StratifiedKFold(self.calibration_folds, shuffle=True, random_state=self.seed)
        for part, held in folds.split(np.zeros(len(y)), y):
            fit_set = lgb.Dataset(X.iloc[part], y[part])
            held_set = lgb.Dataset(X.iloc[held], y[held], reference=fit_set)
            booster = lgb.train(params, fit_set, num_boost_round=self.MAX_TREES,
                                valid_sets=[held_set],
                                callbacks=[lgb.early_stopping(self.PATIENCE, verbose=False)])
            best.append(max(booster.best_iteration, 1))
            margins[held] = booster.predict(X.iloc[held], raw_score=True,
                                            num_iteration=booster.best_iteration)
        self.n_trees_ = int(round(np.mean(best)))
        self.booster_ = lgb.train(params, lgb.Dataset(X, y), num_boost_round=self.n_trees_)
        # Platt scaling, unpenalised (C large): log-odds = slope * margin + intercept.
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(margins[:, None], y)
        self.slope_ = float(platt.coef_[0, 0])
        self.intercept_ = float(platt.intercept_[0])
        self.features_ = list(X.columns)
        return self

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's raw (uncalibrated) score per row."""
        _check_fitted(self, "booster_")
        return self.booster_.predict(X[self.features_], raw_score=True)

    def log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated log-odds of default per row."""
        return self.slope_ * self.margin(X) + self.intercept_

    def pd(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of default per row."""
        return expit(self.log_odds(X))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Exact TreeSHAP terms on the calibrated log-odds scale, one column per feature, plus base."""
        _check_fitted(self, "booster_")
        shap = self.booster_.predict(X[self.features_], pred_contrib=True)
        out = pd.DataFrame(self.slope_ * shap[:, :-1], columns=self.features_, index=X.index)
        out["base"] = self.slope_ * shap[:, -1] + self.intercept_
        return out


# --------------------------------------------------------------------------- scorecard


def _as_objects(X: pd.DataFrame, categories: list[str]) -> pd.DataFrame:
    """optbinning reads categorical variables as object columns with NaN for a missing value."""
    out = X.copy()
    for column in categories:
        out[column] = X[column].astype(object).where(X[column].notna(), np.nan)
    return out


class ScorecardCandidate:
    """WoE scorecard: optbinning bins each feature, a logistic regression weighs the WoE values.

    Parameters: `C` the inverse L2 penalty of the logistic regression (searched, see GRIDS);
    `seed`. Binning uses optbinning's defaults (up to 20 pre-bins of at least 5% of the rows,
    event rate trend chosen by the solver), the same for every table.
    """

    def __init__(self, C: float = 0.2, seed: int = 0) -> None:
        self.C = C
        self.seed = seed

    def fit_binning(self, X: pd.DataFrame, y: np.ndarray) -> BinningProcess:
        """The binning alone (it does not depend on C: selection fits it once for the whole grid)."""
        y = _check_xy(X, y)
        categories = _category_columns(X)
        binning = BinningProcess(variable_names=list(X.columns), categorical_variables=categories)
        with warnings.catch_warnings():  # optbinning warns on columns with few distinct values
            warnings.simplefilter("ignore")
            binning.fit(_as_objects(X, categories), y)
        return binning

    def fit(self, X: pd.DataFrame, y: np.ndarray, dates: pd.Series | None = None,
            binning: BinningProcess | None = None) -> "ScorecardCandidate":
        """Fit on X, y (1 = default); `binning` reuses a BinningProcess already fitted on X, y.
        `dates` is accepted for a uniform interface and not used."""
        y = _check_xy(X, y)
        self.features_ = list(X.columns)
        self.categories_ = _category_columns(X)
        self.binning_ = binning if binning is not None else self.fit_binning(X, y)
        woe = self.woe(X)
        self.logistic_ = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed).fit(
            woe.to_numpy(), y)
        return self

    def woe(self, X: pd.DataFrame) -> pd.DataFrame:
        """The WoE value of each row's bin, one column per feature."""
        _check_fitted(self, "binning_")
        frame = _as_objects(X[self.features_], self.categories_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            woe = self.binning_.transform(frame, **_WOE)
        return pd.DataFrame(woe[self.features_].to_numpy(dtype=float), columns=self.features_,
                            index=X.index)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Coefficient x WoE per feature, and the intercept as base; each row sums to log_odds."""
        _check_fitted(self, "logistic_")
        out = self.woe(X) * self.logistic_.coef_[0]
        out["base"] = float(self.logistic_.intercept_[0])
        return out

    def log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of default per row: the sum of the contributions."""
        return self.contributions(X).sum(axis=1).to_numpy()

    def pd(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of default per row."""
        return expit(self.log_odds(X))

    def points_table(self) -> pd.DataFrame:
        """One row per (feature, bin): feature, bin (text), woe, log_odds, points; plus a "base" row.

        Points are on the project's scale (training.scaling: 600 at odds 50:1, 20 points to double
        the odds; a bin that raises the risk costs points). A row's score is the base row's points
        plus the points of its bins: scaling.score_from_log_odds(log_odds)."""
        _check_fitted(self, "logistic_")
        rows = []
        for feature, coef in zip(self.features_, self.logistic_.coef_[0]):
            table = self.binning_.get_binned_variable(feature).binning_table.build()
            table = table[table.index != "Totals"]
            for bin_, woe in zip(table["Bin"], table["WoE"].astype(float)):
                text = ("[" + ", ".join(map(str, bin_)) + "]"
                        if isinstance(bin_, (list, tuple, np.ndarray)) else str(bin_))
                rows.append((feature, text, woe, coef * woe))
        out = pd.DataFrame(rows, columns=["feature", "bin", "woe", "log_odds"])
        out["points"] = scaling.points_from_log_odds(out["log_odds"])
        intercept = float(self.logistic_.intercept_[0])
        base = pd.DataFrame([{"feature": "base", "bin": "", "woe": np.nan, "log_odds": intercept,
                              "points": float(scaling.score_from_log_odds(intercept))}])
        return pd.concat([out, base], ignore_index=True)


# --------------------------------------------------------------------------- blend


class BlendCandidate:
    """Weighted mean of the GBM's and the scorecard's calibrated log-odds (weight 0.5: the mean).

    Parameters: `gbm` and `scorecard` the parameters of the two components (dicts), `weight` the
    GBM's share of the log-odds; `seed`.
    """

    def __init__(self, gbm: dict | None = None, scorecard: dict | None = None, weight: float = 0.5,
                 seed: int = 0) -> None:
        self.gbm = gbm
        self.scorecard = scorecard
        self.weight = weight
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: np.ndarray, dates: pd.Series | None = None) -> "BlendCandidate":
        """Fit both components on X, y (1 = default)."""
        self.gbm_ = GbmCandidate(**(self.gbm or {}), seed=self.seed).fit(X, y, dates)
        self.scorecard_ = ScorecardCandidate(**(self.scorecard or {}), seed=self.seed).fit(X, y, dates)
        return self

    @classmethod
    def from_fitted(cls, gbm: GbmCandidate, scorecard: ScorecardCandidate,
                    weight: float = 0.5) -> "BlendCandidate":
        """A blend of two components already fitted on the same rows (no refit)."""
        blend = cls(gbm={"num_leaves": gbm.num_leaves, "min_child_samples": gbm.min_child_samples,
                         "learning_rate": gbm.learning_rate}, scorecard={"C": scorecard.C},
                    weight=weight, seed=gbm.seed)
        blend.gbm_, blend.scorecard_ = gbm, scorecard
        return blend

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """The same weighted mean of the components' contributions, column by column."""
        _check_fitted(self, "gbm_")
        g, s = self.gbm_.contributions(X), self.scorecard_.contributions(X)
        return self.weight * g + (1 - self.weight) * s[g.columns]

    def log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of default per row: the weighted mean of the components'."""
        _check_fitted(self, "gbm_")
        return self.weight * self.gbm_.log_odds(X) + (1 - self.weight) * self.scorecard_.log_odds(X)

    def pd(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of default per row."""
        return expit(self.log_odds(X))


# --------------------------------------------------------------------------- baseline


class LogisticBaseline:
    """One-hot categories + standardised numbers (median-imputed, missing indicator), plain logistic.

    Parameters: `C` (1.0, scikit-learn's default: the baseline is not tuned); `seed`.
    """

    def __init__(self, C: float = 1.0, seed: int = 0) -> None:
        self.C = C
        self.seed = seed

    def _design(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """The design matrix and, for each of its columns, the feature it comes from."""
        blocks, owners = [], []
        for column in self.features_:
            values = X[column]
            if column in self.levels_:
                text = values.astype(object)
                for level in self.levels_[column]:
                    hit = text.isna() if level is None else (text == level)
                    blocks.append(hit.to_numpy(dtype=float))
                    owners.append(column)
            else:
                median, mean, sd, indicator = self.numbers_[column]
                raw = values.to_numpy(dtype=float)
                missing = np.isnan(raw)
                blocks.append((np.where(missing, median, raw) - mean) / sd)
                owners.append(column)
                if indicator:
                    blocks.append(missing.astype(float))
                    owners.append(column)
        return np.column_stack(blocks), owners

    def fit(self, X: pd.DataFrame, y: np.ndarray, dates: pd.Series | None = None) -> "LogisticBaseline":
        """Fit on X, y (1 = default); `dates` is not used."""
        y = _check_xy(X, y)
        self.features_ = list(X.columns)
        self.levels_: dict[str, list] = {}
        self.numbers_: dict[str, tuple[float, float, float, bool]] = {}
        for column in _category_columns(X):
            seen = X[column].dropna().astype(object).unique().tolist()
            # A level never seen in training gets no column (all zeros); missing is its own level.
            self.levels_[column] = sorted(seen, key=str) + ([None] if X[column].isna().any() else [])
        for column in self.features_:
            if column in self.levels_:
                continue
            raw = X[column].to_numpy(dtype=float)
            missing = np.isnan(raw)
            median = float(np.median(raw[~missing])) if (~missing).any() else 0.0
            filled = np.where(missing, median, raw)
            sd = float(filled.std()) or 1.0
            self.numbers_[column] = (median, float(filled.mean()), sd, bool(missing.any()))
        design, self.owners_ = self._design(X)
        self.logistic_ = LogisticRegression(C=self.C, max_iter=5000, random_state=self.seed).fit(
            design, y)
        return self

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """The terms coefficient x value summed per feature, the intercept as base."""
        _check_fitted(self, "logistic_")
        design, owners = self._design(X)
        terms = design * self.logistic_.coef_[0]
        out = pd.DataFrame(0.0, index=X.index, columns=self.features_)
        for j, owner in enumerate(owners):
            out[owner] = out[owner].to_numpy() + terms[:, j]
        out["base"] = float(self.logistic_.intercept_[0])
        return out

    def log_odds(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of default per row."""
        _check_fitted(self, "logistic_")
        return self.logistic_.decision_function(self._design(X)[0])

    def pd(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of default per row."""
        return expit(self.log_odds(X))


_CLASSES = {"gbm": GbmCandidate, "scorecard": ScorecardCandidate, "blend": BlendCandidate,
            "logistic": LogisticBaseline}


def make(name: str, **params):
    """A new, unfitted candidate by name ("gbm", "scorecard", "blend" or "logistic")."""
    if name not in _CLASSES:
        raise ValueError(f"unknown candidate {name!r}; the candidates are {', '.join(_CLASSES)}")
    return _CLASSES[name](**params)
