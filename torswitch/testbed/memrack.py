"""A memcached rack in network namespaces: clients, servers and the MemSwitch ToR between them.

Layout for prefix ``mcs-`` and subnet 198.18.70 (a /24; only 198.18.0.0/15 is ever used)::

    mcs-c1  eth0 .11 ──veth── p-c1 ┐
    mcs-c2  eth0 .12 ──veth── p-c2 │
    mcs-m1  eth0 .21 ──veth── p-m1 ├─ tsw-dataplane (af_packet ports) in mcs-tor,
    mcs-m2  eth0 .22 ──veth── p-m2 │  + net_tap port mctap0 (.254): the ToR's kernel,
    mcs-m3  eth0 .23 ──veth── p-m3 │  for MAC resolution and health probes
    mcs-nc  eth0 .31 ──veth── p-nc ┘  (optional: nutcracker over TCP, for benchmarks)

Every server holds the pool's VIP (.100/32) on its loopback with arp_ignore=1 and
arp_announce=2 (direct server return, native/dataplane/dp_mc.h) and runs a real memcached
listening on the VIP, its own address and 127.0.0.1 (TCP and UDP on `port`); binding the VIP
itself is what makes memcached answer UDP from VIP:PORT. Host veths have transmit checksum
offload off (tor-interception.md B.4). The ToR namespace runs ``torswitch memswitch`` (the
control plane, torswitch.memswitch), which starts the data plane, resolves the servers' MACs,
publishes the pool ``mc`` and probes the servers; `up` returns once every server is live.

Servers are numbered from 0 in this API (server 0 is namespace ``{prefix}m1``); spare servers
run memcached but are not in the initial pool, so a test can add one by reconfiguration.
A crashed earlier run never blocks: `up` first tears down whatever still runs in namespaces of
this prefix (by PID, ``ip netns pids``) and deletes them. A live rack of the same prefix in
another process (another test session) is never torn down: the prefix's lock (an flock in
/run/lock, released by a crashed holder's death) is held from `up` to `down`, and `up` waits
for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from torswitch.peers import PeerError, TextClient
from torswitch.testbed import netns
from torswitch.testbed.errors import BadValue, InUse, StartupFailed

if TYPE_CHECKING:
    from torswitch.dataplane import Counters
    from torswitch.memcache_udp import UdpClient

T = TypeVar("T")

ALLOWED_NET = ipaddress.IPv4Network("198.18.0.0/15")
POOL = "mc"
TAP = "mctap0"
TAP_HOST = 254
CLIENT_BASE, SERVER_BASE, NUTCRACKER_HOST = 11, 21, 31
METRICS_PORT = 9470
START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 10.0
DPDK_RUNTIME = Path("/var/run/dpdk")
LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
_CLONE_NEWNET = 0x40000000


@dataclasses.dataclass(frozen=True)
class MemRackSpec:
    """What to build. Times in milliseconds; None leaves a data-plane default.

    cache: the pool's hot-key cache (the config key tsw_cache). lcore: the data plane's core.
    probe_interval_ms,
    failure_limit and retry_timeout_ms: the control plane's probes and the pool's
    server_failure_limit / server_retry_timeout (auto_eject_hosts is on).
    """

    prefix: str
    subnet: str = "198.18.70"
    nclients: int = 2
    nservers: int = 3
    spare_servers: int = 0
    nutcracker: bool = False
    vip_host: int = 100
    port: int = 11211
    cache: bool = True
    cache_slots: int | None = None
    hot_threshold: int | None = None
    max_value: int | None = None
    cache_ttl_ms: int | None = None
    no_backoff: bool = False
    lcore: int = 0
    memcached_threads: int = 2
    memcached_memory_mb: int = 64
    probe_interval_ms: int = 300
    failure_limit: int = 2
    retry_timeout_ms: int = 2000
    timeout_ms: int = 400
    metrics_port: int = METRICS_PORT
    workdir: Path | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,7}", self.prefix):
            raise BadValue(f"prefix {self.prefix!r}: 1-8 of a-z, 0-9, '-', starting with a letter")
        try:
            net = ipaddress.IPv4Network(f"{self.subnet}.0/24")
        except ValueError:
            raise BadValue(f"subnet {self.subnet!r} is not the first three octets of a /24") from None
        if not net.subnet_of(ALLOWED_NET):
            raise BadValue(f"subnet {net} is outside {ALLOWED_NET}, the only range allowed here")
        if not 1 <= self.nclients <= SERVER_BASE - CLIENT_BASE:
            raise BadValue(f"nclients must be 1..{SERVER_BASE - CLIENT_BASE}")
        if not 1 <= self.nservers + self.spare_servers <= NUTCRACKER_HOST - SERVER_BASE:
            raise BadValue(f"nservers + spare_servers must be 1..{NUTCRACKER_HOST - SERVER_BASE}")
        if self.nservers < 1 or self.spare_servers < 0:
            raise BadValue("nservers must be >= 1 and spare_servers >= 0")
        if not NUTCRACKER_HOST < self.vip_host < TAP_HOST:
            raise BadValue(f"vip_host must be in {NUTCRACKER_HOST + 1}..{TAP_HOST - 1}")
        if not 0 < self.port < 65536:
            raise BadValue(f"bad port {self.port}")


class MemRack:
    """The running rack of a MemRackSpec. A context manager; or up() and down()."""

    def __init__(self, spec: MemRackSpec) -> None:
        self.spec = spec
        p = spec.prefix
        self.tor = f"{p}tor"
        self.clients = [f"{p}c{i + 1}" for i in range(spec.nclients)]
        self.servers = [f"{p}m{i + 1}" for i in range(spec.nservers + spec.spare_servers)]
        self.nutcracker_ns: str | None = f"{p}nc" if spec.nutcracker else None
        self._own_workdir = spec.workdir is None
        self.workdir = spec.workdir or Path(tempfile.mkdtemp(prefix=f"tsw-memrack-{p}"))
        self.config_path = self.workdir / "memswitch.yml"
        self._memcached: dict[int, subprocess.Popen[bytes]] = {}
        self._nutcracker: subprocess.Popen[bytes] | None = None
        self._memswitch: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    # ---- addresses and files -------------------------------------------------------------------

    def ip(self, host: int) -> str:
        return f"{self.spec.subnet}.{host}"

    @property
    def vip(self) -> str:
        return self.ip(self.spec.vip_host)

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def tap_ip(self) -> str:
        return self.ip(TAP_HOST)

    def client_ip(self, i: int) -> str:
        return self.ip(CLIENT_BASE + i)

    def server_ip(self, i: int) -> str:
        return self.ip(SERVER_BASE + i)

    @property
    def nutcracker_address(self) -> tuple[str, int]:
        return self.ip(NUTCRACKER_HOST), self.port

    def host_ip(self, ns: str) -> str:
        """The address of the host namespace `ns` (a client, server or the nutcracker host)."""
        if ns in self.clients:
            return self.client_ip(self.clients.index(ns))
        if ns in self.servers:
            return self.server_ip(self.servers.index(ns))
        if ns == self.nutcracker_ns:
            return self.ip(NUTCRACKER_HOST)
        if ns == self.tor:
            return self.tap_ip
        raise KeyError(f"no host namespace {ns!r} in rack {self.spec.prefix}")

    def server_index(self, ip: str) -> int:
        """The index of the server at ip; raises KeyError for another address."""
        i = int(ip.rsplit(".", 1)[1]) - SERVER_BASE
        if ip != self.server_ip(i) or not 0 <= i < len(self.servers):
            raise KeyError(f"{ip} is not a server of rack {self.spec.prefix}")
        return i

    @property
    def hosts(self) -> list[str]:
        return [*self.clients, *self.servers, *([self.nutcracker_ns] if self.nutcracker_ns else [])]

    @property
    def dataplane_dir(self) -> Path:
        return self.workdir / "memswitch"

    @property
    def control_path(self) -> Path:
        """The data plane's control socket (a filesystem socket: usable from any namespace)."""
        return self.dataplane_dir / "control.sock"

    @property
    def stats_path(self) -> Path:
        return self.dataplane_dir / "stats.prom"

    @property
    def status_path(self) -> Path:
        """The memswitch's status file (torswitch.memswitch.STATUS_FILE)."""
        return self.dataplane_dir / "memswitch.json"

    @property
    def memswitch_log(self) -> Path:
        return self.workdir / "memswitch.log"

    @property
    def metrics_url(self) -> str:
        """Where /metrics is served; reachable from inside the ToR namespace only."""
        return f"http://127.0.0.1:{self.spec.metrics_port}/metrics"

    @property
    def memswitch_pid(self) -> int | None:
        return self._memswitch.pid if self._memswitch is not None else None

    # ---- running things ------------------------------------------------------------------------

    def exec(self, ns: str, argv: Sequence[str], *, check: bool = True,
             timeout: float = 60.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv in namespace ns to completion, capturing text output. With check, a
        non-zero status raises StartupFailed quoting its output."""
        full = netns.exec_argv(ns, argv)
        res = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input,
                             check=False)
        if check and res.returncode != 0:
            raise StartupFailed(f"`{' '.join(full)}` failed with status {res.returncode}: "
                                f"{(res.stderr or res.stdout).strip()[-2000:]}")
        return res

    def popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv in namespace ns (``ip netns exec`` execs it: the PID is argv's own)."""
        return subprocess.Popen(netns.exec_argv(ns, argv), **kwargs)

    def call_in(self, ns: str, fn: Callable[[], T]) -> T:
        """fn() run by a thread inside namespace ns; sockets it creates stay in ns."""
        return call_in(ns, fn)

    def udp_client(self, ns: str, **kwargs: Any) -> UdpClient:
        """A torswitch.memcache_udp.UdpClient to VIP:port whose socket lives in namespace ns."""
        from torswitch.memcache_udp import UdpClient

        return self.call_in(ns, lambda: UdpClient(self.vip, self.port, **kwargs))

    def text_client(self, ns: str, host: str, port: int | None = None,
                    timeout: float = 5.0) -> TextClient:
        """A TCP memcached client (torswitch.peers.TextClient) connected from inside ns."""
        sock = netns.connect(ns, host, port or self.port, timeout)
        client = TextClient.__new__(TextClient)
        client.sock, client.buf = sock, b""
        return client

    def server_client(self, i: int) -> TextClient:
        """TCP straight to server i on its loopback (never through the switch)."""
        return self.text_client(self.servers[i], "127.0.0.1")

    def server_stats(self, i: int) -> dict[str, str]:
        """`stats` of server i's memcached."""
        with self.server_client(i) as c:
            c.sock.sendall(b"stats\r\n")
            out: dict[str, str] = {}
            while (line := c._line()) != b"END":
                parts = line.decode().split(" ", 2)
                if len(parts) == 3 and parts[0] == "STAT":
                    out[parts[1]] = parts[2]
            return out

    def server_stat(self, i: int, name: str) -> int:
        """One numeric stat of server i (get_hits, cmd_get, curr_items, ...)."""
        return int(self.server_stats(i)[name])

    def server_keys(self, i: int, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The subset of keys server i holds, with their values."""
        with self.server_client(i) as c:
            return c.get_many(keys)

    def where_keys_live(self, keys: Sequence[bytes],
                        servers: Sequence[int] | None = None) -> dict[bytes, list[int]]:
        """key -> indexes of the servers holding it."""
        held: dict[bytes, list[int]] = {k: [] for k in keys}
        for i in servers if servers is not None else range(len(self.servers)):
            if i in self._memcached and self.server_running(i):
                for key in self.server_keys(i, keys):
                    held[key].append(i)
        return held

    def flush_servers(self) -> None:
        for i in range(len(self.servers)):
            if self.server_running(i):
                with self.server_client(i) as c:
                    c.flush_all()

    def kill_server(self, i: int) -> None:
        """SIGKILL server i's memcached (its host stays up: connections are refused)."""
        proc = self._memcached.pop(i, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart_server(self, i: int) -> None:
        self.kill_server(i)
        self._start_memcached(i)

    def server_running(self, i: int) -> bool:
        proc = self._memcached.get(i)
        return proc is not None and proc.poll() is None

    # ---- the memswitch -------------------------------------------------------------------------

    def config_text(self, servers: Sequence[int] | None = None,
                    weights: Mapping[int, int] | None = None, cache: bool | None = None,
                    listen: str | None = None) -> str:
        """The pool `mc` as nutcracker.yml: the given servers (default the first nservers)."""
        chosen = list(range(self.spec.nservers)) if servers is None else list(servers)
        w = weights or {}
        on = self.spec.cache if cache is None else cache
        lines = [
            f"{POOL}:",
            f"  listen: {listen or f'{self.vip}:{self.port}'}",
            "  hash: fnv1a_64",
            "  distribution: ketama",
            "  auto_eject_hosts: true",
            f"  server_failure_limit: {self.spec.failure_limit}",
            f"  server_retry_timeout: {self.spec.retry_timeout_ms}",
            f"  timeout: {self.spec.timeout_ms}",
        ]
        if not on:
            lines.append("  tsw_cache: false")
        lines.append("  servers:")
        lines += [f"    - {self.server_ip(i)}:{self.port}:{w.get(i, 1)}" for i in chosen]
        return "\n".join(lines) + "\n"

    def status(self) -> dict[str, Any]:
        """The memswitch's status file (pools, servers, liveness, ejections, reloads)."""
        try:
            data: dict[str, Any] = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def server_status(self, i: int) -> dict[str, Any]:
        """Server i's entry in the status file ({} when it is not in the pool)."""
        servers: dict[str, Any] = self.status().get("pools", {}).get(POOL, {}).get("servers", {})
        for entry in servers.values():
            if entry.get("host") == self.server_ip(i):
                return dict(entry)
        return {}

    def wait_server(self, i: int, live: bool, timeout: float = 15.0) -> dict[str, Any]:
        """Wait until server i is (not) live in the published pool; its status entry."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_memswitch()
            entry = self.server_status(i)
            if entry and entry.get("live") is live and entry.get("published_live") is live:
                return entry
            if time.monotonic() > deadline:
                raise StartupFailed(f"server {i} not {'live' if live else 'out'} after "
                                    f"{timeout:.0f} s: {entry}")
            time.sleep(0.05)

    def reconfigure(self, text: str, timeout: float = 20.0) -> dict[str, Any]:
        """Write a new config, SIGHUP the memswitch, wait until it is applied and every pool
        published; returns the status. Raises StartupFailed if it was refused."""
        before = int(self.status().get("reloads", 0))
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)
        assert self._memswitch is not None, "rack not up"
        self._memswitch.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            self._check_memswitch()
            st = self.status()
            if int(st.get("reloads", 0)) > before:
                if st.get("config_error"):
                    raise StartupFailed(f"memswitch refused the config: {st['config_error']}")
                if st.get("in_sync"):
                    return st
            if time.monotonic() > deadline:
                raise StartupFailed(f"config not applied after {timeout:.0f} s: {st}")
            time.sleep(0.05)

    def counters(self) -> Counters:
        """The data plane's latest counters (at most 100 ms old)."""
        from torswitch.dataplane import parse_counters

        return parse_counters(self.stats_path.read_text())

    def pool_counters(self, pool: str = POOL) -> dict[str, int]:
        return dict(self.counters().pools.get(pool, {}))

    def fresh_counters(self) -> Counters:
        """Counters written after this call (waits for the next stats file)."""
        since = time.time()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if self.stats_path.stat().st_mtime > since:
                    return self.counters()
            time.sleep(0.02)
        raise StartupFailed("the data plane's stats file is not refreshed")

    def metrics_text(self) -> str:
        """GET /metrics of the memswitch (from inside the ToR namespace)."""
        sock = netns.connect(self.tor, "127.0.0.1", self.spec.metrics_port, 5.0)
        conn = http.client.HTTPConnection("127.0.0.1", self.spec.metrics_port, timeout=5)
        conn.sock = sock
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read().decode()
            if resp.status != 200:
                raise StartupFailed(f"/metrics answered {resp.status}")
            return body
        finally:
            conn.close()

    def log_tail(self, lines: int = 40) -> str:
        """The tails of the memswitch's and the data plane's logs."""
        parts = []
        for path in (self.memswitch_log, self.dataplane_dir / "dataplane.log"):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                tail = ["(no log)"]
            parts.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(parts)

    # ---- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    def up(self, lock_timeout: float = 600.0) -> None:
        """Build everything and wait until the pool is published with every server live.

        Another live rack of the same prefix (another test session) is waited for up to
        lock_timeout seconds (then InUse): the prefix's lock is held from up to down. Raises
        StartupFailed (with the relevant log tail) when a step fails; the rack is then torn
        down again.
        """
        if os.geteuid() != 0:
            raise StartupFailed("a memrack needs root (network namespaces)")
        self._acquire(lock_timeout)
        self._teardown()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dataplane_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._build_namespaces()
            for i in range(len(self.servers)):
                self._start_memcached(i)
            self._start_memswitch()
            if self.nutcracker_ns is not None:
                # After the switch: nutcracker reaches its servers through it.
                self._start_nutcracker()
        except BaseException:
            # The error carries the log tails.
            try:
                self._teardown()
            finally:
                self._release()
            raise

    def down(self) -> None:
        """Stop everything this rack (or a crashed run with the same prefix) started; remove
        the work directory if the rack made it (read log_tail() first). Raises InUse when
        another process's rack of this prefix is up."""
        self._acquire(0.0)
        try:
            self._teardown()
        finally:
            self._release()

    def _teardown(self) -> None:
        self._stop_processes()
        self._delete_namespaces()
        with contextlib.suppress(OSError):
            (DPDK_RUNTIME / self.file_prefix).rmdir()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def lock_path(self) -> Path:
        return LOCK_DIR / f"tsw-memrack-{self.spec.prefix}.lock"

    def _acquire(self, timeout: float) -> None:
        """Hold the prefix's lock (an flock: a crashed holder releases it by dying)."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise InUse(f"another process has a memrack with prefix "
                                f"{self.spec.prefix!r} up ({self.lock_path})") from None
                time.sleep(0.5)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def file_prefix(self) -> str:
        """The data plane's EAL file prefix (what `torswitch memswitch` derives from its
        namespace)."""
        return f"tsw-mc-{self.tor}"

    def _stop_processes(self) -> None:
        if self._memswitch is not None:
            stop_process(self._memswitch, STOP_TIMEOUT_S)
            self._memswitch = None
        if self._nutcracker is not None:
            stop_process(self._nutcracker, STOP_TIMEOUT_S)
            self._nutcracker = None
        for proc in self._memcached.values():
            stop_process(proc, STOP_TIMEOUT_S)
        self._memcached.clear()

    def _own_namespaces(self) -> list[str]:
        pattern = re.compile(rf"^{re.escape(self.spec.prefix)}(tor|nc|c\d+|m\d+)$")
        return [ns for ns in netns.list_namespaces() if pattern.match(ns)]

    def _delete_namespaces(self) -> None:
        names = self._own_namespaces()
        # Whatever still runs inside (a crashed run's daemons) is ours: stop it by PID.
        for sig, pause in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 0.2)):
            pids = [pid for ns in names for pid in netns.pids(ns)]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + pause
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if _alive(pid)]
                time.sleep(0.05)
        # The ToR last: deleting a host namespace removes its veth, and the ToR end with it.
        for ns in sorted(names, key=lambda n: n == self.tor):
            netns.delete(ns)

    def _build_namespaces(self) -> None:
        run = netns.run
        run(["ip", "netns", "add", self.tor])
        run(["ip", "-n", self.tor, "link", "set", "lo", "up"])
        run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ns=self.tor)
        for ns in self.hosts:
            host = ns.removeprefix(self.spec.prefix)
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # IPv6 would only add neighbour-discovery noise to the counters.
            run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ns=ns)
            run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                 f"p-{host}", "netns", self.tor])
            run(["ip", "-n", ns, "addr", "add", f"{self.host_ip(ns)}/24", "dev", "eth0"])
            if ns in self.servers:
                run(["ip", "-n", ns, "addr", "add", f"{self.vip}/32", "dev", "lo"])
                for conf in ("all", "eth0"):
                    run(["sysctl", "-qw", f"net.ipv4.conf.{conf}.arp_ignore=1",
                         f"net.ipv4.conf.{conf}.arp_announce=2"], ns=ns)
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ethtool", "-K", "eth0", "tx", "off"], ns=ns)
            run(["ip", "-n", self.tor, "link", "set", f"p-{host}", "up"])

    @property
    def rack_ifaces(self) -> list[str]:
        """The ToR's ends of the host veths, in data-plane port order."""
        return [f"p-{ns.removeprefix(self.spec.prefix)}" for ns in self.hosts]

    def _start_memcached(self, i: int) -> None:
        ns, ip = self.servers[i], self.server_ip(i)
        argv = [_binary("memcached"), "-l", f"{self.vip},{ip},127.0.0.1",
                "-p", str(self.port), "-U", str(self.port),
                "-t", str(self.spec.memcached_threads), "-m", str(self.spec.memcached_memory_mb),
                "-c", "4096", "-u", "nobody"]
        logf = self.workdir / f"memcached-{ns}.log"
        with open(logf, "ab") as log:
            proc = self.popen(ns, argv, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
        self._memcached[i] = proc
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise StartupFailed(f"memcached in {ns} exited with status {proc.returncode}:\n"
                                    + _tail(logf))
            with contextlib.suppress(OSError, PeerError), self.server_client(i) as c:
                c.sock.sendall(b"version\r\n")
                if c._line().startswith(b"VERSION"):
                    return
            if time.monotonic() > deadline:
                raise StartupFailed(f"memcached in {ns} does not answer:\n" + _tail(logf))
            time.sleep(0.05)

    def nutcracker_config(self) -> str:
        """nutcracker's pool: the memswitch's, listening on the nutcracker host."""
        host, port = self.nutcracker_address
        return self.config_text(cache=True, listen=f"{host}:{port}")

    def _start_nutcracker(self) -> None:
        assert self.nutcracker_ns is not None
        conf = self.workdir / "nutcracker.yml"
        conf.write_text(self.nutcracker_config())
        binary = _binary("nutcracker")
        self.exec(self.nutcracker_ns, [binary, "-t", "-c", str(conf)])
        logf = self.workdir / "nutcracker.log"
        self._nutcracker = self.popen(
            self.nutcracker_ns,
            [binary, "-c", str(conf), "-s", "22222", "-a", "127.0.0.1", "-o", str(logf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        host, port = self.nutcracker_address
        deadline = time.monotonic() + 10
        while True:
            if self._nutcracker.poll() is not None:
                raise StartupFailed("nutcracker exited while starting:\n" + _tail(logf))
            with (contextlib.suppress(OSError, PeerError),
                  self.text_client(self.nutcracker_ns, host, port) as c):
                c.sock.sendall(b"version\r\n")
                if c._line().startswith(b"VERSION"):
                    return
            if time.monotonic() > deadline:
                raise StartupFailed("nutcracker does not answer:\n" + _tail(logf))
            time.sleep(0.1)

    def memswitch_argv(self) -> list[str]:
        s = self.spec
        argv = [sys.executable, "-m", "torswitch", "memswitch", "--config", str(self.config_path),
                "--tap", TAP, "--tap-address", f"{self.tap_ip}/24",
                "--workdir", str(self.dataplane_dir), "--metrics-port", str(s.metrics_port),
                "--probe-interval-ms", str(s.probe_interval_ms), "--lcore", str(s.lcore)]
        for iface in self.rack_ifaces:
            argv += ["--rack-iface", iface]
        for flag, value in (("--mc-cache-slots", s.cache_slots),
                            ("--mc-hot-threshold", s.hot_threshold),
                            ("--mc-max-value", s.max_value),
                            ("--mc-cache-ttl-ms", s.cache_ttl_ms)):
            if value is not None:
                argv += [flag, str(value)]
        if s.no_backoff:
            argv.append("--no-backoff")
        return argv

    def _start_memswitch(self) -> None:
        self.config_path.write_text(self.config_text())
        self.status_path.unlink(missing_ok=True)
        setpriv = shutil.which("setpriv")
        # The memswitch (and through it the data plane) dies with this process.
        prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        with open(self.memswitch_log, "ab") as log:
            self._memswitch = subprocess.Popen(
                [*prefix, *netns.exec_argv(self.tor, self.memswitch_argv())],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self._check_memswitch()
            st = self.status()
            servers = st.get("pools", {}).get(POOL, {}).get("servers", {})
            if (st.get("in_sync") and servers
                    and all(e.get("published_live") for e in servers.values())):
                return
            if time.monotonic() > deadline:
                raise StartupFailed(f"the pool is not published with every server live after "
                                    f"{START_TIMEOUT_S:.0f} s; status {st}\n" + self.log_tail())
            time.sleep(0.1)

    def _check_memswitch(self) -> None:
        if self._memswitch is None:
            raise StartupFailed("the memswitch is not running (rack not up)")
        rc = self._memswitch.poll()
        if rc is not None:
            raise StartupFailed(f"the memswitch exited with status {rc}:\n" + self.log_tail())


def call_in(ns: str, fn: Callable[[], T]) -> T:
    """fn() run by a short-lived thread that entered namespace ns (setns(2) is per thread);
    sockets created by fn keep that namespace. fn's exception is re-raised here."""
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            fd = os.open(netns.NETNS_RUN_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            error.append(exc)

    thread = threading.Thread(target=worker, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def stop_process(proc: subprocess.Popen[Any], grace: float) -> int:
    """SIGTERM, SIGKILL after grace seconds; the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for this purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                  else None)
    if path is None:
        raise StartupFailed(f"{name} is not installed (Debian package {name})")
    return path


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
