"""Train one subject's model end to end: data, fit, calibrate, measure, log, register.

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
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

import training
from features.catalogue import feature_names
from settings import Paths
from training import plots, registry, scaling
from training.dataset import build_training_set, out_of_time_split
from training.fit import fit

PIP_REQUIREMENTS = [f"{p}=={package_version(p)}"
                    for p in ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn")]


@dataclass
class TrainResult:
    """One training run: its MLflow run, the registered version and its out-of-time measures."""

    subject: str
    run_id: str
    version: str  # the registered model version (not yet champion)
    oot_auc: float
    true_pd_auc: float | None  # synthetic data only: the AUC of the true PD on the same rows
    seconds: float
    metrics: dict = field(default_factory=dict)


def _true_pd(paths: Paths) -> pd.DataFrame | None:
    path = paths.clean / "true_pd.parquet"
    return pd.read_parquet(path) if path.exists() else None


def train_subject(paths: Paths, subject: str,
                  progress: Callable[[str], None] = lambda _: None) -> TrainResult:
    """Build the training set, fit and calibrate, log the run and register a new version.

    `progress` receives a short message before each step (the CLI shows it)."""
    started = time.perf_counter()
    registry.use_store(paths)
    progress("building the training set (features as of each application date)")
    rows = build_training_set(paths.clean, subject)
    excluded = int((~rows["enough_history"]).sum())
    rows = rows[rows["enough_history"]]
    split = out_of_time_split(rows)
    features = feature_names(subject)

    progress(f"fitting LightGBM on {len(split.train):,} applications")
    model = fit(split.train, split.calibration, features)

    oot = split.oot
    y = oot["label"].to_numpy()
    log_odds = model.log_odds(oot)
    pd_oot = scaling.pd_from_log_odds(log_odds)
    metrics = {
        "oot_auc": roc_auc_score(y, pd_oot),
        "oot_brier": brier_score_loss(y, pd_oot),
        "oot_log_loss": log_loss(y, pd_oot, labels=[0, 1]),
        "oot_default_rate": float(y.mean()),
        "oot_mean_pd": float(pd_oot.mean()),
        "train_auc": roc_auc_score(split.train["label"], model.log_odds(split.train)),
    }
    true_pd = _true_pd(paths)
    true_scores = None
    if true_pd is not None:  # synthetic data: the best any model could do on these applications
        joined = oot[["application_id"]].merge(true_pd, on="application_id", how="left")
        if joined["true_pd"].notna().all():
            true_scores = joined["true_pd"].to_numpy()
            metrics["oot_auc_true_pd"] = roc_auc_score(y, true_scores)

    progress("logging the run and registering the model in MLflow")
    with mlflow.start_run(experiment_id=registry.experiment(paths, subject)) as run:
        mlflow.log_params({k: v for k, v in model.params.items() if k != "monotone_constraints"})
        mlflow.log_params({"subject": subject, "n_features": len(features),
                           "excluded_not_enough_history": excluded,
                           "calibration": "platt", "score_base": scaling.BASE_SCORE,
                           "score_base_odds": scaling.BASE_ODDS, "score_pdo": scaling.PDO,
                           **split.describe()})
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"features": features}, "features.json")
        contrib = model.booster.predict(oot[features].to_numpy(dtype=float), pred_contrib=True)
        figures = {
            "roc.png": plots.roc(y, {"model": pd_oot, **({"true PD": true_scores}
                                                        if true_scores is not None else {})}),
            "calibration.png": plots.calibration(y, pd_oot),
            "importance.png": plots.importance(features, np.abs(contrib[:, :-1]).mean(axis=0)),
            "score_distribution.png": plots.score_distribution(
                scaling.score_from_log_odds(log_odds), y),
        }
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}")
            plt.close(fig)
        version = _log_model(model, subject, oot[features].head(5))

    MlflowClient().set_model_version_tag(registry.model_name(subject), version, "oot_auc",
                                         f"{metrics['oot_auc']:.4f}")
    return TrainResult(subject, run.info.run_id, version, metrics["oot_auc"],
                       metrics.get("oot_auc_true_pd"), time.perf_counter() - started, metrics)


def _log_model(model, subject: str, example: pd.DataFrame) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        booster_path = Path(tmp) / "booster.txt"
        model.booster.save_model(str(booster_path))
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps({
            "subject": subject, "features": model.features,
            "calibration": {"method": "platt", "slope": model.slope, "intercept": model.intercept},
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
