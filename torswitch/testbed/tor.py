"""The ToR's block engine in a testbed: `torswitch run` inside the ToR namespace.

Unless `up` was given --no-cache, it writes an engine config into the run directory and
starts ``torswitch run --namespace-mode`` inside ``<instance>-tor-a``, in a session of its own
so it outlives `up`. That supervisor starts the engine, and installs the interception on the
ToR's bridge while the engine is healthy (torswitch.supervisor, torswitch.interception). `up`
returns once the interception is in place; `down` stops the supervisor (which removes the
rules and stops the engine) and deletes the cache.

Files::

    run/testbed-<instance>/engine/engine.yml    the engine config (torswitch config format)
    run/testbed-<instance>/engine/status.json   the supervisor's status file
    run/testbed-<instance>/logs/supervisor.log  `torswitch run` (starts, health, rules)
    run/testbed-<instance>/logs/engine.log      the engine's own output, all restarts
    /dev/shm/torswitch-<instance>/              the cache (LMDB on tmpfs)

With ``--tor dpdk`` the ToR namespace has no bridge: the switch is the DPDK data plane, run
as a service of its own (``torswitch dataplane serve --namespace-mode``, in a session of its
own too) on the ToR's ports (c1, c2 .., uplink), with a tap ``tswtap0`` holding the ToR's
address 198.18.1.1. It is started first and stopped last; the engine's supervisor runs with
``--dataplane-control``, attached to its control socket, and switches the data plane's
steering with the engine's health, as a lease (torswitch.tor_dpdk). Stopping, restarting or
killing the supervisor (and so the engine) leaves the data plane, and the rack, switching.
Its files::

    run/testbed-<instance>/dataplane/stats.prom     counters (rewritten every 200 ms)
    run/testbed-<instance>/dataplane/control.sock   the control channel (protocol v1)
    run/testbed-<instance>/dataplane/dataplane.log  the data plane's output, all restarts
    run/testbed-<instance>/dataplane/status.json    the service's status file
    run/testbed-<instance>/logs/dataplane.log       `torswitch dataplane serve` (restarts)

The state file records the supervisor's PID under ``engine`` (and the data plane service's
under ``engine.dataplane_pid``); each is recognised by that PID together with its status-file
path on its command line, never by a broad name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from torswitch.dataplane import ControlClient, DataplaneError, parse_counters
from torswitch.interception import InterceptionError, Interceptor, InterceptSpec, InterceptState
from torswitch.testbed import hadoop, netns, topology
from torswitch.testbed.errors import StartupFailed
from torswitch.testbed.state import RunDir
from torswitch.tor_dpdk import DEFAULT_TAP, redirect_counter

ENGINE_PORT = 19866
AGENT_PORT = 19867  # the cache agent's gRPC (torswitch cache --agent 198.18.1.1:19867)
METRICS_PORT = 19868  # Prometheus /metrics of the engine
DEFAULT_CACHE_BYTES = 1 << 30
SHM_DIR = Path("/dev/shm")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DPDK_RUNTIME = Path("/var/run/dpdk")


def cache_dir(instance: str) -> Path:
    """The engine's cache directory of `instance`, on tmpfs."""
    return SHM_DIR / f"torswitch-{instance}"


def engine_dir(run: RunDir) -> Path:
    return run.path / "engine"


def config_path(run: RunDir) -> Path:
    return engine_dir(run) / "engine.yml"


def status_path(run: RunDir) -> Path:
    return engine_dir(run) / "status.json"


def dataplane_dir(run: RunDir) -> Path:
    return run.path / "dataplane"


def dataplane_status_path(run: RunDir) -> Path:
    """The status file of the data plane service (`torswitch dataplane serve`)."""
    return dataplane_dir(run) / "status.json"


def dataplane_control(run: RunDir) -> Path:
    return dataplane_dir(run) / "control.sock"


def dataplane_service_log(run: RunDir) -> Path:
    return run.log_dir / "dataplane.log"


def eal_prefix(topo: topology.Topology) -> str:
    """The EAL file prefix the data plane service uses in this testbed's ToR."""
    return f"tsw-dp-{topo.host(topology.TOR).namespace}"


def remove_eal_runtime(topo: topology.Topology) -> bool:
    """Remove the data plane's EAL runtime directory if one was left behind (it is empty when
    the process is gone); returns whether there was one."""
    path = DPDK_RUNTIME / eal_prefix(topo)
    if not path.exists():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def supervisor_log(run: RunDir) -> Path:
    return run.log_dir / "supervisor.log"


def engine_log(run: RunDir) -> Path:
    return run.log_dir / "engine.log"


