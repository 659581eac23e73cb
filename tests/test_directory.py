"""torswitch.directory with three in-process ToRs (cache, engine, prefetcher, agent) over the
scripted DataNode of test_engine, and the directory's gRPC service on loopback.

Covers: placement by weighted rendezvous among the target rack's ToRs, prefetched blocks being
hits on that ToR, WatchPlan progress, all-or-nothing refusal, cancel and expiry releasing pins,
a directory restart rebuilt from block reports, path and glob resolution (through a scripted
NameNode; integration/test_directory.py uses the real one), bad requests and their status
codes, and 1,000 concurrent hints. Topology: /rack-a has tor-a1 and tor-a2, /rack-b has tor-b1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from tests.test_engine import BLOCK_LEN, POOL, ScriptedDataNode, block_data, read_via
from torswitch import agent, directory
from torswitch.api.hadoop import Security_pb2 as sec
from torswitch.api.torswitch.directory.v1 import directory_pb2 as pb
from torswitch.api.torswitch.directory.v1 import directory_pb2_grpc as pb_grpc
from torswitch.blockcache import BlockCache, BlockKey
from torswitch.config import Server
from torswitch.engine import BlockEngine
from torswitch.namenode import Block, DatanodeInfo, FileStatus, LocatedBlock, LocatedBlocks
from torswitch.peers import free_port
from torswitch.prefetcher import Prefetcher
from torswitch.routing import Ring

GEN = 1001
TOPOLOGY = (("tor-a1", "/rack-a"), ("tor-a2", "/rack-a"), ("tor-b1", "/rack-b"))


def key(block_id: int) -> BlockKey:
    return BlockKey(POOL, block_id, GEN, BLOCK_LEN)


@dataclass
class Tor:
    switch_id: str
    rack: str
    cache: BlockCache
    engine: BlockEngine
    prefetcher: Prefetcher
    server: grpc.aio.Server
    address: str
    reporter: directory.SwitchReporter | None = None

    def complete(self) -> set[int]:
        return {i.key.block_id for i in self.cache.list_blocks() if i.complete}


@dataclass
class Cluster:
    dn: ScriptedDataNode
    tors: list[Tor]
    server: grpc.aio.Server
    port: int
    tmp: pathlib.Path
    namenode: Callable[[], Any] | None = None
    extra: list[Any] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def directory(self) -> directory.Directory:
        return self.server.directory  # type: ignore[attr-defined,no-any-return]

    def tor(self, switch_id: str) -> Tor:
        return next(t for t in self.tors if t.switch_id == switch_id)

    def ref(self, block_id: int) -> pb.Block:
        return directory.block_msg(key(block_id), [f"127.0.0.1:{self.dn.port}"])

    async def sync(self) -> None:
        for t in self.tors:
            assert t.reporter is not None
            await t.reporter.sync()

    async def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a blocking client call off the loop the servers run on."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))

    async def restart(self) -> None:
        await self.server.stop(None)
        await self.directory.close()
        d = directory.Directory(namenode=self.namenode, heartbeat_interval_s=1.0)
        self.server, port = await directory.create_server(f"127.0.0.1:{self.port}", d)
        assert port == self.port


@contextlib.asynccontextmanager
async def cluster(tmp: pathlib.Path, capacities: dict[str, int] | None = None,
                  namenode: Callable[[], Any] | None = None) -> AsyncIterator[Cluster]:
    dn = ScriptedDataNode()
    await dn.start()
    d = directory.Directory(namenode=namenode, heartbeat_interval_s=1.0)
    server, port = await directory.create_server("127.0.0.1:0", d)
    c = Cluster(dn, [], server, port, tmp, namenode)
    try:
        for sid, rack in TOPOLOGY:
            cache = BlockCache(tmp / sid, capacity_bytes=64 << 20)
            engine = BlockEngine(cache, host="127.0.0.1", port=0,
                                 destination=lambda sock: ("127.0.0.1", dn.port))
            engine.port = await engine.start()
            pre = Prefetcher(cache, inflight=engine.inflight)
            aserver, aport = await agent.create_server(
                "127.0.0.1:0", agent.CacheAgentServicer(engine, cache, pre))
            tor = Tor(sid, rack, cache, engine, pre, aserver, f"127.0.0.1:{aport}")
            capacity = (capacities or {}).get(sid, cache.capacity_bytes)
            tor.reporter = directory.SwitchReporter(
                c.address, switch_id=sid, rack=rack, agent_address=tor.address,
                capacity_bytes=capacity, list_blocks=cache.list_blocks,
                hosts=[f"{sid}-host"], used_bytes=lambda cache=cache: cache.stats.used_bytes)
            c.tors.append(tor)
        await c.sync()
        yield c
    finally:
        for t in c.tors:
            if t.reporter is not None:
                await t.reporter.close()
            await t.server.stop(None)
            t.prefetcher.close()
            await t.engine.stop()
            t.cache.close()
        await c.server.stop(None)
        await c.directory.close()
        assert dn.server is not None
        dn.server.close()


def expected_tor(c: Cluster, rack: str, block_id: int) -> str:
    """The ToR weighted rendezvous picks for a block among `rack`'s ToRs, computed here from
    the registered capacities."""
    members = sorted((s for s in c.directory.switches.values() if s.rack == rack),
                     key=lambda s: s.switch_id)
    ring = Ring([Server("127.0.0.1", 1 + i, directory.switch_weight(s.capacity_bytes), s.switch_id)
                 for i, s in enumerate(members)], distribution="rendezvous")
    i = ring.index(f"{POOL}/{block_id}".encode())
    assert i is not None
    return members[i].switch_id


def code_of(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = fn()
        if isinstance(result, Iterator):
            list(result)
    return info.value.code(), info.value.details()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---- placement, prefetch, progress ------------------------------------------------------------


def test_hint_places_blocks_on_the_rendezvous_tor_of_the_rack(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as c:
            ids = list(range(1, 13))
            with directory.DirectoryClient(c.address) as client:
                reply = await c.call(client.hint, blocks=[c.ref(i) for i in ids],
                                     racks=["/rack-a"], job_id="job-1", ttl_s=600)
                assert reply.blocks_total == 12 and reply.bytes_total == 12 * BLOCK_LEN
                assert {a.rack for a in reply.assignments} == {"/rack-a"}
                progress = await c.call(lambda: list(client.watch(reply.plan_id)))
            last = progress[-1]
            assert last.done and last.state == pb.PLAN_STATE_READY
            assert last.blocks_ready == 12 and last.bytes_ready == 12 * BLOCK_LEN
            assert [p.blocks_ready for p in progress] == sorted(p.blocks_ready for p in progress)
            assert all(not p.done for p in progress[:-1])
            want: dict[str, set[int]] = {"tor-a1": set(), "tor-a2": set(), "tor-b1": set()}
            for i in ids:
                want[expected_tor(c, "/rack-a", i)].add(i)
            assert want["tor-a1"] and want["tor-a2"]  # 12 blocks land on both ToRs of rack A
            for t in c.tors:
                assert t.complete() == want[t.switch_id], t.switch_id
                assert {a.switch_id: a.blocks for a in reply.assignments}.get(
                    t.switch_id, 0) == len(want[t.switch_id])
            # pinned until the deadline on the ToR
            tor = c.tor("tor-a1")
            assert all(i.pinned_until == pytest.approx(last.deadline_unix_s)
                       for i in tor.cache.list_blocks())
            # a read through the chosen ToR is a hit: the DataNode sees nothing new
            before = len(c.dn.reads)
            some = min(want["tor-a2"])
            data, _, _, _ = await read_via(c.tor("tor-a2").engine.port, some, 0, BLOCK_LEN)
            assert data == block_data(some) and len(c.dn.reads) == before
            # a second hint for the same blocks to rack B: rack A keeps its copies
            with directory.DirectoryClient(c.address) as client:
                r2 = await c.call(client.hint, blocks=[c.ref(i) for i in ids[:3]],
                                  hosts=["tor-b1-host"], ttl_s=600)
                assert [a.switch_id for a in r2.assignments] == ["tor-b1"]
                assert (await c.call(client.wait, r2.plan_id)).state == pb.PLAN_STATE_READY
                await c.sync()
                holders = await c.call(client.locate, key(ids[0]))
            assert {h.switch_id for h in holders} == {expected_tor(c, "/rack-a", ids[0]), "tor-b1"}
            assert all(h.complete for h in holders)
    run(body())


def test_placement_keeps_blocks_where_they_are_pinned(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as c:
            d = c.directory
            ids = list(range(20, 40))
            first = {i: sw.switch_id for i, sw in zip(ids, d.place("/rack-a", [key(i) for i in ids]))}
            # pin everything on tor-a1 (as a reported pin), then place again: overrides win
            a1 = d.switches["tor-a1"]
            for i in ids:
                a1.held[key(i)] = directory.Held(True, time.time() + 60)
            again = {i: sw.switch_id for i, sw in zip(ids, d.place("/rack-a", [key(i) for i in ids]))}
            assert set(first.values()) == {"tor-a1", "tor-a2"}
            assert set(again.values()) == {"tor-a1"}
            # a ToR that stops heartbeating takes no new placements
            a1.held.clear()
            d.switches["tor-a2"].last_heartbeat -= 10
            assert {sw.switch_id for sw in d.place("/rack-a", [key(i) for i in ids])} == {"tor-a1"}
            d.switches["tor-a1"].last_heartbeat -= 10
            with pytest.raises(directory.Unavailable):
                d.place("/rack-a", [key(1)])
    run(body())


# ---- admission, cancel, expiry ------------------------------------------------------------------


def test_all_or_nothing_refused_when_capacity_is_too_small(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        # rack B's ToR says it has room for three blocks
        async with cluster(tmp_path, capacities={"tor-b1": 3 * BLOCK_LEN + 100}) as c:
            tor = c.tor("tor-b1")
            with directory.DirectoryClient(c.address) as client:
                code, details = await c.call(code_of, lambda: client.hint(
                    blocks=[c.ref(i) for i in range(1, 6)], racks=["/rack-b"],
                    all_or_nothing=True))
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "tor-b1" in details and "all-or-nothing" in details
                await asyncio.sleep(0.2)
                assert tor.complete() == set() and c.dn.reads == []  # nothing half-filled
                assert c.directory.plans == {}
                # three fit: all-or-nothing admits them
                r = await c.call(client.hint, blocks=[c.ref(i) for i in range(1, 4)],
                                 racks=["/rack-b"], all_or_nothing=True)
                assert (await c.call(client.wait, r.plan_id)).blocks_ready == 3
                # pinned bytes count: one more block no longer fits
                code, _ = await c.call(code_of, lambda: client.hint(
                    blocks=[c.ref(4)], racks=["/rack-b"], all_or_nothing=True))
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                # re-hinting pinned blocks needs no new room
                r = await c.call(client.hint, blocks=[c.ref(1), c.ref(2)], racks=["/rack-b"],
                                 all_or_nothing=True)
                assert (await c.call(client.wait, r.plan_id)).state == pb.PLAN_STATE_READY
                # without all-or-nothing, what does not fit is reported, not placed
                r = await c.call(client.hint, blocks=[c.ref(i) for i in range(4, 7)],
                                 racks=["/rack-b"])
                last = await c.call(client.wait, r.plan_id)
                assert last.state == pb.PLAN_STATE_FAILED and last.blocks_failed == 3
                assert any("no room" in e for e in last.errors)
                assert tor.complete() == {1, 2, 3}
    run(body())


def test_cancel_evicts_and_expiry_releases_pins(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as c:
            tor = c.tor("tor-b1")
            with directory.DirectoryClient(c.address) as client:
                r = await c.call(client.hint, blocks=[c.ref(i) for i in (1, 2, 3)],
                                 racks=["/rack-b"], job_id="a")
                r2 = await c.call(client.hint, blocks=[c.ref(3)], racks=["/rack-b"], job_id="b")
                await c.call(client.wait, r.plan_id)
                await c.call(client.wait, r2.plan_id)
                assert tor.complete() == {1, 2, 3}
                # block 3 is still pinned by plan b: only 1 and 2 leave
                assert await c.call(client.cancel, r.plan_id) == 2
                assert tor.complete() == {3}
                progress = await c.call(lambda: list(client.watch(r.plan_id)))
                assert progress[-1].state == pb.PLAN_STATE_CANCELLED
                assert await c.call(client.cancel, r.plan_id) == 0  # idempotent
                # keep_cached: nothing evicted, the pin lapses at the deadline
                assert await c.call(client.cancel, r2.plan_id, keep_cached=True) == 0
                assert tor.complete() == {3}
                # a short deadline: the plan expires and its pins are released
                r3 = await c.call(client.hint, blocks=[c.ref(7)], racks=["/rack-b"],
                                  deadline_unix_s=time.time() + 1.0)
                assert (await c.call(client.wait, r3.plan_id)).state == pb.PLAN_STATE_READY
                assert key(7) in c.directory.switches["tor-b1"].pins
                await asyncio.sleep(2.2)
                progress = await c.call(lambda: list(client.watch(r3.plan_id)))
                assert progress[-1].state == pb.PLAN_STATE_EXPIRED
                assert key(7) not in c.directory.switches["tor-b1"].pins
                # what stays pinned is block 3, kept cached by plan b until its own deadline
                assert c.directory.switches["tor-b1"].pinned_keys(time.time()) == {key(3)}
    run(body())


# ---- soft state -------------------------------------------------------------------------------


def test_directory_restart_rebuilds_locate_from_reports(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as c:
            ids = list(range(1, 7))
            with directory.DirectoryClient(c.address) as client:
                r = await c.call(client.hint, blocks=[c.ref(i) for i in ids], racks=["/rack-a"])
                await c.call(client.wait, r.plan_id)
            await c.sync()  # incremental reports
            before = {i: await c.call(_holders, c.address, i) for i in ids}
            assert all(len(h) == 1 for h in before.values())
            await c.restart()
            with directory.DirectoryClient(c.address) as client:
                assert await c.call(client.locate, key(1)) == []
                status = await c.call(client.status)
                assert status.switches == []
            # the first round after a restart fails (NOT_FOUND), the next registers and reports
            for t in c.tors:
                assert t.reporter is not None
                with pytest.raises(grpc.RpcError) as info:
                    await t.reporter.sync()
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
            await c.sync()
            after = {i: await c.call(_holders, c.address, i) for i in ids}
            assert after == before
            with directory.DirectoryClient(c.address) as client:
                status = await c.call(client.status)
            # the ToRs' own pins are counted again for admission
            pinned = {s.switch_id: s.pinned_bytes for s in status.switches}
            assert pinned["tor-a1"] + pinned["tor-a2"] == len(ids) * BLOCK_LEN
            # an eviction on a ToR reaches the directory with the next incremental report
            some = next(iter(before[1]))
            c.tor(some).cache.evict(key(1))
            await c.sync()
            assert await c.call(_holders, c.address, 1) == set()
    run(body())


def _holders(address: str, block_id: int) -> set[str]:
    with directory.DirectoryClient(address) as client:
        return {h.switch_id for h in client.locate(key(block_id)) if h.complete}


# ---- paths and globs --------------------------------------------------------------------------


class ScriptedNameNode:
    """Files /data/part-0..3 (two blocks each) and /data/sub/x (one block). Each block has two
    replicas, in this order: an unreachable DataNode on /rack-a, the scripted one on /rack-b."""

    def __init__(self, dn_port: int) -> None:
        self.dn_port = dn_port
        self.files = {f"/data/part-{n}": [100 + 2 * n, 101 + 2 * n] for n in range(4)}
        self.files["/data/sub/x"] = [200]
        self.dirs = {"/", "/data", "/data/sub"}
        self.calls = 0

    def __call__(self) -> ScriptedNameNode:
        return self

    def _status(self, path: str) -> FileStatus:
        kind = "dir" if path in self.dirs else "file"
        return FileStatus(path, kind, 0, 0o755, "u", "g", 0, 0, 1, 0, 0, 0)

    def get_file_info(self, path: str) -> FileStatus | None:
        self.calls += 1
        return self._status(path) if path in self.dirs or path in self.files else None

    def list_status(self, path: str) -> Iterator[FileStatus]:
        base = path.rstrip("/")
        names = {p for p in list(self.files) + list(self.dirs)
                 if p != path and p.rsplit("/", 1)[0] == base}
        return iter([self._status(p) for p in sorted(names)])

    def file_blocks(self, path: str) -> LocatedBlocks:
        token = sec.TokenProto(identifier=b"", password=b"", kind="", service="")
        far = DatanodeInfo("127.0.0.2", "dn-a", "", 1, 0, 0, "/rack-a", "NORMAL")
        near = DatanodeInfo("127.0.0.1", "dn-b", "", self.dn_port, 0, 0, "/rack-b", "NORMAL")
        blocks = tuple(LocatedBlock(Block(POOL, b, GEN, BLOCK_LEN), i * BLOCK_LEN, (far, near),
                                    False, token) for i, b in enumerate(self.files[path]))
        return LocatedBlocks(len(blocks) * BLOCK_LEN, blocks, False, True, False, False)


def test_compile_glob() -> None:
    cases = {
        "part-*": (["part-0", "part-", "part-xyz"], ["par", "xpart-0"]),
        "part-[01]": (["part-0", "part-1"], ["part-2", "part-01"]),
        "part-[^0]": (["part-1"], ["part-0"]),
        "{a,b*}.txt": (["a.txt", "bcd.txt"], ["c.txt", "a,b.txt"]),
        "x?y": (["xzy"], ["xy", "xzzy"]),
        r"\*": (["*"], ["a"]),
    }
    for pattern, (yes, no) in cases.items():
        rx = directory.compile_glob(pattern)
        assert all(rx.fullmatch(s) for s in yes), pattern
        assert not any(rx.fullmatch(s) for s in no), pattern
    for bad in ("part-[01", "{a,b", "a}", "x\\", "[]"):
        with pytest.raises(directory.BadRequest):
            directory.compile_glob(bad)
    with pytest.raises(directory.BadRequest, match="absolute"):
        directory.split_glob("data/*")
    with pytest.raises(directory.BadRequest, match="span"):
        directory.split_glob("/data/{a/b,c}")


def test_hint_paths_and_globs_through_the_namenode(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        nn = ScriptedNameNode(0)
        async with cluster(tmp_path, namenode=nn) as c:
            nn.dn_port = c.dn.port
            with directory.DirectoryClient(c.address) as client:
                # a directory recursively, a glob, and a path that overlaps the glob
                r = await c.call(client.hint, ["/data/sub", "/data/part-[01]", "/data/part-0"],
                                 racks=["/rack-b"])
                assert r.blocks_total == 5
                last = await c.call(client.wait, r.plan_id)
                assert last.state == pb.PLAN_STATE_READY, last.errors
                assert c.tor("tor-b1").complete() == {100, 101, 102, 103, 200}
                # the in-rack replica is listed first: the unreachable rack-B one is never tried
                share = c.directory.plans[r.plan_id].shares[0]
                assert all(ref.locations[0] == f"127.0.0.1:{c.dn.port}" for ref in share.refs)
                code, details = await c.call(code_of, lambda: client.hint(["/nope"],
                                                                          racks=["/rack-a"]))
                assert code == grpc.StatusCode.NOT_FOUND and "/nope" in details
                code, details = await c.call(code_of, lambda: client.hint(["/data/zz*"],
                                                                          racks=["/rack-a"]))
                assert code == grpc.StatusCode.NOT_FOUND and "matches nothing" in details
                code, details = await c.call(code_of, lambda: client.hint(["/data/part-[0"],
                                                                          racks=["/rack-a"]))
                assert code == grpc.StatusCode.INVALID_ARGUMENT and "unclosed" in details
                code, _ = await c.call(code_of, lambda: client.hint(["data/x"],
                                                                    racks=["/rack-a"]))
                assert code == grpc.StatusCode.INVALID_ARGUMENT
    run(body())


# ---- bad requests -----------------------------------------------------------------------------


def test_bad_requests_get_specific_codes(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as c:
            ok = [c.ref(1)]

            def calls() -> list[tuple[str, grpc.StatusCode, str]]:
                out = []
                with directory.DirectoryClient(c.address) as cl:
                    s = cl.stub
                    soon = time.time() + 60
                    cases: dict[str, Callable[[], Any]] = {
                        "empty hint": lambda: s.Hint(pb.HintRequest(racks=["/rack-a"],
                                                                    deadline_unix_s=soon)),
                        "no target": lambda: cl.hint(blocks=ok),
                        "bad glob": lambda: cl.hint(globs=["/d/{x"], racks=["/rack-a"]),
                        "unknown rack": lambda: cl.hint(blocks=ok, racks=["/rack-z"]),
                        "malformed rack": lambda: cl.hint(blocks=ok, racks=["rack-a"]),
                        "unknown host": lambda: cl.hint(blocks=ok, hosts=["nobody"]),
                        "past deadline": lambda: cl.hint(blocks=ok, racks=["/rack-a"],
                                                         deadline_unix_s=time.time() - 1),
                        "block without locations": lambda: cl.hint(
                            blocks=[directory.block_msg(key(1))], racks=["/rack-a"]),
                        "block without pool": lambda: cl.hint(
                            blocks=[pb.Block(block_id=1, num_bytes=1, locations=["h:1"])],
                            racks=["/rack-a"]),
                        "paths without namenode": lambda: cl.hint(["/data"], racks=["/rack-a"]),
                        "unknown plan (watch)": lambda: cl.watch("feedface"),
                        "unknown plan (cancel)": lambda: cl.cancel("feedface"),
                        "locate not cached": lambda: s.Locate(pb.LocateRequest(
                            block=directory.block_msg(key(999)))),
                        "locate without pool": lambda: s.Locate(pb.LocateRequest()),
                        "heartbeat unknown switch": lambda: s.Heartbeat(
                            pb.HeartbeatRequest(switch_id="tor-x", incarnation=1)),
                        "report stale incarnation": lambda: s.BlockReport(
                            pb.BlockReportRequest(switch_id="tor-a1", incarnation=1)),
                        "register without rack": lambda: s.RegisterSwitch(
                            pb.RegisterSwitchRequest(switch_id="t", agent_address="h:1",
                                                     capacity_bytes=1)),
                        "register bad address": lambda: s.RegisterSwitch(
                            pb.RegisterSwitchRequest(switch_id="t", rack="/r",
                                                     agent_address="h", capacity_bytes=1)),
                    }
                    for name, fn in cases.items():
                        code, details = code_of(fn)
                        out.append((name, code, details))
                return out

            got = {name: (code, details) for name, code, details in await c.call(calls)}
            I, N, F = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                       grpc.StatusCode.FAILED_PRECONDITION)
            want = {
                "empty hint": I, "no target": I, "bad glob": I, "unknown rack": N,
                "malformed rack": I, "unknown host": N, "past deadline": I,
                "block without locations": I, "block without pool": I,
                "paths without namenode": F, "unknown plan (watch)": N,
                "unknown plan (cancel)": N, "locate not cached": N, "locate without pool": I,
                "heartbeat unknown switch": N, "report stale incarnation": F,
                "register without rack": I, "register bad address": I,
            }
            assert {k: v[0] for k, v in got.items()} == want
            assert "paths, globs or blocks" in got["empty hint"][1]
            assert "/rack-z" in got["unknown rack"][1] and "/rack-a" in got["unknown rack"][1]
            assert "feedface" in got["unknown plan (watch)"][1]
            assert c.directory.plans == {}  # no bad request left a plan behind
    run(body())


# ---- load -------------------------------------------------------------------------------------


def test_1000_concurrent_hints_are_all_answered(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path) as c, grpc.aio.insecure_channel(c.address) as channel:
            stub = pb_grpc.BlockDirectoryStub(channel)
            deadline = time.time() + 600

            async def one(n: int) -> pb.HintReply:
                req = pb.HintRequest(job_id=f"job-{n}", blocks=[c.ref(1 + n % 10)],
                                     racks=["/rack-a" if n % 2 else "/rack-b"],
                                     deadline_unix_s=deadline)
                reply: pb.HintReply = await stub.Hint(req, timeout=60)
                return reply

            t0 = time.monotonic()
            replies = await asyncio.gather(*(one(n) for n in range(1000)))
            elapsed = time.monotonic() - t0
            assert len({r.plan_id for r in replies}) == 1000
            assert all(r.blocks_total == 1 for r in replies)
            # and every plan finishes
            done = await asyncio.gather(*(
                _last(stub.WatchPlan(pb.WatchPlanRequest(plan_id=r.plan_id), timeout=120))
                for r in replies))
            assert all(p.state == pb.PLAN_STATE_READY for p in done)
            assert len(c.dn.reads) <= 20  # single flight: 10 blocks, at most 2 racks
            print(f"1000 hints answered in {elapsed:.2f} s")
    run(body())


async def _last(stream: Any) -> pb.PlanProgress:
    last = None
    async for p in stream:
        last = p
    assert last is not None
    return last


# ---- command line -----------------------------------------------------------------------------


def test_hint_command_with_wait_and_cancel(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        nn = ScriptedNameNode(0)
        async with cluster(tmp_path, namenode=nn) as c:
            nn.dn_port = c.dn.port
            env = {**os.environ, "TORSWITCH_DIRECTORY": c.address}

            async def torswitch(*args: str) -> tuple[int, str, str]:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "torswitch", *args, env=env,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                out, err = await proc.communicate()
                assert proc.returncode is not None
                return proc.returncode, out.decode(), err.decode()

            rc, out, err = await torswitch("hint", "/data/part-*", "--rack", "/rack-b", "--wait",
                                           "--job-id", "cli")
            assert rc == 0, err
            assert "8 blocks" in out and "ready: 8/8 blocks ready" in out
            assert c.tor("tor-b1").complete() == {100 + i for i in range(8)}
            plan_id = out.split()[1].rstrip(":")
            rc, out, _ = await torswitch("hint", "--cancel", plan_id, "--json")
            assert rc == 0 and json.loads(out) == {"evicted": 8}
            assert c.tor("tor-b1").complete() == set()
            rc, _, err = await torswitch("hint", "/data/part-[", "--rack", "/rack-b")
            assert rc == 1 and "INVALID_ARGUMENT" in err and "unclosed" in err
            rc, _, err = await torswitch("hint", "/data", "--rack", "/rack-q")
            assert rc == 1 and "NOT_FOUND" in err and "/rack-q" in err
    run(body())


def test_directory_command_serves_until_sigterm(tmp_path: pathlib.Path) -> None:
    port = free_port()
    conf = tmp_path / "torswitch.yml"
    conf.write_text(f"torswitch: 1\ndirectory:\n  listen: 127.0.0.1:{port}\n"
                    "  heartbeat_interval_s: 0.5\n")
    proc = subprocess.Popen([sys.executable, "-m", "torswitch", "directory", "--config", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with directory.DirectoryClient(f"127.0.0.1:{port}", timeout=2) as client:
            for _ in range(100):
                try:
                    status = client.status()
                    break
                except grpc.RpcError:
                    time.sleep(0.1)
            else:
                pytest.fail("directory did not come up: " + proc.stderr.read())
            assert status.switches == [] and status.uptime_s >= 0
            reply = client.stub.RegisterSwitch(pb.RegisterSwitchRequest(
                switch_id="t", rack="/r", agent_address="127.0.0.1:1", capacity_bytes=1 << 20))
            assert reply.heartbeat_interval_s == 0.5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
