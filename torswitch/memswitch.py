"""MemSwitch's control plane: memcached pools published to the data plane, servers probed.

The data plane (native/dataplane/dp_mc.h) switches memcached-over-UDP requests sent to a
pool's virtual address VIP:PORT straight to the server that owns the key (direct server
return: only the destination MAC changes) and answers hot keys from its cache. This module
decides what it is told:

    Config ──plan_pools──> PoolPlan ──┐                    ┌── mc-pool / mc-pool-del
    probes ──ServerHealth (ejection) ─┼──> MemSwitch.sync ─┤   (only pools that changed)
    neighbour table ──MACs ───────────┘                    └── status file, /metrics

Pools. Every pool of a torswitch config or nutcracker.yml that has a `listen` address is
published; `listen` is the VIP and must be an IPv4 address (not 0.0.0.0), and every server
must be an IPv4 address on the same port (DSR: the server answers from VIP:PORT, so it must
listen on that port). Servers are given to the data plane in nutcracker's order (the order
torswitch.routing.Ring builds in), so its ring places keys exactly as nutcracker does.

One pool key beyond nutcracker's: ``tsw_cache: false`` turns the switch's hot-key cache off
for the pool (default on). nutcracker itself rejects unknown keys, so a file shared with a
nutcracker leaves it out.

Identities. Pool ids (0..7) are kept per pool name and server ids (0..255, one space for all
pools) per (pool, ring identity) across reconfigurations, so the data plane's per-server
counters stay with their server; an id whose owner left is reused only when no never-used id
is left, and a server that comes back gets its old id if it is free. The virtual MAC is
derived from the VIP: 02:74 followed by the VIP's four bytes (locally administered, unicast).

Liveness. A server is live when its MAC is known (from the ToR namespace's neighbour table,
after a ping through the tap when missing) and it is not ejected. Ejection follows nutcracker's
auto_eject_hosts: every probe interval each server gets a probe (TCP connect and `version`,
timeout the pool's `timeout` or 500 ms); server_failure_limit consecutive failures eject it
(its keys move to the others) for server_retry_timeout; then one probe decides: success
returns it, failure ejects it again (counted, as nutcracker counts a re-ejection). An ejected
server is never given keys before a probe succeeded. Without auto_eject_hosts nothing is
ejected; failures are only counted.

Reconfiguration. apply() validates a whole new config before changing anything, then pushes
each changed pool as one complete mc-pool (the data plane swaps pools atomically), so adding,
removing or reweighting servers never passes through a pool without its servers.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from torswitch.config import Config, Pool, Server
from torswitch.dataplane import (
    MC_MAX_POOLS,
    MC_MAX_SERVER_IDS,
    MC_MAX_SERVERS,
    Counters,
    DataplaneError,
    McServer,
    mc_pool_words,
)
from torswitch.errors import ConfigError
from torswitch.routing import nutcracker_sort_key

log = logging.getLogger(__name__)

CACHE_KEY = "tsw_cache"
MAX_POOLS = MC_MAX_POOLS
MAX_SERVERS_PER_POOL = MC_MAX_SERVERS
MAX_SERVER_IDS = MC_MAX_SERVER_IDS
DEFAULT_PROBE_TIMEOUT_MS = 500
DEFAULT_PROBE_INTERVAL_S = 0.5
MAC_REFRESH_S = 10.0
NO_MAC = "00:00:00:00:00:00"
STATUS_FILE = "memswitch.json"

K = TypeVar("K", bound=Hashable)


def nutcracker_order(servers: Sequence[Server]) -> list[Server]:
    """The servers in the order nutcracker builds its distribution in: by ring identity,
    shorter first, then bytewise (its string_compare). The same key torswitch.routing.Ring
    sorts by; the data plane builds its ring over the servers in the order given."""
    return sorted(servers, key=nutcracker_sort_key)


def virtual_mac(vip: str) -> str:
    """The pool's virtual MAC: 02:74 and the VIP's bytes (locally administered, unicast)."""
    return ":".join(f"{b:02x}" for b in bytes((0x02, 0x74)) + ipaddress.IPv4Address(vip).packed)


class IdAllocator(Generic[K]):
    """Small integer ids 0..limit-1 kept per key while the key is in use.

    assign() gives every key of a new set its id: the current one if it has one, else the id
    it had last time if that is free, else the lowest never-used id, else the lowest free one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ids: dict[K, int] = {}
        self._last: dict[K, int] = {}
        self._handed: set[int] = set()

    def copy(self) -> IdAllocator[K]:
        other: IdAllocator[K] = IdAllocator(self.limit)
        other.ids, other._last, other._handed = dict(self.ids), dict(self._last), set(self._handed)
        return other

    def adopt(self, other: IdAllocator[K]) -> None:
        """Take over other's state (a copy that assigned successfully)."""
        self.ids, self._last, self._handed = other.ids, other._last, other._handed

    def assign(self, keys: Sequence[K], what: str = "ids") -> dict[K, int]:
        """The ids of keys (which become the keys in use). Raises ConfigError when more than
        limit keys are given."""
        if len(set(keys)) > self.limit:
            raise ConfigError(f"{len(set(keys))} {what}, more than the limit of {self.limit}")
        out = {k: self.ids[k] for k in keys if k in self.ids}
        used = set(out.values())
        for key in keys:
            if key in out:
                continue
            last = self._last.get(key)
            if last is not None and last not in used:
                new = last
            else:
                free = [i for i in range(self.limit) if i not in used]
                fresh = [i for i in free if i not in self._handed]
                new = (fresh or free)[0]
            out[key] = new
            used.add(new)
        self.ids = out
        self._last.update(out)
        self._handed.update(out.values())
        return dict(out)


