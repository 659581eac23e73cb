"""`torswitch testbed up|status|exec|load|down`: the real HDFS testbed in network namespaces.

Every subcommand takes ``--instance NAME`` (default $TORSWITCH_TESTBED, else ``tsw``); each
instance has its own namespaces (``NAME-c1``, ``NAME-dn1`` ...) and run directory
(``run/testbed-NAME/``), so several can run side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from torswitch.testbed.errors import BadValue, NotUp
from torswitch.testbed.units import (
    format_rate,
    format_size,
    parse_delay,
    parse_rate,
    parse_size,
)

# Exit status of `status` when the instance is not (fully) up; errors raised elsewhere
# exit with 1 through the CLI.
NOT_UP_STATUS = 3


def _type(parse: Any) -> Any:
    """Wrap a units parser for argparse, so bad values give argparse's usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "testbed",
        help="a real HDFS cluster in network namespaces behind an emulated ToR",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--instance",
        metavar="NAME",
        help="testbed instance (default: $TORSWITCH_TESTBED, else tsw)",
    )
    sub = parser.add_subparsers(dest="testbed_command", metavar="COMMAND")

    up = sub.add_parser(
        "up",
        parents=[common],
        help="build the topology, start NameNode and DataNodes, wait until ready",
        description="Build the namespaces, format the NameNode, start one JVM per daemon and "
        "wait for all DataNodes to be live and safe mode off; start the block directory in the "
        "NameNode's namespace (198.18.2.10:19870); then, unless --no-cache, start the ToR's "
        "block engine under `torswitch run` in tor-a, wait until it intercepts HDFS reads from "
        "rack A and has registered with the directory as tor-a of /rack-a. With --no-cache the "
        "directory runs with no ToR registered. Prints the time taken and the JVMs' memory.",
    )
    up.add_argument("--datanodes", type=int, default=3, metavar="N", help="DataNodes (default 3)")
    up.add_argument(
        "--uplink-rate",
        type=_type(parse_rate),
        default=10**9,
        metavar="R",
        help="rate of the rack-A uplink, tc units (default 1gbit)",
    )
    up.add_argument(
        "--uplink-delay",
        type=_type(parse_delay),
        default=0.2,
        metavar="D",
        help="one-way delay of the uplink (default 0.2ms; needs netem in the kernel)",
    )
    up.add_argument(
        "--block-size",
        type=_type(parse_size),
        default=8 << 20,
        metavar="B",
        help="HDFS block size (default 8m)",
    )
    up.add_argument(
        "--replication",
        type=int,
        default=1,
        metavar="N",
        help="HDFS replication (default 1, so each block has exactly one DataNode)",
    )
    up.add_argument(
        "--block-tokens",
        action="store_true",
        help="DataNodes demand block access tokens (dfs.block.access.token.enable)",
    )
    up.add_argument(
        "--tor",
        choices=["kernel", "dpdk"],
        default=None,
        help="ToR mode: dpdk = the DPDK data plane (af_packet ports, a tap holding 198.18.1.1) "
        "steering HDFS reads to the block engine, which it needs; kernel = Linux bridge, with "
        "the block engine and its nftables interception unless --no-cache (default: dpdk, or "
        "kernel with --no-cache)",
    )
    up.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="no block engine in the ToR: plain switching",
    )
    up.add_argument(
        "--cache-size",
        type=_type(parse_size),
        default=1 << 30,
        metavar="B",
        help="capacity of the engine's cache, on tmpfs under /dev/shm (default 1g)",
    )
    # Tests: a stand-in for the engine under the same supervision (shell syntax).
    up.add_argument("--engine-cmd", help=argparse.SUPPRESS)
    up.add_argument("--json", action="store_true", help="print one JSON object")
    up.set_defaults(func=_up)

    st = sub.add_parser(
        "status",
        parents=[common],
        help="hosts, daemons, live DataNodes, read counters",
        description="Show the instance; exits with status 3 when it is not (fully) up.",
    )
    st.add_argument("--json", action="store_true", help="print one JSON object")
    st.set_defaults(func=_status)

    ex = sub.add_parser(
        "exec",
        parents=[common],
        help="run a command in a host's namespace with the Hadoop client environment",
        description="Run CMD inside HOST's namespace with `hdfs` (Hadoop's own tools) and "
        "`torswitch` on PATH, HADOOP_CONF_DIR and TORSWITCH_DIRECTORY set, e.g. `torswitch "
        "testbed exec c1 -- hdfs dfs -ls /` or `torswitch testbed exec c1 -- torswitch hint "
        "/data --rack /rack-a --wait`.",
    )
    ex.add_argument("host", metavar="HOST", help="c1, c2, tor-a, core, nn, dn1 ...")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    ex.set_defaults(func=_exec)

    ld = sub.add_parser(
        "load",
        parents=[common],
        help="write a generated dataset (raw and Parquet files) from a compute host",
        description="Generate files and write them into HDFS from a compute host, through the "
        "ToR, with hdfs-native. Content is a deterministic function of --seed.",
    )
    ld.add_argument("--host", default="c1", help="compute host that writes (default c1)")
    ld.add_argument("--dir", default="/data", help="HDFS directory (default /data)")
    ld.add_argument("--raw-files", type=int, default=0, metavar="N", help="raw byte files")
    ld.add_argument(
        "--raw-size",
        type=_type(parse_size),
        default=64 << 20,
        metavar="B",
        help="size of each raw file (default 64m)",
    )
    ld.add_argument("--parquet-files", type=int, default=0, metavar="N", help="Parquet files")
    ld.add_argument(
        "--parquet-size",
        type=_type(parse_size),
        default=64 << 20,
        metavar="B",
        help="approximate size of each Parquet file (default 64m)",
    )
    ld.add_argument("--seed", type=int, default=0, help="content seed (default 0)")
    ld.add_argument("--overwrite", action="store_true", help="replace existing files")
    ld.set_defaults(func=_load)

    dn = sub.add_parser(
        "down", parents=[common], help="stop everything and remove the namespaces (idempotent)"
    )
    dn.set_defaults(func=_down)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _instance(args: argparse.Namespace) -> str:
    from torswitch.testbed.state import resolve_instance

    return resolve_instance(getattr(args, "instance", None))


