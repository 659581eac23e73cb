"""MemSwitch in the DPDK data plane: memcached over UDP routed, cached, split and guarded.

Topology (namespaces prefixed dpm-, addresses 198.18.72.0/24, VIP 198.18.72.100:11211):

    dpm-s1 eth0 .11 ──veth── dpmp1 ┐
    dpm-s2 eth0 .12 ──veth── dpmp2 │
    dpm-s3 eth0 .13 ──veth── dpmp3 ├─ tsw-dataplane (af_packet ports) in dpm-tor
    dpm-c1 eth0 .21 ──veth── dpmp4 │
    dpm-c2 eth0 .22 ──veth── dpmp5 ┘
                                     + net_tap port dpmtap0 (.30) in dpm-tor: a client too

Each server runs Debian's memcached with UDP on 11211, listening on its own address and on the
VIP, which it holds on lo with arp_ignore=1 / arp_announce=2 (direct server return: the data
plane answers ARP for the VIP and rewrites only the destination MAC of a request). memcached
listens on the VIP itself, not 0.0.0.0: a UDP socket bound to the wildcard would answer from the
server's own address, and the data plane recognises replies by their VIP:PORT source. Hosts'
veths have transmit checksum offload off (tor-interception.md B.4).

IP fragments: DPDK's af_packet PMD joins a PACKET_FANOUT group with PACKET_FANOUT_FLAG_DEFRAG,
so the kernel reassembles fragments before the data plane sees them (and the reassembled
datagram no longer fits the ring's frame or the next veth's MTU). Fragmented requests are
therefore sent from a client in dpm-tor through the net_tap port, which hands the data plane
the fragments as they are, as a real NIC would.

The test process opens its sockets inside the namespaces (setns), so clients and the direct
TCP checks of the servers cost no subprocess each. Where a key lives is checked by asking every
server over TCP on its own address; which key goes where is predicted by torswitch.routing's
Ring over the same pool (the same C router, nutcracker's order). Everything is torn down by the
module fixture, also on failure; if DPDK or memcached cannot start, tests fail, never skip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest

from torswitch.config import Pool, Server
from torswitch.dataplane import (
    ControlError,
    Counters,
    Dataplane,
    DataplaneConfig,
    DataplaneError,
    McServer,
    in_netns,
    mc_pool_words,
)
from torswitch.memcache_udp import McUdpError, UdpClient
from torswitch.routing import Ring

PREFIX = "dpm-"
TOR = f"{PREFIX}tor"
SERVERS = {f"{PREFIX}s{i}": f"198.18.72.{10 + i}" for i in (1, 2, 3)}
CLIENTS = {f"{PREFIX}c{i}": f"198.18.72.{20 + i}" for i in (1, 2)}
HOSTS = {**SERVERS, **CLIENTS}
VIP = "198.18.72.100"
PORT = 11211
VMAC = "02:00:00:72:01:00"
POOL = "mcpool"
C1, C2 = list(CLIENTS)
TAP = "dpmtap0"
TAP_ADDR = "198.18.72.30"
HEADER = struct.Struct(">HHHH")


def run(*argv: str, netns: str | None = None, check: bool = True,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", netns] if netns else []) + list(argv)
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}): {res.stdout}{res.stderr}")
    return res


def delete_namespaces() -> None:
    for name in run("ip", "netns", "list").stdout.split():
        if name.startswith(PREFIX):
            run("ip", "netns", "delete", name, check=False)


class Bed(NamedTuple):
    dp: Dataplane
    macs: dict[str, str]  # server namespace -> eth0 MAC
    pool: Pool  # the pool as torswitch.config describes it (servers in SERVERS order)
    memcached: dict[str, subprocess.Popen[bytes]]  # server namespace -> its daemon


def mc_servers(bed: Bed, live: Sequence[bool] = (True, True, True)) -> list[McServer]:
    """The pool's servers in nutcracker's order (shorter identities first, then bytewise), as
    Ring builds its ring, so the data plane and Ring agree on positions."""
    out = []
    for i, (ns, srv) in enumerate(zip(SERVERS, bed.pool.servers, strict=True)):
        out.append(McServer(sid=10 + i, ip=srv.host, port=srv.port, mac=bed.macs[ns],
                            weight=srv.weight, live=live[i], identity=srv.identity))
    return sorted(out, key=lambda s: (len(s.identity), s.identity))


def push(bed: Bed, live: Sequence[bool] = (True, True, True), cache: bool = True) -> None:
    bed.dp.control.mc_pool(0, POOL, VIP, PORT, VMAC, bed.pool.hash, bed.pool.distribution,
                           bed.pool.hash_tag, cache, mc_servers(bed, live))


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    delete_namespaces()  # leftovers of a killed run
    daemons: dict[str, subprocess.Popen[bytes]] = {}
    dp: Dataplane | None = None
    try:
        run("ip", "netns", "add", TOR)
        run("ip", "-n", TOR, "link", "set", "lo", "up")
        for i, (ns, addr) in enumerate(HOSTS.items(), 1):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                f"dpmp{i}", "netns", TOR)
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ethtool", "-K", "eth0", "tx", "off", netns=ns)
            run("ip", "-n", TOR, "link", "set", f"dpmp{i}", "up")
        macs = {}
        for ns, addr in SERVERS.items():
            run("ip", "-n", ns, "addr", "add", f"{VIP}/32", "dev", "lo")
            run("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2", netns=ns)
            macs[ns] = run("cat", "/sys/class/net/eth0/address", netns=ns).stdout.strip()
            daemons[ns] = subprocess.Popen(
                ["ip", "netns", "exec", ns, "memcached", "-U", str(PORT), "-p", str(PORT),
                 "-l", f"{VIP},{addr}", "-u", "nobody", "-t", "2", "-m", "16"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        config = DataplaneConfig(
            rack_ifaces=[f"dpmp{i}" for i in range(1, len(HOSTS) + 1)], tap_iface=TAP,
            netns=TOR, steering=False, stats_interval_ms=100, file_prefix="dpm-test",
            mc_hot_threshold=2, mc_cache_ttl_ms=60000, mc_write_timeout_ms=500)
        dp = Dataplane(config, tmp_path_factory.mktemp("dp-memcached"))
        dp.start()  # raises with DPDK's log if it cannot start: never a skip
        run("ip", "-n", TOR, "addr", "add", f"{TAP_ADDR}/24", "dev", TAP)
        run("ip", "-n", TOR, "link", "set", TAP, "up")
        run("ethtool", "-K", TAP, "tx", "off", netns=TOR, check=False)
        pool = Pool(name=POOL, servers=tuple(Server(addr, PORT, 1) for addr in
                                             SERVERS.values()))
        b = Bed(dp, macs, pool, daemons)
        for ns, addr in SERVERS.items():
            wait_tcp(ns, addr)
        push(b)
        yield b
    finally:
        status = dp.stop() if dp is not None else 0
        for d in daemons.values():
            d.send_signal(signal.SIGCONT)
            d.terminate()
            d.wait()
        delete_namespaces()
        if dp is not None:
            print(dp.log_tail(60))
        assert status == 0, f"data plane exited with {status}"


# ---- helpers ------------------------------------------------------------------------------

def wait_tcp(ns: str, addr: str, port: int = PORT) -> None:
    """Wait up to 10 s until addr:port accepts TCP connections from namespace ns."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with in_netns(ns):
                s = socket.socket()
            with s:
                s.settimeout(0.5)
                s.connect((addr, port))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def tcp(ns: str, command: bytes, end: Sequence[bytes] = (b"END\r\n",)) -> bytes:
    """One command to the memcached of server namespace ns, over TCP on its own address
    (inside its namespace: never through the switch)."""
    with in_netns(ns):
        s = socket.socket()
    with s:
        s.settimeout(3)
        s.connect((SERVERS[ns], PORT))
        s.sendall(command)
        data = b""
        while not any(data.endswith(e) for e in end):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def tcp_get(ns: str, key: bytes) -> bytes | None:
    reply = tcp(ns, b"get " + key + b"\r\n")
    if reply == b"END\r\n":
        return None
    head, _, rest = reply.partition(b"\r\n")
    size = int(head.split()[3])
    return rest[:size]


