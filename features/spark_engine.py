"""The feature pipeline on Spark: the catalogue's declarations compiled for Spark SQL
(features.compiler.SPARK) over the same accepted Parquet tables as the DuckDB engine.

Nothing about a feature is written here: the query is the compiler's, with Spark's date functions,
median and inline tables. The point-in-time join of the spine to a source is an equi-join on the
entity with the range `ts < as_of AND ts >= as_of - window` as its condition. A spine of up to
BROADCAST_SPINE_ROWS rows (a training set, a bank's file) is broadcast: each executor joins the
transactions it reads to its copy of the spine, and no transaction is shuffled. A larger one (a
nationwide snapshot) is joined as a sort-merge join partitioned by entity: each partition holds
whole entities and their spine rows, which is what lets the work spread over executors.

The session: `SparkEngine.start(master)` takes the master URL given, else Spark's usual settings
(`spark.master` from `spark-submit --master`, `SPARK_MASTER`/`MASTER` in the environment,
`conf/spark-defaults.conf`), else `local[*]` on this machine. The session time zone is UTC, as
the contracts' timestamps are.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from features import compiler
from features.catalogue import MEASURES
from features.engine import HISTORY_FEATURES, SOURCE_TABLES, check_spine
from settings.spark import staging_folder, start_session

SPINE_COLUMNS = ("spine_id", "entity_type", "entity_id", "as_of")
# A spine up to this size is sent whole to every executor (a broadcast join: the transactions
# are not shuffled); a larger one is joined partitioned by entity. The 10^6-row training set ran
# broadcast within Spark's 1 GiB local heap (docs/benchmarks-scale.md); a nationwide snapshot (6
# million members) is partitioned.
BROADCAST_SPINE_ROWS = 1_000_000


@lru_cache(maxsize=1)
def history_query() -> compiler.HistoryQuery:
    """Stage 1's query compiled for Spark SQL, as its steps."""
    return compiler.history_query(HISTORY_FEATURES, MEASURES, compiler.SPARK)


def history_sql() -> str:
    """Stage 1's query compiled for Spark SQL, as one statement."""
    return history_query().sql


