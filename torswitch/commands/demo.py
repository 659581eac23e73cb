"""`torswitch demo`: the routing demo (`make demo` runs `torswitch bench iterative`).

Shows what exists working against real peers: three memcached servers and nutcracker from
Debian, keys set through nutcracker, and torswitch's ring predicting every key's server; then
the routing benchmark.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run the end-to-end demo on real peers",
                                   description=__doc__)
    parser.add_argument("--keys", type=int, default=5000, help="keys to place (default 5000)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torswitch.peers import placement_check_demo

    return placement_check_demo(args.keys)