def stat(ns: str, name: str) -> int:
    for line in tcp(ns, b"stats\r\n").splitlines():
        words = line.split()
        if len(words) == 3 and words[1] == name.encode():
            return int(words[2])
    raise AssertionError(f"no stat {name} on {ns}")


def holders(key: bytes) -> list[str]:
    return [ns for ns in SERVERS if tcp_get(ns, key) is not None]


def predicted(bed: Bed, key: bytes, live: Sequence[bool] | None = None) -> str:
    server = Ring.from_pool(bed.pool, live=live).lookup(key)
    assert server is not None
    return next(ns for ns, addr in SERVERS.items() if addr == server.host)


def client(ns: str = C1, timeout: float = 1.0, retries: int = 3) -> UdpClient:
    with in_netns(ns):
        return UdpClient(VIP, PORT, timeout=timeout, retries=retries)


def raw_socket(ns: str = C1) -> socket.socket:
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    return s


def counters(bed: Bed) -> Counters:
    return bed.dp.control.counters()


def pool_counter(c: Counters, name: str) -> int:
    return c.pools[POOL][name]


def server_counter(bed: Bed, c: Counters, ns: str, name: str) -> int:
    return c.servers[f"{POOL}/{SERVERS[ns]}"][name]


def keys_on_each_server(bed: Bed, prefix: str, per_server: int = 2) -> list[bytes]:
    """Keys such that every server holds per_server of them, interleaved."""
    found: dict[str, list[bytes]] = {ns: [] for ns in SERVERS}
    i = 0
    while any(len(v) < per_server for v in found.values()):
        key = f"{prefix}-{i}".encode()
        ns = predicted(bed, key)
        if len(found[ns]) < per_server:
            found[ns].append(key)
        i += 1
    return [k for group in zip(*found.values(), strict=True) for k in group]


