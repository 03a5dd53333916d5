"""Offline batch scoring on Spark (`coopscore score --engine spark`): the same output file as
serving.batch.score_file, computed where the data is.

Nothing about a score is decided here. The job only moves rows:
1. the applications are read by Spark and numbered in file order (row_number, as the one-machine
   scorer numbers them);
2. each row's subject key is normalised by serving.batch's own text rule, and joined on Spark to
   the platform's subjects (their legal form) and to the history features the Spark engine
   computes for those subjects as of the snapshot's date (features.spark_engine: the catalogue's
   declarations, as `coopscore features --engine spark` computes them);
3. `mapInArrow` runs serving.batch._score_chunk, the very chunk function of the one-machine
   path, on the executors: validation, the Decree 156 limit, the minimum-history rule, the
   champion's PD, score, grade and reasons (serving.batch.JoinedSubjects answers its two
   questions, who exists and their history, from the joined columns). The champions are the
   registry's versions, loaded once on the driver and broadcast (scoring.scorer.Champions);
4. the results, sorted by row_number, are staged as Parquet under the home and written by the
   driver chunk by chunk through serving.batch.write_results: one output row per input row
   (checked), atomically.

For a lender (--for-lender) the consent step needs the service's records, which stay on the
driver: the driver asks scoring.disclosure.Disclosure for every distinct subject of the file
before the job (the same call the one-machine path makes per chunk), the executors apply those
answers at the same point of _score_chunk's checks, and the driver writes each chunk's audit
entries (serving.batch._audit_entries) before the chunk's output, as on one machine.

Features: computed in the run from the accepted data as of the snapshot's date, so a subject known
on the platform is always found (the one-machine path answers not_in_snapshot for a subject added
after the nightly snapshot was built; with a current snapshot both give the same rows).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import snapshot
from features.spark_engine import SPINE_COLUMNS
from scoring import policy
from scoring.disclosure import Disclosure
from scoring.scorer import PLATFORM_SUBJECTS_SQL, Champions
from serving import batch
from serving.batch import (OPTIONAL_COLUMNS, OUTPUT_SCHEMA, REQUIRED_COLUMNS, BatchFileReport,
                           ForLender)
from settings import Paths
from settings.spark import staging_folder

KEY_TYPE, KEY_ID = "_key_subject_type", "_key_subject_id"  # serving.batch._text of the columns
LEGAL_FORM, IN_FEATURES = "_legal_form", "_in_features"
SAMPLE_ROWS = 2_000  # history rows per subject type that check the table TreeSHAP (serving.batch)
ID_BITS = 33  # monotonically_increasing_id: partition index above bit 33, row within it below


class JoinedSubjects:
    """serving.batch.SnapshotSubjects' two answers from the columns the Spark job joined to a
    chunk: LEGAL_FORM (null: not on the platform), IN_FEATURES and the history `columns`."""

    def __init__(self, chunk: pd.DataFrame, columns: list[str]):
        self.kind = chunk[LEGAL_FORM].to_numpy(dtype=object)
        self.found = (chunk[IN_FEATURES] == True).to_numpy(dtype=bool)  # noqa: E712 (null: False)
        self.matrix = chunk[columns].to_numpy(dtype=np.float64, na_value=np.nan)

    def legal_forms(self, subject_type: np.ndarray, subject_id: np.ndarray) -> np.ndarray:
        return self.kind.copy()

    def history(self, subject: str, subject_id: np.ndarray, rows: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        found = self.found[rows]
        return found, self.matrix[rows[found]]


class _Refused:
    def __init__(self, message: str):
        self.message = message


class DecidedConsents:
    """Disclosure.refusal's answers, asked on the driver for every subject of the file, for the
    executors (which cannot reach the records). A subject that was not asked about is an error,
    never a silent pass."""

    def __init__(self, lender_id: str, answers: dict[tuple[str, str], str | None]):
        self.lender_id = lender_id
        self.answers = answers

    def refusal(self, lender_id: str, subject_type: str, subject_id: str) -> _Refused | None:
        if lender_id != self.lender_id or (subject_type, subject_id) not in self.answers:
            raise RuntimeError(f"no consent answer for {subject_type} {subject_id} of {lender_id}: "
                               "the driver asks for every subject of the file before scoring")
        message = self.answers[(subject_type, subject_id)]
        return None if message is None else _Refused(message)


def score_file_spark(paths: Paths, input_path: Path | str, output_path: Path | str, engine,
                     progress: Callable[[str, float], None] | None = None, chunk_rows: int = 200_000,
                     for_lender: ForLender | None = None) -> BatchFileReport:
    """serving.batch.score_file on the Spark session of `engine` (features.spark_engine.SparkEngine
    over paths.clean): the same output file. `progress(step, fraction)` follows the stages.
    Raises as score_file does (FileNotFoundError, ValueError, RuntimeError), and
    FileNotFoundError when there is no snapshot date yet (`coopscore features`)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StringType, StructField, StructType

    say = progress or (lambda step, fraction: None)
    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    batch.check_files(input_path, output_path, chunk_rows)
    if not (paths.features / snapshot.META_FILE).exists():
        raise FileNotFoundError(f"no feature snapshot in {paths.features}: run `coopscore features "
                                "--engine spark` first (offline scores are as of its date)")
    as_of = snapshot.snapshot_date(paths.features)
    spark = engine.session
    # Arrow batches of one chunk each, for this job only: the session's setting is restored after
    batch_size = "spark.sql.execution.arrow.maxRecordsPerBatch"
    batch_size_before = spark.conf.get(batch_size, None)
    numbered = keyed = features = state = None
    with staging_folder(paths.clean.parent) as staging:
        try:
            spark.conf.set(batch_size, str(chunk_rows))
            say("reading the applications", 0.0)
            numbered = numbered_rows(_read(spark, input_path)).persist()
            total = numbered.count()
            # kept: the spine, the consents and the join read it, and each would run _keys again
            keyed = numbered.mapInArrow(_keys, StructType(
                numbered.schema.fields + [StructField(KEY_TYPE, StringType()), StructField(KEY_ID, StringType())])
            ).persist()
            subjects = spark.sql(PLATFORM_SUBJECTS_SQL)  # the Scorer's rule, on the engine's views
            say("history features on Spark", 0.1)
            spine = (keyed.select(F.col(KEY_TYPE).alias("entity_type"), F.col(KEY_ID).alias("entity_id"))
                     .distinct()
                     .join(subjects.select("entity_type", "entity_id"), ["entity_type", "entity_id"], "left_semi")
                     .select(F.concat_ws(":", "entity_type", "entity_id").alias("spine_id"),
                             "entity_type", "entity_id", F.lit(as_of).alias("as_of")))
            features = engine.history_frame(spine).persist()
            features.count()  # computed once: the samples, the consents and the join read it
            columns = [c for c in features.columns if c not in SPINE_COLUMNS]
            champions = Champions.load(paths, columns, as_of)
            samples = {s: features.where(F.col("entity_type") == s).select(*columns).limit(SAMPLE_ROWS)
                       .toPandas().to_numpy(dtype=np.float64, na_value=np.nan) for s in champions.plans}
            explainers = batch._explainers(champions, samples=samples)
            consents = (_ask_consents(keyed, subjects, for_lender) if for_lender else None)
            joined = (keyed
                      .join(subjects.select(F.col("entity_type").alias(KEY_TYPE), F.col("entity_id").alias(KEY_ID),
                                            F.col("legal_form").alias(LEGAL_FORM)), [KEY_TYPE, KEY_ID], "left")
                      .join(features.select(F.col("entity_type").alias(KEY_TYPE), F.col("entity_id").alias(KEY_ID),
                                            F.lit(True).alias(IN_FEATURES), *columns), [KEY_TYPE, KEY_ID], "left"))
            state = spark.sparkContext.broadcast((champions, explainers, columns, consents))
            say("scoring on the executors", 0.3)
            (joined.mapInArrow(partial(_score_batches, state), from_arrow_schema(OUTPUT_SCHEMA))
             .orderBy("row_number").write.parquet(str(staging)))
            counts, errors = batch.write_results(
                _staged(staging, chunk_rows), output_path, total, for_lender,
                lambda fraction: say("writing the output", 0.8 + 0.2 * fraction))
        finally:  # the cached rows and the broadcast go, whether the job finished or not
            if features is not None:
                features.unpersist()
            if state is not None:
                state.destroy()
            for kept in (numbered, keyed):
                if kept is not None:
                    kept.unpersist()
            if batch_size_before is None:
                spark.conf.unset(batch_size)
            else:
                spark.conf.set(batch_size, batch_size_before)
    return BatchFileReport(input_path, output_path, total, counts["scored"],
                           counts["insufficient_history"], counts["rejected"],
                           time.perf_counter() - started, as_of,
                           {k: "tables" if f else "lightgbm" for k, f in explainers.items()}, errors)


