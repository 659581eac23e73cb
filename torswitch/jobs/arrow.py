"""The light k-means job: Parquet column chunks read through hdfs-native, math in numpy.

Every iteration lists the input directory, opens each ``*.parquet`` file with hdfs-native
(one positional read for the footer, then one per column chunk: exactly the ranged
READ_BLOCKs a Parquet reader sends through a ToR) and reads the coordinate columns one row
group at a time, so memory stays at one row group whatever the dataset size. Nothing is kept
between iterations but the centres.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np

from torswitch.jobs import kmeans

COLUMNS: tuple[str, ...] = ("x0", "x1", "x2", "x3")


def parquet_files(client: Any, path: str) -> list[str]:
    """The ``*.parquet`` files of directory `path` (or `path` itself, if it is a file), sorted
    so every iteration and every run visits them in the same order."""
    info = client.get_file_info(path)
    if not info.isdir:
        return [path]
    names = [s.path for s in client.list_status(path) if not s.isdir]
    return sorted(
        posixpath.join(path, posixpath.basename(n)) for n in names if n.endswith(".parquet")
    )


class ArrowKMeans:
    """k-means over the Parquet files under `path`, read with hdfs-native at every iteration.

    `client` is an ``hdfs_native.Client`` (None: one from $HADOOP_CONF_DIR). `k` centres,
    initial positions from `seed`.
    """

    def __init__(self, path: str, k: int = 8, seed: int = 0, client: Any = None) -> None:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        self._pq = pq  # imported here, so the first iteration's time is the iteration's alone
        if client is None:
            from hdfs_native import Client

            client = Client()
        self.client = client
        self.path = path
        self.centres = kmeans.initial_centres(k, len(COLUMNS), seed)
        self.rows = 0

    def iterate(self) -> kmeans.Partial:
        """One iteration: read every file's coordinate columns, move the centres. Returns the
        totals (counts, sse) of the assignment step. Raises FileNotFoundError if the input
        has no Parquet file."""
        files = parquet_files(self.client, self.path)
        if not files:
            raise FileNotFoundError(f"no *.parquet file under {self.path}")
        k, d = self.centres.shape
        total = kmeans.Partial.zero(k, d)
        for name in files:
            with self.client.read(name) as reader:
                pf = self._pq.ParquetFile(reader)
                for group in range(pf.num_row_groups):
                    table = pf.read_row_group(group, columns=list(COLUMNS))
                    points = np.column_stack(
                        [table.column(c).to_numpy() for c in COLUMNS]
                    ).astype(np.float64, copy=False)
                    total = kmeans.merge(total, kmeans.partial_sums(points, self.centres))
        self.centres = kmeans.update(self.centres, total)
        self.rows = int(total.counts.sum())
        return total

    def close(self) -> None:
        pass