# ---- tests --------------------------------------------------------------------------------

def test_arp_for_vip_answered(bed: Bed) -> None:
    before = pool_counter(counters(bed), "arp_replies")
    run("ip", "neigh", "flush", "dev", "eth0", netns=C2)
    with client(C2) as c:
        c.set(b"arp-probe", b"1")
    neigh = run("ip", "neigh", "show", VIP, netns=C2).stdout
    assert VMAC in neigh, neigh
    assert pool_counter(counters(bed), "arp_replies") > before
    # Servers never answer for the VIP themselves.
    for ns in SERVERS:
        assert VMAC not in run("ip", "-n", ns, "link", "show", "eth0").stdout


def test_keys_land_on_predicted_server(bed: Bed) -> None:
    # fnv1a_64 (nutcracker's 32-bit variant) clusters keys that differ in one digit.
    keys = [hashlib.md5(b"%d" % i).hexdigest().encode() for i in range(40)]
    with client() as c:
        for k in keys:
            assert c.set(k, b"v-" + k)
        for k in keys:
            assert c.get(k) == b"v-" + k
    where = {k: predicted(bed, k) for k in keys}
    assert len(set(where.values())) == 3, "40 keys should reach every server"
    for k in keys:
        assert holders(k) == [where[k]], k
    st = bed.dp.control.mc_status()
    assert st.pools[0].name == POOL and st.pools[0].vip == VIP and st.pools[0].port == PORT
    assert [s.identity for s in st.pools[0].servers] == [s.identity for s in mc_servers(bed)]


