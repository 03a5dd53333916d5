"""Where everything coopscore writes lives: under one folder, `var/` by default.

Set COOPSCORE_HOME to put it elsewhere (the tests use a temporary folder each).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def raw(self) -> Path:  # what the platform (or the generator) delivered
        return self.home / "data" / "raw"

    @property
    def clean(self) -> Path:  # rows accepted by the contracts
        return self.home / "data" / "clean"

    @property
    def quarantine(self) -> Path:  # rows refused, each with the rule it broke
        return self.home / "data" / "quarantine"

    @property
    def features(self) -> Path:
        return self.home / "features"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        # Our own variable: MLflow itself writes MLFLOW_TRACKING_URI into the environment when a
        # store is chosen, which would make every later Paths point at the first store.
        return os.environ.get("COOPSCORE_TRACKING_URI") or f"sqlite:///{self.mlflow / 'mlflow.db'}"

    @property
    def artifacts(self) -> Path:
        return self.mlflow / "artifacts"

    @property
    def service(self) -> Path:  # the scoring service's own records
        return self.home / "service"


def get_paths() -> Paths:
    return Paths(Path(os.environ.get("COOPSCORE_HOME", "var")).resolve())