def _up(args: argparse.Namespace) -> int:
    from torswitch.testbed import lifecycle
    from torswitch.testbed.state import RunDir

    instance = _instance(args)
    opts = lifecycle.UpOptions(
        datanodes=args.datanodes,
        rate_bps=args.uplink_rate,
        delay_ms=args.uplink_delay,
        block_size=args.block_size,
        replication=args.replication,
        block_tokens=args.block_tokens,
        tor=args.tor or ("dpdk" if args.cache else "kernel"),
        cache=args.cache,
        cache_bytes=args.cache_size,
        engine_cmd=args.engine_cmd,
    )
    report = lifecycle.up(instance, opts, progress=not args.json and sys.stderr.isatty())
    for warning in report.warnings:
        print(f"torswitch testbed up: warning: {warning}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "instance": instance,
                    "run_dir": str(RunDir(instance).path),
                    "seconds": round(report.seconds, 2),
                    "jvm_rss_bytes": report.jvm_rss_bytes,
                    "hosts": report.state.hosts,
                    "daemons": [d.__dict__ for d in report.state.daemons],
                    "options": report.state.options,
                    "engine": report.state.engine,
                    "directory": report.state.directory,
                    "warnings": report.warnings,
                },
                indent=2,
            )
        )
        return 0
    nn = next(h for h in report.state.hosts if h["role"] == "namenode")
    shaper = report.state.options.get("shaper")
    delay = f"{opts.delay_ms:g} ms" if shaper == "netem" else "no delay"
    print(
        f"testbed {instance!r} up in {report.seconds:.1f} s: NameNode hdfs://{nn['address']}:8020, "
        f"{opts.datanodes} DataNodes, uplink {format_rate(opts.rate_bps)} {delay} ({shaper}), "
        f"block size {format_size(opts.block_size)}"
    )
    print(
        f"JVM memory: {format_size(report.jvm_rss_bytes)} RSS in {len(report.state.daemons)} JVMs"
    )
    engine = report.state.engine
    switch = "DPDK data plane" if opts.tor == "dpdk" else "kernel bridge"
    if engine is None:
        print(f"ToR tor-a: {switch}, no block engine (plain switching)")
    else:
        print(
            f"ToR tor-a: {switch} with the block engine (torswitch run pid "
            f"{engine['supervisor_pid']}), cache {format_size(engine['cache_bytes'])} in "
            f"{engine['cache_dir']}; HDFS reads from rack A are intercepted"
        )
    if report.state.directory is not None:
        print(
            f"block directory: {report.state.directory['address']} in the NameNode's namespace "
            f"(pid {report.state.directory['pid']}), "
            + ("tor-a registered for /rack-a" if engine is not None else "no ToR registered")
        )
    print(f"try: torswitch testbed exec{_flag(instance)} c1 -- hdfs dfs -ls /")
    return 0


