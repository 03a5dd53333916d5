"""Train one subject's model end to end: data, backtest, fit, calibrate, log, register.

The evidence is an as-deployed backtest (evaluation.backtest): at each quarterly date T a model is
trained only on the labels known at T and tested on the next six months. The model registered is
then refit on every label matured by the data end; the run logs both (the backtest's pooled
metrics with 95% CIs, its per-T table and its per-application predictions under `backtest/`).

Registering does not make a version `champion`: only the promotion gates do
(`governance.promotion`; `governance.pipeline.train_and_promote` chains both).
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

import training
from features.catalogue import feature_names
from settings import Paths
from training import plots, registry, scaling
from training import reject_inference as ri
from training.dataset import (application_spine, build_applicant_set, build_training_set, data_end,
                              matured)
from training.fit import MIN_CALIBRATION_DEFAULTS, fit

PIP_REQUIREMENTS = [f"{p}=={package_version(p)}"
                    for p in ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn")]
BACKTEST_DIR = "backtest"
# What the as-deployed backtest measures on, whatever the training population: only funded loans
# have outcomes. Through the door is measured on synthetic truth only (benchmarks.reject_inference).
VALIDATED_ON = "funded loans only (the as-deployed backtest)"  # the run's artifacts: predictions.parquet, folds.csv, dates.json


@dataclass
class TrainResult:
    """One training run: its MLflow run, the registered version and its backtest measures."""

    subject: str
    run_id: str
    version: str  # the registered model version (not yet champion)
    oot_auc: float  # the pooled as-deployed backtest AUC of the model
    true_pd_auc: float | None  # synthetic data only: the AUC of the true PD on the same rows
    seconds: float
    metrics: dict = field(default_factory=dict)


def _true_pd(paths: Paths) -> pd.DataFrame | None:
    path = paths.clean / "true_pd.parquet"
    return pd.read_parquet(path) if path.exists() else None


def train_subject(paths: Paths, subject: str, progress: Callable[[str], None] = lambda _: None,
                  backtest: Callable | None = None,
                  min_calibration_defaults: int = MIN_CALIBRATION_DEFAULTS,
                  reject_inference: str = ri.MEASURED) -> TrainResult:
    """Backtest as deployed, refit on every matured label, log the run and register a new version.

    `backtest(rows, features, end, truth, min_calibration_defaults=...)` runs the as-deployed
    backtest (evaluation.backtest.run_backtest; passed in from above because training never imports
    evaluation, see governance.pipeline); without it the run has no evidence and `oot_auc` is NaN.
    `progress` receives a short message before each step (the CLI shows it).
    `reject_inference`: how the declined applicants enter the registered model
    (training.reject_inference.METHODS), or "measured" (the default): funded-only when the data
    records no declined applications, else the method benchmarks/reject_inference.py measured best
    through the door (training.reject_inference.resolve). The backtest validates on funded loans either way (only they have
    outcomes); the run records both populations (params `reject_inference`, `validated_on`)."""
    started = time.perf_counter()
    registry.use_store(paths)
    progress("building the training set (features as of each application date)")
    rows = build_training_set(paths.clean, subject)
    excluded = int((~rows["enough_history"]).sum())
    rows = rows[rows["enough_history"]]
    features = feature_names(subject)
    end = data_end(paths.clean)
    evidence = None
    if backtest is not None:
        progress("backtesting as deployed (a model per quarter, trained on the labels known then)")
        evidence = backtest(rows, features, end, _true_pd(paths),
                            min_calibration_defaults=min_calibration_defaults)
    known = matured(rows, end)
    apps = application_spine(paths.clean, subject, labelled_only=False)
    recorded_declines = int((apps["decision"] == ri.DECLINED).sum()) if "decision" in apps else 0
    chosen, why = ri.resolve(reject_inference, recorded_declines)
    progress(f"reject inference: {chosen} ({why})")
    method = ri.method(chosen)
    declined = 0
    if chosen == ri.FundedOnly.name:
        progress(f"fitting the model on all {len(known):,} applications with a known outcome")
        model = fit(known, features, min_calibration_defaults=min_calibration_defaults)
    else:
        applicants = build_applicant_set(paths.clean, subject)
        applicants = matured(applicants[applicants["enough_history"]], end)
        declined = int(applicants["label"].isna().sum())
        progress(f"fitting the model on {len(known):,} funded and {declined:,} declined applications "
                 f"({method.name})")
        model = method.fit(applicants, features, min_calibration_defaults=min_calibration_defaults)

    metrics = backtest_metrics(evidence) if evidence is not None else {}
    metrics["train_auc"] = float(_auc(known["label"].to_numpy(), model.log_odds(known)))

    progress("logging the run and registering the model in MLflow")
    with mlflow.start_run(experiment_id=registry.experiment(paths, subject)) as run:
        mlflow.log_params({k: v for k, v in model.params.items() if k != "monotone_constraints"})
        mlflow.log_params({
            "subject": subject, "n_features": len(features), "excluded_not_enough_history": excluded,
            "calibration": "platt", "calibration_method": model.calibration["method"],
            "calibration_rows": model.calibration["rows"],
            "calibration_defaults": model.calibration["defaults"],
            "min_calibration_defaults": min_calibration_defaults,
            "score_base": scaling.BASE_SCORE, "score_base_odds": scaling.BASE_ODDS,
            "score_pdo": scaling.PDO, "data_end": str(end.date()),
            "train_rows": len(known), "train_defaults": int(known["label"].sum()),
            "train_from": str(known["as_of"].min().date()), "train_to": str(known["as_of"].max().date()),
            "reject_inference": method.name, "reject_inference_why": why[:500],
            "train_declined": declined,
            "training_population": method.population, "validated_on": VALIDATED_ON,
            **(backtest_params(evidence) if evidence is not None else {})})
        mlflow.log_text(model.calibration["reason"], "calibration.txt")
        mlflow.log_metrics(metrics)
        if evidence is not None:
            log_backtest(evidence)
        mlflow.log_dict({"features": features}, "features.json")
        contrib = model.booster.predict(known[features].to_numpy(dtype=float), pred_contrib=True)
        figures = {"importance.png": plots.importance(features, np.abs(contrib[:, :-1]).mean(axis=0))}
        if evidence is not None:  # the backtest's pooled test rows: what the model did as deployed
            frame = evidence.frame
            y, pd_test = frame["label"].to_numpy(), frame["pd"].to_numpy()
            truth = {"true PD": frame["true_pd"].to_numpy()} if frame["true_pd"].notna().all() else {}
            figures.update({
                "roc.png": plots.roc(y, {"model (backtest)": pd_test, **truth}),
                "calibration.png": plots.calibration(y, pd_test),
                "score_distribution.png": plots.score_distribution(
                    scaling.score_from_log_odds(np.log(pd_test / (1 - pd_test))), y)})
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}")
            plt.close(fig)
        version = _log_model(model, subject, known[features].head(5))

    if evidence is not None:
        MlflowClient().set_model_version_tag(
            registry.model_name(subject), version, "backtest_auc",
            f"{metrics['backtest_auc']:.4f} [{metrics['backtest_auc_low']:.4f}, "
            f"{metrics['backtest_auc_high']:.4f}]")
    return TrainResult(subject, run.info.run_id, version, metrics.get("backtest_auc", float("nan")),
                       metrics.get("backtest_true_pd_auc"), time.perf_counter() - started, metrics)


def backtest_params(backtest) -> dict[str, object]:
    """The backtest's design as MLflow parameters: dates, pooled rows and defaults."""
    return {"backtest_dates": ",".join(str(d.date()) for d in backtest.dates),
            "backtest_rows": len(backtest.frame),
            "backtest_defaults": int(backtest.frame["label"].sum())}


