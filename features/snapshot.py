"""The online snapshot: every member's and cooperative's history features as of one date.

Built nightly (`coopscore features`); the service reads it so a request only computes the few
application features. A request for another as-of date is computed on demand from the same
catalogue (features.engine), so both paths give the same numbers.
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd

from features import engine
from features.engines import open_engine

SNAPSHOT_FILE = "snapshot.parquet"
META_FILE = "snapshot.json"


def data_end_date(clean_dir: Path) -> date:
    """The day after the last accepted transaction: the natural 'today' of a data set."""
    con = engine.connect(clean_dir)
    last = con.execute("SELECT MAX(ts) FROM transactions").fetchone()[0]
    if last is None:
        raise ValueError("no accepted transactions: nothing to compute features from")
    return (pd.Timestamp(last).normalize() + pd.Timedelta(days=1)).date()


def subjects(clean_dir: Path) -> pd.DataFrame:
    """Every member and cooperative of the accepted tables: entity_type, entity_id."""
    members = pd.read_parquet(Path(clean_dir) / "members.parquet", columns=["member_id"])
    coops = pd.read_parquet(Path(clean_dir) / "cooperatives.parquet", columns=["cooperative_id"])
    return pd.concat([
        pd.DataFrame({"entity_type": "member", "entity_id": members["member_id"]}),
        pd.DataFrame({"entity_type": "cooperative", "entity_id": coops["cooperative_id"]}),
    ], ignore_index=True)


def snapshot_spine(clean_dir: Path, as_of: date) -> pd.DataFrame:
    """The snapshot's spine: every subject as of `as_of`, its spine_id "entity_type:entity_id"."""
    spine = subjects(clean_dir)
    spine["as_of"] = pd.Timestamp(as_of)
    spine["spine_id"] = spine["entity_type"] + ":" + spine["entity_id"]
    return spine


def build_snapshot(clean_dir: Path, out_dir: Path, as_of: date | None = None,
                   engine_name: str | None = None, spark_master: str | None = None) -> Path:
    """Every subject's history features as of `as_of` (default: the data's end), computed by the
    engine named (features.engines; default the settings'), written for the service."""
    as_of = as_of or data_end_date(clean_dir)
    spine = snapshot_spine(clean_dir, as_of)
    rows = open_engine(clean_dir, engine_name, spark_master).history_features(spine)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SNAPSHOT_FILE
    rows.to_parquet(path, index=False)
    (out_dir / META_FILE).write_text(json.dumps({"as_of": as_of.isoformat(), "rows": len(rows)}))
    return path


def snapshot_date(out_dir: Path) -> date:
    """The as-of date of the snapshot written in `out_dir`."""
    return date.fromisoformat(json.loads((out_dir / META_FILE).read_text())["as_of"])
