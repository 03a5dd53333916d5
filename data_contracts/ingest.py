"""Ingest: read what the platform delivered, keep the rows that honour the contracts, quarantine
the rest with the reason. Nothing is lost: every input row is accepted or quarantined, and the
counts are checked to reconcile before ingest returns.

Each table goes through three steps, all vectorised (reason sentences are only built for the
rows that are refused):
  1. parse   every column to its contract type; a value that is absent (for a required column)
             or that does not read as its type is an issue ("not_a_number: amount_vnd='abc'").
  2. check   the parsed values against the contract's checks (pandera, from `Contract.schema()`):
             allowed values, minimum, maximum, pattern.
  3. relate  the rows to the tables accepted before and to the clock (`data_contracts.rules`):
             duplicate keys, unknown ids, future dates, Decree 156/2025 lending limits.
A row may break several rules; all of them are recorded. Tables are ingested parents first, so a
reference is checked against the rows actually accepted.

Tables are read in batches (`batch_rows`, COOPSCORE_INGEST_BATCH_ROWS) and each batch goes through
the three steps and is appended to the output, so memory does not grow with a table. Duplicate keys
span batches: a first pass over the key columns finds them with DuckDB (`data_contracts.duplicates`),
and step 3 then words them for the rows of each batch. Of the accepted tables only the columns
the rules read of parents are kept (`rules.PARENT_COLUMNS`).

A table is delivered as one file, `<table>.parquet` or `<table>.csv`, or as a folder of Parquet
parts, `<table>/` (the generator's streamed layout, `transactions/month=2024-03/province=.../
part-00012.parquet`, or any Hive-style export, Spark's included): its parts are read in the order of
their paths, as one table whose rows are numbered across the parts. The partition values in the
folder names are not data: only the rows in the files are ingested, against the same contract.

Problems with a whole file (missing, unreadable, delivered twice, a contract column absent, parts
whose columns differ) raise `IngestError` before anything is written.

On Spark (`engine="spark"`, `data_contracts.spark_ingest`) each partition goes through the same
`judge_batch`, the parents are broadcast, and the repeated keys come from the same SQL text run by
Spark SQL: same files, same report, rows in another order.

Why not pandera's PySpark backend (`pandera.pyspark`): our contract is per row (every row accepted
or quarantined, with every rule it broke and a sentence saying why), and that backend answers per
check. It does not raise; it attaches a summary to `df.pandera.errors` (which check failed on
which column, no rows), and it has no `drop_invalid_rows` (pandera issue #1540: invalid rows
cannot be told apart or set aside). Our own parsing (step 1) and cross-table rules (step 3) are not
pandera checks either. So the pandera checks of step 2 run, with pandas, inside each Spark
partition, where their failure cases carry the row: one definition of every rule on both engines.
"""
from __future__ import annotations

import csv
import gc
import json
import os
import tempfile
import unicodedata
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from data_contracts import duplicates, rules
from data_contracts.contracts import CONTRACTS, Contract, Field
from data_contracts.duplicates import RepeatedKeys
from data_contracts.rules import issues, number, show
from settings import get_settings

# Parents before children: a reference is checked against the rows already accepted.
TABLE_ORDER = ("cooperatives", "members", "transactions", "e_invoices", "loan_applications",
               "loans", "repayments", "true_pd")
ENGINES = ("duckdb", "spark")
OPTIONAL_TABLES = frozenset({"true_pd"})  # only the synthetic generator knows the true PD
assert set(TABLE_ORDER) == set(CONTRACTS)

# Written in a raw cell, these mean "no value" (the usual spreadsheet and database spellings).
ABSENT_TOKENS = ("", "NA", "N/A", "n/a", "NULL", "null", "None", "none", "nan", "NaN", "#N/A")
BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
QUARANTINE_EXTRA = ("source_row", "rule", "reason")
REPORT_FILE = "ingest_report.json"
# Text is held as Arrow strings (pandas 3's default `str`): ten million ids stay compact and
# compare, hash and write at Arrow speed instead of as ten million Python objects.
TEXT = pd.StringDtype("pyarrow", na_value=np.nan)
EXACT_FLOAT_INT = 2 ** 53  # beyond this a number read as floating point is no longer exact


class IngestError(Exception):
    """A whole input file is unusable; the message says what was wrong and what to do."""


@dataclass
class TableReport:
    table: str
    source: Path
    input_rows: int
    accepted: int
    quarantined: int
    reasons: dict[str, int]  # rule -> rows quarantined for it (a row may count under several)

    @property
    def reconciles(self) -> bool:
        return self.input_rows == self.accepted + self.quarantined


