"""The DPDK data plane on two lcores: queues dealt to both workers, flows switched, steered per
flow and memcached served through worker 0 (native/dataplane/dp.h, "Workers").

Topology (namespaces prefixed mq-, addresses 198.18.74.0/24, VIP 198.18.74.100:11211):

    mq-h1 eth0 .1  ──veth── mqp1 ┐
    mq-h2 eth0 .2  ──veth── mqp2 │
    mq-h3 eth0 .3  ──veth── mqp3 ├─ tsw-dataplane -l 0,1, af_packet ports with qpairs=2,
    mq-s1 eth0 .11 ──veth── mqp4 │  in mq-tor
    mq-s2 eth0 .12 ──veth── mqp5 ┘  + net_tap port mqtap0 (.254, two queues): the exception path

Every port has two rx queues, dealt round-robin to the two workers; the kernel's fanout hash
spreads the flows of an af_packet port over its two sockets. The hosts run a threaded echo
server (TCP and UDP); the servers run Debian's memcached on the VIP (on lo, arp_ignore=1,
arp_announce=2), as in integration/test_dp_memcached.py. Many flows at once make both workers
busy; memcached frames that reach worker 1 are handed to worker 0, which owns the cache (the
worker counters say how many). Everything is torn down by the module fixture, also on failure;
if DPDK or memcached cannot start, tests fail, never skip.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest
from test_dataplane import LINE_SERVER, Daemon, run
from test_dp_memcached import wait_tcp

from torswitch.config import Pool, Server
from torswitch.dataplane import Counters, Dataplane, DataplaneConfig, McServer, in_netns
from torswitch.memcache_udp import UdpClient
from torswitch.routing import Ring

PREFIX = "mq-"
TOR = f"{PREFIX}tor"
HOSTS = {f"{PREFIX}h{i}": f"198.18.74.{i}" for i in (1, 2, 3)}
SERVERS = {f"{PREFIX}s{i}": f"198.18.74.{10 + i}" for i in (1, 2)}
NAMESPACES = {**HOSTS, **SERVERS}
PORTS = [f"mqp{i}" for i in range(1, len(NAMESPACES) + 1)]
TAP = "mqtap0"
TAP_ADDR = "198.18.74.254"
VIP = "198.18.74.100"
MC_PORT = 11211
VMAC = "02:00:00:74:01:00"
POOL = "mqpool"
ECHO_PORT = 7000
STEER_PORT = 9866
ENGINE_PORT = 19866
NFT = "mqsteer"
# After a pool is published (a cache flush) no fill is recorded for this long (dp_mc_cache.h).
WRITE_TIMEOUT_MS = 300
H1, H2, H3 = HOSTS

# A threaded echo server: TCP (echoes until the client closes) and UDP.
ECHO_SERVER = r"""
import socket, sys, threading
port = int(sys.argv[1])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
def udp():
    while True:
        data, peer = u.recvfrom(65535); u.sendto(data, peer)
def serve(c):
    with c:
        while True:
            data = c.recv(65536)
            if not data:
                return
            c.sendall(data)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = t.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


class Bed(NamedTuple):
    dp: Dataplane
    pool: Pool  # the memcached pool as torswitch.config describes it
    macs: dict[str, str]  # namespace -> eth0 MAC


def delete_namespaces() -> None:
    for name in run("ip", "netns", "list").stdout.split():
        if name.startswith(PREFIX):
            run("ip", "netns", "delete", name, check=False)


def mc_servers(bed: Bed) -> list[McServer]:
    """The pool's servers in nutcracker's order (as Ring builds its ring)."""
    out = [McServer(sid=40 + i, ip=srv.host, port=srv.port, mac=bed.macs[ns],
                    weight=srv.weight, identity=srv.identity)
           for i, (ns, srv) in enumerate(zip(SERVERS, bed.pool.servers, strict=True))]
    return sorted(out, key=lambda s: (len(s.identity), s.identity))


