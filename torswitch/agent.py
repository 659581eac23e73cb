"""The ToR cache agent over gRPC (torswitch.agent.v1.CacheAgent), servicer and client.

The agent runs in the engine's process and event loop. Translation between messages and domain
objects sits at the top; every failure maps to a specific status: a malformed request is
INVALID_ARGUMENT, an unknown path NOT_FOUND, prefetching paths without a NameNode
FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Self

import grpc

from torswitch.api.hadoop import Security_pb2 as sec
from torswitch.api.torswitch.agent.v1 import agent_pb2 as pb
from torswitch.api.torswitch.agent.v1 import agent_pb2_grpc as pb_grpc
from torswitch.blockcache import BlockCache, BlockKey
from torswitch.engine import BlockEngine
from torswitch.namenode import Block, DatanodeInfo, LocatedBlock, NameNodeError
from torswitch.prefetcher import Prefetcher, Progress

# ---- translation ------------------------------------------------------------------------------


def block_key(ref: pb.BlockRef) -> BlockKey:
    if not ref.pool_id or ref.num_bytes < 0:
        raise ValueError(f"block ref needs a pool id and a length >= 0: {ref}")
    return BlockKey(ref.pool_id, ref.block_id, ref.generation_stamp, ref.num_bytes)


def located_block(ref: pb.BlockRef) -> LocatedBlock:
    """A LocatedBlock from a BlockRef whose locations are "ip:port" transfer addresses."""
    key = block_key(ref)
    if not ref.locations:
        raise ValueError(f"block {key} has no locations to fetch it from")
    nodes = []
    for loc in ref.locations:
        host, _, port = loc.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"location {loc!r} is not ip:port")
        nodes.append(DatanodeInfo(host, host, "", int(port), 0, 0, "", "NORMAL"))
    token = sec.TokenProto(identifier=b"", password=b"", kind="", service="")
    return LocatedBlock(Block(key.pool_id, key.block_id, key.gen_stamp, key.num_bytes), 0,
                        tuple(nodes), False, token)


def block_ref(key: BlockKey) -> pb.BlockRef:
    return pb.BlockRef(pool_id=key.pool_id, block_id=key.block_id,
                       generation_stamp=key.gen_stamp, num_bytes=key.num_bytes)


def progress_message(p: Progress) -> pb.PrefetchProgress:
    return pb.PrefetchProgress(blocks_total=p.blocks_total, blocks_ready=p.blocks_ready,
                               blocks_failed=p.blocks_failed, bytes_total=p.bytes_total,
                               bytes_ready=p.bytes_ready, errors=p.errors[-10:], done=p.done)


# ---- servicer ---------------------------------------------------------------------------------


class CacheAgentServicer(pb_grpc.CacheAgentServicer):
    def __init__(self, engine: BlockEngine, cache: BlockCache, prefetcher: Prefetcher) -> None:
        self.engine = engine
        self.cache = cache
        self.prefetcher = prefetcher

    async def Prefetch(self, request: pb.PrefetchRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[pb.PrefetchProgress]:
        if not request.paths and not request.blocks:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a prefetch needs paths or blocks")
        try:
            blocks = [located_block(ref) for ref in request.blocks]
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.paths:
            if self.prefetcher.namenode is None:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    "this agent has no NameNode configured (hadoop_conf_dir)")
            loop = asyncio.get_running_loop()
            try:
                blocks += await loop.run_in_executor(None, self.prefetcher.resolve_paths,
                                                     list(request.paths))
            except FileNotFoundError as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            except (NameNodeError, OSError) as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"NameNode: {exc}")
        async for progress in self.prefetcher.prefetch(blocks, pin_until=request.deadline_unix_s,
                                                       priority=request.priority):
            yield progress_message(progress)

    async def Evict(self, request: pb.EvictRequest,
                    context: grpc.aio.ServicerContext) -> pb.EvictReply:
        if request.all:
            return pb.EvictReply(evicted=self.cache.evict_all())
        try:
            keys = [block_key(ref) for ref in request.blocks]
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.EvictReply(evicted=sum(self.cache.evict(k) for k in keys))

    async def Stats(self, request: pb.StatsRequest,
                    context: grpc.aio.ServicerContext) -> pb.StatsReply:
        c, e = self.cache.stats, self.engine.stats
        return pb.StatsReply(
            capacity_bytes=c.capacity_bytes, used_bytes=c.used_bytes, blocks=c.blocks,
            segments=c.segments, hits=e.hits, misses=e.misses, bytes_from_cache=e.bytes_from_cache,
            bytes_from_upstream=e.bytes_from_upstream,
            bytes_prefetched=self.prefetcher.bytes_prefetched, evicted_blocks=c.evicted_blocks,
            corrupt_segments=c.corrupt_segments, passthrough=e.passthrough,
        )

    async def List(self, request: pb.ListRequest,
                   context: grpc.aio.ServicerContext) -> pb.ListReply:
        return pb.ListReply(blocks=[
            pb.CachedBlock(block=block_ref(i.key), segments_cached=i.segments_cached,
                           segments_total=i.segments_total, stored_bytes=i.stored_bytes,
                           pinned_until_unix_s=i.pinned_until, hits=i.hits)
            for i in self.cache.list_blocks()
        ])


async def create_server(address: str, servicer: CacheAgentServicer) -> tuple[grpc.aio.Server, int]:
    """A started gRPC server for `servicer` on `address` ("host:port"); returns it and its port."""
    server = grpc.aio.server()
    pb_grpc.add_CacheAgentServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(address)
    await server.start()
    return server, port


# ---- client -----------------------------------------------------------------------------------


class AgentClient:
    """A blocking client of one ToR's agent. Raises grpc.RpcError with the server's status."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.CacheAgentStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prefetch(self, paths: list[str] = (), blocks: list[pb.BlockRef] = (), *,  # type: ignore[assignment]
                 priority: int = 0, deadline_unix_s: float = 0.0,
                 timeout: float | None = None) -> Iterator[pb.PrefetchProgress]:
        req = pb.PrefetchRequest(paths=paths, blocks=blocks, priority=priority,
                                 deadline_unix_s=deadline_unix_s)
        yield from self.stub.Prefetch(req, timeout=timeout)

    def evict(self, keys: list[BlockKey] = (), *, all: bool = False) -> int:  # type: ignore[assignment]
        reply = self.stub.Evict(pb.EvictRequest(blocks=[block_ref(k) for k in keys], all=all),
                                timeout=self.timeout)
        return int(reply.evicted)

    def stats(self) -> pb.StatsReply:
        reply: pb.StatsReply = self.stub.Stats(pb.StatsRequest(), timeout=self.timeout)
        return reply

    def list(self) -> list[pb.CachedBlock]:
        return list(self.stub.List(pb.ListRequest(), timeout=self.timeout).blocks)


def stats_dict(reply: Any) -> dict[str, Any]:
    """A StatsReply as a plain dict (for --json)."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
