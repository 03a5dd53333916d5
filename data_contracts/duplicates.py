"""Repeated keys over a whole table that is read in batches, in bounded memory.

A row is a duplicate when an earlier row of the same table has the same key (the first occurrence
is kept). Whether a row repeats a key depends on every row before it, so it cannot be decided
inside one batch. `RepeatedKeys` appends the parsed keys of every batch to a Parquet file on disk
and, once all are in, asks DuckDB which rows repeat an earlier key and where that key first
appeared. DuckDB works within a memory limit and spills the rest to its temporary folder, so the
table's size sets the disk used, not the memory.

    con = connect(workdir, memory_mb=1024)  # one per ingest: a connection takes tens of ms
    repeats = RepeatedKeys(contract, workdir, con)
    for keys in batches_of_parsed_keys:     # the key columns, indexed by source row
        repeats.add(keys)
    first_row = repeats.first_rows()        # index: a repeating source row; value: the first one

Rows whose key is incomplete (a key column empty or unreadable) are not keys: they are quarantined
as missing or unreadable by the per-row checks, and never count as a duplicate or as a first one.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.parquet as pq

from data_contracts.contracts import Contract

SOURCE_ROW = "source_row"


def connect(workdir: Path, memory_mb: int, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that uses at most `memory_mb` and spills to `workdir` beyond it."""
    config = {"memory_limit": f"{memory_mb}MB",
              "temp_directory": str(Path(workdir) / "duckdb-spill"),
              # answers are sorted explicitly; keeping insertion order would cost memory
              "preserve_insertion_order": False}
    if threads:
        config["threads"] = threads
    con = duckdb.connect(":memory:", config=config)
    try:  # ingest reports its own progress
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:  # in Jupyter without ipywidgets DuckDB shows no bar anyway
        pass
    return con


def key_columns(contract: Contract) -> list[str]:
    """The names the key columns take in the key file and in `first_rows_sql` (no quoting needed)."""
    return [f"k{i}" for i in range(len(contract.key))]


def key_rows(keys: pd.DataFrame, contract: Contract) -> pa_arrow.Table | None:
    """The rows of one batch of parsed keys (indexed by source row) whose key is complete, as
    source_row, k0, k1, ...; None when there is none."""
    keyed = keys[keys[list(contract.key)].notna().all(axis=1).to_numpy()]
    if keyed.empty:
        return None
    return pa_arrow.table(
        {SOURCE_ROW: pa_arrow.array(keyed.index.to_numpy(dtype=np.int64)),
         **{name: pa_arrow.Array.from_pandas(keyed[column])
            for name, column in zip(key_columns(contract), contract.key)}})


def first_rows_sql(source: str, n_keys: int) -> str:
    """The query that finds repeated keys in `source` (a relation of `key_rows`): every source_row
    whose key appeared at an earlier row, with first_row, the row where it first appeared.
    Plain SQL that DuckDB and Spark SQL read alike: ingest runs this one text on both engines."""
    keys = ", ".join(f"k{i}" for i in range(n_keys))
    return f"""
            WITH k AS (SELECT * FROM {source}),
            firsts AS (
                SELECT {keys}, min({SOURCE_ROW}) AS first_row FROM k
                GROUP BY {keys} HAVING count(*) > 1)
            SELECT k.{SOURCE_ROW}, f.first_row
            FROM k JOIN firsts f USING ({keys})
            WHERE k.{SOURCE_ROW} <> f.first_row
            ORDER BY k.{SOURCE_ROW}"""


class RepeatedKeys:
    """The rows of one table that repeat an earlier row's key, found over every batch added.

    The keys are appended to a Parquet file in `workdir` as they come (nothing is held in memory);
    `first_rows` then groups them with DuckDB (`con`, from `connect`: bounded memory, spilling).
    """

    def __init__(self, contract: Contract, workdir: Path, con: duckdb.DuckDBPyConnection):
        self.contract = contract
        self.workdir = Path(workdir)
        self.con = con
        self._path = self.workdir / f"{contract.table}-keys.parquet"
        self._writer: pq.ParquetWriter | None = None

    def add(self, keys: pd.DataFrame) -> None:
        """The parsed key columns of one batch, indexed by source row (in any order)."""
        batch = key_rows(keys, self.contract)
        if batch is None:
            return
        if self._writer is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._path, batch.schema)
        self._writer.write_table(batch.cast(self._writer.schema))

    def first_rows(self) -> pd.Series:
        """Every source row whose key appeared before it (sorted), mapped to the row where that key
        first appeared."""
        empty = pd.Series(np.array([], dtype=np.int64), index=pd.Index([], dtype=np.int64, name=SOURCE_ROW))
        if self._writer is None:
            return empty
        self._writer.close()
        found = self.con.execute(first_rows_sql("read_parquet(?)", len(self.contract.key)),
                                 [str(self._path)]).fetchnumpy()
        if not len(found[SOURCE_ROW]):
            return empty
        return pd.Series(np.asarray(found["first_row"], dtype=np.int64),
                         index=pd.Index(np.asarray(found[SOURCE_ROW], dtype=np.int64), name=SOURCE_ROW))

    def close(self) -> None:
        """Delete the key file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> RepeatedKeys:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
