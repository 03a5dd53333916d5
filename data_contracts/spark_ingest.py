"""Ingest on Spark: the same contracts, the same verdicts, the rows judged on executors.

Nothing about a rule is written here. Per table:
  1. Spark reads the raw file and numbers its rows as the file holds them (`source_row`): Parquet
     by its row index (`_metadata.row_index`, any number of splits); CSV in one task, because a
     quoted value may hold a line break (as the single-machine reader allows), then spread out.
  2. keys: `mapInArrow` parses the key columns with `ingest.parse_table` and keeps the complete
     ones (`duplicates.key_rows`); the repeated keys are found by the very SQL text DuckDB runs
     (`duplicates.first_rows_sql`), here in Spark SQL, and joined back to their rows.
  3. verdicts: `mapInArrow` hands every Arrow batch of a partition, turned into the pandas frame
     `ingest.read_batches` would have given (same types, indexed by source row), to
     `ingest.judge_batch`, with the accepted parent tables (`rules.PARENT_COLUMNS`, small: members,
     cooperatives, applications, loans) broadcast once to the executors.
  4. output: the judged rows are written by Spark, then gathered on the driver into the same two
     files as the single-machine path (`<table>.parquet`, same schemas, written through
     `ingest.BatchWriter`), streamed a row group at a time. Same rows, same reasons, same report;
     the order of the rows differs (they are spread over partitions): compare by key.

mapInArrow rather than mapInPandas: Spark's own pandas conversion turns an integer column with
nulls into floats and text into objects, so the frames would differ from those the DuckDB path
judges; from Arrow the conversion is ingest's own, and the verdicts cannot drift apart.
"""
from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_contracts import duplicates, rules
from data_contracts.contracts import CONTRACTS, Contract
from data_contracts.ingest import (ARROW_TYPES, BatchWriter, IngestError, TableReport, _pandas_type,
                                   as_arrow, clean_schema, judge_batch, parse_table, quarantine_schema,
                                   parquet_parts, read_header)
from settings.spark import start_session

SOURCE_ROW = duplicates.SOURCE_ROW
FIRST_ROW = "__coopscore_first_row"  # internal column names: refused in a raw file
ACCEPTED = "__coopscore_accepted"
INTERNAL = (FIRST_ROW, ACCEPTED)


def start(master: str | None, batch_rows: int):
    """The Spark session ingest runs on (`settings.spark.start_session`: its executors run this
    interpreter unless PYSPARK_PYTHON names another); Arrow batches of at most `batch_rows` rows."""
    session = start_session(master)
    session.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    return session


def ingest_table_on_spark(session, table: str, source: Path, parents: dict[str, pd.DataFrame],
                          now: pd.Timestamp, clean_dir: Path, quarantine_dir: Path, workdir: Path,
                          progress: Callable[[str, float], None],
                          ) -> tuple[TableReport, pd.DataFrame | None]:
    """One table on Spark; answers as `ingest.ingest_table` does (the report, and for a parent
    table the columns of its accepted rows that other tables' rules read)."""
    contract = CONTRACTS[table]
    header = read_header(source)
    clashing = [c for c in header if c in INTERNAL]
    if clashing:
        raise IngestError(f"{source.name} has column(s) {clashing}, names ingest uses internally; "
                          f"rename them in the export")
    raw_schema = _raw_schema(source, header)
    try:
        parts, input_rows = _judge_on_executors(session, table, contract, source, header, raw_schema,
                                                parents, now, workdir, progress)
    except Exception as e:  # Spark's errors arrive wrapped: say plainly when the file is at fault
        text = str(e)
        if "malformed" not in text.lower():
            raise
        said = re.search(r"\[MALFORMED_RECORD[^\n]*", text)
        detail = f" ({said.group(0)[:300].strip()})" if said else ""
        raise IngestError(f"cannot read {source}: a line does not parse as CSV{detail}. Fix or "
                          f"re-export the file (Parquet, or UTF-8 CSV with the same number of fields "
                          f"on every line)") from e
    layout = _Layout(contract, header)
    progress("writing", 0.8)
    report = _gather(table, source, parts, layout, input_rows, clean_dir, quarantine_dir)
    shutil.rmtree(parts, ignore_errors=True)
    if table not in rules.PARENT_COLUMNS:
        return report, None
    kept = pq.read_table(clean_dir / f"{table}.parquet", columns=list(rules.PARENT_COLUMNS[table]))
    return report, kept.to_pandas(types_mapper=_pandas_type, ignore_metadata=True)


