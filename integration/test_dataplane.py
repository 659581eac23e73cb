"""The DPDK data plane switches real traffic between network namespaces and survives garbage.

Topology (all namespaces prefixed dp6-, addresses 198.18.60.0/24):

    dp6-h1 eth0 .1 ──veth── dp6p1 ┐
    dp6-h2 eth0 .2 ──veth── dp6p2 ├─ tsw-dataplane (af_packet ports) in dp6-tor
    dp6-h3 eth0 .3 ──veth── dp6p3 ┘   + net_tap port dp6tap0 (.254): the exception path

(dp6 is the default stem of every name; $TORSWITCH_TEST_DP_STEM changes it.) Hosts' veths have
transmit checksum offload off (tor-interception.md B.4). The data plane steers rack TCP to port
9866 to the tap, where an nftables redirect hands it to a listener in dp6-tor. The control
channel tests change steering at run time and restore it; the fail-open test runs a health
checker against a stand-in engine in dp6-tor and a stand-in DataNode on dp6-h2. The per-flow
tests keep connections open across steering changes (each connection stays with the side that
got its SYN), and the lease test lets a leased "steering on" run out.
Everything is torn down by the fixtures, also on failure. If DPDK cannot start, tests fail with
its log; nothing is skipped.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from torswitch import cli
from torswitch.dataplane import ControlError, Dataplane, DataplaneConfig, in_netns, tcp_probe

# The stem of every name here (namespaces, interfaces, the nft table, the EAL prefix):
# $TORSWITCH_TEST_DP_STEM, so two runs side by side do not collide (at most 6 characters).
STEM = os.environ.get("TORSWITCH_TEST_DP_STEM", "dp6")
PREFIX = f"{STEM}-"
HOSTS = {f"{PREFIX}h{i}": f"198.18.60.{i}" for i in (1, 2, 3)}
TOR = f"{PREFIX}tor"
TAP = f"{STEM}tap0"
PORTS = [f"{STEM}p{i}" for i in (1, 2, 3)]
NFT = STEM
TAP_ADDR = "198.18.60.254"
STEER_PORT = 9866
ENGINE_PORT = 19866
ECHO_PORT = 7000

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
        data = c.recv(65535)
        c.sendall(data)
"""

# A stand-in for the block engine: reads the original destination (SO_ORIGINAL_DST, option 80)
# and answers with it, so the test sees that the connection was intercepted.
ENGINE = r"""
import socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    with c:
        raw = c.getsockopt(socket.SOL_IP, 80, 16)
        port, addr = struct.unpack_from("!H4s", raw, 2)
        c.recv(100)
        c.sendall(b"engine saw %s:%d" % (socket.inet_ntoa(addr).encode(), port))
"""

