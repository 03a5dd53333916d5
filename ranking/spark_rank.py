"""Members' ranking on Spark (`coopscore rank --engine spark`): the same ranking history file as
ranking.rank.rank_members, computed where the data is.

1. Every member's history features as of the date, on the Spark engine (the catalogue's
   declarations, as `coopscore features --engine spark` computes them), joined to the member's
   cooperative, province and sector.
2. Partitioned by cooperative, each partition goes through ranking.rank.rank_rows on an executor
   (`mapInArrow`): the reference application scored by the registry's champion (loaded once on
   the driver, broadcast as scoring.scorer.Champions), tier, reasons, and the actions followed in
   the raw data on a DuckDB holding only that partition's members' rows
   (ranking.follow.scoped_connection, the member page's scope).
3. The percentiles within cooperative, province and sector with Spark window functions: the
   formula of ranking.rank.percentile_within (mid-rank, ties counting half, members without a
   score or a group left out) written with window counts, so the numbers are the same to the bit.
4. Sorted by member_id, staged as Parquet under the home and written by the driver into the
   ranking history exactly where the one-machine run writes (ranking.rank.write_sorted).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import snapshot
from features.spark_engine import SPINE_COLUMNS, history_query
from ranking import rank
from scoring.scorer import Champions
from settings import Paths
from settings.spark import staging_folder

# Members per partition, about: each Python worker holds its partition's members' raw rows to
# follow their actions. Left to Spark's size-based partitions, 10^6 members made partitions so
# large that two workers grew to 11 GB each and the kernel killed one (docs/scaling.md).
MEMBERS_PER_PARTITION = 25_000

# What each partition answers: the ranking's columns but the percentiles (taken over all partitions).
WITHOUT_PERCENTILES = pa.schema([f for f in rank.RANKING_SCHEMA if f.name not in rank.PERCENTILES])


def percentile_column(score, group):
    """ranking.rank.percentile_within as a Spark column: 100 * (members of the group scoring
    lower + half of those scoring the same, itself included) / the group's scored members, with
    the arithmetic in the same order (pandas' average rank minus one half is exactly that count);
    null where the score (null or NaN) or the group is missing."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ok = score.isNotNull() & ~F.isnan(score) & group.isNotNull()
    within = Window.partitionBy(group, ok)
    lower = F.rank().over(within.orderBy(score)) - 1
    ties = F.count(F.lit(1)).over(Window.partitionBy(group, ok, score))
    size = F.count(F.lit(1)).over(within)
    return F.when(ok, F.lit(100.0) * (lower + ties / F.lit(2.0)) / size)


def rank_members_spark(paths: Paths, engine, as_of: date | None = None,
                       progress: Callable[[str], None] | None = None) -> rank.RankingRun:
    """ranking.rank.rank_members on the Spark session of `engine` (features.spark_engine.SparkEngine
    over paths.clean): every member of the platform as of `as_of` (default: the snapshot's date),
    written to the ranking history. The run's `frame` is the written file read back. Raises
    FileNotFoundError without a snapshot date, ValueError for a date after it, RuntimeError without
    a member champion."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    say = progress or (lambda message: None)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if not (paths.features / snapshot.META_FILE).exists():
        raise FileNotFoundError(f"no feature snapshot in {paths.features}: run `coopscore features "
                                "--engine spark` first (rankings are as of its date or earlier)")
    snapshot_date = snapshot.snapshot_date(paths.features)
    columns = list(history_query().columns)  # the feature rows' columns, before computing them
    champions = Champions.load(paths, columns, snapshot_date)
    plan, as_of = rank.ranking_plan(champions.plans, snapshot_date, as_of)
    spark = engine.session
    say(f"history of every member as of {as_of} on Spark")
    members = (spark.read.parquet(str(paths.clean / "members.parquet"))
               .select("member_id", *rank.GROUPS))
    spine = members.select(F.concat(F.lit(f"{rank.SUBJECT}:"), "member_id").alias("spine_id"),
                           F.lit(rank.SUBJECT).alias("entity_type"),
                           F.col("member_id").alias("entity_id"), F.lit(as_of).alias("as_of"))
    features = engine.history_frame(spine)
    if [c for c in features.columns if c not in SPINE_COLUMNS] != columns:
        raise RuntimeError("the feature rows' columns differ from the compiled query's")
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    say("scores, tiers, reasons and actions on the executors, percentiles by window")
    partitions = max(1, -(-members.count() // MEMBERS_PER_PARTITION))
    rows = (features.select(F.col("entity_id").alias("member_id"), *columns)
            .join(members, "member_id", "left")
            # whole cooperatives: one scope of raw rows per partition, of bounded size
            .repartition(partitions, rank.GROUPS[0]))
    state = spark.sparkContext.broadcast((champions, str(paths.clean), as_of, columns))
    ranked = rows.mapInArrow(partial(_rank_partition, state), from_arrow_schema(WITHOUT_PERCENTILES))
    ranked = ranked.select(*[percentile_column(F.col("score"), F.col(group)).alias(column)
                             if column in rank.PERCENTILES else F.col(column)
                             for column, group in _with_groups(rank.RANKING_SCHEMA.names)])
    try:
        with staging_folder(paths.clean.parent) as staging:
            ranked.orderBy("member_id").write.parquet(str(staging))
            timings["spark"] = time.perf_counter() - t
            t = time.perf_counter()
            path = rank.write_sorted(paths, as_of, _staged(staging))
    finally:
        state.destroy()
    timings["write"] = time.perf_counter() - t
    frame = pd.read_parquet(path)
    say(f"wrote {len(frame):,} members to {path}")
    return rank.RankingRun(as_of=as_of, model_version=plan.loaded.info.version, frame=frame,
                           path=path, timings=timings)


def _with_groups(names: list[str]) -> list[tuple[str, str | None]]:
    group_of = dict(zip(rank.PERCENTILES, rank.GROUPS))
    return [(name, group_of.get(name)) for name in names]


def _rank_partition(state, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """ranking.rank.rank_rows on a whole partition (whole cooperatives) of members."""
    champions, clean_dir, as_of, columns = state.value
    tables = [pa.Table.from_batches([b]) for b in batches]
    if not tables or not sum(t.num_rows for t in tables):
        return
    frame = pa.concat_tables(tables).to_pandas()
    ids = frame["member_id"].to_numpy(dtype=object)
    history = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    out = rank.rank_rows(champions, Path(clean_dir), ids, history, frame[list(rank.GROUPS)], as_of,
                         scoped_advice=True)
    yield from pa.Table.from_pandas(out[WITHOUT_PERCENTILES.names], schema=WITHOUT_PERCENTILES,
                                    preserve_index=False).to_batches()


def _staged(staging: Path) -> Iterator[pa.Table]:
    """The staged ranking in member_id order (Spark's sorted parts, in part order)."""
    for part in sorted(staging.glob("part-*.parquet")):
        yield pq.read_table(part).select(rank.RANKING_SCHEMA.names)