def _judge_on_executors(session, table, contract, source, header, raw_schema, parents, now,
                        workdir, progress) -> tuple[Path, int]:
    """Steps 1-3 on Spark: the folder of the judged rows' parts (under `workdir`), and the number
    of raw rows read."""
    raw = _read_raw(session, source, header)
    input_rows = raw.count()
    progress("finding duplicate keys", 0.1)

    # Whole-table check: the repeated keys, by the same SQL as on DuckDB.
    key_schema = _key_spark_schema(contract)
    keys = raw.select(SOURCE_ROW, *[c for c in contract.key if c in header]).mapInArrow(
        _parse_keys(contract, raw_schema, source.suffix == ".csv"), key_schema)
    view = f"coopscore_keys_{table}"
    keys.createOrReplaceTempView(view)
    firsts = session.sql(duplicates.first_rows_sql(view, len(contract.key))) \
        .withColumnRenamed("first_row", FIRST_ROW)
    rows = raw.join(firsts, on=SOURCE_ROW, how="left")

    # Per partition: the same judge as every batch of the single-machine path.
    shipped = session.sparkContext.broadcast(parents)
    layout = _Layout(contract, header)
    judged = rows.mapInArrow(_judge(table, raw_schema, source.suffix == ".csv", shipped, now, layout),
                             layout.spark_schema())
    parts = workdir / f"{table}-judged"
    progress("judging rows", 0.3)
    judged.write.mode("overwrite").parquet(str(parts))
    shipped.unpersist()
    session.catalog.dropTempView(view)
    return parts, input_rows


# ---- reading the raw file ---------------------------------------------------------------------

def _raw_schema(source: Path, header: list[str]) -> pa.Schema:
    """The Arrow types `ingest.read_batches` reads the file with: a Parquet file's own (a folder's
    parts must agree on them, as Spark reads them as one table), text for CSV."""
    if source.is_dir():
        parts = parquet_parts(source)
        schema = pq.read_schema(parts[0]).remove_metadata()
        for part in parts[1:]:
            other = pq.read_schema(part).remove_metadata()
            if not other.equals(schema):
                raise IngestError(
                    f"the parts of {source} do not have the same column types: "
                    f"{parts[0].relative_to(source)} has {schema}, {part.relative_to(source)} has "
                    f"{other}. Re-export the table with one type per column")
        return schema
    if source.suffix == ".parquet":
        return pq.read_schema(source).remove_metadata()
    return pa.schema([(c, pa.string()) for c in header])


def _numbered_parts(session, folder: Path, header: list[str]):
    """A folder of Parquet parts as one frame, its rows numbered over the parts in
    `ingest.parquet_parts` order (as the single-machine path numbers them): a part's first row is
    the number of rows in the parts before it. The parts are read as a list of files, so folder
    names (month=2024-01/) are not columns, as on one machine."""
    from pyspark.sql import functions as F

    parts = [p.absolute() for p in parquet_parts(folder)]
    offsets, total = [], 0
    for part in parts:
        offsets += [F.lit(str(part)), F.lit(total).cast("long")]  # one type past 2^31 rows too
        total += pq.ParquetFile(part).metadata.num_rows
    frame = session.read.parquet(*[str(p) for p in parts])
    # Spark names a file by its URI (file:/a/b%20c.parquet): decoded back to the path given ('+'
    # kept, not read as a space), it finds its part's offset; a file without one stops the ingest.
    path = F.expr("url_decode(replace(regexp_replace(_metadata.file_path, '^file:/+', '/'), '+', '%2B'))")
    offset = F.create_map(*offsets)[path]
    numbered = F.when(offset.isNull(), F.raise_error(F.concat(
        F.lit(f"ingest bug: Spark read a file of {folder} that is not one of its parts: "), path))
                      ).otherwise(offset + F.col("_metadata.row_index"))
    return frame.select(*[F.col(f"`{c}`") for c in header], numbered.alias(SOURCE_ROW))