@dataclass
class IngestReport:
    tables: list[TableReport]
    received_at: datetime | None = None

    @property
    def reconciles(self) -> bool:
        return all(t.reconciles for t in self.tables)

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.table == name:
                return t
        raise KeyError(f"no table {name!r} in this ingest (an optional table not delivered?)")

    def as_rows(self) -> list[dict]:
        return [{"table": t.table, "source": t.source.name, "input_rows": t.input_rows,
                 "accepted": t.accepted, "quarantined": t.quarantined,
                 "reasons": ", ".join(f"{rule}: {n}" for rule, n in t.reasons.items())}
                for t in self.tables]

    def to_json(self) -> dict:
        return {"received_at": None if self.received_at is None else str(self.received_at),
                "reconciles": self.reconciles,
                "tables": [{**asdict(t), "source": str(t.source), "reconciles": t.reconciles}
                           for t in self.tables]}


def ingest(raw_dir: Path, clean_dir: Path, quarantine_dir: Path, received_at: datetime | None = None,
           progress: Callable[[str, float], None] | None = None, batch_rows: int | None = None,
           memory_mb: int | None = None, engine: str = "duckdb",
           spark_master: str | None = None) -> IngestReport:
    """Ingest every contract table from `raw_dir`; write accepted rows to `clean_dir` and refused
    rows to `quarantine_dir` (both `<table>.parquet`, always written, empty when nothing), plus
    `quarantine_dir/ingest_report.json`.

    `received_at` is when the data arrived (default now): anything dated at or after it is refused.
    A naive datetime is read as Asia/Ho_Chi_Minh local time, like the data.

    Tables are read, checked and written `batch_rows` rows at a time, so memory does not grow with
    their size; the search for duplicate keys, which spans the whole table, runs in DuckDB within
    `memory_mb` and spills to disk beyond it. Both default to the settings (COOPSCORE_INGEST_BATCH_ROWS,
    COOPSCORE_INGEST_MEMORY_MB). The verdicts do not depend on them: a row's verdict depends on the
    row itself, the parents accepted before, and the rows before it with the same key.

    `engine`: "duckdb" (this machine) or "spark" (`data_contracts.spark_ingest`: the same verdicts,
    judged per partition on a Spark session; `spark_master` its master URL, else Spark's usual
    settings). Raises ValueError for another engine, or a master without Spark.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if spark_master and engine != "spark":
        raise ValueError("spark_master is only for engine='spark'")
    raw_dir, clean_dir, quarantine_dir = Path(raw_dir), Path(clean_dir), Path(quarantine_dir)
    progress = progress or _silent
    batch_rows = batch_rows or get_settings().ingest_batch_rows
    memory_mb = memory_mb or get_settings().ingest_memory_mb
    if batch_rows < 1 or memory_mb < 1:
        raise ValueError(f"batch_rows ({batch_rows}) and memory_mb ({memory_mb}) must be at least 1")
    now = rules.local_time(received_at)
    sources = locate_sources(raw_dir)  # every file-level problem is raised here, before any write
    clean_dir.mkdir(parents=True, exist_ok=True)
    quarantine_dir.mkdir(parents=True, exist_ok=True)

    # progress moves with the bytes of input behind it: transactions are most of the work
    sizes = {t: (source_bytes(s) if s is not None else 0) for t, s in sources.items()}
    total, done = max(1, sum(sizes.values())), 0
    parents: dict[str, pd.DataFrame] = {}
    reports: list[TableReport] = []
    with tempfile.TemporaryDirectory(prefix=".ingest-work-", dir=quarantine_dir) as work, \
            duplicates.connect(Path(work), memory_mb) as con:
        session = None
        if engine == "spark":
            from data_contracts import spark_ingest  # PySpark and its JVM only when asked for

            progress("starting Spark", 0.0)
            session = spark_ingest.start(spark_master, batch_rows)
        for table in TABLE_ORDER:
            source = sources[table]
            if source is None:  # an optional table not delivered: leave no stale output behind
                for stale in (clean_dir / f"{table}.parquet", quarantine_dir / f"{table}.parquet"):
                    stale.unlink(missing_ok=True)
                continue
            start, share = done / total, sizes[table] / total

            def table_progress(step: str, fraction: float, table=table, start=start, share=share):
                progress(f"ingesting {table}" + (f": {step}" if step else ""), start + share * fraction)

            if session is None:
                report, kept = ingest_table(table, source, parents, now, clean_dir, quarantine_dir,
                                            batch_rows=batch_rows, con=con, workdir=Path(work),
                                            progress=table_progress)
            else:
                report, kept = spark_ingest.ingest_table_on_spark(
                    session, table, source, parents, now, clean_dir, quarantine_dir, Path(work),
                    progress=table_progress)
            if kept is not None:
                parents[table] = kept
            reports.append(report)
            done += sizes[table]

    report = IngestReport(reports, received_at=now.to_pydatetime())
    _write_atomically(quarantine_dir / REPORT_FILE,
                      lambda path: path.write_text(json.dumps(report.to_json(), indent=2,
                                                              ensure_ascii=False)))
    progress("done", 1.0)
    return report


def _silent(message: str, fraction: float) -> None:
    pass


KEY_PASS_SHARE = 0.15  # of a table's time, roughly, reading and grouping its keys (for progress)


def ingest_table(table: str, source: Path, parents: dict[str, pd.DataFrame], now: pd.Timestamp,
                 clean_dir: Path, quarantine_dir: Path, batch_rows: int,
                 con: duckdb.DuckDBPyConnection, workdir: Path, progress: Callable[[str, float], None] = _silent,
                 ) -> tuple[TableReport, pd.DataFrame | None]:
    """One table, in batches of `batch_rows`: parse, check, relate, then append the accepted and
    the quarantined rows to their files (renamed into place only when the table is complete).

    Returns the report, and for a table other tables refer to, the columns of its accepted rows
    that their rules read (`rules.PARENT_COLUMNS`); None for the others.
    """
    contract = CONTRACTS[table]
    # Pass 1, the keys only: a duplicate may repeat a row from any earlier batch.
    key_fields = [contract.field(k) for k in contract.key]
    with RepeatedKeys(contract, workdir, con) as repeats:
        for keys, fraction in read_batches(source, batch_rows, columns=list(contract.key)):
            repeats.add(parse_table(keys, contract, key_fields)[0])
            progress("finding duplicate keys", KEY_PASS_SHARE * fraction)
        first_row = repeats.first_rows()

    # Pass 2, every column: each batch is judged and written, then let go.
    reasons: Counter[str] = Counter()
    input_rows = accepted = quarantined = 0
    kept: list[pd.DataFrame] = []
    clean_out = BatchWriter(clean_dir / f"{table}.parquet", clean_schema(contract))
    quarantine_out = BatchWriter(quarantine_dir / f"{table}.parquet", quarantine_schema(read_header(source)))
    with clean_out, quarantine_out:
        for raw, fraction in read_batches(source, batch_rows):
            if input_rows:
                # pandera's errors keep a batch alive in reference cycles (through their
                # tracebacks) that the generational collector seldom reaches: without this,
                # memory grew with every batch. (A table read in one batch never pays for it.)
                gc.collect()
            clean, quarantine, found = judge_batch(table, raw, parents, now, first_row)
            clean_out.write(as_arrow(clean))
            quarantine_out.write(quarantine)
            input_rows += len(raw)
            accepted += len(clean)
            quarantined += quarantine.num_rows
            reasons.update(found.drop_duplicates(["row", "rule"])["rule"].to_numpy())
            if table in rules.PARENT_COLUMNS:
                kept.append(clean[list(rules.PARENT_COLUMNS[table])])
            progress(f"{input_rows:,} rows", KEY_PASS_SHARE + (1 - KEY_PASS_SHARE) * fraction)
            del raw, clean, quarantine, found
        report = TableReport(table=table, source=source, input_rows=input_rows, accepted=accepted,
                             quarantined=quarantined, reasons=dict(sorted(reasons.items())))
        if not report.reconciles:  # impossible by construction: a bug here must be loud
            raise RuntimeError(f"ingest bug: {table} has {report.input_rows} input rows but "
                               f"{report.accepted} accepted + {report.quarantined} quarantined")
    if table not in rules.PARENT_COLUMNS:
        return report, None
    columns = list(rules.PARENT_COLUMNS[table])
    return report, (pd.concat(kept, ignore_index=True) if kept
                    else to_contract_dtypes(parse_table(_no_rows(contract), contract)[0], contract)[columns])


def judge_batch(table: str, raw: pd.DataFrame, parents: dict[str, pd.DataFrame], now: pd.Timestamp,
                first_row: pd.Series) -> tuple[pd.DataFrame, pa_arrow.Table, pd.DataFrame]:
    """One batch of raw rows (indexed by source row): its accepted rows with the contract types,
    its quarantined rows as delivered with their rules and reasons, and every issue found."""
    contract = CONTRACTS[table]
    parsed, parse_issues = parse_table(raw, contract)
    found = pd.concat([parse_issues, check_values(parsed, contract),
                       rules.cross_table_issues(table, parsed, parents, now, first_row)],
                      ignore_index=True)
    verdict = per_row_verdict(found)
    refused = np.zeros(len(raw), dtype=bool)
    refused[raw.index.get_indexer(verdict.index)] = True
    clean = to_contract_dtypes(parsed.loc[~refused], contract)
    return clean, quarantine_rows(raw, verdict), found


def _no_rows(contract: Contract) -> pd.DataFrame:
    """A raw table with the contract's columns and no row (a parent delivered empty)."""
    return pd.DataFrame({f.name: pd.Series([], dtype=TEXT) for f in contract.fields})