CLIENT = r"""
import socket, sys
proto, host, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
if proto == "tcp":
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(msg); print(s.recv(65535).decode())
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


def run(*argv: str, netns: str | None = None, check: bool = True,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}): {res.stdout}{res.stderr}")
    return res


def delete_namespaces() -> None:
    names = run("ip", "netns", "list").stdout.split()
    for name in names:
        if name.startswith(PREFIX):
            run("ip", "netns", "delete", name, check=False)


@pytest.fixture(scope="module")
def topology() -> Iterator[None]:
    delete_namespaces()  # leftovers of a killed run
    try:
        run("ip", "netns", "add", TOR)
        run("ip", "-n", TOR, "link", "set", "lo", "up")
        for i, (ns, addr) in enumerate(HOSTS.items(), 1):
            run("ip", "netns", "add", ns)
            # Both ends are created inside our namespaces; nothing touches the host's interfaces.
            run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                PORTS[i - 1], "netns", TOR)
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ethtool", "-K", "eth0", "tx", "off", netns=ns)
            run("ip", "-n", TOR, "link", "set", PORTS[i - 1], "up")
        yield
    finally:
        delete_namespaces()


class Daemon:
    """A helper Python script running in a namespace until teardown; waits for 'ready'."""

    def __init__(self, netns: str, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise AssertionError(f"helper in {netns} failed: {line}{self.proc.stderr.read()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def dataplane(topology: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataplane]:
    config = DataplaneConfig(
        rack_ifaces=PORTS, tap_iface=TAP,
        steer_tcp_ports=[STEER_PORT], netns=TOR, stats_interval_ms=100,
        file_prefix=f"{STEM}-test")
    dp = Dataplane(config, tmp_path_factory.mktemp("dataplane"))
    dp.start()  # raises with DPDK's log if it cannot start: never a skip
    try:
        run("ip", "-n", TOR, "addr", "add", f"{TAP_ADDR}/24", "dev", TAP)
        run("ip", "-n", TOR, "link", "set", TAP, "up")
        yield dp
    finally:
        status = dp.stop()
        print(dp.log_tail(60))
        assert status == 0, f"data plane exited with {status}"


@pytest.fixture(scope="module")
def echo_servers(dataplane: Dataplane) -> Iterator[None]:
    daemons: list[Daemon] = []
    try:
        for ns in HOSTS:
            daemons.append(Daemon(ns, ECHO_SERVER, str(ECHO_PORT)))
        yield
    finally:
        for d in daemons:
            d.stop()


PAIRS = list(itertools.permutations(HOSTS, 2))


@pytest.mark.parametrize("src,dst", PAIRS)
def test_ping(dataplane: Dataplane, src: str, dst: str) -> None:
    res = run("ping", "-c", "2", "-i", "0.2", "-W", "2", HOSTS[dst], netns=src, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    dataplane.check()


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("src,dst", PAIRS)
def test_echo(dataplane: Dataplane, echo_servers: None, proto: str, src: str, dst: str) -> None:
    msg = f"{proto}-{src}-{dst}-" + "x" * 1000
    res = run(sys.executable, "-c", CLIENT, proto, HOSTS[dst], str(ECHO_PORT), msg, netns=src)
    assert res.stdout.strip() == msg
    dataplane.check()


def test_counters_add_up(dataplane: Dataplane) -> None:
    run("ping", "-c", "3", "-i", "0.2", "-W", "2", HOSTS[f"{PREFIX}h2"], netns=f"{PREFIX}h1")
    c = dataplane.wait_counters()
    p1 = c.port(PORTS[0])
    assert p1["rx_packets"] >= 3 and c.port(PORTS[1])["tx_packets"] >= 3
    assert c.totals["mac_learned"] >= 3
    assert set(c.help) >= {"rx_packets", "tx_dropped", "rx_l3_malformed", "idle_sleeps"}


def test_idle_backs_off(dataplane: Dataplane) -> None:
    before = dataplane.wait_counters().totals["idle_sleeps"]
    time.sleep(1)
    after = dataplane.wait_counters().totals["idle_sleeps"]
    assert after > before, "an idle data plane must sleep, not spin"


def test_hdfs_port_steered_to_tap(dataplane: Dataplane, echo_servers: None) -> None:
    run("nft", f"add table ip {NFT}", netns=TOR)
    try:
        run("nft", f"add chain ip {NFT} pre {{ type nat hook prerouting priority -100 ; }}",
            netns=TOR)
        run("nft", f'add rule ip {NFT} pre iifname "{TAP}" tcp dport {STEER_PORT} '
            f"redirect to :{ENGINE_PORT}", netns=TOR)
        engine = Daemon(TOR, ENGINE, str(ENGINE_PORT))
        try:
            before = dataplane.wait_counters().port(PORTS[0])["steered"]
            dst = HOSTS[f"{PREFIX}h2"]
            res = run(sys.executable, "-c", CLIENT, "tcp", dst, str(STEER_PORT), "read",
                      netns=f"{PREFIX}h1")
            assert res.stdout.strip() == f"engine saw {dst}:{STEER_PORT}"
            assert dataplane.wait_counters().port(PORTS[0])["steered"] > before
        finally:
            engine.stop()
    finally:
        run("nft", f"delete table ip {NFT}", netns=TOR, check=False)
    # Other TCP between the same hosts is still switched straight through.
    res = run(sys.executable, "-c", CLIENT, "tcp", HOSTS[f"{PREFIX}h2"], str(ECHO_PORT), "hi",
              netns=f"{PREFIX}h1")
    assert res.stdout.strip() == "hi"


def _mac(netns: str) -> bytes:
    return bytes.fromhex(run("cat", "/sys/class/net/eth0/address", netns=netns)
                         .stdout.strip().replace(":", ""))


def _ipv4(version_ihl: int, total_length: int, body: int = 20) -> bytes:
    hdr = bytes([version_ihl, 0]) + total_length.to_bytes(2, "big") + bytes(4)
    hdr += bytes([64, 6, 0, 0]) + bytes([198, 18, 60, 1, 198, 18, 60, 2])
    return hdr + bytes(max(0, body - 20))


def test_garbage_frames_counted_not_fatal(dataplane: Dataplane, echo_servers: None) -> None:
    h1 = f"{PREFIX}h1"
    src, dst = _mac(h1), _mac(f"{PREFIX}h2")
    eth = dst + src + b"\x08\x00"
    malformed = [
        eth + bytes(8),                        # IPv4 header truncated to 8 bytes
        eth + _ipv4(0x42, 40, 40),             # IHL 2 (< 5)
        eth + _ipv4(0x65, 40, 40),             # version 6 under the IPv4 ethertype
        eth + _ipv4(0x45, 1400, 40),           # total length beyond the frame
        eth + _ipv4(0x4F, 40, 40),             # IHL 15 (60 bytes) > total length 40
    ]
    rng = random.Random(6)
    noise = [rng.randbytes(rng.randrange(14, 1500)) for _ in range(200)]
    bad_src = sum(1 for f in noise if f[6] & 1 or f[6:12] == bytes(6))
    runts = [b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a"]

    before = dataplane.wait_counters().port(PORTS[0])
    frames = malformed + noise + runts
    refused = 0
    for i in range(0, len(frames), 50):
        res = run(sys.executable, "-c", INJECT, *(f.hex() for f in frames[i:i + 50]),
                  netns=h1)
        refused += int(res.stdout)
    assert refused <= len(runts), "only runts may be refused by the kernel"
    time.sleep(0.5)
    dataplane.check()
    after = dataplane.wait_counters().port(PORTS[0])

    assert after["rx_l3_malformed"] - before["rx_l3_malformed"] >= len(malformed)
    assert after["rx_bad_src_mac"] - before["rx_bad_src_mac"] == bad_src
    assert after["rx_packets"] - before["rx_packets"] >= len(malformed) + len(noise)
    # A runt the kernel let through must be counted as one.
    assert after["rx_runt"] - before["rx_runt"] == len(runts) - refused
    # Still switching after the garbage.
    res = run(sys.executable, "-c", CLIENT, "udp", HOSTS[f"{PREFIX}h3"], str(ECHO_PORT), "ok",
              netns=h1)
    assert res.stdout.strip() == "ok"


# ---- control channel and fail-open ----------------------------------------------------------

def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def hdfs_redirect(dataplane: Dataplane, echo_servers: None) -> Iterator[None]:
    """The ToR's redirect of steered HDFS TCP to ENGINE_PORT, and a stand-in DataNode (an echo
    server) on dp6-h2's STEER_PORT, so a direct connection answers with its own message."""
    run("nft", f"add table ip {NFT}", netns=TOR)
    datanode: Daemon | None = None
    try:
        run("nft", f"add chain ip {NFT} pre {{ type nat hook prerouting priority -100 ; }}",
            netns=TOR)
        run("nft", f'add rule ip {NFT} pre iifname "{TAP}" tcp dport {STEER_PORT} '
            f"redirect to :{ENGINE_PORT}", netns=TOR)
        datanode = Daemon(f"{PREFIX}h2", ECHO_SERVER, str(STEER_PORT))
        yield
    finally:
        if datanode is not None:
            datanode.stop()
        run("nft", f"delete table ip {NFT}", netns=TOR, check=False)


