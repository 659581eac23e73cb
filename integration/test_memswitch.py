"""MemSwitch end to end: real memcached servers behind the real data plane, real clients.

One module-scoped rack (torswitch.testbed.memrack, prefix mcs-, 198.18.70.0/24): clients
mcs-c1/c2 (.11/.12), servers mcs-m1..m3 (.21-.23) in the pool `mc` at VIP .100:11211, a
spare server mcs-m4 (.24) for reconfiguration, nutcracker on mcs-nc (.31) for comparison,
and `torswitch memswitch` with the DPDK data plane in mcs-tor. Requests go from the client
namespaces to the VIP over UDP (torswitch.memcache_udp, libmemcached's tools); servers are
inspected straight over TCP on their loopback.

Covered: placement equal to torswitch's ring and to a real nutcracker; libmemcached's UDP
client; cache hits that never reach a server; invalidation by every write path and flush_all;
a linearizable history from 4 concurrent client processes that hit the cache; garbage to the
VIP; reconfiguration under load without a failed request; ejection and return of a killed
server; the metrics endpoint. If DPDK or memcached cannot start, the rack's error (with the
log tails) fails the tests: nothing is skipped.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Self

import pytest

from torswitch import config, routing
from torswitch.memcache_udp import McUdpError, UdpClient
from torswitch.oracles import linearizability
from torswitch.peers import random_keys
from torswitch.testbed.memrack import MemRack, MemRackSpec

SPEC = MemRackSpec(prefix="mcs-", subnet="198.18.70", nclients=2, nservers=3, spare_servers=1,
                   nutcracker=True, hot_threshold=2, probe_interval_ms=300,
                   retry_timeout_ms=2000, failure_limit=2)
POOL = "mc"
HEADER = struct.Struct(">HHHH")


@pytest.fixture(scope="module")
def rack() -> Iterator[MemRack]:
    r = MemRack(SPEC)
    r.up()  # raises with the logs if DPDK, memcached or nutcracker cannot start
    try:
        yield r
        status = r.status()
        assert status["dataplane"]["starts"] == 1, "the data plane was restarted: it crashed"
    finally:
        print(r.log_tail(80))
        r.down()


@pytest.fixture(scope="module")
def client(rack: MemRack) -> Iterator[UdpClient]:
    c = rack.udp_client(rack.clients[0], timeout=0.5, retries=4)
    yield c
    c.close()


def pool_of(text: str) -> config.Pool:
    return config.loads(text).pool(POOL)


def owner(rack: MemRack, pool: config.Pool, key: bytes,
          live: Sequence[bool] | None = None) -> int:
    """The rack index of the server torswitch's ring puts key on."""
    server = routing.Ring.from_pool(pool, live=live).lookup(key)
    assert server is not None
    return rack.server_index(server.host)


def flush(rack: MemRack, client: UdpClient) -> None:
    """Empty the switch's cache and every server (the pool's through the VIP, spares directly)."""
    assert client.flush_all()
    rack.flush_servers()


def hits(rack: MemRack) -> int:
    return rack.fresh_counters().pools[POOL]["hits"]


def udp_keys(n: int, seed: int) -> list[bytes]:
    return random_keys(n, seed)


# ---- placement ----------------------------------------------------------------------------------


def test_keys_land_where_nutcracker_puts_them(rack: MemRack, client: UdpClient) -> None:
    keys = udp_keys(300, seed=70)
    pool = pool_of(rack.config_text())
    predicted = {k: owner(rack, pool, k) for k in keys}
    flush(rack, client)
    for key in keys:
        assert client.set(key, b"v-" + key[:8])
    via_switch = rack.where_keys_live(keys)
    assert {k: v for k, v in via_switch.items() if v != [predicted[k]]} == {}
    # Split multi-gets through the VIP find every key (at most 32 keys a request).
    for i in range(0, len(keys), 25):
        batch = keys[i:i + 25]
        assert client.get_multi(batch) == {k: b"v-" + k[:8] for k in batch}
    assert rack.fresh_counters().pools[POOL]["splits"] > 0

    # The same pool in a real nutcracker (TCP) puts every key on the same server.
    flush(rack, client)
    assert rack.nutcracker_ns is not None
    with rack.text_client(rack.clients[0], *rack.nutcracker_address) as nc:
        nc.set_many((k, b"n") for k in keys)
    via_nutcracker = rack.where_keys_live(keys)
    assert via_nutcracker == via_switch


