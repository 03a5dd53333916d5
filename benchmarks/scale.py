"""Nationwide scale, measured stage by stage on DuckDB and Spark side by side: `make benchmark-scale`.

    python -m benchmarks.scale [--members 1000000] [--spine 1000000] [--engines duckdb,spark]
                               [--spark-master local[2]] [--work DIR] [--doc docs/benchmarks-scale.md]
                               [--stages ingest,snapshot,training_set,score,rank] [--append]

One run: generate a dirty world of `--members` members, ingest it, then for each engine the
snapshot features of every subject, the point-in-time feature rows of `--spine` (member, as-of
date) pairs (the training set's stage 1, at the size of 10^6 applications), batch scoring with
reasons of an applications file, and ranking every member. Beside the engines, the training-set
stage is also computed by a competent single-machine baseline: vectorised pandas/NumPy, each
window sum and count as a difference of per-entity cumulative sums found by binary search (what
`merge_asof` does, on all rows at once), checked equal to the engine's values for the columns it
computes.

Each stage runs in a child process; its wall time and peak memory (resident memory of the child
and all its descendants, the Spark JVM included, sampled every 0.1 s) are recorded. On Spark, the
task times of the stage come from Spark's own status API (one task per partition): how many, the
median and slowest, and the executor time against the wall time, which says how the work spreads
over executors. The nationwide estimate scales the measured per-row costs linearly to 10^10
transactions and 6.17 million members, and says so.

Scoring and ranking need a champion model: one is trained once on a demo-size world of the same
generator (the model does not depend on the data's size) and its MLflow store is used by every
stage.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.machine import cpu_and_memory
from features.catalogue import WINDOWS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks-scale.md"
NATIONWIDE_TRANSACTIONS = 10**10  # the upper end of a year's transactions, nationwide (the brief)
NATIONWIDE_MEMBERS = 6_170_000
RECEIVED_AT = "2026-11-30T12:00:00"  # after the generated data, fixed for repeatability
MEASURED_STAGES = ("ingest", "snapshot", "training_set", "score", "rank")  # what --stages picks from
TITLE = "# Nationwide scale, measured\n\nWritten by `make benchmark-scale` (benchmarks/scale.py); one section per run.\n"


def say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


# --- the parent: stages in children, measured -------------------------------------------------------

def _tree_rss(proc) -> int:
    """Resident bytes of a process and all its descendants (0 once gone)."""
    import psutil

    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_stage(stage: str, work: Path, engine: str = "duckdb", extra: dict | None = None) -> dict:
    """Run one stage in a child process: its result dict plus `seconds` (wall, the child's own
    timing of the stage) and `peak_bytes` (the child's tree, sampled). RuntimeError when it fails."""
    import psutil

    result_file = work / f"result-{stage}-{engine}.json"
    result_file.unlink(missing_ok=True)
    args = [sys.executable, "-m", "benchmarks.scale", "--stage", stage, "--engine", engine,
            "--work", str(work), "--result", str(result_file), "--extra", json.dumps(extra or {})]
    child = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    watched = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _tree_rss(watched))
        time.sleep(0.1)
    if child.returncode != 0 or not result_file.exists():
        raise RuntimeError(f"stage {stage} on {engine} failed (exit {child.returncode}); its output "
                           "is above")
    result = json.loads(result_file.read_text())
    result.update(stage=stage, engine=engine, peak_bytes=peak,
                  measured_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    result_file.write_text(json.dumps(result, default=str))  # what --resume keeps
    return result


def measured_before(stage: str, work: Path, engine: str) -> dict | None:
    """The result of `stage` on `engine` measured by an earlier run in `work`, if it finished."""
    result_file = work / f"result-{stage}-{engine}.json"
    if not result_file.exists():
        return None
    result = json.loads(result_file.read_text())
    return result if "peak_bytes" in result else None


# --- the children: one stage each ---------------------------------------------------------------------

def _paths(work: Path, name: str = "world"):
    from settings import Paths, reset_settings

    os.environ["COOPSCORE_HOME"] = str(work / name)
    os.environ["COOPSCORE_TRACKING_URI"] = f"sqlite:///{work / 'model' / 'mlflow.db'}"
    reset_settings()
    return Paths(work / name)


def _spark_tasks(engine) -> dict:
    """Task times of every stage the Spark session ran (Spark's REST status API)."""
    session = getattr(engine, "session", None)
    url = session.sparkContext.uiWebUrl if session is not None else None
    if not url:
        return {}
    app = session.sparkContext.applicationId
    with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/stages?details=true&status=complete",
                                timeout=30) as answer:
        stages = json.load(answer)
    times = [t.get("taskMetrics", {}).get("executorRunTime", 0) / 1000.0
             for s in stages for t in (s.get("tasks") or {}).values()]
    if not times:
        return {}
    times.sort()
    return {"tasks": len(times), "task_median_s": times[len(times) // 2], "task_max_s": times[-1],
            "executor_s": sum(times), "spark_stages": len(stages)}


def stage_model(work: Path, extra: dict) -> dict:
    """Train the champion once on a demo-size world (its MLflow store serves every stage)."""
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from features.snapshot import build_snapshot
    from governance.pipeline import train_and_promote
    from governance.promotion import promote
    from training import registry
    from training.dataset import NotEnoughData

    paths = _paths(work, "model")
    generate(paths.raw, members=extra["model_members"], cooperatives=1_000, seed=42, dirty=True)
    ingest(paths.raw, paths.clean, paths.quarantine,
           received_at=datetime.fromisoformat(RECEIVED_AT))
    build_snapshot(paths.clean, paths.features)
    started = time.perf_counter()
    trained = []
    for subject in ("member", "cooperative"):
        try:
            train_and_promote(paths, subject)
        except NotEnoughData as exc:  # a small model world may hold too few cooperatives
            say(f"  no {subject} model: {exc}")
            continue
        trained.append(subject)
        registry.use_store(paths)
        if registry.champion_version(subject) is None:  # the gates judge quality; this run measures speed
            promote(paths, subject, None, override="scale benchmark: measures speed, not quality")
    if "member" not in trained:
        raise RuntimeError("no member model could be trained: raise --model-members")
    return {"seconds": time.perf_counter() - started, "models": trained}


def stage_generate(work: Path, extra: dict) -> dict:
    from coopscore.synthetic import generate

    paths = _paths(work)
    started = time.perf_counter()
    summary = generate(paths.raw, members=extra["members"], seed=extra.get("seed", 2027), dirty=True,
                       **({"stream": True} if extra.get("stream") else {}))
    return {"seconds": time.perf_counter() - started, "rows": summary.rows}


def stage_ingest(work: Path, extra: dict, engine_name: str) -> dict:
    from data_contracts.ingest import ingest

    paths = _paths(work)
    options = {} if engine_name == "duckdb" else {"engine": engine_name}
    started = time.perf_counter()
    report = ingest(paths.raw, paths.clean, paths.quarantine,
                    received_at=datetime.fromisoformat(RECEIVED_AT), **options)
    return {"seconds": time.perf_counter() - started,
            "rows": sum(t.input_rows for t in report.tables),
            "accepted": sum(t.accepted for t in report.tables),
            "quarantined": sum(t.quarantined for t in report.tables)}


def _engine(paths, engine_name: str, master: str | None):
    from features.engines import open_engine

    return open_engine(paths.clean, engine_name, master)


def stage_snapshot(work: Path, extra: dict, engine_name: str) -> dict:
    from features.snapshot import data_end_date, snapshot_spine

    paths = _paths(work)
    spine = snapshot_spine(paths.clean, data_end_date(paths.clean))
    engine = _engine(paths, engine_name, extra.get("master"))
    started = time.perf_counter()
    rows = engine.history_features(spine)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(rows), **_spark_tasks(engine)}


