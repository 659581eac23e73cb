"""Start, supervise and read the DPDK data plane (native/dataplane, `tsw-dataplane`).

The data plane is its own process (Python never hosts DPDK): this module builds its command
line from a DataplaneConfig, starts it (optionally inside a network namespace through
`ip netns exec`), waits for its readiness signal (the first stats file), notices when it dies,
stops it with SIGTERM (SIGKILL after a grace period) and parses its counters.

Counters come from the stats file the process rewrites atomically every `stats_interval_ms`, in
Prometheus text format. Their names and help texts are generated in C from the X-macro table
native/dataplane/dp_counters.h; nothing here lists them, so the two sides cannot drift.

Port numbering: DPDK numbers virtual devices in command-line order, so rack ports are 0..n-1,
then the uplink, then the tap. Counters are keyed by the interface each port is attached to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from torswitch.errors import TorswitchError

DEFAULT_BINARY = Path(__file__).resolve().parent.parent / "native/dataplane/build/tsw-dataplane"
METRIC_PREFIX = "tsw_dataplane_"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class DataplaneError(TorswitchError):
    """The data plane could not be started, died, or its counters could not be read."""


@dataclasses.dataclass(frozen=True)
class DataplaneConfig:
    """How to run one data-plane process.

    rack_ifaces: host-facing interfaces (af_packet ports), in port order.
    uplink_iface: the interface towards the spine, if any (switched, never steered).
    tap_iface: name of the kernel interface the exception (net_tap) port creates, if any.
    steer_tcp_ports: IPv4 TCP destination ports steered from rack ports to the tap.
    netns: network namespace to run in (through `ip netns exec`), None for the current one.
    stats_interval_ms: period of the stats file, in milliseconds.
    no_backoff: busy-poll even when idle (benchmarks only: it burns a whole core).
    """

    rack_ifaces: Sequence[str]
    uplink_iface: str | None = None
    tap_iface: str | None = None
    steer_tcp_ports: Sequence[int] = ()
    netns: str | None = None
    lcore: int = 0
    memory_mb: int = 256
    stats_interval_ms: int = 200
    mac_age_s: int | None = None
    no_backoff: bool = False
    binary: Path = DEFAULT_BINARY
    file_prefix: str = "tsw-dp"

    def __post_init__(self) -> None:
        if not self.rack_ifaces:
            raise ValueError("the data plane needs at least one rack interface")
        if len(self.steer_tcp_ports) > 8:
            raise ValueError("at most 8 steered TCP ports")
        for port in self.steer_tcp_ports:
            if not 0 < port < 65536:
                raise ValueError(f"invalid TCP port {port}")
        if self.steer_tcp_ports and self.tap_iface is None:
            raise ValueError("steering TCP ports needs a tap interface")

    def port_ifaces(self) -> dict[str, str]:
        """DPDK device name -> interface name, for every port."""
        names = {f"net_af_packet{i}": iface for i, iface in enumerate(self.rack_ifaces)}
        if self.uplink_iface is not None:
            names[f"net_af_packet{len(self.rack_ifaces)}"] = self.uplink_iface
        if self.tap_iface is not None:
            names["net_tap0"] = self.tap_iface
        return names


def build_argv(config: DataplaneConfig, stats_file: Path) -> list[str]:
    """The full command line (including `ip netns exec` when config.netns is set)."""
    argv: list[str] = []
    if config.netns is not None:
        argv += ["ip", "netns", "exec", config.netns]
    argv += [
        str(config.binary),
        "-l", str(config.lcore),
        # No hugepages, no PCI scan, no shared runtime config: verified on this machine kind
        # (tor-interception.md, section B).
        "--no-huge", "-m", str(config.memory_mb), "--no-pci", "--no-shconf",
        "--file-prefix", config.file_prefix,
    ]
    ifaces = list(config.rack_ifaces)
    if config.uplink_iface is not None:
        ifaces.append(config.uplink_iface)
    for i, iface in enumerate(ifaces):
        argv += ["--vdev", f"net_af_packet{i},iface={iface}"]
    if config.tap_iface is not None:
        argv += ["--vdev", f"net_tap0,iface={config.tap_iface}"]
    argv += ["--", "--stats-file", str(stats_file),
             "--stats-interval-ms", str(config.stats_interval_ms)]
    if config.uplink_iface is not None:
        argv += ["--uplink", str(len(config.rack_ifaces))]
    for port in config.steer_tcp_ports:
        argv += ["--steer-tcp-port", str(port)]
    if config.mac_age_s is not None:
        argv += ["--mac-age-s", str(config.mac_age_s)]
    if config.no_backoff:
        argv.append("--no-backoff")
    return argv


@dataclasses.dataclass
class Counters:
    """One snapshot of the data plane's counters.

    ports: interface (or DPDK device name when unknown) -> counter name -> value. Counter names
    drop the `tsw_dataplane_` prefix and the `_total` suffix (`rx_packets`, `steered`, ...).
    totals: the global counters (`mac_learned`, `idle_sleeps`, ...).
    """

    ports: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    totals: dict[str, int] = dataclasses.field(default_factory=dict)
    help: dict[str, str] = dataclasses.field(default_factory=dict)

    def port(self, name: str) -> dict[str, int]:
        """The counters of one port; raises DataplaneError if there is no such port."""
        try:
            return self.ports[name]
        except KeyError:
            raise DataplaneError(f"no port {name!r} in counters ({sorted(self.ports)})") from None

    def sum(self, counter: str) -> int:
        """The sum of one per-port counter over every port."""
        return sum(c.get(counter, 0) for c in self.ports.values())


def _short(metric: str) -> str:
    name = metric.removeprefix(METRIC_PREFIX)
    return name.removesuffix("_total")


def parse_counters(text: str, port_names: dict[str, str] | None = None) -> Counters:
    """Parse a stats file (Prometheus text). port_names maps DPDK device names to interfaces.

    Raises DataplaneError on a line that is neither a comment nor a sample.
    """
    names = port_names or {}
    out = Counters()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) == 4 and parts[1] == "HELP":
                out.help[_short(parts[2])] = parts[3]
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise DataplaneError(f"stats line {lineno}: cannot parse {line!r}")
        metric, labels_text, value_text = m.groups()
        try:
            value = int(value_text)
        except ValueError:
            raise DataplaneError(f"stats line {lineno}: bad value {value_text!r}") from None
        labels: dict[str, str] = dict(_LABEL.findall(labels_text or ""))
        if "name" in labels:
            key: str = names.get(labels["name"]) or labels["name"]
            out.ports.setdefault(key, {})[_short(metric)] = value
        else:
            out.totals[_short(metric)] = value
    return out


class Dataplane:
    """One supervised data-plane process. Use as a context manager, or start()/stop()."""

    def __init__(self, config: DataplaneConfig, workdir: Path | None = None) -> None:
        self.config = config
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="tsw-dp-")) if workdir is None else workdir
        self.stats_file = self.workdir / "stats.prom"
        self.log_file = self.workdir / "dataplane.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait (up to timeout seconds) for its first stats file.

        Raises DataplaneError with the tail of its log if it exits or is not ready in time.
        """
        if self._proc is not None:
            raise DataplaneError("data plane already started")
        if not os.access(self.config.binary, os.X_OK):
            raise DataplaneError(f"{self.config.binary} not built (run `make dataplane`)")
        self.stats_file.unlink(missing_ok=True)
        argv = build_argv(self.config, self.stats_file)
        with open(self.log_file, "wb") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.stats_file.exists():
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._proc = None
                self._remove_runtime_dir()
                raise DataplaneError(f"data plane exited with status {rc} during start-up:\n"
                                     + self.log_tail())
            if time.monotonic() > deadline:
                self.stop()
                raise DataplaneError(f"data plane not ready after {timeout}s:\n"
                                     + self.log_tail())
            time.sleep(0.05)

    def check(self) -> None:
        """Raise DataplaneError if the process is not running (it crashed or was killed)."""
        if self._proc is None:
            raise DataplaneError("data plane not started")
        rc = self._proc.poll()
        if rc is not None:
            raise DataplaneError(f"data plane died with status {rc}:\n" + self.log_tail())

    def counters(self) -> Counters:
        """The latest counters (at most stats_interval_ms old)."""
        try:
            text = self.stats_file.read_text()
        except FileNotFoundError:
            raise DataplaneError(f"no stats file {self.stats_file}") from None
        return parse_counters(text, self.config.port_ifaces())

    def wait_counters(self, newer_than: float | None = None) -> Counters:
        """Counters written after now (or after newer_than, a time.time() value)."""
        since = time.time() if newer_than is None else newer_than
        deadline = time.monotonic() + 5 + self.config.stats_interval_ms / 1000
        while time.monotonic() < deadline:
            self.check()
            try:
                if self.stats_file.stat().st_mtime > since:
                    return self.counters()
            except FileNotFoundError:
                pass
            time.sleep(self.config.stats_interval_ms / 4000)
        raise DataplaneError("stats file not refreshed")

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after grace seconds. Returns the exit status (None if not
        running). The final counters stay in stats_file."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._remove_runtime_dir()
        return proc.returncode

    def _remove_runtime_dir(self) -> None:
        # EAL leaves an empty runtime directory behind even with --no-shconf.
        with contextlib.suppress(OSError):
            (Path("/var/run/dpdk") / self.config.file_prefix).rmdir()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
