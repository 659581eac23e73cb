"""`torswitch memswitch --config FILE ...`: memcached over UDP through the DPDK data plane.

Runs in the ToR's network namespace (or give --netns) in the foreground: starts the data plane
(native/dataplane) on the rack ports (--rack-iface, repeatable) and the optional uplink, with a
tap port (--tap) holding the ToR's address (--tap-address, e.g. 198.18.70.254/24) through which
the ToR's kernel resolves the servers' MACs and probes them; then publishes every pool of the
config (a nutcracker.yml, or a torswitch config's memcached section) that has a listen
address: clients send memcached UDP to that VIP:PORT and the data plane switches each request
to its key's server (direct server return, see torswitch.memswitch for what servers need).

Servers are probed every --probe-interval-ms and ejected with nutcracker's auto_eject_hosts
rules. SIGHUP reloads the config (a refused config is logged; the running one stays); SIGTERM
or SIGINT stop everything (exit 0). A data plane that dies is restarted and given its pools
again. Files in --workdir: stats.prom, control.sock, dataplane.log (the data plane's) and
memswitch.json (pools, servers, liveness, ejections: rewritten on every change).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from torswitch.commands.dataplane import lcores_arg
from torswitch.errors import TorswitchError

log = logging.getLogger("torswitch.memswitch")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "memswitch", help="memcached over UDP switched (and hot keys cached) by the data plane",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="nutcracker.yml or torswitch config with the pools")
    parser.add_argument("--rack-iface", action="append", dest="rack_ifaces", required=True,
                        metavar="IF", help="a rack port of the data plane (repeatable)")
    parser.add_argument("--uplink", metavar="IF", help="the uplink port, if any")
    parser.add_argument("--tap", required=True, metavar="IF",
                        help="name of the tap interface the data plane creates")
    parser.add_argument("--tap-address", required=True, metavar="ADDR/LEN",
                        help="the ToR's address on the tap, in the servers' subnet")
    parser.add_argument("--netns", metavar="NS",
                        help="run the data plane, probes and MAC resolution in this named "
                             "network namespace (default: the current one)")
    parser.add_argument("--metrics-port", type=int, metavar="N",
                        help="serve Prometheus /metrics on this TCP port")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="data plane files and the status file (default: a new temp dir)")
    parser.add_argument("--probe-interval-ms", type=int, default=500, metavar="MS",
                        help="server probe period (default 500)")
    parser.add_argument("--lcore", type=int, default=0, help="the data plane's core (0)")
    parser.add_argument("--lcores", type=lcores_arg, metavar="LIST",
                        help="the data plane's cores instead (EAL -l, e.g. 0-1; the lowest "
                             "owns the memcached state)")
    parser.add_argument("--queues", type=int, metavar="N",
                        help="queue pairs per af_packet port (default: one per core)")
    for flag, what in (("--mc-cache-slots", "cache slots (0: no cache)"),
                       ("--mc-hot-threshold", "gets before a key is cached"),
                       ("--mc-max-value", "largest cached value, bytes"),
                       ("--mc-cache-ttl-ms", "lifetime of a cached value, ms"),
                       ("--mc-write-timeout-ms", "how long a write holds its key's stripe, ms")):
        parser.add_argument(flag, type=int, metavar="N", help=f"data plane: {what}")
    parser.add_argument("--no-backoff", action="store_true",
                        help="the data plane busy-polls even when idle (benchmarks)")
    parser.add_argument("--dataplane-binary", type=Path, metavar="PATH",
                        help="tsw-dataplane to run (default: the in-tree build)")
    parser.set_defaults(func=run)


class _KeeperControl:
    """MemSwitch's control client: the running data plane's, whichever process that is."""

    def __init__(self, keeper: Any) -> None:
        self.keeper = keeper

    def mc_pool(self, *args: Any, **kwargs: Any) -> Any:
        return self.keeper.dataplane.control.mc_pool(*args, **kwargs)

    def mc_pool_del(self, pool_id: int) -> Any:
        return self.keeper.dataplane.control.mc_pool_del(pool_id)


def _tap_setup(netns: str | None) -> Any:
    from torswitch.interception import InterceptionError
    from torswitch.tor_dpdk import configure_tap

    if netns is None:
        return configure_tap

    def setup(tap: str, address: str) -> None:
        from torswitch.testbed import netns as ns_mod
        from torswitch.testbed.errors import StartupFailed

        try:
            ns_mod.run(["ip", "-n", netns, "addr", "replace", address, "dev", tap])
            ns_mod.run(["ip", "-n", netns, "link", "set", tap, "up"])
        except StartupFailed as exc:
            raise InterceptionError(str(exc)) from None
    return setup


def _dataplane_config(args: argparse.Namespace, workdir: Path) -> Any:
    from torswitch.dataplane import DEFAULT_BINARY, DataplaneConfig
    from torswitch.interception import current_namespace_name

    namespace = args.netns or current_namespace_name()
    try:
        return DataplaneConfig(
            rack_ifaces=list(args.rack_ifaces), uplink_iface=args.uplink, tap_iface=args.tap,
            tap_mac="fixed", netns=args.netns, lcore=args.lcore, lcores=args.lcores,
            queues=args.queues, no_backoff=args.no_backoff,
            steering=False, binary=args.dataplane_binary or DEFAULT_BINARY,
            # One EAL runtime directory per namespace: several switches side by side.
            file_prefix=f"tsw-mc-{namespace}" if namespace else "tsw-mc",
            mc_cache_slots=args.mc_cache_slots, mc_max_value=args.mc_max_value,
            mc_hot_threshold=args.mc_hot_threshold, mc_cache_ttl_ms=args.mc_cache_ttl_ms,
            mc_write_timeout_ms=args.mc_write_timeout_ms, mc_pool_file=None)
    except ValueError as exc:
        raise TorswitchError(f"memswitch: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from torswitch import config
    from torswitch.memswitch import (
        MAX_POOLS,
        MAX_SERVER_IDS,
        STATUS_FILE,
        IdAllocator,
        MemSwitch,
        NeighbourResolver,
        memcached_probe,
        plan_pools,
        write_status,
    )
    from torswitch.supervisor import _die_with_parent
    from torswitch.tor_dpdk import DataplaneKeeper

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d torswitch memswitch[%(process)d] %(levelname)s "
               "%(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    try:
        ipaddress.IPv4Interface(args.tap_address)
    except ValueError:
        raise TorswitchError(f"--tap-address {args.tap_address!r} is not IPv4 ADDRESS/LEN") from None
    if args.probe_interval_ms <= 0:
        raise TorswitchError("--probe-interval-ms must be positive")
    cfg = config.load(args.config)
    # Refuse a bad config before anything starts.
    plans = plan_pools(cfg, IdAllocator(MAX_POOLS), IdAllocator(MAX_SERVER_IDS))
    if not plans:
        raise TorswitchError(f"{args.config}: no pool has a listen address: nothing to switch")
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="tsw-memswitch-"))
    workdir.mkdir(parents=True, exist_ok=True)
    status_path = workdir / STATUS_FILE
    keeper = DataplaneKeeper(_dataplane_config(args, workdir), workdir, args.tap_address,
                             wrapper=_die_with_parent(), tap_setup=_tap_setup(args.netns))
    switch = MemSwitch(
        _KeeperControl(keeper),
        probe=lambda host, port, timeout: memcached_probe(host, port, timeout, args.netns),
        resolve=NeighbourResolver(args.netns),
        probe_interval_s=args.probe_interval_ms / 1000)
    stop = threading.Event()
    reload = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            reload.set()
        else:
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    print(f"torswitch memswitch: starting the data plane (files in {workdir})", file=sys.stderr)
    keeper.start()  # raises DataplaneError with DPDK's log
    server = None
    try:
        for line in switch.apply(cfg):
            print(f"torswitch memswitch: {line}", file=sys.stderr)
        if args.metrics_port:
            server = _serve_metrics(args.metrics_port, switch, keeper)
        starts = keeper.starts
        last_status: dict[str, Any] | None = None
        while not stop.is_set():
            began = time.monotonic()
            keeper.poll()
            if keeper.starts != starts:
                starts = keeper.starts
                log.warning("the data plane was restarted: publishing every pool again")
                switch.forget_published()
            if reload.is_set():
                reload.clear()
                log.info("SIGHUP: reloading %s", args.config)
                switch.reload(lambda: config.load(args.config))
            if keeper.pid is not None:
                switch.tick()
            status = switch.status() | {"dataplane": keeper.status()}
            if status != last_status:
                write_status(status_path, status)
                last_status = status
            stop.wait(max(0.0, switch.probe_interval_s - (time.monotonic() - began)))
        log.info("stopping")
    finally:
        switch.close()
        if server is not None:
            server.shutdown()
        keeper.stop()
        with contextlib.suppress(OSError):
            write_status(status_path, switch.status() | {"dataplane": keeper.status()})
    return 0


def _serve_metrics(port: int, switch: Any, keeper: Any) -> Any:
    from prometheus_client import CollectorRegistry, start_http_server

    from torswitch.dataplane import Counters
    from torswitch.memswitch import MemSwitchCollector

    def counters() -> Counters | None:
        return keeper.dataplane.counters() if keeper.pid is not None else None

    registry = CollectorRegistry()
    registry.register(MemSwitchCollector(switch, counters))
    server, _ = start_http_server(port, registry=registry)
    log.info("metrics on port %d", port)
    return server