def test_libmemcached_udp_store(rack: MemRack, client: UdpClient, tmp_path_factory:
                                pytest.TempPathFactory) -> None:
    # libmemcached speaks UDP only for storage commands (get is refused over UDP); memccp
    # --udp stores a file under its base name.
    d = tmp_path_factory.mktemp("memccp")
    names = [f"memccp-{i}.txt" for i in range(12)]
    for name in names:
        (d / name).write_text(f"contents of {name}\n")
    flush(rack, client)
    res = rack.exec(rack.clients[1], ["memccp", "--udp", f"--servers={rack.vip}:{rack.port}",
                                      *(str(d / n) for n in names)], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    pool = pool_of(rack.config_text())
    for name in names:
        key = name.encode()
        assert client.get(key) == f"contents of {name}\n".encode()
        assert rack.server_keys(owner(rack, pool, key), [key]) == {
            key: f"contents of {name}\n".encode()}
    # And a removal through the VIP (UDP) is seen by libmemcached's TCP view of the server.
    key = names[0].encode()
    assert client.delete(key)
    srv = owner(rack, pool, key)
    res = rack.exec(rack.servers[srv], ["memcexist", "--servers=127.0.0.1", names[0]],
                    check=False)
    assert res.returncode != 0


# ---- the cache ----------------------------------------------------------------------------------


def test_cache_hits_never_reach_the_server(rack: MemRack, client: UdpClient) -> None:
    key = b"hot:cache-hits"
    pool = pool_of(rack.config_text())
    srv = owner(rack, pool, key)
    assert client.set(key, b"hot value")
    # Past the hot threshold (2), then filled from a server reply: gets until one is a hit.
    before_hits = hits(rack)
    for _ in range(20):
        for _ in range(5):
            assert client.get(key) == b"hot value"
        now_hits = hits(rack)
        if now_hits > before_hits:
            break
    else:
        raise AssertionError("100 gets of one key and not one cache hit")
    before_hits = hits(rack)
    before = rack.server_stats(srv)
    n = 50
    for _ in range(n):
        assert client.get(key) == b"hot value"
    after = rack.server_stats(srv)
    assert (after["cmd_get"], after["get_hits"]) == (before["cmd_get"], before["get_hits"])
    assert hits(rack) - before_hits == n
    server_hits = rack.fresh_counters().servers[f"{POOL}/{rack.server_ip(srv)}"]["hits"]
    assert server_hits >= n


def warm(rack: MemRack, client: UdpClient, key: bytes, value: bytes) -> None:
    """Get key until a get is served from the switch's cache (so a later write really has a
    cached copy to invalidate)."""
    before = hits(rack)
    for _ in range(30):
        for _ in range(3):
            assert client.get(key) == value
        if hits(rack) > before:
            return
    raise AssertionError(f"{key!r} never served from the cache")


def test_writes_invalidate(rack: MemRack, client: UdpClient) -> None:
    before = rack.fresh_counters().pools[POOL]
    c = client
    assert c.set(b"inv:set", b"one")
    warm(rack, c, b"inv:set", b"one")
    assert c.set(b"inv:set", b"two")
    assert c.get(b"inv:set") == b"two"

    assert c.set(b"inv:append", b"ab")
    warm(rack, c, b"inv:append", b"ab")
    assert c.append(b"inv:append", b"cd")
    assert c.get(b"inv:append") == b"abcd"
    assert c.prepend(b"inv:append", b"<")
    assert c.get(b"inv:append") == b"<abcd"

    assert c.set(b"inv:num", b"10")
    warm(rack, c, b"inv:num", b"10")
    assert c.incr(b"inv:num", 5) == 15
    assert c.get(b"inv:num") == b"15"
    warm(rack, c, b"inv:num", b"15")
    assert c.decr(b"inv:num", 3) == 12
    assert c.get(b"inv:num") == b"12"

    assert c.set(b"inv:cas", b"old")
    warm(rack, c, b"inv:cas", b"old")
    got = c.gets(b"inv:cas")
    assert got is not None and got[0] == b"old"
    assert c.cas(b"inv:cas", b"new", got[1])
    assert c.get(b"inv:cas") == b"new"

    assert c.set(b"inv:del", b"gone soon")
    warm(rack, c, b"inv:del", b"gone soon")
    assert c.delete(b"inv:del")
    assert c.get(b"inv:del") is None

    # touch and gat change the expiry: a cached copy must not outlive the item.
    assert c.set(b"inv:touch", b"short")
    warm(rack, c, b"inv:touch", b"short")
    assert c.touch(b"inv:touch", 1)
    assert c.set(b"inv:gat", b"short too")
    warm(rack, c, b"inv:gat", b"short too")
    assert c.gat(1, b"inv:gat") == b"short too"
    time.sleep(2.2)
    assert c.get(b"inv:touch") is None
    assert c.get(b"inv:gat") is None

    keys = [f"inv:flush{i}".encode() for i in range(4)]
    for k in keys:
        assert c.set(k, b"x")
        warm(rack, c, k, b"x")
    assert c.flush_all()
    for k in keys:
        assert c.get(k) is None
    after = rack.fresh_counters().pools[POOL]
    assert after["hits"] > before["hits"], "nothing was served from the cache: untested"
    assert after["invalidations"] > before["invalidations"]
    assert after["flushes"] > before["flushes"]


# ---- robustness ---------------------------------------------------------------------------------


def test_garbage_to_the_vip(rack: MemRack, client: UdpClient) -> None:
    sock = rack.call_in(rack.clients[1],
                        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.settimeout(0.3)
    before = rack.fresh_counters().pools[POOL]
    frame = HEADER.pack(4242, 0, 1, 0)
    payloads = {
        "truncated header": b"\x10\x92\x00",
        "header only": frame,
        "unknown command": frame + b"frobnicate foo\r\n",
        "key too long": frame + b"get " + b"k" * 300 + b"\r\n",
        "key with control byte": frame + b"get a\x01b\r\n",
        "no line end": frame + b"get abc",
        "bad args": frame + b"set k notanumber 0 1\r\nx\r\n",
        "orphan later datagram": HEADER.pack(4243, 1, 2, 0) + b"tail of nothing\r\n",
        "random bytes": frame + bytes(random.Random(1).randrange(256) for _ in range(200)),
    }
    answers: dict[str, bytes | None] = {}
    for name, payload in payloads.items():
        sock.sendto(payload, (rack.vip, rack.port))
        try:
            answers[name] = sock.recv(65536)
        except TimeoutError:
            answers[name] = None
    for name, answer in answers.items():
        if answer is not None:
            text = answer[HEADER.size:]
            assert text.startswith((b"CLIENT_ERROR", b"ERROR")), (name, answer)
    for name in ("unknown command", "key too long", "key with control byte"):
        assert answers[name] is not None, f"{name}: not answered"
    rng = random.Random(2)
    for _ in range(400):
        sock.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 1400))),
                    (rack.vip, rack.port))
    sock.close()
    after = rack.fresh_counters().pools[POOL]
    assert after["malformed"] - before["malformed"] >= 3
    assert after["orphans"] > before["orphans"]
    # Still alive and serving.
    assert rack.status()["dataplane"]["starts"] == 1
    assert client.set(b"after-garbage", b"fine")
    assert client.get(b"after-garbage") == b"fine"