def training_spine(paths, size: int, seed: int = 0):
    """`size` (member, as-of date) pairs: each member's applications first, then month starts of
    its history, drawn at random, so the spine has the applications' point-in-time shape at any size."""
    import numpy as np
    import pandas as pd

    from features.snapshot import subjects
    from features.snapshot import data_end_date

    members = subjects(paths.clean)
    members = members[members["entity_type"] == "member"].reset_index(drop=True)
    end = pd.Timestamp(data_end_date(paths.clean))
    months = pd.date_range(end - pd.DateOffset(months=24), end, freq="MS")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(members), size)
    spine = members.iloc[pick][["entity_type", "entity_id"]].reset_index(drop=True)
    spine["as_of"] = months[rng.integers(0, len(months), size)]
    spine["spine_id"] = [f"s{i}" for i in range(size)]
    return spine


def stage_training_set(work: Path, extra: dict, engine_name: str) -> dict:
    paths = _paths(work)
    spine = training_spine(paths, extra["spine"])
    if engine_name == "pandas":
        started = time.perf_counter()
        rows = window_baseline(paths.clean, spine)
        seconds = time.perf_counter() - started
        rows.to_parquet(work / "baseline.parquet")
        return {"seconds": seconds, "rows": len(rows), "columns": rows.shape[1] - 1}
    engine = _engine(paths, engine_name, extra.get("master"))
    started = time.perf_counter()
    rows = engine.history_features(spine)
    seconds = time.perf_counter() - started
    baseline_file = work / "baseline.parquet"
    checked = None
    if baseline_file.exists():
        checked = _agrees(rows, baseline_file)
    return {"seconds": seconds, "rows": len(rows), "columns": rows.shape[1] - 1,
            "baseline_mismatches": checked, **_spark_tasks(engine)}