@dataclasses.dataclass(frozen=True)
class ServerPlan:
    """One server of a published pool."""

    sid: int
    host: str  # IPv4 address
    port: int
    weight: int
    identity: bytes  # its name on the ring

    @property
    def label(self) -> str:
        return self.identity.decode(errors="replace")


@dataclasses.dataclass(frozen=True)
class PoolPlan:
    """What the data plane is told about one pool, minus liveness and MACs."""

    pool_id: int
    name: str
    vip: str
    port: int
    vmac: str
    hash: str
    distribution: str
    hash_tag: str
    cache: bool
    servers: tuple[ServerPlan, ...]  # nutcracker's order
    auto_eject_hosts: bool
    failure_limit: int
    retry_timeout_s: float
    probe_timeout_s: float


def _ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _check_pool(pool: Pool) -> tuple[str, int, bool]:
    """(VIP, port, cache) of a pool with a listen address; ConfigError naming what is wrong."""
    assert pool.listen is not None
    host, _, port_text = pool.listen.rpartition(":")
    vip = _ipv4(host)
    if vip is None or vip.is_unspecified:
        raise ConfigError(f"pool {pool.name!r}: listen {pool.listen!r} must be a specific "
                          "IPv4 address (the pool's virtual IP), not a name, unix socket or "
                          "0.0.0.0")
    port = int(port_text)
    if len(pool.servers) > MAX_SERVERS_PER_POOL:
        raise ConfigError(f"pool {pool.name!r}: {len(pool.servers)} servers, more than the "
                          f"data plane's {MAX_SERVERS_PER_POOL}")
    for server in pool.servers:
        if server.is_unix or _ipv4(server.host) is None:
            raise ConfigError(f"pool {pool.name!r}: server {server.address!r} must be an IPv4 "
                              "address (the switch forwards to it by MAC)")
        if server.port != port:
            raise ConfigError(f"pool {pool.name!r}: server {server.address!r} is on port "
                              f"{server.port}, not the listen port {port}: with direct server "
                              "return every server must listen on the pool's port")
        if server.host == str(vip):
            raise ConfigError(f"pool {pool.name!r}: server {server.address!r} is the VIP")
    cache = pool.extra.get(CACHE_KEY, True)
    if not isinstance(cache, bool):
        raise ConfigError(f"pool {pool.name!r}: {CACHE_KEY} must be true or false")
    # Whatever else the data plane would refuse (names, identities, hash tag), refused now.
    try:
        mc_pool_words(0, pool.name, str(vip), port, virtual_mac(str(vip)), pool.hash,
                      pool.distribution, pool.hash_tag, cache,
                      [McServer(sid=i, ip=s.host, port=s.port, mac=NO_MAC, weight=s.weight,
                                live=False, identity=s.identity)
                       for i, s in enumerate(pool.servers)])
    except ValueError as exc:
        raise ConfigError(f"pool {pool.name!r}: {exc}") from None
    return str(vip), port, cache