def push_pool(bed: Bed) -> None:
    bed.dp.control.mc_pool(0, POOL, VIP, MC_PORT, VMAC, bed.pool.hash, bed.pool.distribution,
                           bed.pool.hash_tag, True, mc_servers(bed))


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    delete_namespaces()  # leftovers of a killed run
    daemons: list[subprocess.Popen[bytes]] = []
    echo: list[Daemon] = []
    dp: Dataplane | None = None
    try:
        run("ip", "netns", "add", TOR)
        run("ip", "-n", TOR, "link", "set", "lo", "up")
        macs = {}
        for port, (ns, addr) in zip(PORTS, NAMESPACES.items(), strict=True):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                "netns", TOR)
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ethtool", "-K", "eth0", "tx", "off", netns=ns)
            run("ip", "-n", TOR, "link", "set", port, "up")
            macs[ns] = run("cat", "/sys/class/net/eth0/address", netns=ns).stdout.strip()
        for ns, addr in SERVERS.items():
            run("ip", "-n", ns, "addr", "add", f"{VIP}/32", "dev", "lo")
            run("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2", netns=ns)
            daemons.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "memcached", "-U", str(MC_PORT), "-p",
                 str(MC_PORT), "-l", f"{VIP},{addr}", "-u", "nobody", "-t", "2", "-m", "16"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        config = DataplaneConfig(
            rack_ifaces=PORTS, tap_iface=TAP, steer_tcp_ports=[STEER_PORT], netns=TOR,
            stats_interval_ms=100, file_prefix=f"{PREFIX}test", lcores=[0, 1],
            mc_hot_threshold=2, mc_cache_ttl_ms=60000, mc_write_timeout_ms=WRITE_TIMEOUT_MS)
        dp = Dataplane(config, tmp_path_factory.mktemp("dp-multicore"))
        dp.start()  # raises with DPDK's log if it cannot start: never a skip
        run("ip", "-n", TOR, "addr", "add", f"{TAP_ADDR}/24", "dev", TAP)
        run("ip", "-n", TOR, "link", "set", TAP, "up")
        for ns in HOSTS:
            echo.append(Daemon(ns, ECHO_SERVER, str(ECHO_PORT)))
        for ns, addr in SERVERS.items():
            wait_tcp(ns, addr, MC_PORT)
        pool = Pool(name=POOL, servers=tuple(Server(a, MC_PORT, 1) for a in SERVERS.values()))
        b = Bed(dp, pool, macs)
        push_pool(b)
        yield b
    finally:
        for d in echo:
            d.stop()
        status = dp.stop() if dp is not None else 0
        for p in daemons:
            p.send_signal(signal.SIGTERM)
            p.wait()
        delete_namespaces()
        if dp is not None:
            print(dp.log_tail(60))
        assert status == 0, f"data plane exited with {status}"


def worker(c: Counters, name: str, idx: int) -> int:
    """A per-worker counter (worker_NAME) of worker idx."""
    return next(v for k, v in c.labelled[f"worker_{name}"].items()
                if k.startswith(f"worker={idx},"))


