"""`Testbed`: a handle on a running instance, for tests, benchmarks and `testbed exec`.

It is built from the instance's state file alone, so any process can attach to an instance
that another one started (``Testbed.attach("b4")``). Commands run in a host's namespace with
the Hadoop client environment of `client_env`: ``hdfs`` on PATH (Hadoop's own tools through
the run directory's launcher) and HADOOP_CONF_DIR pointing at the client configuration, which
hdfs-native reads as well.

It also controls the ToR's block engine (`torswitch run` in tor-a, testbed.tor): status, stop,
start, restart, kill, a stand-in in its place, its logs; the block directory (in nn,
testbed.directory): its address (TORSWITCH_DIRECTORY in the client environment), status,
stop, start, restart, log; and freezes DataNode JVMs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torswitch.testbed import config, hadoop, lifecycle, netns, topology, tor
from torswitch.testbed import directory as blockdir
from torswitch.testbed.errors import NotUp, TestbedError
from torswitch.testbed.jmx import DATANODE_ACTIVITY, JmxReader, read_counters
from torswitch.testbed.state import INSTANCE_ENV, RunDir, State

HOST_ENV = "TORSWITCH_TESTBED_HOST"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _rotation_order(path: Path) -> int:
    """Oldest first: dn1.log.2, dn1.log.1, dn1.log (log4j's RollingFileAppender names)."""
    suffix = path.name.rsplit(".log", 1)[1].lstrip(".")
    return -int(suffix) if suffix.isdigit() else 0


class Testbed:
    """A running testbed instance.

    Attributes: `instance`, `run_dir` (Path), `state` (`State`), `topology`, `hosts`
    (name -> `topology.Host`), `addresses` (name -> IPv4), `namenode_address`,
    `namenode_url` (``hdfs://198.18.2.10:8020``), `datanodes` (names), `clients` (names).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, state: State, run: RunDir) -> None:
        self.instance = state.instance
        self.state = state
        self.run_dir: Path = run.path
        self._run = run
        self.topology = lifecycle.topology_of(state)
        self.hosts = {h.name: h for h in self.topology.hosts}
        self.addresses = {h.name: str(h.address) for h in self.topology.hosts if h.address}
        nn = self.topology.by_role("namenode")[0]
        self.namenode_address = str(nn.address)
        self.namenode_url = f"hdfs://{nn.address}:{config.NN_RPC_PORT}"
        self.datanodes = [h.name for h in self.topology.by_role("datanode")]
        self.clients = [h.name for h in self.topology.by_role("client")]

    @classmethod
    def attach(cls, instance: str, run: RunDir | None = None) -> Testbed:
        """Attach to a running instance. Raises `NotUp` if it has no state."""
        run = run or RunDir(instance)
        return cls(run.load(), run)

    # ---- running things inside hosts ------------------------------------------------------

    def namespace(self, host: str) -> str:
        """Namespace name of `host`. Raises `BadValue` for an unknown host."""
        return self.topology.host(host).namespace

    @property
    def client_conf_dir(self) -> Path:
        """The Hadoop client configuration (core-site.xml, hdfs-site.xml)."""
        return self._run.conf_dir("client")

    @property
    def log_dir(self) -> Path:
        """Daemon logs: <process>.log (log4j, incl. clienttrace) and <process>.out."""
        return self._run.log_dir

    def client_env(self, host: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a command on `host`: `base` (default os.environ) plus the Hadoop
        client settings, the testbed's bin/ (hdfs, torswitch) first on PATH and, if the
        instance runs a block directory, TORSWITCH_DIRECTORY (its host:port)."""
        self.topology.host(host)  # validates the name
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self._run.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        env["HADOOP_CONF_DIR"] = str(self.client_conf_dir)
        env[INSTANCE_ENV] = self.instance
        env[HOST_ENV] = host
        if self.state.directory is not None:
            env[blockdir.ENV] = str(self.state.directory["address"])
        return env

    def argv(self, host: str, command: Sequence[str]) -> list[str]:
        """The argv that runs `command` inside `host`'s namespace."""
        return netns.exec_argv(self.namespace(host), command)

    def run(
        self,
        host: str,
        command: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 300.0,
        input: bytes | None = None,
        capture: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `command` on `host` with the client environment; output captured as bytes.

        `timeout` in seconds; `env` adds variables. With `check`, a non-zero exit raises
        `subprocess.CalledProcessError` (its stderr is kept for the test report).
        """
        full_env = self.client_env(host)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            self.argv(host, command),
            env=full_env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=capture,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(
                proc.returncode, proc.args, output=proc.stdout, stderr=proc.stderr
            )
        return proc

    def hdfs(self, host: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run Hadoop's ``hdfs`` tool on `host`, e.g. ``tb.hdfs("c1", "dfs", "-ls", "/")``.

        Keyword arguments as for `run`. Each call is a fresh JVM (about 1 to 3 s).
        """
        return self.run(host, ["hdfs", *args], **kwargs)

    def python(
        self, host: str, code: str, *args: str, **kwargs: Any
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a Python snippet on `host` with this interpreter (hdfs-native is importable).

        `args` become sys.argv[1:]. Keyword arguments as for `run`.
        """
        return self.run(host, [sys.executable, "-c", code, *args], **kwargs)

    def connect(self, host: str, address: str, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP socket from `host`'s namespace to `address`:`port`, usable in-process.

        `timeout` in seconds. Raises `OSError` if the connection fails.
        """
        return netns.connect(self.namespace(host), address, port, timeout)

    # ---- JMX ------------------------------------------------------------------------------

    def jmx(self, host: str) -> JmxReader:
        """JMX reader of the NameNode (``nn``) or a DataNode (``dn1`` ...), read in its own
        namespace so the probe never crosses the ToR."""
        if host == "nn":
            return lifecycle.namenode_jmx(self.topology)
        return lifecycle.datanode_jmx(self.topology, host)

    def datanode_reads(self, name: str) -> dict[str, int]:
        """Read counters (BytesRead, BlocksRead, ReadBlockOpNumOps, TotalReadTime) of one
        DataNode, as of its last metrics refresh (at most 1 s old)."""
        return read_counters(self.jmx(name).bean(DATANODE_ACTIVITY))

    def all_datanode_reads(self) -> dict[str, dict[str, int]]:
        """`datanode_reads` of every DataNode, by name."""
        return {dn: self.datanode_reads(dn) for dn in self.datanodes}

    def settled_datanode_reads(
        self, quiet_s: float = 2.5, timeout: float = 20.0
    ) -> dict[str, dict[str, int]]:
        """All DataNodes' read counters once they stop changing for `quiet_s` seconds.

        Use after a read to get its final effect despite the metrics period. Raises
        `TimeoutError` if they keep changing for `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        last = self.all_datanode_reads()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.all_datanode_reads()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return now
        raise TimeoutError(f"DataNode read counters still changing after {timeout} s")

    def client_traces(self, datanode: str, op: str = "HDFS_READ") -> list[dict[str, str]]:
        """The DataNode's client-trace records of operation `op` so far, oldest first.

        One record per completed transfer, written as it completes (no metrics period), with
        the fields of Hadoop's DN_CLIENTTRACE_FORMAT as strings: ``src``, ``dest`` (the
        client's ip:port for reads, with a leading /), ``bytes``, ``op``, ``cliID``,
        ``offset``, ``blockid`` (``BP-...:blk_<id>_<genstamp>``), ``duration(ns)`` ...
        Raises `BadValue` for an unknown DataNode.
        """
        self.topology.host(datanode)
        logs = sorted(self.log_dir.glob(f"{datanode}.log*"), key=_rotation_order)
        records = []
        for log in logs:
            for line in log.read_text(errors="replace").splitlines():
                if "clienttrace: " not in line or f"op: {op}," not in line:
                    continue
                body = line.split("clienttrace: ", 1)[1]
                fields = (part.split(": ", 1) for part in body.split(", "))
                records.append({kv[0]: kv[1] for kv in fields if len(kv) == 2})
        return records

    # ---- uplink ---------------------------------------------------------------------------

    @property
    def shaping(self) -> topology.Shaping:
        """The uplink shaping `up` configured."""
        return topology.Shaping(
            int(self.state.options["uplink_rate_bps"]),
            float(self.state.options["uplink_delay_ms"]),
        )

    def set_uplink(self, rate_bps: int | None = None, delay_ms: float | None = None) -> None:
        """Re-shape the uplink now (`rate_bps` bit/s, `delay_ms` ms; None keeps `up`'s)."""
        base = self.shaping
        new = topology.Shaping(
            base.rate_bps if rate_bps is None else rate_bps,
            base.delay_ms if delay_ms is None else delay_ms,
        )
        topology.apply_shaping(self.topology, new, self.state.options.get("shaper"))

    @contextlib.contextmanager
    def uplink(self, rate_bps: int | None = None, delay_ms: float | None = None) -> Iterator[None]:
        """Context manager: shape the uplink differently inside, restore `up`'s on exit."""
        self.set_uplink(rate_bps, delay_ms)
        try:
            yield
        finally:
            self.set_uplink()

    # ---- the ToR's block engine -----------------------------------------------------------

    @property
    def engine_enabled(self) -> bool:
        """Whether `up` started the block engine in the ToR (no --no-cache)."""
        return self.state.engine is not None

    @property
    def engine_config(self) -> Path:
        """The engine's config file (written by `up`, or by the first `start_engine`)."""
        return tor.config_path(self._run)

    @property
    def cache_dir(self) -> Path:
        """The engine's LMDB cache directory (tmpfs)."""
        return tor.cache_dir(self.instance)

    def engine_status(self) -> dict[str, Any]:
        """The engine as `testbed status` shows it: ``enabled``, ``supervisor_pid``,
        ``supervisor_running``, ``engine_pid`` (None while restarting), ``phase`` (starting,
        healthy, unhealthy, restarting, stopped), ``restarts``, ``last_exit``, and
        ``interception`` as nft reports it in tor-a (``installed``, ``active``,
        ``leased_ports``, ``flows``, ``counters`` with ``redirect``: connections sent to the
        engine so far)."""
        state = self._reload()
        return tor.report(self._run, self.topology, state.engine, lifecycle.tor_mode(state))

    def wait_engine(self, intercepting: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the interception is on (the engine healthy) or, with False, off.

        Returns `engine_status()`. Raises `NotUp` if the engine is not running under
        supervision, `TimeoutError` after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.engine_status()
            if not status.get("supervisor_running"):
                raise NotUp(f"testbed {self.instance!r}: the engine's supervisor is not running")
            if (
                status["interception"]["active"] == intercepting
                and (status["phase"] == "healthy") == intercepting
            ):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"interception not {'on' if intercepting else 'off'} after {timeout} s: "
                    f"{status}"
                )
            time.sleep(0.05)

    def start_engine(self, engine_cmd: str | None = None, timeout: float = 60.0) -> None:
        """Start `torswitch run` in tor-a and wait until it intercepts. `engine_cmd` runs a
        stand-in instead of `torswitch engine` (shell syntax). The cache size is `up`'s (1 GiB
        if `up` had --no-cache). Raises `TestbedError` if it is already running."""
        with self._run.lock():
            state = self._reload()
            if state.engine and tor.is_supervisor(self._run, state.engine.get("supervisor_pid")):
                raise TestbedError(f"testbed {self.instance!r}: the engine is already running")
            size = int(state.options.get("cache_bytes") or tor.DEFAULT_CACHE_BYTES)
            lifecycle.start_engine(self._run, state, self.topology, size, engine_cmd, timeout)
            self.state = state

    def stop_engine(self) -> bool:
        """Stop `torswitch run` (interception removed, engine stopped; the cache stays).
        Returns whether it was running."""
        with self._run.lock():
            state = self._reload()
            stopped = lifecycle.stop_engine(self._run, state)
            self.state = state
            return stopped

    def restart_engine(self, engine_cmd: str | None = None, timeout: float = 60.0) -> None:
        """Stop and start `torswitch run` (and so the engine) again; waits until it
        intercepts. The cache persists across the restart."""
        self.stop_engine()
        self.start_engine(engine_cmd, timeout)

    @contextlib.contextmanager
    def without_engine(self) -> Iterator[None]:
        """Context manager: no engine and no interception inside (plain switching); the
        engine as before afterwards."""
        state = self._reload()
        was = state.engine is not None and tor.is_supervisor(
            self._run, state.engine.get("supervisor_pid")
        )
        cmd = state.engine.get("engine_cmd") if state.engine else None
        self.stop_engine()
        try:
            yield
        finally:
            if was:
                self.start_engine(cmd)

    @contextlib.contextmanager
    def engine_as(self, engine_cmd: str | None) -> Iterator[None]:
        """Context manager: inside, `torswitch run` supervises `engine_cmd` (None: the real
        engine); afterwards the engine is as before (or none, if there was none)."""
        state = self._reload()
        was = state.engine is not None and tor.is_supervisor(
            self._run, state.engine.get("supervisor_pid")
        )
        before = state.engine.get("engine_cmd") if state.engine else None
        self.restart_engine(engine_cmd)
        try:
            yield
        finally:
            self.stop_engine()
            if was:
                self.start_engine(before)

    def engine_pid(self) -> int | None:
        """PID of the engine process now (None while the supervisor restarts it)."""
        state = self._reload()
        sup = state.engine.get("supervisor_pid") if state.engine else None
        return tor.engine_pid(self._run, sup)

    def kill_engine(self, sig: int = signal.SIGKILL) -> int:
        """Send `sig` (default SIGKILL) to the engine process; the supervisor removes the
        interception and restarts the engine with back-off. Returns the PID signalled.
        Raises `NotUp` if no engine is running."""
        pid = self.engine_pid()
        if pid is None:
            raise NotUp(f"testbed {self.instance!r}: no engine process is running")
        os.kill(pid, sig)
        return pid

    def engine_log(self) -> str:
        """Everything the engine wrote (all its restarts, each after a ``---`` line)."""
        return _read(tor.engine_log(self._run))

    def supervisor_log(self) -> str:
        """What `torswitch run` logged: starts, exits, health, interception on/off."""
        return _read(tor.supervisor_log(self._run))

    # ---- the block directory --------------------------------------------------------------

    @property
    def directory_address(self) -> str | None:
        """host:port of the block directory (in nn), None if the instance runs none."""
        return str(self.state.directory["address"]) if self.state.directory else None

    def directory_status(self) -> dict[str, Any]:
        """The directory as `testbed status` shows it: ``enabled``, ``pid``, ``running``,
        ``address``, ``switches`` (switch_id, rack, agent_address, live, blocks,
        capacity_bytes, used_bytes, pinned_bytes), ``plans``, ``error``."""
        return blockdir.report(self._run, self.topology, self._reload().directory)

    def wait_directory(self, switch: str = blockdir.SWITCH_ID, timeout: float = 60.0) -> None:
        """Wait until the directory answers and lists `switch` live (""/None: just answers).
        Raises `NotUp` if it is not running, `StartupFailed` after `timeout` seconds."""
        state = self._reload()
        pid = state.directory.get("pid") if state.directory else None
        if not blockdir.is_directory(self._run, pid):
            raise NotUp(f"testbed {self.instance!r}: the block directory is not running")
        assert pid is not None
        blockdir.wait_ready(self._run, self.topology, pid, switch or "", timeout)

    def stop_directory(self) -> bool:
        """Stop the block directory (its plans are lost; ToRs keep their cache and pins).
        Returns whether it was running."""
        with self._run.lock():
            state = self._reload()
            stopped = lifecycle.stop_directory(self._run, state)
            self.state = state
            return stopped

    def start_directory(self, wait_switch: str | None = None, timeout: float = 60.0) -> None:
        """Start the block directory again at the same address and wait until it answers and,
        unless `wait_switch` is "", lists that ToR (default: tor-a, when the engine runs)
        live again (registered anew, full block report sent). Raises `TestbedError` if it is
        already running."""
        with self._run.lock():
            state = self._reload()
            if state.directory and blockdir.is_directory(self._run, state.directory.get("pid")):
                raise TestbedError(f"testbed {self.instance!r}: the directory is already running")
            if wait_switch is None:
                engine = state.engine or {}
                real = tor.is_supervisor(self._run, engine.get("supervisor_pid")) and not (
                    engine.get("engine_cmd")
                )
                wait_switch = blockdir.SWITCH_ID if real else ""
            lifecycle.start_directory(self._run, state, self.topology, wait_switch, timeout)
            self.state = state

    def restart_directory(self, timeout: float = 60.0) -> None:
        """Stop and start the block directory; returns once the ToR has registered again."""
        self.stop_directory()
        self.start_directory(timeout=timeout)

    def directory_log(self) -> str:
        """Everything the directory wrote (all its restarts)."""
        return _read(blockdir.log_path(self._run))

    # ---- DataNode processes ---------------------------------------------------------------

    def datanode_pid(self, name: str) -> int:
        """PID of DataNode `name`'s JVM. Raises `NotUp` if it is not running."""
        for d in self.state.daemons:
            if d.name == name:
                if not hadoop.is_running(d, self.instance):
                    raise NotUp(f"{name} (pid {d.pid}) is not running")
                return d.pid
        raise NotUp(f"no DataNode {name!r} in testbed {self.instance!r}")

    def stop_datanode(self, name: str) -> int:
        """Freeze DataNode `name` (SIGSTOP): its kernel still accepts connections, the JVM
        answers nothing. Returns its PID. Undo with `cont_datanode`."""
        pid = self.datanode_pid(name)
        os.kill(pid, signal.SIGSTOP)
        return pid

    def cont_datanode(self, name: str) -> int:
        """Let a frozen DataNode run again (SIGCONT). Returns its PID."""
        pid = self.datanode_pid(name)
        os.kill(pid, signal.SIGCONT)
        return pid

    @contextlib.contextmanager
    def frozen_datanode(self, name: str) -> Iterator[int]:
        """Context manager: DataNode `name` frozen inside (yields its PID), running again
        after, whatever happens."""
        pid = self.stop_datanode(name)
        try:
            yield pid
        finally:
            os.kill(pid, signal.SIGCONT)

    def _reload(self) -> State:
        """The state file as it is now (the engine's record changes when it is restarted)."""
        self.state = self._run.load()
        return self.state

    # ---- health ---------------------------------------------------------------------------

    def status(self) -> lifecycle.StatusReport:
        """Full status report (see `torswitch testbed status`)."""
        return lifecycle.status(self.instance, run=self._run)

    def check_up(self) -> None:
        """Raise `NotUp` listing the problems if the instance is not fully healthy."""
        report = self.status()
        if report.problems:
            raise NotUp(f"testbed {self.instance!r}: " + "; ".join(report.problems))
