"""Batch scoring and the members' ranking on Spark give the one-machine results.

On the session's trained champions (tests/conftest.py pipeline_home): a file of applications with
scored, insufficient-history and rejected rows (every kind of check), scored by
serving.batch.score_file (the snapshot on DuckDB) and by serving.spark_batch.score_file_spark
(history on the Spark engine, the chunk function on the executors): the same file, row for row
(strings and integers exactly, PDs and scores within 1e-9 relative); for a lender, the same
consent answers and one audit entry per row on both. The ranking: the same members, statuses,
tiers, reasons and actions, and percentiles within 1e-9 (window counts against pandas' ranks).
One local[2] Spark session for the module.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.timeout(1200)  # a local Spark session on two cores: minutes, not seconds

RELATIVE = 1e-9


@pytest.fixture(scope="module")
def spark(pipeline_home):
    from features.spark_engine import SparkEngine

    if shutil.which("java") is None:
        pytest.fail("the Spark engine needs Java 17 or newer on PATH (.ci/run installs it)")
    engine = SparkEngine.start(pipeline_home.clean, master="local[2]", shuffle_partitions=2)
    yield engine
    engine.stop()


def assert_same(one: pd.DataFrame, other: pd.DataFrame, what: str) -> None:
    """Same columns, dtypes and rows; floats within RELATIVE and unknown in the same places."""
    assert list(one.columns) == list(other.columns), what
    assert one.dtypes.equals(other.dtypes), f"{what}: {dict(one.dtypes)} != {dict(other.dtypes)}"
    assert len(one) == len(other), what
    mismatched = []
    for column in one.columns:
        a, b = one[column], other[column]
        if a.dtype.kind == "f":
            x, y = a.to_numpy(), b.to_numpy()
            if (np.isnan(x) != np.isnan(y)).any():
                mismatched.append(f"{column} (unknown in different places)")
                continue
            both = ~np.isnan(x)
            rel = np.abs(x[both] - y[both]) / np.maximum(np.abs(x[both]), np.finfo(float).tiny)
            if len(rel) and rel.max() > RELATIVE:
                mismatched.append(f"{column} (relative difference {rel.max():.2e})")
        elif not (a.astype(str).to_numpy() == b.astype(str).to_numpy()).all():
            mismatched.append(column)
    assert not mismatched, f"{what}: {mismatched}"


@pytest.fixture(scope="module")
def applications(pipeline_home) -> pd.DataFrame:
    """Scored, insufficient-history and every kind of rejected row, members and cooperatives."""
    from scoring.scorer import Champions  # noqa: F401 (the module must import without Spark)

    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    member = snap[snap.entity_type == "member"]
    enough = member[(member.history_days >= 180) & (member.transactions_365d >= 12)].entity_id.tolist()
    short = member[(member.history_days < 180) | (member.transactions_365d < 12)].entity_id.tolist()
    coops = snap[snap.entity_type == "cooperative"].entity_id.tolist()
    assert len(enough) > 100 and short and coops, "the fixture data lacks a kind of subject"
    rng = np.random.default_rng(5)
    n = 300
    types = rng.choice(["member", "member", "member", "cooperative"], n)
    ids = np.where(types == "member", rng.choice(enough, n), rng.choice(coops, n)).astype(object)
    rows = pd.DataFrame({"subject_type": types, "subject_id": ids,
                         "amount_vnd": (rng.integers(1, 280, n) * 1_000_000).astype(str),
                         "term_months": rng.integers(1, 61, n).astype(str),
                         "purpose": rng.choice(["inputs", "equipment", "working_capital"], n),
                         "as_of_date": ""})
    snapshot_date = json.loads((pipeline_home.features / "snapshot.json").read_text())["as_of"]
    odd = [("member", short[0], "50000000", "12", "inputs", ""),            # insufficient history
           ("member", short[-1], "50000000", "12", "inputs", snapshot_date),
           ("member", "TV9999999", "50000000", "12", "inputs", ""),         # unknown subject
           ("bank", enough[0], "50000000", "12", "inputs", ""),             # subject type
           ("member", "", "50000000", "12", "inputs", ""),                  # empty id
           ("member", enough[1], "0", "12", "inputs", ""),                  # amount
           ("member", enough[2], "1.5", "12", "inputs", ""),
           ("member", enough[3], "50000000", "500", "inputs", ""),          # term
           ("member", enough[4], "50000000", "12", "holiday", ""),          # purpose
           ("member", enough[5], "50000000", "12", "inputs", "2020-01-01"), # as_of_date not the snapshot's
           ("member", enough[6], "50000000", "12", "inputs", "01/02/2026"),
           ("member", enough[7], "10000000000000", "12", "inputs", ""),     # Decree 156 limit
           ("cooperative", coops[0], "9000000000", "24", "equipment", ""),
           ("member", f" {enough[8]}\t", "50000000", "12", "inputs", ""),   # padded id, as the CSV holds it
           ("cooperative", enough[9], "50000000", "12", "inputs", "")]     # a member's id as a cooperative
    rows = pd.concat([rows, pd.DataFrame(odd, columns=rows.columns)], ignore_index=True)
    return rows.sample(frac=1.0, random_state=3).reset_index(drop=True)  # odd rows among the rest


def test_a_file_scored_on_spark_is_the_file_scored_on_one_machine(pipeline_home, spark, applications,
                                                                    tmp_path):
    """Parquet in (a typed column, several row groups), CSV out; the lender's test below reads and
    writes CSV."""
    from serving.batch import score_file
    from serving.spark_batch import score_file_spark

    src = tmp_path / "apps.parquet"
    typed = applications.assign(term_months=pd.to_numeric(applications.term_months, errors="coerce"))
    typed.to_parquet(src, index=False, row_group_size=64)
    one, other = tmp_path / "duckdb.csv", tmp_path / "spark.csv"
    started = time.perf_counter()
    single = score_file(pipeline_home, src, one, chunk_rows=100)
    seen = []
    batch_size = "spark.sql.execution.arrow.maxRecordsPerBatch"
    spark.session.conf.set(batch_size, "777")  # the job's own batch size must not outlive it
    on_spark = score_file_spark(pipeline_home, src, other, spark, chunk_rows=100,
                                progress=lambda step, f: seen.append(f))
    assert spark.session.conf.get(batch_size) == "777"
    spark.session.conf.unset(batch_size)
    print(f"\nSpark scoring of {len(applications)} rows: {on_spark.seconds:.1f} s "
          f"(one machine {single.seconds:.1f} s, both {time.perf_counter() - started:.1f} s)")
    a, b = (pd.read_csv(p) for p in (one, other))
    assert len(b) == len(applications) == on_spark.rows
    assert b["row_number"].astype(int).tolist() == list(range(1, len(applications) + 1))
    assert_same(a, b, "Parquet -> CSV")
    assert (on_spark.scored, on_spark.insufficient_history, on_spark.rejected) == \
        (single.scored, single.insufficient_history, single.rejected)
    assert on_spark.rejected_by_error == single.rejected_by_error
    assert single.insufficient_history >= 2 and single.scored > 200
    assert {"invalid_request", "unknown_subject"} <= set(single.rejected_by_error)
    assert seen == sorted(seen) and seen[-1] == 1.0
    staged = pipeline_home.clean.parent / "spark-staging"
    assert not any(staged.glob("*")), "the staged results are removed once written"


def test_a_lenders_file_on_spark_gets_the_same_consent_answers_and_audit(pipeline_home, spark, records,
                                                                          grant, tmp_path):
    """--for-lender on Spark: consent asked on the driver through the same Disclosure, an
    unknown id refused like an unconsented one, one audit entry per row, as on one machine."""
    from serving.batch import ForLender, score_file
    from serving.spark_batch import score_file_spark

    snap = pd.read_parquet(pipeline_home.features / "snapshot.parquet")
    good = snap[(snap.entity_type == "member") & (snap.history_days >= 180)
                & (snap.transactions_365d >= 12)].entity_id.tolist()
    records.add_bank("spark-bank", "Spark bank", ["scores:batch"])
    grant("member", good[0], "spark-bank")
    grant("member", good[1], "spark-bank")
    rows = [(good[0], 50_000_000), (good[2], 50_000_000), ("TV9999996", 50_000_000),
            (good[1], 10**13), (good[0], 0)]
    pd.DataFrame({"subject_type": "member", "subject_id": [r[0] for r in rows],
                  "amount_vnd": [r[1] for r in rows], "term_months": 12,
                  "purpose": "inputs"}).to_csv(tmp_path / "apps.csv", index=False)
    lender = ForLender("spark-bank", records, "operator:tests")
    score_file(pipeline_home, tmp_path / "apps.csv", tmp_path / "one.csv", for_lender=lender)
    before = records.audit_count(bank_id="spark-bank", endpoint="cli.score")
    refused = records.audit_count(bank_id="spark-bank", endpoint="cli.score", outcome="no_consent")
    score_file_spark(pipeline_home, tmp_path / "apps.csv", tmp_path / "spark.csv", spark, for_lender=lender)
    a, b = (pd.read_csv(tmp_path / name) for name in ("one.csv", "spark.csv"))
    assert_same(a, b, "lender's file")
    assert b["status"].tolist() == ["scored", "rejected", "rejected", "rejected", "rejected"]
    assert b["error"].tolist()[1:] == ["no_consent", "no_consent", "invalid_request", "invalid_request"]
    assert records.audit_count(bank_id="spark-bank", endpoint="cli.score") == before + len(rows)
    assert records.audit_count(bank_id="spark-bank", endpoint="cli.score", outcome="no_consent") == refused + 2
    assert records.verify_audit_chain().intact


def test_a_consent_the_driver_did_not_ask_about_is_an_error():
    from serving.spark_batch import DecidedConsents

    consents = DecidedConsents("bank", {("member", "TV1"): None, ("member", "TV2"): "no consent"})
    assert consents.refusal("bank", "member", "TV1") is None
    assert consents.refusal("bank", "member", "TV2").message == "no consent"
    with pytest.raises(RuntimeError, match="TV3"):
        consents.refusal("bank", "member", "TV3")


def test_rows_are_numbered_in_file_order_over_several_partitions(spark, tmp_path):
    from serving.spark_batch import numbered_rows

    path = tmp_path / "rows.parquet"
    pd.DataFrame({"seq": np.arange(5_000)[::-1].copy()}).to_parquet(path, row_group_size=250)
    session = spark.session
    session.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    session.conf.set("spark.sql.files.openCostInBytes", "0")
    try:
        frame = session.read.parquet(str(path))
        assert frame.rdd.getNumPartitions() > 1
        got = numbered_rows(frame).toPandas().sort_values("row_number")
    finally:
        session.conf.unset("spark.sql.files.maxPartitionBytes")
        session.conf.unset("spark.sql.files.openCostInBytes")
    assert got["row_number"].tolist() == list(range(1, 5_001))
    assert got["seq"].tolist() == list(range(5_000))[::-1]


def test_the_ranking_on_spark_is_the_ranking_on_one_machine(pipeline_home, spark, monkeypatch):
    """Over several partitions (of about 1,000 members here): the percentiles span them all."""
    from ranking import rank, spark_rank
    from ranking.spark_rank import rank_members_spark

    monkeypatch.setattr(spark_rank, "MEMBERS_PER_PARTITION", 1_000)

    single = rank.rank_members(pipeline_home)
    one = pd.read_parquet(single.path)
    started = time.perf_counter()
    run = rank_members_spark(pipeline_home, spark)
    print(f"\nSpark ranking of {len(one)} members: {time.perf_counter() - started:.1f} s "
          f"(one machine {sum(single.timings.values()):.1f} s)")
    assert run.path == single.path  # where the member page reads it
    other = pd.read_parquet(run.path)
    assert_same(one, other, "ranking")
    assert other["status"].eq("ranked").sum() > 1000 and other["status"].eq("not_enough_data").any()
    assert other["action_1"].notna().sum() > 100  # the actions were followed on the executors
    assert run.ranked == single.ranked and run.model_version == single.model_version
    assert not any((pipeline_home.clean.parent / "spark-staging").glob("*"))


def test_both_ranking_doors_refuse_a_date_after_the_data_alike(pipeline_home, spark):
    """One precondition check (ranking.rank.ranking_plan) for both doors: the same refusal,
    and Spark refuses before computing any feature."""
    from datetime import timedelta

    from features import snapshot
    from ranking import rank
    from ranking.spark_rank import rank_members_spark

    later = snapshot.snapshot_date(pipeline_home.features) + timedelta(days=1)
    with pytest.raises(ValueError, match="after the latest data") as single:
        rank.rank_members(pipeline_home, as_of=later)
    jobs_before = len(spark.session.sparkContext.statusTracker().getJobIdsForGroup())
    with pytest.raises(ValueError, match="after the latest data") as on_spark:
        rank_members_spark(pipeline_home, spark, as_of=later)
    assert str(on_spark.value) == str(single.value)
    assert len(spark.session.sparkContext.statusTracker().getJobIdsForGroup()) == jobs_before
    with pytest.raises(RuntimeError, match="no champion member model"):
        rank.ranking_plan({}, later, None)


def test_window_percentiles_equal_percentile_within_with_ties_and_gaps(spark):
    """The window formula against pandas on ties, unknown scores, NaN and unknown groups."""
    from pyspark.sql import functions as F

    from ranking.rank import percentile_within
    from ranking.spark_rank import percentile_column

    rng = np.random.default_rng(9)
    n = 2_000
    frame = pd.DataFrame({"i": np.arange(n), "score": np.round(rng.normal(600, 40, n)).astype(float),
                          "group": rng.choice(["a", "b", "c", None], n, p=[0.5, 0.3, 0.15, 0.05])})
    frame.loc[rng.random(n) < 0.05, "score"] = np.nan
    expected = percentile_within(frame["score"], frame["group"])
    got = (spark.session.createDataFrame(frame)
           .select("i", percentile_column(F.col("score"), F.col("group")).alias("pct"))
           .toPandas().sort_values("i")["pct"].to_numpy(dtype=float))
    np.testing.assert_array_equal(np.isnan(got), expected.isna().to_numpy())
    np.testing.assert_array_equal(got[~np.isnan(got)], expected.dropna().to_numpy())


def _cli(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COOPSCORE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "coopscore.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_refuses_combinations_spark_does_not_run(tmp_path):
    """A lender's own loan-book model is scored on one machine; the CLI says so and what to use."""
    (tmp_path / "book.csv").write_text("loan_id,amount\n1,5\n")
    done = _cli(tmp_path, "score", "--engine", "spark", "--model", "book", "--input",
                str(tmp_path / "book.csv"), "--output", str(tmp_path / "out.csv"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--model" in done.stdout and "Drop --engine spark" in done.stdout, done.stdout
    assert not (tmp_path / "out.csv").exists()
    done = _cli(tmp_path, "rank", "--spark-master", "local[2]")
    assert done.returncode == 1 and "--spark-master needs --engine spark" in done.stdout, done.stdout
    done = _cli(tmp_path, "score", "--engine", "flink", "--input", "a.csv", "--output", "b.csv")
    assert done.returncode == 1 and "duckdb, spark" in done.stdout, done.stdout
    done = _cli(tmp_path, "rank", "--engine", "spark")  # nothing built yet: advice, no stack trace
    assert done.returncode == 1 and "coopscore features --engine spark" in done.stdout, done.stdout
