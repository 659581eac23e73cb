"""`torswitch bench NAME [--json]`: run one benchmark, print a table or one JSON object."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from torswitch.bench import BENCHMARKS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench", help="run a benchmark and print its figures", description=__doc__
    )
    names = parser.add_subparsers(dest="bench", metavar="NAME")
    for name in BENCHMARKS:
        module = importlib.import_module(f"torswitch.bench.{name}")
        sub = names.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        module.add_arguments(sub)
        sub.set_defaults(func=lambda args, m=module: _run(m, args))
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _run(module: Any, args: argparse.Namespace) -> int:
    report = module.run(args)
    print(report.to_json() if args.json else report.to_table())
    return 0
