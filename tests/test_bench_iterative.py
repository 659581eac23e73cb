"""The pure parts of `torswitch bench iterative` and its jobs: the k-means step, the per-iteration
deltas, the summary math, the report and the result files. No testbed, no HDFS.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from torswitch.bench import iterative as it
from torswitch.jobs import kmeans, worker


def _naive_step(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Reference: nearest centre by explicit distances, then the means."""
    d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    labels = d.argmin(axis=1)
    out = centres.copy()
    for i in range(len(centres)):
        if (labels == i).any():
            out[i] = points[labels == i].mean(axis=0)
    return out


def test_step_matches_naive_reference() -> None:
    rng = np.random.default_rng(7)
    points = rng.random((5000, 4))
    centres = kmeans.initial_centres(8, 4, seed=3)
    new, total = kmeans.step(points, centres)
    assert np.allclose(new, _naive_step(points, centres), atol=1e-12)
    assert total.counts.sum() == 5000
    labels, dist = kmeans.assign(points, centres)
    assert math.isclose(total.sse, float(((points - centres[labels]) ** 2).sum()), rel_tol=1e-9)
    assert np.all(dist >= 0)


def test_chunked_partials_equal_one_pass() -> None:
    rng = np.random.default_rng(1)
    points = rng.random((3001, 4))
    centres = kmeans.initial_centres(5, 4)
    whole = kmeans.partial_sums(points, centres)
    merged = kmeans.Partial.zero(5, 4)
    for chunk in np.array_split(points, 7):
        merged = kmeans.merge(merged, kmeans.partial_sums(chunk, centres))
    assert np.array_equal(whole.counts, merged.counts)
    assert np.allclose(whole.sums, merged.sums)
    assert np.allclose(kmeans.update(centres, whole), kmeans.update(centres, merged))


def test_empty_cluster_keeps_its_centre_and_no_nan() -> None:
    points = np.array([[0.0, 0.0], [0.1, 0.0]])
    centres = np.array([[0.0, 0.0], [10.0, 10.0]])
    new, total = kmeans.step(points, centres)
    assert total.counts.tolist() == [2, 0]
    assert new[1].tolist() == [10.0, 10.0]
    assert np.allclose(new[0], [0.05, 0.0])
    assert not np.isnan(new).any()
    empty = kmeans.partial_sums(np.zeros((0, 2)), centres)
    assert empty.counts.sum() == 0 and empty.sse == 0.0


def test_ties_go_to_the_lowest_index() -> None:
    labels, _ = kmeans.assign(np.array([[0.5]]), np.array([[0.0], [1.0]]))
    assert labels.tolist() == [0]


def test_initial_centres_are_deterministic_and_checked() -> None:
    assert np.array_equal(kmeans.initial_centres(8, 4, 0), kmeans.initial_centres(8, 4, 0))
    assert not np.array_equal(kmeans.initial_centres(8, 4, 0), kmeans.initial_centres(8, 4, 1))
    with pytest.raises(ValueError):
        kmeans.initial_centres(0, 4)
    with pytest.raises(ValueError):
        kmeans.partial_sums(np.zeros((3, 2)), np.zeros((2, 4)))


class _FakeJob:
    """A job whose iterations are k-means steps over points held in memory."""

    def __init__(self) -> None:
        self.points = np.random.default_rng(0).random((100, 4))
        self.centres = kmeans.initial_centres(3, 4)

    def iterate(self) -> kmeans.Partial:
        if len(self.points) == 0:
            raise FileNotFoundError("no input")
        self.centres, total = kmeans.step(self.points, self.centres)
        return total


def test_worker_protocol() -> None:
    job = _FakeJob()
    out = io.StringIO()
    worker.serve(job, io.StringIO("run\nbogus\nrun\nquit\nrun\n"), out, setup_s=0.5)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"ready": True, "setup_s": 0.5}
    assert [m.get("iteration") for m in lines[1:]] == [1, None, 2]
    assert "error" in lines[2]
    assert lines[3]["rows"] == 100 and lines[3]["seconds"] >= 0
    assert np.allclose(lines[3]["centres"], job.centres)
    job.points = np.zeros((0, 4))
    out = io.StringIO()
    worker.serve(job, io.StringIO("run\n"), out, setup_s=0.0)
    assert "FileNotFoundError" in json.loads(out.getvalue().splitlines()[1])["error"]


# ---- bench: records and summary ---------------------------------------------------------------


def _c(up: int, dn: int, cache: int | None = None, upstream: int | None = None,
       hits: int | None = None, misses: int | None = None) -> it.Counters:
    return it.Counters(uplink_rx_bytes=up, uplink_tx_bytes=up // 100, datanode_bytes=dn,
                       datanode_ops=dn // 1000, hits=hits, misses=misses,
                       bytes_from_cache=cache, bytes_from_upstream=upstream)