def window_baseline(clean_dir: Path, spine):
    """The transaction window sums and counts (features.catalogue: inflow/outflow x 30/90/180/365
    days before the as-of date, a loan disbursal counted as neither), all spine rows at once:
    per-entity cumulative sums over transactions sorted by (entity, day), and two binary searches
    per row and window, the vectorised form of merge_asof."""
    import numpy as np
    import pandas as pd

    import pyarrow.parquet as pq

    # 10^8 rows: text columns as categories (codes), never as Python strings
    tx = pq.read_table(clean_dir / "transactions.parquet",
                       columns=["entity_type", "entity_id", "ts", "amount_vnd", "direction", "category"]
                       ).to_pandas(strings_to_categorical=True)
    counted = (tx["category"] != "loan_disbursal").to_numpy()  # a disbursal is neither in nor out
    ids, types = tx["entity_id"].cat.categories, tx["entity_type"].cat.categories
    entity = (tx["entity_type"].cat.codes.to_numpy().astype(np.int64) * len(ids)
              + tx["entity_id"].cat.codes.to_numpy())
    spine_type = pd.Categorical(spine["entity_type"], categories=types).codes.astype(np.int64)
    spine_id = pd.Categorical(spine["entity_id"], categories=ids).codes.astype(np.int64)
    known = (spine_type >= 0) & (spine_id >= 0)  # an entity with no transactions has zero sums
    codes = np.where(known, spine_type * len(ids) + spine_id, -1)
    day = tx["ts"].to_numpy().astype("datetime64[D]").astype(np.int64)
    as_of_day = spine["as_of"].to_numpy().astype("datetime64[D]").astype(np.int64)
    out = pd.DataFrame({"spine_id": spine["spine_id"].to_numpy()})
    shift = np.int64(1 << 20)  # days fit in 20 bits until 4840 AD
    direction = tx["direction"]
    for name in ("inflow", "outflow"):
        mine = (direction == name).to_numpy() & counted
        key = entity[mine] * shift + day[mine]
        order = np.argsort(key, kind="stable")
        key = key[order]
        # integer dong summed exactly (a float cumulative sum of 10^8 amounts loses the small windows)
        amount = np.concatenate([[0], np.cumsum(tx["amount_vnd"].to_numpy()[mine][order], dtype=np.int64)])
        hi = np.searchsorted(key, codes * shift + as_of_day, side="left")
        for window in WINDOWS:  # the catalogue's windows: the columns the baseline computes
            lo = np.searchsorted(key, codes * shift + as_of_day - window, side="left")
            out[f"{name}_sum_{window}d"] = np.where(known, amount[hi] - amount[lo], 0).astype(float)
            out[f"{name}_count_{window}d"] = np.where(known, hi - lo, 0)
    return out


def _agrees(rows, baseline_file: Path) -> int:
    """Cells where the engine and the baseline differ (counts exactly, sums within 1e-9 relative)."""
    import numpy as np
    import pandas as pd

    base = pd.read_parquet(baseline_file).set_index("spine_id")
    mine = rows.set_index("spine_id").loc[base.index, base.columns].fillna(0)
    a, b = mine.to_numpy(dtype=float), base.to_numpy(dtype=float)
    return int((~np.isclose(a, b, rtol=1e-9, atol=1e-6)).sum())


