"""The DPDK-mode ToR on a real testbed: `testbed up --tor dpdk` (issue 6, item 6).

A testbed instance of its own (``dpx``, or $TORSWITCH_TEST_DPDK_TESTBED; 1 client, 2
DataNodes), whose ToR namespace has no bridge: `torswitch dataplane serve` runs tsw-dataplane on
af_packet ports (c1, uplink) with a tap (tswtap0, 198.18.1.1), and `torswitch run
--dataplane-control` runs the block engine and steers c1's new TCP connections to 9866 to the
tap while the engine is healthy. Everything between c1 and the rest of the cluster crosses the
data plane. Checked here:

  - ping, TCP and UDP from c1 to the NameNode, the DataNodes and the ToR's own address;
  - FsShell write and read: the first read a miss, the second a hit with identical bytes and
    no DataNode read counter moving; hdfs-native reads the cached file the same way;
  - with the engine stopped (SIGSTOP), steering goes off and reads go straight to the
    DataNodes, still correct;
  - malformed frames injected from c1 are counted, and the data plane is still the same
    process and still switching;
  - killing the engine's supervisor (SIGKILL) leaves the rack switching: a read right after
    it succeeds (the client's retries go direct), the steering lease runs out within seconds,
    and the data plane is the same process; stopping and starting the engine does not restart
    the data plane either;
  - `testbed status` shows the data plane's PID and counters, `down` leaves no process and
    no EAL runtime directory.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from torswitch.testbed import hadoop, lifecycle, topology, tor
from torswitch.testbed.handle import Testbed
from torswitch.testbed.state import RunDir

AGENT = f"{topology.TOR_ADDRESS}:{tor.AGENT_PORT}"
ECHO_PORT = 7000
MIB = 1 << 20

ECHO_SERVER = r"""
import socket, sys, threading
port = int(sys.argv[1])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(65535); u.sendto(data, peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept()
    with c:
        buf = b""
        while True:  # until the client's half-close
            chunk = c.recv(65535)
            if not chunk:
                break
            buf += chunk
        c.sendall(buf)
"""

CLIENT = r"""
import socket, sys
proto, host, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
if proto == "tcp":
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(msg)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = s.recv(65535)
            if not chunk:
                break
            got += chunk
        print(got.decode())
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
    for _ in range(5):
        s.sendto(msg, (host, port))
        try:
            print(s.recv(65535).decode()); break
        except socket.timeout:
            pass
    else:
        sys.exit("no UDP answer")
"""

INJECT = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
refused = 0
for h in sys.argv[1:]:
    try:
        s.send(bytes.fromhex(h))
    except OSError:  # the kernel may refuse frames shorter than an Ethernet header
        refused += 1
print(refused)
"""

NATIVE_READ = (
    "import sys; from hdfs_native import Client\n"
    "sys.stdout.buffer.write(Client().read(sys.argv[1]).read())"
)


@pytest.fixture(scope="module")
def dpdk_testbed() -> Iterator[Testbed]:
    instance = os.environ.get("TORSWITCH_TEST_DPDK_TESTBED", "dpx")
    run = RunDir(instance)
    lifecycle.down(instance, run=run)  # leftovers of a crashed session
    lifecycle.up(
        instance,
        lifecycle.UpOptions(datanodes=2, clients=1, block_size=4 << 20, tor="dpdk",
                            cache_bytes=64 << 20),
        progress=False, owner_pid=os.getpid(), run=run,
    )
    try:
        yield Testbed.attach(instance, run=run)
    finally:
        lifecycle.down(instance, run=run)
        topo = topology.plan(instance, datanodes=2, clients=1)
        assert not (tor.DPDK_RUNTIME / tor.eal_prefix(topo)).exists(), "EAL runtime dir left"
        assert not hadoop.testbed_jvms(instance)


@pytest.fixture
def engine(dpdk_testbed: Testbed) -> Testbed:
    dpdk_testbed.wait_engine(True)
    return dpdk_testbed


def dataplane(tb: Testbed) -> dict[str, object]:
    status = tb.engine_status()
    dp = status["dataplane"]
    assert isinstance(dp, dict)
    return dp


def port_counters(tb: Testbed, port: str, fresh_after: float | None = None) -> dict[str, int]:
    """One port's data-plane counters, from a stats file written after `fresh_after`."""
    stats = tb.run_dir / "dataplane" / "stats.prom"
    since = time.time() if fresh_after is None else fresh_after
    deadline = time.monotonic() + 5
    while stats.stat().st_mtime <= since:
        assert time.monotonic() < deadline, "the data plane's stats file is not refreshed"
        time.sleep(0.05)
    ports = dataplane(tb)["ports"]
    assert isinstance(ports, dict)
    return dict(ports[port])


def cache_stats(tb: Testbed) -> dict[str, int]:
    out = tb.run("c1", [sys.executable, "-m", "torswitch", "cache", "--agent", AGENT, "stats",
                        "--json"]).stdout
    return {k: int(v) for k, v in json.loads(out).items() if str(v).lstrip("-").isdigit()}


def reads_total(counters: dict[str, dict[str, int]]) -> tuple[int, int]:
    return (sum(c["ReadBlockOpNumOps"] for c in counters.values()),
            sum(c["BytesRead"] for c in counters.values()))


def test_status_shows_the_data_plane(engine: Testbed) -> None:
    report = engine.status()
    assert report.problems == []
    dp = report.engine["dataplane"]
    assert dp["service_running"] and dp["steering"] is True
    assert dp["pid"] and Path(f"/proc/{dp['pid']}").exists()
    # The data plane is the service's child, not the engine supervisor's.
    assert _parent(dp["pid"]) == dp["service_pid"] != report.engine["supervisor_pid"]
    assert b"tsw-dataplane" in Path(f"/proc/{dp['pid']}/cmdline").read_bytes()
    assert set(dp["ports"]) == {"c1", "uplink", "tswtap0"}
    assert report.engine["interception"]["active"]
    # No bridge in this mode: the ToR's address is on the data plane's tap.
    links = engine.run("tor-a", ["ip", "-j", "addr", "show"]).stdout
    by_name = {ln["ifname"]: ln for ln in json.loads(links)}
    assert "br0" not in by_name
    assert [a["local"] for a in by_name["tswtap0"]["addr_info"]] == [topology.TOR_ADDRESS]


@pytest.mark.parametrize("target", ["nn", "dn1", "dn2", "tor-a"])
def test_ping_through_the_data_plane(engine: Testbed, target: str) -> None:
    address = engine.addresses[target]
    before = port_counters(engine, "c1")
    proc = engine.run("c1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", address], check=False)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert port_counters(engine, "c1")["rx_packets"] >= before["rx_packets"] + 2