def plan_pools(config: Config, pool_ids: IdAllocator[str],
               server_ids: IdAllocator[tuple[str, bytes]]) -> dict[str, PoolPlan]:
    """The PoolPlans of every pool with a listen address. Validates everything first; the
    allocators are changed only when no ConfigError (naming the file) is raised."""
    try:
        return _plan_pools(config, pool_ids, server_ids)
    except ConfigError as exc:
        raise ConfigError(f"{config.path}: {exc}") from None


def _plan_pools(config: Config, pool_ids: IdAllocator[str],
                server_ids: IdAllocator[tuple[str, bytes]]) -> dict[str, PoolPlan]:
    pools = [p for p in config.pools.values() if p.listen is not None]
    checked = [(p, *_check_pool(p)) for p in pools]
    vips: dict[tuple[str, int], str] = {}
    for pool, vip, port, _ in checked:
        other = vips.setdefault((vip, port), pool.name)
        if other != pool.name:
            raise ConfigError(f"pools {other!r} and {pool.name!r} both listen on {vip}:{port}")
    if len(pools) > MAX_POOLS:
        raise ConfigError(f"{len(pools)} pools with a listen address, more "
                          f"than the data plane's {MAX_POOLS}")
    ordered = {p.name: nutcracker_order(p.servers) for p in pools}
    skeys = [(p.name, s.identity) for p in pools for s in ordered[p.name]]
    new_pool_ids, new_server_ids = pool_ids.copy(), server_ids.copy()
    pids = new_pool_ids.assign([p.name for p in pools], "pools")
    sids = new_server_ids.assign(skeys, "servers over all pools")
    plans: dict[str, PoolPlan] = {}
    for pool, vip, port, cache in checked:
        timeout_ms = pool.timeout_ms if pool.timeout_ms else DEFAULT_PROBE_TIMEOUT_MS
        plans[pool.name] = PoolPlan(
            pool_id=pids[pool.name], name=pool.name, vip=vip, port=port, vmac=virtual_mac(vip),
            hash=pool.hash, distribution=pool.distribution, hash_tag=pool.hash_tag, cache=cache,
            servers=tuple(ServerPlan(sids[(pool.name, s.identity)], s.host, s.port, s.weight,
                                     s.identity) for s in ordered[pool.name]),
            auto_eject_hosts=pool.auto_eject_hosts,
            failure_limit=pool.server_failure_limit,
            retry_timeout_s=pool.server_retry_timeout_ms / 1000,
            probe_timeout_s=timeout_ms / 1000)
    pool_ids.adopt(new_pool_ids)
    server_ids.adopt(new_server_ids)
    return plans


