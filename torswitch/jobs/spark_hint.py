"""A worked scheduler integration: hint a Spark job's input to the block directory, then run it.

The wrapper does what a scheduler with ToR caches would do before launching a job:

    hint      send the job's input paths (hdfs:// URIs or absolute paths, globs allowed) to
              the block directory (torswitch.directory) for the racks its tasks will run on:
              --rack, --host, or by default this host (the address it reaches the directory
              from), since a local-mode job runs its tasks here
    wait      follow the plan until every block is in the ToR caches (--no-wait: start at once
              and let the prefetch race the job; a block still missing is an ordinary miss)
    run       the PySpark script, in this process with pyspark, with TORSWITCH_PLAN_ID in its
              environment and --master/--conf handed to Spark (PYSPARK_SUBMIT_ARGS)
    release   after the job, CancelHint(keep_cached=True): the pins go, the blocks stay cached
              for whoever reads them next (--keep-pinned: leave them pinned until the TTL)

Fail-open, like the cache itself: a directory that cannot be reached, a refused hint or a plan
that does not become ready is reported on stderr and the job runs anyway, reading from the
DataNodes; `--strict` makes those an error (exit 1) instead. With --all-or-nothing a hint that
does not fit is refused as a whole rather than half-filling the caches.

    torswitch spark-submit-hinted --input hdfs://nn:8020/data/points --rack /rack-a \\
        job.py ARGS...

Python callers use `hinted` (a context manager around their own Spark code) or `run_script`.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PLAN_ENV = "TORSWITCH_PLAN_ID"
DIRECTORY_ENV = "TORSWITCH_DIRECTORY"
DEFAULT_DIRECTORY = "127.0.0.1:19870"


@dataclass
class HintOutcome:
    """What the hint step did. `plan_id` is "" when no plan exists (refused, unreachable).

    `ready`: every block was ready before the job started. `waited_s`: seconds from the Hint
    RPC until the plan finished (or the wait gave up); 0 without waiting. `problems`: what went
    wrong, for stderr; the job runs regardless unless the caller is strict.
    """

    plan_id: str = ""
    blocks_total: int = 0
    bytes_total: int = 0
    blocks_ready: int = 0
    bytes_ready: int = 0
    ready: bool = False
    waited_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def hdfs_path(uri: str) -> str:
    """The absolute HDFS path of `uri` (hdfs://host:port/p, hdfs:///p or /p).

    Raises ValueError for a relative path or another file system's URI.
    """
    parts = urlsplit(uri)
    if parts.scheme and parts.scheme != "hdfs":
        raise ValueError(f"{uri!r} is not on HDFS (scheme {parts.scheme!r})")
    path = parts.path if parts.scheme else uri
    if not path.startswith("/"):
        raise ValueError(f"{uri!r} is not an absolute HDFS path")
    return path


def local_address(directory: str) -> str:
    """The address this host uses to reach `directory` (host:port): the host a local-mode
    job's tasks run on, as the ToRs list their rack's hosts. No packet is sent."""
    host, _, port = directory.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))
        return str(s.getsockname()[0])


def hint_inputs(
    inputs: Sequence[str],
    *,
    directory: str | None = None,
    racks: Sequence[str] = (),
    hosts: Sequence[str] = (),
    wait: bool = True,
    wait_timeout_s: float = 600.0,
    ttl_s: float = 3600.0,
    all_or_nothing: bool = False,
    job_id: str = "",
    priority: int = 0,
    progress: Any = None,
) -> HintOutcome:
    """Hint `inputs` and, with `wait`, follow the plan until it is done or `wait_timeout_s`
    passes. Never raises for the directory's answers: they end up in `problems`.

    `progress`, if given, is called with each PlanProgress while waiting. Raises ValueError
    for inputs that are not HDFS paths.
    """
    import grpc

    from torswitch.api.torswitch.directory.v1 import directory_pb2 as pb
    from torswitch.directory import DirectoryClient

    paths = [hdfs_path(p) for p in inputs]
    if not paths:
        raise ValueError("name at least one input path")
    address = directory or os.environ.get(DIRECTORY_ENV) or DEFAULT_DIRECTORY
    out = HintOutcome()
    with DirectoryClient(address, timeout=30.0) as client:
        if not racks and not hosts:
            try:
                hosts = [local_address(address)]
            except (OSError, ValueError) as exc:
                out.problems.append(f"cannot tell this host's address: {exc}")
                return out
        started = time.monotonic()
        try:
            reply = client.hint(paths, racks=racks, hosts=hosts, job_id=job_id,
                                priority=priority, deadline_unix_s=time.time() + ttl_s,
                                all_or_nothing=all_or_nothing)
        except grpc.RpcError as exc:
            out.problems.append(f"hint refused by {address}: {exc.code().name}: {exc.details()}")
            return out
        out.plan_id = reply.plan_id
        out.blocks_total, out.bytes_total = reply.blocks_total, reply.bytes_total
        if not wait:
            return out
        last = None
        try:
            for last in client.watch(reply.plan_id, timeout=wait_timeout_s):
                if progress is not None:
                    progress(last)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                out.problems.append(f"plan {reply.plan_id} not ready after {wait_timeout_s:g} s")
            else:
                out.problems.append(f"watching plan {reply.plan_id}: {exc.code().name}: "
                                    f"{exc.details()}")
        out.waited_s = time.monotonic() - started
        if last is not None:
            out.blocks_ready, out.bytes_ready = last.blocks_ready, last.bytes_ready
            out.ready = last.state == pb.PLAN_STATE_READY
            if last.done and not out.ready:
                state = pb.PlanState.Name(last.state).removeprefix("PLAN_STATE_").lower()
                out.problems.append(f"plan {reply.plan_id} {state}: {last.blocks_ready}/"
                                    f"{last.blocks_total} blocks ready; {'; '.join(last.errors)}")
    return out


def release(plan_id: str, directory: str | None = None) -> str | None:
    """Unpin a plan's blocks and keep them cached; returns a problem text or None."""
    import grpc

    from torswitch.directory import DirectoryClient

    address = directory or os.environ.get(DIRECTORY_ENV) or DEFAULT_DIRECTORY
    try:
        with DirectoryClient(address, timeout=10.0) as client:
            client.cancel(plan_id, keep_cached=True)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None  # expired, or the directory restarted: nothing left to release
        return f"releasing plan {plan_id}: {exc.code().name}: {exc.details()}"
    return None


@contextlib.contextmanager
def hinted(
    inputs: Sequence[str], *, keep_pinned: bool = False, **hint_args: Any
) -> Iterator[HintOutcome]:
    """Context manager: hint `inputs` (keyword arguments as for `hint_inputs`), yield the
    outcome with TORSWITCH_PLAN_ID set for the body, release the plan after it.

        with hinted(["/data/points"], racks=["/rack-a"]) as outcome:
            spark.read.parquet("hdfs:///data/points").count()
    """
    outcome = hint_inputs(inputs, **hint_args)
    previous = os.environ.get(PLAN_ENV)
    if outcome.plan_id:
        os.environ[PLAN_ENV] = outcome.plan_id
    try:
        yield outcome
    finally:
        if previous is None:
            os.environ.pop(PLAN_ENV, None)
        else:
            os.environ[PLAN_ENV] = previous
        if outcome.plan_id and not keep_pinned:
            problem = release(outcome.plan_id, hint_args.get("directory"))
            if problem:
                outcome.problems.append(problem)


def submit_args(master: str | None, conf: Sequence[str]) -> str | None:
    """PYSPARK_SUBMIT_ARGS for `master` and `conf` ("key=value" each), None if neither.

    Raises ValueError for a conf entry without '='.
    """
    if not master and not conf:
        return None
    parts = []
    if master:
        parts += ["--master", master]
    for item in conf:
        if "=" not in item:
            raise ValueError(f"--conf {item!r} is not key=value")
        parts += ["--conf", item]
    return " ".join(parts + ["pyspark-shell"])


def run_script(script: str, args: Sequence[str]) -> int:
    """Run a PySpark script as `python SCRIPT ARGS` would, in this process; its exit status."""
    saved = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0