def backtest_metrics(backtest) -> dict[str, float]:
    """The pooled backtest (an evaluation.backtest.Backtest) as flat MLflow metrics:
    backtest_<metric>[_low|_high] for the model, backtest_scorecard_* and backtest_true_pd_*;
    `oot_auc` and `oot_auc_true_pd` are kept for older readers."""
    out: dict[str, float] = {}
    for source, measured in backtest.pooled.items():
        prefix = "backtest_" if source == "model" else f"backtest_{source}_"
        for name, est in measured.items():
            out[f"{prefix}{name}"] = est.value
            out[f"{prefix}{name}_low"] = est.low
            out[f"{prefix}{name}_high"] = est.high
    out["backtest_n_test"] = float(len(backtest.frame))
    out["backtest_n_defaults"] = float(backtest.frame["label"].sum())
    out["oot_auc"] = out["backtest_auc"]
    if "backtest_true_pd_auc" in out:
        out["oot_auc_true_pd"] = out["backtest_true_pd_auc"]
    return out


def log_backtest(backtest) -> None:
    """Log the backtest's per-application predictions, per-T table and dates to the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        backtest.frame.to_parquet(Path(tmp) / "predictions.parquet", index=False)
        backtest.folds.to_csv(Path(tmp) / "folds.csv", index=False)
        (Path(tmp) / "dates.json").write_text(json.dumps({
            "dates": [str(d.date()) for d in backtest.dates], "skipped": backtest.skipped}))
        if getattr(backtest, "drivers", None) is not None:
            backtest.drivers.to_csv(Path(tmp) / "drivers.csv", index=False)
        mlflow.log_artifacts(tmp, BACKTEST_DIR)


def load_backtest(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(per-application predictions, per-T table) a training run logged, or None (older runs)."""
    try:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=BACKTEST_DIR))
        return pd.read_parquet(local / "predictions.parquet"), pd.read_csv(local / "folds.csv",
                                                                           parse_dates=["date"])
    except Exception:  # noqa: BLE001 - any store or file error means: not logged, recompute
        return None


def load_drivers(run_id: str) -> pd.DataFrame | None:
    """The driver table (evaluation.ceiling) a training run logged with its backtest, or None."""
    try:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id,
                                                         artifact_path=f"{BACKTEST_DIR}/drivers.csv"))
        return pd.read_csv(local)
    except Exception:  # noqa: BLE001 - not logged (real data, older runs)
        return None


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, score)


def _log_model(model, subject: str, example: pd.DataFrame) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        booster_path = Path(tmp) / "booster.txt"
        model.booster.save_model(str(booster_path))
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps({
            "subject": subject, "features": model.features,
            "calibration": {"method": "platt", "slope": model.slope, "intercept": model.intercept,
                            "fitted_on": model.calibration},
            "scaling": {"base_score": scaling.BASE_SCORE, "base_odds": scaling.BASE_ODDS,
                        "pdo": scaling.PDO},
        }, indent=2))
        output = pd.DataFrame({"pd": [0.1], "score": [600.0], "grade": ["A"], "log_odds": [0.0]})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(training.__file__).parent / "model_code.py"),
            artifacts={"booster": str(booster_path), "meta": str(meta_path)},
            code_paths=[str(Path(training.__file__).parent)],
            signature=infer_signature(example, output), input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=registry.model_name(subject),
        )
    return str(info.registered_model_version)
