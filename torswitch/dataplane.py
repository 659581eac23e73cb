"""Start, supervise and read the DPDK data plane (native/dataplane, `tsw-dataplane`).

The data plane is its own process (Python never hosts DPDK): this module builds its command
line from a DataplaneConfig, starts it (optionally inside a network namespace through
`ip netns exec`), waits for its readiness signal (the first stats file), notices when it dies,
stops it with SIGTERM (SIGKILL after a grace period) and parses its counters.

Counters come from the stats file the process rewrites atomically every `stats_interval_ms`, in
Prometheus text format. Their names and help texts are generated in C from the X-macro table
native/dataplane/dp_counters.h; nothing here lists them, so the two sides cannot drift.

Port numbering: DPDK numbers virtual devices in command-line order, so rack ports are 0..n-1,
then the uplink, then the tap. Counters are keyed by the interface each port is attached to.

Cores: by default the data plane runs on one lcore (`lcore`). Given several (`lcores`), it runs
its switch loop on each, every port with as many queue pairs (`queues`, by default one per
lcore; af_packet's vdev qpairs=N, the kernel's fanout hash spreading flows over them; net_tap
takes as many queues as lcores by itself), the (port, queue) pairs dealt to the lcores. The
lowest lcore is the main one (worker 0), which owns MemSwitch's state; the others hand it the
memcached frames (native/dataplane/dp.h). Per-worker counters are in Counters.labelled
(`worker_rx_packets`, `worker_mc_handoff`, ...: keyed "worker=N,lcore=L").

Control: the process serves a unix datagram socket (`--control`, protocol v1, specified in
native/dataplane/dp_ctl.c); ControlClient speaks it: status, steering on/off (optionally on
with a lease the data plane ends by itself unless renewed), steered ports, counters, and
MemSwitch's memcached pools (mc_pool, mc_pool_del, mc_flush, mc_status; the
data-plane side is native/dataplane/dp_mc.h). Fail-open: a HealthChecker probes the block engine (by default a TCP connect to its
listening port inside the ToR namespace) and turns steering off while the engine is unhealthy,
so HDFS traffic is switched straight to the DataNodes, and on again once it recovers.

Steering decides per TCP connection, on its SYN (native/dataplane/dp_flow.h): turning it off
sends new connections straight to the DataNodes at once, while connections already steered
keep going to the engine until they end (and the other way round when it comes on).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from torswitch.errors import TorswitchError

log = logging.getLogger(__name__)

DEFAULT_BINARY = Path(__file__).resolve().parent.parent / "native/dataplane/build/tsw-dataplane"
METRIC_PREFIX = "tsw_dataplane_"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
#: The HDFS DataTransferProtocol port when a conf dir does not set dfs.datanode.address.
DEFAULT_DATANODE_PORT = 9866
#: Version of the control protocol spoken here (dp_ctl.c).
CONTROL_VERSION = "v1"
_CONTROL_MAX_REPLY = 1 << 20
#: Longest request the data plane takes (dp_ctl.c DP_CTL_MAX_REQ, DP_CTL_MAX_WORDS).
CONTROL_MAX_REQUEST = 16384
CONTROL_MAX_WORDS = 80
#: Longest steering lease the data plane takes (dp_ctl.c DP_CTL_MAX_LEASE_MS), in ms.
MAX_STEERING_LEASE_MS = 86_400_000
#: Most lcores (workers) and queues per port the data plane takes (dp.h DP_MAX_WORKERS,
#: DP_MAX_QUEUES; af_packet takes at most 16 qpairs too).
MAX_LCORES = 16
MAX_QUEUES = 16
#: MemSwitch limits (dp_mc.h).
MC_MAX_POOLS = 8
MC_MAX_SERVERS = 32
MC_MAX_SERVER_IDS = 256
MC_MAX_VALUE = 1400
_CLONE_NEWNET = 0x40000000


class DataplaneError(TorswitchError):
    """The data plane could not be started, died, or its counters could not be read."""


@dataclasses.dataclass(frozen=True)
class DataplaneConfig:
    """How to run one data-plane process.

    rack_ifaces: host-facing interfaces (af_packet ports), in port order.
    uplink_iface: the interface towards the spine, if any (switched, never steered).
    tap_iface: name of the kernel interface the exception (net_tap) port creates, if any.
    steer_tcp_ports: IPv4 TCP destination ports steered from rack ports to the tap.
    netns: network namespace to run in (through `ip netns exec`), None for the current one.
    lcore: the one lcore (core) to run on, when lcores is None.
    lcores: several lcores to run the switch loop on (EAL -l); the lowest is the main lcore,
      worker 0. None: just lcore.
    queues: queue pairs per af_packet port (vdev qpairs=N); None: one per lcore.
    stats_interval_ms: period of the stats file, in milliseconds.
    no_backoff: busy-poll even when idle (benchmarks only: it burns a whole core).
    steering: whether steering starts on (a supervisor with a health check starts it off).
    flow_idle_s: seconds after which a steering flow whose client sent nothing is forgotten
      (None: the data plane's default, 300).
    tap_mac: the tap's MAC, or "fixed" for net_tap's fixed one; None lets net_tap pick a random
      one at each start (a supervisor that restarts the data plane wants it stable, or the
      rack's ARP caches point at a MAC that no longer exists).
    mc_*: MemSwitch's cache options (None: the data plane's default): cache slots (0 for no
      cache), largest cached value (bytes, at most 1400), gets before a key is cached, cache
      entry lifetime and write hold timeout (ms); mc_pool_file: control lines (`mc-pool ...`)
      applied at start-up.
    """

    rack_ifaces: Sequence[str]
    uplink_iface: str | None = None
    tap_iface: str | None = None
    steer_tcp_ports: Sequence[int] = ()
    netns: str | None = None
    lcore: int = 0
    lcores: Sequence[int] | None = None
    queues: int | None = None
    memory_mb: int = 256
    stats_interval_ms: int = 200
    mac_age_s: int | None = None
    flow_idle_s: int | None = None
    no_backoff: bool = False
    steering: bool = True
    binary: Path = DEFAULT_BINARY
    file_prefix: str = "tsw-dp"
    tap_mac: str | None = None
    mc_cache_slots: int | None = None
    mc_max_value: int | None = None
    mc_hot_threshold: int | None = None
    mc_cache_ttl_ms: int | None = None
    mc_write_timeout_ms: int | None = None
    mc_pool_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.rack_ifaces:
            raise ValueError("the data plane needs at least one rack interface")
        if len(self.steer_tcp_ports) > 8:
            raise ValueError("at most 8 steered TCP ports")
        for port in self.steer_tcp_ports:
            if not 0 < port < 65536:
                raise ValueError(f"invalid TCP port {port}")
        if self.steer_tcp_ports and self.tap_iface is None:
            raise ValueError("steering TCP ports needs a tap interface")
        if self.lcore < 0:
            raise ValueError(f"invalid lcore {self.lcore}")
        if self.lcores is not None:
            if not 0 < len(self.lcores) <= MAX_LCORES:
                raise ValueError(f"lcores must list 1..{MAX_LCORES} lcores")
            if len(set(self.lcores)) != len(self.lcores) or min(self.lcores) < 0:
                raise ValueError(f"lcores must be distinct numbers >= 0: {list(self.lcores)}")
        if self.queues is not None and not 0 < self.queues <= MAX_QUEUES:
            raise ValueError(f"queues must be 1..{MAX_QUEUES}")
        if self.flow_idle_s is not None and not 0 < self.flow_idle_s <= 86400:
            raise ValueError("flow_idle_s must be 1..86400")
        if self.mc_cache_slots is not None and not 0 <= self.mc_cache_slots <= 1 << 24:
            raise ValueError(f"mc_cache_slots must be 0..{1 << 24}")
        if self.mc_max_value is not None and not 0 < self.mc_max_value <= MC_MAX_VALUE:
            raise ValueError(f"mc_max_value must be 1..{MC_MAX_VALUE}")
        if self.mc_hot_threshold is not None and not 0 < self.mc_hot_threshold <= 65535:
            raise ValueError("mc_hot_threshold must be 1..65535")
        for name in ("mc_cache_ttl_ms", "mc_write_timeout_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")

    def eal_lcores(self) -> str:
        """The EAL -l argument."""
        if self.lcores is None:
            return str(self.lcore)
        return ",".join(str(c) for c in self.lcores)

    def queue_pairs(self) -> int:
        """Queue pairs per af_packet port: queues, else one per lcore."""
        if self.queues is not None:
            return self.queues
        return 1 if self.lcores is None else len(self.lcores)

    def port_ifaces(self) -> dict[str, str]:
        """DPDK device name -> interface name, for every port."""
        names = {f"net_af_packet{i}": iface for i, iface in enumerate(self.rack_ifaces)}
        if self.uplink_iface is not None:
            names[f"net_af_packet{len(self.rack_ifaces)}"] = self.uplink_iface
        if self.tap_iface is not None:
            names["net_tap0"] = self.tap_iface
        return names


def parse_lcores(text: str) -> tuple[int, ...]:
    """An lcore list as EAL's -l takes it ("0-1", "0,2", "1-3,5"), in order, without
    duplicates. Raises ValueError for anything else."""
    out: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise ValueError(f"not an lcore list (like 0-1 or 0,2): {text!r}") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"bad lcore range {part.strip()!r} in {text!r}")
        out.extend(c for c in range(lo, hi + 1) if c not in out)
    if not 0 < len(out) <= MAX_LCORES:
        raise ValueError(f"{text!r}: 1..{MAX_LCORES} lcores")
    return tuple(out)


def steer_ports_from_hadoop_conf(conf_dir: str | os.PathLike[str] | None) -> tuple[int, ...]:
    """The TCP ports to steer: the DataNode transfer port of a Hadoop conf dir.

    That is the port of `dfs.datanode.address` in hdfs-site.xml (or core-site.xml), else
    Hadoop's default 9866; None for no conf dir gives the default too. Raises ConfigError for
    an unreadable conf dir or a malformed address.
    """
    if conf_dir is None:
        return (DEFAULT_DATANODE_PORT,)
    from torswitch.hadoopconf import HadoopConf

    _, port = HadoopConf.load(conf_dir).datanode_address()
    return (port,)


def build_argv(config: DataplaneConfig, stats_file: Path,
               control_path: Path | None = None) -> list[str]:
    """The full command line (including `ip netns exec` when config.netns is set)."""
    argv: list[str] = []
    if config.netns is not None:
        argv += ["ip", "netns", "exec", config.netns]
    argv += [
        str(config.binary),
        "-l", config.eal_lcores(),
        # No hugepages, no PCI scan, no shared runtime config: verified on this machine kind
        # (tor-interception.md, section B).
        "--no-huge", "-m", str(config.memory_mb), "--no-pci", "--no-shconf",
        "--file-prefix", config.file_prefix,
    ]
    ifaces = list(config.rack_ifaces)
    if config.uplink_iface is not None:
        ifaces.append(config.uplink_iface)
    qpairs = config.queue_pairs()
    for i, iface in enumerate(ifaces):
        vdev = f"net_af_packet{i},iface={iface}"
        if qpairs > 1:
            vdev += f",qpairs={qpairs}"
        if i == len(config.rack_ifaces):
            # The uplink goes through its qdisc (af_packet bypasses it by default), so tc
            # shaping on it, like the testbed's oversubscribed uplink, still applies.
            vdev += ",qdisc_bypass=0"
        argv += ["--vdev", vdev]
    if config.tap_iface is not None:
        # net_tap has no queue argument: the data plane gives it one queue pair per lcore.
        tap = f"net_tap0,iface={config.tap_iface}"
        if config.tap_mac is not None:
            tap += f",mac={config.tap_mac}"
        argv += ["--vdev", tap]
    argv += ["--", "--stats-file", str(stats_file),
             "--stats-interval-ms", str(config.stats_interval_ms)]
    if config.uplink_iface is not None:
        argv += ["--uplink", str(len(config.rack_ifaces))]
    for port in config.steer_tcp_ports:
        argv += ["--steer-tcp-port", str(port)]
    if config.mac_age_s is not None:
        argv += ["--mac-age-s", str(config.mac_age_s)]
    if config.flow_idle_s is not None:
        argv += ["--flow-idle-s", str(config.flow_idle_s)]
    if config.no_backoff:
        argv.append("--no-backoff")
    if not config.steering:
        argv += ["--steering", "off"]
    if control_path is not None:
        argv += ["--control", str(control_path)]
    for flag, value in (("--mc-cache-slots", config.mc_cache_slots),
                        ("--mc-max-value", config.mc_max_value),
                        ("--mc-hot-threshold", config.mc_hot_threshold),
                        ("--mc-cache-ttl-ms", config.mc_cache_ttl_ms),
                        ("--mc-write-timeout-ms", config.mc_write_timeout_ms),
                        ("--mc-pool-file", config.mc_pool_file)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


@dataclasses.dataclass
class Counters:
    """One snapshot of the data plane's counters.

    ports: interface (or DPDK device name when unknown) -> counter name -> value. Counter names
    drop the `tsw_dataplane_` prefix and the `_total` suffix (`rx_packets`, `steered`, ...).
    totals: the unlabelled samples: global counters (`mac_learned`, `idle_sleeps`, ...) and
    gauges (`mc_cache_entries`, `mc_requests_in_flight`).
    pools: memcached pool name -> counter (`requests`, `hits`, ...: the `mc_` prefix dropped).
    servers: "POOL/IDENTITY" -> counter (`requests`, `hits`, ...: `mc_server_` dropped).
    labelled: other labelled samples, metric -> label value -> value (`mc_parse` by result,
    `mc_fill` by result).
    """

    ports: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    totals: dict[str, int] = dataclasses.field(default_factory=dict)
    help: dict[str, str] = dataclasses.field(default_factory=dict)
    types: dict[str, str] = dataclasses.field(default_factory=dict)  # "counter" or "gauge"
    pools: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    servers: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    labelled: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def port(self, name: str) -> dict[str, int]:
        """The counters of one port; raises DataplaneError if there is no such port."""
        try:
            return self.ports[name]
        except KeyError:
            raise DataplaneError(f"no port {name!r} in counters ({sorted(self.ports)})") from None

    def sum(self, counter: str) -> int:
        """The sum of one per-port counter over every port."""
        return sum(c.get(counter, 0) for c in self.ports.values())


def _short(metric: str) -> str:
    name = metric.removeprefix(METRIC_PREFIX)
    return name.removesuffix("_total")


def _unescape(value: str) -> str:
    """A Prometheus label value as written (backslash escapes of \\, \" and \n)."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_counters(text: str, port_names: dict[str, str] | None = None) -> Counters:
    """Parse a stats file (Prometheus text). port_names maps DPDK device names to interfaces.

    Raises DataplaneError on a line that is neither a comment nor a sample.
    """
    names = port_names or {}
    out = Counters()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) == 4 and parts[1] == "HELP":
                out.help[_short(parts[2])] = parts[3]
            elif len(parts) == 4 and parts[1] == "TYPE":
                out.types[_short(parts[2])] = parts[3]
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise DataplaneError(f"stats line {lineno}: cannot parse {line!r}")
        metric, labels_text, value_text = m.groups()
        try:
            value = int(value_text)
        except ValueError:
            raise DataplaneError(f"stats line {lineno}: bad value {value_text!r}") from None
        labels = {k: _unescape(v) for k, v in _LABEL.findall(labels_text or "")}
        short = _short(metric)
        if "name" in labels:
            key: str = names.get(labels["name"]) or labels["name"]
            out.ports.setdefault(key, {})[short] = value
        elif not labels:
            out.totals[short] = value
        elif "pool" in labels and "server" in labels:
            out.servers.setdefault(f"{labels['pool']}/{labels['server']}", {})[
                short.removeprefix("mc_server_")] = value
        elif "pool" in labels:
            out.pools.setdefault(labels["pool"], {})[short.removeprefix("mc_")] = value
        else:
            label = labels.get("result") or ",".join(f"{k}={v}" for k, v in labels.items())
            out.labelled.setdefault(short, {})[label] = value
    return out


class ControlError(DataplaneError):
    """The data plane refused a control command, or did not answer in time."""


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _check_mac(mac: str, what: str) -> None:
    if not _MAC.match(mac):
        raise ValueError(f"{what} is not a MAC aa:bb:cc:dd:ee:ff: {mac!r}")


def _check_ipv4(addr: str, what: str) -> None:
    try:
        socket.inet_pton(socket.AF_INET, addr)
    except OSError:
        raise ValueError(f"{what} is not an IPv4 address a.b.c.d: {addr!r}") from None


@dataclasses.dataclass(frozen=True)
class McServer:
    """One server of a memcached pool as the data plane holds it.

    sid: stable id (0..255, unique over all pools: the data plane's per-server counters are
    indexed by it). mac: where requests for its keys go ("00:00:00:00:00:00" is accepted only
    for a server that is not live). identity: the bytes that place it on the ring (nutcracker's
    name, see torswitch.config.Server.identity); printable ASCII, at most 95 bytes.
    """

    sid: int
    ip: str
    port: int
    mac: str
    weight: int = 1
    live: bool = True
    identity: bytes = b""

    def word(self) -> str:
        """The server's word of an mc-pool command, after checking every field."""
        if not 0 <= self.sid < MC_MAX_SERVER_IDS:
            raise ValueError(f"server id {self.sid} not in 0..{MC_MAX_SERVER_IDS - 1}")
        _check_ipv4(self.ip, "server address")
        if not 0 < self.port < 65536:
            raise ValueError(f"invalid server port {self.port}")
        _check_mac(self.mac, "server MAC")
        if self.weight < 1:
            raise ValueError(f"server weight {self.weight} is not >= 1")
        if not 0 < len(self.identity) <= 95 or any(not 0x20 <= b <= 0x7e
                                                   for b in self.identity):
            raise ValueError(f"server identity {self.identity!r} is not 1..95 printable bytes")
        return (f"{self.sid},{self.ip},{self.port},{self.mac},{self.weight},"
                f"{int(self.live)},{self.identity.hex()}")


@dataclasses.dataclass(frozen=True)
class McPoolStatus:
    """One published pool, as mc-status reports it."""

    pool_id: int
    name: str
    vip: str
    port: int
    vmac: str
    hash: str
    distribution: str
    hash_tag: str  # "" for none
    cache: bool
    servers: tuple[McServer, ...]


@dataclasses.dataclass(frozen=True)
class McStatus:
    """The data plane's memcached state: cache size and use, and the published pools."""

    cache_slots: int
    cache_entries: int
    requests_in_flight: int
    pools: dict[int, McPoolStatus]


def mc_pool_words(pool_id: int, name: str, vip: str, port: int, vmac: str, hash: str,
                  distribution: str, hash_tag: str, cache: bool,
                  servers: Sequence[McServer]) -> list[str]:
    """The words of an mc-pool command (dp_mc.h), checked here as the data plane will."""
    if not 0 <= pool_id < MC_MAX_POOLS:
        raise ValueError(f"pool id {pool_id} not in 0..{MC_MAX_POOLS - 1}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", name):
        raise ValueError(f"pool name {name!r} is not 1..63 of A-Z a-z 0-9 _ - .")
    _check_ipv4(vip, "pool address")
    if not 0 < port < 65536:
        raise ValueError(f"invalid pool port {port}")
    _check_mac(vmac, "pool MAC")
    if hash_tag and (len(hash_tag) != 2 or any(c.isspace() for c in hash_tag)):
        raise ValueError(f"hash tag {hash_tag!r} is not two characters")
    if not 0 < len(servers) <= MC_MAX_SERVERS:
        raise ValueError(f"a pool has 1..{MC_MAX_SERVERS} servers, not {len(servers)}")
    sids = [s.sid for s in servers]
    if len(set(sids)) != len(sids):
        raise ValueError(f"server ids repeat: {sids}")
    return ["mc-pool", str(pool_id), name, f"{vip}:{port}", vmac, hash, distribution,
            hash_tag or "-", "on" if cache else "off", *(s.word() for s in servers)]


def parse_mc_status(body: str) -> McStatus:
    """The body of an mc-status reply (dp_mc_ctl.c): global key=value lines, one `pool=` line
    per pool and one `server pool=` line per server."""
    top: dict[str, str] = {}
    pools: dict[int, dict[str, str]] = {}
    servers: dict[int, list[McServer]] = {}
    for line in body.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "server":
            kv = dict(w.partition("=")[::2] for w in words[1:] if "=" in w)
            servers.setdefault(int(kv["pool"]), []).append(McServer(
                sid=int(kv["sid"]), ip=kv["ip"], port=int(kv["port"]), mac=kv["mac"],
                weight=int(kv["weight"]), live=kv["live"] == "1",
                identity=bytes.fromhex(kv["identity"])))
        elif words[0].startswith("pool="):
            kv = dict(w.partition("=")[::2] for w in words if "=" in w)
            pools[int(kv["pool"])] = kv
        else:
            top.update(w.partition("=")[::2] for w in words if "=" in w)
    return McStatus(
        cache_slots=int(top.get("cache_slots", 0)),
        cache_entries=int(top.get("cache_entries", 0)),
        requests_in_flight=int(top.get("requests_in_flight", 0)),
        pools={pid: McPoolStatus(
            pool_id=pid, name=kv["name"], vip=kv["vip"], port=int(kv["port"]),
            vmac=kv["vmac"], hash=kv["hash"], distribution=kv["distribution"],
            hash_tag="" if kv["hash_tag"] == "-" else kv["hash_tag"], cache=kv["cache"] == "on",
            servers=tuple(servers.get(pid, ()))) for pid, kv in sorted(pools.items())})


class ControlClient:
    """Client of a data plane's control socket (protocol v1, see native/dataplane/dp_ctl.c).

    Requests are one datagram `v1 SEQ VERB ARG...`; the reply repeats SEQ, so replies to a
    request that timed out are recognised and dropped. The client binds its own socket to a
    file in a private temporary directory (filesystem sockets work across network namespaces,
    abstract ones do not). Thread-safe: one request at a time. Close it, or use it as a
    context manager.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 2.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._dir = tempfile.mkdtemp(prefix="tsw-ctl-")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(os.path.join(self._dir, "client.sock"))
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _CONTROL_MAX_REPLY)
        except OSError:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._dir, "client.sock"))
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)

    def request(self, verb: str, *args: str) -> str:
        """Send one command; returns the reply body. Raises ControlError on an error reply or
        no reply within timeout, OSError when the socket cannot be reached."""
        data = " ".join((CONTROL_VERSION, "0" * 20, verb, *args)).encode()
        if len(data) > CONTROL_MAX_REQUEST or 3 + len(args) > CONTROL_MAX_WORDS:
            raise ValueError(f"{verb}: request over {CONTROL_MAX_REQUEST} bytes or "
                             f"{CONTROL_MAX_WORDS} words")
        with self._lock:
            seq = str(next(self._seq))
            self._sock.sendto(" ".join((CONTROL_VERSION, seq, verb, *args)).encode(), self.path)
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ControlError(f"no reply to {verb!r} from {self.path} in {self.timeout}s")
                self._sock.settimeout(left)
                try:
                    data = self._sock.recv(_CONTROL_MAX_REPLY)
                except TimeoutError:
                    continue
                head, _, body = data.decode(errors="replace").partition("\n")
                words = head.split(" ", 3)
                if len(words) < 3 or words[1] != seq:
                    continue  # a late reply to an earlier request
                if words[0] != CONTROL_VERSION:
                    raise ControlError(f"data plane speaks {words[0]}, not {CONTROL_VERSION}")
                if words[2] == "ok":
                    return body
                raise ControlError(f"{verb}: {words[3] if len(words) > 3 else head}")

    def status(self) -> dict[str, str]:
        """Key/value status: protocol, mode, ports, steering, steering_lease_ms (ms left, or
        none), steer_tcp_ports, tap_port, flow_slots, flow_idle_s, workers; per worker N
        workerN_lcore and workerN_rxq ("PORT:QUEUE,..."); per port P portP_rxq, portP_txq and
        portP_rss (on/off)."""
        return dict(line.split("=", 1) for line in self.request("status").splitlines()
                    if "=" in line)

    def set_steering(self, on: bool, lease_ms: int | None = None) -> None:
        """Steering of new TCP flows on or off. With lease_ms, on lasts that many
        milliseconds unless renewed (another set_steering(True, ...)): the data plane turns it
        off by itself when the lease runs out. Raises ValueError for a lease out of
        1..MAX_STEERING_LEASE_MS or a lease with off."""
        if lease_ms is None:
            self.request("steering", "on" if on else "off")
            return
        if not on:
            raise ValueError("only steering on takes a lease")
        if not 0 < lease_ms <= MAX_STEERING_LEASE_MS:
            raise ValueError(f"steering lease {lease_ms} ms not in 1..{MAX_STEERING_LEASE_MS}")
        self.request("steering", "on", str(lease_ms))

    def set_steer_ports(self, ports: Sequence[int]) -> None:
        """Replace the steered TCP ports (validated here and again by the data plane)."""
        if len(ports) > 8 or any(not 0 < p < 65536 for p in ports):
            raise ValueError(f"steered ports must be at most 8 numbers 1..65535: {list(ports)}")
        self.request("steer-ports", *(str(p) for p in ports))

    def counters(self, port_names: dict[str, str] | None = None) -> Counters:
        return parse_counters(self.request("counters"), port_names)

    def mc_pool(self, pool_id: int, name: str, vip: str, port: int, vmac: str, hash: str,
                distribution: str, hash_tag: str, cache: bool,
                servers: Sequence[McServer]) -> None:
        """Define or replace memcached pool pool_id (0..7): clients' requests to vip:port
        are routed by key over servers (in nutcracker's order) with hash and distribution;
        hash_tag "" for none; cache: serve hot gets from the switch. The data plane answers
        ARP for vip with vmac. Raises ValueError for bad arguments (checked here first),
        ControlError when the data plane refuses."""
        self.request(*mc_pool_words(pool_id, name, vip, port, vmac, hash, distribution,
                                    hash_tag, cache, servers))

    def mc_pool_del(self, pool_id: int) -> None:
        if not 0 <= pool_id < MC_MAX_POOLS:
            raise ValueError(f"pool id {pool_id} not in 0..{MC_MAX_POOLS - 1}")
        self.request("mc-pool-del", str(pool_id))

    def mc_flush(self) -> None:
        """Empty the data plane's memcached cache (the servers keep their items)."""
        self.request("mc-flush")

    def mc_status(self) -> McStatus:
        return parse_mc_status(self.request("mc-status"))


@contextlib.contextmanager
def in_netns(netns: str | None) -> Iterator[None]:
    """Run the body with the calling thread in network namespace netns (setns(2) is per
    thread); sockets created inside stay in it after the thread switches back."""
    if netns is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:
                # A thread stuck in the wrong namespace would be worse than a crash.
                os.abort()
    finally:
        os.close(own)
        os.close(target)


def tcp_probe(host: str, port: int, netns: str | None = None,
              timeout: float = 0.5) -> Callable[[], bool]:
    """A health probe: True when a TCP connection to host:port (from inside netns, if given)
    succeeds within timeout seconds."""
    def probe() -> bool:
        with in_netns(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
            return True
        except OSError:
            return False
        finally:
            sock.close()
    return probe


class HealthChecker:
    """Fail-open supervision: calls probe() every interval seconds and apply(healthy) when the
    verdict changes. The verdict becomes healthy after `rise` consecutive successes and
    unhealthy after `fall` consecutive failures; it starts unknown, so the first apply comes
    after rise or fall probes. A probe that raises counts as a failure. A failed apply is
    retried on the next probe.
    """

    def __init__(self, probe: Callable[[], bool], apply: Callable[[bool], None],
                 interval: float = 0.5, rise: int = 2, fall: int = 2) -> None:
        if interval <= 0 or rise < 1 or fall < 1:
            raise ValueError("interval must be > 0, rise and fall >= 1")
        self.probe, self.apply = probe, apply
        self.interval, self.rise, self.fall = interval, rise, fall
        self.healthy: bool | None = None
        self.transitions = 0
        self._applied: bool | None = None
        self._streak = 0
        self._last: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> bool | None:
        """One probe and, if the verdict changed (or the last apply failed), one apply.
        Returns the verdict. The thread calls this; tests may call it directly."""
        try:
            ok = bool(self.probe())
        except Exception:  # any probe failure means unhealthy
            log.exception("health probe raised")
            ok = False
        self._streak = self._streak + 1 if ok == self._last else 1
        self._last = ok
        if self._streak >= (self.rise if ok else self.fall) and self.healthy != ok:
            self.healthy = ok
            self.transitions += 1
            log.info("block engine %s: steering %s", "healthy" if ok else "unhealthy",
                     "on" if ok else "off")
        if self.healthy is not None and self._applied != self.healthy:
            try:
                self.apply(self.healthy)
                self._applied = self.healthy
            except (OSError, DataplaneError):
                log.exception("could not set steering %s", "on" if self.healthy else "off")
        return self.healthy

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("health checker already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tsw-dp-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.interval)


class Dataplane:
    """One supervised data-plane process. Use as a context manager, or start()/stop().

    health: a probe of the block engine (see tcp_probe). When given, the process starts with
    steering off and a HealthChecker turns it on only while the probe succeeds (fail-open).
    start_health_check()/stop_health_check() attach and detach one at run time.
    wrapper: a command prefix that execs the rest (e.g. setpriv --pdeathsig TERM --, so the
    process dies with its supervisor).
    """

    def __init__(self, config: DataplaneConfig, workdir: Path | None = None,
                 health: Callable[[], bool] | None = None,
                 health_interval: float = 0.5, wrapper: Sequence[str] = ()) -> None:
        if health is not None:
            config = dataclasses.replace(config, steering=False)
        self.config = config
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="tsw-dp-")) if workdir is None else workdir
        self.stats_file = self.workdir / "stats.prom"
        self.log_file = self.workdir / "dataplane.log"
        self.control_path = self.workdir / "control.sock"
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: ControlClient | None = None
        self._health = health
        self._health_interval = health_interval
        self._wrapper = list(wrapper)
        self.health: HealthChecker | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait (up to timeout seconds) for its first stats file.

        Raises DataplaneError with the tail of its log if it exits or is not ready in time.
        """
        if self._proc is not None:
            raise DataplaneError("data plane already started")
        if not os.access(self.config.binary, os.X_OK):
            raise DataplaneError(f"{self.config.binary} not built (run `make dataplane`)")
        self.stats_file.unlink(missing_ok=True)
        argv = [*self._wrapper, *build_argv(self.config, self.stats_file, self.control_path)]
        # Appended to: a supervisor that restarts the process keeps every run's output.
        with open(self.log_file, "ab") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.stats_file.exists():
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._proc = None
                self._remove_runtime_dir()
                raise DataplaneError(f"data plane exited with status {rc} during start-up:\n"
                                     + self.log_tail())
            if time.monotonic() > deadline:
                self.stop()
                raise DataplaneError(f"data plane not ready after {timeout}s:\n"
                                     + self.log_tail())
            time.sleep(0.05)
        if self._health is not None:
            self.start_health_check(self._health, self._health_interval)

    @property
    def control(self) -> ControlClient:
        """The client of this process's control socket (created on first use)."""
        if self._proc is None:
            raise DataplaneError("data plane not started")
        if self._control is None:
            self._control = ControlClient(self.control_path)
        return self._control

    def start_health_check(self, probe: Callable[[], bool], interval: float = 0.5,
                           rise: int = 2, fall: int = 2) -> HealthChecker:
        """Supervise steering with probe (fail-open); replaces a running checker."""
        self.stop_health_check()
        self.health = HealthChecker(probe, self.control.set_steering, interval, rise, fall)
        self.health.start()
        return self.health

    def stop_health_check(self, steering: bool | None = None) -> None:
        """Stop the checker; then set steering to `steering` unless None."""
        if self.health is not None:
            self.health.stop()
            self.health = None
        if steering is not None:
            self.control.set_steering(steering)

    def check(self) -> None:
        """Raise DataplaneError if the process is not running (it crashed or was killed)."""
        if self._proc is None:
            raise DataplaneError("data plane not started")
        rc = self._proc.poll()
        if rc is not None:
            raise DataplaneError(f"data plane died with status {rc}:\n" + self.log_tail())

    def counters(self) -> Counters:
        """The latest counters (at most stats_interval_ms old)."""
        try:
            text = self.stats_file.read_text()
        except FileNotFoundError:
            raise DataplaneError(f"no stats file {self.stats_file}") from None
        return parse_counters(text, self.config.port_ifaces())

    def wait_counters(self, newer_than: float | None = None) -> Counters:
        """Counters written after now (or after newer_than, a time.time() value)."""
        since = time.time() if newer_than is None else newer_than
        deadline = time.monotonic() + 5 + self.config.stats_interval_ms / 1000
        while time.monotonic() < deadline:
            self.check()
            try:
                if self.stats_file.stat().st_mtime > since:
                    return self.counters()
            except FileNotFoundError:
                pass
            time.sleep(self.config.stats_interval_ms / 4000)
        raise DataplaneError("stats file not refreshed")

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after grace seconds. Returns the exit status (None if not
        running). The final counters stay in stats_file."""
        if self.health is not None:
            self.health.stop()
            self.health = None
        if self._control is not None:
            self._control.close()
            self._control = None
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._remove_runtime_dir()
        return proc.returncode

    def _remove_runtime_dir(self) -> None:
        # EAL leaves an empty runtime directory behind even with --no-shconf.
        with contextlib.suppress(OSError):
            (Path("/var/run/dpdk") / self.config.file_prefix).rmdir()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
