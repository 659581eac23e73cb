"""torswitch.testbed.dataset: the generated files of `testbed load` (generation only; the
integration tests write and read them through HDFS)."""

from __future__ import annotations

import io

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from torswitch.testbed import dataset
from torswitch.testbed.dataset import LoadSpec
from torswitch.testbed.errors import BadValue


def test_files_are_named_by_kind_and_index() -> None:
    spec = LoadSpec(directory="/d/x", raw_files=2, raw_size=10, parquet_files=1, parquet_size=4000)
    assert [(f.path, f.kind, f.index, f.size) for f in spec.files()] == [
        ("/d/x/raw-00000.bin", "raw", 0, 10),
        ("/d/x/raw-00001.bin", "raw", 1, 10),
        ("/d/x/points-00000.parquet", "parquet", 0, 4000),
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "nothing to write"),
        ({"raw_files": -1}, "negative"),
        ({"raw_files": 1, "raw_size": 0}, "--raw-size"),
        ({"parquet_files": 1, "parquet_size": 10}, "at least 40 bytes"),
        ({"raw_files": 1, "directory": "data"}, "absolute"),
        ({"raw_files": 1, "directory": "/a/../b"}, "absolute"),
        ({"raw_files": 1, "directory": "/a//b"}, "absolute"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(BadValue, match=match):
        LoadSpec(**kwargs).validate()  # type: ignore[arg-type]


def test_raw_content_is_deterministic_and_chunking_invariant() -> None:
    size = (3 << 20) + 17
    whole = dataset.raw_bytes(5, 2, size)
    assert len(whole) == size
    assert b"".join(dataset.raw_chunks(5, 2, size, chunk=4096)) == whole
    assert dataset.raw_bytes(5, 2, size) == whole
    assert dataset.raw_bytes(6, 2, size) != whole
    assert dataset.raw_bytes(5, 3, size) != whole


def test_points_table() -> None:
    table = dataset.points_table(1, 2, 1000)
    assert table.column_names == ["id", *dataset.POINT_COLUMNS]
    assert table.column("id").to_pylist() == list(range(2000, 3000))
    for name in dataset.POINT_COLUMNS:
        col = table.column(name)
        assert pc.min(col).as_py() >= 0.0 and pc.max(col).as_py() < 1.0
        assert pc.stddev(col).as_py() == pytest.approx(0.2887, abs=0.03)  # uniform [0, 1)
    assert table.equals(dataset.points_table(1, 2, 1000))
    assert not table.equals(dataset.points_table(2, 2, 1000))


def test_parquet_size_and_row_groups() -> None:
    block = 1 << 20
    blob = dataset.parquet_bytes(3, 0, 3 << 20, block)
    assert abs(len(blob) - (3 << 20)) < (3 << 20) * 0.05
    meta = pq.ParquetFile(io.BytesIO(blob)).metadata
    assert meta.num_rows == dataset.points_rows(3 << 20)
    assert meta.num_row_groups >= 3
    assert all(meta.row_group(i).total_byte_size <= block for i in range(meta.num_row_groups))
    assert pq.read_table(io.BytesIO(blob)).equals(
        dataset.points_table(3, 0, dataset.points_rows(3 << 20))
    )
