"""The block directory (torswitch.directory.v1.BlockDirectory): servicer, ToR reporter, client.

The directory is the one place that knows which ToR caches which HDFS block. ToRs register
(rack, agent address, capacity), heartbeat and report their cached blocks; schedulers send hints
naming what a job will read and where its tasks will run. For each hint the directory:

    resolve   paths and globs through the NameNode (torswitch.namenode), or take the caller's
              block ids as they are; complete, unencrypted, replicated blocks only
    place     per target rack, each block on one of the rack's live ToRs: weighted rendezvous of
              the block's placement key over those ToRs (weight = capacity), through the shared
              key-routing core (torswitch.routing); a block already pinned or cached on one of
              them is an override to that ToR, so placements never move under a running job
    admit     per ToR, bytes pinned by live plans and by the ToR's own reported pins, plus this
              plan's new share, must fit its capacity. all_or_nothing: any shortfall refuses the
              whole hint (RESOURCE_EXHAUSTED) before any ToR is asked for anything; otherwise a
              share is cut to what fits and the rest is reported as failed
    drive     one Prefetch stream per ToR share (torswitch.agent.v1), with the hint's priority
              and deadline as the pin; progress is summed into the plan (WatchPlan)
    release   at the deadline the plan expires and its pins lapse on the ToRs by themselves;
              CancelHint stops the prefetches and evicts the blocks no other live plan pins on
              that ToR (or, with keep_cached, leaves them to lapse at the deadline)

Soft state. Membership, what each ToR holds and its own pins come only from RegisterSwitch,
Heartbeat and BlockReport; plans live in memory. After a directory restart a ToR's heartbeat
gets NOT_FOUND, so it registers again and sends a full report: Locate answers are rebuilt from
those reports. Plans do not survive a restart, but their pins do, on the ToRs, and are counted
again for admission from the reports (pinned_until).

Peer fetch rule (documented, not enabled). A ToR's prefetch may be filled from another ToR that
holds the block completely, instead of a DataNode, when that ToR is closer: listed first when it
serves the same rack (a multi-ToR rack: no uplink crossed); listed after the DataNodes of the
fetching ToR's own rack but before remote DataNodes otherwise (an in-rack replica costs nothing,
a peer ToR's RAM spares a remote DataNode's disk at the same uplink cost). It is not enabled
because the engine (torswitch.engine) would treat a direct, non-intercepted connection as
intercepted: on a miss (the peer evicted the block after its last report) it would relay to its
own address. It needs a peer port on the engine that serves hits only and answers a miss with
an ERROR response, so the block reader moves on to the next location.

Concurrency. The servicer and all directory state live on one asyncio loop; only NameNode
resolution runs in an executor, and it touches no directory state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import grpc

from torswitch.api.torswitch.agent.v1 import agent_pb2 as apb
from torswitch.api.torswitch.agent.v1 import agent_pb2_grpc as apb_grpc
from torswitch.api.torswitch.directory.v1 import directory_pb2 as pb
from torswitch.api.torswitch.directory.v1 import directory_pb2_grpc as pb_grpc
from torswitch.blockcache import BlockInfo, BlockKey
from torswitch.config import Server
from torswitch.errors import TorswitchError
from torswitch.namenode import FileStatus, LocatedBlock, LocatedBlocks, NameNodeError
from torswitch.routing import Ring, Router

log = logging.getLogger(__name__)

DEFAULT_PORT = 19870
HEARTBEAT_INTERVAL_S = 3.0
LIVE_INTERVALS = 3  # a ToR silent this many heartbeat intervals takes no new placements
MAX_DEADLINE_S = 7 * 86400
PLAN_RETENTION_S = 600.0  # finished plans stay visible this long after their deadline
MAX_ERRORS = 10
MAX_WEIGHT = 1_000_000  # the routing core's weight limit

# ---- errors -----------------------------------------------------------------------------------


class DirectoryError(TorswitchError):
    """A request the directory refuses; `code` is the gRPC status it is answered with."""

    code = grpc.StatusCode.INTERNAL


class BadRequest(DirectoryError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DirectoryError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class NoRoom(DirectoryError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DirectoryError):
    code = grpc.StatusCode.UNAVAILABLE


class Precondition(DirectoryError):
    code = grpc.StatusCode.FAILED_PRECONDITION


# ---- translation ------------------------------------------------------------------------------


def block_key(msg: pb.Block | apb.BlockRef) -> BlockKey:
    if not msg.pool_id or msg.block_id == 0 or msg.num_bytes <= 0:
        raise BadRequest(f"a block needs a pool id, a block id and a length > 0, got "
                         f"pool {msg.pool_id!r} id {msg.block_id} length {msg.num_bytes}")
    return BlockKey(msg.pool_id, msg.block_id, msg.generation_stamp, msg.num_bytes)


def block_msg(key: BlockKey, locations: Iterable[str] = ()) -> pb.Block:
    return pb.Block(pool_id=key.pool_id, block_id=key.block_id,
                    generation_stamp=key.gen_stamp, num_bytes=key.num_bytes,
                    locations=list(locations))


def agent_ref(key: BlockKey, locations: Sequence[str]) -> apb.BlockRef:
    return apb.BlockRef(pool_id=key.pool_id, block_id=key.block_id,
                        generation_stamp=key.gen_stamp, num_bytes=key.num_bytes,
                        locations=list(locations))


def placement_key(key: BlockKey) -> bytes:
    """What rendezvous hashes: pool and block id, so an appended block (new generation stamp,
    new length) stays on the ToR that already holds most of it."""
    return f"{key.pool_id}/{key.block_id}".encode()


def check_address(text: str, what: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRequest(f"{what} {text!r} is not host:port")
    return text


def check_rack(rack: str) -> str:
    if not rack.startswith("/") or rack.endswith("/") and rack != "/" or "//" in rack:
        raise BadRequest(f"rack {rack!r} is not a topology path like /rack-a")
    return rack


def ordered_locations(lb: LocatedBlock, rack: str) -> list[str]:
    """DataNode transfer addresses for a ToR of `rack`: in-rack replicas (no uplink) first,
    then the NameNode's own order."""
    live = [d for d in lb.locations if d.admin_state not in ("DECOMMISSIONED",)]
    near = [d for d in live if d.rack == rack]
    far = [d for d in live if d.rack != rack]
    return [f"{d.ip}:{d.xfer_port}" for d in near + far]


