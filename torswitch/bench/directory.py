"""`torswitch bench directory`: Hint RPC latency and hints per second against the directory.

In one process: the directory's gRPC service on loopback, `--tors` ToRs registered over two
racks, each backed by a null cache agent that acknowledges a Prefetch at once (so the figures are
the directory's own cost: the RPC, placement through the routing core, admission, plan tracking
and the fan-out to agents, not block transfer). Same run:
  - sequential: one hint at a time, per-RPC latency p50 and p99;
  - concurrent: `--concurrency` hints in flight, hints per second and latency p50/p99.
Each hint names `--blocks` distinct blocks for one rack. Hint-to-ready time against a shaped
uplink needs real ToRs and DataNodes (the testbed) and is not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from torswitch.bench.report import Report

NAME = "directory"
HELP = "block directory Hint RPC latency (p50, p99) and hints per second"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hints", type=int, default=2000, help="hints per phase (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="hints in flight in the concurrent phase (default 64)")
    parser.add_argument("--blocks", type=int, default=8, help="blocks per hint (default 8)")
    parser.add_argument("--tors", type=int, default=4, help="ToRs, over two racks (default 4)")


def _null_agent() -> Any:
    from torswitch.api.torswitch.agent.v1 import agent_pb2 as apb
    from torswitch.api.torswitch.agent.v1 import agent_pb2_grpc as apb_grpc

    class NullAgent(apb_grpc.CacheAgentServicer):
        async def Prefetch(self, request: Any, context: Any) -> AsyncIterator[Any]:
            n = len(request.blocks)
            size = sum(b.num_bytes for b in request.blocks)
            yield apb.PrefetchProgress(blocks_total=n, blocks_ready=n, bytes_total=size,
                                       bytes_ready=size, done=True)

    return NullAgent(), apb_grpc


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _measure(args: argparse.Namespace) -> dict[str, float]:
    from torswitch.api.torswitch.directory.v1 import directory_pb2 as pb
    from torswitch.api.torswitch.directory.v1 import directory_pb2_grpc as pb_grpc
    from torswitch.directory import Directory, create_server

    directory = Directory(heartbeat_interval_s=60.0)
    server, port = await create_server("127.0.0.1:0", directory)
    agents = []
    try:
        for i in range(args.tors):
            servicer, apb_grpc = _null_agent()
            agent = grpc.aio.server()
            apb_grpc.add_CacheAgentServicer_to_server(servicer, agent)
            aport = agent.add_insecure_port("127.0.0.1:0")
            await agent.start()
            agents.append(agent)
            directory.register(pb.RegisterSwitchRequest(
                switch_id=f"tor-{i}", rack=f"/rack-{i % 2}", agent_address=f"127.0.0.1:{aport}",
                capacity_bytes=1 << 50))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.BlockDirectoryStub(channel)  # type: ignore[no-untyped-call]
            deadline = time.time() + 3600
            counter = iter(range(1, 1 << 40))

            async def one() -> float:
                n = next(counter)
                blocks = [pb.Block(pool_id="BP-bench", block_id=n * args.blocks + j,
                                   generation_stamp=1, num_bytes=128 << 20,
                                   locations=["198.18.0.1:9866"]) for j in range(args.blocks)]
                req = pb.HintRequest(job_id=f"bench-{n}", blocks=blocks,
                                     racks=[f"/rack-{n % 2}"], deadline_unix_s=deadline)
                t0 = time.perf_counter()
                await stub.Hint(req, timeout=60)
                return time.perf_counter() - t0

            for _ in range(min(100, args.hints)):  # warm-up
                await one()
            seq = [await one() for _ in range(args.hints)]
            todo = args.hints
            conc: list[float] = []

            async def worker() -> None:
                nonlocal todo
                while todo > 0:
                    todo -= 1
                    conc.append(await one())

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            wall = time.perf_counter() - t0
            # let the plans' fan-out finish before tearing down
            while any(p.state == pb.PLAN_STATE_RUNNING for p in directory.plans.values()):
                await asyncio.sleep(0.05)
            plans = len(directory.plans)
    finally:
        for agent in agents:
            await agent.stop(None)
        await server.stop(None)
        await directory.close()
    return {
        "hint_seq_p50_us": statistics.median(seq) * 1e6,
        "hint_seq_p99_us": _pct(seq, 0.99) * 1e6,
        "hint_seq_per_s": len(seq) / sum(seq),
        "hint_conc_p50_us": statistics.median(conc) * 1e6,
        "hint_conc_p99_us": _pct(conc, 0.99) * 1e6,
        "hints_per_s": len(conc) / wall,
        "plans": plans,
    }


def run(args: argparse.Namespace) -> Report:
    figures = asyncio.run(_measure(args))
    figures.update(hints=args.hints, concurrency=args.concurrency, blocks_per_hint=args.blocks,
                   tors=args.tors)
    report = Report(NAME, figures, columns=["phase", "p50 us", "p99 us", "hints/s"])
    report.rows = [
        ["sequential", figures["hint_seq_p50_us"], figures["hint_seq_p99_us"],
         figures["hint_seq_per_s"]],
        [f"{args.concurrency} in flight", figures["hint_conc_p50_us"],
         figures["hint_conc_p99_us"], figures["hints_per_s"]],
    ]
    report.notes.append("null agents: the directory's own cost, no block transfer")
    return report