def _read_raw(session, source: Path, header: list[str]):
    """The raw rows with their `source_row`, numbered from 0 in the file's order (a folder's: over
    its parts, in order)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if source.is_dir():
        numbered = _numbered_parts(session, source, header)
    elif source.suffix == ".parquet":
        frame = session.read.parquet(str(source))
        numbered = frame.select(*[F.col(f"`{c}`") for c in header],
                                F.col("_metadata.row_index").alias(SOURCE_ROW))
    else:
        # Every cell as text, RFC 4180 quoting, a line break allowed inside quotes (one task then
        # reads the file: Spark cannot split it), and a malformed line fails the ingest, as it
        # does on one machine, rather than being filled with nulls.
        frame = (session.read.schema(StructType([StructField(c, StringType()) for c in header]))
                 .options(header=True, multiLine=True, quote='"', escape='"', mode="FAILFAST",
                          encoding="UTF-8", enforceSchema=True)
                 .csv(str(source)))
        if frame.rdd.getNumPartitions() != 1:  # the numbering below relies on one reading task
            raise RuntimeError(f"ingest bug: Spark read {source} in several tasks")
        numbered = frame.withColumn(SOURCE_ROW, F.monotonically_increasing_id())
    # A file read in fewer tasks than there are cores (a CSV, a Parquet file of one row group)
    # is spread over all of them: judging the rows is the work.
    cores = session.sparkContext.defaultParallelism
    if numbered.rdd.getNumPartitions() < cores:
        numbered = numbered.repartition(cores)
    return numbered


def _raw_frame(batch: pa.RecordBatch, raw_schema: pa.Schema, is_csv: bool) -> pd.DataFrame:
    """A batch as Spark hands it, back to the pandas frame `ingest.read_batches` gives for the same
    rows: the file's Arrow types (Spark carries nanosecond times as longs), indexed by source row."""
    columns = {}
    for name in batch.schema.names:
        if name == SOURCE_ROW or name in INTERNAL:
            continue
        column = batch.column(name)
        if is_csv:  # Spark reads an empty unquoted cell as null; the CSV reader of ingest, as ""
            column = pc.fill_null(column, "")
        columns[name] = column.cast(raw_schema.field(name).type)
    frame = pa.table(columns).to_pandas(types_mapper=_pandas_type, ignore_metadata=True)
    frame.index = pd.Index(batch.column(SOURCE_ROW).to_numpy(zero_copy_only=False))
    return frame


# ---- keys ---------------------------------------------------------------------------------------

def _spark_type(dtype: str):
    """The Spark type a contract type travels as (dates and times as nanosecond longs)."""
    from pyspark.sql import types as T

    return {"str": T.StringType(), "int64": T.LongType(), "float64": T.DoubleType(),
            "bool": T.BooleanType(), "date": T.LongType(), "timestamp": T.LongType()}[dtype]


def _travel_type(dtype: str) -> pa.DataType:
    return {"str": pa.string(), "date": pa.int64(), "timestamp": pa.int64()}.get(dtype, ARROW_TYPES[dtype])


def _key_spark_schema(contract: Contract):
    from pyspark.sql.types import LongType, StructField, StructType

    return StructType([StructField(SOURCE_ROW, LongType(), False)]
                      + [StructField(name, _spark_type(contract.field(key).dtype))
                         for name, key in zip(duplicates.key_columns(contract), contract.key)])


def _parse_keys(contract: Contract, raw_schema: pa.Schema, is_csv: bool):
    fields = [contract.field(k) for k in contract.key]
    types = pa.schema([(SOURCE_ROW, pa.int64())]
                      + [(name, _travel_type(f.dtype))
                         for name, f in zip(duplicates.key_columns(contract), fields)])

    def parse(batches):
        for batch in batches:
            if batch.num_rows:
                rows = duplicates.key_rows(
                    parse_table(_raw_frame(batch, raw_schema, is_csv), contract, fields)[0], contract)
                if rows is not None:
                    yield from rows.cast(types).to_batches()
    return parse


# ---- verdicts -----------------------------------------------------------------------------------

