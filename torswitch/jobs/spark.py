"""The Spark k-means job: pyspark in local mode, reading ``hdfs://`` at every iteration.

Written as a plain loop of DataFrame actions, not with ``pyspark.ml.clustering.KMeans``: that
estimator persists its input when it is not already persisted, so it would read HDFS once
(docs/hadoop-testbed.md, section 4.1). Here every iteration builds a fresh
``spark.read.parquet(url)``, so Spark re-lists the files and re-reads their column chunks
through the real Java DFSClient (Hadoop 3.5.0, bundled with pyspark); nothing is cached or
persisted. The assignment is column expressions (k is small, the centres are literals), the
update a ``groupBy(cluster)`` whose k rows are collected to the driver and fed to the same
`torswitch.jobs.kmeans.update` as the pyarrow job.

Local mode on 2 cores with a small heap (the machine is shared): ``local[2]``, 1 GiB driver
memory, no UI, bound to loopback inside the namespace.
"""

from __future__ import annotations

import functools
import operator
import os
from pathlib import Path
from typing import Any

import numpy as np

from torswitch.jobs import kmeans
from torswitch.jobs.arrow import COLUMNS

DRIVER_MEMORY = "1g"
MASTER = "local[2]"


def default_fs() -> str | None:
    """fs.defaultFS of $HADOOP_CONF_DIR/core-site.xml, if there is one."""
    conf = os.environ.get("HADOOP_CONF_DIR")
    if not conf:
        return None
    from torswitch.testbed.config import read_properties

    path = Path(conf) / "core-site.xml"
    return read_properties(path).get("fs.defaultFS") if path.is_file() else None


def session(app: str = "torswitch-kmeans") -> Any:
    """A local SparkSession for the job (its Hadoop client reads $HADOOP_CONF_DIR)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(MASTER)
        .appName(app)
        .config("spark.driver.memory", DRIVER_MEMORY)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
    )
    fs = default_fs()
    if fs:
        builder = builder.config("spark.hadoop.fs.defaultFS", fs)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class SparkKMeans:
    """k-means over the Parquet files under `path` (an HDFS path or URL) with Spark."""

    def __init__(self, path: str, k: int = 8, seed: int = 0, spark: Any = None) -> None:
        self.spark = spark if spark is not None else session()
        fs = default_fs()
        self.url = path if "://" in path or not fs else fs.rstrip("/") + path
        self.centres = kmeans.initial_centres(k, len(COLUMNS), seed)
        self.rows = 0

    def iterate(self) -> kmeans.Partial:
        """One iteration: a fresh read of the input, assignment, per-cluster sums collected."""
        from pyspark.sql import functions as F

        df = self.spark.read.parquet(self.url)  # fresh every time: Spark re-reads HDFS
        k, d = self.centres.shape
        dists = [
            functools.reduce(operator.add, [
                (F.col(c) - F.lit(float(self.centres[i, j]))) ** 2
                for j, c in enumerate(COLUMNS)
            ])
            for i in range(k)
        ]
        nearest = F.least(*dists)
        cluster = F.when(dists[0] == nearest, 0)  # ties: the lowest index, as in numpy
        for i in range(1, k):
            cluster = cluster.when(dists[i] == nearest, i)
        rows = (
            df.select(*COLUMNS, nearest.alias("_d"), cluster.alias("_c"))
            .groupBy("_c")
            .agg(*(F.sum(c).alias(c) for c in COLUMNS), F.count("*").alias("_n"),
                 F.sum("_d").alias("_sse"))
            .collect()
        )
        total = kmeans.Partial.zero(k, d)
        for row in rows:
            i = int(row["_c"])
            total.sums[i] = [float(row[c]) for c in COLUMNS]
            total.counts[i] = int(row["_n"])
            total.sse += float(row["_sse"])
        if not rows:
            raise FileNotFoundError(f"no rows under {self.url}")
        self.centres = kmeans.update(self.centres, total)
        self.rows = int(np.sum(total.counts))
        return total

    def close(self) -> None:
        self.spark.stop()
