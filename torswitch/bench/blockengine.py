"""`torswitch bench blockengine`: one block read directly from its DataNode vs as a cache hit.

On a testbed of its own (or `--instance NAME`, an existing one with the engine), a client on c1
reads the same block over and over with READ_BLOCK, timing the first data byte and the whole
block: with the ToR switching plainly (the DataNode answers, across the shaped uplink: the
baseline) and with the engine serving it from its cache, alternately, in one run. The client is
torswitch's own DataTransferProtocol code run in c1's namespace, so both configurations are read
by exactly the same bytes of code.

Targets: a hit streams at least 1.5x the DataNode's throughput, with at most 0.5x its time to
first byte.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any

from torswitch.bench.report import Report, Target

NAME = "blockengine"
HELP = "one block: DataNode direct vs ToR cache hit, throughput and time to first byte"

# Runs inside c1: resolve the file's first block, read it N times, print timings as JSON.
CLIENT = r"""
import json, socket, sys, time
from torswitch.namenode import NameNodeClient
from torswitch.hadoopconf import HadoopConf
from torswitch.datatransfer import (Data, Direction, End, Op, StreamParser,
    encode_client_read_status, encode_request, read_block_request)
conf = HadoopConf.load(sys.argv[3])
nn_host, nn_port = conf.namenode_address()
with NameNodeClient(nn_host, nn_port) as nn:
    lb = nn.file_blocks(sys.argv[1]).blocks[0]
req = read_block_request(lb.block.to_proto(), 0, lb.block.num_bytes, token=lb.token)
raw = encode_request(Op.READ_BLOCK, req)
addr = lb.locations[0].xfer_address
out = []
for _ in range(int(sys.argv[2])):
    s = socket.create_connection(addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    parser = StreamParser(Direction.DATANODE, expect=[(Op.READ_BLOCK, req)])
    t0 = time.perf_counter()
    s.sendall(raw)
    first = None
    got = 0
    done = False
    while not done:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed mid-block")
        for ev in parser.feed(chunk):
            if isinstance(ev, Data) and len(ev.data):
                if first is None:
                    first = time.perf_counter() - t0
                got += len(ev.data)
            elif isinstance(ev, End):
                done = True
    total = time.perf_counter() - t0
    s.sendall(encode_client_read_status())
    s.close()
    out.append({"ttfb_s": first, "seconds": total, "bytes": got})
print(json.dumps(out))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--block-mb", type=int, default=64, help="block size in MiB (default 64)")
    parser.add_argument("--reads", type=int, default=5, help="reads per configuration and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--instance", default=None,
                        help="use this running testbed (with the engine) instead of a new one")


def run(args: argparse.Namespace) -> Report:
    from torswitch.testbed import lifecycle
    from torswitch.testbed.handle import Testbed
    from torswitch.testbed.state import RunDir

    own = args.instance is None
    instance = args.instance or "bench"
    block = args.block_mb << 20
    if not own:
        from torswitch.testbed.handle import Testbed as _T

        block = _T.attach(instance).state.options.get("block_size", block)
    if own:
        print(f"bringing up testbed {instance!r} (block size {args.block_mb} MiB) ...",
              file=sys.stderr, flush=True)
        lifecycle.up(instance, lifecycle.UpOptions(block_size=block, cache_bytes=4 * block),
                     progress=True, run=RunDir(instance))
    try:
        tb = Testbed.attach(instance)
        return _measure(tb, args, block)
    finally:
        if own:
            lifecycle.down(instance)


def _reads(tb: Any, path: str, n: int) -> list[dict[str, float]]:
    proc = tb.python("c1", CLIENT, path, str(n), str(tb.client_conf_dir))
    results: list[dict[str, float]] = json.loads(proc.stdout)
    return results


def _measure(tb: Any, args: argparse.Namespace, block: int) -> Report:
    from tqdm import tqdm

    path = "/bench/blockengine/block.bin"
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(os.urandom(block))
        f.flush()
        tb.hdfs("c1", "dfs", "-mkdir", "-p", os.path.dirname(path))
        tb.hdfs("c1", "dfs", "-put", "-f", f.name, path)
    direct: list[dict[str, float]] = []
    hits: list[dict[str, float]] = []
    with tqdm(total=args.rounds * 2, desc="blockengine", unit="phase") as bar:
        for _ in range(args.rounds):
            with tb.without_engine():
                direct += _reads(tb, path, args.reads)
            bar.update()
            tb.wait_engine(True)
            _reads(tb, path, 1)  # make sure the block is cached (a miss the first time)
            hits += _reads(tb, path, args.reads)
            bar.update()

    def med(samples: list[dict[str, float]], key: str) -> float:
        return statistics.median(s[key] for s in samples)

    d_tp = block / med(direct, "seconds")
    h_tp = block / med(hits, "seconds")
    d_ttfb, h_ttfb = med(direct, "ttfb_s"), med(hits, "ttfb_s")
    report = Report(NAME, columns=["path", "MB/s (median)", "TTFB ms (median)", "reads"])
    report.rows = [
        ["DataNode direct (baseline)", d_tp / 1e6, d_ttfb * 1e3, len(direct)],
        ["ToR cache hit", h_tp / 1e6, h_ttfb * 1e3, len(hits)],
    ]
    report.figures = {
        "block_bytes": block,
        "direct_throughput_mb_per_s": d_tp / 1e6,
        "hit_throughput_mb_per_s": h_tp / 1e6,
        "hit_over_direct_throughput_ratio": h_tp / d_tp,
        "direct_ttfb_ms": d_ttfb * 1e3,
        "hit_ttfb_ms": h_ttfb * 1e3,
        "hit_over_direct_ttfb_ratio": h_ttfb / d_ttfb,
        "uplink_rate_bps": tb.shaping.rate_bps,
    }
    report.targets = [
        Target("hit_over_direct_throughput_ratio", ">=", 1.5),
        Target("hit_over_direct_ttfb_ratio", "<=", 0.5),
    ]
    report.notes.append("medians over alternating rounds; the client runs in c1, the DataNode "
                        "is across the shaped uplink, the cache is in tor-a (tmpfs)")
    return report
