"""Train and evaluate on a fund's or bank's own loan book, given as ONE labelled table.

The table is a CSV or Parquet file with one row per loan and one binary target column
(default = 1). Every other column is used as a feature after type inference:

* numeric  - numbers and booleans (low-cardinality integers are left numeric);
* categorical - other strings; handed to LightGBM as pandas ``category`` dtype so it uses its
  native categorical splits (no one-hot encoding);
* date - datetime columns, or strings of which more than 95% of the non-null values parse as ISO
  dates. Each date becomes three numeric features: year, month and days since the earliest date
  in the table (LightGBM cannot split on a timestamp directly);
* id-like string columns (a distinct value on every row) carry no signal that generalises and are
  dropped, with a note (logged, and recorded in the MLflow run); fully empty columns likewise.

Evaluation: stratified repeated k-fold cross-validation (``RepeatedStratifiedKFold``). Metrics
are means over all folds: AUC (and its standard deviation), Gini = 2*AUC - 1, Brier score, log
loss and KS (the two-sample Kolmogorov-Smirnov statistic between the scores of defaults and
non-defaults).

Built-in tuning - the same recipe for every table, nothing tuned by hand per data set:

* learning_rate 0.05; the number of trees is set by early stopping (50 rounds patience, at most
  2000 trees) on an inner stratified validation split (20%) of each training fold, so the outer
  test fold is never seen while fitting;
* num_leaves is chosen from {4, 15, 31, 63} (4: near-additive trees, which small books need) by the mean test-fold AUC over the folds of the first
  repeat (a small grid search); the remaining repeats use the chosen value only. The first
  repeat's scores for the chosen value are reused in the reported metrics, which makes them very
  slightly optimistic (a pick of the best of three); with ``repeats > 1`` the later repeats are
  untouched by the choice;
* min_child_samples scales with the table: rows // 100, clipped to [20, 200];
* feature_fraction 0.8 and bagging_fraction 0.8 (bagging every iteration), for robustness;
* categories with at most 32 values split one-against-the-rest (max_cat_to_onehot), which overfits
  less than LightGBM's sorted-gradient category splits on a few thousand loans.

Measured on public credit tables by `make benchmark-own-table` (docs/benchmarks-own-table.md).

Everything is logged to MLflow (params, metrics, column types as ``column_types.json``). No model
is registered: this is an evaluation of what the data supports, not a deployment.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split

log = logging.getLogger(__name__)

MIN_ROWS = 200
MIN_MINORITY = 20
DATE_SHARE = 0.95
NUM_LEAVES_GRID = (4, 15, 31, 63)
LEARNING_RATE = 0.05
MAX_TREES = 2000
EARLY_STOPPING = 50
INNER_VALIDATION = 0.2

# Label values we understand; the positive class is "default" (bad).
_POSITIVE = {"1", "1.0", "true", "yes", "y", "default", "defaulted", "bad"}
_NEGATIVE = {"0", "0.0", "false", "no", "n", "good", "repaid", "non-default"}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


class TableError(ValueError):
    """The table cannot be used; the message says what is wrong and what to do."""


@dataclass
class OwnTableResult:
    """A cross-validated model on a lender's own table: its run, the columns used and the AUCs."""

    run_id: str
    rows: int
    features: dict[str, str]  # column -> "numeric" | "categorical" | "date"
    auc_mean: float
    auc_std: float
    folds: int  # number of folds evaluated (folds * repeats)
    metrics: dict[str, float]
    seconds: float
    num_leaves: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why it was not used