class _Layout:
    """One row layout for both outcomes (mapInArrow returns one schema): an accepted flag, the
    clean columns c0.. (contract types) and the quarantine columns q0.. (text, source_row, rule,
    reason); the other outcome's columns are null."""

    def __init__(self, contract: Contract, header: list[str]):
        self.clean = clean_schema(contract)
        self.quarantine = quarantine_schema(header)
        self.dtypes = [f.dtype for f in contract.fields]
        self.c = [f"c{i}" for i in range(len(self.clean))]
        self.q = [f"q{i}" for i in range(len(self.quarantine))]
        self.arrow = pa.schema([(ACCEPTED, pa.bool_())]
                               + [(n, _travel_type(d)) for n, d in zip(self.c, self.dtypes)]
                               + [(n, f.type if f.type == pa.int64() else pa.string())
                                  for n, f in zip(self.q, self.quarantine)])

    def spark_schema(self):
        from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

        return StructType([StructField(ACCEPTED, BooleanType(), False)]
                          + [StructField(n, _spark_type(d)) for n, d in zip(self.c, self.dtypes)]
                          + [StructField(n, LongType() if f.type == pa.int64() else StringType())
                             for n, f in zip(self.q, self.quarantine)])

    def travel(self, clean: pa.Table, quarantine: pa.Table) -> pa.Table:
        """Both outcomes of a batch in this layout."""
        def block(accepted: bool, own: pa.Table, names: list[str]) -> pa.Table:
            n = own.num_rows
            columns = {ACCEPTED: pa.array([accepted] * n, pa.bool_())}
            for field in self.arrow:
                if field.name == ACCEPTED:
                    continue
                if field.name in names:
                    columns[field.name] = own.column(names.index(field.name)).cast(field.type)
                else:
                    columns[field.name] = pa.nulls(n, field.type)
            return pa.table(columns, schema=self.arrow)
        return pa.concat_tables([block(True, clean, self.c), block(False, quarantine, self.q)])

    def outcomes(self, judged: pa.Table) -> tuple[pa.Table, pa.Table]:
        """The clean and the quarantined rows of a gathered part, with their file schemas."""
        accepted = judged.column(ACCEPTED)
        clean = judged.filter(accepted).select(self.c).rename_columns(self.clean.names)
        refused = judged.filter(pc.invert(accepted)).select(self.q).rename_columns(self.quarantine.names)
        return clean.cast(self.clean), refused.cast(self.quarantine)


def _judge(table: str, raw_schema: pa.Schema, is_csv: bool, parents, now: pd.Timestamp,
           layout: _Layout):
    def judge(batches):
        accepted_parents = parents.value
        for batch in batches:
            if not batch.num_rows:
                continue
            raw = _raw_frame(batch, raw_schema, is_csv)
            first = batch.column(FIRST_ROW)
            repeats = pc.is_valid(first)
            first_row = pd.Series(
                pc.filter(first, repeats).to_numpy(zero_copy_only=False).astype("int64"),
                index=pd.Index(pc.filter(batch.column(SOURCE_ROW), repeats)
                               .to_numpy(zero_copy_only=False).astype("int64"), name=SOURCE_ROW))
            clean, quarantine, _ = judge_batch(table, raw, accepted_parents, now, first_row)
            yield from layout.travel(as_arrow(clean), quarantine).to_batches()
    return judge


# ---- gathering the output -----------------------------------------------------------------------

def _gather(table: str, source: Path, parts: Path, layout: _Layout, input_rows: int,
            clean_dir: Path, quarantine_dir: Path) -> TableReport:
    """The judged parts into the two files of the single-machine path, a row group at a time."""
    reasons: Counter[str] = Counter()
    accepted = quarantined = 0
    with BatchWriter(clean_dir / f"{table}.parquet", layout.clean) as clean_out, \
            BatchWriter(quarantine_dir / f"{table}.parquet", layout.quarantine) as quarantine_out:
        for part in sorted(parts.glob("*.parquet")):
            file = pq.ParquetFile(part)
            for i in range(file.num_row_groups):
                clean, refused = layout.outcomes(file.read_row_group(i))
                clean_out.write(clean)
                quarantine_out.write(refused)
                accepted += clean.num_rows
                quarantined += refused.num_rows
                # a row's rules are '; '-joined once each: count rows per rule, as on one machine
                for rule in refused.column("rule").to_pylist():
                    reasons.update(rule.split("; "))
        report = TableReport(table=table, source=source, input_rows=input_rows, accepted=accepted,
                             quarantined=quarantined, reasons=dict(sorted(reasons.items())))
        if not report.reconciles:  # a row lost or doubled on the way: loud, and nothing is kept
            raise RuntimeError(f"ingest bug on Spark: {table} has {input_rows} input rows but "
                               f"{accepted} accepted + {quarantined} quarantined")
    return report
