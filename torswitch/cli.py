"""The `torswitch` command line: builds the parser from one module per command group.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its subcommand(s) and
sets `func` (taking the parsed namespace, returning an exit status) on each parser. Modules are
imported lazily by name so that `torswitch --help` does not pull in gRPC, pyarrow or Hadoop code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from torswitch import __version__
from torswitch.errors import TorswitchError

COMMAND_MODULES: tuple[str, ...] = (
    "torswitch.commands.route",
    "torswitch.commands.bench",
    "torswitch.commands.demo",
    "torswitch.commands.testbed",
    "torswitch.commands.hdfs",
    "torswitch.commands.dataplane",
    "torswitch.commands.engine",
    "torswitch.commands.cache",
    "torswitch.commands.run",
    "torswitch.commands.directory",
    "torswitch.commands.hint",
    "torswitch.commands.spark",
    "torswitch.commands.memswitch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torswitch",
        description="A Hadoop-aware top-of-rack caching switch.",
    )
    parser.add_argument("--version", action="version", version=f"torswitch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except TorswitchError as exc:
        print(f"torswitch {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
