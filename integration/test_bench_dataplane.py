"""`torswitch bench dataplane` end to end, briefly: the runs complete and count what they should.

Rates are printed by the benchmark, never asserted here (the machine is shared); this checks the
measurement itself: every mode moved frames, L2 switching found every destination (no floods),
steering took exactly the HDFS share of the replayed frames.
"""

from __future__ import annotations

import argparse
import os
import subprocess

from torswitch.bench import dataplane as bench


def test_bench_dataplane_measures_all_modes() -> None:
    report = bench.run(argparse.Namespace(seconds=0.2, repeat=1, lcore=0, binary=None))
    figures = report.figures
    for key in ("bare_forwarding_mpps", "l2_switching_mpps", "hdfs_steering_mpps",
                "l2_over_bare_ratio", "steering_over_bare_ratio"):
        assert figures[key] > 0, key
    rows = {row[0]: row for row in report.rows}
    assert rows["L2 switching"][5] == 0 and rows["L2 + HDFS steering"][5] == 0, "floods"
    assert rows["L2 switching"][4] == 0
    assert abs(figures["hdfs_steered_frames_ratio"] - 1 / bench.STEER_EVERY) < 0.01
    assert "target l2_switching_mpps >= 14.88" in report.to_table()
    # Nothing is left running.
    own = f"tsw-dp-bench-{os.getpid()}"
    left = subprocess.run(["pgrep", "-f", own], check=False, capture_output=True)
    assert left.returncode == 1, left.stdout
