"""`Testbed`: a handle on a running instance, for tests, benchmarks and `testbed exec`.

It is built from the instance's state file alone, so any process can attach to an instance
that another one started (``Testbed.attach("b4")``). Commands run in a host's namespace with
the Hadoop client environment of `client_env`: ``hdfs`` on PATH (Hadoop's own tools through
the run directory's launcher) and HADOOP_CONF_DIR pointing at the client configuration, which
hdfs-native reads as well.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torswitch.testbed import config, lifecycle, netns, topology
from torswitch.testbed.errors import NotUp
from torswitch.testbed.jmx import DATANODE_ACTIVITY, JmxReader, read_counters
from torswitch.testbed.state import INSTANCE_ENV, RunDir, State

HOST_ENV = "TORSWITCH_TESTBED_HOST"


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
        client settings and the testbed's bin/ first on PATH."""
        self.topology.host(host)  # validates the name
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self._run.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        env["HADOOP_CONF_DIR"] = str(self.client_conf_dir)
        env[INSTANCE_ENV] = self.instance
        env[HOST_ENV] = host
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

    # ---- health ---------------------------------------------------------------------------

    def status(self) -> lifecycle.StatusReport:
        """Full status report (see `torswitch testbed status`)."""
        return lifecycle.status(self.instance, run=self._run)

    def check_up(self) -> None:
        """Raise `NotUp` listing the problems if the instance is not fully healthy."""
        report = self.status()
        if report.problems:
            raise NotUp(f"testbed {self.instance!r}: " + "; ".join(report.problems))