def _make_hot(bed: Bed, c: UdpClient, key: bytes, value: bytes) -> None:
    """Get the key until the switch has cached it (hot threshold 2)."""
    deadline = time.monotonic() + 5
    fills = pool_counter(counters(bed), "fills")
    while pool_counter(counters(bed), "fills") == fills:
        assert c.get(key) == value
        assert time.monotonic() < deadline, "the hot key was never cached"


def test_hot_key_served_by_switch(bed: Bed) -> None:
    key, value = b"hot-key", b"hot value"
    ns = predicted(bed, key)
    with client() as c:
        assert c.set(key, value, flags=7)
        _make_hot(bed, c, key, value)
        hits_server = stat(ns, "get_hits")
        before = counters(bed)
        for _ in range(20):
            assert c.get_with_flags(key) == (value, 7)
        after = counters(bed)
    assert stat(ns, "get_hits") == hits_server, "the server saw gets the switch should serve"
    assert pool_counter(after, "hits") - pool_counter(before, "hits") == 20
    assert (server_counter(bed, after, ns, "hits")
            - server_counter(bed, before, ns, "hits")) == 20
    assert after.totals["mc_cache_entries"] >= 1
    assert after.labelled["mc_fill"]["filled"] >= 1


def test_write_invalidates(bed: Bed) -> None:
    key = b"coherent-key"
    with client() as c, client(C2) as other:
        assert c.set(key, b"v0")
        _make_hot(bed, c, key, b"v0")
        inval = pool_counter(counters(bed), "invalidations")
        for i in range(1, 30):
            value = f"v{i}".encode()
            writer = c if i % 2 else other
            assert writer.set(key, value)
            # Never the old value, from either client, right after the write and later.
            for _ in range(3):
                assert c.get(key) == value
                assert other.get(key) == value
        assert c.delete(key)
        assert c.get(key) is None and other.get(key) is None
    assert pool_counter(counters(bed), "invalidations") > inval


def test_flush_all_empties(bed: Bed) -> None:
    keys = keys_on_each_server(bed, "flush")
    with client() as c:
        for k in keys:
            assert c.set(k, b"x")
        _make_hot(bed, c, keys[0], b"x")
        before = counters(bed)
        assert c.flush_all()
        for k in keys:
            assert c.get(k) is None
    assert all(not holders(k) for k in keys)
    after = counters(bed)
    assert pool_counter(after, "flushes") == pool_counter(before, "flushes") + 1
    assert pool_counter(after, "splits") == pool_counter(before, "splits") + 1


def test_multi_get_spans_servers(bed: Bed) -> None:
    keys = keys_on_each_server(bed, "multi", per_server=3)
    values = {k: b"value of " + k + b"." * (i * 37) for i, k in enumerate(keys)}
    with client() as c:
        for k, v in values.items():
            assert c.set(k, v)
        before = pool_counter(counters(bed), "splits")
        missing = b"multi-missing"
        got = c.get_multi([*keys, missing])
        # One message from the switch: renumbered 0..n-1 of n.
        datagrams = c.last_reply_datagrams
        assert [seq for seq, _, _ in datagrams] == list(range(len(datagrams)))
        assert {total for _, total, _ in datagrams} == {len(datagrams)}
        assert b"".join(p for _, _, p in datagrams).count(b"END\r\n") == 1
        # Large values (stored over TCP): the parts' answers span several datagrams.
        big = {k: bytes([65 + i]) * 2500 for i, k in enumerate(keys[:3])}
        for k, v in big.items():
            assert tcp(predicted(bed, k), b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v),
                       end=(b"STORED\r\n",)) == b"STORED\r\n"
        got_big = c.get_multi(list(big))
    assert got == values
    assert got_big == big
    assert pool_counter(counters(bed), "splits") == before + 2


