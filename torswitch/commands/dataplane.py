"""`torswitch dataplane status|counters`: look at a running data plane (tsw-dataplane).

Both talk to the process's control socket (--control, or $TSW_DATAPLANE_CONTROL); `counters`
can instead read the stats file the process rewrites (--stats-file), which also works after it
stopped (the file then holds the final counters).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_CONTROL = "/run/torswitch/dataplane.sock"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dataplane", help="status and counters of a running DPDK data plane",
        description=__doc__)
    sub = parser.add_subparsers(dest="dataplane_command", metavar="COMMAND")

    status = sub.add_parser("status", help="mode, ports and steering state")
    _control_option(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=run_status)

    counters = sub.add_parser("counters", help="per-port and global counters")
    _control_option(counters)
    counters.add_argument("--stats-file", type=Path, metavar="PATH",
                          help="read this stats file instead of asking the control socket")
    fmt = counters.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object")
    fmt.add_argument("--prometheus", action="store_true",
                     help="print the Prometheus text exposition as the data plane writes it")
    counters.add_argument("--all", action="store_true",
                          help="also list counters that are zero on every port")
    counters.set_defaults(func=run_counters)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _control_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control", metavar="PATH",
        default=os.environ.get("TSW_DATAPLANE_CONTROL", DEFAULT_CONTROL),
        help="the data plane's control socket (default $TSW_DATAPLANE_CONTROL or "
             f"{DEFAULT_CONTROL})")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for a reply (default 2)")


def _client(args: argparse.Namespace) -> Any:
    from torswitch.dataplane import ControlClient, DataplaneError

    if not os.path.exists(args.control):
        raise DataplaneError(f"no control socket at {args.control} (is the data plane running?"
                             " pass --control)")
    return ControlClient(args.control, timeout=args.timeout)


def run_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status()
    if args.json:
        print(json.dumps(status, sort_keys=True))
    else:
        width = max(map(len, status), default=0)
        for key, value in status.items():
            print(f"{key.ljust(width)}  {value}")
    return 0


def run_counters(args: argparse.Namespace) -> int:
    from torswitch.dataplane import DataplaneError, parse_counters

    if args.stats_file is not None:
        try:
            text = args.stats_file.read_text()
        except OSError as exc:
            raise DataplaneError(f"{args.stats_file}: {exc.strerror}") from None
    else:
        with _client(args) as client:
            text = client.request("counters")
    if args.prometheus:
        print(text, end="")
        return 0
    counters = parse_counters(text)
    if args.json:
        print(json.dumps({"ports": counters.ports, "totals": counters.totals}, sort_keys=True))
        return 0
    names = sorted({n for c in counters.ports.values() for n in c})
    if not args.all:
        names = [n for n in names if counters.sum(n)]
    ports = list(counters.ports)
    cells = [["counter", *ports]] + [[n, *(str(counters.ports[p].get(n, 0)) for p in ports)]
                                     for n in names]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for i, row in enumerate(cells):
        print("  ".join([row[0].ljust(widths[0])]
                        + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]))
        if i == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    totals = {k: v for k, v in sorted(counters.totals.items()) if v or args.all}
    if totals:
        print()
        width = max(map(len, totals))
        for key, value in totals.items():
            print(f"{key.ljust(width)}  {value}")
    return 0
