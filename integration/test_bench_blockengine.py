"""`torswitch bench blockengine` on the session testbed: the report names its figures with
units, both configurations were measured, and the hit moved no DataNode bytes."""

from __future__ import annotations

import json
import subprocess
import sys

from torswitch.testbed.handle import Testbed


def test_bench_blockengine_reports_both_paths(testbed: Testbed) -> None:
    testbed.wait_engine(True)
    out = subprocess.run(
        [sys.executable, "-m", "torswitch", "bench", "blockengine", "--json",
         "--instance", testbed.instance, "--reads", "2", "--rounds", "1"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    figures = json.loads(out.stdout)
    for key in ("direct_throughput_mb_per_s", "hit_throughput_mb_per_s", "direct_ttfb_ms",
                "hit_ttfb_ms", "hit_over_direct_throughput_ratio", "hit_over_direct_ttfb_ratio"):
        assert figures[key] > 0, key
    assert figures["block_bytes"] == testbed.state.options["block_size"]
    assert set(figures["targets_met"]) == {"hit_over_direct_throughput_ratio >= 1.5",
                                           "hit_over_direct_ttfb_ratio <= 0.5"}
    assert testbed.engine_status()["interception"]["installed"]