def _flag(instance: str) -> str:
    from torswitch.testbed.state import DEFAULT_INSTANCE, INSTANCE_ENV

    if instance == (os.environ.get(INSTANCE_ENV) or DEFAULT_INSTANCE):
        return ""
    return f" --instance {instance}"


def _status(args: argparse.Namespace) -> int:
    from torswitch.testbed import lifecycle

    instance = _instance(args)
    try:
        report = lifecycle.status(instance)
    except NotUp as exc:
        if args.json:
            print(json.dumps({"instance": instance, "up": False, "problems": [str(exc)]}))
        else:
            print(f"torswitch testbed status: {exc}", file=sys.stderr)
        return NOT_UP_STATUS
    healthy = not report.problems
    if args.json:
        print(json.dumps({"up": healthy, **report.as_dict()}, indent=2))
        return 0 if healthy else NOT_UP_STATUS
    print(f"testbed {instance!r}: {'up' if healthy else 'NOT HEALTHY'}   run dir {report.run_dir}")
    pids = {d["host"]: d for d in report.daemons}
    print(f"{'host':<7}{'role':<10}{'rack':<9}{'address':<14}{'namespace':<16}daemon")
    for h in report.hosts:
        d = pids.get(h["name"])
        daemon = (
            f"pid {d['pid']} {'running' if d['running'] else 'DEAD'} {format_size(d['rss_bytes'])}"
            if d
            else "-"
        )
        print(
            f"{h['name']:<7}{h['role']:<10}{h['rack'] or '-':<9}{h['address'] or '-':<14}"
            f"{h['namespace']:<16}{daemon}"
        )
    want = report.options.get("datanodes")
    print(
        f"live DataNodes: {report.live_datanodes}/{want}, safe mode: "
        f"{'off' if report.safe_mode == '' else report.safe_mode or 'unknown'}"
    )
    if report.uplink:
        u = report.uplink
        delay = f"{u['delay_ms']:g} ms" if u["shaper"] == "netem" else "delay not emulated"
        print(f"uplink: {format_rate(u['rate_bps'])}, {delay} ({u['shaper']})")
    if report.datanode_reads:
        print(f"{'DataNode':<10}{'BytesRead':>14}{'BlocksRead':>12}{'ReadBlockOps':>14}")
        for name, c in report.datanode_reads.items():
            print(
                f"{name:<10}{c['BytesRead']:>14}{c['BlocksRead']:>12}{c['ReadBlockOpNumOps']:>14}"
            )
    print(_engine_line(report.engine))
    if "dataplane" in report.engine:
        print(_dataplane_line(report.engine["dataplane"]))
    print(_directory_line(report.directory))
    print(f"JVM memory: {format_size(report.jvm_rss_bytes)} RSS; up took {report.ready_seconds} s")
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 0 if healthy else NOT_UP_STATUS


