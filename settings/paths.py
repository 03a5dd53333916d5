"""Where everything coopscore writes lives: under one folder, `var/` by default.

COOPSCORE_HOME (settings.Settings.home) puts it elsewhere; the tests use a temporary folder each.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from settings.config import get_settings


@dataclass(frozen=True)
class Paths:
    """The folders and stores under one home; building one touches nothing on disk."""

    home: Path

    @property
    def raw(self) -> Path:
        """What the platform (or the generator) delivered."""
        return self.home / "data" / "raw"

    @property
    def clean(self) -> Path:
        """Rows accepted by the contracts."""
        return self.home / "data" / "clean"

    @property
    def quarantine(self) -> Path:
        """Rows refused, each with the rule it broke."""
        return self.home / "data" / "quarantine"

    @property
    def features(self) -> Path:
        """Feature snapshots."""
        return self.home / "features"

    @property
    def mlflow(self) -> Path:
        """The local MLflow store (used unless COOPSCORE_TRACKING_URI names another)."""
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        """COOPSCORE_TRACKING_URI, else the SQLite store under this home."""
        # Our own variable: MLflow itself writes MLFLOW_TRACKING_URI into the environment when a
        # store is chosen, which would make every later Paths point at the first store.
        return get_settings().tracking_uri or f"sqlite:///{self.mlflow / 'mlflow.db'}"

    @property
    def artifacts(self) -> Path:
        """MLflow's artifact root (models, plots, model cards)."""
        return self.mlflow / "artifacts"

    @property
    def service(self) -> Path:
        """The scoring service's own records."""
        return self.home / "service"


def get_paths() -> Paths:
    """The paths under the configured home (COOPSCORE_HOME, default `var`), made absolute."""
    return Paths(get_settings().home.resolve())
