"""`torswitch bench iterative`: an iterative job through the ToR, without and with its cache.

The README's main command (`make demo`). On its own testbed instance (or one given with
--instance) it loads a Parquet points dataset into HDFS, then runs the same k-means job
(`torswitch.jobs`: pyarrow through hdfs-native, or Spark) from compute host c1 for K iterations
in three configurations, in one run:

  (a) no ToR cache: the block engine and its interception are off (plain switching);
  (b) ToR cache: the engine on, its cache evicted first, so iteration 1 is cold;
  (c) ToR cache + scheduler hints: evicted, then ``torswitch hint DIR --rack /rack-a --wait``
      from c1 through the block directory before iteration 1 (the prefetch time is reported
      on its own, as hint_s, and is not part of iteration 1).

Per iteration it measures, between the job's iterations (the job waits meanwhile):

  - wall time of the iteration, as the job itself timed it;
  - uplink bytes: ``ip -s link`` counters of the ToR's uplink port (both directions; rx is
    what came down from the core), the same counter for all three configurations;
  - cache hits, misses and bytes from cache / from upstream (the cache agent's Stats, asked
    from c1), and the byte hit ratio; none for (a);
  - DataNode bytes read and read ops (DataNodeActivity JMX of every DataNode, settled).

Summary: speedups of (b) and (c) over (a) for iteration 1 and for iterations 2..K (ratio of
summed times), uplink savings (1 - bytes / bytes of (a)). Targets, reported (never asserted):
iterations 2..K of (b) >= 3x faster than (a) with >= 95 % fewer uplink bytes; iteration 1 of
(c) >= 2x faster than iteration 1 of (a). All configurations start from the same centres, so
their final centres must agree: `centres_agree` checks that the cache served the right bytes.

Results go to ``run/bench/iterative-<timestamp>/`` (or --results-dir): result.json (figures,
targets, every iteration), iterations.parquet (one row per configuration and iteration) and
iterative.png (time and uplink bytes per iteration per configuration).

--hadoop-conf DIR runs against an existing cluster instead: the job runs in this host's own
network namespace with HADOOP_CONF_DIR=DIR. The bench cannot switch a real ToR's engine off or
read its uplink port, so it measures what it can reach: with --agent HOST:PORT (the rack ToR's
cache agent) configuration (b) (evicted first; uplink bytes = the engine's bytes from
upstream, hit ratios from its Stats), and with --directory HOST:PORT also (c); without
--agent, one configuration as the cluster is ("cluster", wall time only). Run the same
command from a rack without torswitch for the (a) baseline. DataNode JMX is not read there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from torswitch.bench.report import Report, Target

NAME = "iterative"
HELP = "iterative k-means job from c1: no ToR cache, ToR cache, ToR cache + hints"

CONFIGS: dict[str, str] = {"a": "no cache", "b": "ToR cache", "c": "cache + hints"}
DEFAULT_INSTANCE = "itb"
DEFAULT_DATASET_MB = 256
DEFAULT_ITERATIONS = 5
# The bench's default uplink: what one compute host gets of an oversubscribed rack uplink,
# scaled to this machine (a 2-core host whose own reads top out near a few hundred MB/s).
DEFAULT_UPLINK = "250mbit"
FILE_MB = 32  # Parquet files of about this size, each over several 8 MiB blocks
BLOCK_SIZE = 8 << 20
CLUSTERS = 8
DATASET_DIR = "/bench/iterative"
CLIENT = "c1"
WORKER_START_TIMEOUT_S = 180.0
ITERATION_TIMEOUT_S = 1800.0
CENTRE_TOLERANCE = 1e-9
TARGET_B_SPEEDUP = 3.0
TARGET_B_UPLINK_SAVING = 0.95
TARGET_C_SPEEDUP_ITER1 = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from torswitch.jobs import ENGINES

    parser.add_argument("--engine", choices=ENGINES, default="pyarrow",
                        help="job engine (default pyarrow; spark needs pyspark and Java 17)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, metavar="K",
                        help=f"iterations per configuration (default {DEFAULT_ITERATIONS})")
    parser.add_argument("--dataset-mb", type=int, default=DEFAULT_DATASET_MB, metavar="N",
                        help=f"Parquet dataset size in MiB (default {DEFAULT_DATASET_MB})")
    parser.add_argument("--uplink-rate", default=None, metavar="R",
                        help=f"rack uplink rate, tc units (default {DEFAULT_UPLINK} on the "
                        "bench's own testbed; a given --instance keeps its rate unless set)")
    parser.add_argument("--tor", choices=("kernel", "dpdk"), default="kernel",
                        help="ToR mode of the bench's own testbed (default kernel: on this "
                        "VM the DPDK ToR's af_packet ports copy every frame through the "
                        "kernel twice, which caps a cache hit at about 110 MB/s and measures "
                        "the virtual ports rather than the cache)")
    parser.add_argument("--instance", default=None, metavar="NAME",
                        help="use this running testbed instance instead of bringing up "
                        f"'{DEFAULT_INSTANCE}' (left running afterwards)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the bench's own testbed running afterwards")
    parser.add_argument("--configs", default="abc", metavar="LIST",
                        help="configurations to run, a subset of 'abc' (default abc)")
    parser.add_argument("--clusters", type=int, default=CLUSTERS, metavar="N",
                        help=f"k of k-means (default {CLUSTERS})")
    parser.add_argument("--results-dir", default=None, metavar="DIR",
                        help="where to write the results (default run/bench/iterative-<time>)")
    parser.add_argument("--hadoop-conf", default=None, metavar="DIR",
                        help="run against an existing cluster with this Hadoop conf dir")
    parser.add_argument("--agent", default=None, metavar="HOST:PORT",
                        help="with --hadoop-conf: the rack ToR's cache agent")
    parser.add_argument("--directory", default=None, metavar="HOST:PORT",
                        help="with --hadoop-conf: the block directory, for (c)")
    parser.add_argument("--rack", default="/rack-a",
                        help="the rack hints target (default /rack-a)")


# ---- pure parts: records, summary, result files -----------------------------------------------


@dataclass
class Counters:
    """What the bench reads around an iteration; None where a counter cannot be read."""

    uplink_rx_bytes: int | None = None
    uplink_tx_bytes: int | None = None
    datanode_bytes: int | None = None
    datanode_ops: int | None = None
    hits: int | None = None
    misses: int | None = None
    bytes_from_cache: int | None = None
    bytes_from_upstream: int | None = None


def _delta(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def iteration_record(config: str, iteration: int, seconds: float, before: Counters,
                     after: Counters, uplink_from_engine: bool = False) -> dict[str, Any]:
    """One row of the results: the deltas of every counter over one iteration.

    `uplink_bytes` is rx + tx of the uplink port; with `uplink_from_engine` (an existing
    cluster, no port counters) it is the engine's bytes from upstream instead."""
    rec: dict[str, Any] = {"config": config, "label": CONFIGS.get(config, config),
                           "iteration": iteration, "seconds": seconds}
    for name in Counters.__dataclass_fields__:
        rec[name] = _delta(getattr(after, name), getattr(before, name))
    rx, tx = rec["uplink_rx_bytes"], rec["uplink_tx_bytes"]
    rec["uplink_bytes"] = rx + tx if rx is not None and tx is not None else None
    if uplink_from_engine:
        rec["uplink_bytes"] = rec["bytes_from_upstream"]
    cached, upstream = rec["bytes_from_cache"], rec["bytes_from_upstream"]
    rec["byte_hit_ratio"] = (cached / (cached + upstream)
                             if cached is not None and upstream is not None and cached + upstream
                             else None)
    hits, misses = rec["hits"], rec["misses"]
    rec["op_hit_ratio"] = (hits / (hits + misses)
                           if hits is not None and misses is not None and hits + misses else None)
    return rec