def load_table(path: Path) -> pd.DataFrame:
    """Read a .csv or .parquet file; TableError says what is wrong with a path or a file."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"No such file: {path}. Give the path to a .csv or .parquet file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except Exception as exc:  # unreadable content: say so plainly
        raise TableError(f"Could not read {path}: {exc}. Check that it is a valid {suffix} file.") from exc
    raise TableError(f"Unsupported file type {suffix!r} for {path}. "
                     "Save the table as .csv or .parquet.")


def _looks_like_dates(values: pd.Series) -> bool:
    """More than 95% of the non-null string values are ISO dates that parse."""
    text = values.dropna().astype(str).str.strip()
    if text.empty:
        return False
    iso = text[text.str.match(_ISO_DATE)]
    if len(iso) <= DATE_SHARE * len(text):
        return False
    parsed = pd.to_datetime(iso, errors="coerce", format="ISO8601", utc=True)
    return parsed.notna().sum() > DATE_SHARE * len(text)


def _infer(frame: pd.DataFrame, target: str) -> tuple[dict[str, str], dict[str, str]]:
    types: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column]
        if values.isna().all():
            dropped[column] = "empty: no values"
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            types[column] = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(values):
            types[column] = "date"
        elif _looks_like_dates(values):
            types[column] = "date"
        elif values.notna().all() and values.nunique() == len(values):
            dropped[column] = "id-like: a distinct string on every row"
        else:
            types[column] = "categorical"
    for column, why in dropped.items():
        log.warning("Column %r dropped (%s).", column, why)
    return types, dropped


def infer_column_types(frame: pd.DataFrame, target: str) -> dict[str, str]:
    """column -> "numeric" | "categorical" | "date" for every usable feature column."""
    return _infer(frame, target)[0]


def _binary_target(frame: pd.DataFrame, target: str) -> np.ndarray:
    if target not in frame.columns:
        raise TableError(f"No target column {target!r}. The columns are: {', '.join(map(str, frame.columns))}. "
                         "Pass the name of the column that says whether the loan defaulted.")
    label = frame[target]
    missing = int(label.isna().sum())
    if missing:
        raise TableError(f"The target column {target!r} has {missing} missing value(s). "
                         "Every row needs a known outcome: drop unlabelled rows or fill them.")
    found = sorted(label.unique().tolist(), key=str)
    tokens = {v: str(v).strip().lower() for v in found}
    if len(found) == 1:
        raise TableError(f"The target column {target!r} has one class only ({found[0]!r}). "
                         "Both defaults and non-defaults are needed to learn anything.")
    positive = [v for v, t in tokens.items() if t in _POSITIVE]
    negative = [v for v, t in tokens.items() if t in _NEGATIVE]
    if len(found) != 2 or len(positive) != 1 or len(negative) != 1:
        raise TableError(f"The target column {target!r} is not a binary label: found values {found!r}. "
                         "Use two values, 1/0, True/False, yes/no or default/good, with 1 (or "
                         "True/yes/default) meaning the loan defaulted.")
    y = (label == positive[0]).to_numpy(dtype=int)
    minority = int(min(y.sum(), len(y) - y.sum()))
    if len(y) < MIN_ROWS or minority < MIN_MINORITY:
        raise TableError(f"Too few rows to train and evaluate: {len(y)} rows with {minority} in the "
                         f"smaller class; at least {MIN_ROWS} rows and {MIN_MINORITY} of each class "
                         "are needed. Add more history.")
    return y


def _features(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    for column, kind in types.items():
        values = frame[column]
        if kind == "numeric":
            out[column] = pd.to_numeric(values.astype(float) if values.dtype == bool else values,
                                        errors="coerce")
        elif kind == "categorical":
            # Native LightGBM categorical handling; categories are fixed over the whole table so
            # every fold sees the same coding (uses no label information).
            out[column] = values.astype(str).where(values.notna()).astype("category")
        else:
            # Dates become numbers: year, month, and days since the earliest date in the table.
            if pd.api.types.is_datetime64_any_dtype(values):
                when = pd.to_datetime(values, utc=True)
            else:
                when = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
            out[f"{column}__year"] = when.dt.year.astype(float)
            out[f"{column}__month"] = when.dt.month.astype(float)
            out[f"{column}__days"] = (when - when.min()).dt.days.astype(float)
    return pd.DataFrame(out, index=frame.index)


def _params(num_leaves: int, rows: int, seed: int) -> dict:
    return {
        "objective": "binary",
        "learning_rate": LEARNING_RATE,
        "num_leaves": num_leaves,
        "min_child_samples": int(np.clip(rows // 100, 20, 200)),
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "max_cat_to_onehot": 32,
        "seed": seed,
        "verbose": -1,
        # Small tables train fastest on one thread (OpenMP start-up and spin-waits dominate).
        "num_threads": 1 if rows < 50_000 else 0,
    }


def _fit_predict(X: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                 params: dict, seed: int) -> np.ndarray:
    fit_idx, val_idx = train_test_split(train, test_size=INNER_VALIDATION, stratify=y[train],
                                        random_state=seed)
    fit_set = lgb.Dataset(X.iloc[fit_idx], y[fit_idx])
    val_set = lgb.Dataset(X.iloc[val_idx], y[val_idx], reference=fit_set)
    booster = lgb.train(params, fit_set, num_boost_round=MAX_TREES, valid_sets=[val_set],
                        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)])
    return booster.predict(X.iloc[test], num_iteration=booster.best_iteration)


def _fold_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    auc = roc_auc_score(y, p)
    return {"auc": auc, "gini": 2 * auc - 1, "brier": brier_score_loss(y, p),
            "log_loss": log_loss(y, p, labels=[0, 1]),
            "ks": float(ks_2samp(p[y == 1], p[y == 0]).statistic)}


def _artifact_location(tracking_uri: str) -> str | None:
    """For a local SQLite store keep artifacts beside the database, not in the working directory."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        where = db.parent / "artifacts"
        where.mkdir(parents=True, exist_ok=True)
        return where.resolve().as_uri()
    return None


