"""`torswitch bench memcached`: MemSwitch's Table 1 on this machine, and data-plane Mpps.

The SmartSwitch/MemSwitch paper (2014) measured memcached get round trips at light load,
normalized to a client talking straight to the server: the switch redirecting a request to the
key's server ~1.03x, TwemProxy 2.39x, the switch answering from its own cache 0.11x. This
benchmark reproduces that table in one run, then measures what the data plane can carry.

(a) Latency at light load, on the bench's own MemRack (namespaces with prefix "mcb-", subnet
198.18.71.0/24: the data plane in mcb-tor, a client mcb-c1, real memcached servers mcb-m1..,
nutcracker from Debian on mcb-nc). Four configurations, measured interleaved in rounds (the
order rotated every round) so the noise of the machine's other tenants hits them alike:

  - direct: a UDP get straight to the key's server address (through the same switch, as L2);
  - nutcracker: a TCP get through nutcracker, whose pool holds the same servers;
  - torswitch redirect: a UDP get to the pool's VIP for a key that is never hot, so the data
    plane only rewrites the destination MAC to the key's server (direct server return);
  - torswitch cache hit: a UDP get to the VIP for a key already hot and cached; the data plane
    answers itself.

The rack has one pool, its cache on. The first three configurations ask the same keys, one per
request and each key once per configuration, all living on one server (set through the VIP,
then found on the servers): a key asked once through the VIP can never be answered from the
cache, so the redirect is the miss path, and every configuration ends at the same memcached.
The cache hit asks one key, made hot and cached first. Checked from the pool's counters: the
hits grew by exactly the hit configuration's gets (`cache_hit_verified_ratio`, 1.0), so every
one of those was a hit and no other get was; the cache's TTL is set to outlast the run.

--rate requests per second over all configurations (default 100, one request in flight),
--requests measured gets per configuration (default 500) after WARMUP_ROUNDS rounds,
--value-size bytes per value (default 32). Reported per configuration: min/avg/max/p50/p99
round trip in microseconds, and each normalized to direct (avg over avg, min over min, ...).

The data plane runs pinned to one core (--lcore, default 1, given to `torswitch memswitch`)
with the idle back-off off (`no_backoff`): at 100 requests/s it would otherwise be asleep when
most requests arrive, and the figure would be its wake-up time. The round trips are timed by a
small C probe, native/tools/mc_latency.c (CLOCK_MONOTONIC around a blocking send and the
receive of the whole reply, in a tight loop, run in the client namespace), built on first use
(`make -C native/tools`). Measured here against the same rack, a Python loop
(time.perf_counter_ns around sendto/recv) added ~0.5 us at the minimum and 4-7 us at the
median of a cache hit (median 22-26 us against 15-19 us from C), which pulled the hit/direct
ratio at the median from ~0.25 up to ~0.3-0.4: too much compression, hence the probe.
On a shared two-core machine the averages are at the mercy of millisecond scheduling stalls
(the data plane holds one core); min and p50 are the steadier figures, all are reported.

(b) Capacity on one core, as `torswitch bench dataplane` measures it: frames replayed from a
pcap in memory (`net_pcap`, `infinite_rx=1`) into a `net_null` port, `--no-backoff`,
`--run-ms`, rates over the worker loop's own run time (`worker_us`). Three runs, interleaved,
--repeat times, the best of each counting:

  - bare forwarding: port 0 to port 1 untouched (the baseline, same pcap as the redirect);
  - redirect: gets (64..72-byte frames, 8..16-byte keys, PCAP_KEYS keys spread over the
    servers) to the VIP of a cache-off pool given with --mc-pool-file; the servers' MACs are
    static on the null port, so every rewritten frame is switched there;
  - cache hit: gets for HOT_KEYS keys, each always from the same client with the same
    request id. The pcap starts with, per key, a get and the server's VALUE reply to it (from
    VIP:PORT to the client, the same request id), which fill the cache during the first
    passes (once the key is hot and the cache's hold after the pool's publication, shortened
    here to 1 ms with --mc-write-timeout-ms, is over); from then on the switch answers every
    get itself, out of the ingress port. `net_pcap` with only an rx_pcap has a transmit
    queue that counts and frees (its "tx_drop"), which costs about what a null port does, so
    the pcap port's tx counter counts the answers without a tx_pcap writing them to disk
    (that would measure the disk). The rate is the pool's hits counter over worker_us; the
    hit ratio is hits over single-key gets counted.

Targets (reported, never asserted): redirect avg <= 1.1x direct; cache hit avg <= 0.5x direct;
redirect >= 14.88 Mpps (10GbE line rate of 64-byte frames); cache hit >= 10 Mpps.
The JSON and a plot of the normalized latencies (matplotlib, the "plot" extra; skipped with a
note when it is missing) are written to --out (default build/bench-memcached).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torswitch.bench import dataplane as dpbench
from torswitch.bench.report import Report, Target
from torswitch.errors import TorswitchError

if TYPE_CHECKING:
    from torswitch.dataplane import McServer

class BenchError(TorswitchError):
    """A measurement went wrong: keys misplaced, a cache that never hit, a failing probe."""


NAME = "memcached"
HELP = "memcached get latency (direct, nutcracker, switch redirect, switch cache hit) and Mpps"

REPO = Path(__file__).resolve().parent.parent.parent
PROBE_DIR = REPO / "native/tools"
PROBE = PROBE_DIR / "build/mc_latency"

RACK_PREFIX = "mcb-"
RACK_SUBNET = "198.18.71"
WARMUP_ROUNDS = 5
PROBE_TIMEOUT_MS = 1000

# (figure prefix, table label), in the order the probe is given them.
CONFIGS: tuple[tuple[str, str], ...] = (
    ("direct", "direct to the server"),
    ("nutcracker", "nutcracker (TCP)"),
    ("redirect", "torswitch redirect"),
    ("hit", "torswitch cache hit"),
)
STATS = ("min", "avg", "max", "p50", "p99")

# The pcap runs: addresses only the data plane ever sees.
PCAP_VIP = "198.51.100.10"
PCAP_VMAC = bytes([0x02, 0, 0x5E, 0, 0x71, 0x01])
PCAP_PORT = 11211
PCAP_SERVERS = 4
PCAP_CLIENTS = 8
PCAP_KEYS = 1024
HOT_KEYS = 8
PCAP_FRAMES = 1024
PCAP_FLAGS = 0
MAX_VALUE = 1024  # the data plane's default --mc-max-value
LINE_RATE_64B_MPPS = 14.88
TARGET_HIT_MPPS = 10.0
TARGET_REDIRECT_LATENCY = 1.1
TARGET_HIT_LATENCY = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=100.0,
                        help="latency: requests per second, all configurations (default 100)")
    parser.add_argument("--requests", type=int, default=500, metavar="N",
                        help="latency: measured gets per configuration (default 500)")
    parser.add_argument("--value-size", type=int, default=32, metavar="BYTES",
                        help=f"bytes per value, 1..{MAX_VALUE} (default 32)")
    parser.add_argument("--servers", type=int, default=3,
                        help="memcached servers in the rack (default 3)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="capacity: run time of each pcap run (default 1.0)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="capacity: runs of each mode, best counts (default 2)")
    parser.add_argument("--lcore", type=int, default=1,
                        help="the core the data plane runs on (default 1)")
    parser.add_argument("--binary", type=Path, default=None,
                        help="tsw-dataplane binary (default: native/dataplane/build)")
    parser.add_argument("--parts", default="latency,capacity",
                        help="what to measure: latency, capacity or both (default both)")
    parser.add_argument("--out", type=Path, default=REPO / "build/bench-memcached",
                        help="where to write result.json and the plot "
                        "(default build/bench-memcached)")


# ---- frames and the pcap ----------------------------------------------------------------------


def ones_complement_sum(data: bytes) -> int:
    """The 16-bit ones' complement sum of data (padded with a zero byte to an even length)."""
    if len(data) % 2:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def udp_checksum(src_ip: bytes, dst_ip: bytes, udp: bytes) -> int:
    """RFC 768: over the pseudo-header and the datagram (checksum field zero); 0 goes as 0xFFFF."""
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 17, len(udp))
    value = ~ones_complement_sum(pseudo + udp) & 0xFFFF
    return value or 0xFFFF


