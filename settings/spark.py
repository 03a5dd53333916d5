"""The Spark session coopscore opens, configured one way for every part that runs on Spark
(ingest: data_contracts.spark_ingest; features: features.spark_engine).

The master: the URL given, else Spark's usual settings (`spark.master` from `spark-submit
--master`, `SPARK_MASTER`/`MASTER` in the environment, `conf/spark-defaults.conf`), else `local[*]`.
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _master(master: str | None) -> str | None:
    """The master URL asked for, else the environment's, else None (Spark's own defaults)."""
    return master or os.environ.get("SPARK_MASTER") or os.environ.get("MASTER")


def start_session(master: str | None = None, shuffle_partitions: int | None = None):
    """A Spark session (created, or the running one) as coopscore uses it: time zone UTC, nanosecond
    Parquet timestamps read as longs (the contracts' tables hold them; callers turn them back),
    Arrow between pandas and the JVM (the spine in, feature rows out: row-by-row pickling of 10^6
    rows takes minutes), no console progress. Raises RuntimeError when PySpark is not installed."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - the extra is part of `make install`
        raise RuntimeError("the Spark engine needs PySpark: install the project with its 'spark' "
                           "extra (`make install` does), and Java 17 or newer") from None
    # Executors that run coopscore's Python (ingest's mapInArrow) need its environment: unless
    # PYSPARK_PYTHON names one (on a cluster: an interpreter with coopscore installed), the
    # interpreter running this process, which is right for a local master.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("coopscore")
    url = _master(master)
    if url:  # otherwise Spark's own: spark-submit --master, spark-defaults.conf, else local[*]
        builder = builder.master(url)
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.legacy.parquet.nanosAsLong", "true")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.showConsoleProgress", "false"))
    if shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def staging_folder(data_dir: Path) -> Iterator[Path]:
    """A fresh folder, `data_dir/spark-staging/<random>`, for Spark's executors to write Parquet
    into and this process to read back; removed afterwards, whether the job finished or not.
    `data_dir` is the folder of the accepted tables' folder (`Paths.clean.parent`): storage the
    executors already reach on a cluster. Parquet rather than `toPandas`, which gathers every row
    in the driver's JVM first (at 200,000 subjects that failed in Spark's 1 GiB local heap)."""
    folder = Path(data_dir) / "spark-staging" / uuid.uuid4().hex
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