class ServerHealth:
    """nutcracker's auto_eject_hosts for one server, driven by probe results and a clock
    (seconds). See the module docstring for the rules."""

    def __init__(self, auto_eject: bool, failure_limit: int, retry_timeout_s: float) -> None:
        self.auto_eject = auto_eject
        self.failure_limit = failure_limit
        self.retry_timeout_s = retry_timeout_s
        self.failures = 0  # consecutive
        self.failed_probes = 0
        self.probes = 0
        self.ejections = 0
        self.retry_at: float | None = None  # set while ejected

    def configure(self, auto_eject: bool, failure_limit: int, retry_timeout_s: float) -> None:
        """New pool settings; a server stays ejected unless ejection was turned off."""
        self.auto_eject, self.failure_limit = auto_eject, failure_limit
        self.retry_timeout_s = retry_timeout_s
        if not auto_eject:
            self.retry_at = None

    @property
    def ejected(self) -> bool:
        return self.retry_at is not None

    def due(self, now: float) -> bool:
        """Whether to probe now: always, except while ejected and the retry time is ahead."""
        return self.retry_at is None or now >= self.retry_at

    def record(self, ok: bool, now: float) -> str | None:
        """One probe result: "ejected", "returned" or None (no change)."""
        if not self.due(now):
            return None  # a result that raced the ejection
        self.probes += 1
        if ok:
            self.failures = 0
            if self.retry_at is not None:
                self.retry_at = None
                return "returned"
            return None
        self.failed_probes += 1
        if not self.auto_eject:
            self.failures += 1
            return None
        if self.retry_at is None:
            self.failures += 1
            if self.failures < max(1, self.failure_limit):
                return None
        self.failures = 0
        self.retry_at = now + self.retry_timeout_s
        self.ejections += 1
        return "ejected"


class McControl(Protocol):
    """What MemSwitch needs of the data plane's control client (dataplane.ControlClient)."""

    def mc_pool(self, pool_id: int, name: str, vip: str, port: int, vmac: str, hash: str,
                distribution: str, hash_tag: str, cache: bool,
                servers: Sequence[McServer]) -> Any: ...

    def mc_pool_del(self, pool_id: int) -> Any: ...


@dataclasses.dataclass(frozen=True)
class PoolPush:
    """The arguments of one mc_pool call; compared with the last one pushed."""

    pool_id: int
    name: str
    vip: str
    port: int
    vmac: str
    hash: str
    distribution: str
    hash_tag: str
    cache: bool
    servers: tuple[McServer, ...]


Probe = Callable[[str, int, float], bool]
Resolver = Callable[[Sequence[str]], dict[str, str]]


def memcached_probe(host: str, port: int, timeout: float, netns: str | None = None) -> bool:
    """True when host:port accepts a TCP connection and answers `version` within timeout
    seconds (from inside netns when given)."""
    deadline = time.monotonic() + timeout
    try:
        if netns is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        else:
            from torswitch.testbed import netns as ns_mod

            sock = ns_mod.connect(netns, host, port, timeout)
        with sock:
            sock.sendall(b"version\r\n")
            reply = b""
            while b"\r\n" not in reply:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                sock.settimeout(left)
                chunk = sock.recv(256)
                if not chunk:
                    return False
                reply += chunk
            return reply.startswith(b"VERSION ")
    except OSError:
        return False


