"""`torswitch dataplane serve|status|counters`: run the ToR's DPDK data plane as a service, and
look at a running one (tsw-dataplane).

`serve` is the switch of a DPDK-mode ToR as a long-lived foreground service
(torswitch.tor_dpdk): it runs tsw-dataplane on the namespace's ports (--rack-port, default
every Ethernet port but the uplink and the tap; --uplink), on one lcore or several (--lcores,
--queues), gives its tap (--tap) the ToR's address (--tap-address) and restarts it when it
dies. Its files (control socket control.sock,
stats.prom, dataplane.log, status.json) go to --dir. Steering starts off and stays off until
an engine supervisor (`torswitch run --dataplane-control DIR/control.sock`) turns it on with a
lease while its engine is healthy; stopping or killing that supervisor leaves the rack
switching. SIGTERM or SIGINT: the data plane stops, exit 0.

`status` and `counters` talk to the process's control socket (--control, or
$TSW_DATAPLANE_CONTROL); `counters` can instead read the stats file the process rewrites
(--stats-file), which also works after it stopped (the file then holds the final counters).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from torswitch.errors import TorswitchError

#: Where `serve` keeps its files by default, and so where `status` looks for the control socket.
DEFAULT_DIR = Path("/run/torswitch/dataplane")
DEFAULT_CONTROL = str(DEFAULT_DIR / "control.sock")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dataplane", help="status and counters of a running DPDK data plane",
        description=__doc__)
    sub = parser.add_subparsers(dest="dataplane_command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the ToR's data plane as a service (foreground; restarts it)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--dir", type=Path, default=DEFAULT_DIR, metavar="DIR",
                       help=f"control socket, stats, log and status file ({DEFAULT_DIR})")
    serve.add_argument("--status-file", type=Path, metavar="PATH",
                       help="JSON status of the service (default DIR/status.json)")
    serve.add_argument("--rack-port", action="append", dest="rack_ports", metavar="IF",
                       help="a rack-facing port, repeatable (default: every Ethernet port "
                            "but the uplink and the tap)")
    serve.add_argument("--uplink", default="uplink", metavar="IF",
                       help="the port towards the spine, never steered (uplink)")
    serve.add_argument("--tap", default="tswtap0", metavar="IF",
                       help="the tap interface the data plane creates here (tswtap0)")
    serve.add_argument("--tap-address", required=True, metavar="CIDR",
                       help="the ToR's address on the tap, e.g. 198.18.1.1/16")
    serve.add_argument("--steer-port", action="append", type=int, dest="steer_ports",
                       metavar="N", help="a TCP port to steer, repeatable (default: the "
                       "DataNode transfer port of --hadoop-conf, else 9866)")
    serve.add_argument("--hadoop-conf", metavar="DIR",
                       help="Hadoop conf dir whose dfs.datanode.address gives the port to steer")
    serve.add_argument("--flow-idle-s", type=int, metavar="S",
                       help="forget a steering flow whose client sent nothing for S seconds "
                            "(default: the data plane's, 300)")
    serve.add_argument("--lcores", type=lcores_arg, metavar="LIST",
                       help="run the switch loop on these lcores (EAL -l, e.g. 0-1; the lowest "
                            "is the main one); default: lcore 0 only")
    serve.add_argument("--queues", type=int, metavar="N",
                       help="queue pairs per af_packet port (default: one per lcore)")
    serve.add_argument("--binary", type=Path, metavar="PATH", help="tsw-dataplane to run")
    serve.add_argument("--namespace-mode", action="store_true",
                       help="the ToR is the named network namespace this runs in; refuse "
                            "to run anywhere else")
    serve.set_defaults(func=run_serve)

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


def lcores_arg(text: str) -> tuple[int, ...]:
    """argparse type of --lcores: an EAL lcore list (0-1, 0,2, ...)."""
    from torswitch.dataplane import parse_lcores

    try:
        return parse_lcores(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def run_serve(args: argparse.Namespace) -> int:
    import ipaddress

    from torswitch.dataplane import DEFAULT_BINARY, DataplaneConfig, steer_ports_from_hadoop_conf
    from torswitch.interception import current_namespace_name
    from torswitch.supervisor import _die_with_parent
    from torswitch.tor_dpdk import DataplaneKeeper, discover_ports, serve

    namespace = current_namespace_name()
    if args.namespace_mode and namespace is None:
        raise TorswitchError(
            "--namespace-mode, but this is not a named network namespace (it may be the "
            "host's own): start it with `ip netns exec <ToR namespace> torswitch dataplane "
            "serve ...`")
    try:
        ipaddress.IPv4Interface(args.tap_address)
    except ValueError:
        raise TorswitchError(f"--tap-address {args.tap_address!r} is not IPv4 ADDRESS/PREFIX"
                             ) from None
    ports = tuple(args.steer_ports) if args.steer_ports else steer_ports_from_hadoop_conf(
        args.hadoop_conf)
    rack = list(args.rack_ports) if args.rack_ports else discover_ports([args.uplink, args.tap])
    if not rack:
        raise TorswitchError("dataplane serve: no rack ports (give --rack-port)")
    try:
        config = DataplaneConfig(
            rack_ifaces=rack, uplink_iface=args.uplink, tap_iface=args.tap, tap_mac="fixed",
            steer_tcp_ports=ports, steering=False, flow_idle_s=args.flow_idle_s,
            lcores=args.lcores, queues=args.queues, binary=args.binary or DEFAULT_BINARY,
            # One EAL runtime directory per ToR namespace: several testbeds side by side.
            file_prefix=f"tsw-dp-{namespace}" if namespace else "tsw-dp")
    except ValueError as exc:
        raise TorswitchError(f"dataplane serve: {exc}") from None
    args.dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d torswitch dataplane[%(process)d] %(levelname)s "
               "%(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    keeper = DataplaneKeeper(config, args.dir, args.tap_address, wrapper=_die_with_parent())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("%s: stopping the data plane",
                                         signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    keeper.start()  # raises DataplaneError with DPDK's log: a ToR that cannot switch says so
    logging.getLogger(__name__).info("serving; control socket %s",
                                     keeper.dataplane.control_path)
    serve(keeper, stop, args.status_file or args.dir / "status.json")
    return 0