# -- reading and numbering -----------------------------------------------------------------------
def _read(spark, path: Path):
    """The file's known columns as Spark reads them: Parquet with its types, CSV as text (as the
    one-machine reader reads it: a header, RFC 4180 quotes, fields over several lines)."""
    if path.suffix.lower() == ".parquet":
        frame = spark.read.parquet(str(path))
    else:
        frame = (spark.read.option("header", True).option("inferSchema", False)
                 .option("multiLine", True).option("escape", '"').option("encoding", "UTF-8")
                 .csv(str(path)))
        frame = frame.toDF(*[c.lstrip("\ufeff") for c in frame.columns])
    batch._check_columns(frame.columns, path)
    return frame.select(*[c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in frame.columns])


def numbered_rows(frame):
    """`frame` with row_number 1..n in the order Spark reads it (file order: a file's splits are
    read in offset order), computed on the executors: each row's place in its partition plus the
    rows of the partitions before it (one small count per partition)."""
    from pyspark.sql import functions as F

    with_id = frame.withColumn("_id", F.monotonically_increasing_id())
    part = F.shiftright(F.col("_id"), ID_BITS)
    counts = sorted((r["p"], r["count"]) for r in with_id.groupBy(part.alias("p")).count().collect())
    offsets, before = {}, 0
    for p, n in counts:
        offsets[p] = before
        before += n
    start = F.create_map(*[F.lit(x) for p, o in offsets.items() for x in (p, o)]) if offsets \
        else F.create_map(F.lit(0), F.lit(0))
    within = F.col("_id").bitwiseAND(F.lit((1 << ID_BITS) - 1))
    return (with_id.withColumn("row_number", (F.element_at(start, part) + within + 1).cast("long"))
            .drop("_id"))


