"""`torswitch cache stats|ls|evict|prefetch`: talk to a ToR's cache agent.

The agent address comes from --agent, else $TORSWITCH_AGENT, else 127.0.0.1:19867.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

DEFAULT_AGENT = "127.0.0.1:19867"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cache", help="inspect and drive a ToR block cache",
                                   description=__doc__)
    parser.add_argument("--agent", default=os.environ.get("TORSWITCH_AGENT", DEFAULT_AGENT),
                        help="agent host:port (default $TORSWITCH_AGENT or %(default)s)")
    sub = parser.add_subparsers(dest="cache_command", metavar="COMMAND")
    p = sub.add_parser("stats", help="hit, miss and byte counters, capacity and use")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_stats)
    p = sub.add_parser("ls", help="cached blocks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_ls)
    p = sub.add_parser("evict", help="evict blocks (pool:block_id:genstamp:length) or --all")
    p.add_argument("blocks", nargs="*", metavar="BLOCK")
    p.add_argument("--all", action="store_true", help="evict everything")
    p.set_defaults(func=_evict)
    p = sub.add_parser("prefetch", help="fetch the blocks of HDFS paths into the cache")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--pin-for", type=float, default=0.0, metavar="SECONDS",
                   help="keep the blocks pinned this long (default: not pinned)")
    p.set_defaults(func=_prefetch)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _client(args: argparse.Namespace) -> Any:
    from torswitch.agent import AgentClient

    return AgentClient(args.agent)


def _fail(args: argparse.Namespace, exc: Any) -> int:
    print(f"torswitch cache: {args.agent}: {exc.code().name}: {exc.details()}", file=sys.stderr)
    return 1


def _stats(args: argparse.Namespace) -> int:
    import grpc

    from torswitch.agent import stats_dict

    try:
        with _client(args) as c:
            stats = stats_dict(c.stats())
    except grpc.RpcError as exc:
        return _fail(args, exc)
    if args.json:
        print(json.dumps(stats))
    else:
        for k, v in stats.items():
            print(f"{k:22s} {v}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    try:
        with _client(args) as c:
            blocks = c.list()
    except grpc.RpcError as exc:
        return _fail(args, exc)
    if args.json:
        print(json.dumps([MessageToDict(b, preserving_proto_field_name=True) for b in blocks]))
        return 0
    print(f"{'block':48s} {'length':>10s} {'segments':>9s} {'hits':>6s} pinned")
    for b in blocks:
        ref = b.block
        name = f"{ref.pool_id}:blk_{ref.block_id}_{ref.generation_stamp}"
        pinned = time.strftime("%H:%M:%S", time.localtime(b.pinned_until_unix_s)) if b.pinned_until_unix_s > time.time() else "-"
        print(f"{name:48s} {ref.num_bytes:10d} {b.segments_cached:4d}/{b.segments_total:<4d} {b.hits:6d} {pinned}")
    return 0


def _evict(args: argparse.Namespace) -> int:
    import grpc

    from torswitch.blockcache import BlockKey

    if not args.blocks and not args.all:
        print("torswitch cache evict: name blocks or give --all", file=sys.stderr)
        return 2
    keys = []
    for text in args.blocks:
        parts = text.rsplit(":", 3)
        if len(parts) != 4 or not all(p.lstrip("-").isdigit() for p in parts[1:]):
            print(f"torswitch cache evict: {text!r} is not pool:block_id:genstamp:length", file=sys.stderr)
            return 2
        keys.append(BlockKey(parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
    try:
        with _client(args) as c:
            print(f"evicted {c.evict(keys, all=args.all)} block(s)")
    except grpc.RpcError as exc:
        return _fail(args, exc)
    return 0


def _prefetch(args: argparse.Namespace) -> int:
    import grpc
    from tqdm import tqdm

    deadline = time.time() + args.pin_for if args.pin_for > 0 else 0.0
    last = None
    try:
        with _client(args) as c, tqdm(unit="B", unit_scale=True, desc="prefetch") as bar:
            for p in c.prefetch(list(args.paths), priority=args.priority, deadline_unix_s=deadline):
                bar.total = p.bytes_total
                bar.update(p.bytes_ready - bar.n)
                last = p
    except grpc.RpcError as exc:
        return _fail(args, exc)
    if last is None:
        return 1
    print(f"{last.blocks_ready}/{last.blocks_total} blocks ready, {last.bytes_ready} bytes"
          + (f", {last.blocks_failed} failed: {'; '.join(last.errors)}" if last.blocks_failed else ""))
    return 0 if last.blocks_failed == 0 else 1
