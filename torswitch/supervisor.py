"""Fail-open supervision of the block engine: the core of `torswitch run`.

The engine runs as a child process (``python -m torswitch engine --config FILE``). The
supervisor probes it, and the interception (torswitch.interception) is in place only while
the probes say it is healthy::

    start engine --> probe every 0.25 s --(2 good probes)--> install interception
        ^                  |                                  renew its lease every 1 s
        |                  |  2 failed probes, or the engine exits
        |                  v
        |          remove interception at once
        |                  |
        +-- back-off ------+  a dead engine restarts after 0.5 s, 1 s, 2 s ... 10 s
            (reset after 30 s healthy); one alive but failing probes for 20 s is killed

The probe (`eof_probe`) connects to the engine's listening port, half-closes and waits for
the engine to close its side (or to send anything). A plain connect would not do: the kernel
completes handshakes into the listen backlog even while the engine is frozen (SIGSTOP, a
stuck event loop), whereas answering the half-close needs the engine's accept-and-read path
to run. The engine therefore has to close, promptly, a connection that ends before sending a
byte; its original destination (SO_ORIGINAL_DST) is then the engine's own address, since the
probe is not redirected, and must not be relayed anywhere.

Removal happens as soon as the engine is seen to be gone: at the next step after it exits (at
most one probe interval), or after `fall` failed probes when it stops answering, so within
about a second. If the supervisor itself dies without removing the rules, the interception's
lease runs out (torswitch.interception) and new connections go straight to the DataNodes.

On SIGTERM (`stop`) the supervisor removes the interception first, then stops the engine
(SIGTERM, SIGKILL after a grace period), so no new connection is sent to an engine on its way
out.

In DPDK mode (torswitch.tor_dpdk) the interception is the data plane's steering, which the
supervisor holds as a lease it renews with the interception (every renew_s): a supervisor
that is killed or stuck stops renewing and the data plane turns steering off by itself. The
data plane normally runs as a service of its own (`torswitch dataplane serve`), so the rack
keeps switching whatever happens here. In the older owning mode (`torswitch run --dataplane`)
the supervisor runs it through a `Companion`: polled at every step (it restarts a data plane
that died), its state in the status file, stopped last on shutdown (after the engine: rack
traffic keeps flowing to the DataNodes until the very end).

The supervisor is a single thread; `stop` may be called from a signal handler or another
thread. Its state is also written, on every change, to a JSON status file that `torswitch
testbed status` and the tests read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from torswitch.interception import InterceptionError

log = logging.getLogger(__name__)


class Interception(Protocol):
    """What the supervisor needs from an interception (torswitch.interception.Interceptor)."""

    def install(self) -> object: ...

    def renew(self) -> object: ...

    def remove(self) -> None: ...


class Companion(Protocol):
    """A process the supervisor keeps alongside the engine (the DPDK data plane)."""

    def poll(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Timing:
    """The supervisor's clock, all in seconds (counts excepted).

    probe_interval_s: time between probes. probe_timeout_s: a probe without an answer by then
    failed. rise / fall: consecutive good / failed probes that change the verdict.
    renew_s: lease renewal period while intercepting (keep it well under the lease).
    backoff_*: restart delay of a dead engine: initial, doubling up to max, back to initial
    once the engine has been healthy for backoff_reset_s. hang_restart_s: an engine that is
    running but not healthy this long (since its start or since it was last healthy) is
    killed and restarted. stop_grace_s: SIGTERM to SIGKILL when stopping the engine.
    """

    probe_interval_s: float = 0.25
    probe_timeout_s: float = 0.5
    rise: int = 2
    fall: int = 2
    renew_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    backoff_reset_s: float = 30.0
    hang_restart_s: float = 20.0
    stop_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if min(self.probe_interval_s, self.probe_timeout_s, self.renew_s) <= 0:
            raise ValueError("probe interval, probe timeout and renewal period must be > 0")
        if self.rise < 1 or self.fall < 1:
            raise ValueError("rise and fall must be at least 1")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")


def eof_probe(host: str, port: int, timeout: float = 0.5) -> Callable[[], bool]:
    """A probe that is True when the server at host:port accepts a connection and answers
    our half-close within `timeout` seconds: by closing (EOF), resetting, or sending data."""

    def probe() -> bool:
        deadline = time.monotonic() + timeout
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                sock.recv(1)  # b"" (EOF) or a byte: either way the engine is serving
                return True
        except ConnectionResetError:
            return True
        except OSError:  # refused, unreachable, timed out
            return False

    return probe


def _die_with_parent() -> list[str]:
    """The command prefix that makes the engine get SIGTERM when the supervisor dies, even by
    SIGKILL: util-linux's setpriv sets PR_SET_PDEATHSIG and execs the engine (same PID).
    (A preexec_fn doing the prctl could deadlock when the caller has threads, as tests do.)
    Empty, with a warning, if setpriv is missing."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("setpriv not found: the engine will outlive a killed supervisor")
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