def test_iteration_record_deltas_and_ratios() -> None:
    rec = it.iteration_record("b", 2, 1.5, _c(1000, 5000, 10, 90, 1, 9),
                              _c(1100, 5000, 410, 190, 5, 10))
    assert rec["label"] == "ToR cache" and rec["iteration"] == 2
    assert rec["uplink_rx_bytes"] == 100 and rec["uplink_tx_bytes"] == 1
    assert rec["uplink_bytes"] == 101
    assert rec["datanode_bytes"] == 0
    assert rec["byte_hit_ratio"] == pytest.approx(400 / 500)
    assert rec["op_hit_ratio"] == pytest.approx(4 / 5)
    no_engine = it.iteration_record("a", 1, 2.0, _c(0, 0), _c(10, 20))
    assert no_engine["byte_hit_ratio"] is None and no_engine["hits"] is None
    from_engine = it.iteration_record("b", 1, 1.0, it.Counters(bytes_from_cache=0,
                                                               bytes_from_upstream=0),
                                      it.Counters(bytes_from_cache=5, bytes_from_upstream=7),
                                      uplink_from_engine=True)
    assert from_engine["uplink_bytes"] == 7


def _rec(cfg: str, i: int, s: float, up: int, cache: int | None = None,
         upstream: int | None = None) -> dict:
    return {"config": cfg, "label": it.CONFIGS[cfg], "iteration": i, "seconds": s,
            "uplink_bytes": up, "datanode_bytes": up, "bytes_from_cache": cache,
            "bytes_from_upstream": upstream,
            "byte_hit_ratio": None if cache is None else cache / max(1, cache + upstream),
            "op_hit_ratio": None}


RECORDS = [
    _rec("a", 1, 10.0, 1000), _rec("a", 2, 8.0, 1000), _rec("a", 3, 8.0, 1000),
    _rec("b", 1, 9.0, 1000, 0, 1000), _rec("b", 2, 2.0, 10, 990, 10),
    _rec("b", 3, 2.0, 30, 970, 30),
    _rec("c", 1, 2.5, 0, 1000, 0), _rec("c", 2, 2.0, 0, 1000, 0), _rec("c", 3, 2.0, 0, 1000, 0),
]


def test_summary_math() -> None:
    f = it.summarize(RECORDS)
    assert f["a_iter1_s"] == 10.0 and f["a_iters2_k_s"] == 16.0 and f["a_iters2_k_mean_s"] == 8.0
    assert f["b_over_a_iter1_speedup_ratio"] == pytest.approx(10 / 9)
    assert f["b_over_a_iters2_k_speedup_ratio"] == pytest.approx(16 / 4)
    assert f["b_vs_a_iters2_k_uplink_saving_ratio"] == pytest.approx(1 - 40 / 2000)
    assert f["b_vs_a_iter1_uplink_saving_ratio"] == pytest.approx(0.0)
    assert f["c_over_a_iter1_speedup_ratio"] == pytest.approx(4.0)
    assert f["c_vs_a_iter1_uplink_saving_ratio"] == pytest.approx(1.0)
    assert f["b_iters2_k_byte_hit_ratio"] == pytest.approx(1960 / 2000)
    assert f["a_iters2_k_byte_hit_ratio"] is None
    # Order of the records does not matter.
    assert it.summarize(list(reversed(RECORDS))) == f


def test_summary_with_one_iteration_or_without_baseline() -> None:
    one = it.summarize([r for r in RECORDS if r["iteration"] == 1])
    assert one["b_over_a_iters2_k_speedup_ratio"] is None
    assert one["b_vs_a_iters2_k_uplink_saving_ratio"] is None
    assert one["c_over_a_iter1_speedup_ratio"] == pytest.approx(4.0)
    no_a = it.summarize([r for r in RECORDS if r["config"] != "a"])
    assert not any(k.startswith("b_over_a") for k in no_a)


def test_targets_reported_not_asserted() -> None:
    figures = it.summarize(RECORDS)
    report = it.make_report(RECORDS, figures)
    results = report.target_results()
    assert results == {"b_over_a_iters2_k_speedup_ratio >= 3": True,
                       "b_vs_a_iters2_k_uplink_saving_ratio >= 0.95": True,
                       "c_over_a_iter1_speedup_ratio >= 2": True}
    table = report.to_table()
    assert "(b) ToR cache" in table and "iterations 2..K: 4.00x faster" in table
    worse = [dict(r, seconds=r["seconds"] * (3 if r["config"] == "b" else 1)) for r in RECORDS]
    assert "NOT met" in it.make_report(worse, it.summarize(worse)).to_table()


def test_centres_agree() -> None:
    c = [[0.1, 0.2], [0.3, 0.4]]
    assert it.centres_agree({"a": c, "b": [row[:] for row in c]})
    assert not it.centres_agree({"a": c, "b": [[0.1, 0.2], [0.3, 0.41]]})


def test_dataset_layout() -> None:
    assert it.dataset_layout(256) == (8, 32 << 20)
    assert it.dataset_layout(16) == (2, 8 << 20)
    files, size = it.dataset_layout(100)
    assert files == 4 and files * size <= 100 << 20
    with pytest.raises(ValueError):
        it.dataset_layout(0)


def test_result_files(tmp_path: Path) -> None:
    figures = it.summarize(RECORDS)
    report = it.make_report(RECORDS, figures)
    paths = it.write_results(tmp_path / "out", RECORDS, figures, report, {"title": "t"})
    doc = json.loads(paths["json"].read_text())
    assert doc["figures"]["b_over_a_iters2_k_speedup_ratio"] == pytest.approx(4.0)
    assert len(doc["iterations"]) == len(RECORDS) and doc["targets_met"]
    table = pq.read_table(paths["parquet"])
    assert table.num_rows == len(RECORDS)
    assert {"config", "iteration", "seconds", "uplink_bytes"} <= set(table.column_names)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
