"""Computes the catalogue's features on DuckDB over the accepted Parquet tables.

Point in time: every feature of a row (entity, as_of) is computed from data strictly before as_of.
Each source is joined to the spine with `ts < as_of` (or `month < as_of`); nothing else reaches the
features. tests/test_features_point_in_time.py proves it by adding later data and comparing.

Two stages, so that serving does not recompute history on every request:
1. history: per (entity, as_of), the aggregates and every feature that does not need an application;
2. application: the features of a requested loan, from the history row and the application.
Training runs both on all applications; the service reads stage 1 from a snapshot and runs stage 2
per request. Stage 1 is the catalogue's declarations compiled to SQL (features.compiler) and run on
DuckDB: this module writes no feature's SQL; stage 2 is the catalogue's on-demand numpy
functions (features/on_demand.py), the very ones the service calls, so training and serving share
one definition of every application feature.

Stage 1 also returns the catalogue's MEASURES, three counts that are not model inputs:
history_days and transactions_365d (features.sufficiency) and repayment_months (loan-months repaid
so far: how long the record behind the on-time rate is).
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features import compiler, on_demand
from features.catalogue import FEATURES, MEASURES
from features.sources import SOURCES, TRANSACTIONS_HISTORY_DAYS

# How far back transactions are read (features.sources): ranking.follow copies that much history.
LOOKBACK_DAYS = TRANSACTIONS_HISTORY_DAYS

# Features computed in stage 2 (they need the application): the catalogue's on-demand ones.
APPLICATION_FEATURES = tuple(f.name for f in FEATURES if f.on_demand is not None)
HISTORY_FEATURES = tuple(f for f in FEATURES if f.on_demand is None)

# The accepted tables the sources read (one DuckDB view each).
SOURCE_TABLES = tuple(sorted({table for source in SOURCES for table in source.reads}))


def connect(clean_dir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per accepted table."""
    con = duckdb.connect()
    for table in SOURCE_TABLES:
        path = Path(clean_dir) / f"{table}.parquet"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run `coopscore ingest` first so that accepted data exists.")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
    return con


@lru_cache(maxsize=1)
def history_sql() -> str:
    """Stage 1's query: the catalogue's declarations compiled for DuckDB (features.compiler)."""
    return compiler.history_sql(HISTORY_FEATURES, MEASURES, compiler.DUCKDB)


def history_features(con: duckdb.DuckDBPyConnection, spine: pd.DataFrame) -> pd.DataFrame:
    """Stage 1. `spine` has spine_id, entity_type, entity_id, as_of (date). One row out per row in."""
    check_spine(spine)
    con.register("spine_df", spine[["spine_id", "entity_type", "entity_id", "as_of"]])
    con.execute("CREATE OR REPLACE TEMP TABLE spine AS SELECT spine_id, entity_type, entity_id, "
                "CAST(as_of AS DATE) AS as_of FROM spine_df")
    out = con.execute(history_sql()).df()
    con.unregister("spine_df")
    if len(out) != len(spine):  # a join that multiplies or loses rows is a bug, loudly
        raise RuntimeError(f"feature build returned {len(out)} rows for {len(spine)} spine rows")
    out["as_of"] = pd.to_datetime(out["as_of"])
    return out


def on_demand_features(history: Mapping[str, np.ndarray], amount_vnd,
                       term_months) -> dict[str, np.ndarray]:
    """Stage 2 on aligned arrays: {feature: float64 array}, in catalogue order. `history` maps
    the columns in features.on_demand.HISTORY_INPUTS to arrays (one value per application)."""
    missing = [c for c in on_demand.HISTORY_INPUTS if c not in history]
    if missing:
        raise ValueError(f"on-demand features need the history columns {missing}")
    return {f.name: np.asarray(f.on_demand(history, amount_vnd, term_months), dtype=np.float64)
            for f in FEATURES if f.on_demand is not None}


def application_features(history: pd.DataFrame, applications: pd.DataFrame,
                         con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
    """Stage 2. `applications` has spine_id, requested_amount_vnd, term_months; joined to the
    history rows by spine_id; rows sorted by spine_id. `con` is unused (kept for callers that
    pass one): the features are the catalogue's on-demand numpy functions, not SQL."""
    merged = history.merge(applications[["spine_id", "requested_amount_vnd", "term_months"]],
                           on="spine_id", how="inner", validate="one_to_one")
    if len(merged) != len(applications):
        raise RuntimeError("every application needs exactly one history row")
    merged = merged.sort_values("spine_id", kind="stable").reset_index(drop=True)
    values = on_demand_features({c: merged[c].to_numpy(dtype=float) for c in on_demand.HISTORY_INPUTS},
                                merged["requested_amount_vnd"].to_numpy(dtype=float),
                                merged["term_months"].to_numpy(dtype=float))
    out = merged.drop(columns=["requested_amount_vnd", "term_months"])
    for name, column in values.items():
        out[name] = column
    return out


def check_spine(spine: pd.DataFrame) -> None:
    """Refuses a spine without its four columns or with a repeated spine_id."""
    missing = {"spine_id", "entity_type", "entity_id", "as_of"} - set(spine.columns)
    if missing:
        raise ValueError(f"spine is missing columns {sorted(missing)}")
    if spine["spine_id"].duplicated().any():
        raise ValueError("spine_id must be unique")