def test_large_set_is_fragmented_and_lands_whole(bed: Bed) -> None:
    key, value = b"large-key", bytes(range(256)) * 16  # 4096 bytes: three IP fragments
    before = counters(bed)
    with client(TOR) as c:  # through the tap: fragments reach the data plane as they are
        assert c.set(key, value)
        assert c.get(key) == value
    assert holders(key) == [predicted(bed, key)]
    assert tcp_get(predicted(bed, key), key) == value
    after = counters(bed)
    assert pool_counter(after, "fragments") - pool_counter(before, "fragments") >= 2
    assert pool_counter(after, "orphans") == pool_counter(before, "orphans")


def test_multi_datagram_request_stays_on_one_server(bed: Bed) -> None:
    key = b"multi-datagram-key"
    ns = predicted(bed, key)
    chunks = [b"set " + key + b" 0 0 2000\r\n" + b"a" * 1000, b"a" * 1000, b"\r\n"]
    before = counters(bed)
    # memcached 1.6 drops requests of several datagrams unanswered.
    with client(timeout=0.3, retries=0) as c, pytest.raises(McUdpError):
        c.request_datagrams(chunks)
    after = counters(bed)
    for s in SERVERS:
        moved = server_counter(bed, after, s, "requests") - server_counter(bed, before, s,
                                                                           "requests")
        assert moved == (len(chunks) if s == ns else 0), s
    assert pool_counter(after, "multi_datagram") - pool_counter(before, "multi_datagram") == 2
    assert tcp_get(ns, key) is None


def test_split_reply_too_large(bed: Bed) -> None:
    """Over DP_MC_SPLIT_MAX_DGRAMS (64) datagrams of answers: one SERVER_ERROR instead."""
    keys = keys_on_each_server(bed, "toolarge", per_server=8)
    value = b"z" * 3500  # three datagrams each: 72 in all
    for k in keys:
        assert tcp(predicted(bed, k), b"set %s 0 0 %d\r\n%s\r\n" % (k, len(value), value),
                   end=(b"STORED\r\n",)) == b"STORED\r\n"
    before = pool_counter(counters(bed), "split_too_large")
    with client() as c, pytest.raises(McUdpError, match="split reply too large"):
        c.get_multi(keys)
    assert pool_counter(counters(bed), "split_too_large") == before + 1
    with client() as c:  # fewer keys still work
        assert c.get_multi(keys[:6]) == {k: value for k in keys[:6]}


def test_split_part_times_out(bed: Bed) -> None:
    """A live server that does not answer: the split's other parts are held, then freed when
    the request entry expires; the client sees no reply and retries later."""
    keys = keys_on_each_server(bed, "timeout")
    frozen = f"{PREFIX}s3"
    before = counters(bed)
    os.kill(bed.memcached[frozen].pid, signal.SIGSTOP)
    try:
        with client(timeout=0.3, retries=0) as c, pytest.raises(McUdpError):
            c.get_multi(keys)
        deadline = time.monotonic() + 5
        while pool_counter(counters(bed), "split_timeouts") == pool_counter(before,
                                                                             "split_timeouts"):
            assert time.monotonic() < deadline, "the split never timed out"
            time.sleep(0.2)
    finally:
        os.kill(bed.memcached[frozen].pid, signal.SIGCONT)
    # Every entry (and what its split held) is reaped in the end.
    deadline = time.monotonic() + 5
    while counters(bed).totals["mc_requests_in_flight"] != 0:
        assert time.monotonic() < deadline, "request entries never reaped"
        time.sleep(0.2)
    with client() as c:
        assert c.get_multi(keys) == {}


def _raw_exchange(s: socket.socket, payload: bytes) -> tuple[bytes, tuple[str, int]] | None:
    s.sendto(payload, (VIP, PORT))
    try:
        data, peer = s.recvfrom(65536)
    except TimeoutError:
        return None
    return data, peer


