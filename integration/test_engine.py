"""The ToR block engine on the real testbed: real clients on c1, real DataNodes, kernel-mode ToR.

Hadoop's FsShell and the hdfs-native client read through tor-a, where the ToR hands their
DataNode connections to the engine (torswitch run): every test runs twice, with the kernel-mode
ToR (bridge + nftables interception) and with the DPDK data plane (steering through a tap).

Scenarios (issue 5):
  - a first read is a miss, the second a hit with identical bytes, and on the hit no DataNode
    read counter moves; with every DataNode frozen (SIGSTOP) a cached file still reads;
  - random byte ranges read with hdfs-native are identical to the file;
  - 8 concurrent readers of one uncached block cause one DataNode read;
  - delete-and-recreate and append never return stale bytes;
  - a cache smaller than the data evicts and stays correct;
  - after an engine restart the cache still hits;
  - an engine killed mid-read: the client's own retry returns the right bytes;
  - an engine killed during inserts, restarted: reads are correct and nothing corrupt is found.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from torswitch.testbed.handle import Testbed

AGENT = "198.18.1.1:19867"
MIB = 1 << 20

RANGE_SNIPPET = """
import json, sys
from hdfs_native import Client
client = Client()
out = []
with client.read(sys.argv[1]) as f:
    for off, n in json.loads(sys.argv[2]):
        f.seek(off)
        out.append(f.read(n).hex())
print(json.dumps(out))
"""

CONCURRENT_SNIPPET = """
import hashlib, sys, threading
from hdfs_native import Client
digests = []
def one():
    with Client().read(sys.argv[1]) as f:
        digests.append(hashlib.sha256(f.read()).hexdigest())
