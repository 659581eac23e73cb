"""`torswitch bench directory` runs end to end on a small load (figures are reported, not judged)."""

from __future__ import annotations

import argparse
import json

from torswitch.bench import directory


def test_small_run() -> None:
    args = argparse.Namespace(hints=50, concurrency=8, blocks=2, tors=2)
    report = directory.run(args)
    figures = json.loads(report.to_json())
    for k in ("hint_seq_p50_us", "hint_seq_p99_us", "hint_conc_p50_us", "hints_per_s"):
        assert figures[k] > 0, k
    assert figures["hint_seq_p99_us"] >= figures["hint_seq_p50_us"]
    assert figures["plans"] == 50 + 50 + 50  # warm-up, sequential, concurrent: all kept
    assert "in flight" in report.to_table()