# ---- finding and reading the files ------------------------------------------------------------

def locate_sources(raw_dir: Path) -> dict[str, Path | None]:
    """The file or folder of every table, after checking each one is delivered once and has the
    contract columns (in every part of a folder)."""
    if not raw_dir.is_dir():
        raise IngestError(f"raw data folder {raw_dir} does not exist; generate or copy the "
                          f"platform export there first")
    sources: dict[str, Path | None] = {}
    for table in TABLE_ORDER:
        found = delivered(raw_dir, table)
        if len(found) > 1:
            raise IngestError(f"both {_shown(found[0])} and {_shown(found[1])} are in {raw_dir}: keep "
                              f"exactly one file or folder per table so there is no doubt which one is "
                              f"ingested")
        if not found and table not in OPTIONAL_TABLES:
            raise IngestError(f"table {table!r} is missing: expected {table}.parquet, {table}.csv or a "
                              f"folder {table}/ of Parquet parts in {raw_dir}")
        sources[table] = found[0] if found else None
        if found:
            check_columns(table, found[0], read_header(found[0]))
    return sources


def delivered(raw_dir: Path, table: str) -> list[Path]:
    """Every way `table` is present in `raw_dir`: the files <table>.parquet and <table>.csv, and the
    folder <table>/ of Parquet parts (a folder named <table>.parquet, as Spark writes one, is a
    folder of parts too). Ingest needs exactly one; an empty list means the table is absent."""
    found = [p for p in (raw_dir / f"{table}.parquet", raw_dir / f"{table}.csv") if p.exists()]
    return found + [raw_dir / table] if (raw_dir / table).is_dir() else found


