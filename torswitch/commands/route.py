"""`torswitch route --config FILE --pool NAME KEY...`: where each key goes, as nutcracker would."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "route",
        help="print the server each key routes to",
        description="Route keys through a pool of a torswitch config or of a nutcracker.yml "
        "as it is, and print KEY<TAB>server (the server's name if it has one, else host:port).",
    )
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="torswitch config or nutcracker.yml")
    parser.add_argument("--pool", required=True, metavar="NAME", help="pool name")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {key, server}")
    parser.add_argument("--stdin", action="store_true", help="also read keys, one per line, from stdin")
    parser.add_argument("keys", nargs="*", metavar="KEY")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torswitch import config, routing

    pool = config.load(args.config).pool(args.pool)
    keys = [k.encode("utf-8", "surrogateescape") for k in args.keys]
    if args.stdin:
        keys += [line.rstrip(b"\r\n") for line in sys.stdin.buffer if line.strip()]
    if not keys:
        print("torswitch route: error: no keys given", file=sys.stderr)
        return 2
    placed = routing.route_keys(pool, keys)
    if args.json:
        print(json.dumps([
            {"key": k.decode("utf-8", "surrogateescape"), "server": s.label if s else None}
            for k, s in placed
        ]))
    else:
        out = sys.stdout.buffer
        for k, s in placed:
            out.write(k + b"\t" + (s.label if s else "-").encode() + b"\n")
        out.flush()
    return 0
