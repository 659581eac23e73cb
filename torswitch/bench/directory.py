"""`torswitch bench directory`: Hint RPC latency and hints per second against the directory.

In one process: the directory's gRPC service on loopback, `--tors` ToRs registered over two
racks, each backed by a null cache agent that acknowledges a Prefetch at once (so the figures are
the directory's own cost: the RPC, placement through the routing core, admission, plan tracking
and the fan-out to agents, not block transfer). Same run:
  - sequential: one hint at a time, per-RPC latency p50 and p99;
  - concurrent: `--concurrency` hints in flight, hints per second and latency p50/p99.
Each hint names `--blocks` distinct blocks for one rack.

`--testbed` measures instead the time from a hint to all-ready for `--mib` MiB over the shaped
uplink of a real testbed (its own instance, brought up and down by the run, or the running one
named by --instance), as a fraction of the uplink's rate. In the same run, as the baseline,
one TCP stream carries the same number of bytes over the same uplink (a DataNode's namespace to
the ToR's), which is the most any prefetch could do on this machine:
  - prefetch_over_uplink_rate_ratio: prefetched bytes per second / the configured rate
    (target >= 0.9);
  - prefetch_over_tcp_ratio: the same against the measured single-stream TCP rate.
The file is written from the NameNode's host (core side, never crossing the uplink), hinted
and waited for from c1 through the Python client (no CLI start-up in the figure), then the plan
is cancelled, evicting its blocks, and the file removed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from torswitch.bench.report import Report, Target

NAME = "directory"
HELP = "block directory Hint RPC latency (p50, p99) and hints per second"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hints", type=int, default=2000, help="hints per phase (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="hints in flight in the concurrent phase (default 64)")
    parser.add_argument("--blocks", type=int, default=8, help="blocks per hint (default 8)")
    parser.add_argument("--tors", type=int, default=4, help="ToRs, over two racks (default 4)")
    parser.add_argument("--testbed", action="store_true",
                        help="measure hint-to-ready over a real testbed's shaped uplink instead")
    parser.add_argument("--instance", metavar="NAME",
                        help="with --testbed: use this running instance (default: bring up "
                        "an own one, bdir, and take it down after)")
    parser.add_argument("--mib", type=int, default=128,
                        help="with --testbed: MiB hinted (default 128)")
    parser.add_argument("--uplink-rate", default="200mbit", metavar="R",
                        help="with --testbed: uplink rate during the measurement, tc units "
                        "(default 200mbit)")


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
    if getattr(args, "testbed", False):
        return _run_testbed(args)
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


# ---- hint to all-ready over a real testbed's uplink ----------------------------------------

OWN_INSTANCE = "bdir"
TCP_PORT = 19879

# In c1: hint the file for /rack-a, follow the plan; the time from the Hint RPC to all-ready.
_HINT = """
import json, os, sys, time
from torswitch.directory import DirectoryClient
from torswitch.api.torswitch.directory.v1 import directory_pb2 as pb
with DirectoryClient(os.environ["TORSWITCH_DIRECTORY"], timeout=60) as client:
    t0 = time.perf_counter()
    reply = client.hint([sys.argv[1]], racks=["/rack-a"], job_id="bench-directory")
    last = client.wait(reply.plan_id, timeout=900)
    seconds = time.perf_counter() - t0
    client.cancel(reply.plan_id)
print(json.dumps({"seconds": seconds, "bytes": last.bytes_ready, "blocks": last.blocks_ready,
                  "blocks_total": last.blocks_total, "state": pb.PlanState.Name(last.state)}))
"""

# In tor-a: receive one TCP stream to EOF; seconds from the first byte to the last.
_SINK = """
import json, socket, sys, time
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
conn, _ = srv.accept()
n, t0 = 0, None
while chunk := conn.recv(1 << 20):
    if t0 is None:
        t0 = time.perf_counter()
    n += len(chunk)