def parquet_parts(folder: Path) -> list[Path]:
    """The Parquet parts of a table delivered as a folder, in the order its rows are numbered: by
    their paths inside it (month=2024-01/... before month=2024-02/...). Names starting with '.' or
    '_' (Spark's _SUCCESS, checksum files, temporary folders) are not data, as for Spark and
    pyarrow's datasets. Raises IngestError when the folder holds no part."""
    parts = sorted((p for p in folder.rglob("*.parquet") if p.is_file() and not any(
        name.startswith((".", "_")) for name in p.relative_to(folder).parts)),
        key=lambda p: p.relative_to(folder).as_posix())
    if not parts:
        raise IngestError(f"{folder} is a folder but holds no Parquet part (*.parquet): deliver the "
                          f"table as {folder.name}.parquet or .csv, or as a folder of .parquet parts")
    return parts


def source_bytes(path: Path) -> int:
    """The size of a delivered table: its file, or the sum of its parts."""
    return sum(p.stat().st_size for p in parquet_parts(path)) if path.is_dir() else path.stat().st_size


def _shown(path: Path) -> str:
    return f"{path.name}/" if path.is_dir() else path.name


def read_header(path: Path) -> list[str]:
    """The column names of a delivered file, or of every part of a folder (which must agree)."""
    if path.is_dir():
        return _parts_header(path)
    try:
        if path.suffix == ".parquet":
            return list(pq.read_schema(path).names)
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, pa_arrow.ArrowException) as e:
        raise IngestError(f"cannot read {path}: {e}. Re-export it as Parquet or UTF-8 CSV") from e
    if not header:
        raise IngestError(f"{path} is empty: a CSV file needs a header line with the column names")
    return header


def _parts_header(folder: Path) -> list[str]:
    header = None
    for part in parquet_parts(folder):
        try:
            names = list(pq.read_schema(part).names)
        except (OSError, pa_arrow.ArrowException) as e:
            raise IngestError(f"cannot read {part}: {e}. Fix or re-export that part") from e
        if header is None:
            header, first = names, part
        elif names != header:
            raise IngestError(f"the parts of {folder} do not have the same columns: "
                              f"{first.relative_to(folder)} has {header}, {part.relative_to(folder)} has "
                              f"{names}. Re-export the table with one set of columns")
    return header


def check_columns(table: str, path: Path, columns: list[str]) -> None:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise IngestError(f"{path.name} has the column(s) {repeated} more than once; "
                          f"each column must appear exactly once")
    # an optional column (`Field.optional`: added after feeds existed) may be left out: it is then empty
    missing = [f.name for f in CONTRACTS[table].fields if f.name not in columns and not f.optional]
    if missing:
        raise IngestError(f"table {table!r} ({path.name}) is missing the required column(s) "
                          f"{missing}; columns found: {columns}. Rename or add them to match the "
                          f"contract in data_contracts/contracts.py")
    clashing = [c for c in QUARANTINE_EXTRA if c in columns]
    if clashing:
        raise IngestError(f"{path.name} has column(s) {clashing}, which the quarantine file adds "
                          f"itself; rename them in the export")


def read_batches(path: Path, batch_rows: int, columns: list[str] | None = None,
                 ) -> Iterator[tuple[pd.DataFrame, float]]:
    """The file (or folder of Parquet parts) as delivered, `batch_rows` rows (at most) at a time,
    each batch indexed by source row (numbered from 0 over the whole file, or over the parts in
    `parquet_parts` order), with the share of the rows read so far.

    CSV cells are read as text, exactly as written, so the quarantine keeps the original values;
    Parquet keeps its own types (integers with nulls stay integers). `columns`: only these.
    """
    start = 0
    try:
        for batch, fraction in _arrow_batches(path, batch_rows, columns):
            for offset in range(0, batch.num_rows, batch_rows):
                part = batch.slice(offset, batch_rows)
                frame = part.to_pandas(types_mapper=_pandas_type, ignore_metadata=True)
                frame.index = pd.RangeIndex(start, start + part.num_rows)
                start += part.num_rows
                yield frame, fraction
    except (OSError, pa_arrow.ArrowException) as e:
        raise IngestError(f"cannot read {path}: {e}. Fix or re-export the file "
                          f"(Parquet, or UTF-8 CSV with the same number of fields on every line)") from e


