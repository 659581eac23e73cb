"""The block directory on the real testbed (issue 8, item 7).

`testbed up` runs the directory in the NameNode's namespace and the ToR's engine registers with
it as tor-a of /rack-a (testbed.directory). Covered, on the session's shared testbed, with every
client command run inside c1 and finding the directory through TORSWITCH_DIRECTORY alone:
* files written with Hadoop's FsShell from c1, hinted to /rack-a with `torswitch hint --wait`:
  the plan ends ready, and reading them from c1 with FsShell and with hdfs-native gives the
  bytes written while no DataNode read counter moves (every read is a hit on tor-a);
* Locate names tor-a (rack, agent address, complete) for each of their blocks;
* an all-or-nothing hint for more data than tor-a's cache holds is refused with
  RESOURCE_EXHAUSTED before any ToR is asked for anything;
* a directory restart loses its plans but Locate answers come back from tor-a's reports;
* bad requests through the CLI (unknown path, glob matching nothing, malformed glob, unknown
  rack, malformed rack, no path) exit non-zero with the status code and a clear message.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from torswitch.testbed import directory as blockdir
from torswitch.testbed import topology
from torswitch.testbed.handle import Testbed

pytestmark = pytest.mark.slow

BASE = "/t/directory"
HINTED = f"{BASE}/hinted"
# File sizes: several 4 MiB blocks on several DataNodes, and a short last block.
SIZES = {"part-0": 10 << 20, "part-1": (6 << 20) + 12345}
COUNTERS = ("ReadBlockOpNumOps", "BytesRead", "BlocksRead")

READ_NATIVE = """
import sys
from hdfs_native import Client
with Client().read(sys.argv[1]) as f:
    sys.stdout.buffer.write(f.read())
"""

# Locate every block of the given files, from c1 through the Python client library; retries
# until each block has a holder or the timeout passes (after a directory restart the ToR's
# report arrives within a heartbeat interval or two).
LOCATE = """
import json, os, sys, time
from torswitch.blockcache import BlockKey
from torswitch.directory import DirectoryClient
from torswitch.hadoopconf import HadoopConf
from torswitch.namenode import NameNodeClient
timeout = float(sys.argv[1])
host, port = HadoopConf.load(os.environ["HADOOP_CONF_DIR"]).namenode_address()
keys = []
with NameNodeClient(host, port) as nn:
    for path in sys.argv[2:]:
        for lb in nn.file_blocks(path).blocks:
            b = lb.block
            keys.append(BlockKey(b.pool_id, b.block_id, b.generation_stamp, b.num_bytes))