def config_text(
    cache: Path,
    cache_bytes: int,
    hadoop_conf_dir: Path,
    directory: str | None = None,
    rack_hosts: tuple[str, ...] = (),
) -> str:
    """The engine config a testbed runs with. With `directory` (host:port), the ToR registers
    there as tor-a of rack A, its agent at the ToR's address, its capacity the cache size, and
    `rack_hosts` (names and addresses of the rack's hosts) as the hosts it serves."""
    text = (
        "# Written by `torswitch testbed up`: the block engine of the ToR tor-a.\n"
        "torswitch: 1\n"
        "engine:\n"
        f"  listen: 0.0.0.0:{ENGINE_PORT}\n"
        f"  agent_port: {AGENT_PORT}\n"
        f"  metrics_port: {METRICS_PORT}\n"
        f"  cache_path: {cache}\n"
        f"  cache_capacity: {cache_bytes}\n"
        f"  hadoop_conf_dir: {hadoop_conf_dir}\n"
    )
    if directory:
        text += (
            f"  directory: {directory}\n"
            f"  rack: {topology.RACK_A}\n"
            f"  switch_id: {topology.TOR}\n"
            f"  agent_address: {topology.TOR_ADDRESS}:{AGENT_PORT}\n"
        )
        if rack_hosts:
            text += f"  rack_hosts: {','.join(rack_hosts)}\n"
    return text


def write_config(
    run: RunDir,
    cache_bytes: int,
    directory: str | None = None,
    rack_hosts: tuple[str, ...] = (),
) -> Path:
    """Write the engine config (and create the cache directory); returns the config path.
    `directory`: the block directory to register with (None: none)."""
    cache = cache_dir(run.instance)
    cache.mkdir(mode=0o700, exist_ok=True)
    path = config_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        config_text(cache, cache_bytes, run.conf_dir("client"), directory, rack_hosts)
    )
    return path


def supervisor_argv(
    run: RunDir,
    engine_cmd: str | None = None,
    mode: str = "kernel",
    topo: topology.Topology | None = None,
) -> list[str]:
    """`torswitch run` for the ToR; `engine_cmd` replaces the engine (tests: a stand-in).
    `mode` dpdk adds the data plane on `topo`'s ToR ports."""
    argv = [
        sys.executable,
        "-m",
        "torswitch",
        "run",
        "--config",
        str(config_path(run)),
        "--namespace-mode",
        "--status-file",
        str(status_path(run)),
        "--engine-log",
        str(engine_log(run)),
    ]
    if engine_cmd is not None:
        argv += ["--engine-cmd", engine_cmd]
    if mode == "dpdk":
        argv += ["--dataplane-control", str(dataplane_control(run)), "--tap", DEFAULT_TAP]
    return argv


def dataplane_service_argv(run: RunDir, topo: topology.Topology) -> list[str]:
    """`torswitch dataplane serve` for the ToR of `topo`: its ports, the tap with the ToR's
    address, the transfer port of the clients' Hadoop config."""
    argv = [
        sys.executable,
        "-m",
        "torswitch",
        "dataplane",
        "serve",
        "--namespace-mode",
        "--dir",
        str(dataplane_dir(run)),
        "--status-file",
        str(dataplane_status_path(run)),
        "--tap",
        DEFAULT_TAP,
        "--tap-address",
        f"{topology.TOR_ADDRESS}/{topology.SEGMENT_PREFIX_LEN}",
        "--uplink",
        topology.UPLINK_TOR_PORT,
        "--hadoop-conf",
        str(run.conf_dir("client")),
    ]
    for port in topo.tor_rack_ports:
        argv += ["--rack-port", port]
    return argv