def test_malformed_requests_answered_or_dropped(bed: Bed) -> None:
    before = counters(bed)
    too_many = b"get " + b" ".join(b"k%d" % i for i in range(33)) + b"\r\n"
    cases = [
        (HEADER.pack(1, 0, 1, 0) + b"\xff\xfe\x00garbage\r\n", b"CLIENT_ERROR"),
        (HEADER.pack(2, 0, 1, 0) + b"no line end", b"CLIENT_ERROR line not terminated"),
        (HEADER.pack(3, 0, 1, 0) + b"bogus key\r\n", b"CLIENT_ERROR unknown command"),
        (HEADER.pack(4, 0, 1, 0) + too_many, b"CLIENT_ERROR too many keys"),
        (HEADER.pack(5, 0, 1, 0) + b"get " + b"k" * 251 + b"\r\n", b"CLIENT_ERROR bad key"),
    ]
    with raw_socket() as s:
        for payload, expect in cases:
            answer = _raw_exchange(s, payload)
            assert answer is not None, payload
            data, peer = answer
            assert peer == (VIP, PORT)
            assert HEADER.unpack_from(data) == (HEADER.unpack_from(payload)[0], 0, 1, 0)
            assert data[8:].startswith(expect) and data.endswith(b"\r\n"), data
        # A truncated frame header has no request id to answer: dropped, counted.
        s.settimeout(0.3)
        assert _raw_exchange(s, b"\x00\x07\x00") is None
        # A later datagram whose first was never seen: an orphan, dropped.
        assert _raw_exchange(s, HEADER.pack(77, 1, 2, 0) + b"tail of nothing") is None
    # A later IP fragment whose first was never seen: an orphan too (through the tap: the
    # af_packet ports' kernel defragmenter would hold it).
    with in_netns(TOR):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with raw:
        body = b"y" * 64
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 4242, 100, 64, 17, 0,
                         socket.inet_aton(TAP_ADDR), socket.inet_aton(VIP))
        raw.sendto(ip + body, (VIP, 0))
    time.sleep(0.2)
    after = counters(bed)
    assert pool_counter(after, "orphans") - pool_counter(before, "orphans") == 2
    assert pool_counter(after, "malformed") - pool_counter(before, "malformed") == 6
    parse_before, parse_after = before.labelled["mc_parse"], after.labelled["mc_parse"]
    for result, n in (("short", 1), ("too_many_keys", 1), ("unknown_op", 2), ("no_line", 1),
                      ("bad_key", 1)):
        assert parse_after[result] - parse_before[result] >= n, result
    bed.dp.check()
    with client() as c:
        assert c.set(b"after-garbage", b"ok") and c.get(b"after-garbage") == b"ok"


def test_no_live_server_answered(bed: Bed) -> None:
    try:
        push(bed, live=(False, False, False))
        with raw_socket() as s:
            answer = _raw_exchange(s, HEADER.pack(9, 0, 1, 0) + b"get x\r\n")
        assert answer is not None
        assert answer[0][8:] == b"SERVER_ERROR no live server in pool\r\n"
        assert pool_counter(counters(bed), "no_server") >= 1
    finally:
        push(bed)


def test_control_validates_and_reports(bed: Bed) -> None:
    ctl = bed.dp.control
    servers = mc_servers(bed)
    with pytest.raises(ControlError, match="another pool"):  # server ids are global
        ctl.mc_pool(1, "second", "198.18.72.101", PORT, "02:00:00:72:01:01", "fnv1a_64",
                    "ketama", "", False, servers)
    with pytest.raises(ControlError):
        ctl.request("mc-pool", "1", "x", "198.18.72.101:1", VMAC, "nohash", "ketama", "-",
                    "on", "1,1.2.3.4,1,02:00:00:00:00:01,1,1,41")
    with pytest.raises(ControlError, match="no such pool"):
        ctl.mc_pool_del(5)
    other = [McServer(sid=100 + s.sid, ip=s.ip, port=s.port, mac=s.mac, weight=s.weight,
                      live=s.live, identity=s.identity) for s in servers]
    ctl.mc_pool(1, "second", "198.18.72.101", PORT, "02:00:00:72:01:01", "md5", "modula",
                "{}", False, other)
    try:
        st = ctl.mc_status()
        assert sorted(st.pools) == [0, 1]
        p1 = st.pools[1]
        assert (p1.name, p1.hash, p1.distribution, p1.hash_tag, p1.cache) == (
            "second", "md5", "modula", "{}", False)
        assert p1.servers == tuple(other)
        assert st.cache_slots > 0
        c = counters(bed)
        assert set(c.pools) == {POOL, "second"}
        assert f"second/{SERVERS[f'{PREFIX}s1']}" in c.servers
    finally:
        ctl.mc_pool_del(1)
    assert sorted(ctl.mc_status().pools) == [0]
    ctl.mc_flush()