@pytest.fixture(scope="module")
def echo_servers(dpdk_testbed: Testbed) -> Iterator[None]:
    procs = []
    try:
        for host in ("nn", "dn1", "dn2"):
            proc = subprocess.Popen(
                dpdk_testbed.argv(host, [sys.executable, "-c", ECHO_SERVER, str(ECHO_PORT)]),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("target", ["nn", "dn1", "dn2"])
def test_tcp_and_udp_through_the_data_plane(engine: Testbed, echo_servers: None, proto: str,
                                            target: str) -> None:
    msg = f"{proto}-{target}-" + "y" * 2980  # more than one frame for TCP
    proc = engine.run("c1", [sys.executable, "-c", CLIENT, proto, engine.addresses[target],
                             str(ECHO_PORT), msg[:1400] if proto == "udp" else msg])
    assert proc.stdout.decode().strip() == (msg[:1400] if proto == "udp" else msg)


@pytest.fixture(scope="module")
def hdfs_file(dpdk_testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    data = os.urandom(2 * (4 * MIB) + 4321)  # three blocks over both DataNodes
    local = tmp_path_factory.mktemp("dpdk") / "file.bin"
    local.write_bytes(data)
    dpdk_testbed.hdfs("c1", "dfs", "-put", "-f", str(local), "/dpdk.bin")
    return data


def test_first_read_misses_second_hits_datanodes_untouched(engine: Testbed,
                                                           hdfs_file: bytes) -> None:
    tb = engine
    before, steered = cache_stats(tb), port_counters(tb, "c1")["steered"]
    redirected = tb.engine_status()["interception"]["counters"]["redirect"]
    assert tb.hdfs("c1", "dfs", "-cat", "/dpdk.bin").stdout == hdfs_file  # miss
    mid = cache_stats(tb)
    assert mid["misses"] > before["misses"] and mid["used_bytes"] >= len(hdfs_file)
    assert port_counters(tb, "c1")["steered"] > steered  # through the tap ...
    assert tb.engine_status()["interception"]["counters"]["redirect"] > redirected  # ... to it
    counters = tb.settled_datanode_reads()
    assert tb.hdfs("c1", "dfs", "-cat", "/dpdk.bin").stdout == hdfs_file  # hit
    assert cache_stats(tb)["hits"] >= mid["hits"] + 3
    assert reads_total(tb.settled_datanode_reads(quiet_s=1.5)) == reads_total(counters)
    # hdfs-native, and still no DataNode read
    assert tb.python("c1", NATIVE_READ, "/dpdk.bin").stdout == hdfs_file
    assert reads_total(tb.settled_datanode_reads(quiet_s=1.5)) == reads_total(counters)


def test_engine_stopped_reads_go_straight_to_the_datanodes(engine: Testbed,
                                                           hdfs_file: bytes) -> None:
    tb = engine
    pid = tb.engine_pid()
    assert pid is not None
    counters = tb.settled_datanode_reads(quiet_s=1.5)
    os.kill(pid, signal.SIGSTOP)
    try:
        tb.wait_engine(False, timeout=10)  # fail-open: steering off
        steered = port_counters(tb, "c1")["steered"]
        assert tb.hdfs("c1", "dfs", "-cat", "/dpdk.bin").stdout == hdfs_file
        assert port_counters(tb, "c1")["steered"] == steered
    finally:
        os.kill(pid, signal.SIGCONT)
    after = tb.settled_datanode_reads(quiet_s=1.5)
    ops, nbytes = reads_total(after)
    assert ops > reads_total(counters)[0] and nbytes >= reads_total(counters)[1] + len(hdfs_file)
    tb.wait_engine(True, timeout=30)
    assert tb.engine_pid() == pid  # the same engine took over again


def _mac(tb: Testbed, host: str) -> bytes:
    text = tb.run(host, ["cat", "/sys/class/net/eth0/address"]).stdout.decode()
    return bytes.fromhex(text.strip().replace(":", ""))


def _ipv4(version_ihl: int, total_length: int, body: int = 20) -> bytes:
    hdr = bytes([version_ihl, 0]) + total_length.to_bytes(2, "big") + bytes(4)
    hdr += bytes([64, 6, 0, 0]) + bytes([198, 18, 1, 11, 198, 18, 2, 11])
    return hdr + bytes(max(0, body - 20))


def test_malformed_frames_counted_and_survived(engine: Testbed) -> None:
    tb = engine
    pid = dataplane(tb)["pid"]
    eth = _mac(tb, "dn1") + _mac(tb, "c1") + b"\x08\x00"
    malformed = [
        eth + bytes(8),                        # IPv4 header truncated to 8 bytes
        eth + _ipv4(0x42, 40, 40),             # IHL 2 (< 5)
        eth + _ipv4(0x65, 40, 40),             # version 6 under the IPv4 ethertype
        eth + _ipv4(0x45, 1400, 40),           # total length beyond the frame
        eth + _ipv4(0x4F, 40, 40),             # IHL 15 (60 bytes) > total length 40
    ]
    rng = random.Random(66)
    noise = [rng.randbytes(rng.randrange(14, 1500)) for _ in range(100)]
    before = port_counters(tb, "c1")
    frames = malformed + noise
    refused = 0
    for i in range(0, len(frames), 50):
        out = tb.run("c1", [sys.executable, "-c", INJECT, *(f.hex() for f in frames[i:i + 50])])
        refused += int(out.stdout)
    assert refused == 0
    time.sleep(0.3)
    after = port_counters(tb, "c1")
    assert after["rx_l3_malformed"] - before["rx_l3_malformed"] >= len(malformed)
    assert after["rx_packets"] - before["rx_packets"] >= len(frames)
    assert dataplane(tb)["pid"] == pid and dataplane(tb)["restarts"] == 0
    proc = tb.run("c1", ["ping", "-c", "1", "-W", "2", tb.addresses["dn2"]], check=False)
    assert proc.returncode == 0


def test_engine_metrics_carry_the_data_plane_counters(engine: Testbed) -> None:
    text = engine.python("c1", "import urllib.request; print(urllib.request.urlopen("
                         "'http://198.18.1.1:19868/metrics', timeout=10).read().decode())"
                         ).stdout.decode()
    samples = [line for line in text.splitlines()
               if line.startswith("torswitch_dataplane_rx_packets_total{")]
    assert samples, "no data-plane counters on the engine's /metrics"
    assert sum(float(line.rsplit(" ", 1)[1]) for line in samples) > 0


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _wait_steering(tb: Testbed, on: bool, timeout: float) -> float:
    """Seconds until the data plane reports steering on (off); fails after timeout."""
    start = time.monotonic()
    while dataplane(tb)["steering"] is not on:
        assert time.monotonic() - start < timeout, f"steering not {'on' if on else 'off'}"
        time.sleep(0.1)
    return time.monotonic() - start


def test_killed_supervisor_leaves_the_rack_switching(engine: Testbed, hdfs_file: bytes) -> None:
    tb = engine
    status = tb.engine_status()
    dp = status["dataplane"]
    assert dp["steering"] is True
    try:
        os.kill(status["supervisor_pid"], signal.SIGKILL)
        # At once: the engine goes with its supervisor, steering stays on until its lease (5 s)
        # runs out. A read started now may first be steered into the void; the client
        # retries, and its retries go straight to the DataNodes.
        read = subprocess.Popen(tb.argv("c1", ["hdfs", "dfs", "-cat", "/dpdk.bin"]),
                                env=tb.client_env("c1"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            assert _wait_steering(tb, False, timeout=10) < 8  # the lease ran out
            out, err = read.communicate(timeout=120)
        finally:
            if read.poll() is None:
                read.kill()
                read.wait()
        assert read.returncode == 0, err.decode()[-2000:]
        assert out == hdfs_file
        steered = port_counters(tb, "c1")["steered"]
        assert tb.hdfs("c1", "dfs", "-cat", "/dpdk.bin").stdout == hdfs_file
        assert port_counters(tb, "c1")["steered"] == steered  # direct
        proc = tb.run("c1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", tb.addresses["dn1"]],
                      check=False)
        assert proc.returncode == 0
        now = dataplane(tb)
        assert (now["pid"], now["service_pid"], now["restarts"]) == (
            dp["pid"], dp["service_pid"], dp["restarts"])
    finally:
        tb.start_engine()
    tb.wait_engine(True)
    assert dataplane(tb)["pid"] == dp["pid"]


def test_engine_stop_and_start_keep_the_data_plane(engine: Testbed, hdfs_file: bytes) -> None:
    tb = engine
    dp = dataplane(tb)
    try:
        tb.stop_engine()
        # A clean exit turns steering off at once and takes the redirect away.
        assert dataplane(tb)["steering"] is False
        assert not tb.engine_status()["interception"]["installed"]
        assert tb.hdfs("c1", "dfs", "-cat", "/dpdk.bin").stdout == hdfs_file
        assert tb.run("c1", ["ping", "-c", "1", "-W", "2", tb.addresses["nn"]],
                      check=False).returncode == 0
    finally:
        tb.start_engine()
    tb.wait_engine(True)
    now = dataplane(tb)
    assert (now["pid"], now["service_pid"], now["restarts"]) == (
        dp["pid"], dp["service_pid"], dp["restarts"])
    steered = port_counters(tb, "c1")["steered"]
    assert tb.hdfs("c1", "dfs", "-cat", "/dpdk.bin").stdout == hdfs_file
    assert port_counters(tb, "c1")["steered"] > steered  # through the engine again