def _hdfs_read(msg: str) -> str:
    """Connect from h1 to h2's DataNode port; the answer says who served it."""
    res = run(sys.executable, "-c", CLIENT, "tcp", HOSTS[f"{PREFIX}h2"], str(STEER_PORT), msg,
              netns=f"{PREFIX}h1")
    return res.stdout.strip()


ENGINE_SAW = f"engine saw {HOSTS[f'{PREFIX}h2']}:{STEER_PORT}"


def test_control_status_and_validation(dataplane: Dataplane) -> None:
    ctl = dataplane.control
    st = ctl.status()
    assert st["protocol"] == "1" and st["mode"] == "switch" and st["ports"] == "4"
    assert st["steering"] == "on" and st["steer_tcp_ports"] == str(STEER_PORT)
    assert st["tap_port"] == "3"
    # Invalid commands are refused whole and change nothing.
    for bad in (("steer-ports", "9866", "0"), ("steer-ports", *map(str, range(1, 10))),
                ("steering", "maybe"), ("nonsense",), ("status", "extra")):
        with pytest.raises(ControlError):
            ctl.request(*bad)
    assert ctl.status() == st
    # Another protocol version is answered in v1, with the request's sequence word.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
        raw.bind(str(dataplane.workdir / "raw.sock"))
        raw.settimeout(2)
        raw.sendto(b"v9 77 status", str(dataplane.control_path))
        assert raw.recv(4096) == b"v1 77 error unsupported protocol version\n"
    (dataplane.workdir / "raw.sock").unlink()
    # The counters over the channel are the stats file's.
    over_channel = ctl.counters(dataplane.config.port_ifaces())
    assert set(over_channel.ports) == {*PORTS, TAP}
    assert set(over_channel.help) == set(dataplane.counters().help)