def ip4(text: str) -> bytes:
    parts = [int(p) for p in text.split(".")]
    if len(parts) != 4 or not all(0 <= p < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return bytes(parts)


def udp_frame(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, sport: int,
              dport: int, payload: bytes, ip_id: int = 0) -> bytes:
    """An Ethernet/IPv4/UDP frame with correct IP and UDP checksums, padded to 60 bytes."""
    sip, dip = ip4(src_ip), ip4(dst_ip)
    udp = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
    struct.pack_into("!H", udp, 6, udp_checksum(sip, dip, bytes(udp)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ip_id & 0xFFFF,
                               0x4000, 64, 17, 0, sip, dip))
    struct.pack_into("!H", ip, 10, dpbench.ipv4_checksum(bytes(ip)))
    data = dst_mac + src_mac + b"\x08\x00" + bytes(ip) + bytes(udp)
    return data + bytes(max(0, 60 - len(data)))


def mc_datagram(req_id: int, body: bytes) -> bytes:
    """memcached's UDP frame header (request id, sequence 0, one datagram) and the body."""
    return struct.pack("!HHHH", req_id & 0xFFFF, 0, 1, 0) + body


def value_reply(key: bytes, value: bytes, flags: int = PCAP_FLAGS) -> bytes:
    return b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, flags, len(value), value)