def train_own_table(path: Path, target: str, tracking_uri: str,
                    experiment: str = "coopscore-own-table", folds: int = 5, repeats: int = 2,
                    seed: int = 0) -> OwnTableResult:
    """Train and cross-validate a model on a lender's own table, logged to MLflow at `tracking_uri`."""
    started = time.perf_counter()
    frame = load_table(path)
    y = _binary_target(frame, target)
    types, dropped = _infer(frame, target)
    if not types:
        raise TableError(f"No usable feature columns besides {target!r} "
                         f"(dropped: {dropped or 'none'}). Add columns describing the borrowers/loans.")
    X = _features(frame, types)
    rows = len(frame)

    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    splits = list(cv.split(X, y))
    first, rest = splits[:folds], splits[folds:]

    # Small built-in search: num_leaves by the first repeat's mean test-fold AUC.
    first_repeat: dict[int, list[dict[str, float]]] = {}
    for leaves in NUM_LEAVES_GRID:
        params = _params(leaves, rows, seed)
        first_repeat[leaves] = [_fold_metrics(y[test], _fit_predict(X, y, train, test, params, seed + i))
                                for i, (train, test) in enumerate(first)]
    search = {leaves: float(np.mean([m["auc"] for m in ms])) for leaves, ms in first_repeat.items()}
    num_leaves = max(NUM_LEAVES_GRID, key=lambda leaves: (search[leaves], -leaves))

    params = _params(num_leaves, rows, seed)
    per_fold = list(first_repeat[num_leaves])
    per_fold += [_fold_metrics(y[test], _fit_predict(X, y, train, test, params, seed + folds + i))
                 for i, (train, test) in enumerate(rest)]

    aucs = np.array([m["auc"] for m in per_fold])
    metrics = {name: float(np.mean([m[name] for m in per_fold])) for name in per_fold[0]}
    metrics["auc_std"] = float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0
    metrics["default_rate"] = float(y.mean())

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = (found.experiment_id if found is not None else
                     mlflow.create_experiment(experiment, artifact_location=_artifact_location(tracking_uri)))
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"source": Path(path).name, "target": target, "rows": rows, "folds": folds,
                           "repeats": repeats, "seed": seed, "num_leaves": num_leaves,
                           "learning_rate": LEARNING_RATE,
                           "min_child_samples": params["min_child_samples"],
                           "n_features": len(types), "n_dropped": len(dropped)})
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({f"search_auc_leaves_{k}": v for k, v in search.items()})
        mlflow.log_dict({"column_types": types, "dropped": dropped}, "column_types.json")
        run_id = run.info.run_id

    return OwnTableResult(run_id=run_id, rows=rows, features=types, auc_mean=metrics["auc"],
                          auc_std=metrics["auc_std"], folds=len(per_fold), metrics=metrics,
                          seconds=time.perf_counter() - started, num_leaves=num_leaves,
                          dropped=dropped)