def test_control_steer_ports_apply(dataplane: Dataplane, hdfs_redirect: None) -> None:
    engine = Daemon(TOR, ENGINE, str(ENGINE_PORT))
    try:
        assert _hdfs_read("a") == ENGINE_SAW
        dataplane.control.set_steer_ports([])
        assert dataplane.control.status()["steer_tcp_ports"] == ""
        assert _hdfs_read("direct-1") == "direct-1"
        dataplane.control.set_steer_ports([9999, STEER_PORT])
        assert _hdfs_read("b") == ENGINE_SAW
        dataplane.control.set_steering(False)
        assert _hdfs_read("direct-2") == "direct-2"
    finally:
        engine.stop()
        dataplane.control.set_steer_ports([STEER_PORT])
        dataplane.control.set_steering(True)


def test_fail_open_follows_engine_health(dataplane: Dataplane, hdfs_redirect: None) -> None:
    probe = tcp_probe("127.0.0.1", ENGINE_PORT, netns=TOR, timeout=0.3)
    checker = dataplane.start_health_check(probe, interval=0.1, rise=2, fall=2)
    engine: Daemon | None = None
    try:
        # No engine listening: steering goes off and HDFS reaches the DataNode directly.
        _wait_for(lambda: checker.healthy is False, "unhealthy verdict")
        _wait_for(lambda: dataplane.control.status()["steering"] == "off", "steering off")
        assert _hdfs_read("no-engine") == "no-engine"
        # The engine comes up: steering comes back and the read is intercepted.
        engine = Daemon(TOR, ENGINE, str(ENGINE_PORT))
        _wait_for(lambda: dataplane.control.status()["steering"] == "on", "steering on")
        assert checker.healthy is True
        assert _hdfs_read("with-engine") == ENGINE_SAW
        # The engine dies: fail open again.
        engine.stop()
        engine = None
        _wait_for(lambda: dataplane.control.status()["steering"] == "off", "steering off again")
        assert _hdfs_read("engine-gone") == "engine-gone"
        assert checker.transitions == 3
    finally:
        if engine is not None:
            engine.stop()
        dataplane.stop_health_check(steering=True)


