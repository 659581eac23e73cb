"""`torswitch bench memcached` end to end, briefly: a real MemRack and real pcap runs.

Speed is printed by the benchmark, never asserted here (the machine is shared); this checks the
measurement: every figure is there and sane, the cache-hit configuration really was answered by
the switch's cache (its hits counter grew by one per get), the pcap cache-hit run filled the
cache and hit, and nothing is left running afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
from pathlib import Path

from torswitch.bench import memcached as bench
from torswitch.testbed import netns


def test_bench_memcached_short_run(tmp_path: Path) -> None:
    args = argparse.Namespace(rate=200.0, requests=50, value_size=32, servers=3, seconds=0.3,
                              repeat=1, lcore=1, binary=None, parts="latency,capacity",
                              out=tmp_path / "out")
    report = bench.run(args)
    figures = report.figures
    for config, _ in bench.CONFIGS:
        for stat in bench.STATS:
            value = figures[f"{config}_{stat}_us"]
            assert 0 < value < 1_000_000 and math.isfinite(value), (config, stat, value)
            if config != "direct":
                assert figures[f"{config}_{stat}_over_direct_ratio"] > 0
        assert figures[f"{config}_min_us"] <= figures[f"{config}_avg_us"] <= (
            figures[f"{config}_max_us"])
        assert figures[f"{config}_values"] + figures[f"{config}_lost"] == args.requests
        assert figures[f"{config}_misses"] == 0, f"{config}: a get found no value"
    for key in ("nutcracker_avg_over_direct_ratio", "redirect_avg_over_direct_ratio",
                "hit_over_direct_latency_ratio", "bare_forwarding_mpps", "redirect_mpps",
                "cache_hit_mpps", "redirect_over_bare_ratio", "cache_hit_over_bare_ratio",
                "cache_hits_per_s"):
        assert figures[key] > 0, key
    # The switch answered every get of the hit configuration, warm-up rounds included.
    assert figures["hit_counter_delta"] == args.requests + bench.WARMUP_ROUNDS
    assert figures["cache_hit_verified_ratio"] == 1.0
    # The pcap run: nearly every get a hit, every redirected get forwarded to a server.
    assert figures["cache_hit_ratio"] > 0.99
    assert figures["redirect_forwarded_ratio"] > 0.99
    doc = json.loads((tmp_path / "out/result.json").read_text())
    assert doc["figures"]["redirect_mpps"] == figures["redirect_mpps"]
    assert set(doc["targets_met"]) == set(report.target_results())
    # Nothing is left running: no namespace of the bench's rack, no pcap data plane.
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(bench.RACK_PREFIX)]
    own = f"tsw-dp-bench-{os.getpid()}"
    left = subprocess.run(["pgrep", "-f", own], check=False, capture_output=True)
    assert left.returncode == 1, left.stdout
