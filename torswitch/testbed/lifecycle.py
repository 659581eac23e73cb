"""Bringing a testbed instance up and down, and reporting on it.

`up`:  check prerequisites -> namespaces, veths, bridges, uplink shaping -> render configs ->
       format the NameNode -> start the NameNode and all DataNodes (one JVM each, in parallel)
       -> wait until the NameNode reports every DataNode live and safe mode off -> start the
       block directory in the NameNode's namespace (testbed.directory) -> unless --no-cache,
       start the ToR's block engine under `torswitch run`, wait until its interception is in
       place (testbed.tor) and the ToR has registered with the directory.
       Any failure tears down what was built (logs stay) and raises.
`down`: stop the ToR's engine supervisor, the block directory, the testbed's JVMs (found by
       PID and by command-line marker) and anything else still inside its namespaces, delete
       the namespaces and the engine's tmpfs cache; no state needed, so it also cleans up after a crashed `up`.
       Idempotent.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from torswitch.testbed import config, hadoop, netns, topology, tor
from torswitch.testbed import directory as blockdir
from torswitch.testbed.errors import (
    AlreadyUp,
    BadValue,
    InUse,
    NotReady,
    NotUp,
    StartupFailed,
    TestbedError,
)
from torswitch.testbed.jmx import (
    DATANODE_ACTIVITY,
    NAMENODE_INFO,
    NAMESYSTEM_STATE,
    JmxError,
    JmxReader,
    read_counters,
)
from torswitch.testbed.state import RunDir, State, repo_root
from torswitch.testbed.tor import DEFAULT_CACHE_BYTES
from torswitch.testbed.units import format_rate

READY_TIMEOUT_S = 180.0
FORMAT_TIMEOUT_S = 120.0
#: ToR modes of `up --tor` (topology.TOR_MODES has the network side of each). kernel: a Linux
#: bridge with nftables interception; dpdk: the DPDK data plane steering to a tap.
TOR_CHOICES = ("kernel", "dpdk")


@dataclass(frozen=True)
class UpOptions:
    """What `up` builds. `rate_bps` in bit/s, `delay_ms` one-way in ms, `block_size` bytes.

    `tor`: the ToR mode (dpdk, the default, or kernel). `cache`: run the block engine in the
    ToR (False: plain switching, which only the kernel mode does); `cache_bytes`: its capacity. `engine_cmd`: a stand-in for the engine, in shell
    syntax (tests); None runs `torswitch engine`.
    """

    datanodes: int = 3
    rate_bps: int = 10**9
    delay_ms: float = 0.2
    block_size: int = 8 << 20
    replication: int = 1
    block_tokens: bool = False
    clients: int = topology.DEFAULT_CLIENTS
    tor: str = "dpdk"
    cache: bool = True
    cache_bytes: int = DEFAULT_CACHE_BYTES
    engine_cmd: str | None = None

    def validate(self) -> None:
        """Raise `BadValue` for a ToR mode or cache size `up` cannot build."""
        if self.tor not in TOR_CHOICES:
            raise BadValue(f"unknown ToR mode {self.tor!r} (known: {', '.join(TOR_CHOICES)})")
        if self.tor == "dpdk" and not self.cache:
            # The data plane service is recorded, started and stopped with the engine.
            raise BadValue("--tor dpdk runs the data plane beside the block engine: no --no-cache")
        if self.cache and self.cache_bytes < (1 << 20):
            raise BadValue(f"--cache-size {self.cache_bytes} B is below the minimum of 1 MiB")


@dataclass
class UpReport:
    """What `up` measured: seconds to ready, JVM RSS in bytes, and warnings to show."""

    state: State
    seconds: float
    jvm_rss_bytes: int
    warnings: list[str] = field(default_factory=list)


def check_prerequisites() -> tuple[str, str]:
    """Root, iproute2, tc and ethtool present; returns (java path, Hadoop lib dir).

    Raises `NotReady` naming what is missing.
    """
    if os.geteuid() != 0:
        raise NotReady("the testbed needs root (network namespaces); run it as root")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("ethtool", "ethtool")):
        if shutil.which(tool) is None:
            raise NotReady(f"{tool} not found: install the Debian package {package} (make deps)")
    return hadoop.find_java(), str(hadoop.hadoop_lib())


def topology_of(state: State) -> topology.Topology:
    """The topology a state file describes (re-planned from its options)."""
    return topology.plan(
        state.instance,
        datanodes=int(state.options["datanodes"]),
        clients=int(state.options.get("clients", topology.DEFAULT_CLIENTS)),
    )


def namenode_jmx(topo: topology.Topology) -> JmxReader:
    """JMX of the NameNode, read from its own namespace."""
    nn = topo.by_role("namenode")[0]
    return JmxReader(nn.namespace, str(nn.address), config.NN_HTTP_PORT)


def datanode_jmx(topo: topology.Topology, name: str) -> JmxReader:
    """JMX of DataNode `name`, read from its own namespace."""
    dn = topo.host(name)
    return JmxReader(dn.namespace, str(dn.address), config.DN_HTTP_PORT)


def _render(run: RunDir, topo: topology.Topology, opts: UpOptions, java: str, lib: str) -> None:
    """Write every conf dir, hosts file and the hdfs launcher into the run directory."""
    template_dir = repo_root() / "hadoop-conf"
    settings = config.ClusterSettings(opts.block_size, opts.replication, opts.block_tokens)
    conf_root, data_root = run.path / "conf", run.path / "data"
    processes = [(h.name, h) for h in topo.hosts if h.role in ("namenode", "datanode")]
    processes.append(("client", topo.by_role("client")[0]))
    for process, host in processes:
        values = config.process_values(
            topo, settings, process=process, host=host, conf_root=conf_root, data_root=data_root
        )
        config.write_conf_dir(template_dir, run.conf_dir(process), values)
    for h in topo.hosts:
        path = run.hosts_file(h.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config.hosts_file_text(topo, h))
    launcher = run.bin_dir / "hdfs"
    launcher.write_text(
        hadoop.launcher_script(
            hadoop.LauncherPaths(
                java=java,
                lib=Path(lib),
                client_conf=run.conf_dir("client"),
                hosts_dir=run.path / "hosts",
                instance=topo.instance,
            )
        )
    )
    launcher.chmod(0o755)
    # `torswitch` itself, so `testbed exec c1 -- torswitch hint ...` runs this checkout's.
    own = run.bin_dir / "torswitch"
    own.write_text(
        "#!/bin/sh\n# torswitch of this checkout, written by `torswitch testbed up`.\n"
        f"exec {shlex.quote(sys.executable)} -m torswitch \"$@\"\n"
    )
    own.chmod(0o755)


def _daemon_argv(
    run: RunDir,
    topo: topology.Topology,
    java: str,
    lib: str,
    process: str,
    role: str,
    main_class: str,
    args: tuple[str, ...] = (),
) -> list[str]:
    """The java command line of `process` (its conf dir, hosts file and log)."""
    return hadoop.java_argv(
        java=java,
        role=role,
        instance=topo.instance,
        process=process,
        conf_dir=run.conf_dir(process),
        hosts_file=run.hosts_file(topo.host(process).name),
        lib=Path(lib),
        main_class=main_class,
        args=args,
        log_dir=run.log_dir,
    )


def _wait_ready(
    run: RunDir,
    state: State,
    topo: topology.Topology,
    on_live: Callable[[int], None],
    timeout: float = READY_TIMEOUT_S,
) -> None:
    """Poll the NameNode until all DataNodes are live and safe mode is off.

    `on_live` is told the live count whenever it changes. Raises `StartupFailed` if a daemon
    exits or `timeout` (seconds) passes.
    """
    jmx = namenode_jmx(topo)
    want = len(topo.by_role("datanode"))
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        for record in state.daemons:
            if not hadoop.is_running(record, state.instance):
                log = run.log_dir / f"{record.name}.log"
                out = run.log_dir / f"{record.name}.out"
                raise StartupFailed(
                    f"{record.name} (pid {record.pid}) exited during start-up; see {log} and "
                    f"{out}:\n{hadoop.tail(log) or hadoop.tail(out)}"
                )
        try:
            live = int(jmx.bean(NAMESYSTEM_STATE).get("NumLiveDataNodes", 0))
            if live != last:
                on_live(live)
                last = live
            if live >= want and jmx.bean(NAMENODE_INFO).get("Safemode", "x") == "":
                return
        except JmxError:
            pass  # the NameNode's HTTP server is not listening yet
        if time.monotonic() > deadline:
            raise StartupFailed(
                f"only {max(last, 0)} of {want} DataNodes live after {timeout:.0f} s; "
                f"see the logs in {run.log_dir}"
            )
        time.sleep(0.25)


def up(
    instance: str,
    opts: UpOptions,
    *,
    progress: bool = True,
    owner_pid: int | None = None,
    run: RunDir | None = None,
) -> UpReport:
    """Build and start testbed `instance`; returns what was measured.

    `owner_pid` marks the process that owns the instance (the pytest session), so that
    another session can tell a live instance from a stale one. Raises `AlreadyUp` if any part
    of the instance exists, `NotReady` if a prerequisite is missing, `BadValue`/`ConfigError`
    for bad options, and `StartupFailed` if a step fails (after tearing down what it built).
    """
    run = run or RunDir(instance)
    topo = topology.plan(instance, opts.datanodes, opts.clients)
    opts.validate()
    config.ClusterSettings(opts.block_size, opts.replication, opts.block_tokens).validate(opts.datanodes)
    shaping = topology.Shaping(opts.rate_bps, opts.delay_ms)
    topology.shaping_commands(topo, shaping)  # validates before anything is built
    with run.lock():
        java, lib = check_prerequisites()
        leftovers = topology.instance_namespaces(instance)
        jvms = hadoop.testbed_jvms(instance)
        if run.state_file.exists() or leftovers or jvms:
            raise AlreadyUp(
                f"testbed {instance!r} is already up (or was not taken down: "
                f"{len(leftovers)} namespace(s), {len(jvms)} JVM(s)); run "
                f"`torswitch testbed down --instance {instance}` first"
            )
        steps = 6 + opts.datanodes + (1 if opts.cache else 0)
        bar = tqdm(total=steps, desc="network", unit="step", disable=not progress, leave=False)
        started = time.monotonic()
        try:
            return _up_locked(run, topo, opts, shaping, java, lib, owner_pid, bar, started)
        except BaseException:
            bar.close()
            _teardown(instance, run)
            raise
        finally:
            bar.close()


def _up_locked(
    run: RunDir,
    topo: topology.Topology,
    opts: UpOptions,
    shaping: topology.Shaping,
    java: str,
    lib: str,
    owner_pid: int | None,
    bar: tqdm[Any],
    started: float,
) -> UpReport:
    warnings: list[str] = []
    run.prepare()
    state = State(
        instance=topo.instance,
        started_at=time.time(),
        options={
            "datanodes": opts.datanodes,
            "clients": opts.clients,
            "block_size": opts.block_size,
            "replication": opts.replication,
            "block_tokens": opts.block_tokens,
            "uplink_rate_bps": opts.rate_bps,
            "uplink_delay_ms": opts.delay_ms,
            "tor": opts.tor,
            "cache": opts.cache,
            "cache_bytes": opts.cache_bytes if opts.cache else 0,
        },
        hosts=[state_host(h) for h in topo.hosts],
        java=java,
        hadoop_lib=lib,
        owner_pid=owner_pid,
    )
    run.save(state)
    topology.apply(topology.build_commands(topo, opts.tor))
    shaper = topology.apply_shaping(topo, shaping)
    state.options["shaper"] = shaper
    if shaper != "netem" and opts.delay_ms > 0:
        warnings.append(
            f"this kernel has no netem qdisc: the uplink is rate-limited to "
            f"{format_rate(opts.rate_bps)} (tbf) but its {opts.delay_ms:g} ms delay is not "
            "emulated"
        )
    bar.update()
    bar.set_description("configuration")
    _render(run, topo, opts, java, lib)
    run.save(state)
    bar.update()

    bar.set_description("format NameNode")
    nn = topo.by_role("namenode")[0]
    fmt = _daemon_argv(
        run,
        topo,
        java,
        lib,
        nn.name,
        "namenode",
        hadoop.NAMENODE_CLASS,
        ("-format", "-force", "-nonInteractive", "-clusterid", f"testbed-{topo.instance}"),
    )
    hadoop.run_tool(fmt, nn.namespace, run.log_dir / "format.out", FORMAT_TIMEOUT_S)
    bar.update()

    bar.set_description("start daemons")
    for host in [nn, *topo.by_role("datanode")]:
        role = host.role
        main = hadoop.NAMENODE_CLASS if role == "namenode" else hadoop.DATANODE_CLASS
        argv = _daemon_argv(run, topo, java, lib, host.name, role, main)
        state.daemons.append(
            hadoop.start_daemon(
                argv,
                host.namespace,
                run.log_dir / f"{host.name}.out",
                name=host.name,
                host=host.name,
                main_class=main,
            )
        )
        run.save(state)
    bar.update()

    want = opts.datanodes
    bar.set_description(f"DataNodes live 0/{want}")
    done = [0]

    def on_live(n: int) -> None:
        bar.set_description(f"DataNodes live {n}/{want}")
        if n > done[0]:
            bar.update(min(n, want) - done[0])
            done[0] = min(n, want)

    _wait_ready(run, state, topo, on_live)
    bar.set_description("block directory")
    bar.update(max(0, (bar.total or 0) - (2 if opts.cache else 1) - bar.n))
    start_directory(run, state, topo)
    if opts.cache:
        bar.set_description("block engine")
        bar.update()
        start_engine(run, state, topo, opts.cache_bytes, opts.engine_cmd)
        if opts.engine_cmd is None:
            # The engine registers at once; its first full block report follows.
            assert state.directory is not None
            blockdir.wait_ready(run, topo, state.directory["pid"], blockdir.SWITCH_ID)
    bar.update((bar.total or 0) - bar.n)
    seconds = time.monotonic() - started
    rss = sum(hadoop.rss_bytes(d.pid) for d in state.daemons)
    state.ready_seconds = round(seconds, 2)
    state.jvm_rss_bytes = rss
    run.save(state)
    return UpReport(state=state, seconds=seconds, jvm_rss_bytes=rss, warnings=warnings)


def tor_mode(state: State) -> str:
    """The ToR mode a state file records (kernel for states written before there were two)."""
    return str(state.options.get("tor", "kernel"))


def start_engine(
    run: RunDir,
    state: State,
    topo: topology.Topology,
    cache_bytes: int,
    engine_cmd: str | None = None,
    timeout: float = tor.START_TIMEOUT_S,
) -> dict[str, Any]:
    """Start the ToR's engine supervisor and wait until its interception is on. In dpdk mode
    the data plane service is started first, unless it runs already (it keeps running while
    the supervisor is stopped: the ToR keeps switching).

    Records it in `state` (saved). Returns the supervisor's status. Raises `StartupFailed`
    (the supervisor is then stopped again, its logs kept) if it does not get there in
    `timeout` seconds.
    """
    tor.write_config(
        run,
        cache_bytes,
        directory=state.directory["address"] if state.directory else None,
        rack_hosts=tuple(
            n for h in topo.by_role("client") for n in (h.name, h.address) if n is not None
        ),
    )
    mode = tor_mode(state)
    record = {
        "supervisor_pid": None,
        "engine_cmd": engine_cmd,
        "cache_dir": str(tor.cache_dir(topo.instance)),
        "cache_bytes": cache_bytes,
    }
    if mode == "dpdk":
        record["dataplane_pid"] = start_dataplane(run, state, topo, record, timeout)
    pid = tor.start(run, topo, engine_cmd, mode)
    state.engine = {**record, "supervisor_pid": pid}
    run.save(state)
    try:
        return tor.wait_intercepting(run, topo, pid, timeout=timeout, mode=mode)
    except BaseException:
        stop_engine(run, state)
        raise


def start_dataplane(
    run: RunDir,
    state: State,
    topo: topology.Topology,
    record: dict[str, Any],
    timeout: float = tor.START_TIMEOUT_S,
) -> int:
    """The ToR's data plane service (dpdk mode): the running one, or a new one started and
    waited for (recorded in `state` at once, with the rest of `record`, and saved). Returns
    its PID. Raises `StartupFailed` (a new one is stopped again, its logs kept)."""
    old = state.engine.get("dataplane_pid") if state.engine else None
    if tor.is_dataplane_service(run, old):
        assert old is not None
        return int(old)
    pid = tor.start_dataplane(run, topo)
    state.engine = {**(state.engine or record), "dataplane_pid": pid}
    run.save(state)
    try:
        tor.wait_dataplane(run, pid, timeout)
    except BaseException:
        stop_dataplane(run, state)
        raise
    return pid


def stop_dataplane(run: RunDir, state: State) -> bool:
    """Stop the ToR's data plane service (the rack is cut off until it runs again). Returns
    whether it was running."""
    if state.engine is None:
        return False
    was = tor.stop_dataplane(run, state.engine.get("dataplane_pid"))
    state.engine["dataplane_pid"] = None
    run.save(state)
    return was


def start_directory(
    run: RunDir,
    state: State,
    topo: topology.Topology,
    wait_switch: str = "",
    timeout: float = blockdir.START_TIMEOUT_S,
) -> dict[str, Any]:
    """Start the block directory in the NameNode's namespace and wait until it answers (and,
    with `wait_switch`, lists that ToR live). Records it in `state` (saved); returns its Status.
    Raises `StartupFailed` (the process is stopped again, its log kept)."""
    pid = blockdir.start(run, topo)
    state.directory = {"pid": pid, "address": blockdir.address(topo)}
    run.save(state)
    try:
        return blockdir.wait_ready(run, topo, pid, wait_switch, timeout)
    except BaseException:
        stop_directory(run, state)
        raise


def stop_directory(run: RunDir, state: State) -> bool:
    """Stop the block directory (its plans are lost; the ToRs keep their pins). Returns
    whether it was running."""
    if state.directory is None:
        return False
    was = blockdir.stop(run, state.directory.get("pid"))
    state.directory["pid"] = None
    run.save(state)
    return was


def stop_engine(run: RunDir, state: State) -> bool:
    """Stop the ToR's engine supervisor (rules removed, engine stopped); the cache stays.
    Returns whether it was running."""
    if state.engine is None:
        return False
    was = tor.stop(run, state.engine.get("supervisor_pid"))
    state.engine["supervisor_pid"] = None
    run.save(state)
    return was


@dataclass
class DownReport:
    """What `down` found and removed."""

    jvms_stopped: int = 0
    jvms_killed: int = 0
    other_processes: int = 0
    namespaces_removed: list[str] = field(default_factory=list)
    engine_stopped: bool = False
    directory_stopped: bool = False
    cache_removed: bool = False

    @property
    def was_up(self) -> bool:
        return bool(
            self.jvms_stopped
            or self.other_processes
            or self.namespaces_removed
            or self.engine_stopped
            or self.directory_stopped
            or self.cache_removed
        )


def _teardown(instance: str, run: RunDir) -> DownReport:
    report = DownReport()
    try:
        state: State | None = run.load()
    except NotUp:
        state = None
    if state is not None and state.engine is not None:
        # First, while the DataNodes still run: rules off, engine stopped cleanly; then the
        # data plane (dpdk mode), in the reverse order of their start.
        report.engine_stopped = tor.stop(run, state.engine.get("supervisor_pid"))
        tor.stop_dataplane(run, state.engine.get("dataplane_pid"))
    if state is not None and state.directory is not None:
        report.directory_stopped = blockdir.stop(run, state.directory.get("pid"))
    pids: set[int] = set(hadoop.testbed_jvms(instance))
    if state is not None:
        pids |= {d.pid for d in state.daemons if hadoop.is_running(d, instance)}
    report.jvms_stopped = len(pids)
    report.jvms_killed = len(hadoop.stop_pids(pids))
    namespaces = topology.instance_namespaces(instance)
    # Anything else still inside our namespaces (a shell from `testbed exec`, a hung client)
    # would keep the namespace, and so its veths, alive after `ip netns del`.
    strays = {pid for ns in namespaces for pid in netns.pids(ns)} - {os.getpid()}
    report.other_processes = len(strays)
    hadoop.stop_pids(strays, grace=3.0)
    for ns in namespaces:
        netns.delete(ns)
        report.namespaces_removed.append(ns)
    # A data plane that was killed (not stopped) leaves its EAL runtime directory.
    tor.remove_eal_runtime(topology.plan(instance))
    left = topology.instance_namespaces(instance)
    if left:
        raise TestbedError(f"could not remove namespace(s) {', '.join(left)}")
    report.cache_removed = tor.remove_cache(instance)
    run.forget()
    return report


def reclaim(
    instance: str, owner_alive: Callable[[int | None], bool], *, run: RunDir | None = None
) -> DownReport:
    """Tear down `instance` unless its recorded owner is still alive.

    For test sessions: an instance left by a crashed session is removed, one that a live
    session owns is not. The check and the teardown happen under the instance lock, so a
    session that has just brought the instance up is never taken down. Raises `InUse` if the
    owner is alive or another process holds the lock.
    """
    run = run or RunDir(instance)
    with run.lock():
        try:
            owner = run.load().owner_pid
        except NotUp:
            owner = None
        if owner is not None and owner_alive(owner):
            raise InUse(f"testbed {instance!r} belongs to the running process {owner}")
        return _teardown(instance, run)


def down(instance: str, *, run: RunDir | None = None) -> DownReport:
    """Stop everything of `instance` and remove its namespaces. Idempotent.

    Raises `InUse` if another process is starting or stopping the same instance, and
    `TestbedError` if a namespace cannot be removed.
    """
    run = run or RunDir(instance)
    with run.lock():
        return _teardown(instance, run)


@dataclass
class StatusReport:
    """Everything `status` shows; `problems` is empty when the instance is healthy."""

    instance: str
    run_dir: str
    hosts: list[dict[str, Any]]
    daemons: list[dict[str, Any]]
    live_datanodes: int | None
    safe_mode: str | None
    uplink: dict[str, Any] | None
    datanode_reads: dict[str, dict[str, int]]
    options: dict[str, Any]
    ready_seconds: float | None
    jvm_rss_bytes: int
    problems: list[str]
    engine: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    directory: dict[str, Any] = field(default_factory=lambda: {"enabled": False})

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def status(instance: str, *, run: RunDir | None = None) -> StatusReport:
    """Inspect `instance`: namespaces, daemons, live DataNodes, read counters, shaping.

    Raises `NotUp` if it has no state at all; a partly broken instance is reported with its
    `problems` listed instead.
    """
    run = run or RunDir(instance)
    state = run.load()
    topo = topology_of(state)
    problems: list[str] = []
    hosts = []
    for h in topo.hosts:
        present = netns.exists(h.namespace)
        if not present:
            problems.append(f"namespace {h.namespace} is missing")
        hosts.append({**state_host(h), "namespace_present": present})
    daemons = []
    rss = 0
    for d in state.daemons:
        running = hadoop.is_running(d, instance)
        if not running:
            problems.append(f"{d.name} (pid {d.pid}) is not running")
        mem = hadoop.rss_bytes(d.pid) if running else 0
        rss += mem
        daemons.append(
            {"name": d.name, "host": d.host, "pid": d.pid, "running": running, "rss_bytes": mem}
        )
    live: int | None = None
    safe_mode: str | None = None
    try:
        jmx = namenode_jmx(topo)
        live = int(jmx.bean(NAMESYSTEM_STATE).get("NumLiveDataNodes", 0))
        safe_mode = str(jmx.bean(NAMENODE_INFO).get("Safemode", ""))
        want = len(topo.by_role("datanode"))
        if live < want:
            problems.append(f"only {live} of {want} DataNodes live")
    except (JmxError, FileNotFoundError) as exc:
        problems.append(f"NameNode JMX unreachable: {exc}")
    reads: dict[str, dict[str, int]] = {}
    for dn in topo.by_role("datanode"):
        try:
            reads[dn.name] = read_counters(datanode_jmx(topo, dn.name).bean(DATANODE_ACTIVITY))
        except (JmxError, FileNotFoundError) as exc:
            problems.append(f"{dn.name} JMX unreachable: {exc}")
    engine = tor.report(run, topo, state.engine, tor_mode(state))
    if engine["enabled"]:
        if "dataplane" in engine and not engine["dataplane"]["pid"]:
            problems.append("the ToR's data plane is not running: the rack is cut off")
        if not engine["supervisor_running"]:
            problems.append("the ToR's engine supervisor (torswitch run) is not running")
        elif not engine["interception"]["active"]:
            problems.append(
                f"the ToR's interception is off (engine {engine['phase']}): reads bypass the cache"
            )
    directory = blockdir.report(run, topo, state.directory)
    if directory["enabled"]:
        if not directory["running"]:
            problems.append("the block directory (torswitch directory) is not running")
        elif directory["error"]:
            problems.append(f"the block directory does not answer: {directory['error']}")
        elif (
            engine["enabled"]
            and engine.get("supervisor_running")
            and not engine.get("engine_cmd")
            and not any(
                s["switch_id"] == blockdir.SWITCH_ID and s["live"] for s in directory["switches"]
            )
        ):
            problems.append(f"{blockdir.SWITCH_ID} is not registered live with the directory")
    shaped = topology.read_shaping(topo)
    uplink = (
        {"shaper": shaped[0], "rate_bps": shaped[1].rate_bps, "delay_ms": shaped[1].delay_ms}
        if shaped
        else None
    )
    return StatusReport(
        instance=instance,
        run_dir=str(run.path),
        hosts=hosts,
        daemons=daemons,
        live_datanodes=live,
        safe_mode=safe_mode,
        uplink=uplink,
        datanode_reads=reads,
        options=state.options,
        ready_seconds=state.ready_seconds,
        jvm_rss_bytes=rss,
        problems=problems,
        engine=engine,
        directory=directory,
    )


def state_host(h: topology.Host) -> dict[str, Any]:
    """A host as plain data."""
    return {
        "name": h.name,
        "role": h.role,
        "namespace": h.namespace,
        "address": h.address,
        "rack": h.rack,
    }
