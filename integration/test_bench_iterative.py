"""`torswitch bench iterative` end to end on the session's testbed, briefly: a tiny Parquet dataset,
K=2, all three configurations, the pyarrow job from c1.

Times are printed by the benchmark, never asserted here (the machine is shared); this checks the
measurement itself: the report's shape, that every configuration computed the same centres,
that (a) read through the uplink, that the hinted configuration (c) moved no DataNode bytes
during its iterations, and that (b)'s second iteration moved none either.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from torswitch.bench import iterative as bench
from torswitch.testbed.handle import Testbed

DATASET_MB = 8


@pytest.fixture(scope="module")
def report(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not testbed.engine_enabled:
        pytest.skip("the session's testbed runs without the engine ($TORSWITCH_TEST_ENGINE=0)")
    out = tmp_path_factory.mktemp("iterative")
    args = argparse.Namespace(
        engine="pyarrow", iterations=2, dataset_mb=DATASET_MB, uplink_rate=None,
        instance=testbed.instance, keep=True, configs="abc", clusters=4,
        results_dir=str(out), hadoop_conf=None, agent=None, directory=None, rack="/rack-a")
    result = bench.run(args)
    testbed.wait_engine()  # the engine is back for the tests after this module
    return result


def test_report_shape(report: Any) -> None:
    rows = report.rows
    assert [(r[0][:3], r[1]) for r in rows] == [
        ("(a)", 1), ("(a)", 2), ("(b)", 1), ("(b)", 2), ("(c)", 1), ("(c)", 2)]
    f = report.figures
    for key in ("a_iter1_s", "b_over_a_iter1_speedup_ratio", "b_over_a_iters2_k_speedup_ratio",
                "b_vs_a_iters2_k_uplink_saving_ratio", "c_over_a_iter1_speedup_ratio",
                "c_hint_s", "dataset_bytes"):
        assert isinstance(f[key], (int, float)), key
    assert f["centres_agree"] is True
    assert set(json.loads(report.to_json())["targets_met"]) == {
        "b_over_a_iters2_k_speedup_ratio >= 3", "b_vs_a_iters2_k_uplink_saving_ratio >= 0.95",
        "c_over_a_iter1_speedup_ratio >= 2"}
    results = Path(f["results_dir"])
    doc = json.loads((results / "result.json").read_text())
    assert len(doc["iterations"]) == 6
    assert pq.read_table(results / "iterations.parquet").num_rows == 6
    assert (results / "iterative.png").stat().st_size > 0


def test_counters_are_consistent(report: Any) -> None:
    doc = json.loads((Path(report.figures["results_dir"]) / "result.json").read_text())
    recs = {(r["config"], r["iteration"]): r for r in doc["iterations"]}
    size = report.figures["dataset_bytes"]
    # (a) reads the coordinate columns (4 of 5) of every file over the uplink, every time.
    for i in (1, 2):
        a = recs[("a", i)]
        assert a["datanode_bytes"] >= 0.7 * size
        assert a["uplink_rx_bytes"] >= 0.7 * size
        assert a["hits"] is None
    # The hinted run was served from the cache: the DataNodes were not read.
    for i in (1, 2):
        assert recs[("c", i)]["datanode_bytes"] == 0
        assert recs[("c", i)]["byte_hit_ratio"] == 1.0
    assert report.figures["c_hint_datanode_bytes"] > 0


def test_b_second_iteration_moves_no_datanode_bytes(report: Any) -> None:
    doc = json.loads((Path(report.figures["results_dir"]) / "result.json").read_text())
    second = next(r for r in doc["iterations"] if r["config"] == "b" and r["iteration"] == 2)
    assert second["datanode_bytes"] == 0