def test_cli_status_and_counters(dataplane: Dataplane,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = str(dataplane.control_path)
    assert cli.main(["dataplane", "status", "--control", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steering"] == "on"
    assert cli.main(["dataplane", "counters", "--control", path, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["ports"]["net_af_packet0"]["rx_packets"] > 0
    assert "mac_learned" in got["totals"]
    assert cli.main(["dataplane", "counters", "--control", path]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["counter", "net_af_packet0", "net_af_packet1",
                                             "net_af_packet2", "net_tap0"]
    assert any(line.startswith("rx_packets ") for line in table.splitlines())
    assert cli.main(["dataplane", "status", "--control", path + ".missing"]) == 1


# ---- steering per flow, and its lease (issue 6) -----------------------------------------------

# A line server for long-lived connections: answers each line with TAG:line, any number of
# times per connection, many connections at once.
LINE_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
tag = sys.argv[2].encode()
def serve(c):
    with c, c.makefile("rwb") as f:
        for line in f:
            f.write(tag + b":" + line)
            f.flush()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@pytest.fixture
def line_servers(dataplane: Dataplane) -> Iterator[None]:
    """The ToR's redirect of steered TCP to a line server tagged "engine" in the ToR, and a line
    server tagged "dn" on h2's STEER_PORT (the DataNode)."""
    daemons: list[Daemon] = []
    run("nft", f"add table ip {NFT}", netns=TOR)
    try:
        run("nft", f"add chain ip {NFT} pre {{ type nat hook prerouting priority -100 ; }}",
            netns=TOR)
        run("nft", f'add rule ip {NFT} pre iifname "{TAP}" tcp dport {STEER_PORT} '
            f"redirect to :{ENGINE_PORT}", netns=TOR)
        daemons.append(Daemon(TOR, LINE_SERVER, str(ENGINE_PORT), "engine"))
        daemons.append(Daemon(f"{PREFIX}h2", LINE_SERVER, str(STEER_PORT), "dn"))
        yield
    finally:
        for d in daemons:
            d.stop()
        run("nft", f"delete table ip {NFT}", netns=TOR, check=False)


class LineClient:
    """A connection from h1 to h2's STEER_PORT, opened in h1's namespace from this process."""

    def __init__(self) -> None:
        with in_netns(f"{PREFIX}h1"):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect((HOSTS[f"{PREFIX}h2"], STEER_PORT))
        self.file = self.sock.makefile("rwb")

    def say(self, msg: str) -> str:
        """Send one line; returns the answer line (TAG:msg), without its newline."""
        self.file.write(msg.encode() + b"\n")
        self.file.flush()
        return self.file.readline().decode().rstrip("\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_steering_is_decided_per_flow(dataplane: Dataplane, line_servers: None) -> None:
    ctl = dataplane.control
    big = "x" * 30000  # many segments each way
    clients: list[LineClient] = []
    before = dataplane.wait_counters().totals
    try:
        ctl.set_steering(True)
        steered = LineClient()
        clients.append(steered)
        assert steered.say("one") == "engine:one"
        ctl.set_steering(False)
        # New connections go straight to the DataNode at once; the steered one stays.
        direct = LineClient()
        clients.append(direct)
        assert direct.say("two") == "dn:two"
        assert steered.say(big) == "engine:" + big
        ctl.set_steering(True)
        # And the other way round: the direct one stays direct.
        assert direct.say(big) == "dn:" + big
        fresh = LineClient()
        clients.append(fresh)
        assert fresh.say("three") == "engine:three"
        assert steered.say("four") == "engine:four" and direct.say("five") == "dn:five"
        after = dataplane.wait_counters().totals
        assert after["flows_steered"] - before["flows_steered"] == 2
        assert after["flows_direct"] - before["flows_direct"] == 1
        assert after["flow_evicted"] == before["flow_evicted"]
    finally:
        for c in clients:
            c.close()
        ctl.set_steering(True)
    dataplane.check()


def test_steering_lease_runs_out(dataplane: Dataplane) -> None:
    ctl = dataplane.control
    try:
        st = ctl.status()
        assert st["flow_slots"] == "65536" and st["flow_idle_s"] == "300"
        ctl.set_steering(True, lease_ms=400)
        assert 0 < int(ctl.status()["steering_lease_ms"]) <= 400
        for _ in range(6):  # renewed every 0.2 s: stays on for 1.2 s
            time.sleep(0.2)
            assert ctl.status()["steering"] == "on"
            ctl.set_steering(True, lease_ms=400)
        _wait_for(lambda: ctl.status()["steering"] == "off", "the lease to run out", 2.0)
        assert ctl.status()["steering_lease_ms"] == "none"
        assert "lease ran out" in dataplane.log_tail(5)
        # Without a lease, on stays on; off cancels a lease.
        ctl.set_steering(True, lease_ms=300)
        ctl.set_steering(True)
        assert ctl.status()["steering_lease_ms"] == "none"
        time.sleep(0.6)
        assert ctl.status()["steering"] == "on"
        with pytest.raises(ControlError, match="lease"):
            ctl.request("steering", "off", "100")
        with pytest.raises(ControlError, match="lease"):
            ctl.request("steering", "on", "0")
    finally:
        ctl.set_steering(True)
