"""The MLflow registry: where models live, and which one is champion."""
from __future__ import annotations

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from settings import Paths

CHAMPION = "champion"


def model_name(subject: str) -> str:
    """The registered model's name for a subject (`coopscore-member`, `coopscore-cooperative`)."""
    return f"coopscore-{subject}"


def use_store(paths: Paths) -> None:
    """Point MLflow at our store (SQLite under var/ unless COOPSCORE_TRACKING_URI says otherwise)."""
    paths.mlflow.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(paths.tracking_uri)
    mlflow.set_registry_uri(paths.tracking_uri)


def experiment(paths: Paths, subject: str) -> str:
    """The subject's MLflow experiment id, created (artifacts under the home) if missing."""
    name = model_name(subject)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    paths.artifacts.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=paths.artifacts.as_uri())


def champion_version(subject: str):
    """The champion's model version, or None when there is none yet."""
    try:
        return MlflowClient().get_model_version_by_alias(model_name(subject), CHAMPION)
    except MlflowException:
        return None


def champion_uri(subject: str) -> str:
    """The MLflow URI that always loads the subject's current champion."""
    return f"models:/{model_name(subject)}@{CHAMPION}"
