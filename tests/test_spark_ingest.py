"""Ingest on Spark gives the verdicts ingest gives on one machine (PySpark in local mode).

The dirty generated data (duplicates, negative and absurd amounts, future dates, unknown ids,
missing fields) goes through both paths: the same accepted and quarantined rows, counts and
reasons, table by table. The Spark path writes rows in another order, so rows are compared by key.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime

import pandas as pd
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from data_contracts.contracts import CONTRACTS
from data_contracts.ingest import IngestError, ingest

pytestmark = pytest.mark.timeout(900)  # a local Spark session on two cores: a minute or two

MEMBERS = 2_000
RECEIVED_AT = datetime(2026, 6, 1, 8, 0)  # fixed, so "future" means the same on both paths


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    from coopscore.synthetic import generate

    if shutil.which("java") is None:
        pytest.fail("Spark needs Java 17 or newer on PATH (.ci/run installs it)")
    raw = tmp_path_factory.mktemp("spark-ingest") / "raw"
    generate(raw, members=MEMBERS, cooperatives=100, seed=31, dirty=True)
    return raw


@pytest.fixture(scope="module")
def spark():
    """One local session for the module: every ingest(engine='spark') below joins it."""
    from data_contracts.spark_ingest import start

    session = start("local[2]", batch_rows=50_000)
    yield session
    session.stop()


def both_paths(raw, out):
    on_duckdb = ingest(raw, out / "duckdb" / "clean", out / "duckdb" / "quarantine", received_at=RECEIVED_AT)
    on_spark = ingest(raw, out / "spark" / "clean", out / "spark" / "quarantine", received_at=RECEIVED_AT,
                      engine="spark", spark_master="local[2]")
    return on_duckdb, on_spark


@pytest.fixture(scope="module")
def parquet_run(raw_dir, spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("spark-ingest-out")
    return out, *both_paths(raw_dir, out)


def assert_same_reports(on_duckdb, on_spark):
    assert on_spark.reconciles
    assert [t.table for t in on_spark.tables] == [t.table for t in on_duckdb.tables]
    for d, s in zip(on_duckdb.tables, on_spark.tables):
        counts = (s.input_rows, s.accepted, s.quarantined)
        assert counts == (d.input_rows, d.accepted, d.quarantined), d.table
        assert s.reasons == d.reasons, d.table


def assert_same_files(out, tables):
    for table in tables:
        key = list(CONTRACTS[table].key)
        for kind, order in (("clean", key), ("quarantine", ["source_row"])):
            d = pq.read_table(out / "duckdb" / kind / f"{table}.parquet")
            s = pq.read_table(out / "spark" / kind / f"{table}.parquet")
            assert s.schema == d.schema, f"{kind}/{table}"
            pd.testing.assert_frame_equal(
                s.to_pandas().sort_values(order, kind="stable").reset_index(drop=True),
                d.to_pandas().sort_values(order, kind="stable").reset_index(drop=True),
                obj=f"{kind}/{table}")


def test_spark_accepts_and_quarantines_as_many_rows_for_the_same_reasons(parquet_run):
    out, on_duckdb, on_spark = parquet_run
    assert sum(t.quarantined for t in on_duckdb.tables) > 1000, "the dirty data should quarantine rows"
    # every kind of dirt the generator injects shows up, so each rule is compared, not just some
    seen = {rule for t in on_duckdb.tables for rule in t.reasons}
    assert {"duplicate_key", "in_future", "unknown_entity", "missing", "below_minimum"} <= seen, seen
    assert_same_reports(on_duckdb, on_spark)


def test_spark_writes_the_same_clean_and_quarantined_rows(parquet_run):
    out, _, _ = parquet_run
    assert_same_files(out, CONTRACTS)
    report = (out / "spark" / "quarantine" / "ingest_report.json").read_text()
    assert '"reconciles": true' in report


def test_csv_exports_read_on_spark_as_on_one_machine(raw_dir, spark, tmp_path):
    """CSV cells are text as written: an empty cell stays "", a quoted line break stays in its
    value (Spark reads such a file in one task, then spreads the rows)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in raw_dir.glob("*.parquet"):
        pa_csv.write_csv(pq.read_table(path).slice(0, 3_000), raw / f"{path.stem}.csv")
    with open(raw / "members.csv", "a", encoding="utf-8") as f:
        f.write('"M-NEW","HTX-NONE","Hà Nội",household,"a ""quoted""\nsector",2024-01-01,,'
                'female,true,false\n')
    on_duckdb, on_spark = both_paths(raw, tmp_path)
    assert_same_reports(on_duckdb, on_spark)
    assert_same_files(tmp_path, CONTRACTS)
    refused = pq.read_table(tmp_path / "spark" / "quarantine" / "members.parquet").to_pandas()
    odd = refused[refused["member_id"] == "M-NEW"].iloc[0]
    assert odd["business_sector"] == 'a "quoted"\nsector' and odd["capital_contribution_vnd"] == ""