def test_pool_replaced_live_without_failures(bed: Bed) -> None:
    """A client loop keeps sending while a server is ejected and brought back: no request
    fails, and the ejected server's keys move to the others."""
    errors: list[BaseException] = []
    done = threading.Event()
    ops = 0
    loop_client = client(C2, timeout=0.5, retries=4)

    def loop() -> None:
        nonlocal ops
        i = 0
        try:
            while not done.is_set():
                key = f"live-{i % 50}".encode()
                loop_client.set(key, b"x%d" % i)
                loop_client.get(key)
                ops += 2
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        ejected = (True, False, True)
        push(bed, live=ejected)
        time.sleep(0.3)
        keys = keys_on_each_server(bed, "eject")
        moved = [k for k in keys if predicted(bed, k) == f"{PREFIX}s2"]
        with client() as c:
            for k in keys:
                assert c.set(k, b"after")
        for k in moved:
            where = holders(k)
            assert where == [predicted(bed, k, live=ejected)] and f"{PREFIX}s2" not in where
        time.sleep(0.2)
        push(bed)
        time.sleep(0.3)
    finally:
        done.set()
        t.join(10)
        loop_client.close()
    assert not errors, errors
    assert ops > 20
    bed.dp.check()


def test_pool_file_at_start_up(bed: Bed, tmp_path: Path) -> None:
    """--mc-pool-file: control lines applied before the worker runs; a bad line stops start-up
    with its number. Its own data plane on a veth pair of its own inside dpm-tor."""
    run("ip", "-n", TOR, "link", "add", "dpmx0", "type", "veth", "peer", "name", "dpmx1")
    try:
        for iface in ("dpmx0", "dpmx1"):
            run("ip", "-n", TOR, "link", "set", iface, "up")
        line = _pool_line(bed)
        good = tmp_path / "pools"
        good.write_text("# pools of the test\n\n" + line + "\n")
        config = DataplaneConfig(rack_ifaces=["dpmx0", "dpmx1"], netns=TOR,
                                 file_prefix="dpm-file", mc_pool_file=good, mc_cache_slots=0)
        (tmp_path / "good").mkdir()
        (tmp_path / "bad").mkdir()
        with Dataplane(config, tmp_path / "good") as dp:
            st = dp.control.mc_status()
            assert st.cache_slots == 0 and st.pools[0].name == POOL
            assert len(st.pools[0].servers) == 3
        bad = tmp_path / "bad-pools"
        bad.write_text(line + "\n# fine\nmc-pool 1 x 1.2.3.4:1\n")
        dp = Dataplane(dataclasses.replace(config, mc_pool_file=bad),
                       tmp_path / "bad")
        with pytest.raises(DataplaneError, match="line 3"):
            dp.start()
    finally:
        run("ip", "-n", TOR, "link", "delete", "dpmx0", check=False)


def _pool_line(bed: Bed) -> str:
    return " ".join(mc_pool_words(0, POOL, VIP, PORT, VMAC, bed.pool.hash,
                                  bed.pool.distribution, bed.pool.hash_tag, True,
                                  mc_servers(bed)))