def _locations(source: list[str] | LocatedBlock, rack: str) -> list[str]:
    return source if isinstance(source, list) else ordered_locations(source, rack)


def switch_weight(capacity_bytes: int) -> int:
    """A ToR's rendezvous weight: its capacity in MiB, within the routing core's limit."""
    return max(1, min(MAX_WEIGHT, capacity_bytes >> 20))


# ---- globs (Hadoop GlobPattern syntax) ---------------------------------------------------------

_GLOB_CHARS = frozenset("*?[{\\")


def has_glob(component: str) -> bool:
    return any(c in _GLOB_CHARS for c in component)


def compile_glob(component: str) -> re.Pattern[str]:
    """A regex for one path component of a Hadoop glob: * ? [set] [^set] [!set] {a,b} \\x.

    Raises BadRequest for an unclosed set or group, a stray '}' or a trailing backslash.
    """
    out: list[str] = []
    depth = 0
    i = 0
    n = len(component)
    while i < n:
        c = component[i]
        if c == "\\":
            if i + 1 == n:
                raise BadRequest(f"glob {component!r}: a trailing backslash escapes nothing")
            out.append(re.escape(component[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            negate = j < n and component[j] in "^!"
            if negate:
                j += 1
            start = j
            if j < n and component[j] == "]":
                j += 1  # a ']' right after '[' is a member
            while j < n and component[j] != "]":
                j += 1
            if j >= n:
                raise BadRequest(f"glob {component!r}: unclosed character class '['")
            members = component[start:j]
            if not members:
                raise BadRequest(f"glob {component!r}: empty character class")
            body = "".join("\\" + ch if ch in "\\^[]" else ch for ch in members)
            out.append(f"[{'^' if negate else ''}{body}]")
            i = j + 1
            continue
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}":
            if depth == 0:
                raise BadRequest(f"glob {component!r}: '}}' without '{{'")
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise BadRequest(f"glob {component!r}: unclosed group '{{'")
    return re.compile("".join(out), re.DOTALL)


def split_glob(pattern: str) -> list[str]:
    if not pattern.startswith("/"):
        raise BadRequest(f"glob {pattern!r} is not an absolute HDFS path")
    comps = [c for c in pattern.split("/") if c]
    for comp in comps:
        if comp.count("{") != comp.count("}") and "\\" not in comp:
            raise BadRequest(f"glob {pattern!r}: groups {{...}} may not span '/'")
        compile_glob(comp)  # validates
    return comps


# ---- resolving through the NameNode ----------------------------------------------------------


class NameNode(Protocol):
    """What the directory needs of torswitch.namenode.NameNodeClient."""

    def get_file_info(self, path: str) -> FileStatus | None: ...
    def list_status(self, path: str) -> Iterator[FileStatus]: ...
    def file_blocks(self, path: str) -> LocatedBlocks: ...


def _join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name


def expand_glob(nn: NameNode, pattern: str) -> list[str]:
    """Every existing path matching `pattern`, component by component. Blocking."""
    current: list[tuple[str, FileStatus | None]] = [("/", None)]
    for comp in split_glob(pattern):
        nxt: list[tuple[str, FileStatus | None]] = []
        if has_glob(comp):
            rx = compile_glob(comp)
            for path, st in current:
                st = st or nn.get_file_info(path)
                if st is None or not st.is_dir:
                    continue
                for child in nn.list_status(path):
                    if rx.fullmatch(child.path.rsplit("/", 1)[-1]):
                        nxt.append((child.path, child))
        else:
            nxt = [(_join(path, comp), None) for path, _ in current]
        current = nxt
    return sorted(p for p, st in current if st is not None or nn.get_file_info(p) is not None)


def resolve(nn: NameNode, paths: Sequence[str], globs: Sequence[str]) -> list[LocatedBlock]:
    """Blocks of every file under `paths` and under what `globs` match, in order, once each.

    Raises NotFound for a missing path or a glob matching nothing. Blocking.
    """
    todo: list[str] = []
    for path in paths:
        if not path.startswith("/"):
            raise BadRequest(f"path {path!r} is not an absolute HDFS path")
        todo.append(path)
    for pattern in globs:
        matched = expand_glob(nn, pattern)
        if not matched:
            raise NotFound(f"glob {pattern!r} matches nothing")
        todo.extend(matched)
    seen: set[BlockKey] = set()
    out: list[LocatedBlock] = []
    stack = list(reversed(todo))
    while stack:
        path = stack.pop()
        st = nn.get_file_info(path)
        if st is None:
            raise NotFound(f"{path}: no such file or directory")
        if st.is_dir:
            stack.extend(sorted((c.path for c in nn.list_status(path)), reverse=True))
            continue
        located = nn.file_blocks(path)
        if located.encrypted or located.erasure_coded:
            log.info("not hinting %s: encrypted or erasure-coded", path)
            continue
        # A block still being written may grow; only complete blocks are stable.
        blocks = located.blocks if located.last_block_complete else located.blocks[:-1]
        for lb in blocks:
            b = lb.block
            key = BlockKey(b.pool_id, b.block_id, b.generation_stamp, b.num_bytes)
            if b.num_bytes > 0 and key not in seen and lb.locations:
                seen.add(key)
                out.append(lb)
    return out


# ---- directory state --------------------------------------------------------------------------


@dataclass
class Held:
    """One block as a ToR reported it."""

    complete: bool
    pinned_until: float


@dataclass
class Switch:
    switch_id: str
    rack: str
    agent_address: str
    capacity_bytes: int
    hosts: tuple[str, ...]
    incarnation: int
    last_heartbeat: float  # monotonic
    used_bytes: int = 0
    full_report_seen: bool = False
    held: dict[BlockKey, Held] = field(default_factory=dict)
    # block -> plan ids pinning it here
    pins: dict[BlockKey, set[str]] = field(default_factory=dict)
    pin_bytes: int = 0
    channel: grpc.aio.Channel | None = None
    _reported_only: int = 0
    _stamp: float = 0.0

    def live(self, now: float, interval: float) -> bool:
        return now - self.last_heartbeat < LIVE_INTERVALS * interval

    def _reported_pin(self, key: BlockKey) -> bool:
        held = self.held.get(key)
        return held is not None and held.pinned_until > self._stamp

    def pin(self, key: BlockKey, plan_id: str) -> None:
        owners = self.pins.setdefault(key, set())
        if not owners:
            self.pin_bytes += key.num_bytes
            if self._reported_pin(key):  # counted as a reported pin until now
                self._reported_only -= key.num_bytes
        owners.add(plan_id)

    def unpin(self, key: BlockKey, plan_id: str) -> bool:
        """Drop `plan_id`'s pin; True when no plan pins `key` here any more."""
        owners = self.pins.get(key)
        if owners is None:
            return False
        owners.discard(plan_id)
        if owners:
            return False
        del self.pins[key]
        self.pin_bytes -= key.num_bytes
        if self._reported_pin(key):
            self._reported_only += key.num_bytes
        return True

    def is_pinned(self, key: BlockKey, wall: float) -> bool:
        held = self.held.get(key)
        return key in self.pins or (held is not None and held.pinned_until > wall)

    def pinned_keys(self, wall: float) -> set[BlockKey]:
        keys = set(self.pins)
        keys.update(k for k, h in self.held.items() if h.pinned_until > wall)
        return keys

    def pinned_bytes(self, wall: float) -> int:
        """Bytes pinned here by live plans and by the ToR's own reported pins. The reported part
        is recounted at most once a second (it changes only with reports and time)."""
        if wall - self._stamp > 1.0:
            self._reported_only = sum(k.num_bytes for k, h in self.held.items()
                                      if h.pinned_until > wall and k not in self.pins)
            self._stamp = wall
        return self.pin_bytes + self._reported_only

    def stub(self) -> Any:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.agent_address)
        return apb_grpc.CacheAgentStub(self.channel)  # type: ignore[no-untyped-call]


@dataclass
class Share:
    """One ToR's part of a plan."""

    switch_id: str
    rack: str
    refs: list[apb.BlockRef]
    keys: list[BlockKey]
    cached: int
    ready: int = 0
    failed: int = 0
    bytes_ready: int = 0

    @property
    def bytes(self) -> int:
        return sum(k.num_bytes for k in self.keys)


_TERMINAL = (pb.PLAN_STATE_CANCELLED, pb.PLAN_STATE_EXPIRED)


@dataclass
class Plan:
    plan_id: str
    job_id: str
    priority: int
    deadline: float
    shares: list[Share]
    state: int = pb.PLAN_STATE_RUNNING
    unplaced_blocks: int = 0
    unplaced_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def error(self, text: str) -> None:
        self.errors.append(text)
        del self.errors[:-MAX_ERRORS]

    def progress(self) -> pb.PlanProgress:
        return pb.PlanProgress(
            plan_id=self.plan_id, job_id=self.job_id, state=self.state,  # type: ignore[arg-type]
            blocks_total=sum(len(s.keys) for s in self.shares) + self.unplaced_blocks,
            blocks_ready=sum(s.ready for s in self.shares),
            blocks_failed=sum(s.failed for s in self.shares) + self.unplaced_blocks,
            bytes_total=sum(s.bytes for s in self.shares) + self.unplaced_bytes,
            bytes_ready=sum(s.bytes_ready for s in self.shares),
            errors=self.errors, done=self.state != pb.PLAN_STATE_RUNNING,
            deadline_unix_s=self.deadline,
        )


@dataclass
class _RackRing:
    signature: tuple[Any, ...]
    members: list[Switch]
    router: Router


class Directory:
    """The directory's state and operations; every method runs on the event loop.

    `namenode` makes a client for resolving paths (None: hints must name blocks).
    """

    def __init__(self, *, namenode: Callable[[], NameNode] | None = None,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
                 plan_retention_s: float = PLAN_RETENTION_S) -> None:
        self.namenode_factory = namenode
        self._namenode: NameNode | None = None
        self.interval = heartbeat_interval_s
        self.retention = plan_retention_s
        self.switches: dict[str, Switch] = {}
        self.plans: dict[str, Plan] = {}
        self.where: dict[tuple[str, int], set[str]] = {}  # (pool, block id) -> switch ids
        self.rings: dict[str, _RackRing] = {}
        self.started = time.monotonic()
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for plan in self.plans.values():
            for t in plan.tasks:
                t.cancel()
        for sw in self.switches.values():
            if sw.channel is not None:
                await sw.channel.close()
        close = getattr(self._namenode, "close", None)
        if close is not None:
            close()

    # -- membership -------------------------------------------------------------------------

    def register(self, req: pb.RegisterSwitchRequest) -> pb.RegisterSwitchReply:
        if not req.switch_id:
            raise BadRequest("RegisterSwitch needs a switch_id")
        check_rack(req.rack)
        check_address(req.agent_address, "agent_address")
        if req.capacity_bytes <= 0:
            raise BadRequest(f"switch {req.switch_id}: capacity_bytes must be > 0")
        old = self.switches.get(req.switch_id)
        if old is not None:
            self._forget_held(old)
            if old.channel is not None:
                asyncio.get_running_loop().create_task(old.channel.close())
        sw = Switch(req.switch_id, req.rack, req.agent_address, req.capacity_bytes,
                    tuple(req.hosts), time.time_ns(), time.monotonic())
        if old is not None:
            sw.pins, sw.pin_bytes = old.pins, old.pin_bytes  # live plans still pin there
        self.switches[sw.switch_id] = sw
        log.info("switch %s registered: rack %s, agent %s, %d bytes", sw.switch_id, sw.rack,
                 sw.agent_address, sw.capacity_bytes)
        return pb.RegisterSwitchReply(incarnation=sw.incarnation,
                                      heartbeat_interval_s=self.interval)

    def _switch(self, switch_id: str, incarnation: int) -> Switch:
        sw = self.switches.get(switch_id)
        if sw is None:
            raise NotFound(f"switch {switch_id!r} is not registered (register again)")
        if incarnation != sw.incarnation:
            raise Precondition(f"switch {switch_id!r}: incarnation {incarnation} was replaced "
                               f"by {sw.incarnation} (register again)")
        return sw

    def heartbeat(self, req: pb.HeartbeatRequest) -> pb.HeartbeatReply:
        sw = self._switch(req.switch_id, req.incarnation)
        sw.last_heartbeat = time.monotonic()
        sw.used_bytes = req.used_bytes
        if req.capacity_bytes > 0:
            sw.capacity_bytes = req.capacity_bytes
        return pb.HeartbeatReply(full_report_needed=not sw.full_report_seen)

    def block_report(self, req: pb.BlockReportRequest) -> pb.BlockReportReply:
        sw = self._switch(req.switch_id, req.incarnation)
        added = [(block_key(r.block), Held(r.complete, r.pinned_until_unix_s)) for r in req.blocks]
        removed = [block_key(b) for b in req.removed]
        if req.full:
            self._forget_held(sw)
            sw.full_report_seen = True
        for key in removed:
            if sw.held.pop(key, None) is not None:
                self._unindex(key, sw.switch_id)
        for key, held in added:
            sw.held[key] = held
            self.where.setdefault((key.pool_id, key.block_id), set()).add(sw.switch_id)
        sw.last_heartbeat = time.monotonic()
        sw._stamp = 0.0
        return pb.BlockReportReply(blocks=len(sw.held))

    def _forget_held(self, sw: Switch) -> None:
        for key in sw.held:
            self._unindex(key, sw.switch_id)
        sw.held.clear()
        sw._stamp = 0.0

    def _unindex(self, key: BlockKey, switch_id: str) -> None:
        ids = self.where.get((key.pool_id, key.block_id))
        if ids is not None:
            ids.discard(switch_id)
            if not ids:
                del self.where[(key.pool_id, key.block_id)]

    # -- queries ----------------------------------------------------------------------------

    def locate(self, req: pb.LocateRequest) -> pb.LocateReply:
        b = req.block
        if not b.pool_id or b.block_id == 0:
            raise BadRequest("Locate needs a block with a pool id and a block id")
        holders = []
        for sid in sorted(self.where.get((b.pool_id, b.block_id), ())):
            sw = self.switches[sid]
            for key, held in sw.held.items():
                if (key.pool_id, key.block_id) != (b.pool_id, b.block_id):
                    continue
                if b.generation_stamp and key.gen_stamp != b.generation_stamp:
                    continue
                if b.num_bytes and key.num_bytes != b.num_bytes:
                    continue
                holders.append(pb.Holder(switch_id=sid, rack=sw.rack,
                                         agent_address=sw.agent_address, complete=held.complete,
                                         pinned_until_unix_s=held.pinned_until))
        if not holders:
            raise NotFound(f"no ToR reports block {b.pool_id}:blk_{b.block_id}")
        return pb.LocateReply(holders=holders)

    def status(self) -> pb.StatusReply:
        now, wall = time.monotonic(), time.time()
        return pb.StatusReply(
            switches=[pb.SwitchStatus(
                switch_id=sw.switch_id, rack=sw.rack, agent_address=sw.agent_address,
                capacity_bytes=sw.capacity_bytes, used_bytes=sw.used_bytes,
                pinned_bytes=sw.pinned_bytes(wall), blocks=len(sw.held),
                live=sw.live(now, self.interval), last_heartbeat_age_s=now - sw.last_heartbeat,
                hosts=list(sw.hosts)) for sw in sorted(self.switches.values(),
                                                      key=lambda s: s.switch_id)],
            plans=[p.progress() for p in self.plans.values()],
            uptime_s=now - self.started,
        )

    # -- hints ------------------------------------------------------------------------------

    def _target_racks(self, racks: Sequence[str], hosts: Sequence[str]) -> list[str]:
        known = {sw.rack for sw in self.switches.values()}
        out: list[str] = []
        for rack in racks:
            check_rack(rack)
            if rack not in known:
                raise NotFound(f"no ToR is registered for rack {rack!r} "
                               f"(known: {', '.join(sorted(known)) or 'none'})")
            out.append(rack)
        for host in hosts:
            host_rack = next((sw.rack for sw in self.switches.values() if host in sw.hosts), None)
            if host_rack is None:
                raise NotFound(f"no ToR serves host {host!r}")
            out.append(host_rack)
        return list(dict.fromkeys(out))

    def _rack_router(self, rack: str) -> _RackRing:
        """The rack's ring over its ToRs, rebuilt (and published) when membership, capacity or
        liveness changed."""
        now = time.monotonic()
        members = sorted((sw for sw in self.switches.values() if sw.rack == rack),
                         key=lambda s: s.switch_id)
        live = tuple(sw.live(now, self.interval) for sw in members)
        if not any(live):
            raise Unavailable(f"rack {rack}: no ToR has heartbeated in the last "
                              f"{LIVE_INTERVALS * self.interval:.0f} s")
        servers = [Server(sw.agent_address.rpartition(":")[0],
                          int(sw.agent_address.rpartition(":")[2]),
                          switch_weight(sw.capacity_bytes), sw.switch_id) for sw in members]
        signature = (tuple(servers), live)
        cur = self.rings.get(rack)
        if cur is None or cur.signature != signature:
            ring = Ring(servers, distribution="rendezvous", live=live)
            if cur is None:
                cur = _RackRing(signature, members, Router(ring))
                self.rings[rack] = cur
            else:
                cur.router.publish(ring)
                cur.signature, cur.members = signature, members
        cur.members = members
        return cur

    def place(self, rack: str, keys: Sequence[BlockKey]) -> list[Switch]:
        """The ToR of `rack` for each key: an override where a live ToR of the rack already pins
        or holds the key completely, else weighted rendezvous."""
        rr = self._rack_router(rack)
        ring = rr.router.ring
        overrides: dict[bytes, int] = {}
        for i, sw in enumerate(rr.members):
            for key in keys:
                held = sw.held.get(key)
                if key in sw.pins or (held is not None and held.complete):
                    overrides.setdefault(placement_key(key), i)
        if overrides:
            ring = ring.with_changes(overrides=overrides)
        indexes = ring.index_batch([placement_key(k) for k in keys])
        return [rr.members[i] for i in indexes]

    async def hint(self, req: pb.HintRequest) -> pb.HintReply:
        # validate everything before resolving or changing anything
        if not req.paths and not req.globs and not req.blocks:
            raise BadRequest("a hint needs paths, globs or blocks")
        if not req.racks and not req.hosts:
            raise BadRequest("a hint needs target racks or hosts")
        wall = time.time()
        if req.deadline_unix_s <= wall:
            raise BadRequest("a hint needs a deadline in the future (deadline_unix_s)")
        if req.deadline_unix_s > wall + MAX_DEADLINE_S:
            raise BadRequest(f"deadline more than {MAX_DEADLINE_S // 86400} days away")
        for pattern in req.globs:
            split_glob(pattern)
        given: list[tuple[BlockKey, list[str]]] = []
        for b in req.blocks:
            key = block_key(b)
            for loc in b.locations:
                check_address(loc, f"block {b.block_id} location")
            if not b.locations:
                raise BadRequest(f"block {b.block_id} has no locations to fetch it from")
            given.append((key, list(b.locations)))
        racks = self._target_racks(req.racks, req.hosts)
        located: list[LocatedBlock] = []
        if req.paths or req.globs:
            located = await self._resolve(list(req.paths), list(req.globs))
        # resolution yielded; check again that the racks are still there
        racks = self._target_racks(racks, ())
        # each block with its source: the caller's location list, or the NameNode's answer
        blocks: dict[BlockKey, list[str] | LocatedBlock] = {}
        for key, locs in given:
            blocks.setdefault(key, locs)
        for lb in located:
            nb = lb.block
            blocks.setdefault(BlockKey(nb.pool_id, nb.block_id, nb.generation_stamp,
                                       nb.num_bytes), lb)
        if not blocks:
            raise NotFound("the hinted paths hold no complete, readable blocks")
        keys = list(blocks)
        plan = Plan(uuid.uuid4().hex[:16], req.job_id, req.priority, req.deadline_unix_s, [])
        # place, then admit per ToR
        by_switch: dict[str, tuple[Switch, str, list[BlockKey]]] = {}
        for rack in racks:
            for key, sw in zip(keys, self.place(rack, keys), strict=True):
                by_switch.setdefault(sw.switch_id, (sw, rack, []))[2].append(key)
        shortfalls: list[str] = []
        admitted: list[tuple[Switch, str, list[BlockKey]]] = []
        for sw, rack, share in by_switch.values():
            room = sw.capacity_bytes - sw.pinned_bytes(wall)
            fits: list[BlockKey] = []
            for key in share:
                if sw.is_pinned(key, wall):
                    fits.append(key)
                elif key.num_bytes <= room:
                    room -= key.num_bytes
                    fits.append(key)
            if len(fits) < len(share):
                need = sum(k.num_bytes for k in share if not sw.is_pinned(key=k, wall=wall))
                shortfalls.append(f"{sw.switch_id} ({rack}): needs {need} more bytes pinned, "
                                  f"has room for {sw.capacity_bytes - sw.pinned_bytes(wall)} "
                                  f"of {sw.capacity_bytes}")
                plan.unplaced_blocks += len(share) - len(fits)
                plan.unplaced_bytes += sum(k.num_bytes for k in share) - sum(
                    k.num_bytes for k in fits)
            admitted.append((sw, rack, fits))
        if shortfalls and req.all_or_nothing:
            raise NoRoom("all-or-nothing hint does not fit: " + "; ".join(shortfalls))
        for text in shortfalls:
            plan.error(f"not placed, no room: {text}")
        for sw, rack, fits in admitted:
            if not fits:
                continue
            cached = sum(1 for k in fits if (h := sw.held.get(k)) is not None and h.complete)
            refs = [agent_ref(k, _locations(blocks[k], rack)) for k in fits]
            plan.shares.append(Share(sw.switch_id, rack, refs, fits, cached))
            for key in fits:
                sw.pin(key, plan.plan_id)
        self.plans[plan.plan_id] = plan
        plan.tasks = [asyncio.create_task(self._drive(plan, share)) for share in plan.shares]
        if not plan.shares:
            plan.state = pb.PLAN_STATE_FAILED
        else:
            task = asyncio.create_task(self._finish(plan))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        log.info("plan %s (job %r): %d blocks on %d ToR(s)", plan.plan_id, plan.job_id,
                 len(keys), len(plan.shares))
        return pb.HintReply(
            plan_id=plan.plan_id,
            blocks_total=plan.progress().blocks_total, bytes_total=plan.progress().bytes_total,
            assignments=[pb.Assignment(switch_id=s.switch_id, rack=s.rack, blocks=len(s.keys),
                                       bytes=s.bytes, blocks_cached=s.cached)
                         for s in plan.shares])

    async def _resolve(self, paths: list[str], globs: list[str]) -> list[LocatedBlock]:
        if self.namenode_factory is None:
            raise Precondition("this directory has no NameNode configured (hadoop_conf_dir); "
                               "hint blocks instead of paths")
        if self._namenode is None:
            self._namenode = self.namenode_factory()
        nn = self._namenode
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, resolve, nn, paths, globs)
        except DirectoryError:
            raise
        except FileNotFoundError as exc:
            raise NotFound(str(exc)) from None
        except (NameNodeError, OSError) as exc:
            raise Unavailable(f"NameNode: {exc}") from None

    async def _drive(self, plan: Plan, share: Share) -> None:
        """Run one ToR's share through its agent's Prefetch, summing progress into the plan."""
        sw = self.switches.get(share.switch_id)
        last = apb.PrefetchProgress()
        try:
            if sw is None:
                raise ConnectionError(f"switch {share.switch_id} left")
            req = apb.PrefetchRequest(blocks=share.refs, priority=plan.priority,
                                      deadline_unix_s=plan.deadline)
            async for progress in sw.stub().Prefetch(req):
                last = progress
                share.ready, share.failed = progress.blocks_ready, progress.blocks_failed
                share.bytes_ready = progress.bytes_ready
                plan.notify()
            for text in last.errors:
                plan.error(f"{share.switch_id}: {text}")
            if last.blocks_failed == 0 and last.done:
                for key in share.keys:  # until the next report confirms it
                    held = sw.held.setdefault(key, Held(True, plan.deadline))
                    held.complete = True
                    held.pinned_until = max(held.pinned_until, plan.deadline)
                    if key not in sw.pins:  # the plan ended meanwhile: a reported pin now
                        sw._stamp = 0.0
                    self.where.setdefault((key.pool_id, key.block_id), set()).add(sw.switch_id)
        except (grpc.RpcError, ConnectionError) as exc:
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            share.failed = len(share.keys) - share.ready
            plan.error(f"{share.switch_id}: prefetch failed: {detail}")
        finally:
            plan.notify()

    async def _finish(self, plan: Plan) -> None:
        await asyncio.gather(*plan.tasks, return_exceptions=True)
        if plan.state == pb.PLAN_STATE_RUNNING:
            failed = plan.progress().blocks_failed
            plan.state = pb.PLAN_STATE_FAILED if failed else pb.PLAN_STATE_READY
            log.info("plan %s: %s", plan.plan_id, pb.PlanState.Name(plan.state))
            plan.notify()

    def plan(self, plan_id: str) -> Plan:
        plan = self.plans.get(plan_id)
        if plan is None:
            raise NotFound(f"no plan {plan_id!r} (finished plans are kept "
                           f"{self.retention:.0f} s after their deadline)")
        return plan

    async def watch(self, plan_id: str) -> AsyncIterator[pb.PlanProgress]:
        plan = self.plan(plan_id)
        while True:
            changed = plan.changed
            progress = plan.progress()
            yield progress
            if progress.done:
                return
            await changed.wait()

    def _release(self, plan: Plan, state: int) -> dict[str, list[BlockKey]]:
        """End `plan`: stop its prefetches, drop its pins. Returns, per ToR, the keys no other
        live plan pins there."""
        for t in plan.tasks:
            t.cancel()
        freed: dict[str, list[BlockKey]] = {}
        for share in plan.shares:
            sw = self.switches.get(share.switch_id)
            if sw is None:
                continue
            for key in share.keys:
                if sw.unpin(key, plan.plan_id):
                    freed.setdefault(sw.switch_id, []).append(key)
        plan.state = state
        plan.notify()
        return freed

    async def cancel(self, req: pb.CancelHintRequest) -> pb.CancelHintReply:
        plan = self.plan(req.plan_id)
        if plan.state in _TERMINAL:
            return pb.CancelHintReply(evicted=0)
        freed = self._release(plan, pb.PLAN_STATE_CANCELLED)
        evicted = 0
        if req.keep_cached:
            return pb.CancelHintReply(evicted=0)
        for switch_id, keys in freed.items():
            sw = self.switches[switch_id]
            try:
                reply = await sw.stub().Evict(
                    apb.EvictRequest(blocks=[agent_ref(k, ()) for k in keys]), timeout=10)
                evicted += reply.evicted
                for key in keys:
                    if sw.held.pop(key, None) is not None:
                        self._unindex(key, switch_id)
                sw._stamp = 0.0
            except grpc.RpcError as exc:
                # the pins lapse at the deadline anyway
                log.warning("plan %s: evicting on %s failed: %s", plan.plan_id, switch_id, exc)
        return pb.CancelHintReply(evicted=evicted)

    def sweep(self) -> None:
        """Expire plans past their deadline; forget finished plans past the retention."""
        wall = time.time()
        for plan in list(self.plans.values()):
            if plan.deadline <= wall and plan.state not in _TERMINAL:
                self._release(plan, pb.PLAN_STATE_EXPIRED)
            if plan.deadline + self.retention <= wall:
                del self.plans[plan.plan_id]

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.interval))
            self.sweep()


