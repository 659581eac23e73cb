"""torswitch.prefetcher and torswitch.agent against the scripted DataNode of test_engine:
prefetched blocks become hits that never reach the DataNode; single flight with the engine;
priorities; the agent's statuses for bad requests."""

from __future__ import annotations

import asyncio
import pathlib
import time
from typing import Any

import grpc
import pytest

from tests.test_engine import BLOCK_LEN, POOL, block_data, read_via, setup
from torswitch import agent
from torswitch.api.torswitch.agent.v1 import agent_pb2 as pb
from torswitch.blockcache import BlockKey
from torswitch.prefetcher import Prefetcher, _runs


def ref(block_id: int, port: int) -> pb.BlockRef:
    return pb.BlockRef(pool_id=POOL, block_id=block_id, generation_stamp=1001,
                       num_bytes=BLOCK_LEN, locations=[f"127.0.0.1:{port}"])


def test_runs() -> None:
    assert _runs([0, 1, 2, 5, 7, 8]) == [(0, 2), (5, 5), (7, 8)]
    assert _runs([]) == []


def test_prefetched_blocks_are_hits(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            pre = Prefetcher(engine.cache, inflight=engine.inflight)
            blocks = [agent.located_block(ref(i, dn.port)) for i in (1, 2, 3)]
            deadline = time.time() + 600
            progress = [p async for p in pre.prefetch(blocks, pin_until=deadline)]
            assert progress[-1].done and progress[-1].blocks_ready == 3
            assert progress[-1].bytes_ready == 3 * BLOCK_LEN
            fetches = len(dn.reads)
            for i in (1, 2, 3):
                data, _, _, _ = await read_via(engine.port, i, 0, BLOCK_LEN)
                assert data == block_data(i)
            assert len(dn.reads) == fetches  # all hits
            assert all(b.pinned_until == deadline for b in engine.cache.list_blocks())
            pre.close()
    asyncio.run(body())


def test_client_miss_waits_for_prefetch_in_flight(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            dn.delay = 0.3
            pre = Prefetcher(engine.cache, inflight=engine.inflight)
            lb = agent.located_block(ref(4, dn.port))
            fetch = asyncio.create_task(pre.fetch(lb))
            await asyncio.sleep(0.05)
            data, _, _, _ = await read_via(engine.port, 4, 0, BLOCK_LEN)
            await fetch
            assert data == block_data(4)
            assert [b for b, _, _ in dn.reads] == [4]  # one upstream read in all
            assert engine.stats.hits == 1
            pre.close()
    asyncio.run(body())


def test_unreachable_replica_is_reported(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (_, engine):
            pre = Prefetcher(engine.cache, inflight=engine.inflight)
            bad = agent.located_block(pb.BlockRef(pool_id=POOL, block_id=9, generation_stamp=1,
                                                  num_bytes=BLOCK_LEN, locations=["127.0.0.1:1"]))
            progress = [p async for p in pre.prefetch([bad])]
            assert progress[-1].blocks_failed == 1 and progress[-1].errors
            pre.close()
    asyncio.run(body())


def test_agent_rpcs(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            pre = Prefetcher(engine.cache, inflight=engine.inflight)
            server, port = await agent.create_server(
                "127.0.0.1:0", agent.CacheAgentServicer(engine, engine.cache, pre))
            loop = asyncio.get_running_loop()

            def client_calls() -> dict[str, Any]:
                out: dict[str, Any] = {}
                with agent.AgentClient(f"127.0.0.1:{port}") as c:
                    out["progress"] = list(c.prefetch(blocks=[ref(5, dn.port), ref(6, dn.port)]))
                    out["stats"] = c.stats()
                    out["list"] = c.list()
                    for bad in (pb.PrefetchRequest(),
                                pb.PrefetchRequest(blocks=[pb.BlockRef(pool_id="", num_bytes=1)])):
                        with pytest.raises(grpc.RpcError) as info:
                            list(c.stub.Prefetch(bad))
                        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    with pytest.raises(grpc.RpcError) as info:
                        list(c.prefetch(paths=["/x"]))
                    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                    out["evicted"] = c.evict([BlockKey(POOL, 5, 1001, BLOCK_LEN)])
                    out["after"] = c.stats()
                return out

            out = await loop.run_in_executor(None, client_calls)
            assert out["progress"][-1].done and out["progress"][-1].blocks_ready == 2
            assert out["stats"].blocks == 2 and out["stats"].bytes_prefetched == 2 * BLOCK_LEN
            assert {b.block.block_id for b in out["list"]} == {5, 6}
            assert out["evicted"] == 1 and out["after"].blocks == 1
            await server.stop(None)
            pre.close()
    asyncio.run(body())