def test_a_malformed_csv_line_is_a_clear_error_on_spark_too(raw_dir, spark, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in raw_dir.glob("*.parquet"):
        pa_csv.write_csv(pq.read_table(path).slice(0, 100), raw / f"{path.stem}.csv")
    with open(raw / "cooperatives.csv", "a", encoding="utf-8") as f:
        f.write("HTX-BAD,Hà Nội\n")  # two fields where the header has six
    with pytest.raises(IngestError, match=r"cooperatives.csv: a line does not parse as CSV.*re-export"):
        ingest(raw, tmp_path / "clean", tmp_path / "quarantine", engine="spark", spark_master="local[2]")


def run_cli(home, *args):
    env = {**os.environ, "COOPSCORE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "coopscore.cli", "ingest", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_refuses_a_master_without_spark_and_an_unknown_engine(tmp_path):
    bad = run_cli(tmp_path, "--spark-master", "local[2]")
    assert bad.returncode == 1 and "--spark-master needs --engine spark" in bad.stdout, bad.stdout
    bad = run_cli(tmp_path, "--engine", "polars")
    assert bad.returncode == 1 and "duckdb, spark" in bad.stdout, bad.stdout


def test_ingest_refuses_an_unknown_engine_before_reading_anything(tmp_path):
    with pytest.raises(ValueError, match="duckdb, spark"):
        ingest(tmp_path / "nowhere", tmp_path / "clean", tmp_path / "quarantine", engine="polars")
    with pytest.raises(ValueError, match="engine='spark'"):
        ingest(tmp_path / "nowhere", tmp_path / "clean", tmp_path / "quarantine", spark_master="local[2]")


def test_folders_of_parts_are_numbered_and_judged_on_spark_as_on_one_machine(spark, tmp_path):
    """What `generate --stream` writes: transactions and e-invoices as folders of Parquet parts
    (month=.../province=.../part-N.parquet, spaces and Vietnamese letters in the names). Spark
    numbers every row over the parts in the single-machine order, so the quarantine's source rows,
    the duplicates' first rows and the verdicts are the same; folder names are not columns."""
    from coopscore.synthetic import generate

    raw = tmp_path / "raw"
    generate(raw, members=300, cooperatives=12, seed=5, stream=True, dirty=True)
    assert (raw / "transactions").is_dir() and (raw / "e_invoices").is_dir()
    assert any(" " in p.as_posix() for p in (raw / "transactions").rglob("*.parquet"))
    on_duckdb, on_spark = both_paths(raw, tmp_path)
    refused = {t.table: t.reasons for t in on_duckdb.tables}
    assert refused["transactions"].get("duplicate_key", 0) > 0, refused["transactions"]
    assert_same_reports(on_duckdb, on_spark)
    assert_same_files(tmp_path, CONTRACTS)