def _keys(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each row's subject key as _score_chunk reads it (serving.batch._text), for the joins."""
    for b in batches:
        frame = b.to_pandas()
        yield (b.append_column(KEY_TYPE, pa.array(batch._text(frame["subject_type"]), pa.string()))
               .append_column(KEY_ID, pa.array(batch._text(frame["subject_id"]), pa.string())))


def _ask_consents(keyed, subjects, for_lender: ForLender) -> DecidedConsents:
    """Disclosure.refusal on the driver for every distinct subject of the file (of a valid
    subject type: only those reach the consent step)."""
    from pyspark.sql import functions as F

    pairs = (keyed.select(KEY_TYPE, KEY_ID).where(F.col(KEY_TYPE).isin(*policy.SUBJECT_TYPES)).distinct()
             .join(subjects.select(F.col("entity_type").alias(KEY_TYPE), F.col("entity_id").alias(KEY_ID),
                                   F.lit(True).alias("known")), [KEY_TYPE, KEY_ID], "left")
             .toPandas())
    flags = pairs["known"].notna()  # the left join's null: not a subject of the snapshot
    known = {(t, i) for t, i, k in zip(pairs[KEY_TYPE], pairs[KEY_ID], flags) if k}
    disclosure = Disclosure(for_lender.records, lambda t, i: (t, i) in known)
    answers = {}
    for t, i in zip(pairs[KEY_TYPE], pairs[KEY_ID]):
        refusal = disclosure.refusal(for_lender.lender_id, t, i)
        answers[(t, i)] = None if refusal is None else refusal.message
    return DecidedConsents(for_lender.lender_id, answers)


# -- on the executors ---------------------------------------------------------------------------
def _score_batches(state, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """serving.batch._score_chunk on each Arrow batch of joined rows (one LightGBM thread per
    task: Spark runs the tasks side by side)."""
    champions, explainers, columns, consents = state.value
    lender = (consents.lender_id, consents) if consents is not None else None
    for b in batches:
        chunk = b.to_pandas()
        table = batch._score_chunk(champions, chunk, chunk["row_number"].to_numpy(), 1, explainers,
                                   JoinedSubjects(chunk, columns), lender)
        yield from table.to_batches()


# -- back on the driver ---------------------------------------------------------------------------
def _staged(staging: Path, chunk_rows: int) -> Iterator[tuple[int, pa.Table]]:
    """The staged results in row order, as (rows, table) chunks of at most `chunk_rows`; a gap or
    repeat in row_number (a row lost or doubled) is a RuntimeError."""
    expected = 1
    for part in sorted(staging.glob("part-*.parquet")):
        table = pq.read_table(part).select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA)
        for start in range(0, table.num_rows, chunk_rows):
            chunk = table.slice(start, chunk_rows)
            numbers = chunk.column("row_number").to_numpy()
            if not np.array_equal(numbers, np.arange(expected, expected + len(numbers))):
                raise RuntimeError(f"Spark's results skip or repeat a row near row {expected}: "
                                   "no output written")
            expected += len(numbers)
            yield chunk.num_rows, chunk