def _arrow_batches(path: Path, batch_rows: int, columns: list[str] | None,
                   ) -> Iterator[tuple[pa_arrow.RecordBatch | pa_arrow.Table, float]]:
    if path.is_dir():
        yield from _parquet_batches(parquet_parts(path), batch_rows, columns)
        return
    if path.suffix == ".parquet":
        yield from _parquet_batches([path], batch_rows, columns)
        return
    header = read_header(path)
    size = max(1, path.stat().st_size)
    with pa_arrow.OSFile(str(path)) as f:
        reader = pa_csv.open_csv(
            f,
            read_options=pa_csv.ReadOptions(block_size=_csv_block_size(path, batch_rows)),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: pa_arrow.string() for c in header}, include_columns=columns,
                strings_can_be_null=False, quoted_strings_can_be_null=False))
        for batch in reader:
            yield batch, min(1.0, f.tell() / size)


def _parquet_batches(files: list[Path], batch_rows: int, columns: list[str] | None,
                     ) -> Iterator[tuple[pa_arrow.Table, float]]:
    """The rows of the files, in order, as tables of about batch_rows rows: whole row groups
    (pyarrow writes a million rows to one by default), one at a time, gathered over files until
    there are batch_rows (iter_batches kept a little of every batch it had read)."""
    total = max(1, sum(_parquet_file(f).metadata.num_rows for f in files))
    done = 0
    pending: list[pa_arrow.Table] = []
    for f in files:
        parquet = _parquet_file(f)
        for g in range(parquet.num_row_groups):
            try:
                pending.append(parquet.read_row_group(g, columns=columns))
            except (OSError, pa_arrow.ArrowException) as e:
                raise IngestError(f"cannot read {f}: {e}. Fix or re-export it") from e
            if sum(t.num_rows for t in pending) >= batch_rows:
                gathered = _gathered(pending)
                done += gathered.num_rows
                yield gathered, done / total
                del gathered
    if pending:
        gathered = _gathered(pending)
        yield gathered, (done + gathered.num_rows) / total


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa_arrow.ArrowException) as e:
        raise IngestError(f"cannot read {path}: {e}. Fix or re-export it (Parquet, or UTF-8 CSV)") from e


def _gathered(pending: list[pa_arrow.Table]) -> pa_arrow.Table:
    """One table of the row groups read (the list is emptied). Parts written by different tools
    may differ in width (int32 / int64) or in an all-null column's type: widened, never narrowed."""
    gathered = pa_arrow.concat_tables(pending, promote_options="permissive").combine_chunks()
    pending.clear()
    return gathered


def _csv_block_size(path: Path, batch_rows: int) -> int:
    """Bytes the CSV reader takes at a time: about `batch_rows` rows, judged from the first MiB
    (between 1 MiB and 1 GiB; a block is then cut into batches of `batch_rows` rows)."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    bytes_per_row = len(head) / max(1, head.count(b"\n"))
    return int(min(1 << 30, max(1 << 20, bytes_per_row * batch_rows)))


def _pandas_type(arrow_type):
    if pa_arrow.types.is_signed_integer(arrow_type):
        return pd.Int64Dtype()  # a null in an integer column must not turn it into floats
    if pa_arrow.types.is_string(arrow_type) or pa_arrow.types.is_large_string(arrow_type):
        return TEXT
    return None


# ---- step 1: parse every column to its contract type ------------------------------------------

def parse_table(raw: pd.DataFrame, contract: Contract, fields: list[Field] | None = None,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The contract columns (or only `fields`) parsed to their types (NA where absent or
    unreadable), and the issues. Each value is parsed on its own: the rows read with it do not
    change its verdict, so a table may be parsed in batches of any size."""
    parsed, found = {}, []
    for f in (contract.fields if fields is None else fields):
        column = raw[f.name] if f.name in raw.columns else pd.Series(pd.NA, index=raw.index, dtype=TEXT)
        absent = is_absent(column)
        values, problems = PARSERS[f.dtype](column, absent, f)
        parsed[f.name] = values
        if not f.nullable and absent.any():
            found.append(issues(raw.index[absent], "missing", f"{f.name} is empty but required"))
        for bad, rule, expected in problems:
            at = np.flatnonzero(bad)  # positions in the batch; issues name source rows
            if len(at):
                found.append(issues(raw.index[at], rule, f"{f.name}=" + show(column.iloc[at]).to_numpy()
                                    + f" {expected}"))
    frame = pd.DataFrame(parsed, index=raw.index)
    return frame, (pd.concat(found, ignore_index=True) if found else rules.no_issues())