def _sum(values: Sequence[Any]) -> Any:
    return None if not values or any(v is None for v in values) else sum(values)


def _ratio(num: Any, den: Any) -> float | None:
    return None if num is None or den is None or den == 0 else num / den


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The summary figures of a run's iteration records (keys carry their units).

    Per configuration X: X_iter1_s, X_iters2_k_s (sum), X_iters2_k_mean_s, X_iter1_uplink_bytes,
    X_iters2_k_uplink_bytes, X_iter1/iters2_k_datanode_bytes, X_iters2_k_byte_hit_ratio.
    Against (a), for X in b, c: X_over_a_iter1_speedup_ratio, X_over_a_iters2_k_speedup_ratio
    (summed times), X_vs_a_iter1/iters2_k_uplink_saving_ratio (1 - bytes / bytes of a).
    Figures that cannot be computed (one iteration, a missing counter) are None."""
    out: dict[str, Any] = {}
    by: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(records, key=lambda r: (r["config"], r["iteration"])):
        by.setdefault(rec["config"], []).append(rec)
    for cfg, recs in by.items():
        first, rest = recs[0], recs[1:]
        out[f"{cfg}_iter1_s"] = first["seconds"]
        out[f"{cfg}_iters2_k_s"] = _sum([r["seconds"] for r in rest])
        out[f"{cfg}_iters2_k_mean_s"] = (out[f"{cfg}_iters2_k_s"] / len(rest)) if rest else None
        for field in ("uplink_bytes", "datanode_bytes"):
            out[f"{cfg}_iter1_{field}"] = first[field]
            out[f"{cfg}_iters2_k_{field}"] = _sum([r[field] for r in rest])
        cached = _sum([r["bytes_from_cache"] for r in rest])
        upstream = _sum([r["bytes_from_upstream"] for r in rest])
        out[f"{cfg}_iter1_byte_hit_ratio"] = first["byte_hit_ratio"]
        out[f"{cfg}_iters2_k_byte_hit_ratio"] = _ratio(
            cached, None if cached is None or upstream is None else cached + upstream)
    if "a" in by:
        for cfg in ("b", "c"):
            if cfg not in by:
                continue
            out[f"{cfg}_over_a_iter1_speedup_ratio"] = _ratio(out["a_iter1_s"],
                                                              out[f"{cfg}_iter1_s"])
            out[f"{cfg}_over_a_iters2_k_speedup_ratio"] = _ratio(out["a_iters2_k_s"],
                                                                 out[f"{cfg}_iters2_k_s"])
            for part in ("iter1", "iters2_k"):
                share = _ratio(out[f"{cfg}_{part}_uplink_bytes"], out[f"a_{part}_uplink_bytes"])
                out[f"{cfg}_vs_a_{part}_uplink_saving_ratio"] = (
                    None if share is None else 1.0 - share)
    return out


def centres_agree(final: dict[str, list[list[float]]], tol: float = CENTRE_TOLERANCE) -> bool:
    """Whether every configuration ended with the same centres (within `tol`)."""
    runs = list(final.values())
    return all(
        len(c) == len(runs[0]) and all(abs(x - y) <= tol for p, q in zip(c, runs[0], strict=True)
                                       for x, y in zip(p, q, strict=True))
        for c in runs[1:]
    )


def targets() -> list[Target]:
    return [
        Target("b_over_a_iters2_k_speedup_ratio", ">=", TARGET_B_SPEEDUP),
        Target("b_vs_a_iters2_k_uplink_saving_ratio", ">=", TARGET_B_UPLINK_SAVING),
        Target("c_over_a_iter1_speedup_ratio", ">=", TARGET_C_SPEEDUP_ITER1),
    ]


def _mib(value: Any) -> Any:
    return "-" if value is None else round(value / (1 << 20), 1)


def _pct(value: Any) -> Any:
    return "-" if value is None else f"{100 * value:.1f}%"


def make_report(records: Sequence[dict[str, Any]], figures: dict[str, Any]) -> Report:
    """The printable report: one row per configuration and iteration, then the summary."""
    report = Report(NAME, dict(figures), columns=[
        "config", "iter", "seconds", "uplink MiB", "byte hit", "op hit", "DN MiB read"])
    for r in records:
        report.rows.append([f"({r['config']}) {r['label']}", r["iteration"],
                            round(r["seconds"], 2), _mib(r["uplink_bytes"]),
                            _pct(r["byte_hit_ratio"]), _pct(r["op_hit_ratio"]),
                            _mib(r["datanode_bytes"])])
    report.targets = targets()
    notes = ["", "summary (speedup = time of (a) / time; saving = 1 - uplink bytes / those of (a))"]
    for cfg in ("b", "c"):
        if f"{cfg}_over_a_iter1_speedup_ratio" not in figures:
            continue
        s1 = figures[f"{cfg}_over_a_iter1_speedup_ratio"]
        sk = figures[f"{cfg}_over_a_iters2_k_speedup_ratio"]
        u1 = figures[f"{cfg}_vs_a_iter1_uplink_saving_ratio"]
        uk = figures[f"{cfg}_vs_a_iters2_k_uplink_saving_ratio"]
        notes.append(f"  ({cfg}) {CONFIGS[cfg]:14s} iteration 1: {_x(s1)} faster, uplink "
                     f"{_pct(u1)} saved; iterations 2..K: {_x(sk)} faster, uplink {_pct(uk)} "
                     "saved")
    if figures.get("c_hint_s") is not None:
        notes.append(f"  (c) hint + prefetch before iteration 1: {figures['c_hint_s']:.2f} s, "
                     f"{_mib(figures.get('c_hint_uplink_bytes'))} MiB over the uplink "
                     "(not counted in iteration 1)")
    report.notes = notes
    return report


def _x(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def write_results(directory: Path, records: Sequence[dict[str, Any]], figures: dict[str, Any],
                  report: Report, meta: dict[str, Any]) -> dict[str, Path]:
    """result.json, iterations.parquet and iterative.png in `directory` (created); returns
    their paths by kind."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "result.json", "parquet": directory / "iterations.parquet",
             "png": directory / "iterative.png"}
    doc = {"figures": figures, "targets_met": report.target_results(), "meta": meta,
           "iterations": list(records)}
    paths["json"].write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    rows = [{k: v for k, v in r.items() if k != "centres"} for r in records]
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"])
    plot(records, paths["png"], title=meta.get("title", "torswitch bench iterative"))
    return paths