def start_dataplane(run: RunDir, topo: topology.Topology) -> int:
    """Start the data plane service in the ToR namespace; returns its PID (not waiting).

    Raises `StartupFailed` if it cannot be started.
    """
    ns = topo.host(topology.TOR).namespace
    dataplane_dir(run).mkdir(parents=True, exist_ok=True)
    dataplane_status_path(run).unlink(missing_ok=True)
    with open(dataplane_service_log(run), "ab") as out:
        try:
            proc = subprocess.Popen(
                netns.exec_argv(ns, dataplane_service_argv(run, topo)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StartupFailed(f"cannot start the data plane in {ns}: {exc}") from exc
    return proc.pid


def is_dataplane_service(run: RunDir, pid: int | None) -> bool:
    """Whether `pid` is this run directory's data plane service."""
    return hadoop.runs_with(pid, str(dataplane_status_path(run)))


def read_dataplane_status(run: RunDir) -> dict[str, Any] | None:
    """The data plane service's status file, or None if there is none (yet)."""
    import json

    try:
        data: dict[str, Any] = json.loads(dataplane_status_path(run).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def wait_dataplane(run: RunDir, pid: int, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Wait until the data plane service reports its data plane running and the data plane
    answers on its control socket. Returns the service's status. Raises `StartupFailed`, with
    the logs' last lines, if the service exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if not is_dataplane_service(run, pid):
            raise StartupFailed(
                f"torswitch dataplane serve (pid {pid}) exited; see "
                f"{dataplane_service_log(run)}:\n{hadoop.tail(dataplane_service_log(run))}\n"
                f"data plane log:\n{hadoop.tail(dataplane_dir(run) / 'dataplane.log')}"
            )
        status = read_dataplane_status(run) or {}
        if status.get("phase") == "running" and dataplane_steering(run) is not None:
            return status
        if time.monotonic() > deadline:
            raise StartupFailed(
                f"the data plane is not running after {timeout:.0f} s; see "
                f"{dataplane_service_log(run)}:\n{hadoop.tail(dataplane_service_log(run))}"
            )
        time.sleep(0.1)


def stop_dataplane(run: RunDir, pid: int | None, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the data plane service and wait for it (it stops the data plane); SIGKILL it
    and its data plane after `timeout` seconds. Returns whether it was running."""
    if not is_dataplane_service(run, pid):
        return False
    assert pid is not None
    child = (read_dataplane_status(run) or {}).get("pid")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while is_dataplane_service(run, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = [p for p in (pid, child) if isinstance(p, int) and p and hadoop.pid_alive(p)
                 and (p == pid or _runs_dataplane(p))]
    if leftovers:
        hadoop.stop_pids(leftovers, grace=0.0)
    return True


def _runs_dataplane(pid: int) -> bool:
    """Whether `pid` is a tsw-dataplane process (its binary is its first argument, or the
    first after a setpriv wrapper)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"/tsw-dataplane") for a in argv[:6])


def start(
    run: RunDir, topo: topology.Topology, engine_cmd: str | None = None, mode: str = "kernel"
) -> int:
    """Start the supervisor in the ToR namespace; returns its PID (not waiting for health).

    Raises `StartupFailed` if it cannot be started.
    """
    ns = topo.host(topology.TOR).namespace
    status_path(run).unlink(missing_ok=True)
    with open(supervisor_log(run), "ab") as out:
        try:
            proc = subprocess.Popen(
                netns.exec_argv(ns, supervisor_argv(run, engine_cmd, mode, topo)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StartupFailed(f"cannot start torswitch run in {ns}: {exc}") from exc
    return proc.pid


def read_status(run: RunDir) -> dict[str, Any] | None:
    """The supervisor's status file, or None if there is none (yet)."""
    import json

    try:
        data: dict[str, Any] = json.loads(status_path(run).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def is_supervisor(run: RunDir, pid: int | None) -> bool:
    """Whether `pid` is this run directory's `torswitch run` (its status file is an argument)."""
    return hadoop.runs_with(pid, str(status_path(run)))


def engine_pid(run: RunDir, supervisor_pid: int | None) -> int | None:
    """The running engine's PID: from the status file, checked to be the supervisor's child."""
    status = read_status(run) or {}
    pid = status.get("engine_pid")
    if not isinstance(pid, int) or not supervisor_pid or not hadoop.pid_alive(pid):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    parent = int(stat.rsplit(")", 1)[1].split()[1])
    return pid if parent == supervisor_pid else None


def interception_state(
    topo: topology.Topology, mode: str = "kernel", run: RunDir | None = None
) -> InterceptState:
    """What nft shows in the ToR namespace (an empty state if it cannot be read). In dpdk
    mode: the tap redirect, active while the data plane steers (leased_ports: its rack ports
    then; counters: redirect)."""
    if mode == "dpdk":
        return _dpdk_interception_state(topo, run or RunDir(topo.instance))
    try:
        return Interceptor(InterceptSpec(), namespace=topo.host(topology.TOR).namespace).state()
    except InterceptionError:
        return InterceptState()


def _dpdk_interception_state(topo: topology.Topology, run: RunDir) -> InterceptState:
    ns = topo.host(topology.TOR).namespace
    state = InterceptState()
    proc = netns.run(["nft", "-j", "list", "ruleset"], ns=ns, check=False)
    redirected = redirect_counter(proc.stdout) if proc.returncode == 0 else None
    if redirected is None:
        return state
    state.installed = True
    state.counters["redirect"] = redirected
    if dataplane_steering(run):
        state.leased_ports = sorted(topo.tor_rack_ports)
    return state


def dataplane_steering(run: RunDir) -> bool | None:
    """Whether the ToR's data plane has steering on, as its control channel says; None if it
    does not answer."""
    try:
        with ControlClient(dataplane_control(run), 1.0) as ctl:
            return ctl.status().get("steering") == "on"
    except (OSError, DataplaneError):
        return None


def wait_intercepting(
    run: RunDir,
    topo: topology.Topology,
    pid: int,
    intercepting: bool = True,
    timeout: float = START_TIMEOUT_S,
    mode: str = "kernel",
) -> dict[str, Any]:
    """Wait until the supervisor reports the interception on (or off) and nft agrees.

    Returns the status. Raises `StartupFailed`, with the logs' last lines, if the supervisor
    exits or `timeout` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        if not is_supervisor(run, pid):
            raise StartupFailed(
                f"torswitch run (pid {pid}) exited; see {supervisor_log(run)}:\n"
                f"{hadoop.tail(supervisor_log(run))}\nengine log:\n{hadoop.tail(engine_log(run))}"
            )
        status = read_status(run) or {}
        if (
            bool(status.get("intercepting")) == intercepting
            and interception_state(topo, mode, run).active == intercepting
        ):
            return status
        if time.monotonic() > deadline:
            raise StartupFailed(
                f"the interception is not {'on' if intercepting else 'off'} after "
                f"{timeout:.0f} s (engine phase {status.get('phase', 'unknown')}); see "
                f"{supervisor_log(run)}:\n{hadoop.tail(supervisor_log(run))}\n"
                f"engine log:\n{hadoop.tail(engine_log(run))}"
            )
        time.sleep(0.1)


def stop(run: RunDir, pid: int | None, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the supervisor and wait for it (it removes the rules and stops the engine);
    SIGKILL it and its engine after `timeout` seconds. Returns whether it was running."""
    if not is_supervisor(run, pid):
        return False
    assert pid is not None
    child = engine_pid(run, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while is_supervisor(run, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = [p for p in (pid, child) if p and hadoop.pid_alive(p)]
    if leftovers:
        hadoop.stop_pids(leftovers, grace=0.0)
    return True


def remove_cache(instance: str) -> bool:
    """Delete the instance's tmpfs cache; returns whether there was one."""
    path = cache_dir(instance)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def dataplane_report(run: RunDir, record: dict[str, Any] | None) -> dict[str, Any]:
    """The data plane's part of `testbed status` (dpdk mode): the service's PID and whether it
    runs, the data plane's PID, restarts, steering (on, off, or None when it does not answer)
    and counters (per port: rx/tx packets, drops, steered; totals: flows_steered,
    flows_direct ...)."""
    service = (record or {}).get("dataplane_pid")
    running = is_dataplane_service(run, service)
    dp = (read_dataplane_status(run) or {}) if running else {}
    pid = dp.get("pid")
    out: dict[str, Any] = {
        "service_pid": service if running else None,
        "service_running": running,
        "pid": pid if pid and hadoop.pid_alive(pid) else None,
        "restarts": dp.get("restarts", 0),
        "last_exit": dp.get("last_exit"),
        "steering": dataplane_steering(run) if running else None,
        "ports": {},
        "totals": {},
    }
    stats = dataplane_dir(run) / "stats.prom"
    try:
        counters = parse_counters(stats.read_text(), dp.get("ports") or {})
    except (OSError, DataplaneError):
        return out
    out["ports"], out["totals"] = counters.ports, counters.totals
    return out


def report(
    run: RunDir, topo: topology.Topology, record: dict[str, Any] | None, mode: str = "kernel"
) -> dict[str, Any]:
    """The engine's part of `testbed status`: supervisor, engine, interception, cache, and in
    dpdk mode the data plane."""
    if record is None:
        return {"enabled": False}
    pid = record.get("supervisor_pid")
    running = is_supervisor(run, pid)
    status = read_status(run) or {}
    child = engine_pid(run, pid) if running else None
    rules = interception_state(topo, mode, run)
    extra = {"dataplane": dataplane_report(run, record)} if mode == "dpdk" else {}
    return {
        **extra,
        "mode": mode,
        "enabled": True,
        "supervisor_pid": pid,
        "supervisor_running": running,
        "engine_pid": child,
        "phase": status.get("phase") if running else "stopped",
        "restarts": status.get("restarts", 0),
        "last_exit": status.get("last_exit"),
        "engine_cmd": record.get("engine_cmd"),
        "interception": rules.as_dict(),
        "cache_dir": record.get("cache_dir"),
        "cache_bytes": record.get("cache_bytes"),
        "listen_port": ENGINE_PORT,
    }