def is_absent(column: pd.Series) -> np.ndarray:
    """True where no value was given: null, empty or blank text, or a usual 'no value' token."""
    absent = column.isna().to_numpy()
    if _is_text(column):
        absent |= column.isin(ABSENT_TOKENS).to_numpy()
        absent |= column.str.isspace().eq(True).to_numpy()
    return absent


def _is_text(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.StringDtype) or (
        column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) == "string")


Problems = list[tuple[np.ndarray, str, str]]  # (rows that are bad, rule, what a good value is)


def parse_text(column: pd.Series, absent: np.ndarray, f: Field) -> tuple[pd.Series, Problems]:
    """Text is kept as written, except that vocabulary with Vietnamese letters is put in Unicode
    NFC form (the same letters, one encoding), so 'Hà Nội' typed on any device matches."""
    values = column.astype(TEXT) if _is_text(column) else column.astype(str).astype(TEXT)
    if absent.any():
        values = values.where(~absent)
    if f.allowed is not None and not all(str(a).isascii() for a in f.allowed):
        codes, uniques = pd.factorize(values)
        nfc = np.array([unicodedata.normalize("NFC", u) for u in uniques] + [None], dtype=object)
        values = pd.Series(nfc[codes], index=column.index, dtype=TEXT)  # code -1 (absent) -> NA
    return values, []


def parse_integer(column: pd.Series, absent: np.ndarray, f: Field) -> tuple[pd.Series, Problems]:
    """Whole numbers only: 1.5 is refused, never rounded; so is anything too large to be exact."""
    number_ = _to_number(column, absent)
    if pd.api.types.is_signed_integer_dtype(number_.dtype):
        values = number_.astype("Int64")
        return values, [(values.isna().to_numpy() & ~absent, "not_a_number", "is not a number")]
    x = number_.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(x)
    fractional = finite & (x != np.floor(x))
    too_large = finite & ~fractional & (np.abs(x) >= EXACT_FLOAT_INT)
    exact = np.where(finite & ~fractional & ~too_large, x, 0).astype(np.int64)
    if too_large.any():
        # A whole number written in full is exact, even when another value read with it (such as
        # 1.5) made the column floating point: its verdict must not depend on its neighbours.
        at = np.flatnonzero(too_large)
        written = [_exact_integer(v) for v in column.iloc[at]]
        rescued = np.array([w is not None for w in written])
        exact[at[rescued]] = [w for w in written if w is not None]
        too_large[at[rescued]] = False
    ok = finite & ~fractional & ~too_large
    values = pd.Series(pd.arrays.IntegerArray(np.where(ok, exact, 0), ~ok), index=column.index)
    return values, [(~finite & ~absent, "not_a_number", "is not a number"),
                    (fractional, "not_whole_number", "is not a whole number" + (f" of {f.unit}" if f.unit else "")),
                    (too_large, "out_of_range", "is too large to be a plausible value")]


INT64_RANGE = (-(2 ** 63), 2 ** 63 - 1)


def _exact_integer(value) -> int | None:
    """The value of a whole number written as text within int64, else None."""
    if not isinstance(value, str):
        return None
    try:
        number_ = int(value.strip())
    except ValueError:
        return None
    return number_ if INT64_RANGE[0] <= number_ <= INT64_RANGE[1] else None


def parse_float(column: pd.Series, absent: np.ndarray, f: Field) -> tuple[pd.Series, Problems]:
    x = _to_number(column, absent).to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(x)
    values = pd.Series(np.where(finite, x, np.nan), index=column.index)
    return values, [(~finite & ~absent, "not_a_number", "is not a finite number")]


def _to_number(column: pd.Series, absent: np.ndarray) -> pd.Series:
    if pd.api.types.is_bool_dtype(column):  # True is not a quantity: refuse rather than count 1
        column = column.astype(str)
    if absent.any():
        column = column.where(~absent)
    return pd.to_numeric(column, errors="coerce", dtype_backend="numpy_nullable")


def parse_bool(column: pd.Series, absent: np.ndarray, f: Field) -> tuple[pd.Series, Problems]:
    """true/false, yes/no, 1/0 in any case; anything else is refused, never guessed."""
    if pd.api.types.is_bool_dtype(column):
        values = column.astype("boolean")
    else:
        words = column.where(~absent).astype(str).str.strip().str.lower()
        values = words.map(BOOL_WORDS).astype("boolean")
    return values, [(values.isna().to_numpy() & ~absent, "not_a_bool",
                     "is not true/false (also accepted: yes/no, 1/0)")]