def _engine_line(engine: dict[str, Any]) -> str:
    """The status line of the ToR's block engine."""
    if not engine.get("enabled"):
        return "engine: none (plain switching, --no-cache)"
    if not engine["supervisor_running"]:
        return "engine: torswitch run is NOT RUNNING; interception " + (
            "still installed" if engine["interception"]["installed"] else "off"
        )
    rules = engine["interception"]
    if rules["active"]:
        intercept = (
            f"interception installed on {', '.join(rules['leased_ports'])} "
            f"({rules['counters'].get('redirect', 0)} connections redirected)"
        )
    else:
        intercept = "interception OFF"
    pid = engine["engine_pid"]
    return (
        f"engine: pid {pid if pid else '-'} ({engine['phase']}, torswitch run pid "
        f"{engine['supervisor_pid']}, {engine['restarts']} restarts), port "
        f"{engine['listen_port']}, {intercept}"
    )


def _dataplane_line(dp: dict[str, Any]) -> str:
    """The status lines of the ToR's DPDK data plane: PID, restarts, per-port counters."""
    if not dp.get("pid"):
        return "data plane: NOT RUNNING"
    lines = [f"data plane: pid {dp['pid']} ({dp['restarts']} restarts)"]
    for name, c in dp["ports"].items():
        lines.append(
            f"  {name:<9} rx {c.get('rx_packets', 0):>10} tx {c.get('tx_packets', 0):>10} "
            f"steered {c.get('steered', 0):>8} dropped {c.get('tx_dropped', 0):>6} "
            f"malformed {c.get('rx_l3_malformed', 0):>5}"
        )
    return "\n".join(lines)


def _directory_line(directory: dict[str, Any]) -> str:
    """The status line of the block directory."""
    if not directory.get("enabled"):
        return "directory: none"
    if not directory["running"]:
        return f"directory: {directory['address']} NOT RUNNING"
    if directory["error"]:
        return f"directory: pid {directory['pid']}, {directory['address']}: {directory['error']}"
    tors = ", ".join(
        f"{s['switch_id']} {s['rack']} {'live' if s['live'] else 'SILENT'} {s['blocks']} blocks "
        f"{format_size(s['pinned_bytes'])} pinned of {format_size(s['capacity_bytes'])}"
        for s in directory["switches"]
    )
    return (
        f"directory: pid {directory['pid']}, {directory['address']} (in "
        f"{directory['namespace']}), {len(directory['switches'])} ToR(s)"
        + (f": {tors}" if tors else "")
        + f"; {directory['plans']} plan(s)"
    )


def _exec(args: argparse.Namespace) -> int:
    from torswitch.testbed.handle import Testbed

    command = list(args.cmd)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise BadValue("no command given: torswitch testbed exec HOST -- CMD [ARGS...]")
    tb = Testbed.attach(_instance(args))
    argv = tb.argv(args.host, command)
    env = tb.client_env(args.host)
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process, so the command owns the terminal and its exit status is ours.
    os.execvpe(argv[0], argv, env)
    return 127  # not reached


def _load(args: argparse.Namespace) -> int:
    from torswitch.testbed import dataset
    from torswitch.testbed.handle import Testbed

    spec = dataset.LoadSpec(
        directory=args.dir,
        raw_files=args.raw_files,
        raw_size=args.raw_size,
        parquet_files=args.parquet_files,
        parquet_size=args.parquet_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    spec.validate()
    tb = Testbed.attach(_instance(args))
    return dataset.load(tb, args.host, spec)


def _down(args: argparse.Namespace) -> int:
    from torswitch.testbed import lifecycle

    instance = _instance(args)
    report = lifecycle.down(instance)
    if report.was_up:
        print(
            f"testbed {instance!r} down: stopped {report.jvms_stopped} JVM(s)"
            + (f" ({report.jvms_killed} killed)" if report.jvms_killed else "")
            + (f" and {report.other_processes} other process(es)" if report.other_processes else "")
            + (" and the block engine" if report.engine_stopped else "")
            + (" and the block directory" if report.directory_stopped else "")
            + f", removed {len(report.namespaces_removed)} namespace(s)"
            + (" and the engine's cache" if report.cache_removed else "")
        )
    else:
        print(f"testbed {instance!r} is not up; nothing to do")
    return 0