class NeighbourResolver:
    """MACs of IPv4 hosts from the kernel's neighbour table (of netns, when given); hosts
    missing from it get one ping first, which makes the kernel resolve them."""

    def __init__(self, netns: str | None = None) -> None:
        self.prefix = ["ip", "netns", "exec", netns] if netns else []

    def table(self) -> dict[str, str]:
        try:
            out = subprocess.run([*self.prefix, "ip", "-j", "-4", "neigh", "show"],
                                 capture_output=True, text=True, timeout=5, check=True).stdout
            entries = json.loads(out or "[]")
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            log.warning("cannot read the neighbour table: %s", exc)
            return {}
        return {e["dst"]: e["lladdr"] for e in entries
                if "lladdr" in e and not {"FAILED", "INCOMPLETE"} & set(e.get("state", ()))}

    def __call__(self, ips: Sequence[str]) -> dict[str, str]:
        table = self.table()
        missing = [ip for ip in ips if ip not in table]
        if missing:
            procs = [subprocess.Popen([*self.prefix, "ping", "-c1", "-W1", "-q", ip],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for ip in missing]
            for proc in procs:
                proc.wait()
            table = self.table()
        return {ip: table[ip] for ip in ips if ip in table}


class MemSwitch:
    """The control plane's state: plans, server health, MACs, and what the data plane holds.

    Single-threaded use (apply, reload, tick, sync from one loop); status() and metrics may be
    read from other threads. Pushes that fail (data plane down or refusing) are logged,
    counted and retried by the next sync.
    """

    def __init__(self, control: McControl, *, probe: Probe | None = None,
                 resolve: Resolver | None = None, clock: Callable[[], float] = time.monotonic,
                 probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S,
                 mac_refresh_s: float = MAC_REFRESH_S) -> None:
        self.control = control
        self.probe: Probe = probe or (lambda h, p, t: memcached_probe(h, p, t))
        self.resolve: Resolver = resolve or NeighbourResolver()
        self.clock = clock
        self.probe_interval_s = probe_interval_s
        self.mac_refresh_s = mac_refresh_s
        self.plans: dict[str, PoolPlan] = {}
        self.health: dict[tuple[str, bytes], ServerHealth] = {}
        self.macs: dict[str, str] = {}
        self.published: dict[int, PoolPush] = {}
        self.reloads = 0
        self.config_error: str | None = None
        self.pushes = 0
        self.push_errors = 0
        self._pool_ids: IdAllocator[str] = IdAllocator(MAX_POOLS)
        self._server_ids: IdAllocator[tuple[str, bytes]] = IdAllocator(MAX_SERVER_IDS)
        self._next_refresh = 0.0
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # ---- configuration -------------------------------------------------------------------------

    def apply(self, config: Config) -> list[str]:
        """Adopt config: validate it whole (ConfigError, nothing changed), resolve new servers'
        MACs, push the pools that changed and delete the pools that are gone. Returns one line
        per change made."""
        plans = plan_pools(config, self._pool_ids, self._server_ids)
        with self._lock:
            health: dict[tuple[str, bytes], ServerHealth] = {}
            for plan in plans.values():
                for s in plan.servers:
                    key = (plan.name, s.identity)
                    h = self.health.get(key)
                    if h is None:
                        h = ServerHealth(plan.auto_eject_hosts, plan.failure_limit,
                                         plan.retry_timeout_s)
                    else:
                        h.configure(plan.auto_eject_hosts, plan.failure_limit,
                                    plan.retry_timeout_s)
                    health[key] = h
            self.plans, self.health = plans, health
        self._resolve([s.host for p in plans.values() for s in p.servers
                       if s.host not in self.macs])
        return self.sync()

    def reload(self, load: Callable[[], Config]) -> list[str]:
        """apply(load()) as a reload: counted; a refused config is logged and kept in
        config_error while the running one stays."""
        self.reloads += 1
        try:
            changes = self.apply(load())
        except ConfigError as exc:
            self.config_error = str(exc)
            log.error("reload refused, keeping the running configuration: %s", exc)
            return []
        self.config_error = None
        return changes

    # ---- publishing ----------------------------------------------------------------------------

    def live(self, plan: PoolPlan, server: ServerPlan) -> bool:
        return server.host in self.macs and not self.health[(plan.name, server.identity)].ejected

    def desired(self) -> dict[int, PoolPush]:
        """What the data plane should hold now, by pool id."""
        out: dict[int, PoolPush] = {}
        for plan in self.plans.values():
            servers = tuple(
                McServer(sid=s.sid, ip=s.host, port=s.port, mac=self.macs.get(s.host, NO_MAC),
                         weight=s.weight, live=self.live(plan, s), identity=s.identity)
                for s in plan.servers)
            out[plan.pool_id] = PoolPush(plan.pool_id, plan.name, plan.vip, plan.port, plan.vmac,
                                         plan.hash, plan.distribution, plan.hash_tag, plan.cache,
                                         servers)
        return out

    @property
    def in_sync(self) -> bool:
        return self.desired() == self.published

    def sync(self) -> list[str]:
        """Delete the pools that are gone, push the ones that differ from what was pushed."""
        desired = self.desired()
        changes: list[str] = []
        for pool_id in sorted(set(self.published) - set(desired)):
            name = self.published[pool_id].name
            if self._call(f"delete pool {name!r}", self.control.mc_pool_del, pool_id):
                with self._lock:
                    del self.published[pool_id]
                changes.append(f"pool {name}: deleted (id {pool_id})")
        for pool_id, push in sorted(desired.items()):
            if self.published.get(pool_id) == push:
                continue
            args = {f.name: getattr(push, f.name) for f in dataclasses.fields(push)}
            if self._call(f"push pool {push.name!r}", self.control.mc_pool, **args):
                with self._lock:
                    self.published[pool_id] = push
                nlive = sum(s.live for s in push.servers)
                changes.append(f"pool {push.name}: published (id {pool_id}, {push.vip}:"
                               f"{push.port}, {len(push.servers)} servers, {nlive} live)")
        for line in changes:
            log.info("%s", line)
        return changes

    def forget_published(self) -> None:
        """The data plane restarted empty: the next sync pushes every pool."""
        with self._lock:
            self.published.clear()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        try:
            fn(*args, **kwargs)
        except (OSError, DataplaneError, ValueError) as exc:
            self.push_errors += 1
            log.error("could not %s: %s (retried)", what, exc)
            return False
        self.pushes += 1
        return True

    # ---- probes --------------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """One round: probe every server that is due, eject or return servers, resolve missing
        (and, every mac_refresh_s, all) MACs, then sync. Returns the changes pushed."""
        now = self.clock()
        due = [(plan, s) for plan in self.plans.values() for s in plan.servers
               if self.health[(plan.name, s.identity)].due(now)]
        results = self._probe_all(due)
        now = self.clock()
        for (plan, server), ok in zip(due, results, strict=True):
            h = self.health[(plan.name, server.identity)]
            event = h.record(ok, now)
            if event == "ejected":
                log.warning("pool %s: server %s ejected (ejection %d; retry in %.1f s)",
                            plan.name, server.label, h.ejections, h.retry_timeout_s)
            elif event == "returned":
                log.info("pool %s: server %s answers again: returned", plan.name, server.label)
            elif not ok:
                log.info("pool %s: server %s failed a probe (%d in a row)", plan.name,
                         server.label, h.failures)
        hosts = sorted({s.host for p in self.plans.values() for s in p.servers})
        if now >= self._next_refresh:
            self._next_refresh = now + self.mac_refresh_s
            self._resolve(hosts)
        else:
            self._resolve([h for h in hosts if h not in self.macs])
        return self.sync()

    def _probe_all(self, due: Sequence[tuple[PoolPlan, ServerPlan]]) -> list[bool]:
        if not due:
            return []
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=16, thread_name_prefix="tsw-mc-probe")
        futures = [self._executor.submit(self.probe, s.host, s.port, plan.probe_timeout_s)
                   for plan, s in due]
        out = []
        for f in futures:
            try:
                out.append(bool(f.result()))
            except Exception:  # a probe that raises counts as a failure
                log.exception("probe raised")
                out.append(False)
        return out

    def _resolve(self, hosts: Sequence[str]) -> None:
        if not hosts:
            return
        found = self.resolve(hosts)
        with self._lock:
            for host, mac in found.items():
                old = self.macs.get(host)
                if old != mac.lower():
                    log.info("server %s is at %s%s", host, mac.lower(),
                             f" (was {old})" if old else "")
                    self.macs[host] = mac.lower()
        for host in hosts:
            if host not in found and host not in self.macs:
                log.warning("server %s: MAC not resolved yet (not live until it is)", host)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ---- reporting -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Plain data: pools, servers, liveness, ejections, reloads (the status file)."""
        with self._lock:
            pools: dict[str, Any] = {}
            for plan in self.plans.values():
                pushed = self.published.get(plan.pool_id)
                pushed_live = {s.sid: s.live for s in pushed.servers} if pushed else {}
                servers = {}
                for s in plan.servers:
                    h = self.health[(plan.name, s.identity)]
                    servers[s.label] = {
                        "sid": s.sid, "host": s.host, "port": s.port, "weight": s.weight,
                        "mac": self.macs.get(s.host), "live": self.live(plan, s),
                        "published_live": pushed_live.get(s.sid, False),
                        "ejected": h.ejected, "ejections": h.ejections,
                        "failures": h.failures, "failed_probes": h.failed_probes,
                        "probes": h.probes,
                    }
                pools[plan.name] = {
                    "id": plan.pool_id, "vip": plan.vip, "port": plan.port, "vmac": plan.vmac,
                    "hash": plan.hash, "distribution": plan.distribution, "cache": plan.cache,
                    "auto_eject_hosts": plan.auto_eject_hosts, "published": pushed is not None,
                    "servers": servers,
                }
            return {"pools": pools, "reloads": self.reloads, "config_error": self.config_error,
                    "in_sync": self.desired() == self.published, "pushes": self.pushes,
                    "push_errors": self.push_errors}


def write_status(path: Path, status: Mapping[str, Any]) -> None:
    """Write the status file atomically (readers never see half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class MemSwitchCollector(Collector):
    """Prometheus metrics of the memcached path, read at scrape time.

    From the data plane (its counters, when readable): every per-pool counter as
    torswitch_memswitch_<counter>_total{pool} and every per-server counter as
    torswitch_memswitch_server_<counter>_total{pool,server} (requests, hits, misses,
    invalidations, ...). From the control plane: ejections, failed probes, and the gauges
    server_up (live in the published pool) and server_ejected. `server` is the ring identity.
    """

    def __init__(self, switch: MemSwitch, counters: Callable[[], Counters | None]) -> None:
        self.switch = switch
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        status = self.switch.status()
        yield from self._dataplane(list(status["pools"]))
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "ejections": CounterMetricFamily(
                "torswitch_memswitch_server_ejections",
                "Times the server was ejected (auto_eject_hosts).", labels=["pool", "server"]),
            "failed_probes": CounterMetricFamily(
                "torswitch_memswitch_server_probe_failures",
                "Health probes the server failed.", labels=["pool", "server"]),
            "published_live": GaugeMetricFamily(
                "torswitch_memswitch_server_up",
                "1 when the server takes keys in the published pool.", labels=["pool", "server"]),
            "ejected": GaugeMetricFamily(
                "torswitch_memswitch_server_ejected",
                "1 while the server is ejected.", labels=["pool", "server"]),
        }
        for pool, entry in status["pools"].items():
            for label, server in entry["servers"].items():
                for key, family in families.items():
                    family.add_metric([pool, label], float(server[key]))
        yield from families.values()
        yield CounterMetricFamily("torswitch_memswitch_config_reloads",
                                  "Configuration reloads (SIGHUP).", value=status["reloads"])
        yield GaugeMetricFamily("torswitch_memswitch_config_error",
                                "1 when the last reload was refused.",
                                value=1.0 if status["config_error"] else 0.0)

    def _dataplane(self, pools: Sequence[str]) -> Iterator[Metric]:
        try:
            counters = self.counters()
        except (OSError, DataplaneError):
            counters = None
        if counters is None:
            return
        pool_families: dict[str, CounterMetricFamily] = {}
        for pool, values in sorted(counters.pools.items()):
            for name, value in values.items():
                family = pool_families.get(name)
                if family is None:
                    family = pool_families[name] = CounterMetricFamily(
                        f"torswitch_memswitch_{name}",
                        f"Data plane per-pool counter {name} (native/dataplane/dp_mc.h).",
                        labels=["pool"])
                family.add_metric([pool], float(value))
        yield from pool_families.values()
        server_families: dict[str, CounterMetricFamily] = {}
        for key, values in sorted(counters.servers.items()):
            known = next((p for p in pools if key.startswith(p + "/")), None)
            pool, _, server = key.partition("/") if known is None else (known, "/",
                                                                       key[len(known) + 1:])
            for name, value in values.items():
                family = server_families.get(name)
                if family is None:
                    family = server_families[name] = CounterMetricFamily(
                        f"torswitch_memswitch_server_{name}",
                        f"Data plane per-server counter {name} (native/dataplane/dp_mc.h).",
                        labels=["pool", "server"])
                family.add_metric([pool, server], float(value))
        yield from server_families.values()