def parse_datetime(column: pd.Series, absent: np.ndarray, f: Field) -> tuple[pd.Series, Problems]:
    """ISO 8601 only (never a guess between day-first and month-first). Values with a UTC offset
    are converted to Asia/Ho_Chi_Minh local time; values without one are local time already."""
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = _naive_local(column)
    else:
        if not (column.dtype == object or _is_text(column)):
            column = column.astype(str)  # e.g. 20250101 stored as a number: read the text it is
        stamps = _parse_iso(column.where(~absent))
    stamps, out_of_range = _to_nanoseconds(stamps)
    unreadable = stamps.isna().to_numpy() & ~absent & ~out_of_range
    if f.dtype == "timestamp":
        return stamps, [(unreadable, "not_a_timestamp", "is not an ISO timestamp "
                                                        "(YYYY-MM-DDTHH:MM:SS, optional UTC offset)"),
                        (out_of_range, "not_a_timestamp", "is outside the years 1678-2261")]
    has_time = (stamps.notna() & (stamps != stamps.dt.normalize())).to_numpy()
    stamps = stamps.where(~has_time)
    return stamps, [(unreadable, "not_a_date", "is not an ISO date (YYYY-MM-DD)"),
                    (out_of_range, "not_a_date", "is outside the years 1678-2261"),
                    (has_time, "not_a_date", "has a time of day where a date (YYYY-MM-DD) is expected")]


OFFSET_AT_END = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _parse_iso(text: pd.Series) -> pd.Series:
    if pd.api.types.infer_dtype(text, skipna=True) in ("date", "datetime", "datetime64"):
        return pd.to_datetime(text, errors="coerce")  # Parquet dates arrive as date objects
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns on mixed offsets; handled below
        try:
            stamps = pd.to_datetime(text, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):
            stamps = None
    if stamps is not None and stamps.dtype == "datetime64[ns]":
        return stamps  # the usual case: no offsets anywhere
    # Some values carry an offset. pandas would lend it to the values without one, so read the
    # two kinds apart: offset -> convert to local time; no offset -> already local time.
    with_offset = text.str.contains(OFFSET_AT_END, regex=True, na=False).to_numpy()
    local = pd.to_datetime(text.where(~with_offset), errors="coerce", format="ISO8601")
    converted = pd.to_datetime(text.where(with_offset), errors="coerce", format="ISO8601", utc=True)
    converted = converted.dt.tz_convert(rules.LOCAL_TZ).dt.tz_localize(None)
    return local.where(~with_offset, converted)


def _naive_local(stamps: pd.Series) -> pd.Series:
    if getattr(stamps.dtype, "tz", None) is not None:
        return stamps.dt.tz_convert(rules.LOCAL_TZ).dt.tz_localize(None)
    return stamps