def plot(records: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Two panels: seconds per iteration and uplink MiB per iteration, one line per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_u) = plt.subplots(1, 2, figsize=(11, 4))
    for cfg in sorted({r["config"] for r in records}):
        recs = sorted((r for r in records if r["config"] == cfg), key=lambda r: r["iteration"])
        xs = [r["iteration"] for r in recs]
        label = f"({cfg}) {CONFIGS.get(cfg, cfg)}"
        ax_t.plot(xs, [r["seconds"] for r in recs], marker="o", label=label)
        ups = [r["uplink_bytes"] for r in recs]
        if all(u is not None for u in ups):
            ax_u.plot(xs, [u / (1 << 20) for u in ups], marker="o", label=label)
    ax_t.set(xlabel="iteration", ylabel="seconds", title="time per iteration")
    ax_u.set(xlabel="iteration", ylabel="MiB", title="uplink bytes per iteration")
    for ax in (ax_t, ax_u):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dataset_layout(dataset_mb: int) -> tuple[int, int]:
    """(files, bytes per file) for a dataset of `dataset_mb` MiB: files of about FILE_MB MiB,
    at least two."""
    if dataset_mb < 1:
        raise ValueError("--dataset-mb must be at least 1")
    files = max(2, math.ceil(dataset_mb / FILE_MB))
    return files, (dataset_mb << 20) // files