def stage_score(work: Path, extra: dict, engine_name: str) -> dict:
    """Score an applications file of the members' applications with reasons."""
    import pandas as pd

    from serving.batch import score_file

    paths = _paths(work)
    applications = pd.read_parquet(paths.clean / "loan_applications.parquet")
    file = work / "applications.parquet"
    if not file.exists():
        pd.DataFrame({"subject_type": applications["entity_type"],
                      "subject_id": applications["entity_id"],
                      "amount_vnd": applications["requested_amount_vnd"],
                      "term_months": applications["term_months"],
                      "purpose": applications["purpose"]}  # as of the snapshot: offline scoring's date
                     ).to_parquet(file)
    out = work / f"scored-{engine_name}.parquet"
    if engine_name == "spark":
        from serving.spark_batch import score_file_spark

        engine = _engine(paths, "spark", extra.get("master"))
        started = time.perf_counter()
        report = score_file_spark(paths, file, out, engine)
    else:
        started = time.perf_counter()
        report = score_file(paths, file, out)
    seconds = time.perf_counter() - started
    if not report.scored:  # a stage that only rejected rows would time the wrong thing
        raise RuntimeError(f"none of {report.rows:,} applications was scored: {report}")
    return {"seconds": seconds, "rows": report.rows, "scored": report.scored,
            **(_spark_tasks(engine) if engine_name == "spark" else {})}


def stage_rank(work: Path, extra: dict, engine_name: str) -> dict:
    from ranking.rank import get_scorer, rank_members

    paths = _paths(work)
    if engine_name == "spark":
        from ranking.spark_rank import rank_members_spark

        engine = _engine(paths, "spark", extra.get("master"))
        started = time.perf_counter()
        run = rank_members_spark(paths, engine)
        return {"seconds": time.perf_counter() - started, "rows": run.ranked, **_spark_tasks(engine)}
    scorer = get_scorer(paths)
    started = time.perf_counter()
    run = rank_members(paths, scorer=scorer)
    return {"seconds": time.perf_counter() - started, "rows": run.ranked}


def stage_features_for_service(work: Path, extra: dict) -> dict:
    """The DuckDB snapshot the scorer reads (scoring and ranking start from it on either engine)."""
    from features.snapshot import build_snapshot

    paths = _paths(work)
    started = time.perf_counter()
    build_snapshot(paths.clean, paths.features)
    return {"seconds": time.perf_counter() - started}


STAGES = {"model": stage_model, "generate": stage_generate, "ingest": stage_ingest,
          "snapshot": stage_snapshot, "training_set": stage_training_set, "score": stage_score,
          "rank": stage_rank, "service_snapshot": stage_features_for_service}
ENGINE_STAGES = {"ingest", "snapshot", "training_set", "score", "rank"}


def child(stage: str, engine: str, work: Path, result: Path, extra: dict) -> None:
    fn = STAGES[stage]
    out = fn(work, extra, engine) if stage in ENGINE_STAGES else fn(work, extra)
    result.write_text(json.dumps(out, default=str))


# --- the report ------------------------------------------------------------------------------------

