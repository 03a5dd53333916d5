"""As-deployed backtests: what the model would have done had it been deployed at each date T.

For deployment dates T, quarterly over the data, a model is trained and calibrated only on the
applications whose 12-month label window closed by T (as_of + 12 months <= T: the labels a bank
actually had at T), and tested on the applications of [T, T + test_months). Each T is reported
alone, and the test rows are pooled: each application once, scored by the model deployed at the
latest T on or before its date (what quarterly redeployment would have served). The same rows give
the WoE scorecard's and, on synthetic data, the true PD's results, so the three compare directly.

The first T is the first quarter whose training rows hold `min_train_defaults` defaults; with fewer
matured labels than that anywhere the data cannot support a backtest and NotEnoughData says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evaluation import metrics
from evaluation.ceiling import DRIVER_PREFIX, driver_table, fit_ceiling
from training.dataset import NotEnoughData, label_window_end, matured
from training.fit import MIN_CALIBRATION_DEFAULTS, fit
from training.scorecard import fit_scorecard

TEST_MONTHS = 6  # each deployment is tested on the next six months of applications
EVERY_MONTHS = 3  # a deployment date each quarter
MIN_TRAIN_DEFAULTS = 10  # fewer defaults than this before T: no model could be trained at T
# the PD columns of Backtest.frame that are compared: the model, the WoE scorecard, and on synthetic
# data the feature ceiling (evaluation.ceiling: the true log-odds regressed on the same features,
# fitted on the same rows at each T) and the true PD itself
SOURCES = ("model", "scorecard", "ceiling", "true_pd")
COLUMNS = {"model": "pd", "scorecard": "scorecard_pd", "ceiling": "ceiling_pd", "true_pd": "true_pd"}


@dataclass(frozen=True)
class Fold:
    """One deployment date T: the positions (in the rows given to `plan`) it trains and tests on."""

    date: pd.Timestamp
    train: np.ndarray
    test: np.ndarray


@dataclass
class Backtest:
    """Per-T and pooled results of an as-deployed backtest.

    `frame`: one row per pooled test application, sorted by (as_of, application_id): application_id,
    entity_id, as_of, deployed (its T), label, pd (the model's), scorecard_pd (NaN without the
    scorecard), true_pd (NaN without the generator's truth).
    `folds`: one row per (T, source) with the rows and defaults trained and tested on, how the
    model was calibrated, and each metric's value and 95% CI (columns `<metric>`, `<metric>_low`,
    `<metric>_high`; NaN where a T's test rows hold a single class).
    `pooled`: source -> metric -> Estimate on the pooled rows (a source is absent without its PD)."""

    dates: list[pd.Timestamp]
    frame: pd.DataFrame
    folds: pd.DataFrame
    pooled: dict[str, dict[str, metrics.Estimate]]
    skipped: list[str]  # the quarters before the first T, and why each was skipped
    # synthetic data: each driver of the true risk, how much of it the features recover
    # (evaluation.ceiling.driver_table on the last T's training rows and the pooled test rows)
    drivers: pd.DataFrame | None = None


def deployment_dates(rows: pd.DataFrame, end: pd.Timestamp, min_train_defaults: int = MIN_TRAIN_DEFAULTS,
                     every_months: int = EVERY_MONTHS) -> tuple[list[pd.Timestamp], list[str]]:
    """Quarter starts T with at least `min_train_defaults` matured defaults before T and some
    matured test applications from T on; also the reasons the earlier quarters were skipped."""
    known = matured(rows, end)
    if known.empty:
        raise NotEnoughData(f"no application's 12-month label window closed by the data end "
                            f"{end.date()}: wait for outcomes before backtesting.")
    window_end = label_window_end(known["as_of"])
    first = (window_end.min().to_period("Q").start_time)
    dates, skipped = [], []
    t = first
    while t <= known["as_of"].max():
        defaults = int(known.loc[window_end <= t, "label"].sum())
        if defaults >= min_train_defaults:
            dates.append(t)
        else:
            skipped.append(f"{t.date()}: {defaults} matured defaults (< {min_train_defaults})")
        t = t + pd.DateOffset(months=every_months)
    return dates, skipped


def plan(rows: pd.DataFrame, end: pd.Timestamp, min_train_defaults: int = MIN_TRAIN_DEFAULTS,
         test_months: int = TEST_MONTHS, every_months: int = EVERY_MONTHS) -> list[Fold]:
    """The folds of the backtest, without fitting anything (cheap: two models evaluated on the same
    data get the same folds). NotEnoughData when no T qualifies."""
    if rows.empty:
        raise NotEnoughData("no labelled applications to backtest on")
    dates, skipped = deployment_dates(rows, end, min_train_defaults, every_months)
    if not dates:
        raise NotEnoughData(
            f"no deployment date has {min_train_defaults} matured defaults to train on ({len(rows)} "
            f"applications, {int(rows['label'].sum())} defaults; {'; '.join(skipped)}). Generate "
            "more data (coopscore generate --members ...) or wait for more outcomes.")
    ripe = (label_window_end(rows["as_of"]) <= end).to_numpy()
    as_of, window_end = rows["as_of"], label_window_end(rows["as_of"])
    folds = []
    for t in dates:
        train = np.flatnonzero(((window_end <= t).to_numpy()) & ripe)
        test = np.flatnonzero(((as_of >= t) & (as_of < t + pd.DateOffset(months=test_months))).to_numpy()
                              & ripe)
        folds.append(Fold(t, train, test))
    return folds


def pooled_positions(folds: list[Fold], rows: pd.DataFrame) -> dict[int, int]:
    """position in rows -> index of the fold that serves it: the latest T on or before its date."""
    served: dict[int, int] = {}
    for k, fold in enumerate(folds):  # folds are in date order: a later T overwrites
        for pos in fold.test:
            served[int(pos)] = k
    return served


def run_backtest(rows: pd.DataFrame, features: list[str], end: pd.Timestamp,
                 truth: pd.DataFrame | None = None, n_boot: int = 200, with_scorecard: bool = True,
                 min_train_defaults: int = MIN_TRAIN_DEFAULTS,
                 min_calibration_defaults: int = MIN_CALIBRATION_DEFAULTS, seed: int = 7) -> Backtest:
    """Train at every T of `plan`, score its test rows, and measure per T and pooled.

    `rows`: build_training_set's rows (features, label, as_of, application_id, entity_id);
    `truth`: application_id, true_pd (synthetic data) or None."""
    missing = sorted({"application_id", "entity_id", "as_of", "label", *features} - set(rows.columns))
    if missing:
        raise ValueError(f"the rows lack {missing}; build them with training.dataset.build_training_set")
    rows = rows.reset_index(drop=True)
    folds = plan(rows, end, min_train_defaults)
    served = pooled_positions(folds, rows)
    scored = []
    for k, fold in enumerate(folds):
        train, test = rows.iloc[fold.train], rows.iloc[fold.test]
        model = fit(train, features, min_calibration_defaults=min_calibration_defaults, seed=seed)
        part = test[["application_id", "entity_id", "as_of", "label"]].copy()
        part["deployed"] = fold.date
        part["pd"] = model.pd(test)
        part["scorecard_pd"] = (fit_scorecard(train, features).pd(test) if with_scorecard else np.nan)
        part["ceiling_pd"] = _ceiling_pd(train, test, features, truth)
        part["fold"] = k
        part["pooled"] = [served[int(p)] == k for p in fold.test]
        part["calibration"] = model.calibration.get("method", "")
        part["n_train"], part["n_train_defaults"] = len(train), int(train["label"].sum())
        scored.append(part)
    scored = pd.concat(scored, ignore_index=True)
    if truth is not None:
        scored = scored.merge(truth[["application_id", "true_pd"]], on="application_id", how="left",
                              validate="many_to_one")
    else:
        scored["true_pd"] = np.nan
    scored["true_pd"] = scored["true_pd"].astype(float)

    per_t = []
    for k, fold in enumerate(folds):
        part = scored[scored["fold"] == k]
        for source, column in COLUMNS.items():
            if part[column].isna().any():
                continue
            row = {"date": fold.date, "source": source, "n_train": int(part["n_train"].iloc[0]),
                   "n_train_defaults": int(part["n_train_defaults"].iloc[0]), "n_test": len(part),
                   "n_test_defaults": int(part["label"].sum()), "calibration": part["calibration"].iloc[0]}
            row.update(_measured(part["label"].to_numpy(), part[column].to_numpy(), n_boot))
            per_t.append(row)
    frame = (scored[scored["pooled"]]
             .sort_values(["as_of", "application_id"], kind="stable").reset_index(drop=True)
             [["application_id", "entity_id", "as_of", "deployed", "label", "pd", "scorecard_pd",
               "ceiling_pd", "true_pd"]])
    y = frame["label"].to_numpy()
    if y.sum() == 0 or y.sum() == len(y):
        raise NotEnoughData(f"the pooled test rows ({len(y)}) hold {int(y.sum())} defaults: both "
                            "defaults and non-defaults are needed to measure anything.")
    pooled = {source: metrics.evaluate(y, frame[column].to_numpy(), n_boot=n_boot)
              for source, column in COLUMNS.items() if frame[column].notna().all()}
    _, skipped = deployment_dates(rows, end, min_train_defaults)
    drivers = _drivers(rows.iloc[folds[-1].train], rows.set_index("application_id")
                       .loc[frame["application_id"]].reset_index(), features, truth)
    return Backtest([f.date for f in folds], frame, pd.DataFrame(per_t), pooled, skipped, drivers)


def _with_truth(rows: pd.DataFrame, truth: pd.DataFrame | None) -> pd.DataFrame | None:
    """`rows` with the generator's truth columns, or None without a truth for every row."""
    if truth is None:
        return None
    known = rows.drop(columns=[c for c in truth.columns if c != "application_id" and c in rows])
    known = known.merge(truth, on="application_id", how="left", validate="many_to_one")
    return known if known["true_pd"].notna().all() else None


def _ceiling_pd(train: pd.DataFrame, test: pd.DataFrame, features: list[str],
                truth: pd.DataFrame | None) -> np.ndarray | float:
    """The feature ceiling fitted on T's training rows, scoring T's test rows (NaN without truth)."""
    known = _with_truth(train, truth)
    if known is None:
        return np.nan
    return fit_ceiling(known, features).pd(test)


def _drivers(train: pd.DataFrame, test: pd.DataFrame, features: list[str],
             truth: pd.DataFrame | None) -> pd.DataFrame | None:
    """The driver table when the truth carries the generator's drivers, else None."""
    if truth is None or not any(c.startswith(DRIVER_PREFIX) for c in truth.columns):
        return None
    known_train, known_test = _with_truth(train, truth), _with_truth(test, truth)
    if known_train is None or known_test is None:
        return None
    return driver_table(known_train, known_test, features)


def _measured(y: np.ndarray, pd_values: np.ndarray, n_boot: int) -> dict[str, float]:
    if y.min() == y.max():  # a single class: no ranking or slope to measure
        return {}
    out = {}
    for name, est in metrics.evaluate(y, pd_values, n_boot=n_boot).items():
        out[name], out[f"{name}_low"], out[f"{name}_high"] = est.value, est.low, est.high
    return out