deadline = time.monotonic() + timeout
with DirectoryClient(os.environ["TORSWITCH_DIRECTORY"]) as client:
    while True:
        found = {k.block_id: [dict(switch_id=h.switch_id, rack=h.rack,
                                   agent_address=h.agent_address, complete=h.complete)
                              for h in client.locate(k)] for k in keys}
        if all(found.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
print(json.dumps(found))
"""


def torswitch_in(tb: Testbed, *args: str, host: str = "c1") -> subprocess.CompletedProcess[bytes]:
    """`torswitch ARGS` inside `host`, with the testbed's client environment only."""
    return tb.run(host, ["torswitch", *args], check=False, timeout=120)


def locate(tb: Testbed, paths: list[str], timeout: float = 0.0) -> dict[str, list[dict]]:
    proc = tb.python("c1", LOCATE, str(timeout), *paths, timeout=timeout + 60)
    found: dict[str, list[dict]] = json.loads(proc.stdout)
    return found


def write_dataset(tb: Testbed, tmp_path: Path) -> dict[str, bytes]:
    tb.hdfs("c1", "dfs", "-mkdir", "-p", HINTED)
    content = {}
    for name, size in SIZES.items():
        data = os.urandom(size)
        local = tmp_path / name
        local.write_bytes(data)
        tb.hdfs("c1", "dfs", "-put", "-f", str(local), f"{HINTED}/{name}")
        content[f"{HINTED}/{name}"] = data
    return content


@pytest.fixture(scope="module")
def hinted(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The dataset written from c1, hinted to /rack-a with --wait; its content and the plan."""
    if not testbed.engine_enabled:
        pytest.skip("the session's testbed runs without the engine (TORSWITCH_TEST_ENGINE=0)")
    content = write_dataset(testbed, tmp_path_factory.mktemp("directory"))
    proc = torswitch_in(
        testbed, "hint", HINTED, "--rack", topology.RACK_A, "--wait", "--json",
        "--job-id", "test-directory",
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    progress = json.loads(proc.stdout)
    yield {"content": content, "progress": progress}
    testbed.hdfs("c1", "dfs", "-rm", "-r", "-f", "-skipTrash", BASE)


def test_hint_finds_the_directory_without_flags(testbed: Testbed, hinted: dict) -> None:
    env = testbed.client_env("c1")
    assert env["TORSWITCH_DIRECTORY"] == f"{testbed.addresses['nn']}:{blockdir.PORT}"
    progress = hinted["progress"]
    n_blocks = sum(-(-size // (4 << 20)) for size in SIZES.values())
    assert progress["state"] == "PLAN_STATE_READY", progress
    assert int(progress["blocks_total"]) == n_blocks
    assert int(progress["blocks_ready"]) == n_blocks
    assert int(progress["bytes_ready"]) == sum(SIZES.values())
    status = testbed.directory_status()
    (tor_a,) = [s for s in status["switches"] if s["switch_id"] == topology.TOR]
    assert tor_a["rack"] == topology.RACK_A and tor_a["live"]
    assert tor_a["pinned_bytes"] >= sum(SIZES.values())


def test_hinted_reads_from_c1_are_hits(testbed: Testbed, hinted: dict) -> None:
    before = testbed.settled_datanode_reads()
    for path, data in hinted["content"].items():
        assert testbed.hdfs("c1", "dfs", "-cat", path).stdout == data, path
        assert testbed.python("c1", READ_NATIVE, path).stdout == data, path
    after = testbed.settled_datanode_reads()
    for dn in testbed.datanodes:
        for counter in COUNTERS:
            assert after[dn][counter] == before[dn][counter], (dn, counter, before, after)


def test_locate_names_tor_a(testbed: Testbed, hinted: dict) -> None:
    found = locate(testbed, list(hinted["content"]))
    assert len(found) == sum(-(-size // (4 << 20)) for size in SIZES.values())
    for block_id, holders in found.items():
        assert holders == [
            {
                "switch_id": topology.TOR,
                "rack": topology.RACK_A,
                "agent_address": f"{topology.TOR_ADDRESS}:19867",
                "complete": True,
            }
        ], block_id


def test_all_or_nothing_refused_when_the_hint_exceeds_the_cache(
    testbed: Testbed, hinted: dict, tmp_path: Path
) -> None:
    (tor_a,) = [s for s in testbed.directory_status()["switches"] if s["switch_id"] == "tor-a"]
    capacity = tor_a["capacity_bytes"]
    # Zeros from a sparse file, written from the NameNode's host: it never crosses the uplink.
    big = tmp_path / "big"
    with open(big, "wb") as fh:
        fh.truncate(capacity + (8 << 20))
    path = f"{BASE}/too-big"
    try:
        testbed.hdfs("nn", "dfs", "-put", "-f", str(big), path, timeout=300)
        big.unlink()
        plans_before = testbed.directory_status()["plans"]
        proc = torswitch_in(testbed, "hint", path, "--rack", topology.RACK_A, "--all-or-nothing")
        err = proc.stderr.decode()
        assert proc.returncode == 1, (proc.stdout, err)
        assert "RESOURCE_EXHAUSTED" in err and "does not fit" in err and "tor-a" in err, err
        # Refused before anything started: no plan, no block of it on tor-a.
        assert testbed.directory_status()["plans"] == plans_before
        assert not any(locate(testbed, [path]).values())
        # The dataset hinted before is still all there.
        assert all(locate(testbed, list(hinted["content"])).values())
    finally:
        testbed.hdfs("c1", "dfs", "-rm", "-f", "-skipTrash", path, check=False)


def test_directory_restart_rebuilds_locate_from_reports(testbed: Testbed, hinted: dict) -> None:
    plan_id = hinted["progress"]["plan_id"]
    old_pid = testbed.directory_status()["pid"]
    started = time.monotonic()
    testbed.restart_directory()  # returns once tor-a has registered again
    assert testbed.directory_status()["pid"] != old_pid
    found = locate(testbed, list(hinted["content"]), timeout=30.0)
    rebuilt = time.monotonic() - started
    assert found and all(
        [h["switch_id"] for h in holders] == [topology.TOR] for holders in found.values()
    ), found
    assert rebuilt < 30.0
    # Plans are soft state the restart lost; tor-a's pins were counted again from its report.
    proc = torswitch_in(testbed, "hint", "--cancel", plan_id)
    assert proc.returncode == 1 and b"NOT_FOUND" in proc.stderr, proc.stderr
    (tor_a,) = [s for s in testbed.directory_status()["switches"] if s["switch_id"] == "tor-a"]
    assert tor_a["pinned_bytes"] >= sum(SIZES.values())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([f"{BASE}/no-such-file", "--rack", "/rack-a"], "NOT_FOUND", "no such file or directory"),
        ([f"{HINTED}/zz-*", "--rack", "/rack-a"], "NOT_FOUND", "matches nothing"),
        ([f"{HINTED}/part-[0-1", "--rack", "/rack-a"], "INVALID_ARGUMENT", "unclosed character"),
        ([HINTED, "--rack", "/rack-z"], "NOT_FOUND", "no ToR is registered for rack '/rack-z'"),
        ([HINTED, "--rack", "rack-a"], "INVALID_ARGUMENT", "is not a topology path"),
    ],
    ids=["unknown-path", "glob-matches-nothing", "bad-glob", "unknown-rack", "malformed-rack"],
)
def test_bad_requests_through_the_cli(
    testbed: Testbed, hinted: dict, args: list[str], code: str, message: str
) -> None:
    proc = torswitch_in(testbed, "hint", *args)
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.stdout, err)
    assert f"torswitch hint: {testbed.directory_address}: {code}: " in err, err
    assert message in err, err


def test_empty_hint_is_refused(testbed: Testbed, hinted: dict) -> None:
    proc = torswitch_in(testbed, "hint", "--rack", "/rack-a")
    assert proc.returncode == 2 and b"name at least one PATH" in proc.stderr, proc.stderr
    # The server refuses it as well, for clients other than the CLI.
    code = """
import os, grpc
from torswitch.directory import DirectoryClient
try:
    DirectoryClient(os.environ["TORSWITCH_DIRECTORY"]).hint([], racks=["/rack-a"])
except grpc.RpcError as exc:
    print(exc.code().name, exc.details())
"""
    out = testbed.python("c1", code).stdout.decode()
    assert out.startswith("INVALID_ARGUMENT a hint needs paths, globs or blocks"), out


SPARK_JOB = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("hinted-line-count").getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
lines = spark.sparkContext.textFile(sys.argv[1])
print(f"lines={lines.count()} chars={lines.map(len).sum()}")
spark.stop()
"""


def engine_counters(tb: Testbed) -> dict[str, float]:
    """The engine's Prometheus counters, scraped from inside tor-a (no uplink crossed)."""
    sock = tb.connect(topology.TOR, topology.TOR_ADDRESS, 19868)
    with sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: tor-a\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    body = b"".join(chunks).split(b"\r\n\r\n", 1)[1].decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("torswitch_engine_") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


def test_spark_submit_hinted_job_reads_only_hits(
    testbed: Testbed, hinted: dict, tmp_path: Path
) -> None:
    """The scheduler wrapper: hint the job's input for this host, wait, run the PySpark job;
    the job's reads are all hits (the engine relays no miss), and its answer is right."""
    text = "".join(f"line {i:07d} {'x' * (i % 97)}\n" for i in range(120_000)).encode()
    local = tmp_path / "input.txt"
    local.write_bytes(text)
    path = f"{BASE}/spark/input.txt"
    testbed.hdfs("c1", "dfs", "-mkdir", "-p", f"{BASE}/spark")
    testbed.hdfs("c1", "dfs", "-put", "-f", str(local), path)
    script = tmp_path / "job.py"
    script.write_text(SPARK_JOB)
    before = engine_counters(testbed)
    proc = testbed.run(
        "c1",
        [
            "torswitch", "spark-submit-hinted", "--input", f"{testbed.namenode_url}{BASE}/spark",
            "--master", "local[1]", "--conf", "spark.ui.enabled=false",
            "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.memory=512m",
            str(script), f"{testbed.namenode_url}{path}",
        ],
        env={"SPARK_LOCAL_IP": "127.0.0.1"},
        check=False,
        timeout=300,
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    lines = text.decode().splitlines()
    assert proc.stdout.decode().strip().splitlines()[-1] == (
        f"lines={len(lines)} chars={sum(map(len, lines))}"
    )
    n_blocks = -(-len(text) // (4 << 20))
    assert f"{n_blocks}/{n_blocks} blocks ready" in err, err[-3000:]
    after = engine_counters(testbed)
    assert after["torswitch_engine_misses_total"] == before["torswitch_engine_misses_total"]
    assert after["torswitch_engine_hits_total"] >= before["torswitch_engine_hits_total"] + n_blocks
    # The wrapper released the plan's pins after the job; the blocks stay cached.
    assert all(locate(testbed, [path]).values())