# ---- the job worker ---------------------------------------------------------------------------


class Worker:
    """A `torswitch.jobs.worker` process; `iterate()` runs one iteration and returns its line."""

    def __init__(self, argv: list[str], env: dict[str, str], log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log)
        self.ready = self._line(WORKER_START_TIMEOUT_S)

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"the job worker said nothing for {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the job worker exited (status {self.proc.wait()})")
        msg: dict[str, Any] = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"the job failed: {msg['error']}")
        return msg

    def iterate(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"run\n")
        self.proc.stdin.flush()
        return self._line(ITERATION_TIMEOUT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- where the job runs: the testbed, or an existing cluster ----------------------------------


class TestbedSide:
    """The bench on a testbed instance: c1 runs the job; counters from tor-a's uplink port, the
    cache agent and the DataNodes' JMX."""

    __test__ = False

    def __init__(self, tb: Any) -> None:
        from torswitch.testbed import topology, tor

        self.tb = tb
        self.agent = f"{topology.TOR_ADDRESS}:{tor.AGENT_PORT}"
        self.uplink_from_engine = False
        self.labels: dict[str, str] = {}

    def _torswitch(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
        proc: subprocess.CompletedProcess[bytes] = self.tb.run(
            CLIENT, [sys.executable, "-m", "torswitch", *args], timeout=timeout)
        return proc

    def worker(self, engine: str, path: str, k: int, log: IO[bytes]) -> Worker:
        argv = self.tb.argv(CLIENT, [sys.executable, "-m", "torswitch.jobs.worker", "--engine",
                                     engine, "--path", path, "--k", str(k)])
        return Worker(argv, self.tb.client_env(CLIENT), log)

    def uplink(self) -> tuple[int, int]:
        from torswitch.testbed import topology

        ns = self.tb.namespace(topology.TOR)
        out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev",
                              topology.UPLINK_TOR_PORT], check=True, capture_output=True).stdout
        stats = json.loads(out)[0]["stats64"]
        return int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"])

    def counters(self, engine_on: bool) -> Counters:
        rx, tx = self.uplink()
        dns = self.tb.settled_datanode_reads(quiet_s=2.0, timeout=60.0)
        c = Counters(uplink_rx_bytes=rx, uplink_tx_bytes=tx,
                     datanode_bytes=sum(d["BytesRead"] for d in dns.values()),
                     datanode_ops=sum(d["ReadBlockOpNumOps"] for d in dns.values()))
        if engine_on:
            stats = json.loads(self._torswitch("cache", "--agent", self.agent, "stats",
                                               "--json").stdout)
            c.hits, c.misses = int(stats["hits"]), int(stats["misses"])
            c.bytes_from_cache = int(stats["bytes_from_cache"])
            c.bytes_from_upstream = int(stats["bytes_from_upstream"])
        # Uplink counters after the settling wait too: nothing moves while the job waits.
        return c

    @contextlib.contextmanager
    def engine(self, on: bool) -> Iterator[None]:
        if on:
            if not self.tb.engine_status().get("supervisor_running"):
                self.tb.start_engine()
            self.tb.wait_engine()
            yield
        else:
            with self.tb.without_engine():
                yield

    def evict(self) -> None:
        self._torswitch("cache", "--agent", self.agent, "evict", "--all")

    def hint(self, path: str, rack: str) -> None:
        proc = self.tb.run(CLIENT, [sys.executable, "-m", "torswitch", "hint", path, "--rack",
                                    rack, "--wait", "--job-id", "bench-iterative"],
                           check=False, capture=False, timeout=3600.0)
        if proc.returncode != 0:
            raise RuntimeError(f"torswitch hint {path} failed (exit {proc.returncode}); is the "
                               "testbed's block directory running (testbed status)?")


