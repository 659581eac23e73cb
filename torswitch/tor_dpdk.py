"""The DPDK-mode ToR (tor-interception.md, section B): the data plane as a service of its own,
and the block engine's supervisor steering through it.

In this mode the ToR's switch is the data plane (torswitch.dataplane), not a Linux bridge::

    rack ports (af_packet) ─┐                         ┌─ uplink (af_packet, through its qdisc)
                            ├── tsw-dataplane (L2) ───┤
                            │     rack IPv4 TCP to a transfer port, of a connection whose SYN
                            │     came while steering was on: Ethernet destination := tap MAC,
                            v     out of the tap port
                      tap (net_tap) in this namespace, holding the ToR's address
                            │  table ip torswitch_tap: iifname TAP tcp dport {9866}
                            v  -> redirect to :<engine port>
                      block engine (SO_ORIGINAL_DST), upstream connections from the ToR's
                      address leave through the tap and are switched like any other frame

Two processes, so that the rack keeps switching whatever happens to the engine::

    torswitch dataplane serve      DataplaneKeeper: runs tsw-dataplane, restarts it, gives
      (`serve`)                    its tap the ToR's address; status file; never steers
    torswitch run                  the engine's fail-open supervisor (torswitch.supervisor),
      --dataplane-control SOCK     attached to the service's control socket through a
                                   SteeringInterception over ControlSteering

* `DataplaneKeeper` keeps the data plane running: rack traffic depends on it, so a process
  that dies is restarted with back-off (0.5 s doubling to 10 s), and after each start the tap
  gets the ToR's address again (the tap interface is the process's and goes with it). The tap
  has a fixed MAC, so the rack's ARP caches stay right across restarts. The process gets
  SIGTERM if its keeper's process dies (no orphan holding the ports for a successor).
* `TapRedirect` is the nat rule on the tap, one nftables table installed and removed in single
  transactions.
* `SteeringInterception` is what the supervisor switches with the engine's health: on means the
  redirect in place and the data plane's steering on, as a lease the supervisor renews every
  second (`steering on LEASE_MS`); off means steering off, so new HDFS connections go straight
  to the DataNodes (fail-open). A supervisor that is killed or hangs stops renewing, and the
  data plane turns steering off by itself when the lease runs out. A data plane that restarts
  comes up with steering off; the supervisor's next renewal turns it back on.

Steering is per flow (native/dataplane/dp_flow.h): the data plane decides on a connection's SYN
and the rest of the connection follows, so flipping steering never moves an established
connection. That is why the redirect stays in place while steering is off: connections steered
before keep reaching the engine (if the engine is dead they fail, and the client's retry, a new
connection, goes direct). It is removed when the supervisor exits (`close`).

`torswitch run --dataplane` is the older owning mode, kept for a single-process ToR: the
supervisor runs the DataplaneKeeper itself as its companion, so stopping it stops the switch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from torswitch.dataplane import ControlClient, Dataplane, DataplaneConfig, DataplaneError
from torswitch.interception import InterceptionError

log = logging.getLogger(__name__)

TABLE_TAP = "torswitch_tap"
DEFAULT_TAP = "tswtap0"
_REDIRECT = "redirect"
_CMD_TIMEOUT_S = 10.0


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run ip or nft here; raises InterceptionError with its message on failure."""
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=_CMD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InterceptionError(f"`{' '.join(argv)}`: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise InterceptionError(f"`{' '.join(argv)}` failed ({proc.returncode}): {detail}")
    return proc.stdout


def discover_ports(exclude: Sequence[str]) -> list[str]:
    """The Ethernet interfaces of this namespace other than `exclude` (the uplinks and the tap),
    sorted: the default rack ports of a DPDK-mode ToR."""
    links = json.loads(_run(["ip", "-j", "link", "show"]) or "[]")
    return sorted(ln["ifname"] for ln in links
                  if ln.get("link_type") == "ether" and ln["ifname"] not in exclude)


# ---- the nat redirect on the tap --------------------------------------------------------------


def redirect_text(tap: str, transfer_ports: Sequence[int], engine_port: int,
                  engine_address: str | None = None) -> str:
    """The install transaction of the tap redirect (the table replaced whole)."""
    ports = "{ " + ", ".join(str(p) for p in transfer_ports) + " }"
    target = (f"redirect to :{engine_port}" if engine_address is None
              else f"dnat to {engine_address}:{engine_port}")
    return (
        f"table ip {TABLE_TAP}\n"
        f"delete table ip {TABLE_TAP}\n"
        f"table ip {TABLE_TAP} {{\n"
        f"\tchain prerouting {{\n"
        f"\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        f'\t\tiifname "{tap}" tcp dport {ports} counter {target} comment "{_REDIRECT}"\n'
        f"\t}}\n"
        f"}}\n"
    )


class TapRedirect:
    """Redirects TCP to the transfer ports arriving on the tap to the engine (this namespace).

    Only steered frames arrive on the tap with those destination ports, so the rule needs no
    mark. The caller must be in the ToR's namespace (`torswitch run --namespace-mode` checks).
    """

    def __init__(self, tap: str, transfer_ports: Sequence[int], engine_port: int,
                 engine_address: str | None = None) -> None:
        self.text = redirect_text(tap, transfer_ports, engine_port, engine_address)

    def install(self) -> None:
        _run(["nft", "-f", "-"], stdin=self.text)

    def remove(self) -> None:
        _run(["nft", "-f", "-"], stdin=f"table ip {TABLE_TAP}\ndelete table ip {TABLE_TAP}\n")

    def redirected(self) -> int | None:
        """Packets redirected so far, None if the table is not installed."""
        return redirect_counter(_run(["nft", "-j", "list", "ruleset"]))


def redirect_counter(listing_json: str) -> int | None:
    """The redirect rule's packet counter in `nft -j list ruleset` output, None if absent."""
    for item in json.loads(listing_json or "{}").get("nftables", []):
        rule = item.get("rule")
        if not rule or rule.get("table") != TABLE_TAP or rule.get("comment") != _REDIRECT:
            continue
        for expr in rule.get("expr", []):
            if isinstance(expr, dict) and "counter" in expr:
                return int(expr["counter"].get("packets", 0))
    return None


# ---- keeping the data plane up ----------------------------------------------------------------


def configure_tap(tap: str, address: str) -> None:
    """Give the tap (in this namespace) `address` (CIDR) and bring it up. Raises
    InterceptionError."""
    _run(["ip", "addr", "replace", address, "dev", tap])
    _run(["ip", "link", "set", tap, "up"])


@dataclasses.dataclass
class KeeperTiming:
    """Restart back-off of a dead data plane, in seconds."""

    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    backoff_reset_s: float = 30.0
    start_timeout_s: float = 20.0


class DataplaneKeeper:
    """Runs one data plane and restarts it when it dies; gives its tap `tap_address`.

    `poll` is called by the supervisor's loop (single thread); it never raises. `start`
    raises DataplaneError (first start only: a ToR that cannot switch at all should say so).
    `tap_setup(tap, address)` configures the tap after each start (tests replace it).
    """

    def __init__(self, config: DataplaneConfig, workdir: Path, tap_address: str,
                 wrapper: Sequence[str] = (), timing: KeeperTiming | None = None,
                 tap_setup: Callable[[str, str], None] = configure_tap) -> None:
        if config.tap_iface is None:
            raise ValueError("a DPDK-mode ToR needs a tap interface")
        # Steering starts off (the engine's health turns it on); the tap's MAC is fixed.
        self.config = dataclasses.replace(config, steering=False,
                                          tap_mac=config.tap_mac or "fixed")
        self.workdir = workdir
        self.tap_address = tap_address
        self.timing = timing or KeeperTiming()
        self.dataplane = Dataplane(self.config, workdir, wrapper=wrapper)
        self._tap_setup = tap_setup
        self.starts = 0
        self.last_exit: int | None = None
        self._running = False
        self._next_start = 0.0
        self._backoff = self.timing.backoff_initial_s
        self._up_since = 0.0

    @property
    def pid(self) -> int | None:
        return self.dataplane.pid if self._running else None

    def start(self) -> None:
        """Start the process and configure its tap. Raises DataplaneError (process stopped)."""
        self.dataplane.start(self.timing.start_timeout_s)
        try:
            self._tap_setup(str(self.config.tap_iface), self.tap_address)
        except InterceptionError as exc:
            self.dataplane.stop()
            raise DataplaneError(f"tap {self.config.tap_iface}: {exc}") from None
        self._running = True
        self._up_since = time.monotonic()
        self.starts += 1
        log.info("data plane running, pid %s (start %d)", self.dataplane.pid, self.starts)

    def poll(self) -> None:
        """Notice a dead process and restart it when its back-off is over."""
        now = time.monotonic()
        if self._running:
            try:
                self.dataplane.check()
                if now - self._up_since >= self.timing.backoff_reset_s:
                    self._backoff = self.timing.backoff_initial_s
                return
            except DataplaneError as exc:
                self._running = False
                self.last_exit = self.dataplane.stop()
                self._next_start = now + self._backoff
                log.error("%s\nrestarting the data plane in %.1f s", exc, self._backoff)
                self._backoff = min(self._backoff * 2, self.timing.backoff_max_s)
                return
        if now < self._next_start:
            return
        try:
            self.start()
        except DataplaneError as exc:
            self._next_start = time.monotonic() + self._backoff
            log.error("data plane restart failed (next try in %.1f s): %s", self._backoff, exc)
            self._backoff = min(self._backoff * 2, self.timing.backoff_max_s)

    def set_steering(self, on: bool, lease_ms: int | None = None) -> None:
        """Steering of new flows on (for lease_ms, if given) or off now. Off on a process that
        is not running is a no-op (a new one starts with steering off); on raises
        DataplaneError then."""
        if not self._running:
            if on:
                raise DataplaneError("the data plane is not running")
            return
        self.dataplane.control.set_steering(on, lease_ms if on else None)

    def status(self) -> dict[str, Any]:
        """Plain data for the supervisor's status file (changes only on start and death)."""
        return {
            "pid": self.pid,
            "running": self._running,
            "starts": self.starts,
            "restarts": max(0, self.starts - 1),
            "last_exit": self.last_exit,
            "stats_file": str(self.dataplane.stats_file),
            "control": str(self.dataplane.control_path),
            "log": str(self.dataplane.log_file),
            "ports": self.config.port_ifaces(),
        }

    def stop(self) -> None:
        self._running = False
        self.last_exit = self.dataplane.stop()


class Steering(Protocol):
    """Something that turns a data plane's steering on (with a lease) or off."""

    def set_steering(self, on: bool, lease_ms: int | None = None) -> None: ...


class ControlSteering:
    """Steering of a data plane that runs elsewhere (`torswitch dataplane serve`), through its
    control socket at `path`.

    Off when the data plane is not there (no socket file, or nobody bound to it) is a no-op:
    a data plane that is down steers nothing, and one that starts comes up with steering off.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 1.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._client: ControlClient | None = None

    def set_steering(self, on: bool, lease_ms: int | None = None) -> None:
        """Raises OSError when the socket cannot be reached (for on), ControlError when the
        data plane refuses or does not answer."""
        try:
            if self._client is None:
                self._client = ControlClient(self.path, self.timeout)
            self._client.set_steering(on, lease_ms if on else None)
        except (FileNotFoundError, ConnectionRefusedError):
            if on:
                raise
        except OSError:
            self.close()  # a fresh client next time
            raise

    def status(self) -> dict[str, str]:
        """The data plane's status (ControlClient.status). Raises OSError, DataplaneError."""
        with ControlClient(self.path, self.timeout) as client:
            return client.status()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SteeringInterception:
    """The supervisor's interception in DPDK mode: the tap redirect plus steering.

    steering: a DataplaneKeeper (owning mode) or a ControlSteering (attached mode). lease_ms:
    how long each "steering on" lasts unless renewed (None: until turned off; fine only when
    the data plane dies with the supervisor).
    """

    def __init__(self, steering: Steering, redirect: TapRedirect,
                 lease_ms: int | None = None) -> None:
        self.steering, self.redirect, self.lease_ms = steering, redirect, lease_ms

    def install(self) -> None:
        self.redirect.install()
        self._steer(True)

    def renew(self) -> None:
        # Also what turns steering on again in a data plane restarted since the last renewal.
        if self.redirect.redirected() is None:
            self.redirect.install()
        self._steer(True)

    def remove(self) -> None:
        # The redirect stays: connections steered before keep reaching the engine (dp_flow.h);
        # only new ones go straight to the DataNodes from now on.
        self._steer(False)

    def close(self) -> None:
        """Steering off and the redirect removed: the supervisor is leaving. Raises
        InterceptionError (after trying both)."""
        errors = []
        try:
            self._steer(False)
        except InterceptionError as exc:
            errors.append(str(exc))
        try:
            self.redirect.remove()
        except InterceptionError as exc:
            errors.append(str(exc))
        if errors:
            raise InterceptionError("; ".join(errors))

    def _steer(self, on: bool) -> None:
        try:
            self.steering.set_steering(on, self.lease_ms if on else None)
        except (OSError, DataplaneError) as exc:
            raise InterceptionError(f"steering {'on' if on else 'off'}: {exc}") from None


# ---- the data plane as a service ---------------------------------------------------------------


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (PATH.tmp, then rename). Raises OSError."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def serve(keeper: DataplaneKeeper, stop: threading.Event, status_file: Path | None = None,
          interval_s: float = 0.25) -> None:
    """`torswitch dataplane serve`: keep the data plane running until `stop` is set, then stop
    it. The keeper must have been started (so a data plane that cannot start at all is an
    error for the caller). The status file (JSON, rewritten on every change) holds
    keeper.status() plus the service's own PID and its phase (running, restarting, stopped)."""
    last: dict[str, Any] | None = None

    def write(phase: str) -> None:
        nonlocal last
        data = {**keeper.status(), "service_pid": os.getpid(), "phase": phase}
        if status_file is None or data == last:
            return
        last = data
        try:
            write_json(status_file, {**data, "updated_at": time.time()})
        except OSError as exc:
            log.error("cannot write %s: %s", status_file, exc)

    try:
        while not stop.is_set():
            keeper.poll()
            write("running" if keeper.pid is not None else "restarting")
            stop.wait(interval_s)
    finally:
        keeper.stop()
        write("stopped")