def _to_nanoseconds(stamps: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """datetime64[ns], the contracts' type; values it cannot hold are marked out of range."""
    if stamps.dtype == "datetime64[ns]":
        return stamps, np.zeros(len(stamps), dtype=bool)
    lo, hi = pd.Timestamp.min, pd.Timestamp.max
    out_of_range = ((stamps < lo) | (stamps > hi)).to_numpy()
    return stamps.where(~out_of_range).astype("datetime64[ns]"), out_of_range


PARSERS = {"str": parse_text, "int64": parse_integer, "float64": parse_float, "bool": parse_bool,
           "date": parse_datetime, "timestamp": parse_datetime}


# ---- step 2: the contract's checks on the parsed values ---------------------------------------

CHECK_RULES = {"isin": "not_allowed", "greater_than_or_equal_to": "below_minimum",
               "less_than_or_equal_to": "above_maximum", "str_matches": "bad_format"}


def check_values(parsed: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Run the contract's pandera checks and turn each failure into an issue for its row.

    Types were settled in step 1 and absent values reported there, so the schema used here is the
    contract's own with its checks only (no coercion, nulls skipped): every failure then has a row.
    """
    schema = pa.DataFrameSchema(
        {name: pa.Column(checks=column.checks, nullable=True, name=name)
         for name, column in contract.schema().columns.items() if column.checks},
        name=contract.table)
    try:
        schema.validate(parsed[list(schema.columns)], lazy=True)
        return rules.no_issues()
    except pa.errors.SchemaErrors as e:
        failures = e.failure_cases
    if failures["index"].isna().any():  # step 1 should make this impossible
        raise RuntimeError(f"ingest bug: pandera failures without a row in {contract.table}:\n"
                           f"{failures[failures['index'].isna()].to_string()}")
    found = []
    check_name = failures["check"].astype(str).str.split("(").str[0]
    for (column, check), cases in failures.groupby([failures["column"], check_name], sort=False):
        rows = cases["index"].to_numpy(dtype=np.int64)
        f = contract.field(column)
        found.append(issues(rows, CHECK_RULES.get(check, check),
                            f"{column}=" + show(parsed.loc[rows, column]).to_numpy()
                            + " " + _what_was_expected(f, check)))
    return pd.concat(found, ignore_index=True)


def _what_was_expected(f: Field, check: str) -> str:
    unit = f" {f.unit}" if f.unit and not f.unit.startswith("ISO") else ""
    if check == "isin":
        allowed = [str(a) for a in f.allowed]
        listed = ", ".join(allowed[:10]) + (f", ... ({len(allowed)} in all, see "
                                            f"data_contracts/vocabulary.py)" if len(allowed) > 10 else "")
        return f"is not one of the allowed values: {listed}"
    if check == "greater_than_or_equal_to":
        return f"is below the minimum {number(f.min)}{unit}"
    if check == "less_than_or_equal_to":
        return f"is above the maximum {number(f.max)}{unit}"
    if check == "str_matches":
        return f"does not have the expected form {f.pattern}"
    return f"fails the check {check}"


# ---- outcome: one verdict per refused row -----------------------------------------------------

def per_row_verdict(found: pd.DataFrame) -> pd.DataFrame:
    """One line per refused row (indexed by source row): its rule codes and reasons, '; '-joined,
    in the order they were found (parse, check, cross-table)."""
    if found.empty:
        return pd.DataFrame({"rule": [], "reason": []}, index=pd.Index([], dtype=np.int64),
                            dtype=object)
    found = found.sort_values("row", kind="stable")
    several = found["row"].duplicated(keep=False).to_numpy()
    single = found[~several].set_index("row")[["rule", "reason"]]
    if not several.any():
        return single
    grouped = found[several].groupby("row", sort=False)
    joined = pd.DataFrame({"rule": grouped["rule"].agg(lambda r: "; ".join(dict.fromkeys(r))),
                           "reason": grouped["reason"].agg("; ".join)})
    return pd.concat([single, joined]).sort_index()


def to_contract_dtypes(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The accepted rows with exactly the contract's types: nothing may be missing any more."""
    out = {}
    for f in contract.fields:
        column = frame[f.name]
        if f.dtype in ("int64", "bool"):
            column = column.astype(f.dtype)  # raises if a value is still missing: a bug
        elif f.dtype == "str":
            column = column.astype(TEXT)
        out[f.name] = column
    clean = pd.DataFrame(out).reset_index(drop=True)
    for f in contract.fields:
        if clean[f.name].dtype != (TEXT if f.dtype == "str" else f.pandera_dtype()):
            raise RuntimeError(f"ingest bug: {contract.table}.{f.name} has dtype "
                               f"{clean[f.name].dtype}, the contract says {f.dtype}")
        if not f.nullable and clean[f.name].isna().any():
            raise RuntimeError(f"ingest bug: {contract.table}.{f.name} accepted an empty value")
    return clean


def as_arrow(clean: pd.DataFrame) -> pa_arrow.Table:
    """The clean table for Parquet, without pandas' dtype notes: any reader then gets the plain
    contract types (text as str, int64, bool, float64, timestamps in ns)."""
    return pa_arrow.Table.from_pandas(clean, preserve_index=False).replace_schema_metadata(None)


def quarantine_rows(raw: pd.DataFrame, verdict: pd.DataFrame) -> pa_arrow.Table:
    """The refused rows with every raw column as text, as delivered, then source_row, rule, reason."""
    rows = verdict.index.to_numpy(dtype=np.int64)
    refused = raw.loc[rows]
    columns = {c: pa_arrow.array(_as_text(refused[c]), type=pa_arrow.string()) for c in raw.columns}
    columns["source_row"] = pa_arrow.array(rows, type=pa_arrow.int64())
    columns["rule"] = pa_arrow.array(verdict["rule"].tolist(), type=pa_arrow.string())
    columns["reason"] = pa_arrow.array(verdict["reason"].tolist(), type=pa_arrow.string())
    return pa_arrow.table(columns)


def _as_text(column: pd.Series) -> list:
    return [None if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v))
            else v if isinstance(v, str) else str(v)
            for v in column.astype(object)]


ARROW_TYPES = {"str": pa_arrow.large_string(), "int64": pa_arrow.int64(), "float64": pa_arrow.float64(),
               "bool": pa_arrow.bool_(), "date": pa_arrow.timestamp("ns"),
               "timestamp": pa_arrow.timestamp("ns")}


def clean_schema(contract: Contract) -> pa_arrow.Schema:
    """The clean file's columns: the contract's, with their types (what `as_arrow` gives)."""
    return pa_arrow.schema([(f.name, ARROW_TYPES[f.dtype]) for f in contract.fields])


def quarantine_schema(raw_columns: list[str]) -> pa_arrow.Schema:
    """The quarantine file's columns: every raw column as text, then source_row, rule, reason."""
    return pa_arrow.schema([(c, pa_arrow.string()) for c in raw_columns]
                           + [("source_row", pa_arrow.int64()), ("rule", pa_arrow.string()),
                              ("reason", pa_arrow.string())])


class BatchWriter:
    """A Parquet file written a batch at a time next to its target, and renamed into place only
    when complete: a reader never sees a half-written file, and a failure leaves none behind."""

    def __init__(self, path: Path, schema: pa_arrow.Schema):
        self.path, self.schema = path, schema
        self.tmp = path.with_name(path.name + ".tmp")
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> BatchWriter:
        self._writer = pq.ParquetWriter(self.tmp, self.schema)
        return self

    def write(self, table: pa_arrow.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema))

    def __exit__(self, exc_type, exc, tb) -> None:
        self._writer.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write next to the target, then rename: a reader never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
