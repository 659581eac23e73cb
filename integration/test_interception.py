"""Kernel-mode interception and fail-open supervision in the real testbed (issue 5).

The rules (torswitch.interception, driven directly, with the testbed's engine stopped and a
stand-in, tests/fake_engine.py, listening on the engine's port in tor-a; it answers every
connection with the SO_ORIGINAL_DST it read):
* c1 and c2 -> dn1:9866 reach the stand-in, which learns dn1:9866 and the client's address;
* the DataNode's HTTP port and ICMP are switched as before, and only 9866 is counted;
* a connection to the DataNode that was open before the rules went in stays with the
  DataNode;
* after remove(), c1 reaches the real DataNode (a READ_BLOCK answered by Hadoop); install and
  remove are idempotent;
* when the lease is not renewed, new connections go to the DataNode again.

Supervision (`torswitch run` as the testbed starts it, supervising the stand-in):
* kill -9 the engine: within a second c1 reaches the real DataNode, then the engine is back
  and intercepting; a frozen engine (SIGSTOP) likewise, and gets it back on SIGCONT;
* kill -9 the supervisor: its rules outlive it only until the lease runs out;
* SIGTERM: rules removed, engine stopped.

The testbed wiring with the real engine: `testbed status` shows the engine and the rules, a
read from c1 goes through the engine, and `up --no-cache` gives plain switching.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from torswitch import datatransfer as D
from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.api.hadoop import hdfs_pb2
from torswitch.interception import Interceptor, InterceptSpec
from torswitch.testbed import hadoop, topology, tor
from torswitch.testbed.handle import Testbed
from torswitch.testbed.jmx import NAMENODE_INFO

pytestmark = pytest.mark.slow

FAKE_ENGINE = Path(__file__).resolve().parents[1] / "tests" / "fake_engine.py"
STAND_IN = f"{sys.executable} {FAKE_ENGINE} 0.0.0.0 {tor.ENGINE_PORT}"
XFER = 9866
DN_HTTP = 9864


_pools: dict[str, str] = {}


def missing_block_request(tb: Testbed) -> bytes:
    """A READ_BLOCK of a block that does not exist in the cluster's pool: a DataNode answers
    it at once with status ERROR (for a pool it does not know it would not answer at all)."""
    if tb.instance not in _pools:
        _pools[tb.instance] = str(tb.jmx("nn").bean(NAMENODE_INFO)["BlockPoolId"])
    block = hdfs_pb2.ExtendedBlockProto(
        poolId=_pools[tb.instance], blockId=1, generationStamp=1, numBytes=1
    )
    return D.encode_request(D.Op.READ_BLOCK, D.read_block_request(block, 0, 1))


def answer(tb: Testbed, host: str, dn: str, port: int = XFER, timeout: float = 3.0) -> str:
    """Who answers a new connection from `host` to DataNode `dn`: ``engine <line>`` when the
    stand-in does, ``datanode <status>`` when Hadoop answers a READ_BLOCK of a block that
    does not exist, or ``refused`` / ``timeout``."""
    request = missing_block_request(tb)
    try:
        sock = tb.connect(host, tb.addresses[dn], port, timeout)
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    raw = b""
    with sock:
        try:
            sock.sendall(request)
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                raw += chunk
                if raw.startswith(b"ORIGINAL_DST") and raw.endswith(b"\n"):
                    return "engine " + raw.decode().strip()
                if _response(raw) is not None:
                    return f"datanode {_response(raw)}"
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except TimeoutError:
            return "timeout"
    return f"closed after {raw!r}"


def _response(raw: bytes) -> str | None:
    """The status name of a complete varint-delimited BlockOpResponseProto, else None."""
    length, shift, pos = 0, 0, 0
    while pos < len(raw):
        byte = raw[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    else:
        return None
    if len(raw) < pos + length:
        return None
    msg = dt.BlockOpResponseProto.FromString(raw[pos : pos + length])
    return str(dt.Status.Name(msg.status))


def wait_answer(
    tb: Testbed,
    want: Callable[[str], bool],
    host: str = "c1",
    dn: str = "dn1",
    timeout: float = 10.0,
) -> tuple[float, str]:
    """Ask every 50 ms until the answer satisfies `want`; (seconds it took, answer)."""
    start = time.monotonic()
    while True:
        got = answer(tb, host, dn, timeout=0.5)
        if want(got):
            return time.monotonic() - start, got
        if time.monotonic() - start > timeout:
            pytest.fail(f"no wanted answer within {timeout} s; last: {got}")
        time.sleep(0.05)


def from_engine(got: str) -> bool:
    return got.startswith("engine ")


def from_datanode(got: str) -> bool:
    return got.startswith("datanode ")


# ---- the rules, driven directly ---------------------------------------------------------------


@pytest.fixture(scope="session")
def testbed(kernel_tor_testbed: Testbed) -> Testbed:
    """This module tests the kernel mode: its testbed is the kernel-ToR session testbed."""
    return kernel_tor_testbed


@pytest.fixture(scope="class")
def stand_in(testbed: Testbed) -> Iterator[subprocess.Popen[bytes]]:
    """No supervisor; the stand-in engine listening on 19866 in tor-a."""
    with testbed.without_engine():
        proc = subprocess.Popen(
            testbed.argv("tor-a", STAND_IN.split()),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert proc.stdout is not None
            assert b"listening" in proc.stdout.readline()
            yield proc
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def rules(testbed: Testbed, stand_in: subprocess.Popen[bytes]) -> Iterator[Interceptor]:
    """An Interceptor for tor-a with the testbed's ports; removed after the test."""
    rules = Interceptor(InterceptSpec(), namespace=testbed.namespace("tor-a"))
    rules.remove()
    try:
        yield rules
    finally:
        rules.remove()