class ClusterSide:
    """The bench against an existing cluster (--hadoop-conf): the job runs here; counters from
    the ToR's agent if one is given."""

    def __init__(self, conf_dir: str, agent: str | None, directory: str | None) -> None:
        self.env = dict(os.environ, HADOOP_CONF_DIR=str(Path(conf_dir).resolve()))
        if directory:
            self.env["TORSWITCH_DIRECTORY"] = directory
        self.agent = agent
        self.uplink_from_engine = True
        self.labels = {} if agent else {"a": "cluster as is"}

    def _torswitch(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "torswitch", *args], env=self.env,
                              check=True, capture_output=True, timeout=120)

    def worker(self, engine: str, path: str, k: int, log: IO[bytes]) -> Worker:
        argv = [sys.executable, "-m", "torswitch.jobs.worker", "--engine", engine, "--path",
                path, "--k", str(k)]
        return Worker(argv, self.env, log)

    def counters(self, engine_on: bool) -> Counters:
        if not (engine_on and self.agent):
            return Counters()
        stats = json.loads(self._torswitch("cache", "--agent", self.agent, "stats",
                                           "--json").stdout)
        return Counters(hits=int(stats["hits"]), misses=int(stats["misses"]),
                        bytes_from_cache=int(stats["bytes_from_cache"]),
                        bytes_from_upstream=int(stats["bytes_from_upstream"]))

    @contextlib.contextmanager
    def engine(self, on: bool) -> Iterator[None]:
        yield

    def evict(self) -> None:
        if self.agent:
            self._torswitch("cache", "--agent", self.agent, "evict", "--all")

    def hint(self, path: str, rack: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "torswitch", "hint", path, "--rack", rack,
                               "--wait", "--job-id", "bench-iterative"], env=self.env,
                              check=False, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"torswitch hint {path} failed (exit {proc.returncode})")