threads = [threading.Thread(target=one) for _ in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(digests))
"""


def put(tb: Testbed, tmp: Path, path: str, data: bytes) -> None:
    local = tmp / hashlib.sha1(path.encode()).hexdigest()
    local.write_bytes(data)
    tb.hdfs("c1", "dfs", "-mkdir", "-p", os.path.dirname(path))
    tb.hdfs("c1", "dfs", "-put", "-f", str(local), path)


def cat(tb: Testbed, path: str, host: str = "c1", **kw: object) -> bytes:
    return tb.hdfs(host, "dfs", "-cat", path, **kw).stdout  # type: ignore[arg-type]


def stats(tb: Testbed) -> dict[str, int]:
    out = tb.run("c1", [sys.executable, "-m", "torswitch", "cache", "--agent", AGENT, "stats",
                        "--json"]).stdout
    return {k: int(v) if str(v).lstrip("-").isdigit() else v for k, v in json.loads(out).items()}


def reads_total(counters: dict[str, dict[str, int]]) -> tuple[int, int]:
    return (sum(c["ReadBlockOpNumOps"] for c in counters.values()),
            sum(c["BytesRead"] for c in counters.values()))


def evict_all(tb: Testbed) -> None:
    tb.run("c1", [sys.executable, "-m", "torswitch", "cache", "--agent", AGENT, "evict", "--all"])


@pytest.fixture(params=["kernel", "dpdk"])
def engine(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """A session testbed with its engine intercepting, once per ToR mode: the kernel bridge
    with nftables, and the DPDK data plane steering through its tap (restarted if a test left
    it down)."""
    tb: Testbed = request.getfixturevalue(f"{request.param}_tor_testbed")
    if not tb.engine_status().get("supervisor_running"):
        tb.start_engine()
    tb.wait_engine(True)
    yield tb


def test_miss_then_hit_leaves_datanodes_untouched(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    data = os.urandom(3 * (4 * MIB) + 12345)  # four blocks, the last partial
    put(tb, tmp_path, "/t/engine/hit.bin", data)
    before = stats(tb)
    assert cat(tb, "/t/engine/hit.bin") == data  # miss: relayed, and kept
    mid = stats(tb)
    assert mid["misses"] > before["misses"]
    assert mid["used_bytes"] >= len(data)
    counters = tb.settled_datanode_reads()
    assert cat(tb, "/t/engine/hit.bin") == data  # hit
    after = stats(tb)
    assert after["hits"] >= mid["hits"] + 4
    assert reads_total(tb.settled_datanode_reads()) == reads_total(counters)
    # hdfs-native too, and still no DataNode read
    proc = tb.python("c1", "import sys; from hdfs_native import Client\n"
                     "sys.stdout.buffer.write(Client().read(sys.argv[1]).read())",
                     "/t/engine/hit.bin")
    assert proc.stdout == data
    assert reads_total(tb.settled_datanode_reads()) == reads_total(counters)
    # with every DataNode frozen, the cached file still reads
    for dn in tb.datanodes:
        tb.stop_datanode(dn)
    try:
        assert cat(tb, "/t/engine/hit.bin", timeout=120) == data
    finally:
        for dn in tb.datanodes:
            tb.cont_datanode(dn)


def test_random_ranges(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    data = os.urandom(2 * (4 * MIB) + 777)
    put(tb, tmp_path, "/t/engine/ranges.bin", data)
    rng = random.Random(5)
    ranges = [(rng.randrange(len(data)), rng.randrange(1, 300_000)) for _ in range(25)]
    ranges += [(0, 1), (len(data) - 1, 1), (4 * MIB - 1, 2), (4 * MIB, 4 * MIB)]
    ranges = [(o, min(n, len(data) - o)) for o, n in ranges]
    for _round in range(2):  # cold, then from the cache
        out = json.loads(tb.python("c1", RANGE_SNIPPET, "/t/engine/ranges.bin",
                                   json.dumps(ranges)).stdout)
        assert [bytes.fromhex(h) for h in out] == [data[o:o + n] for o, n in ranges]


def test_concurrent_readers_cause_one_upstream_read(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    data = os.urandom(3 * MIB)  # one block
    put(tb, tmp_path, "/t/engine/one-block.bin", data)
    evict_all(tb)
    traces_before = sum(len(tb.client_traces(dn)) for dn in tb.datanodes)
    with tb.uplink(rate_bps=100_000_000):  # slow the fetch so the readers overlap
        out = tb.python("c1", CONCURRENT_SNIPPET, "/t/engine/one-block.bin", "8").stdout.decode().split()
    assert out == [hashlib.sha256(data).hexdigest()] * 8
    time.sleep(1.0)
    traces_after = sum(len(tb.client_traces(dn)) for dn in tb.datanodes)
    assert traces_after - traces_before == 1, "8 readers, one DataNode read"


def test_delete_recreate_and_append_never_stale(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    first = os.urandom(5 * MIB + 3)
    put(tb, tmp_path, "/t/engine/churn.bin", first)
    assert cat(tb, "/t/engine/churn.bin") == first
    assert cat(tb, "/t/engine/churn.bin") == first  # now cached
    tb.hdfs("c1", "dfs", "-rm", "-skipTrash", "/t/engine/churn.bin")
    second = os.urandom(5 * MIB + 3)  # same path, same length, new bytes
    put(tb, tmp_path, "/t/engine/churn.bin", second)
    assert cat(tb, "/t/engine/churn.bin") == second
    extra = os.urandom(MIB + 5)
    local = tmp_path / "extra.bin"
    local.write_bytes(extra)
    tb.hdfs("c1", "dfs", "-appendToFile", str(local), "/t/engine/churn.bin")
    assert cat(tb, "/t/engine/churn.bin") == second + extra
    assert cat(tb, "/t/engine/churn.bin") == second + extra


def test_small_cache_evicts_and_stays_correct(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    files = {f"/t/engine/evict-{i}.bin": os.urandom(4 * MIB) for i in range(6)}
    for path, data in files.items():
        put(tb, tmp_path, path, data)
    small = tmp_path / "small.yml"
    cache = Path(f"/dev/shm/torswitch-{tb.instance}-small")
    small.write_text(
        "torswitch: 1\nengine:\n  listen: 0.0.0.0:19866\n  agent_port: 19867\n"
        f"  cache_path: {cache}\n  cache_capacity: 10MiB\n"
        f"  hadoop_conf_dir: {tb.client_conf_dir}\n"
    )
    try:
        with tb.engine_as(f"{sys.executable} -m torswitch engine --config {small}"):
            tb.wait_engine(True)
            for _round in range(3):
                for path, data in files.items():
                    assert cat(tb, path) == data
            s = stats(tb)
            assert s["capacity_bytes"] == 10 * MIB and 0 < s["used_bytes"] <= 10 * MIB
            assert s["hits"] > 0 and s["misses"] > 0 and s["corrupt_segments"] == 0
    finally:
        subprocess.run(["rm", "-rf", str(cache)], check=False)


def test_engine_restart_keeps_hits(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    data = os.urandom(6 * MIB)
    put(tb, tmp_path, "/t/engine/restart.bin", data)
    assert cat(tb, "/t/engine/restart.bin") == data
    tb.restart_engine()
    counters = tb.settled_datanode_reads()
    assert cat(tb, "/t/engine/restart.bin") == data
    assert reads_total(tb.settled_datanode_reads()) == reads_total(counters)
    assert stats(tb)["hits"] >= 2


def _kill_during(tb: Testbed, path: str, delay_s: float) -> bytes:
    """Read `path` with FsShell on c1 while the engine is killed (-9) after `delay_s`."""
    result: dict[str, bytes] = {}

    def reader() -> None:
        result["data"] = cat(tb, path, timeout=300)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(delay_s)
    assert t.is_alive(), "the read ended before the kill: make it longer"
    tb.kill_engine(signal.SIGKILL)
    t.join(300)
    assert "data" in result, "the read did not finish"
    return result["data"]


def test_engine_killed_mid_read_client_retry_is_correct(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    data = os.urandom(24 * MIB)
    put(tb, tmp_path, "/t/engine/killed.bin", data)
    evict_all(tb)
    with tb.uplink(rate_bps=40_000_000):  # about 5 s of relaying: the kill lands mid-read
        assert _kill_during(tb, "/t/engine/killed.bin", 1.5) == data
    tb.wait_engine(True, timeout=60)


def test_kill_during_insert_then_restart_is_correct(engine: Testbed, tmp_path: Path) -> None:
    tb = engine
    data = os.urandom(24 * MIB)
    put(tb, tmp_path, "/t/engine/inserting.bin", data)
    evict_all(tb)
    with tb.uplink(rate_bps=40_000_000):  # about 5 s of relaying and inserting
        assert _kill_during(tb, "/t/engine/inserting.bin", 2.0) == data
    tb.wait_engine(True, timeout=60)
    assert cat(tb, "/t/engine/inserting.bin") == data
    assert cat(tb, "/t/engine/inserting.bin") == data
    s = stats(tb)
    assert s["corrupt_segments"] == 0
