"""`torswitch run --config FILE`: the ToR's block engine as a supervised foreground service.

Starts the engine (`torswitch engine --config FILE`) as a child process, probes it, and keeps
the kernel-mode interception of HDFS reads (torswitch.interception) in place only while the
engine answers: when it dies or stops answering, the rules go within about a second and rack
traffic flows straight to the DataNodes again (fail-open); a dead engine is restarted with
back-off. SIGTERM or SIGINT: rules removed, engine stopped, exit 0.

The interception works on the Linux bridge of the network namespace this runs in (--bridge,
default br0): new connections from its rack ports (every port but the uplink, unless
--rack-port names them) to the DataNode transfer port of the config's hadoop_conf_dir
(dfs.datanode.address, 9866 by default) are redirected to the engine's listen port.

--dataplane-control SOCKET is the DPDK-mode ToR (torswitch.tor_dpdk): no bridge; the switch
is a data plane that runs as a service of its own (`torswitch dataplane serve`), and this
command attaches to its control socket. While the engine is healthy it installs a redirect
from the data plane's tap (--tap) to the engine and keeps the data plane's steering on, as a
lease renewed every second (--lease): new rack connections to the transfer port then go to
the engine. When the engine fails, steering goes off and new connections go straight to the
DataNodes; connections steered before stay with the engine (steering is per flow). When this
command exits, steering goes off at once; when it is killed or hangs, the lease runs out.
Either way the rack keeps switching. The engine re-exports the data plane's counters from its
stats file (--dataplane-stats, default stats.prom beside the socket).

--dataplane is the older owning mode: this command also runs the data plane (native/dataplane)
itself on the namespace's ports (--rack-port, default every Ethernet port but the uplink;
--uplink, default uplink), with the tap holding the ToR's address (--tap-address, e.g.
198.18.1.1/16), and restarts it when it dies. Its files (stats, control socket, log) go to
--dataplane-dir. Stopping this command then stops the rack's switching too.

--namespace-mode is for a ToR that is a network namespace, as in the testbed
(``ip netns exec <instance>-tor-a torswitch run ...``): the command then refuses to start
outside a named network namespace (one of ``ip netns list``), so it can never change the
host's nftables. Without it, it runs wherever it is started, as on a real ToR.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from torswitch.errors import TorswitchError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the block engine under fail-open supervision (foreground)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="torswitch config")
    parser.add_argument(
        "--namespace-mode",
        action="store_true",
        help="the ToR is the named network namespace this runs in (ip netns exec NS ...); "
        "refuse to run anywhere else",
    )
    parser.add_argument("--bridge", default="br0", metavar="IF", help="the ToR bridge (br0)")
    parser.add_argument(
        "--rack-port",
        action="append",
        dest="rack_ports",
        metavar="IF",
        help="a rack-facing bridge port, repeatable (default: every bridge port but the uplinks)",
    )
    parser.add_argument(
        "--uplink",
        action="append",
        dest="uplinks",
        metavar="IF",
        help="an uplink port of the bridge, never intercepted; repeatable (default: uplink)",
    )
    parser.add_argument(
        "--dataplane",
        action="store_true",
        help="DPDK-mode ToR, owning mode: run the data plane too, steer HDFS reads to a tap "
        "(no bridge)",
    )
    parser.add_argument(
        "--dataplane-control",
        type=Path,
        metavar="SOCKET",
        help="DPDK-mode ToR: steer through the running data plane with this control socket "
        "(`torswitch dataplane serve`)",
    )
    parser.add_argument(
        "--dataplane-stats",
        type=Path,
        metavar="PATH",
        help="--dataplane-control: the data plane's stats file (default: stats.prom beside the "
        "socket)",
    )
    parser.add_argument(
        "--tap",
        default="tswtap0",
        metavar="IF",
        help="--dataplane, --dataplane-control: the data plane's tap interface here (tswtap0)",
    )
    parser.add_argument(
        "--tap-address",
        metavar="CIDR",
        help="--dataplane: the ToR's address on the tap, e.g. 198.18.1.1/16 (required)",
    )
    parser.add_argument(
        "--dataplane-dir",
        type=Path,
        metavar="DIR",
        help="--dataplane: its stats file, control socket and log (default: a temporary dir)",
    )
    parser.add_argument(
        "--dataplane-binary", type=Path, metavar="PATH", help="--dataplane: tsw-dataplane to run"
    )
    parser.add_argument(
        "--no-intercept", action="store_true", help="supervise the engine without interception"
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds the interception (or the data plane's steering) outlives a supervisor "
        "that died without removing it (default 5)",
    )
    parser.add_argument(
        "--status-file", type=Path, metavar="PATH", help="keep a JSON status file here"
    )
    parser.add_argument(
        "--engine-log",
        type=Path,
        metavar="PATH",
        help="append the engine's output here (default: this command's own output)",
    )
    # Tests and experiments: a stand-in for the engine (shell syntax), same supervision.
    parser.add_argument("--engine-cmd", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torswitch import (
        config,
        metrics,  # here, not at import: every `torswitch` call imports this module
    )
    from torswitch.interception import Interceptor, in_host_namespace, spec_for_engine
    from torswitch.supervisor import Supervisor, Timing, eof_probe

    cfg = config.load(args.config)
    engine = cfg.engine
    if args.namespace_mode and in_host_namespace():
        raise TorswitchError(
            "--namespace-mode, but this is not a named network namespace (it may be the "
            "host's own): start it with `ip netns exec <ToR namespace> torswitch run ...`"
        )
    try:
        spec = spec_for_engine(
            (engine.listen_host, engine.listen_port),
            engine.hadoop_conf_dir,
            bridge=args.bridge,
            rack_ports=tuple(args.rack_ports) if args.rack_ports else None,
            uplinks=tuple(args.uplinks) if args.uplinks else ("uplink",),
            lease_s=args.lease,
        )
    except ValueError as exc:
        if isinstance(exc, TorswitchError):
            raise
        raise TorswitchError(f"interception: {exc}") from None
    if args.dataplane and args.dataplane_control:
        raise TorswitchError("--dataplane runs a data plane, --dataplane-control attaches to "
                             "one: not both")
    keeper = None
    interceptor: Any = None
    stats_file: Path | None = None
    if args.dataplane:
        keeper, interceptor = _dataplane_mode(args, spec)
        stats_file = keeper.dataplane.stats_file
    elif args.dataplane_control:
        interceptor = _attached_mode(args, spec)
        stats_file = args.dataplane_stats or args.dataplane_control.parent / "stats.prom"
    elif not args.no_intercept:
        interceptor = Interceptor(spec, allow_host_namespace=not args.namespace_mode)
    if args.no_intercept:
        interceptor = None
    if args.engine_cmd:
        argv = shlex.split(args.engine_cmd)
    else:
        argv = [
            sys.executable,
            "-m",
            "torswitch",
            "engine",
            "--config",
            str(Path(args.config).resolve()),
        ]
    # A wildcard listener is probed on loopback; a specific address where it listens.
    probe_host = "127.0.0.1" if engine.listen_host in ("", "0.0.0.0", "*") else engine.listen_host
    timing = Timing()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d torswitch run[%(process)d] %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    supervisor = Supervisor(
        argv,
        eof_probe(probe_host, engine.listen_port, timing.probe_timeout_s),
        interceptor,
        timing,
        engine_log=args.engine_log,
        status_file=args.status_file,
        companion=keeper,
        # The engine re-exports the data plane's counters on its /metrics.
        env={**os.environ, metrics.DATAPLANE_STATS_ENV: str(stats_file)}
        if stats_file is not None else None,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("%s: shutting down", signal.Signals(signum).name)
        supervisor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if keeper is not None:
        try:
            keeper.start()  # before the supervisor: its first act is steering off
        except BaseException:
            keeper.stop()
            raise
    try:
        return supervisor.run()
    finally:
        if interceptor is not None and (args.dataplane or args.dataplane_control):
            _leave_dataplane(interceptor)


def _leave_dataplane(interceptor: Any) -> None:
    """Steering off (again) and the tap redirect removed, as this supervisor exits."""
    from torswitch.interception import InterceptionError

    try:
        interceptor.close()
    except InterceptionError as exc:
        logging.getLogger(__name__).error("leaving the data plane: %s", exc)


def _lease_ms(args: argparse.Namespace) -> int:
    if not 0 < args.lease <= 3600:
        raise TorswitchError(f"--lease {args.lease}: give 0 < seconds <= 3600")
    return max(1, round(float(args.lease) * 1000))


def _attached_mode(args: argparse.Namespace, spec: Any) -> Any:
    """The steering interception for --dataplane-control (the data plane runs elsewhere)."""
    from torswitch.tor_dpdk import ControlSteering, SteeringInterception, TapRedirect

    redirect = TapRedirect(args.tap, spec.transfer_ports, spec.engine_port, spec.engine_address)
    return SteeringInterception(ControlSteering(args.dataplane_control), redirect,
                                lease_ms=_lease_ms(args))


def _dataplane_mode(args: argparse.Namespace, spec: Any) -> tuple[Any, Any]:
    """The data plane's keeper and the steering interception for --dataplane.

    Raises TorswitchError for missing or bad options.
    """
    import ipaddress
    import tempfile

    from torswitch.dataplane import DEFAULT_BINARY, DataplaneConfig
    from torswitch.interception import current_namespace_name
    from torswitch.supervisor import _die_with_parent
    from torswitch.tor_dpdk import (
        DataplaneKeeper,
        SteeringInterception,
        TapRedirect,
        discover_ports,
    )

    if not args.tap_address:
        raise TorswitchError("--dataplane needs --tap-address (the ToR's address, e.g. 198.18.1.1/16)")
    try:
        ipaddress.IPv4Interface(args.tap_address)
    except ValueError:
        raise TorswitchError(f"--tap-address {args.tap_address!r} is not IPv4 ADDRESS/PREFIX") from None
    uplinks = tuple(args.uplinks) if args.uplinks else ("uplink",)
    if len(uplinks) != 1:
        raise TorswitchError("--dataplane takes exactly one --uplink")
    rack = list(args.rack_ports) if args.rack_ports else discover_ports([*uplinks, args.tap])
    if not rack:
        raise TorswitchError("--dataplane: no rack ports (give --rack-port)")
    namespace = current_namespace_name()
    try:
        config = DataplaneConfig(
            rack_ifaces=rack,
            uplink_iface=uplinks[0],
            tap_iface=args.tap,
            tap_mac="fixed",
            steer_tcp_ports=spec.transfer_ports,
            steering=False,
            binary=args.dataplane_binary or DEFAULT_BINARY,
            # One EAL runtime directory per ToR namespace: several testbeds side by side.
            file_prefix=f"tsw-dp-{namespace}" if namespace else "tsw-dp",
        )
    except ValueError as exc:
        raise TorswitchError(f"--dataplane: {exc}") from None
    workdir = args.dataplane_dir or Path(tempfile.mkdtemp(prefix="tsw-dp-"))
    workdir.mkdir(parents=True, exist_ok=True)
    keeper = DataplaneKeeper(config, workdir, args.tap_address, wrapper=_die_with_parent())
    redirect = TapRedirect(args.tap, spec.transfer_ports, spec.engine_port, spec.engine_address)
    return keeper, SteeringInterception(keeper, redirect, lease_ms=_lease_ms(args))