# ---- servicer ---------------------------------------------------------------------------------


class BlockDirectoryServicer(pb_grpc.BlockDirectoryServicer):
    """Thin adapter: each RPC calls Directory and maps DirectoryError to its status code."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def _abort(self, context: grpc.aio.ServicerContext, exc: DirectoryError) -> None:
        await context.abort(exc.code, str(exc))

    async def RegisterSwitch(self, request: pb.RegisterSwitchRequest,
                             context: grpc.aio.ServicerContext) -> pb.RegisterSwitchReply:
        try:
            return self.directory.register(request)
        except DirectoryError as exc:
            await self._abort(context, exc)
            raise

    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> pb.HeartbeatReply:
        try:
            return self.directory.heartbeat(request)
        except DirectoryError as exc:
            await self._abort(context, exc)
            raise

    async def BlockReport(self, request: pb.BlockReportRequest,
                          context: grpc.aio.ServicerContext) -> pb.BlockReportReply:
        try:
            return self.directory.block_report(request)
        except DirectoryError as exc:
            await self._abort(context, exc)
            raise

    async def Hint(self, request: pb.HintRequest,
                   context: grpc.aio.ServicerContext) -> pb.HintReply:
        try:
            return await self.directory.hint(request)
        except DirectoryError as exc:
            await self._abort(context, exc)
            raise

    async def WatchPlan(self, request: pb.WatchPlanRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.PlanProgress]:
        try:
            self.directory.plan(request.plan_id)
        except DirectoryError as exc:
            await self._abort(context, exc)
        async for progress in self.directory.watch(request.plan_id):
            yield progress

    async def CancelHint(self, request: pb.CancelHintRequest,
                         context: grpc.aio.ServicerContext) -> pb.CancelHintReply:
        try:
            return await self.directory.cancel(request)
        except DirectoryError as exc:
            await self._abort(context, exc)
            raise

    async def Locate(self, request: pb.LocateRequest,
                     context: grpc.aio.ServicerContext) -> pb.LocateReply:
        try:
            return self.directory.locate(request)
        except DirectoryError as exc:
            await self._abort(context, exc)
            raise

    async def Status(self, request: pb.StatusRequest,
                     context: grpc.aio.ServicerContext) -> pb.StatusReply:
        return self.directory.status()


async def create_server(address: str, directory: Directory | None = None
                        ) -> tuple[grpc.aio.Server, int]:
    """A started directory on `address` ("host:port", port 0 for any); returns it and its port.

    The Directory is reachable as `server.directory` for callers that built none.
    """
    directory = directory or Directory()
    await directory.start()
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 4096)])
    pb_grpc.add_BlockDirectoryServicer_to_server(  # type: ignore[no-untyped-call]
        BlockDirectoryServicer(directory), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    server.directory = directory
    return server, port


# ---- ToR side: registration, heartbeats and block reports --------------------------------------


class SwitchReporter:
    """Keeps one ToR known to the directory: registers, heartbeats every interval, and reports
    its complete blocks (full after each registration, then incremental diffs).

    `list_blocks` returns what the cache holds (BlockCache.list_blocks; blocking, run in an
    executor). A NOT_FOUND or FAILED_PRECONDITION answer (directory restarted, or this ToR
    re-registered elsewhere) makes it register again and send a full report.
    """

    def __init__(self, directory: str, *, switch_id: str, rack: str, agent_address: str,
                 capacity_bytes: int, list_blocks: Callable[[], list[BlockInfo]],
                 hosts: Sequence[str] = (), used_bytes: Callable[[], int] = lambda: 0) -> None:
        self.channel = grpc.aio.insecure_channel(directory)
        self.stub = pb_grpc.BlockDirectoryStub(self.channel)  # type: ignore[no-untyped-call]
        self.register_req = pb.RegisterSwitchRequest(
            switch_id=switch_id, rack=rack, agent_address=agent_address,
            capacity_bytes=capacity_bytes, hosts=list(hosts))
        self.list_blocks = list_blocks
        self.used_bytes = used_bytes
        self.incarnation = 0
        self.interval = HEARTBEAT_INTERVAL_S
        self.reported: dict[BlockKey, tuple[bool, float]] = {}
        self.full_needed = True

    async def close(self) -> None:
        await self.channel.close()

    async def _snapshot(self) -> dict[BlockKey, tuple[bool, float]]:
        infos = await asyncio.get_running_loop().run_in_executor(None, self.list_blocks)
        return {i.key: (i.complete, i.pinned_until) for i in infos}

    async def sync(self) -> None:
        """One round: register if needed, heartbeat, report. Raises grpc.RpcError."""
        sid = self.register_req.switch_id
        try:
            if not self.incarnation:
                reply = await self.stub.RegisterSwitch(self.register_req, timeout=10)
                self.incarnation = reply.incarnation
                self.interval = reply.heartbeat_interval_s or HEARTBEAT_INTERVAL_S
                self.full_needed = True
            hb = await self.stub.Heartbeat(pb.HeartbeatRequest(
                switch_id=sid, incarnation=self.incarnation, used_bytes=self.used_bytes(),
                capacity_bytes=self.register_req.capacity_bytes), timeout=10)
            now = await self._snapshot()
            if self.full_needed or hb.full_report_needed:
                req = pb.BlockReportRequest(switch_id=sid, incarnation=self.incarnation, full=True,
                                            blocks=[_reported(k, v) for k, v in now.items()])
            else:
                changed = [_reported(k, v) for k, v in now.items() if self.reported.get(k) != v]
                gone = [block_msg(k) for k in self.reported if k not in now]
                if not changed and not gone:
                    self.reported = now
                    return
                req = pb.BlockReportRequest(switch_id=sid, incarnation=self.incarnation,
                                            blocks=changed, removed=gone)
            await self.stub.BlockReport(req, timeout=30)
            self.reported = now
            self.full_needed = False
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                self.incarnation = 0  # register again next round
            raise

    async def run(self) -> None:
        """sync() every heartbeat interval until cancelled; failures are logged and retried."""
        while True:
            try:
                await self.sync()
            except grpc.aio.AioRpcError as exc:
                log.warning("directory: %s: %s", exc.code().name, exc.details())
                if self.incarnation == 0:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await self.sync()
            await asyncio.sleep(self.interval)


def _reported(key: BlockKey, state: tuple[bool, float]) -> pb.ReportedBlock:
    return pb.ReportedBlock(block=block_msg(key), complete=state[0], pinned_until_unix_s=state[1])


# ---- client -----------------------------------------------------------------------------------


class DirectoryClient:
    """A blocking client of the directory. Raises grpc.RpcError with the server's status."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.BlockDirectoryStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hint(self, paths: Sequence[str] = (), *, racks: Sequence[str] = (),
             hosts: Sequence[str] = (), globs: Sequence[str] = (),
             blocks: Sequence[pb.Block] = (), job_id: str = "", priority: int = 0,
             deadline_unix_s: float | None = None, ttl_s: float = 3600.0,
             all_or_nothing: bool = False) -> pb.HintReply:
        """Hint a job's input. Paths containing glob characters are sent as globs."""
        plain = [p for p in paths if not has_glob(p)]
        globbed = list(globs) + [p for p in paths if has_glob(p)]
        req = pb.HintRequest(job_id=job_id, paths=plain, globs=globbed, blocks=list(blocks),
                             racks=list(racks), hosts=list(hosts), priority=priority,
                             deadline_unix_s=deadline_unix_s or time.time() + ttl_s,
                             all_or_nothing=all_or_nothing)
        reply: pb.HintReply = self.stub.Hint(req, timeout=self.timeout)
        return reply

    def watch(self, plan_id: str, timeout: float | None = None) -> Iterator[pb.PlanProgress]:
        yield from self.stub.WatchPlan(pb.WatchPlanRequest(plan_id=plan_id), timeout=timeout)

    def wait(self, plan_id: str, timeout: float | None = None) -> pb.PlanProgress:
        """Block until the plan is no longer running; its last progress."""
        last = None
        for last in self.watch(plan_id, timeout):
            pass
        assert last is not None
        return last

    def cancel(self, plan_id: str, *, keep_cached: bool = False) -> int:
        reply = self.stub.CancelHint(pb.CancelHintRequest(plan_id=plan_id,
                                                          keep_cached=keep_cached),
                                     timeout=self.timeout)
        return int(reply.evicted)

    def locate(self, key: BlockKey) -> list[pb.Holder]:
        """ToRs reporting `key`; [] when none does."""
        try:
            reply = self.stub.Locate(pb.LocateRequest(block=block_msg(key)), timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise
        return list(reply.holders)

    def status(self) -> pb.StatusReply:
        reply: pb.StatusReply = self.stub.Status(pb.StatusRequest(), timeout=self.timeout)
        return reply