class SparkEngine:
    """Stage 1 of features.engine on a Spark session; `history_features` answers as
    features.engine.history_features does (same columns, same values, one row per spine row)."""

    def __init__(self, session, clean_dir: Path):
        self.session = session
        self.clean_dir = Path(clean_dir)

    @classmethod
    def start(cls, clean_dir: Path, master: str | None = None,
              shuffle_partitions: int | None = None) -> "SparkEngine":
        """A session (created or the running one) with one temp view per accepted table."""
        session = start_session(master, shuffle_partitions)
        engine = cls(session, clean_dir)
        engine.register_tables()
        return engine

    def register_tables(self) -> None:
        """One temp view per accepted table. The accepted Parquet holds nanosecond timestamps
        (pandas' unit), which Spark reads only as longs (spark.sql.legacy.parquet.nanosAsLong);
        the view turns them back into timestamps, exactly for whole microseconds, and refuses a
        table whose times carry nanoseconds rather than truncate them."""
        import pyarrow.parquet as pq

        for table in SOURCE_TABLES:
            path = self.clean_dir / f"{table}.parquet"
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} is missing: run `coopscore ingest` first so that accepted data exists.")
            schema = pq.read_schema(path)
            nanos = [f.name for f in schema if str(f.type).startswith("timestamp[ns")]
            frame = self.session.read.parquet(str(path))
            if nanos:
                from pyspark.sql import functions as F

                odd = frame.select(*[F.sum((F.col(c) % 1000 != 0).cast("long")).alias(c) for c in nanos]).first()
                carried = [c for c in nanos if odd[c]]
                if carried:
                    raise ValueError(f"{path}: {carried} hold times with nanoseconds, which Spark "
                                     "cannot represent; write them in whole microseconds")
                frame = frame.select(*[F.timestamp_micros(F.floor(F.col(c) / 1000)).alias(c)
                                       if c in nanos else F.col(c) for c in frame.columns])
            frame.createOrReplaceTempView(table)

    def history_features(self, spine: pd.DataFrame) -> pd.DataFrame:
        """Stage 1 for `spine` (spine_id, entity_type, entity_id, as_of), as a pandas frame sorted
        by spine_id, one row per spine row (checked)."""
        check_spine(spine)
        frame = spine[list(SPINE_COLUMNS)].copy()
        frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
        frame["spine_id"] = frame["spine_id"].astype(str)
        # In through Parquet too: `createDataFrame` puts the rows in the driver's tasks, and a
        # million of them ran Spark's 1 GiB local heap out of memory
        with staging_folder(self.clean_dir.parent) as staged:
            staged.mkdir(parents=True)
            frame.to_parquet(staged / "spine.parquet", index=False)
            out = self._collect(self._history(self.session.read.parquet(str(staged))))
        if len(out) != len(spine):  # a join that multiplies or loses rows is a bug, loudly
            raise RuntimeError(f"feature build returned {len(out)} rows for {len(spine)} spine rows")
        out = out.sort_values("spine_id", kind="stable").reset_index(drop=True)
        out["as_of"] = pd.to_datetime(out["as_of"])
        return out

    def history_frame(self, spine):
        """Stage 1 for a Spark DataFrame `spine` (spine_id, entity_type, entity_id strings, as_of
        date; spine_id unique), as a Spark DataFrame that stays on the executors (one row per
        spine row): what batch scoring and ranking join to their rows."""
        return self._history(spine.select(*SPINE_COLUMNS))

    def _history(self, spine):
        """The compiled query for `spine` (the view `spine`), run step by step: one temp view
        per step, and each step that several steps read computed once and kept (`_keep`). Run as
        one statement, Spark inlines a CTE at each reader, so the spine's join to the
        transactions ran five times (docs/scaling.md, "Where Spark's time goes").

        A spine of at most BROADCAST_SPINE_ROWS rows is broadcast: every executor joins its own
        part of the transactions to a copy of the spine where the part lies. Otherwise Spark
        sorts and shuffles both sides by entity, every transaction included: that shuffle was
        35 s of 200,000 training rows' 104 s on one machine (11-14 s broadcast)."""
        self._spine_view(spine)
        query = history_query()
        shared = query.shared_steps
        for name, body in query.steps:
            frame = self.session.sql(body)
            if name in shared:
                frame = self._keep(frame)
            frame.createOrReplaceTempView(name)
        return self.session.sql(query.select)

    def _spine_view(self, spine) -> None:
        """`spine` as the view `spine` the compiled query reads, marked for broadcast when it
        has at most BROADCAST_SPINE_ROWS rows (Spark's own size threshold, 10 MB, did not
        broadcast a spine of 200,000 rows)."""
        from pyspark.sql import functions as F

        if spine.count() <= BROADCAST_SPINE_ROWS:
            spine = F.broadcast(spine)
        spine.createOrReplaceTempView("spine")

    def _collect(self, frame) -> pd.DataFrame:
        """`frame` as a pandas frame, through Parquet the executors write beside the accepted
        tables (settings.spark.staging_folder)."""
        import pyarrow.parquet as pq

        with staging_folder(self.clean_dir.parent) as staging:
            frame.write.parquet(str(staging))
            return pq.read_table(staging).to_pandas()

    def _keep(self, frame):
        """`frame` computed now and kept, its lineage cut: in the checkpoint directory when one
        is set (`spark.checkpoint.dir`: on a cluster, shared storage, so that a lost executor
        costs a re-read, not a failed job), else on the executors' local disks. Disk, not memory:
        kept in memory, 200,000 members' joined rows crowded Spark's 1 GiB local heap until it
        lost task results and failed the query."""
        if self.session.sparkContext.getCheckpointDir():
            return frame.checkpoint(eager=True)
        from pyspark import StorageLevel

        return frame.localCheckpoint(eager=True, storageLevel=StorageLevel.DISK_ONLY)

    def stop(self) -> None:
        self.session.stop()