class Supervisor:
    """Runs and watches one engine process and switches the interception with its health.

    engine_argv: the engine's command line. probe: returns True while the engine serves (see
    `eof_probe`). interception: None supervises without intercepting. engine_log: file the
    engine's stdout and stderr are appended to (None: inherit ours). status_file: JSON state,
    rewritten atomically on every change. env: the engine's environment (None: ours).
    companion: polled every step, reported under "dataplane", stopped last (DPDK mode).
    """

    def __init__(
        self,
        engine_argv: Sequence[str],
        probe: Callable[[], bool],
        interception: Interception | None,
        timing: Timing = Timing(),
        *,
        engine_log: Path | None = None,
        status_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        companion: Companion | None = None,
    ) -> None:
        if not engine_argv:
            raise ValueError("no engine command")
        self.engine_argv = list(engine_argv)
        self.probe = probe
        self.interception = interception
        self.timing = timing
        self.engine_log = engine_log
        self.status_file = status_file
        self.env = dict(env) if env is not None else None
        self.clock = clock
        self.companion = companion
        self.restarts = 0
        self.starts = 0
        self.last_exit: int | None = None
        self.intercepting = False
        self.healthy: bool | None = None  # None: no verdict yet for the running engine
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._next_start = 0.0
        self._backoff = timing.backoff_initial_s
        self._streak = 0
        self._last_probe: bool | None = None
        self._healthy_since: float | None = None
        self._unhealthy_since = 0.0
        self._last_renew = 0.0
        self._intercept_error: str | None = None
        self._written: dict[str, Any] | None = None
        self._prefix = _die_with_parent()

    # ---- public -------------------------------------------------------------------------------

    @property
    def engine_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Ask `run` to finish (safe from a signal handler or another thread)."""
        self._stop.set()

    def run(self) -> int:
        """Supervise until `stop`; then remove the interception and stop the engine.

        Returns 0, or 1 if the interception could not be removed at the end.
        """
        log.info("supervising %s", " ".join(self.engine_argv))
        if self.interception is not None:
            # Rules left by a supervisor that died: nothing is healthy yet.
            self._set_intercept(False, self.clock(), force=True)
        try:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(self._sleep_time())
        finally:
            ok = self._shutdown()
        return 0 if ok else 1

    def step(self) -> None:
        """One round: start a due engine, notice an exit, probe, switch the interception."""
        if self.companion is not None:
            self.companion.poll()
        now = self.clock()
        proc = self._proc
        if proc is None:
            if now >= self._next_start:
                self._start_engine(now)
        else:
            rc = proc.poll()
            if rc is not None:
                self._on_exit(rc, now)
            else:
                self._judge(bool(self._safe_probe()), now)
                self._check_hang(now)
        want = self._proc is not None and self.healthy is True
        self._set_intercept(want, self.clock())
        self._write_status()

    # ---- engine process -----------------------------------------------------------------------

    def _start_engine(self, now: float) -> None:
        self.healthy, self._streak, self._last_probe = None, 0, None
        self._healthy_since, self._unhealthy_since = None, now
        out: IO[bytes] | None = None
        try:
            if self.engine_log is not None:
                out = open(self.engine_log, "ab")  # noqa: SIM115 - closed below, child keeps it
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                out.write(f"--- {stamp} torswitch run: {' '.join(self.engine_argv)}\n".encode())
                out.flush()
            self._proc = subprocess.Popen(
                [*self._prefix, *self.engine_argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                env=self.env,
                start_new_session=True,  # terminal signals reach the supervisor only
            )
        except OSError as exc:
            log.error("cannot start the engine: %s", exc)
            self._on_exit(127, now)
            return
        finally:
            if out is not None:
                out.close()
        if self.starts:
            self.restarts += 1
        self.starts += 1
        log.info("engine started, pid %d", self._proc.pid)

    def _on_exit(self, rc: int, now: float) -> None:
        self._proc = None
        self.last_exit = rc
        self.healthy = None
        self._next_start = now + self._backoff
        how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        log.warning("engine %s; restarting in %.1f s", how, self._backoff)
        self._backoff = min(self._backoff * 2, self.timing.backoff_max_s)

    def _kill_engine(self, sig: int) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _check_hang(self, now: float) -> None:
        if self.healthy is True or self._proc is None:
            return
        if now - self._unhealthy_since >= self.timing.hang_restart_s:
            log.warning(
                "engine pid %d has not been healthy for %.0f s: killing it",
                self._proc.pid,
                now - self._unhealthy_since,
            )
            # SIGKILL acts on a stopped process too; the next step sees the exit and
            # schedules the restart.
            self._kill_engine(signal.SIGKILL)

    def _stop_engine(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            log.info("stopping engine pid %d", proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                os.kill(proc.pid, signal.SIGCONT)  # a stopped engine could not act on SIGTERM
            except ProcessLookupError:
                pass
            try:
                proc.wait(self.timing.stop_grace_s)
            except subprocess.TimeoutExpired:
                log.warning("engine pid %d ignored SIGTERM: killing it", proc.pid)
                proc.kill()
                proc.wait()
        self.last_exit = proc.returncode

    # ---- health -------------------------------------------------------------------------------

    def _safe_probe(self) -> bool:
        try:
            return bool(self.probe())
        except Exception:  # a probe that breaks says nothing good about the engine
            log.exception("health probe raised")
            return False

    def _judge(self, ok: bool, now: float) -> None:
        self._streak = self._streak + 1 if ok == self._last_probe else 1
        self._last_probe = ok
        need = self.timing.rise if ok else self.timing.fall
        if self._streak >= need and self.healthy is not ok:
            if ok:
                self._healthy_since = now
                log.info("engine pid %s healthy", self.engine_pid)
            elif self.healthy is True:
                # Counted from here; an engine still starting is counted from its start.
                self._healthy_since = None
                self._unhealthy_since = now
                log.warning("engine pid %s stopped answering", self.engine_pid)
            self.healthy = ok
        if (
            self.healthy is True
            and self._healthy_since is not None
            and now - self._healthy_since >= self.timing.backoff_reset_s
        ):
            self._backoff = self.timing.backoff_initial_s

    # ---- interception -------------------------------------------------------------------------

    def _set_intercept(self, want: bool, now: float, *, force: bool = False) -> None:
        if self.interception is None:
            return
        try:
            if want and not self.intercepting:
                self.interception.install()
                self.intercepting, self._last_renew = True, now
                log.info("interception on")
            elif want and now - self._last_renew >= self.timing.renew_s:
                self._last_renew = now
                self.interception.renew()
            elif not want and (self.intercepting or force):
                self.interception.remove()
                if self.intercepting:
                    log.info("interception off")
                self.intercepting = False
            self._intercept_error = None
        except InterceptionError as exc:
            if self._intercept_error != str(exc):
                log.error("interception: %s", exc)
            self._intercept_error = str(exc)
            if want:
                # Installed or not, the next step installs again (install is idempotent).
                self.intercepting = False

    # ---- shutdown and status ------------------------------------------------------------------

    def _sleep_time(self) -> float:
        interval = self.timing.probe_interval_s
        if self._proc is None:
            return max(0.01, min(interval, self._next_start - self.clock()))
        return interval

    def _shutdown(self) -> bool:
        ok = True
        if self.interception is not None:
            for attempt in range(3):
                try:
                    self.interception.remove()
                    self.intercepting = False
                    break
                except InterceptionError as exc:
                    log.error(
                        "could not remove the interception (attempt %d): %s", attempt + 1, exc
                    )
                    time.sleep(0.2)
            else:
                ok = False
        self._stop_engine()
        if self.companion is not None:
            self.companion.stop()
        self.healthy = None
        self._write_status(stopped=True)
        log.info("supervisor stopped")
        return ok

    def status(self, stopped: bool = False) -> dict[str, Any]:
        """The supervisor's state as plain data (what the status file holds)."""
        if stopped:
            phase = "stopped"
        elif self._proc is None:
            phase = "restarting" if self.starts else "starting"
        elif self.healthy is None:
            phase = "starting"
        else:
            phase = "healthy" if self.healthy else "unhealthy"
        extra = {"dataplane": self.companion.status()} if self.companion is not None else {}
        return {
            **extra,
            "supervisor_pid": os.getpid(),
            "engine_pid": self.engine_pid,
            "engine_argv": self.engine_argv,
            "phase": phase,
            "healthy": self.healthy is True,
            "intercepting": self.intercepting,
            "intercept_error": self._intercept_error,
            "starts": self.starts,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }

    def _write_status(self, stopped: bool = False) -> None:
        if self.status_file is None:
            return
        data = self.status(stopped)
        if data == self._written:
            return
        self._written = data
        tmp = self.status_file.with_name(self.status_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps({**data, "updated_at": time.time()}, indent=2) + "\n")
            tmp.replace(self.status_file)
        except OSError as exc:
            log.error("cannot write %s: %s", self.status_file, exc)