def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def report(results: list[dict], args, machine: str, took: float, skipped: list[str]) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    generated = next((r for r in results if r["stage"] == "generate"), {})
    tx = (generated.get("rows") or {}).get("transactions", 0)
    lines = [f"## {args.members:,} members, engines: {args.engines}", "",
             f"`make benchmark-scale` (`python -m benchmarks.scale --members {args.members} "
             f"--spine {args.spine} --engines {args.engines}{' --stream' if args.stream else ''}"
             f"{'' if args.stages == ','.join(MEASURED_STAGES) else ' --stages ' + args.stages}`) on {when}, "
             f"in {took / 60:.0f} min (the stages: {sum(r['seconds'] for r in results) / 60:.0f} min). "
             f"Machine: {machine}. "
             f"Spark master: `{args.spark_master}`.", "",
             f"World: {args.members:,} members, {tx:,} transactions generated (dirty). Each stage "
             "in its own process; peak memory is the resident memory of that process and every "
             "process it started (the Spark JVM included).", "",
             "| stage | engine | rows | seconds | peak GiB | Spark tasks | task median / max s | executor s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if r["stage"] == "model":
            continue
        tasks = (f"{r['tasks']:,}", f"{r['task_median_s']:.2f} / {r['task_max_s']:.2f}",
                 f"{r['executor_s']:.0f}") if r.get("tasks") else ("-", "-", "-")
        rows = r.get("rows")
        rows = f"{sum(rows.values()):,}" if isinstance(rows, dict) else (f"{rows:,}" if rows else "-")
        engine = "-" if r["stage"] == "generate" else r["engine"]  # not an engine's stage
        lines.append(f"| {r['stage']} | {engine} | {rows} | {r['seconds']:.1f} | "
                     f"{_gib(r['peak_bytes'])} | {' | '.join(tasks)} |")
    kept = [f"{r['stage']} on {r['engine']} ({r.get('measured_at', 'earlier')})" for r in results
            if r.get("resumed")]
    if kept:
        lines += ["", "Resumed (`--resume`): measured by an earlier run on the same data and kept: "
                  + "; ".join(kept) + "."]
    if skipped:
        lines += ["", "Not measured in this run: " + "; ".join(skipped) + "."]
    lines += ["", "### Reading", ""]
    by = {(r["stage"], r["engine"]): r for r in results}
    duck, base = by.get(("training_set", "duckdb")), by.get(("training_set", "pandas"))
    if duck and base:
        lines.append(
            f"- Training set ({args.spine:,} point-in-time rows): DuckDB {duck['seconds']:.1f} s for "
            f"all {duck['columns']} history features, peak {_gib(duck['peak_bytes'])} GiB; the "
            f"vectorised pandas baseline {base['seconds']:.1f} s for its {base['columns']} window "
            f"columns alone, peak {_gib(base['peak_bytes'])} GiB; cells where they differ: "
            f"{duck.get('baseline_mismatches')}. Goal: DuckDB within 20 s and 8 GiB.")
    for engine in ("duckdb", "spark"):
        scored, ranked = by.get(("score", engine)), by.get(("rank", engine))
        if scored:
            lines.append(f"- Batch scoring with reasons on {engine}: {scored['scored']:,} of "
                         f"{scored['rows']:,} applications scored in {scored['seconds']:.1f} s "
                         f"({scored['rows'] / scored['seconds']:,.0f} rows/s), peak "
                         f"{_gib(scored['peak_bytes'])} GiB.")
        if ranked:
            lines.append(f"- Ranking with actions followed in the raw data on {engine}: "
                         f"{ranked['rows']:,} members in {ranked['seconds']:.1f} s, peak "
                         f"{_gib(ranked['peak_bytes'])} GiB.")
    spark = by.get(("training_set", "spark"))
    if duck and spark:
        lines.append(f"- Spark against DuckDB on one machine, training set: "
                     f"{spark['seconds'] / duck['seconds']:.1f}x (goal: within 5x).")
    snap_duck, snap_spark = by.get(("snapshot", "duckdb")), by.get(("snapshot", "spark"))
    if snap_duck and snap_spark:
        lines.append(f"- Spark against DuckDB, snapshot: {snap_spark['seconds'] / snap_duck['seconds']:.1f}x.")
    score_duck, score_spark = by.get(("score", "duckdb")), by.get(("score", "spark"))
    service = by.get(("service_snapshot", "duckdb"))
    if score_duck and score_spark and service:
        # like for like: the one machine reads the nightly snapshot; Spark computes the features
        one_machine = score_duck["seconds"] + service["seconds"]
        lines.append(f"- Spark against DuckDB, batch scoring: {score_spark['seconds'] / one_machine:.1f}x "
                     f"against the snapshot ({service['seconds']:.1f} s) and the scoring "
                     f"({score_duck['seconds']:.1f} s) together: DuckDB scores from the nightly "
                     "snapshot, Spark computes the applicants' history features in the run.")
    if tx:
        lines += ["", "### Nationwide estimate (linear in rows, from the costs measured above)", "",
                  f"Scaling factor: {NATIONWIDE_TRANSACTIONS:,} transactions a year against the "
                  f"{tx:,} here ({NATIONWIDE_TRANSACTIONS / tx:,.0f}x); members "
                  f"{NATIONWIDE_MEMBERS:,} against {args.members:,} "
                  f"({NATIONWIDE_MEMBERS / args.members:,.1f}x). Spark's executor seconds divide by "
                  "the cores of a cluster; a single machine's do not.", "",
                  "| stage | engine | measured s | nationwide core-hours | on 100 cores, hours |",
                  "| --- | --- | --- | --- | --- |"]
        for r in results:
            if r["stage"] not in ("ingest", "snapshot", "training_set", "score", "rank"):
                continue
            factor = (NATIONWIDE_TRANSACTIONS / tx if r["stage"] in ("ingest", "snapshot", "training_set")
                      else NATIONWIDE_MEMBERS / args.members)
            work_s = r.get("executor_s") or r["seconds"] * (2 if r["engine"] != "pandas" else 1)
            core_hours = work_s * factor / 3600
            lines.append(f"| {r['stage']} | {r['engine']} | {r['seconds']:.1f} | {core_hours:,.0f} | "
                         f"{core_hours / 100:,.1f} |")
        lines += ["", "Single-machine work is counted as both cores busy for the whole stage (an "
                  "upper bound); Spark's as the executor time its tasks report. A linear estimate "
                  "ignores shuffles that grow faster than the data and the cluster's own overheads: "
                  "it is an order of magnitude, to be replaced by a cluster run."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--spine", type=int, default=1_000_000, help="point-in-time rows of the training-set stage")
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--model-members", type=int, default=20_000,
                        help="members of the demo-size world the scoring model is trained on")
    parser.add_argument("--stream", action="store_true", help="generate with the streaming generator")
    parser.add_argument("--work", type=Path, default=None, help="keep the data here (default: a temporary folder)")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--resume", action="store_true",
                        help="with --work: keep the stages an earlier run there finished, run the rest")
    parser.add_argument("--stages", default=",".join(MEASURED_STAGES),
                        help="which engine stages to measure (the world is always generated and "
                             "ingested on DuckDB, which every stage reads): " + ", ".join(MEASURED_STAGES))
    parser.add_argument("--append", action="store_true",
                        help="add this run to the doc's runs instead of replacing them (a second size)")
    # the child's own arguments
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="duckdb", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        child(args.stage, args.engine, args.work, args.result, json.loads(args.extra))
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - {"duckdb", "spark"})
    if unknown:
        raise SystemExit(f"unknown engines {unknown}: use duckdb and/or spark")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(MEASURED_STAGES))
    if unknown or not stages:
        raise SystemExit(f"{f'unknown stages {unknown}' if unknown else 'no stage named'}: "
                         f"use some of {', '.join(MEASURED_STAGES)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coopscore-scale-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        extra = {"members": args.members, "spine": args.spine, "model_members": args.model_members, "master": args.spark_master,
                 "stream": args.stream}
        results, skipped = [], []

        def step(stage: str, engine: str = "duckdb") -> None:
            kept = measured_before(stage, work, engine) if args.resume else None
            if kept:
                results.append({**kept, "resumed": True})
                say(f"{stage} on {engine}: kept from {kept.get('measured_at', 'an earlier run')}")
                return
            say(f"{stage} on {engine}")
            try:
                results.append(run_stage(stage, work, engine, extra))
            except RuntimeError as exc:
                skipped.append(f"{stage} on {engine} ({exc})")
                say(f"  {exc}")
                return
            r = results[-1]
            say(f"  {r['seconds']:.1f} s, peak {_gib(r['peak_bytes'])} GiB")

        if "score" in stages or "rank" in stages:
            step("model")
        step("generate")
        # Spark's ingest only when measured; DuckDB's always and last: the clean tables every later
        # stage reads, on either engine, are the single-machine path's
        if "spark" in engines and "ingest" in stages:
            step("ingest", "spark")
        step("ingest", "duckdb")
        if "score" in stages or "rank" in stages:
            step("service_snapshot")
        if "snapshot" in stages:
            for engine in engines:
                step("snapshot", engine)
        if "training_set" in stages:
            step("training_set", "pandas")
            for engine in engines:
                step("training_set", engine)
        for engine in engines:
            for stage in ("score", "rank"):
                if stage in stages:
                    step(stage, engine)
    cpu, mem = cpu_and_memory()
    section = report(results, args, f"{cpu}, {os.cpu_count()} cores, {mem}",
                     time.perf_counter() - started, skipped)
    before = args.doc.read_text(encoding="utf-8") if args.append and args.doc.exists() else TITLE
    head, runs, earlier = before.partition("\n## ")  # newest first: the new run above the others
    args.doc.write_text(head.rstrip() + "\n\n" + section.rstrip() + "\n"
                        + (f"\n## {earlier}" if runs else ""), encoding="utf-8")
    say(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