def client_mac(i: int) -> bytes:
    return bytes([0x02, 0, 0, 0x71, 0x01, i])


def client_ip(i: int) -> str:
    return f"198.51.100.{100 + i}"


def client_port(i: int) -> int:
    return 40000 + i


def server_mac(i: int) -> bytes:
    return bytes([0x02, 0, 0, 0x71, 0x02, i])


def server_ip(i: int) -> str:
    return f"198.51.100.{20 + i}"


def pcap_key(i: int) -> bytes:
    """Key i of the redirect pcap: 8..16 bytes, distinct for every i < 10**6."""
    base = b"mk%06d" % i
    return base + b"x" * (i % 9)


def hot_key(i: int) -> bytes:
    return b"hot:%04d" % i


def get_frame(client: int, key: bytes, req_id: int) -> bytes:
    """A get from client `client` to the pcap pool's VIP."""
    return udp_frame(client_mac(client), PCAP_VMAC, client_ip(client), PCAP_VIP,
                     client_port(client), PCAP_PORT, mc_datagram(req_id, b"get %s\r\n" % key),
                     ip_id=req_id)


def reply_frame(server: int, client: int, key: bytes, value: bytes, req_id: int) -> bytes:
    """The VALUE reply a server sends (direct server return: from VIP:PORT) to a get."""
    return udp_frame(server_mac(server), client_mac(client), PCAP_VIP, client_ip(client),
                     PCAP_PORT, client_port(client), mc_datagram(req_id, value_reply(key, value)))


def redirect_frames(count: int = PCAP_FRAMES, keys: int = PCAP_KEYS) -> list[bytes]:
    """Gets over `keys` keys from PCAP_CLIENTS clients, request ids 0.. (one per frame)."""
    return [get_frame(i % PCAP_CLIENTS, pcap_key(i % keys), i) for i in range(count)]


def hit_frames(value_size: int, count: int = PCAP_FRAMES) -> list[bytes]:
    """The cache-hit pcap: per hot key k one get from client k with request id k, then the
    server's VALUE reply to it; then that same get again and again, the keys in turn.

    Every get of a key carries the same ticket (client address, port, request id), so the get
    that records the pending fill, whichever it is (the cache takes none for a while after the
    pool is published, and a key becomes hot only after a few gets), is answered by the reply
    at the start of the next pass. The reply comes from server 0's MAC: which server holds a
    key does not matter to the fill (it matches key and ticket)."""
    gets = [get_frame(k % PCAP_CLIENTS, hot_key(k), k) for k in range(HOT_KEYS)]
    out: list[bytes] = []
    for k in range(HOT_KEYS):
        key = hot_key(k)
        out += [gets[k], reply_frame(0, k % PCAP_CLIENTS, key, pcap_value(key, value_size), k)]
    while len(out) < count:
        out.append(gets[len(out) % HOT_KEYS])
    return out


