"""The HDFS testbed against itself and real clients (issue 3).

Covered, on the session's shared testbed (`testbed` fixture, see conftest.py):
* the cluster is up: NameNode and 3 DataNodes live, each JVM in its own namespace, racks right;
* a file written from c1 with Hadoop's FsShell reads back byte-identical through FsShell and
  through hdfs-native, both running inside c1's namespace (so across the ToR and the uplink);
* its blocks sit on rack-b DataNodes;
* a DataNode's JMX BytesRead grows by exactly the bytes it sent for a read (these DataNode
  and uplink measurements run with the ToR switching plainly, `plain_switching`: the block
  engine would serve the repeated reads from its cache);
* the uplink shaping is in effect: at a low rate a large read takes at least size/rate;
* `testbed load` writes raw and Parquet files that read back as generated;
* `testbed exec` passes output and exit status through.
And on a second, private instance driven through the CLI while the shared one keeps running:
up (with the block engine in its ToR), `up` while up refused, status, exec, down, down again;
after down no namespace, veth (namespace), JVM, engine process or tmpfs cache of that instance
remains.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torswitch.testbed import dataset, hadoop, topology
from torswitch.testbed.handle import Testbed

pytestmark = pytest.mark.slow

CHECKSUM_CHUNK = 512  # dfs.bytes-per-checksum
CHECKSUM_SIZE = 4  # CRC32C

READ_SNIPPET = """
import sys, time
from hdfs_native import Client
client = Client()
start = time.monotonic()
with client.read(sys.argv[1]) as f:
    data = f.read()
sys.stderr.write(f"elapsed={time.monotonic() - start:.6f}\\n")
sys.stdout.buffer.write(data)
"""


def hdfs_native_read(tb: Testbed, path: str, host: str = "c1") -> tuple[bytes, float]:
    """Read `path` with hdfs-native inside `host`'s namespace; (content, seconds reading)."""
    proc = tb.python(host, READ_SNIPPET, path)
    m = re.search(rb"elapsed=([0-9.]+)", proc.stderr)
    assert m, proc.stderr.decode(errors="replace")
    return proc.stdout, float(m[1])


def block_locations(tb: Testbed, path: str) -> list[tuple[int, str, str]]:
    """(length, rack, DataNode address) per block of `path`, from Hadoop's own fsck."""
    out = tb.hdfs("c1", "fsck", path, "-files", "-blocks", "-locations", "-racks").stdout.decode()
    blocks = []
    for line in out.splitlines():
        m = re.search(r"blk_\S+ len=(\d+) .*\[(/[^/\]]+)/([0-9.]+):9866\]", line)
        if m:
            blocks.append((int(m[1]), m[2], m[3]))
    assert blocks, out
    return blocks


