"""`torswitch testbed load`: generate a dataset and write it into HDFS from a compute host.

Two kinds of file, both a pure function of (seed, kind, index), so a test or a benchmark can
regenerate the expected bytes locally instead of storing them:

* raw files ``raw-NNNNN.bin``: pseudo-random bytes, for byte-exact read checks;
* Parquet files ``points-NNNNN.parquet``: a points table (``id`` int64, ``x0``..``x3`` float64
  uniform in [0, 1)) for the iterative-job benchmarks. Uncompressed and without dictionary
  encoding, so a file's size is close to rows x 40 bytes and readers really move those bytes;
  row groups are no larger than the HDFS block size, as the benchmarks need.

The writing runs inside the compute host's namespace (``python -m torswitch.testbed.dataset``
under ``ip netns exec``) with hdfs-native as the HDFS client, so the bytes cross the ToR and
the shaped uplink like a job's output would. Its progress bar goes to the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torswitch.testbed.errors import BadValue

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

    from torswitch.testbed.handle import Testbed

CHUNK = 1 << 20  # bytes per write call, and per progress-bar step
POINT_COLUMNS = ("x0", "x1", "x2", "x3")
BYTES_PER_POINT = 8 * (1 + len(POINT_COLUMNS))  # id + coordinates, uncompressed
MAX_FILE_SIZE = 64 << 30


@dataclass(frozen=True)
class FileSpec:
    """One file to write: `path` in HDFS, `kind` raw or parquet, `index` within its kind,
    `size` in bytes (approximate for Parquet)."""

    path: str
    kind: str
    index: int
    size: int


@dataclass(frozen=True)
class LoadSpec:
    """What `load` writes: counts, sizes in bytes, the HDFS directory and the content seed."""

    directory: str = "/data"
    raw_files: int = 0
    raw_size: int = 64 << 20
    parquet_files: int = 0
    parquet_size: int = 64 << 20
    seed: int = 0
    overwrite: bool = False

    def validate(self) -> None:
        """Raise `BadValue` for negative counts, nothing to write, sizes out of range or a
        directory that is not an absolute, normalised HDFS path."""
        if self.raw_files < 0 or self.parquet_files < 0:
            raise BadValue("file counts must not be negative")
        if self.raw_files + self.parquet_files == 0:
            raise BadValue("nothing to write: give --raw-files and/or --parquet-files")
        for name, size in (("--raw-size", self.raw_size), ("--parquet-size", self.parquet_size)):
            if not 0 < size <= MAX_FILE_SIZE:
                raise BadValue(f"{name} must be between 1 byte and 64 GiB")
        if self.parquet_files and self.parquet_size < BYTES_PER_POINT:
            raise BadValue(f"--parquet-size must be at least {BYTES_PER_POINT} bytes (one row)")
        d = self.directory
        if not d.startswith("/") or posixpath.normpath(d) != d.rstrip("/") or "//" in d:
            raise BadValue(f"--dir {d!r}: must be an absolute HDFS path like /data")

    def files(self) -> list[FileSpec]:
        """The files of this spec, raw ones first."""
        base = self.directory.rstrip("/") or "/"
        out = [
            FileSpec(posixpath.join(base, f"raw-{i:05d}.bin"), "raw", i, self.raw_size)
            for i in range(self.raw_files)
        ]
        out += [
            FileSpec(
                posixpath.join(base, f"points-{i:05d}.parquet"), "parquet", i, self.parquet_size
            )
            for i in range(self.parquet_files)
        ]
        return out


def _rng(seed: int, kind: str, index: int) -> random.Random:
    return random.Random(f"torswitch-testbed-load:{seed}:{kind}:{index}")


def raw_chunks(seed: int, index: int, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The content of raw file `index` under `seed`, `size` bytes in pieces of `chunk`."""
    rng = _rng(seed, "raw", index)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def raw_bytes(seed: int, index: int, size: int) -> bytes:
    """The whole content of raw file `index` (for checks on small files)."""
    return b"".join(raw_chunks(seed, index, size))


