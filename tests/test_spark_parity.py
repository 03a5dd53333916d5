"""The same features on DuckDB and on Spark (PySpark in local mode, the JVM on this machine).

On dirty demo data (every kind of dirt the generator injects, ingested): every history feature of
every subject as of the data's end, and every training row of both models (history and application
features, labels), equal on both engines: counts exactly, ratios within 1e-9 relative, unknown in
the same places. Both engines run the catalogue's declarations compiled by features.compiler; a
dialect slip (Spark reading 1.0 as a DECIMAL, months_between being fractional) shows here.
"""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.timeout(1800)  # a local Spark session on two cores: minutes, not seconds

PARITY_MEMBERS = 2_000
KEYS = ("spine_id", "application_id", "entity_type", "entity_id")
RELATIVE = 1e-9  # the bound; sums of doubles added in another order differ near 1e-15


@pytest.fixture(scope="module")
def dirty_clean(tmp_path_factory):
    from coopscore.synthetic import generate
    from data_contracts.ingest import ingest
    from settings import Paths

    if shutil.which("java") is None:
        pytest.fail("the Spark engine needs Java 17 or newer on PATH (.ci/run installs it)")
    paths = Paths(tmp_path_factory.mktemp("spark-parity"))
    generate(paths.raw, members=PARITY_MEMBERS, cooperatives=100, seed=23, dirty=True)
    report = ingest(paths.raw, paths.clean, paths.quarantine)
    assert all(t.reconciles for t in report.tables)
    assert sum(t.quarantined for t in report.tables) > 0, "dirty data should quarantine rows"
    return paths.clean


@pytest.fixture(scope="module")
def spark(dirty_clean):
    from features.spark_engine import SparkEngine

    engine = SparkEngine.start(dirty_clean, master="local[2]", shuffle_partitions=4)
    yield engine
    engine.stop()


def assert_same(duck: pd.DataFrame, spark: pd.DataFrame, what: str) -> None:
    assert list(duck.columns) == list(spark.columns), what
    assert len(duck) == len(spark), what
    key = next(k for k in KEYS if k in duck.columns)
    duck = duck.sort_values(key, kind="stable").reset_index(drop=True)
    spark = spark.sort_values(key, kind="stable").reset_index(drop=True)
    mismatched = []
    for column in duck.columns:
        a, b = duck[column], spark[column]
        if a.dtype == object or str(a.dtype).startswith(("str", "string", "category")):
            if not (a.astype(str).to_numpy() == b.astype(str).to_numpy()).all():
                mismatched.append(column)
            continue
        if str(a.dtype).startswith("datetime"):
            if not (pd.to_datetime(a).to_numpy() == pd.to_datetime(b).to_numpy()).all():
                mismatched.append(column)
            continue
        x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
        if (np.isnan(x) != np.isnan(y)).any():
            mismatched.append(f"{column} (unknown in different places)")
            continue
        both = ~np.isnan(x)
        if np.allclose(x[both], np.round(x[both])) and np.allclose(y[both], np.round(y[both])):
            if not (x[both] == y[both]).all():  # counts: exactly
                mismatched.append(f"{column} (counts differ)")
            continue
        rel = np.abs(x[both] - y[both]) / np.maximum(np.abs(x[both]), np.finfo(float).tiny)
        if len(rel) and rel.max() > RELATIVE:
            mismatched.append(f"{column} (relative difference {rel.max():.2e})")
    assert not mismatched, f"{what}: {mismatched}"


def test_every_subjects_features_are_the_same_on_duckdb_and_spark(dirty_clean, spark):
    from features import engine, snapshot

    spine = snapshot.snapshot_spine(dirty_clean, snapshot.data_end_date(dirty_clean))
    duck = engine.history_features(engine.connect(dirty_clean), spine)
    assert_same(duck, spark.history_features(spine), "snapshot")
    assert set(duck["entity_type"]) == {"member", "cooperative"}


@pytest.mark.parametrize("subject", ["member", "cooperative"])
def test_every_training_row_is_the_same_on_duckdb_and_spark(dirty_clean, spark, subject):
    from training.dataset import build_training_set

    duck = build_training_set(dirty_clean, subject, engine_name="duckdb")
    on_spark = build_training_set(dirty_clean, subject, engine_name="spark")
    assert len(duck) > 30
    assert_same(duck, on_spark, f"{subject} training rows")


def test_spark_joins_the_transactions_to_the_spine_once(dirty_clean, spark):
    """Run as one statement, Spark inlines each CTE where it is read: its plan joins the
    transactions once per reader (scanning them twice; reused shuffles save the other scans).
    The engine runs the steps one by one and keeps the shared ones, so the final query reads
    the kept join, not the table."""
    from features import snapshot
    from features.spark_engine import history_query, history_sql

    assert "src_transactions" in history_query().shared_steps
    spine = snapshot.snapshot_spine(dirty_clean, snapshot.data_end_date(dirty_clean)).head(50)

    def transaction_scans(frame) -> int:  # file scans reading a column only transactions have
        plan = frame._jdf.queryExecution().executedPlan().toString().splitlines()
        return sum("FileScan" in line and "counterparty_hash#" in line for line in plan)

    frame = spark.history_frame(spark.session.createDataFrame(
        spine.assign(as_of=spine["as_of"].dt.date)))
    assert transaction_scans(spark.session.sql(history_sql())) >= 2
    assert transaction_scans(frame) == 0
    assert frame.count() == len(spine)