def torswitch(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run the real `torswitch` command line."""
    return subprocess.run(
        [sys.executable, "-m", "torswitch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def written(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """A 10 MiB + 1234 B file written from c1 with FsShell: (HDFS path, content)."""
    data = os.urandom((10 << 20) + 1234)
    local = tmp_path_factory.mktemp("testbed") / "roundtrip.bin"
    local.write_bytes(data)
    path = "/t/testbed/roundtrip.bin"
    testbed.hdfs("c1", "dfs", "-mkdir", "-p", "/t/testbed")
    testbed.hdfs("c1", "dfs", "-put", "-f", str(local), path)
    return path, data


def test_cluster_is_up(testbed: Testbed) -> None:
    report = testbed.status()
    assert report.problems == []
    assert report.live_datanodes == 3
    assert report.safe_mode == ""
    # Each daemon is its own JVM, inside its own host's namespace.
    assert sorted(d.name for d in testbed.state.daemons) == ["dn1", "dn2", "dn3", "nn"]
    for d in testbed.state.daemons:
        ns_inode = os.stat(f"/run/netns/{testbed.namespace(d.host)}").st_ino
        assert os.readlink(f"/proc/{d.pid}/ns/net") == f"net:[{ns_inode}]"
    topo = testbed.hdfs("c1", "dfsadmin", "-printTopology").stdout.decode()
    racks = re.findall(r"Rack: (\S+)\n((?:\s+\S+:9866 \(\S+\).*\n?)+)", topo)
    assert [r for r, _ in racks] == ["/rack-b"], topo
    assert sorted(re.findall(r"\((dn\d)\)", racks[0][1])) == ["dn1", "dn2", "dn3"]


def test_fsshell_reads_back_identical(testbed: Testbed, written: tuple[str, bytes]) -> None:
    path, data = written
    assert testbed.hdfs("c1", "dfs", "-cat", path).stdout == data


def test_hdfs_native_reads_back_identical(testbed: Testbed, written: tuple[str, bytes]) -> None:
    path, data = written
    content, _ = hdfs_native_read(testbed, path)
    assert content == data


def test_blocks_sit_on_rack_b_datanodes(testbed: Testbed, written: tuple[str, bytes]) -> None:
    path, data = written
    blocks = block_locations(testbed, path)
    block_size = int(testbed.state.options["block_size"])
    assert len(blocks) == math.ceil(len(data) / block_size)
    assert sum(length for length, _, _ in blocks) == len(data)
    dn_addresses = {testbed.addresses[dn] for dn in testbed.datanodes}
    for _, rack, address in blocks:
        assert rack == "/rack-b"
        assert address in dn_addresses


def test_datanode_bytes_read_grows_by_bytes_read(
    testbed: Testbed, written: tuple[str, bytes], plain_switching: Testbed
) -> None:
    path, data = written
    by_address = {testbed.addresses[dn]: dn for dn in testbed.datanodes}
    # A DataNode counts what it sent: the data plus one CRC32C per 512-byte chunk.
    want_bytes = {dn: 0 for dn in testbed.datanodes}
    want_ops = {dn: 0 for dn in testbed.datanodes}
    for length, _, address in block_locations(testbed, path):
        dn = by_address[address]
        want_bytes[dn] += length + CHECKSUM_SIZE * math.ceil(length / CHECKSUM_CHUNK)
        want_ops[dn] += 1
    before = testbed.settled_datanode_reads()
    content, _ = hdfs_native_read(testbed, path)
    assert content == data
    after = testbed.settled_datanode_reads()
    got_bytes = {dn: after[dn]["BytesRead"] - before[dn]["BytesRead"] for dn in testbed.datanodes}
    got_ops = {
        dn: after[dn]["ReadBlockOpNumOps"] - before[dn]["ReadBlockOpNumOps"]
        for dn in testbed.datanodes
    }
    assert got_bytes == want_bytes
    assert got_ops == want_ops
    assert sum(want_bytes.values()) > len(data)


def test_datanode_client_trace_names_each_block_read(
    testbed: Testbed, written: tuple[str, bytes], plain_switching: Testbed
) -> None:
    path, data = written
    blocks = re.findall(
        r"(BP-\S+:blk_\d+_\d+) len=\d+",
        testbed.hdfs("c1", "fsck", path, "-files", "-blocks").stdout.decode(),
    )
    assert blocks
    seen_before = {dn: len(testbed.client_traces(dn)) for dn in testbed.datanodes}
    content, _ = hdfs_native_read(testbed, path, host="c2")
    assert content == data

    def served() -> list[dict[str, str]]:
        return [
            record
            for dn in testbed.datanodes
            for record in testbed.client_traces(dn)[seen_before[dn] :]
        ]

    # The DataNode writes the line when its side of the op ends, a moment after the client's.
    deadline = time.monotonic() + 10
    while len(served()) < len(blocks) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Each block read once, by c2, across the ToR: no metrics period to wait for.
    records = served()
    assert sorted(r["blockid"] for r in records) == sorted(blocks)
    assert all(r["dest"].startswith(f"/{testbed.addresses['c2']}:") for r in records)


def test_uplink_shaping_limits_reads(
    testbed: Testbed, written: tuple[str, bytes], plain_switching: Testbed
) -> None:
    path, data = written
    rate = 40_000_000  # bit/s: 10 MiB then needs over 2 s
    floor_s = (len(data) - topology.tbf_burst_bytes(rate)) * 8 / rate
    with testbed.uplink(rate_bps=rate):
        shaped = topology.read_shaping(testbed.topology)
        assert shaped is not None and shaped[1].rate_bps == rate
        content, slow_s = hdfs_native_read(testbed, path)
    assert content == data
    assert slow_s >= floor_s
    restored = topology.read_shaping(testbed.topology)
    assert restored is not None and restored[1].rate_bps == testbed.shaping.rate_bps
    # Back at 1 Gbit/s the same read is far faster, so the shaping was what slowed it.
    _, fast_s = hdfs_native_read(testbed, path)
    assert fast_s < floor_s / 2


def test_load_writes_generated_dataset(testbed: Testbed) -> None:
    directory = "/t/testbed/load"
    args = [
        "testbed",
        "load",
        "--instance",
        testbed.instance,
        "--dir",
        directory,
        "--raw-files",
        "2",
        "--raw-size",
        "3m",
        "--parquet-files",
        "1",
        "--parquet-size",
        "5m",
        "--seed",
        "7",
    ]
    proc = torswitch(*args)
    assert proc.returncode == 0, proc.stderr
    raw, _ = hdfs_native_read(testbed, f"{directory}/raw-00001.bin")
    assert raw == dataset.raw_bytes(7, 1, 3 << 20)
    import pyarrow.parquet as pq

    blob, _ = hdfs_native_read(testbed, f"{directory}/points-00000.parquet")
    table = pq.read_table(io.BytesIO(blob))
    assert table.equals(dataset.points_table(7, 0, dataset.points_rows(5 << 20)))
    meta = pq.ParquetFile(io.BytesIO(blob)).metadata
    block_size = int(testbed.state.options["block_size"])
    assert all(meta.row_group(i).total_byte_size <= block_size for i in range(meta.num_row_groups))
    # Loading again without --overwrite is refused and changes nothing.
    again = torswitch(*args[:-2], "--seed", "8")
    assert again.returncode == 1
    assert "--overwrite" in again.stderr
    raw_after, _ = hdfs_native_read(testbed, f"{directory}/raw-00001.bin")
    assert raw_after == raw


def test_exec_passes_output_and_status(testbed: Testbed, written: tuple[str, bytes]) -> None:
    path, data = written
    base = ["testbed", "exec", "--instance", testbed.instance]
    cat = subprocess.run(
        [sys.executable, "-m", "torswitch", *base, "c1", "--", "hdfs", "dfs", "-cat", path],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert cat.returncode == 0, cat.stderr
    assert cat.stdout == data
    assert torswitch(*base, "c2", "--", "sh", "-c", "exit 7").returncode == 7
    where = torswitch(*base, "dn2", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert testbed.addresses["dn2"] + "/16" in where.stdout
    bad = torswitch(*base, "c9", "--", "true")
    assert bad.returncode == 1 and "no host 'c9'" in bad.stderr


def _host_veths() -> set[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split(":")[1].strip() for line in out.splitlines() if line.strip()}


def _processes_in(inodes: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            link = os.readlink(entry / "ns" / "net")
        except OSError:
            continue
        if int(link[len("net:[") : -1]) in inodes:
            found.append(int(entry.name))
    return found


def test_second_instance_up_and_down_leave_nothing(testbed: Testbed) -> None:
    instance = testbed.instance[:9] + "d"
    assert torswitch("testbed", "down", "--instance", instance).returncode == 0
    veths_before = _host_veths()

    up = torswitch(
        "testbed", "up", "--instance", instance, "--datanodes", "1", "--uplink-rate", "100mbit"
    )
    assert up.returncode == 0, up.stderr
    assert re.search(r"up in [0-9.]+ s", up.stdout) and "JVM memory" in up.stdout
    again = torswitch("testbed", "up", "--instance", instance)
    assert again.returncode == 1 and "already up" in again.stderr

    status = torswitch("testbed", "status", "--instance", instance, "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert report["up"] and report["live_datanodes"] == 1
    assert report["uplink"]["rate_bps"] == 100_000_000
    # `up` ran the block engine in the ToR by default, intercepting.
    engine = report["engine"]
    assert engine["enabled"] and engine["phase"] == "healthy"
    assert engine["interception"]["active"]
    assert Path(engine["cache_dir"]).is_dir()
    pids = [d["pid"] for d in report["daemons"]]
    pids += [engine["supervisor_pid"], engine["engine_pid"]]
    inodes = {os.stat(f"/run/netns/{h['namespace']}").st_ino for h in report["hosts"]}
    assert len(inodes) == len(report["hosts"]) == 6  # c1 c2 tor-a core nn dn1

    dfsadmin = torswitch(
        "testbed",
        "exec",
        "--instance",
        instance,
        "c2",
        "--",
        "hdfs",
        "dfsadmin",
        "-report",
        "-live",
    )
    assert dfsadmin.returncode == 0, dfsadmin.stderr
    assert "Live datanodes (1)" in dfsadmin.stdout

    # A process left inside a namespace must not keep it (and its veths) alive.
    straggler = subprocess.Popen(
        ["ip", "netns", "exec", f"{instance}-c1", "sleep", "600"], start_new_session=True
    )
    try:
        down = torswitch("testbed", "down", "--instance", instance)
        assert down.returncode == 0, down.stderr
        assert "down:" in down.stdout
    finally:
        straggler.kill()
        straggler.wait()
    again_down = torswitch("testbed", "down", "--instance", instance)
    assert again_down.returncode == 0 and "nothing to do" in again_down.stdout
    assert torswitch("testbed", "status", "--instance", instance).returncode == 3

    assert topology.instance_namespaces(instance) == []
    assert hadoop.testbed_jvms(instance) == {}
    assert not [pid for pid in pids if hadoop.pid_alive(pid)]
    assert _processes_in(inodes) == []
    assert not Path(engine["cache_dir"]).exists()
    assert _host_veths() == veths_before
    # The shared instance did not notice.
    testbed.check_up()


def test_fixture_fails_loudly_when_the_testbed_cannot_be_built(tmp_path: Path) -> None:
    # A session whose testbed cannot start (here: no Hadoop jars) must error, never skip.
    env = {
        **os.environ,
        "TORSWITCH_HADOOP_LIB": str(tmp_path / "no-jars"),
        "TORSWITCH_TEST_TESTBED": "pytf",
        "TORSWITCH_RUN_DIR": str(tmp_path / "run"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_cluster_is_up",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout
    assert "1 error" in proc.stdout and "skipped" not in proc.stdout
    assert "the HDFS testbed could not be started" in proc.stdout
    assert "make hadoop-jars" in proc.stdout
    assert topology.instance_namespaces("pytf") == []