def pcap_value(key: bytes, size: int) -> bytes:
    """A value of `size` bytes derived from the key (printable, no CR/LF)."""
    return (key * (size // max(1, len(key)) + 1))[:size]


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


# ---- the pool file ----------------------------------------------------------------------------


def server_identity(ip: str, port: int, weight: int = 1) -> bytes:
    """A server's place on the ketama ring, as nutcracker names it (torswitch.config.Server)."""
    from torswitch.config import Server

    return Server(ip, port, weight).identity


def pool_line(pool_id: int, name: str, vip: str, port: int, vmac: bytes,
              servers: Sequence[McServer], cache: bool, hash_name: str = "fnv1a_64",
              distribution: str = "ketama", tag: str = "") -> str:
    """The control verb `mc-pool` (dp_mc.h) defining one pool, servers in nutcracker's order
    (shorter identities first, then bytewise), which the ring is built in."""
    from torswitch.dataplane import mc_pool_words

    ordered = sorted(servers, key=lambda s: (len(s.identity), s.identity))
    return " ".join(mc_pool_words(pool_id, name, vip, port, mac_text(vmac), hash_name,
                                  distribution, tag, cache, ordered))


def pcap_servers(n: int = PCAP_SERVERS) -> list[McServer]:
    from torswitch.dataplane import McServer

    return [McServer(i + 1, server_ip(i), PCAP_PORT, mac_text(server_mac(i)),
                     identity=server_identity(server_ip(i), PCAP_PORT)) for i in range(n)]


# ---- statistics -------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(ns: Sequence[int]) -> dict[str, float]:
    """min/avg/max/p50/p99 in microseconds of round trips given in nanoseconds."""
    us = sorted(v / 1000 for v in ns)
    return {"min": us[0], "avg": sum(us) / len(us), "max": us[-1],
            "p50": percentile(us, 50), "p99": percentile(us, 99)}


@dataclass
class ProbeResult:
    """What the probe printed, per target index: round trips (ns) and status letters."""

    ns: dict[int, list[int]]
    status: dict[int, dict[str, int]]


def parse_probe(lines: Iterator[str] | Sequence[str]) -> ProbeResult:
    """Parse mc_latency's output lines ("INDEX STATUS NS")."""
    out = ProbeResult({}, {})
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ("V", "M", "T", "E"):
            raise ValueError(f"probe line {lineno}: {line.strip()!r}")
        idx, status, ns = int(parts[0]), parts[1], int(parts[2])
        counts = out.status.setdefault(idx, {})
        counts[status] = counts.get(status, 0) + 1
        out.ns.setdefault(idx, [])
        if status == "V":
            out.ns[idx].append(ns)
    return out


def latency_figures(stats: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat figures: `{config}_{stat}_us` and, but for direct, `{config}_{stat}_over_direct_ratio`
    (avg over avg, min over min, ...); plus `hit_over_direct_latency_ratio` (avg), the target's
    name for the cache hit."""
    out: dict[str, float] = {}
    base = stats["direct"]
    for config, values in stats.items():
        for stat in STATS:
            out[f"{config}_{stat}_us"] = values[stat]
            if config != "direct":
                out[f"{config}_{stat}_over_direct_ratio"] = (
                    values[stat] / base[stat] if base[stat] else 0.0)
    if "hit" in stats:
        out["hit_over_direct_latency_ratio"] = out["hit_avg_over_direct_ratio"]
    return out


def pool_totals(pools: dict[str, dict[str, int]]) -> dict[str, int]:
    """Memcached pool counters (torswitch.dataplane.Counters.pools) summed over the pools."""
    out: dict[str, int] = {}
    for counters in pools.values():
        for name, value in counters.items():
            out[name] = out.get(name, 0) + value
    return out


# ---- (a) latency on the bench's MemRack -------------------------------------------------------


def ensure_probe() -> Path:
    """The C probe, built with `make -C native/tools` when missing or older than its source."""
    source = PROBE_DIR / "mc_latency.c"
    if not PROBE.exists() or PROBE.stat().st_mtime < source.stat().st_mtime:
        res = subprocess.run(["make", "-s", "-C", str(PROBE_DIR)], capture_output=True,
                             text=True, check=False)
        if res.returncode != 0:
            raise BenchError(f"building {PROBE} failed:\n{res.stdout}{res.stderr}")
    return PROBE


def probe_argv(probe: Path, requests: int, rate: float, targets: Sequence[str]) -> list[str]:
    return [str(probe), "-n", str(requests), "-r", f"{rate:g}", "-t", str(PROBE_TIMEOUT_MS),
            "-w", str(WARMUP_ROUNDS), *targets]


def probe_target(proto: str, ip: str, port: int, keys: Sequence[bytes]) -> str:
    """One probe target ("udp:IP:PORT:K1,K2,..."): its keys are asked in turn."""
    if not keys or any(b"," in k for k in keys):
        raise ValueError("keys must be non-empty and hold no comma")
    return f"{proto}:{ip}:{port}:" + ",".join(k.decode() for k in keys)


def latency_keys(n: int) -> list[bytes]:
    """Candidate keys for the direct/nutcracker/redirect configurations (each asked once)."""
    return [b"mcb:lat:%06d" % i for i in range(n)]


HOT_KEY = b"mcb:hot:000001"
MEMRACK_POOL = "mc"


def _pool_counters(rack: Any) -> dict[str, int]:
    """The pool's counters from a stats file written after this call."""
    return dict(rack.fresh_counters().pools.get(MEMRACK_POOL, {}))


def measure_latency(args: argparse.Namespace, progress: bool = True) -> tuple[
        dict[str, dict[str, float]], dict[str, Any]]:
    """Part (a): per configuration the summary in microseconds, and facts about the run (hit
    verification, losses, the rack's layout)."""
    from torswitch.testbed.memrack import MemRack, MemRackSpec

    probe = ensure_probe()
    per_config = args.requests + WARMUP_ROUNDS
    value = b"v" * args.value_size
    total = per_config * len(CONFIGS)
    # The hot key must stay cached for the whole run: entries expire after the cache's TTL
    # (10 s by default), and an expired one is a miss and a refill.
    ttl_ms = min(86_400_000, int((total / args.rate + 300) * 1000))
    spec = MemRackSpec(prefix=RACK_PREFIX, subnet=RACK_SUBNET, nclients=1,
                       nservers=args.servers, nutcracker=True, cache=True, no_backoff=True,
                       cache_ttl_ms=ttl_ms)
    facts: dict[str, Any] = {}
    _say(progress, f"memcached: bringing up the {RACK_PREFIX} rack "
                   f"({args.servers} servers, nutcracker, data plane back-off off)")

    class BenchRack(MemRack):
        """The rack with its data plane pinned to --lcore (MemRackSpec has no core)."""

        def memswitch_argv(self) -> list[str]:
            return [*super().memswitch_argv(), "--lcore", str(args.lcore)]

    with BenchRack(spec) as rack:
        client = rack.clients[0]
        # Keys for the one-shot configurations: set through the VIP, then pick those of one
        # server, so every configuration talks to the same memcached.
        candidates = latency_keys(per_config * (args.servers + 2))
        with rack.udp_client(client, timeout=1.0, retries=3) as mc:
            for key in candidates:
                mc.set(key, value)
            mc.set(HOT_KEY, value)
        where = rack.where_keys_live(candidates)
        misplaced = [k for k, held in where.items() if len(held) != 1]
        if misplaced:
            raise BenchError(f"{len(misplaced)} keys not on exactly one server, e.g. "
                               f"{misplaced[0]!r}: {where[misplaced[0]]}")
        server = 0
        keys = [k for k in candidates if where[k] == [server]][:per_config]
        if len(keys) < per_config:
            raise BenchError(f"only {len(keys)} of {len(candidates)} keys live on server "
                               f"{server}; need {per_config}")
        # Make the hot key hot and cached: gets until the pool counts a hit.
        hits0 = _pool_counters(rack).get("hits", 0)
        with rack.udp_client(client, timeout=1.0, retries=3) as mc:
            for _ in range(50):
                mc.get(HOT_KEY)
                if _pool_counters(rack).get("hits", 0) > hits0:
                    break
            else:
                raise BenchError("the hot key never became a cache hit")
        nc_host, nc_port = rack.nutcracker_address
        targets = [probe_target("udp", rack.server_ip(server), rack.port, keys),
                   probe_target("tcp", nc_host, nc_port, keys),
                   probe_target("udp", rack.vip, rack.port, keys),
                   probe_target("udp", rack.vip, rack.port, [HOT_KEY])]
        before = _pool_counters(rack)
        _say(progress, f"memcached: {total} gets at {args.rate:g}/s "
                       f"(~{total / args.rate:.0f} s), {len(CONFIGS)} configurations interleaved")
        lines = _run_probe(rack, client, probe_argv(probe, args.requests, args.rate, targets),
                           expected=args.requests * len(CONFIGS), progress=progress,
                           timeout=total / args.rate + 60)
        after = _pool_counters(rack)
    result = parse_probe(lines)
    stats: dict[str, dict[str, float]] = {}
    for i, (config, _) in enumerate(CONFIGS):
        ns = result.ns.get(i, [])
        if not ns:
            raise BenchError(f"{config}: no get answered with a value "
                               f"(statuses {result.status.get(i)})")
        stats[config] = summarize(ns)
        counts = result.status.get(i, {})
        facts[f"{config}_values"] = counts.get("V", 0)
        facts[f"{config}_lost"] = counts.get("T", 0)
        facts[f"{config}_misses"] = counts.get("M", 0) + counts.get("E", 0)
    hits = after.get("hits", 0) - before.get("hits", 0)
    facts["hit_counter_delta"] = hits
    # Every get of the hit configuration (warm-up rounds too) must have been a hit, and
    # nothing else can hit: the other keys are asked once each through the VIP.
    facts["cache_hit_verified_ratio"] = hits / per_config if per_config else 0.0
    facts["latency_server"] = server
    return stats, facts


def _run_probe(rack: Any, ns: str, argv: Sequence[str], expected: int, progress: bool,
               timeout: float) -> list[str]:
    """Run the probe in namespace ns; its output lines. Always reaped."""
    from tqdm import tqdm

    proc = rack.popen(ns, list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      stdin=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        with tqdm(total=expected, desc="latency", unit="get", disable=not progress,
                  file=sys.stderr) as bar:
            for line in proc.stdout:
                lines.append(line)
                bar.update(1)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"latency probe still running after {timeout:.0f} s")
        rc = proc.wait(timeout=10)
        err = proc.stderr.read() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        raise BenchError(f"latency probe failed ({rc}): {err.strip()}")
    return lines


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


# ---- (b) capacity by pcap replay --------------------------------------------------------------

# (figure prefix, table label)
CAPACITY_MODES: tuple[tuple[str, str], ...] = (
    ("bare_forwarding", "bare forwarding (baseline)"),
    ("redirect", "memcached redirect"),
    ("cache_hit", "memcached cache hit"),
)


def capacity_mode_args(mode: str, pool_file: Path) -> list[str]:
    """Data-plane arguments of one capacity mode (after the common ones of bench dataplane)."""
    if mode == "bare_forwarding":
        return ["--mode", "bare"]
    # No writes in the pcaps: the write hold only matters after the pool is published, when
    # the cache takes no fill for a write timeout (dp_mc_cache.c, flush_hold); keep it short.
    args = ["--mode", "switch", "--mc-pool-file", str(pool_file), "--mc-write-timeout-ms", "1"]
    # Servers and clients live behind the null port: rewritten requests and the servers'
    # replies are switched there; the cache's answers leave by the ingress (pcap) port.
    for mac in [server_mac(i) for i in range(PCAP_SERVERS)] + [
            client_mac(i) for i in range(PCAP_CLIENTS)]:
        args += ["--static-mac", f"{mac_text(mac)}@1"]
    return args


def capacity_run(binary: Path, pcap: Path, stats: Path, mode_args: Sequence[str],
                 seconds: float, lcore: int) -> dict[str, int]:
    """One pcap run; the counters that matter (frames in and out per port, worker time, and
    the memcached counters)."""
    argv = dpbench.dataplane_argv(binary, pcap, stats, mode_args, seconds, lcore)
    res = dpbench.run_once(argv, stats, timeout=seconds + 30)
    from torswitch.dataplane import parse_counters

    counters = parse_counters(stats.read_text())
    res["pcap_tx"] = counters.port("net_pcap0").get("tx_packets", 0)
    res.update({f"mc_{k}": v for k, v in pool_totals(counters.pools).items()})
    res.update({f"fill_{k.lower()}": v for k, v in counters.labelled.get("mc_fill", {}).items()})
    return res


def measure_capacity(args: argparse.Namespace, binary: Path, progress: bool = True) -> dict[
        str, dict[str, int]]:
    """Part (b): per mode the best run (highest rate) of args.repeat."""
    from tqdm import tqdm

    best: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="tsw-bench-mc-") as tmp:
        d = Path(tmp)
        stats = d / "stats.prom"
        pcaps = {"redirect": d / "redirect.pcap", "cache_hit": d / "hit.pcap"}
        dpbench.write_pcap(pcaps["redirect"], redirect_frames())
        dpbench.write_pcap(pcaps["cache_hit"], hit_frames(args.value_size))
        pools = {"redirect": d / "pool-redirect.txt", "cache_hit": d / "pool-hit.txt"}
        servers = pcap_servers()
        pools["redirect"].write_text(pool_line(0, "bench", PCAP_VIP, PCAP_PORT, PCAP_VMAC,
                                               servers, cache=False) + "\n")
        pools["cache_hit"].write_text(pool_line(0, "bench", PCAP_VIP, PCAP_PORT, PCAP_VMAC,
                                                servers, cache=True) + "\n")
        with tqdm(total=args.repeat * len(CAPACITY_MODES), desc="capacity", unit="run",
                  disable=not progress, file=sys.stderr) as bar:
            for _ in range(args.repeat):
                for mode, _ in CAPACITY_MODES:
                    which = "cache_hit" if mode == "cache_hit" else "redirect"
                    res = capacity_run(binary, pcaps[which], stats,
                                       capacity_mode_args(mode, pools[which]), args.seconds,
                                       args.lcore)
                    if mode not in best or _rate(mode, res) > _rate(mode, best[mode]):
                        best[mode] = res
                    bar.update(1)
    return best


def _rate(mode: str, res: dict[str, int]) -> float:
    """Frames per microsecond (= Mpps) of a run: for the cache hit, gets answered from the
    cache; otherwise frames out of the null port."""
    done = res.get("mc_hits", 0) if mode == "cache_hit" else res["tx"]
    return done / res["worker_us"] if res["worker_us"] else 0.0


def capacity_figures(best: dict[str, dict[str, int]]) -> dict[str, float]:
    base = _rate("bare_forwarding", best["bare_forwarding"])
    out: dict[str, float] = {}
    for mode, _ in CAPACITY_MODES:
        rate = _rate(mode, best[mode])
        out[f"{mode}_mpps"] = rate
        if mode != "bare_forwarding":
            out[f"{mode}_over_bare_ratio"] = rate / base if base else 0.0
    hit = best["cache_hit"]
    out["cache_hits_per_s"] = out["cache_hit_mpps"] * 1e6
    gets = hit.get("mc_get_keys", 0)
    out["cache_hit_ratio"] = hit.get("mc_hits", 0) / gets if gets else 0.0
    out["cache_hit_replies_mpps"] = hit["pcap_tx"] / hit["worker_us"] if hit["worker_us"] else 0.0
    red = best["redirect"]
    out["redirect_forwarded_ratio"] = red["tx"] / red["rx"] if red["rx"] else 0.0
    return out


# ---- the report -------------------------------------------------------------------------------

# The paper's Table 1 (avg, normalized to direct access), shown beside ours.
PAPER_AVG_RATIO = {"nutcracker": 2.39, "redirect": 1.03, "hit": 0.11}
PARTS = ("latency", "capacity")


def parse_parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if not parts or any(p not in PARTS for p in parts):
        raise ValueError(f"--parts takes a comma-separated subset of {','.join(PARTS)}")
    return parts


def build_report(args: argparse.Namespace, stats: dict[str, dict[str, float]] | None,
                 facts: dict[str, Any] | None,
                 capacity: dict[str, dict[str, int]] | None) -> Report:
    """The Report (figures, table, targets, notes) of whatever parts were measured."""
    report = Report(NAME, columns=["measurement", "unit", "min", "avg", "max", "p50", "p99",
                                   "avg x base", "min x base", "max x base", "paper avg x"])
    figures = report.figures
    if stats is not None and facts is not None:
        figures.update(latency_figures(stats))
        figures.update({k: v for k, v in facts.items() if isinstance(v, (int, float))})
        for config, label in CONFIGS:
            s = stats[config]
            ratios = ["-", "-", "-"] if config == "direct" else [
                f"{figures[f'{config}_{stat}_over_direct_ratio']:.2f}"
                for stat in ("avg", "min", "max")]
            paper = f"{PAPER_AVG_RATIO[config]:.2f}" if config in PAPER_AVG_RATIO else "1"
            report.rows.append([label, "us", *(f"{s[stat]:.1f}" for stat in STATS), *ratios,
                                paper])
        figures.update({"requests_per_config": args.requests, "rate_per_s": args.rate,
                        "value_bytes": args.value_size, "servers": args.servers})
        report.targets += [
            Target("redirect_avg_over_direct_ratio", "<=", TARGET_REDIRECT_LATENCY),
            Target("hit_over_direct_latency_ratio", "<=", TARGET_HIT_LATENCY)]
        report.notes.append(
            f"latency: {args.requests} gets per configuration at {args.rate:g}/s in all, "
            f"interleaved, {args.value_size}-byte values, C probe (native/tools/mc_latency) in "
            f"{RACK_PREFIX}c1; data plane back-off off; base = direct; cache hits counted "
            f"{facts['hit_counter_delta']} for {args.requests + WARMUP_ROUNDS} gets "
            f"({facts['cache_hit_verified_ratio']:.3f}); lost "
            + ", ".join(f"{c} {facts[f'{c}_lost']}" for c, _ in CONFIGS))
    if capacity is not None:
        figures.update(capacity_figures(capacity))
        for mode, label in CAPACITY_MODES:
            ratio = "-" if mode == "bare_forwarding" else f"{figures[f'{mode}_over_bare_ratio']:.2f}"
            report.rows.append([label, "Mpps", "", f"{figures[f'{mode}_mpps']:.2f}", "", "", "",
                                ratio, "", "", ""])
        figures.update({"seconds_per_run": args.seconds, "runs_per_mode": args.repeat,
                        "pcap_keys": PCAP_KEYS, "hot_keys": HOT_KEYS})
        report.targets += [Target("redirect_mpps", ">=", LINE_RATE_64B_MPPS),
                           Target("cache_hit_mpps", ">=", TARGET_HIT_MPPS)]
        report.notes.append(
            f"capacity: one core (lcore {args.lcore}), back-off off, best of {args.repeat} x "
            f"{args.seconds:g} s, pcap in memory into net_null, base = bare forwarding; "
            f"cache hits {figures['cache_hits_per_s'] / 1e6:.2f} M/s, hit ratio "
            f"{figures['cache_hit_ratio']:.4f}, answers out of the pcap port "
            f"{figures['cache_hit_replies_mpps']:.2f} Mpps; redirect forwarded "
            f"{figures['redirect_forwarded_ratio']:.4f} of the gets")
    return report


def write_outputs(directory: Path, report: Report) -> list[str]:
    """result.json and, with matplotlib, latency.png in directory; returns notes to print."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"figures": report.figures, "targets_met": report.target_results()}
    (directory / "result.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    notes = [f"results: {directory / 'result.json'}"]
    if "direct_avg_us" not in report.figures:
        return notes
    try:
        plot(report.figures, directory / "latency.png")
    except ImportError:
        notes.append("plot skipped: matplotlib is not installed (the 'plot' extra)")
    else:
        notes.append(f"plot: {directory / 'latency.png'}")
    return notes


def plot(figures: dict[str, Any], path: Path) -> None:
    """Grouped bars: min/avg/max round trip of each configuration over direct's, the paper's
    avg ratios as markers, a line at 1 (direct)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = [(c, label) for c, label in CONFIGS if c != "direct"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.25
    for j, stat in enumerate(("min", "avg", "max")):
        xs = [i + (j - 1) * width for i in range(len(configs))]
        ax.bar(xs, [figures[f"{c}_{stat}_over_direct_ratio"] for c, _ in configs], width,
               label=f"{stat} / direct {stat}")
    ax.scatter(range(len(configs)), [PAPER_AVG_RATIO[c] for c, _ in configs], marker="D",
               color="black", zorder=3, label="paper (2014), avg")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(configs)), [label for _, label in configs])
    ax.set_ylabel("round trip / direct")
    ax.set_title(f"memcached get latency at light load (direct avg "
                 f"{figures['direct_avg_us']:.1f} us)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> Report:
    from torswitch.dataplane import DEFAULT_BINARY, DataplaneError

    parts = parse_parts(args.parts)
    if args.requests < 1 or args.rate <= 0:
        raise ValueError("--requests and --rate must be positive")
    if not 1 <= args.value_size <= MAX_VALUE:
        raise ValueError(f"--value-size must be 1..{MAX_VALUE} (what the cache takes by default)")
    if args.seconds <= 0 or args.repeat < 1:
        raise ValueError("--seconds must be > 0 and --repeat >= 1")
    binary = args.binary or DEFAULT_BINARY
    if not os.access(binary, os.X_OK):
        raise DataplaneError(f"{binary} not built (run `make dataplane`)")
    progress = sys.stderr.isatty() or bool(os.environ.get("TORSWITCH_PROGRESS"))
    stats = facts = capacity = None
    if "latency" in parts:
        stats, facts = measure_latency(args, progress)
    if "capacity" in parts:
        capacity = measure_capacity(args, binary, progress)
    report = build_report(args, stats, facts, capacity)
    report.notes += write_outputs(args.out, report)
    return report
