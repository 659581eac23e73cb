"""A job worker: one iteration per command, answered with one JSON line.

Run inside a compute host's namespace (the benchmark starts it with ``ip netns exec``)::

    python -m torswitch.jobs.worker --engine pyarrow --path /bench/iterative --k 8

Protocol, one line each way. Once set up, the worker prints
``{"ready": true, "setup_s": ...}``. Then for every ``run`` line on stdin it runs one
iteration and prints ``{"iteration": n, "seconds": ..., "rows": ..., "sse": ...,
"centres": [[...], ...]}``; a failed iteration prints ``{"error": "..."}`` instead. ``quit``
or end of input stops it. Timing covers the iteration only (not Python, JVM or SparkSession
start-up), and the caller can read counters between iterations while the worker waits.
Everything else the engines print goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from torswitch.jobs import ENGINES


def make_job(engine: str, path: str, k: int, seed: int) -> Any:
    """The job object of `engine` (``iterate()``, ``centres``, ``rows``, ``close()``)."""
    if engine == "pyarrow":
        from torswitch.jobs.arrow import ArrowKMeans

        return ArrowKMeans(path, k=k, seed=seed)
    if engine == "spark":
        from torswitch.jobs.spark import SparkKMeans

        return SparkKMeans(path, k=k, seed=seed)
    raise ValueError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")


def serve(job: Any, stdin: TextIO, stdout: TextIO, setup_s: float) -> int:
    """The command loop; returns the exit status."""

    def say(obj: dict[str, Any]) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    say({"ready": True, "setup_s": setup_s})
    n = 0
    for line in stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "run":
            say({"error": f"unknown command {command!r} (run, quit)"})
            continue
        n += 1
        t0 = time.perf_counter()
        try:
            total = job.iterate()
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the caller
            say({"error": f"{type(exc).__name__}: {exc}", "iteration": n})
            continue
        say({
            "iteration": n,
            "seconds": time.perf_counter() - t0,
            "rows": int(total.counts.sum()),
            "sse": total.sse,
            "centres": job.centres.tolist(),
        })
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torswitch.jobs.worker")
    parser.add_argument("--engine", choices=ENGINES, default="pyarrow")
    parser.add_argument("--path", required=True, help="HDFS directory of *.parquet files")
    parser.add_argument("--k", type=int, default=8, help="clusters (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial centres")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    # Engines (Spark's JVM, py4j) may write to file descriptor 1: keep a private copy of it
    # for the protocol and point descriptor 1 (and sys.stdout) at stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    job = make_job(args.engine, args.path, args.k, args.seed)
    try:
        return serve(job, sys.stdin, protocol, time.perf_counter() - t0)
    finally:
        job.close()


if __name__ == "__main__":
    sys.exit(main())