def test_a_small_spine_is_broadcast_and_a_large_one_joined_by_entity(dirty_clean, spark, monkeypatch):
    """Up to BROADCAST_SPINE_ROWS the transactions are joined where they lie, to a copy of the
    spine; above it both sides are shuffled by entity (nationwide snapshots). Spark's own size
    threshold is switched off, so that only the engine's rule decides."""
    from features import snapshot, spark_engine
    from features.spark_engine import history_query

    spine = snapshot.snapshot_spine(dirty_clean, snapshot.data_end_date(dirty_clean)).head(300)
    frame = spark.session.createDataFrame(
        spine[["spine_id", "entity_type", "entity_id"]].assign(as_of=spine["as_of"].dt.date))
    join = dict(history_query().steps)["src_transactions"]
    threshold = "spark.sql.autoBroadcastJoinThreshold"
    before = spark.session.conf.get(threshold)
    spark.session.conf.set(threshold, "-1")
    try:
        plans = {}
        for bound in (300, 299):
            monkeypatch.setattr(spark_engine, "BROADCAST_SPINE_ROWS", bound)
            spark._spine_view(frame)
            plans[bound] = spark.session.sql(join)._jdf.queryExecution().executedPlan().toString()
    finally:
        spark.session.conf.set(threshold, before)
    assert "BroadcastHashJoin" in plans[300] and "SortMergeJoin" not in plans[300]
    assert "SortMergeJoin" in plans[299] and "BroadcastHashJoin" not in plans[299]


def test_with_a_checkpoint_directory_the_kept_steps_are_written_there(dirty_clean, spark, tmp_path):
    """On a cluster, `spark.checkpoint.dir` on shared storage: the kept steps go there (and the
    features are the same as DuckDB's). Later tests in this module keep using it, harmlessly."""
    from features import engine, snapshot
    from features.spark_engine import history_query

    spark.session.sparkContext.setCheckpointDir(str(tmp_path / "checkpoints"))
    spine = snapshot.snapshot_spine(dirty_clean, snapshot.data_end_date(dirty_clean)).head(200)
    on_spark = spark.history_features(spine)
    assert_same(engine.history_features(engine.connect(dirty_clean), spine), on_spark, "checkpointed")
    kept = {p.parent for p in (tmp_path / "checkpoints").rglob("part-*")}  # one rdd-N per kept step
    assert len(kept) >= len(history_query().shared_steps)


@pytest.mark.parametrize("values", [[3.0], [5.0, 1.0], [4.0, 1.0, 3.0], [10.0, 0.0] * 5,
                                    [2.5, 1e12, -3.0, 7.0, 7.0]])
def test_the_median_is_the_same_on_both_dialects(spark, values):
    """The dialects' medians (the usual month's) agree with numpy's: the middle value, or the
    mean of the middle two, of the sorted values."""
    import duckdb

    from features.compiler import DUCKDB, SPARK

    rows = ", ".join(f"({v!r})" for v in values)
    on_spark = spark.session.sql(f"SELECT {SPARK.median('x')} AS m FROM VALUES {rows} AS t(x)").first().m
    on_duckdb = duckdb.execute(f"SELECT {DUCKDB.median('x')} AS m FROM (VALUES {rows}) AS t(x)").fetchone()[0]
    assert on_spark == pytest.approx(np.median(values), rel=1e-12)
    assert on_duckdb == pytest.approx(np.median(values), rel=1e-12)


def test_the_staged_rows_are_removed_even_when_the_job_fails(tmp_path):
    """What Spark's executors write for the driver to read (features, batch scores, the ranking)
    goes to one fresh folder beside the accepted tables, gone afterwards, failure or not."""
    from settings.spark import staging_folder

    with pytest.raises(RuntimeError, match="lost"):
        with staging_folder(tmp_path) as staging:
            staging.mkdir(parents=True)
            (staging / "part-00000.parquet").write_bytes(b"half written")
            raise RuntimeError("executor lost")
    assert staging.parent == tmp_path / "spark-staging" and not staging.exists()
    with staging_folder(tmp_path) as one, staging_folder(tmp_path) as other:
        assert one != other  # two jobs at once never share a folder


def test_a_feature_changed_on_one_engine_is_caught(dirty_clean):
    """The comparison can fail: a ratio moved by 1e-6 relative, or one count off by one."""
    frame = pd.DataFrame({"spine_id": ["a", "b"], "ratio": [0.5, 0.25], "count": [3.0, 4.0]})
    moved = frame.assign(ratio=[0.5, 0.25 * (1 + 1e-6)])
    with pytest.raises(AssertionError, match="ratio"):
        assert_same(frame, moved, "moved")
    with pytest.raises(AssertionError, match="count"):
        assert_same(frame, frame.assign(count=[3.0, 5.0]), "count")


def test_cli_features_on_spark_writes_the_snapshot_duckdb_would(dirty_clean, tmp_path):
    """`coopscore features --engine spark` (a real process, its own local Spark) writes the same
    snapshot as `--engine duckdb`; an unknown engine is refused with the choices."""
    import os
    import subprocess
    import sys

    home = dirty_clean.parents[1]
    env = {**os.environ, "COOPSCORE_HOME": str(home), "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "coopscore.cli", "features", *args], env=env,
                              capture_output=True, text=True, timeout=900)

    bad = run("--engine", "flink")
    assert bad.returncode == 1 and "duckdb, spark" in bad.stdout, bad.stdout
    snapshot = home / "features" / "snapshot.parquet"
    done = run("--engine", "duckdb")
    assert done.returncode == 0, done.stdout + done.stderr
    duck = pd.read_parquet(snapshot)
    done = run("--engine", "spark", "--spark-master", "local[2]")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Spark" in done.stdout or "features written" in done.stdout
    assert_same(duck, pd.read_parquet(snapshot), "the CLI's snapshot")
