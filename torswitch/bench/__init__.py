"""Benchmarks: one module per `torswitch bench NAME` subcommand.

Contract for a benchmark module `torswitch.bench.NAME`:
  NAME: str, HELP: str
  add_arguments(parser: argparse.ArgumentParser) -> None
  run(args: argparse.Namespace) -> torswitch.bench.report.Report
The command prints Report as a table, or with --json as one JSON object whose keys name each
figure with its unit. Every figure that is a target is a ratio against a baseline measured in the
same run, because the machines are shared and noisy.
"""

BENCHMARKS: tuple[str, ...] = (
    "routing", "codec", "dataplane", "directory", "blockengine", "iterative", "memcached",
)