def points_rows(size: int) -> int:
    """Rows of a points file of about `size` bytes (at least one)."""
    return max(1, size // BYTES_PER_POINT)


def points_table(seed: int, index: int, rows: int) -> pa.Table:
    """The points table of Parquet file `index` under `seed` (`rows` rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    rng = _rng(seed, "parquet", index)
    columns: dict[str, Any] = {"id": pa.array(range(index * rows, (index + 1) * rows), pa.int64())}
    for name in POINT_COLUMNS:
        bits = pa.Array.from_buffers(
            pa.uint64(), rows, [None, pa.py_buffer(rng.randbytes(8 * rows))]
        )
        # The top 53 bits as a float64 in [0, 1): exact, and never NaN or infinite.
        columns[name] = pc.divide(
            pc.cast(pc.shift_right(bits, pa.scalar(11, pa.uint64())), pa.float64()), float(1 << 53)
        )
    return pa.table(columns)


def parquet_bytes(seed: int, index: int, size: int, block_size: int) -> bytes:
    """Parquet file `index` of about `size` bytes, row groups at most `block_size` bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    rows = points_rows(size)
    sink = pa.BufferOutputStream()
    pq.write_table(
        points_table(seed, index, rows),
        sink,
        # 1/16 of headroom for page headers and definition levels, so that a row group never
        # exceeds a block and each one is read from a single DataNode.
        row_group_size=max(1, block_size * 15 // 16 // BYTES_PER_POINT),
        compression="NONE",
        use_dictionary=False,
    )
    return bytes(sink.getvalue().to_pybytes())


def load(tb: Testbed, host: str, spec: LoadSpec) -> int:
    """Write `spec`'s files from compute host `host` of testbed `tb`; returns the exit status.

    Raises `BadValue` for an invalid spec or a host that is not a compute host.
    """
    spec.validate()
    if host not in tb.clients:
        raise BadValue(f"--host {host!r}: load from a compute host ({', '.join(tb.clients)})")
    argv = [sys.executable, "-m", "torswitch.testbed.dataset", json.dumps(asdict(spec))]
    return tb.run(host, argv, check=False, capture=False, timeout=24 * 3600.0).returncode


def _client_block_size() -> int:
    """dfs.blocksize of the client configuration in $HADOOP_CONF_DIR (bytes)."""
    from torswitch.testbed.config import read_properties

    conf = Path(os.environ.get("HADOOP_CONF_DIR", ".")) / "hdfs-site.xml"
    return int(read_properties(conf).get("dfs.blocksize", str(128 << 20)))


def _write(spec: LoadSpec) -> int:
    """The in-namespace half of `load`: write every file with hdfs-native, with progress."""
    from tqdm import tqdm

    try:
        from hdfs_native import Client, WriteOptions
    except ImportError:
        print(
            "torswitch testbed load: needs hdfs-native (pip install -e '.[test]')", file=sys.stderr
        )
        return 1
    client = Client()
    files = spec.files()
    if not spec.overwrite:
        # Check every target before writing anything, so a refused load changes nothing.
        existing = [f.path for f in files if _exists(client, f.path)]
        if existing:
            print(
                f"torswitch testbed load: error: {len(existing)} file(s) exist, e.g. "
                f"{existing[0]}; use --overwrite to replace them",
                file=sys.stderr,
            )
            return 1
    block_size = _client_block_size()
    client.mkdirs(spec.directory, create_parent=True)
    total = sum(f.size for f in files)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"load {spec.directory}",
        disable=None,
    ) as bar:
        for f in files:
            if f.kind == "raw":
                chunks: Iterator[bytes] = raw_chunks(spec.seed, f.index, f.size)
            else:
                data = parquet_bytes(spec.seed, f.index, f.size, block_size)
                chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
                bar.total = (bar.total or 0) + len(data) - f.size  # Parquet size is approximate
            with client.create(f.path, WriteOptions(overwrite=spec.overwrite)) as out:
                for chunk in chunks:
                    out.write(chunk)
                    bar.update(len(chunk))
    print(
        f"wrote {len(files)} file(s), {total} bytes requested, into {spec.directory}",
        file=sys.stderr,
    )
    return 0


def _exists(client: Any, path: str) -> bool:
    try:
        client.get_file_info(path)
    except FileNotFoundError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the in-namespace writer: one argument, the LoadSpec as JSON."""
    parser = argparse.ArgumentParser(prog="python -m torswitch.testbed.dataset")
    parser.add_argument("spec", help="LoadSpec as JSON (written by `torswitch testbed load`)")
    args = parser.parse_args(argv)
    spec = LoadSpec(**json.loads(args.spec))
    spec.validate()
    return _write(spec)


if __name__ == "__main__":
    sys.exit(main())
