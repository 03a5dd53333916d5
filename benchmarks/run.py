"""Speed of every step, reproducible with one command: `make benchmark`.

    python -m benchmarks.run [--members 100000] [--demo-members 20000] [--requests 500]

Runs the real pipeline twice (the pilot size, about 10^7 transactions, and the demo size) in
temporary folders, then the real BentoML server over HTTP, and writes docs/benchmarks.md with the
machine it ran on. Each measurement is compared, in the same run, with a baseline:
- ingest: in batches against whole tables in one batch each (each in a child process, for its
  peak memory; benchmarks/ingest_memory.py), with the same verdicts checked;
- features: the DuckDB engine against a plain pandas loop over applications (the obvious way);
- service: the snapshot path (history precomputed) against on-demand history for another date.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from benchmarks import ingest_memory
from benchmarks.machine import cpu_and_memory

import httpx
import pandas as pd

from coopscore.synthetic import generate
from features import engine
from features.snapshot import build_snapshot
from governance.pipeline import train_and_promote
from governance.promotion import promote
from serving.launcher import start_server, stop_server
from settings import Paths
from training.dataset import application_spine, build_training_set

ROOT = Path(__file__).resolve().parents[1]
BASELINE_APPLICATIONS = 50  # the pandas loop is slow: a sample is enough to measure it
logging.getLogger("mlflow").setLevel(logging.WARNING)


def timed(label: str, fn, *args, **kwargs):
    print(f"  {label} ...", flush=True)
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return result, seconds


def machine() -> str:
    cpu, mem = cpu_and_memory()
    return (f"{cpu}, {os.cpu_count()} cores, {mem}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, DuckDB {version('duckdb')}, LightGBM "
            f"{version('lightgbm')}, BentoML {version('bentoml')}, MLflow {version('mlflow')}")


def pandas_baseline(clean_dir: Path, spine: pd.DataFrame) -> float:
    """Seconds per application for the obvious pandas loop computing only the 16 window
    aggregates (a small part of what the engine computes)."""
    tx = pd.read_parquet(clean_dir / "transactions.parquet",
                         columns=["entity_type", "entity_id", "ts", "amount_vnd", "direction"])
    started = time.perf_counter()
    for row in spine.itertuples():
        mine = tx[(tx.entity_type == row.entity_type) & (tx.entity_id == row.entity_id)
                  & (tx.ts < row.as_of)]
        for days in (30, 90, 180, 365):
            window = mine[mine.ts >= row.as_of - pd.Timedelta(days=days)]
            for direction in ("inflow", "outflow"):
                part = window[window.direction == direction]
                _ = (part.amount_vnd.sum(), len(part))
    return (time.perf_counter() - started) / len(spine)


def pipeline(paths: Paths, members: int, cooperatives: int) -> dict:
    out: dict = {"members": members, "cooperatives": cooperatives}
    summary, out["generate_s"] = timed("generate", generate, paths.raw, members=members,
                                       cooperatives=cooperatives, seed=42)
    out["transactions"] = summary.rows["transactions"]
    out["all_rows"] = sum(summary.rows.values())
    # each in a child process, for its own peak memory; the baseline (whole tables) is thrown away
    batched, whole = ingest_memory.compare(paths.raw, paths.home / "data", paths.home / "whole-tables")
    shutil.rmtree(paths.home / "whole-tables")
    out["ingest_s"], out["ingest_gib"] = batched["seconds"], batched["peak_rss_bytes"] / 2**30
    out["ingest_whole_s"], out["ingest_whole_gib"] = whole["seconds"], whole["peak_rss_bytes"] / 2**30
    _, out["snapshot_s"] = timed("feature snapshot (every subject, as of the data end)",
                                 build_snapshot, paths.clean, paths.features)
    out["subjects"] = members + cooperatives
    rows, out["training_set_s"] = timed("training set (every application, as of its date)",
                                        build_training_set, paths.clean, "member")
    out["applications"] = len(rows)
    spine = application_spine(paths.clean, "member").head(BASELINE_APPLICATIONS)
    out["pandas_s_per_app"] = pandas_baseline(paths.clean, spine)
    out["duckdb_s_per_app"] = out["training_set_s"] / max(1, out["applications"])
    result, out["train_s"] = timed("train the member model (incl. MLflow logging and the gates)",
                                   train_and_promote, paths, "member")
    if not result.promoted:  # the service needs a champion; the gates are not what is measured here
        promote(paths, "member", result.version, override="speed benchmark, gates not under test")
    return out


def latency(paths: Paths, requests: int) -> dict:
    members = pd.read_parquet(paths.features / "snapshot.parquet")
    ids = members[(members.entity_type == "member") & (members.transactions_365d >= 12)
                  & (members.history_days >= 180)].entity_id.head(requests).tolist()
    proc, base = start_server(paths.home)
    out = {}
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            def one(member_id, as_of=None):
                body = {"subject_type": "member", "subject_id": member_id,
                        "application": {"amount_vnd": 60_000_000, "term_months": 12,
                                        "purpose": "working_capital"}}
                if as_of:
                    body["as_of_date"] = as_of
                started = time.perf_counter()
                response = client.post("/v1/scores", json=body)
                response.raise_for_status()
                return (time.perf_counter() - started) * 1000

            for member_id in ids[:20]:  # warm up
                one(member_id)
            snap = sorted(one(m) for m in ids)
            demand = sorted(one(m, "2024-06-01") for m in ids[: max(20, requests // 10)])
        for name, values in (("snapshot", snap), ("on_demand", demand)):
            out[f"{name}_n"] = len(values)
            out[f"{name}_p50_ms"] = statistics.median(values)
            out[f"{name}_p99_ms"] = values[min(len(values) - 1, int(0.99 * len(values)))]
    finally:
        stop_server(proc)
    return out


def write_report(pilot: dict, demo: dict, lat: dict, path: Path) -> None:
    def row(label, key, fmt="{:.1f}"):
        return f"| {label} | {fmt.format(pilot[key])} | {fmt.format(demo[key])} |"

    text = f"""# Benchmarks