print(json.dumps({"bytes": n, "seconds": time.perf_counter() - t0}), flush=True)
"""

# In dn1: send the bytes.
_SOURCE = """
import socket, sys
n = int(sys.argv[3])
buf = bytes(1 << 20)
with socket.create_connection((sys.argv[1], int(sys.argv[2]))) as s:
    while n > 0:
        s.sendall(buf[: min(n, len(buf))])
        n -= len(buf)
"""


def _tcp_baseline(tb: Any, size: int) -> tuple[int, float]:
    """One TCP stream of `size` bytes from dn1 to tor-a over the uplink: (bytes, seconds)."""
    import json
    import subprocess
    import sys

    from torswitch.testbed import topology

    sink = subprocess.Popen(
        tb.argv(topology.TOR, [sys.executable, "-c", _SINK, topology.TOR_ADDRESS,
                               str(TCP_PORT)]),
        stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        sink.stdout.readline()  # listening
        tb.python("dn1", _SOURCE, topology.TOR_ADDRESS, str(TCP_PORT), str(size))
        out = json.loads(sink.stdout.readline())
    finally:
        sink.wait(timeout=30)
    return int(out["bytes"]), float(out["seconds"])


def _run_testbed(args: argparse.Namespace) -> Report:
    import json
    import tempfile
    import uuid
    from pathlib import Path

    from torswitch.testbed import lifecycle
    from torswitch.testbed.handle import Testbed
    from torswitch.testbed.units import parse_rate

    rate_bps = parse_rate(args.uplink_rate)
    size = args.mib << 20
    own = args.instance is None
    instance = args.instance or OWN_INSTANCE
    if own:
        lifecycle.up(instance, lifecycle.UpOptions(
            rate_bps=rate_bps, cache_bytes=max(1 << 30, 2 * size)), progress=False)
    try:
        tb = Testbed.attach(instance)
        tb.check_up()
        path = f"/bench/directory/{uuid.uuid4().hex[:12]}"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "data"
            with open(local, "wb") as fh:
                fh.truncate(size)
            tb.hdfs("nn", "dfs", "-mkdir", "-p", "/bench/directory")
            tb.hdfs("nn", "dfs", "-put", "-f", str(local), path, timeout=900)
        try:
            with tb.uplink(rate_bps=rate_bps):
                tcp_bytes, tcp_s = _tcp_baseline(tb, size)
                out = json.loads(tb.python("c1", _HINT, path, timeout=1200).stdout)
        finally:
            tb.hdfs("nn", "dfs", "-rm", "-f", "-skipTrash", path, check=False)
    finally:
        if own:
            lifecycle.down(instance)
    rate_bytes = rate_bps / 8
    prefetch_rate = out["bytes"] / out["seconds"]
    tcp_rate = tcp_bytes / tcp_s
    figures: dict[str, Any] = {
        "mode": "testbed",
        "instance": instance,
        "hinted_bytes": out["bytes"],
        "hinted_blocks": out["blocks"],
        "plan_state": out["state"],
        "hint_to_ready_s": out["seconds"],
        "uplink_rate_bytes_per_s": rate_bytes,
        "prefetch_bytes_per_s": prefetch_rate,
        "tcp_bytes_per_s": tcp_rate,
        "prefetch_over_uplink_rate_ratio": prefetch_rate / rate_bytes,
        "prefetch_over_tcp_ratio": prefetch_rate / tcp_rate,
        "tcp_over_uplink_rate_ratio": tcp_rate / rate_bytes,
    }
    report = Report(NAME, figures, columns=["transfer", "MiB", "seconds", "MB/s", "of rate"])
    report.rows = [
        ["hint to all-ready", out["bytes"] / (1 << 20), out["seconds"], prefetch_rate / 1e6,
         prefetch_rate / rate_bytes],
        ["one TCP stream", tcp_bytes / (1 << 20), tcp_s, tcp_rate / 1e6, tcp_rate / rate_bytes],
    ]
    report.targets.append(Target("prefetch_over_uplink_rate_ratio", ">=", 0.9))
    report.notes.append(f"uplink shaped to {args.uplink_rate} ({rate_bytes / 1e6:.1f} MB/s); "
                        f"{out['blocks']}/{out['blocks_total']} blocks, plan {out['state']}")
    return report