# ---- linearizability ----------------------------------------------------------------------------

WORKER = r"""
import json, random, sys, time
from torswitch.memcache_udp import McUdpError, UdpClient
vip, port, me, start_at, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), float(sys.argv[5])
keys = [k.encode() for k in sys.argv[6].split(",")]
rng = random.Random(me)
c = UdpClient(vip, port, timeout=0.3, retries=3)
ops, n = [], 0
while time.monotonic() < start_at:
    time.sleep(0.001)
end_at = start_at + duration
while time.monotonic() < end_at:
    key = rng.choice(keys)
    if rng.random() < 0.85:
        t0 = time.monotonic()
        try:
            v = c.get(key)
            ops.append(["read", key.decode(), None if v is None else v.decode(), t0,
                        time.monotonic()])
        except McUdpError:
            ops.append(["read", key.decode(), None, t0, None])
    else:
        n += 1
        value = "c%d-%d" % (me, n)
        t0 = time.monotonic()
        try:
            c.set(key, value.encode())
            t1 = time.monotonic()
        except McUdpError:
            t1 = None
        ops.append(["write", key.decode(), value, t0, t1])
json.dump(ops, sys.stdout)
"""


def test_linearizable_with_the_cache(rack: MemRack, client: UdpClient) -> None:
    hot = [f"lin:{i}" for i in range(5)]
    initial = {k.encode(): f"init-{k}".encode() for k in hot}
    for key, value in initial.items():
        assert client.set(key, value)
    before = rack.fresh_counters().pools[POOL]
    start_at = time.monotonic() + 1.5  # every worker has imported by then
    duration = 8.0
    procs = []
    for i in range(4):
        ns = rack.clients[i % len(rack.clients)]
        procs.append(rack.popen(ns, [sys.executable, "-c", WORKER, rack.vip, str(rack.port),
                                     str(i), repr(start_at), str(duration), ",".join(hot)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    history: list[linearizability.Op] = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=duration + 30)
        assert proc.returncode == 0, err
        for kind, key, value, start, end in json.loads(out):
            history.append(linearizability.Op(
                i, kind, key.encode(), None if value is None else value.encode(), start, end))
    after = rack.fresh_counters().pools[POOL]
    reads = sum(1 for op in history if op.kind == "read" and op.end is not None)
    writes = sum(1 for op in history if op.kind == "write")
    lost = sum(1 for op in history if op.end is None)
    result = linearizability.check(history, initial=dict(initial))
    assert result.ok, result.explanation
    cache_hits = after["hits"] - before["hits"]
    print(f"linearizability: {reads} reads, {writes} writes, {lost} without reply, "
          f"{cache_hits} cache hits")
    assert reads > 2000 and writes > 200
    assert cache_hits > reads // 5, f"only {cache_hits} of {reads} reads hit the cache"


# ---- reconfiguration ----------------------------------------------------------------------------


class LoadLoop:
    """Sets and gets through the VIP from a client namespace until stopped; counts failures
    (no reply after every retry) and gets that did not see the value just set (a key that
    moved between the set and the get)."""

    def __init__(self, rack: MemRack) -> None:
        self.client = rack.udp_client(rack.clients[1], timeout=0.5, retries=5)
        self.ops = 0
        self.failures: list[str] = []
        self.moved = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"load:{i % 300}".encode()
            value = f"v{i}".encode()
            try:
                self.client.set(key, value)
                if self.client.get(key) != value:
                    self.moved += 1
                self.ops += 2
            except McUdpError as exc:
                self.failures.append(str(exc))
            i += 1


def test_reconfiguration_under_load(rack: MemRack, client: UdpClient) -> None:
    spare = len(rack.servers) - 1
    steps = [
        ("add a fourth server", [0, 1, 2, spare], {}),
        ("remove server 1", [0, 2, spare], {}),
        ("add server 1 back", [0, 1, 2, spare], {}),
        ("reweight", [0, 1, 2, spare], {spare: 3, 0: 2}),
        ("back to the start", [0, 1, 2], {}),
    ]
    with LoadLoop(rack) as load:
        time.sleep(0.5)
        for n, (what, servers, weights) in enumerate(steps):
            text = rack.config_text(servers=servers, weights=weights)
            status = rack.reconfigure(text)
            published = status["pools"][POOL]["servers"]
            assert sorted(e["host"] for e in published.values()) == sorted(
                rack.server_ip(i) for i in servers), what
            assert all(e["published_live"] for e in published.values()), what
            ops_before = load.ops
            time.sleep(0.7)
            assert load.ops > ops_before, f"{what}: the load stalled"
            # Fresh keys land where the new ring says.
            pool = pool_of(text)
            keys = [f"step{n}:{k.hex()}".encode() for k in udp_keys(60, seed=n)]
            for key in keys:
                assert client.set(key, b"s")
            held = rack.where_keys_live(keys)
            assert {k: v for k, v in held.items() if v != [owner(rack, pool, k)]} == {}, what
    print(f"reconfiguration: {load.ops} requests, {load.moved} gets after a move")
    assert load.failures == []
    assert load.ops > 200


# ---- ejection -----------------------------------------------------------------------------------


def test_ejection_and_return(rack: MemRack, client: UdpClient) -> None:
    pool = pool_of(rack.config_text())
    victim = 2
    keys = [b"ej:" + k for k in udp_keys(200, seed=9)]
    theirs = [k for k in keys if owner(rack, pool, k) == victim]
    assert theirs
    ejections = rack.server_status(victim)["ejections"]
    rack.kill_server(victim)
    killed_at = time.monotonic()
    try:
        entry = rack.wait_server(victim, live=False, timeout=5)
        took = time.monotonic() - killed_at
        # failure_limit probes at probe_interval, plus a probe round and a stats write.
        assert took < SPEC.failure_limit * SPEC.probe_interval_ms / 1000 + 1.5, took
        assert entry["ejected"] and entry["ejections"] == ejections + 1
        # Requests keep succeeding: the dead server's keys are served by the others, as the
        # ring with that server not live predicts.
        live = [True, True, False]
        for key in theirs:
            assert client.set(key, b"moved")
            assert client.get(key) == b"moved"
        held = rack.where_keys_live(theirs, servers=[0, 1])
        assert {k: v for k, v in held.items() if v != [owner(rack, pool, k, live)]} == {}
        metrics = rack.metrics_text()
        line = (f'torswitch_memswitch_server_ejections_total{{pool="{POOL}",'
                f'server="{rack.server_ip(victim)}"}}')
        assert f"{line} {ejections + 1}.0" in metrics
        assert (f'torswitch_memswitch_server_up{{pool="{POOL}",server="{rack.server_ip(victim)}"}}'
                " 0.0") in metrics
    finally:
        rack.restart_server(victim)
    restarted_at = time.monotonic()
    rack.wait_server(victim, live=True, timeout=SPEC.retry_timeout_ms / 1000 + 5)
    assert time.monotonic() - restarted_at <= SPEC.retry_timeout_ms / 1000 + 2
    for key in theirs:
        assert client.set(key, b"home")
    held = rack.where_keys_live(theirs, servers=[victim])
    assert all(v == [victim] for v in held.values())


def test_metrics_endpoint(rack: MemRack, client: UdpClient) -> None:
    assert client.set(b"metrics", b"m")
    for _ in range(5):
        client.get(b"metrics")
    rack.fresh_counters()
    text = rack.metrics_text()
    for name in ("requests", "hits", "misses", "invalidations"):
        assert f'torswitch_memswitch_{name}_total{{pool="{POOL}"}}' in text, name
        for i in range(SPEC.nservers):
            assert (f'torswitch_memswitch_server_{name}_total{{pool="{POOL}",'
                    f'server="{rack.server_ip(i)}"}}') in text, (name, i)
    for i in range(SPEC.nservers):
        labels = f'{{pool="{POOL}",server="{rack.server_ip(i)}"}}'
        assert f"torswitch_memswitch_server_ejections_total{labels}" in text
        assert f"torswitch_memswitch_server_up{labels} 1.0" in text
    requests = [line for line in text.splitlines()
                if line.startswith(f'torswitch_memswitch_requests_total{{pool="{POOL}"}}')]
    assert float(requests[0].rsplit(" ", 1)[1]) > 0