Written by `make benchmark` (`python -m benchmarks.run`) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.

Machine: {machine()}.

## Pipeline

| step | pilot size | demo size |
| --- | --- | --- |
| members / cooperatives | {pilot['members']:,} / {pilot['cooperatives']:,} | {demo['members']:,} / {demo['cooperatives']:,} |
| transactions generated | {pilot['transactions']:,} | {demo['transactions']:,} |
{row('generate (s)', 'generate_s')}
| generator throughput (rows/s, all tables) | {pilot['all_rows'] / pilot['generate_s']:,.0f} | {demo['all_rows'] / demo['generate_s']:,.0f} |
{row('ingest with quarantine, in batches (s)', 'ingest_s')}
{row('ingest: peak memory in batches (GiB)', 'ingest_gib', '{:.2f}')}
{row('baseline: ingest of whole tables, one batch each (s)', 'ingest_whole_s')}
{row('baseline: peak memory of whole tables (GiB)', 'ingest_whole_gib', '{:.2f}')}
{row('feature snapshot, every subject as of one date (s)', 'snapshot_s')}
| member applications in the training set | {pilot['applications']:,} | {demo['applications']:,} |
{row('training set: every application as of its own date (s)', 'training_set_s')}
{row('train the member model, incl. MLflow logging and registry (s)', 'train_s')}

Model quality (AUC with intervals, the feature ceiling, calibration, gate verdicts on seeds 42 and 7)
is written by the same command to docs/evaluation.md, the one place those figures live.

Baseline in the same run: features per application, DuckDB engine (all {len(engine.HISTORY_FEATURES) + len(engine.APPLICATION_FEATURES)} features)
against a pandas loop computing only the 16 window aggregates over the same data:

| | pilot size | demo size |
| --- | --- | --- |
| DuckDB engine (ms per application) | {pilot['duckdb_s_per_app'] * 1000:.2f} | {demo['duckdb_s_per_app'] * 1000:.2f} |
| pandas loop, {BASELINE_APPLICATIONS} applications (ms per application) | {pilot['pandas_s_per_app'] * 1000:.1f} | {demo['pandas_s_per_app'] * 1000:.1f} |
| speed-up | {pilot['pandas_s_per_app'] / pilot['duckdb_s_per_app']:.0f}x | {demo['pandas_s_per_app'] / demo['duckdb_s_per_app']:.0f}x |

## Scoring service (demo size, real BentoML server over HTTP on loopback, one client, sequential)

| path | requests | p50 (ms) | p99 (ms) |
| --- | --- | --- | --- |
| snapshot (history precomputed, as of the data end) | {lat['snapshot_n']} | {lat['snapshot_p50_ms']:.1f} | {lat['snapshot_p99_ms']:.1f} |
| on demand (another as-of date: history computed per request) | {lat['on_demand_n']} | {lat['on_demand_p50_ms']:.1f} | {lat['on_demand_p99_ms']:.1f} |

Each answer holds the PD, score, grade, every feature's contribution and the top reasons.
"""
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--cooperatives", type=int, default=1_000)
    parser.add_argument("--demo-members", type=int, default=20_000)
    parser.add_argument("--demo-cooperatives", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"pilot size: {args.members:,} members")
        pilot = pipeline(Paths(Path(tmp) / "pilot"), args.members, args.cooperatives)
        print(f"demo size: {args.demo_members:,} members")
        demo_paths = Paths(Path(tmp) / "demo")
        demo = pipeline(demo_paths, args.demo_members, args.demo_cooperatives)
        print("service latency")
        lat = latency(demo_paths, args.requests)
    write_report(pilot, demo, lat, args.out)
    print("model quality on seeds 42 and 7, pilot size (docs/evaluation.md)")
    from benchmarks import model_quality

    model_quality.main(["--seeds", "42,7"])


if __name__ == "__main__":
    main()