def parallel(jobs: list[Callable[[], None]]) -> None:
    """Run the jobs in threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def wrap(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a flow hung"


def _socket(ns: str, kind: int) -> socket.socket:
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, kind)
    s.settimeout(5)
    return s


def tcp_echo(src: str, dst: str, size: int) -> Callable[[], None]:
    def job() -> None:
        payload = (f"{src}>{dst}:".encode() * (size // 8 + 1))[:size]
        with _socket(src, socket.SOCK_STREAM) as s:
            s.connect((HOSTS[dst], ECHO_PORT))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while len(got) < size:
                chunk = s.recv(65536)
                assert chunk, f"{src}->{dst}: connection closed after {len(got)} bytes"
                got += chunk
            assert got == payload
    return job


def udp_echo(src: str, dst: str, count: int) -> Callable[[], None]:
    def job() -> None:
        with _socket(src, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            for i in range(count):
                msg = f"{src}>{dst}#{i}".encode()
                for _ in range(5):
                    s.sendto(msg, (HOSTS[dst], ECHO_PORT))
                    try:
                        if s.recv(65536) == msg:
                            break
                    except TimeoutError:
                        continue
                else:
                    raise AssertionError(f"no UDP echo {src}->{dst} #{i}")
    return job


# ---- tests ------------------------------------------------------------------------------------

def test_two_workers_share_the_queues(bed: Bed) -> None:
    st = bed.dp.control.status()
    assert st["workers"] == "2"
    assert {st["worker0_lcore"], st["worker1_lcore"]} == {"0", "1"}
    pairs = []
    for w in (0, 1):
        mine = st[f"worker{w}_rxq"].split(",")
        assert len(mine) == len(PORTS) + 1, mine  # 6 ports x 2 queues over 2 workers
        pairs += mine
    ports = list(range(len(PORTS) + 1))  # the af_packet ports, then the tap
    assert sorted(pairs) == sorted(f"{p}:{q}" for p in ports for q in (0, 1))
    for p in ports:
        assert st[f"port{p}_rxq"] == "2" and st[f"port{p}_txq"] == "2"
    assert "tsw-dataplane: worker 1 lcore 1 polls" in bed.dp.log_tail(60)


@pytest.mark.parametrize("src,dst", list(itertools.permutations(HOSTS, 2)))
def test_ping(bed: Bed, src: str, dst: str) -> None:
    res = run("ping", "-c", "2", "-i", "0.2", "-W", "2", HOSTS[dst], netns=src, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_many_flows_on_both_workers(bed: Bed) -> None:
    before = bed.dp.wait_counters()
    jobs = []
    for src, dst in itertools.permutations(HOSTS, 2):
        jobs += [tcp_echo(src, dst, 20000 + 977 * i) for i in range(6)]
        jobs += [udp_echo(src, dst, 5) for _ in range(6)]
    parallel(jobs)
    bed.dp.check()
    after = bed.dp.wait_counters()
    for w in (0, 1):
        got = worker(after, "rx_packets", w) - worker(before, "rx_packets", w)
        assert got > 200, f"worker {w} received only {got} frames"
    assert after.sum("tx_dropped") == before.sum("tx_dropped")


def test_steering_per_flow_on_both_workers(bed: Bed) -> None:
    """Many connections to the DataNode port: every one sticks to the side that got its SYN,
    on whichever worker its queue is, and no segment is ever missing from its worker's flow
    table (flow_unknown: the queues keep each connection's segments together)."""
    ctl = bed.dp.control
    daemons: list[Daemon] = []
    socks: list[tuple[socket.socket, str]] = []
    run("nft", f"add table ip {NFT}", netns=TOR)
    try:
        run("nft", f"add chain ip {NFT} pre {{ type nat hook prerouting priority -100 ; }}",
            netns=TOR)
        run("nft", f'add rule ip {NFT} pre iifname "{TAP}" tcp dport {STEER_PORT} '
            f"redirect to :{ENGINE_PORT}", netns=TOR)
        daemons.append(Daemon(TOR, LINE_SERVER, str(ENGINE_PORT), "engine"))
        daemons.append(Daemon(H2, LINE_SERVER, str(STEER_PORT), "dn"))
        before = bed.dp.wait_counters().totals

        def connect(n: int, tag: str) -> None:
            for _ in range(n):
                s = _socket(H1 if len(socks) % 2 else H3, socket.SOCK_STREAM)
                s.connect((HOSTS[H2], STEER_PORT))
                socks.append((s, tag))

        def say(s: socket.socket, msg: bytes) -> bytes:
            s.sendall(msg + b"\n")
            got = b""
            while not got.endswith(b"\n"):
                chunk = s.recv(65536)
                assert chunk, "connection closed"
                got += chunk
            return got[:-1]

        ctl.set_steering(True)
        connect(12, "engine")
        ctl.set_steering(False)
        connect(12, "dn")
        big = b"y" * 20000
        for _ in range(2):
            for s, tag in socks:
                assert say(s, big) == tag.encode() + b":" + big
        after = bed.dp.wait_counters().totals
        assert after["flows_steered"] - before["flows_steered"] == 12
        assert after["flows_direct"] - before["flows_direct"] == 12
        assert after["flow_unknown"] == before["flow_unknown"]
    finally:
        for s, _ in socks:
            s.close()
        for d in daemons:
            d.stop()
        run("nft", f"delete table ip {NFT}", netns=TOR, check=False)
        ctl.set_steering(True)


def client(ns: str) -> UdpClient:
    with in_netns(ns):
        return UdpClient(VIP, MC_PORT, timeout=1.0, retries=3)


def tcp_get(ns: str, key: bytes) -> bytes | None:
    """The value of key in the memcached of server namespace ns, over TCP on its own address
    (inside its namespace: never through the switch)."""
    with in_netns(ns):
        s = socket.socket()
    with s:
        s.settimeout(3)
        s.connect((SERVERS[ns], MC_PORT))
        s.sendall(b"get " + key + b"\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if data == b"END\r\n":
        return None
    head, _, rest = data.partition(b"\r\n")
    return rest[:int(head.split()[3])]


def predicted(bed: Bed, key: bytes) -> str:
    server = Ring.from_pool(bed.pool).lookup(key)
    assert server is not None
    return next(ns for ns, addr in SERVERS.items() if addr == server.host)


def test_memcached_through_both_workers(bed: Bed) -> None:
    before = bed.dp.control.counters()
    # Many client sockets (source ports): their flows land on both workers' queues.
    clients = [client(ns) for ns in HOSTS for _ in range(6)]
    try:
        run("ip", "neigh", "flush", "dev", "eth0", netns=H3)
        keys = [b"mq-key-%d" % i for i in range(30)]
        for i, k in enumerate(keys):
            assert clients[i % len(clients)].set(k, b"value of " + k)
        for i, k in enumerate(keys):
            assert clients[(i * 7) % len(clients)].get(k) == b"value of " + k
        for k in keys:
            assert tcp_get(predicted(bed, k), k) == b"value of " + k
        time.sleep(2 * WRITE_TIMEOUT_MS / 1000)  # the hold after the pool's flush is over
        # A hot key, asked for by every socket: served by worker 0's cache from then on.
        hot = b"mq-hot"
        assert clients[0].set(hot, b"hot value")
        for _ in range(3):
            for c in clients:
                assert c.get(hot) == b"hot value"
        # Writes from one worker's flows are seen at once by gets from the other's.
        for i in range(10):
            value = b"v%d" % i
            assert clients[i % len(clients)].set(hot, value)
            for c in clients[::5]:
                assert c.get(hot) == value
    finally:
        for c in clients:
            c.close()
    bed.dp.check()
    after = bed.dp.control.counters()
    pool = {k: after.pools[POOL][k] - before.pools.get(POOL, {}).get(k, 0)
            for k in after.pools[POOL]}
    assert pool["hits"] > len(clients), pool
    assert pool["fills"] >= 1 and pool["arp_replies"] >= 1
    handed = worker(after, "mc_handoff", 1) - worker(before, "mc_handoff", 1)
    taken = worker(after, "mc_handoff_taken", 0) - worker(before, "mc_handoff_taken", 0)
    assert handed > 0, "no memcached frame reached worker 1's queues"
    assert taken == handed
    assert worker(after, "mc_handoff", 0) == 0
    assert worker(after, "mc_handoff_dropped", 1) == 0


def test_pool_replaced_while_both_workers_run(bed: Bed) -> None:
    """A replaced pool is freed only once both workers went on (dp.h): no stall, no leak."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def traffic() -> None:
        try:
            with client(H1) as c:
                while not stop.is_set():
                    assert c.set(b"mq-live", b"x")
                    assert c.get(b"mq-live") == b"x"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        for _ in range(5):
            started = time.monotonic()
            push_pool(bed)
            assert time.monotonic() - started < 1.0, "retiring the old pool took too long"
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors
    assert "not freed" not in bed.dp.log_tail(200)
    bed.dp.check()

