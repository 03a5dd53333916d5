"""Which engine computes stage 1 (the history features): DuckDB on one machine, Spark nationwide.

Both run the same compiled declarations (features.compiler) over the same accepted Parquet and
answer `history_features(spine)` with the same columns and values (tests/test_spark_parity.py).
The snapshot (features.snapshot) and the training set (training.dataset) ask for one by name;
without a name, the settings' `engine` (COOPSCORE_ENGINE, default duckdb).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from features import engine
from settings import get_settings

ENGINES = ("duckdb", "spark")


class DuckDBEngine:
    """Stage 1 on an in-memory DuckDB over the accepted tables (features.engine)."""

    def __init__(self, clean_dir: Path):
        self.con = engine.connect(clean_dir)

    def history_features(self, spine: pd.DataFrame) -> pd.DataFrame:
        return engine.history_features(self.con, spine)


def open_engine(clean_dir: Path, name: str | None = None, master: str | None = None):
    """The engine called `name` (default: the settings' engine) over `clean_dir`; `master`: a
    Spark master URL (Spark's usual settings otherwise)."""
    name = name or get_settings().engine
    if name not in ENGINES:
        raise ValueError(f"unknown engine '{name}': use one of {', '.join(ENGINES)}")
    if name == "duckdb":
        return DuckDBEngine(clean_dir)
    from features.spark_engine import SparkEngine  # PySpark and its JVM only when asked for

    return SparkEngine.start(clean_dir, master)