class TestRules:
    def test_transfer_port_is_intercepted_with_its_original_destination(
        self, testbed: Testbed, rules: Interceptor
    ) -> None:
        assert from_datanode(answer(testbed, "c1", "dn1"))  # before: the real DataNode
        bridge = rules.install()
        assert bridge.rack_ports == ("c1", "c2")  # the uplink is not a rack port
        for host, dn in [("c1", "dn1"), ("c2", "dn3"), ("c1", "dn2")]:
            got = answer(testbed, host, dn)
            want = f"{testbed.addresses[dn]}:{XFER} PEER {testbed.addresses[host]}"
            assert got == f"engine ORIGINAL_DST {want}"
        state = rules.state()
        assert state.active and state.leased_ports == ["c1", "c2"]
        assert state.counters["redirect"] == 3 and state.counters["new_flow"] == 3
        assert state.flows == 3

    def test_other_ports_and_icmp_are_switched(self, testbed: Testbed, rules: Interceptor) -> None:
        rules.install()
        dn1 = testbed.addresses["dn1"]
        ping = testbed.run("c1", ["ping", "-c", "2", "-W", "2", dn1], check=False)
        assert ping.returncode == 0, ping.stdout
        with testbed.connect("c1", dn1, DN_HTTP) as s:
            s.sendall(
                f"GET /jmx?qry=java.lang:type=Runtime HTTP/1.1\r\nHost: {dn1}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and b"java.lang:type=Runtime" in reply
        # A TCP port the bridge chain does not know stays bridged as well: refused by dn1.
        assert answer(testbed, "c1", "dn1", port=XFER - 1) == "refused"
        counters = rules.state().counters
        assert counters["redirect"] == 0 and counters["divert"] == 0

    def test_open_connection_stays_with_the_datanode(
        self, testbed: Testbed, rules: Interceptor
    ) -> None:
        request = missing_block_request(testbed)
        with testbed.connect("c1", testbed.addresses["dn1"], XFER) as early:
            rules.install()
            assert from_engine(answer(testbed, "c1", "dn1"))  # new connections: intercepted
            early.sendall(request)  # the open one: still the DataNode's
            raw = b""
            while _response(raw) is None:
                chunk = early.recv(4096)
                assert chunk, f"DataNode closed early: {raw!r}"
                raw += chunk
        assert _response(raw) == "ERROR"  # Hadoop: no such replica

    def test_after_remove_the_datanode_answers(self, testbed: Testbed, rules: Interceptor) -> None:
        rules.install()
        rules.install()  # idempotent: kept as it is
        assert rules.state().flows == 0
        assert from_engine(answer(testbed, "c1", "dn1"))
        assert rules.state().flows == 1
        rules.install()  # still the same tables: the diverted flow is remembered
        assert rules.state().flows == 1
        rules.remove()
        rules.remove()
        assert not rules.state().installed
        assert answer(testbed, "c1", "dn1") == "datanode ERROR"
        assert answer(testbed, "c2", "dn3") == "datanode ERROR"

    def test_new_flows_bypass_once_the_lease_runs_out(
        self, testbed: Testbed, stand_in: subprocess.Popen[bytes]
    ) -> None:
        short = Interceptor(InterceptSpec(lease_s=1.0), namespace=testbed.namespace("tor-a"))
        try:
            short.install()
            assert from_engine(answer(testbed, "c1", "dn1"))
            time.sleep(1.3)
            state = short.state()
            assert state.installed and not state.active
            assert from_datanode(answer(testbed, "c1", "dn1"))
            short.renew()
            assert from_engine(answer(testbed, "c1", "dn1"))
        finally:
            short.remove()


# ---- torswitch run, as the testbed starts it --------------------------------------------------


@pytest.fixture(scope="class")
def supervised(testbed: Testbed) -> Iterator[Testbed]:
    """`torswitch run` in tor-a supervising the stand-in instead of the engine."""
    with testbed.engine_as(STAND_IN):
        yield testbed


class TestSupervision:
    def test_intercepts_while_the_engine_is_healthy(self, supervised: Testbed) -> None:
        status = supervised.wait_engine()
        assert status["phase"] == "healthy"
        assert status["interception"]["leased_ports"] == ["c1", "c2"]
        argv = Path(f"/proc/{status['engine_pid']}/cmdline").read_bytes().split(b"\0")
        assert str(FAKE_ENGINE).encode() in argv
        got = answer(supervised, "c1", "dn2")
        assert got == (
            f"engine ORIGINAL_DST {supervised.addresses['dn2']}:{XFER} "
            f"PEER {supervised.addresses['c1']}"
        )

    def test_killed_engine_fails_open_within_a_second_and_comes_back(
        self, supervised: Testbed
    ) -> None:
        before = supervised.wait_engine()
        pid = supervised.kill_engine(signal.SIGKILL)
        took, _ = wait_answer(supervised, from_datanode)
        assert took < 1.2, f"the DataNode answered {took:.2f} s after the kill"
        after = supervised.wait_engine(timeout=15)
        assert after["engine_pid"] not in (None, pid)
        assert after["restarts"] == before["restarts"] + 1
        assert from_engine(answer(supervised, "c1", "dn1"))
        log = supervised.supervisor_log()
        assert "killed by signal 9" in log and "interception off" in log

    def test_frozen_engine_fails_open_and_recovers(self, supervised: Testbed) -> None:
        supervised.wait_engine()
        pid = supervised.kill_engine(signal.SIGSTOP)
        try:
            took, _ = wait_answer(supervised, from_datanode)
            assert took < 2.0, f"the DataNode answered {took:.2f} s after the freeze"
        finally:
            os.kill(pid, signal.SIGCONT)
        status = supervised.wait_engine(timeout=10)
        assert status["engine_pid"] == pid  # thawed in time: the same process
        assert from_engine(answer(supervised, "c1", "dn1"))

    def test_dead_supervisor_leaves_rules_only_for_the_lease(self, supervised: Testbed) -> None:
        status = supervised.wait_engine()
        engine = status["engine_pid"]
        os.kill(status["supervisor_pid"], signal.SIGKILL)
        killed = time.monotonic()
        took, _ = wait_answer(supervised, from_datanode, timeout=15)
        # The lease is 5 s, last renewed at most 1 s before the kill.
        assert 3.0 < took < 7.0, f"the DataNode answered {took:.2f} s after the kill"
        # The engine got SIGTERM when its parent died.
        deadline = killed + 10
        while hadoop.pid_alive(engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not hadoop.pid_alive(engine)
        # A new supervisor clears the expired tables and intercepts again.
        supervised.restart_engine(STAND_IN)
        assert from_engine(answer(supervised, "c1", "dn1"))

    def test_sigterm_removes_the_rules_and_stops_the_engine(self, supervised: Testbed) -> None:
        status = supervised.wait_engine()
        assert supervised.stop_engine()
        assert not hadoop.pid_alive(status["engine_pid"])
        assert not hadoop.pid_alive(status["supervisor_pid"])
        stopped = supervised.engine_status()
        assert not stopped["supervisor_running"]
        assert not stopped["interception"]["installed"]
        assert from_datanode(answer(supervised, "c1", "dn1"))
        log = supervised.supervisor_log()
        assert "SIGTERM: shutting down" in log and log.rstrip().endswith("supervisor stopped")
        supervised.start_engine(STAND_IN)
        assert from_engine(answer(supervised, "c1", "dn1"))


# ---- the testbed with the real engine ---------------------------------------------------------


def torswitch(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torswitch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_status_shows_the_engine_and_reads_go_through_it(testbed: Testbed) -> None:
    if not testbed.engine_enabled:
        pytest.skip("the session's testbed runs without the engine (TORSWITCH_TEST_ENGINE=0)")
    testbed.wait_engine()
    status = torswitch("testbed", "status", "--instance", testbed.instance, "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    engine = json.loads(status.stdout)["engine"]
    assert engine["enabled"] and engine["supervisor_running"] and engine["phase"] == "healthy"
    argv = Path(f"/proc/{engine['engine_pid']}/cmdline").read_bytes().split(b"\0")
    assert (
        argv[-4:-2] == [b"engine", b"--config"] and argv[-2] == str(testbed.engine_config).encode()
    )
    assert engine["interception"]["active"]
    assert engine["cache_dir"] == str(testbed.cache_dir) and testbed.cache_dir.is_dir()
    text = torswitch("testbed", "status", "--instance", testbed.instance).stdout
    assert f"engine: pid {engine['engine_pid']} (healthy" in text
    assert "interception installed on c1, c2" in text

    data = os.urandom(3 << 20)
    path = "/t/interception/through-engine.bin"
    testbed.run("c1", ["hdfs", "dfs", "-mkdir", "-p", "/t/interception"])
    testbed.run("c1", ["hdfs", "dfs", "-put", "-f", "-", path], input=data)
    redirected = engine["interception"]["counters"]["redirect"]
    code = (
        "import sys\nfrom hdfs_native import Client\n"
        "sys.stdout.buffer.write(Client().read(sys.argv[1]).read())"
    )
    assert testbed.python("c1", code, path).stdout == data
    after = testbed.engine_status()["interception"]["counters"]["redirect"]
    assert after > redirected
    assert "engine ready" in testbed.engine_log()


def test_up_without_cache_is_plain_switching(testbed: Testbed) -> None:
    instance = testbed.instance[:9] + "n"
    torswitch("testbed", "down", "--instance", instance)
    up = torswitch("testbed", "up", "--instance", instance, "--datanodes", "1", "--no-cache")
    try:
        assert up.returncode == 0, up.stderr
        assert "no block engine" in up.stdout
        report = json.loads(torswitch("testbed", "status", "--instance", instance, "--json").stdout)
        assert report["up"] and report["engine"] == {"enabled": False}
        assert not tor.cache_dir(instance).exists()
        side = Testbed.attach(instance)
        assert not Interceptor(InterceptSpec(), namespace=side.namespace("tor-a")).state().installed
        assert answer(side, "c1", "dn1") == "datanode ERROR"
        tor_ns = topology.namespace(instance, "tor-a")
        pids = subprocess.run(
            ["ip", "netns", "pids", tor_ns], capture_output=True, text=True, check=True
        )
        assert pids.stdout.split() == []  # no supervisor, no engine
    finally:
        down = torswitch("testbed", "down", "--instance", instance)
    assert down.returncode == 0, down.stderr
    assert topology.instance_namespaces(instance) == []