# ---- the run ----------------------------------------------------------------------------------


def run_config(side: Any, cfg: str, args: argparse.Namespace, path: str, log: IO[bytes],
               bar: Any, figures: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Run configuration `cfg` for K iterations; returns its records and final centres."""
    engine_on = cfg != "a"
    records: list[dict[str, Any]] = []
    with side.engine(engine_on):
        if engine_on:
            side.evict()
        before = side.counters(engine_on)
        if cfg == "c":
            bar.set_description(f"({cfg}) hint + prefetch")
            t0 = time.perf_counter()
            side.hint(path, args.rack)
            figures["c_hint_s"] = time.perf_counter() - t0
            after = side.counters(engine_on)
            hint = iteration_record(cfg, 0, figures["c_hint_s"], before, after,
                                    side.uplink_from_engine)
            figures["c_hint_uplink_bytes"] = hint["uplink_bytes"]
            figures["c_hint_datanode_bytes"] = hint["datanode_bytes"]
            before = after
        bar.set_description(f"({cfg}) start {args.engine} job")
        worker = side.worker(args.engine, path, args.clusters, log)
        try:
            figures[f"{cfg}_job_setup_s"] = worker.ready.get("setup_s")
            msg: dict[str, Any] = {}
            for i in range(1, args.iterations + 1):
                bar.set_description(f"({cfg}) {CONFIGS[cfg]}, iteration {i}")
                msg = worker.iterate()
                after = side.counters(engine_on)
                rec = iteration_record(cfg, i, msg["seconds"], before, after,
                                       side.uplink_from_engine)
                rec["label"] = side.labels.get(cfg, rec["label"])
                rec["rows"] = msg["rows"]
                rec["sse"] = msg["sse"]
                records.append(rec)
                before = after
                bar.update()
        finally:
            worker.close()
    return records, msg.get("centres", [])


def _results_dir(args: argparse.Namespace) -> Path:
    if args.results_dir:
        return Path(args.results_dir)
    from torswitch.testbed.state import repo_root

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return repo_root() / "run" / "bench" / f"iterative-{stamp}"


def _load_dataset(tb: Any, path: str, dataset_mb: int) -> tuple[int, int]:
    """Write the dataset unless the same one is there already; returns (files, bytes)."""
    from torswitch.testbed import dataset

    files, size = dataset_layout(dataset_mb)
    spec = dataset.LoadSpec(directory=path, parquet_files=files, parquet_size=size,
                            overwrite=True)
    listing = tb.python(CLIENT, "import json,sys\nfrom hdfs_native import Client\n"
                        "c=Client()\ntry:\n print(json.dumps(sorted((s.path, s.length) for s in "
                        "c.list_status(sys.argv[1]))))\nexcept FileNotFoundError:\n print('[]')",
                        path, check=True).stdout
    present = [name for name, _ in json.loads(listing)]
    want = [posixpath_basename(f.path) for f in spec.files()]
    if sorted(posixpath_basename(p) for p in present) != sorted(want):
        status = dataset.load(tb, CLIENT, spec)
        if status != 0:
            raise RuntimeError(f"loading the dataset into {path} failed (exit {status})")
    sizes = json.loads(tb.python(CLIENT, "import json,sys\nfrom hdfs_native import Client\n"
                                 "print(json.dumps(sum(s.length for s in "
                                 "Client().list_status(sys.argv[1]))))", path).stdout)
    return files, int(sizes)


def posixpath_basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


@contextlib.contextmanager
def _testbed(args: argparse.Namespace, rate_bps: int | None, cache_bytes: int
             ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The testbed to run on: the given --instance (re-shaped only if --uplink-rate was set),
    or the bench's own instance, brought up now and down afterwards unless --keep."""
    from torswitch.testbed import lifecycle
    from torswitch.testbed.handle import Testbed
    from torswitch.testbed.units import parse_rate

    if args.instance:
        tb = Testbed.attach(args.instance)
        tb.check_up()
        meta = {"instance": args.instance, "own_instance": False}
        if rate_bps is None:
            yield tb, meta
        else:
            with tb.uplink(rate_bps=rate_bps):
                yield tb, meta
        return
    instance = DEFAULT_INSTANCE
    lifecycle.down(instance)  # a previous run's leftovers, if any
    report = lifecycle.up(instance, lifecycle.UpOptions(
        rate_bps=rate_bps or parse_rate(DEFAULT_UPLINK), block_size=BLOCK_SIZE, cache_bytes=cache_bytes,
        tor=args.tor))
    for warning in report.warnings:
        print(f"testbed: {warning}", file=sys.stderr)
    try:
        yield Testbed.attach(instance), {"instance": instance, "own_instance": True, "tor": args.tor,
                                         "testbed_up_s": round(report.seconds, 1),
                                         "warnings": report.warnings}
    finally:
        if not args.keep:
            lifecycle.down(instance)


def run(args: argparse.Namespace) -> Report:
    from tqdm import tqdm

    from torswitch.testbed.units import parse_rate

    configs = [c for c in "abc" if c in args.configs]
    if not configs or set(args.configs) - set("abc"):
        raise ValueError("--configs must be a non-empty subset of 'abc'")
    if args.iterations < 1:
        raise ValueError("--iterations must be at least 1")
    out_dir = _results_dir(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"engine": args.engine, "iterations": args.iterations,
                               "clusters": args.clusters}
    records: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    meta: dict[str, Any] = {"argv": sys.argv[1:], "started_unix_s": time.time()}
    with open(out_dir / "job.log", "ab") as log, contextlib.ExitStack() as stack:
        if args.hadoop_conf:
            side: Any = ClusterSide(args.hadoop_conf, args.agent, args.directory)
            if not args.agent:
                configs = ["a"]  # as the cluster is; no cache control
            elif not args.directory:
                configs = [c for c in configs if c == "b"]
            else:
                configs = [c for c in configs if c in "bc"]
            path = DATASET_DIR
            meta["hadoop_conf"] = args.hadoop_conf
            figures["uplink_counter"] = "engine bytes_from_upstream" if args.agent else "none"
        else:
            rate = parse_rate(args.uplink_rate) if args.uplink_rate else None
            if rate is None and not args.instance:
                rate = parse_rate(DEFAULT_UPLINK)
            files, size = dataset_layout(args.dataset_mb)
            cache_bytes = max(1 << 30, 2 * files * size)
            tb, tb_meta = stack.enter_context(_testbed(args, rate, cache_bytes))
            meta.update(tb_meta)
            side = TestbedSide(tb)
            path = f"{DATASET_DIR}-{args.dataset_mb}mb"
            nfiles, nbytes = _load_dataset(tb, path, args.dataset_mb)
            figures.update(dataset_files=nfiles, dataset_bytes=nbytes,
                           uplink_rate_bps=tb.shaping.rate_bps if rate is None else rate,
                           block_size_bytes=int(tb.state.options["block_size"]),
                           uplink_counter="ip -s link, tor-a uplink port (rx + tx)")
            figures["uplink_shaper"] = tb.state.options.get("shaper")
        figures["dataset_path"] = path
        with tqdm(total=len(configs) * args.iterations, unit="iter", desc="iterative",
                  disable=None) as bar:
            for cfg in configs:
                recs, centres = run_config(side, cfg, args, path, log, bar, figures)
                records += recs
                final[cfg] = centres
    figures.update(summarize(records))
    figures["centres_agree"] = centres_agree(final) if len(final) > 1 else None
    report = make_report(records, figures)
    if figures["centres_agree"] is False:
        report.notes.append("WARNING: the configurations ended with different centres")
    meta["title"] = (f"k-means ({args.engine}), {args.dataset_mb} MiB, uplink "
                     f"{figures.get('uplink_rate_bps', 0) / 1e6:g} Mbit/s")
    paths = write_results(out_dir, records, figures, report, meta)
    figures["results_dir"] = str(out_dir)
    report.figures["results_dir"] = str(out_dir)
    report.notes.append(f"results: {paths['json']}, {paths['parquet'].name}, "
                        f"{paths['png'].name}")
    return report
