"""torswitch.supervisor with a real child process (tests/fake_engine.py on loopback) and a
recording stand-in for the interception: fail-open timing, restarts with back-off, a frozen
engine, shutdown order, the status file. The same supervision against real nftables in the
testbed is in integration/test_interception.py."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from torswitch import cli, interception
from torswitch.interception import InterceptionError
from torswitch.supervisor import Supervisor, Timing, eof_probe

FAKE_ENGINE = Path(__file__).parent / "fake_engine.py"
# Faster than the defaults where a test is about logic rather than the promised timing.
QUICK = Timing(
    probe_interval_s=0.1, probe_timeout_s=0.3, backoff_initial_s=0.2, backoff_max_s=0.4, renew_s=0.3
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_for(cond: Callable[[], object], timeout: float = 10.0, step: float = 0.02) -> float:
    """Poll until cond() is true; returns the seconds it took. Fails the test on timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


class Recorder:
    """An interception that records (time, operation, engine pid alive) per call."""

    def __init__(self, failures: int = 0) -> None:
        self.events: list[tuple[float, str, bool]] = []
        self.installed = False
        self.failures = failures
        self.supervisor: Supervisor | None = None
        self._lock = threading.Lock()

    def _record(self, op: str) -> None:
        pid = self.supervisor.engine_pid if self.supervisor else None
        with self._lock:
            self.events.append((time.monotonic(), op, pid is not None and pid_alive(pid)))

    def install(self) -> None:
        if self.failures:
            self.failures -= 1
            self._record("install-failed")
            raise InterceptionError("nft: simulated failure")
        self._record("install")
        self.installed = True

    def renew(self) -> None:
        self._record("renew")

    def remove(self) -> None:
        self._record("remove")
        self.installed = False

    def ops(self) -> list[str]:
        with self._lock:
            return [op for _, op, _ in self.events]


class Running:
    """A supervisor running in a thread, stopped at the end of the test."""

    def __init__(self, sup: Supervisor, rec: Recorder) -> None:
        self.sup, self.rec = sup, rec
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(sup.run()), daemon=True)
        self.thread.start()

    def engine_pid(self) -> int:
        wait_for(lambda: self.sup.engine_pid is not None)
        pid = self.sup.engine_pid
        assert pid is not None
        return pid

    def stop(self) -> int:
        self.sup.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()
        return self.result[0]


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(
        timing: Timing = QUICK,
        argv: list[str] | None = None,
        failures: int = 0,
        status: bool = True,
    ) -> Running:
        port = free_port()
        rec = Recorder(failures)
        sup = Supervisor(
            argv or [sys.executable, str(FAKE_ENGINE), "127.0.0.1", str(port)],
            eof_probe("127.0.0.1", port, timing.probe_timeout_s),
            rec,
            timing,
            engine_log=tmp_path / "engine.log",
            status_file=tmp_path / "status.json" if status else None,
        )
        rec.supervisor = sup
        run = Running(sup, rec)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.thread.is_alive():
            run.stop()


def test_intercepts_while_healthy_and_fails_open_within_a_second_when_killed(
    supervise: Callable[..., Running],
) -> None:
    run = supervise(Timing())  # the real timing: this is the promise of `torswitch run`
    wait_for(lambda: run.rec.installed)
    # Rules a dead supervisor may have left are removed before anything is installed.
    assert run.rec.ops()[0] == "remove"
    first = run.engine_pid()
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not run.rec.installed)
    removed_at = [t for t, op, _ in run.rec.events if op == "remove"][-1]
    assert removed_at - killed < 1.0
    # Restarted after the back-off, and intercepting again once healthy.
    wait_for(lambda: run.rec.installed)
    assert run.sup.engine_pid not in (None, first)
    assert run.sup.restarts == 1
    assert run.stop() == 0


def test_a_frozen_engine_loses_the_interception_and_gets_it_back(
    supervise: Callable[..., Running],
) -> None:
    run = supervise(Timing())
    wait_for(lambda: run.rec.installed)
    pid = run.engine_pid()
    os.kill(pid, signal.SIGSTOP)  # still accepts handshakes, never answers
    try:
        took = wait_for(lambda: not run.rec.installed)
        # Worst case: a probe starts just before the freeze; then two probe timeouts.
        assert took < 1.6
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: run.rec.installed)
    assert run.sup.engine_pid == pid  # the same process, not restarted
    run.stop()


def test_an_engine_frozen_for_too_long_is_restarted(supervise: Callable[..., Running]) -> None:
    run = supervise(Timing(probe_interval_s=0.1, probe_timeout_s=0.2, hang_restart_s=1.0))
    wait_for(lambda: run.rec.installed)
    pid = run.engine_pid()
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: run.sup.engine_pid not in (None, pid), timeout=5)
    assert not pid_alive(pid)
    wait_for(lambda: run.rec.installed)
    run.stop()


def test_stop_removes_the_interception_before_stopping_the_engine(
    supervise: Callable[..., Running], tmp_path: Path
) -> None:
    run = supervise()
    wait_for(lambda: run.rec.installed)
    wait_for(lambda: "renew" in run.rec.ops())  # the lease is renewed while intercepting
    pid = run.engine_pid()
    assert run.stop() == 0
    _, last_op, engine_alive = run.rec.events[-1]
    assert last_op == "remove" and engine_alive
    assert not pid_alive(pid)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["phase"] == "stopped" and not status["intercepting"]
    assert status["engine_pid"] is None and status["last_exit"] == -signal.SIGTERM


def test_an_engine_that_keeps_dying_is_restarted_with_back_off(
    supervise: Callable[..., Running], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="torswitch.supervisor")
    argv = [
        sys.executable,
        str(FAKE_ENGINE),
        "127.0.0.1",
        "1",
        "--exit-after",
        "0",
        "--exit-status",
        "7",
    ]
    run = supervise(
        Timing(probe_interval_s=0.05, backoff_initial_s=0.1, backoff_max_s=0.4), argv=argv
    )
    wait_for(lambda: run.sup.starts >= 5, timeout=20)
    run.stop()
    delays = [float(d) for d in re.findall(r"restarting in ([0-9.]+) s", caplog.text)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4]
    assert "exited with status 7" in caplog.text
    assert "install" not in run.rec.ops()
    # Every start is logged in the engine log, with the command.
    assert (tmp_path / "engine.log").read_text().count("torswitch run: ") >= 5


def test_a_failed_install_is_retried(supervise: Callable[..., Running], tmp_path: Path) -> None:
    run = supervise(failures=2)
    wait_for(lambda: run.rec.installed)
    assert run.rec.ops().count("install-failed") == 2
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["intercepting"] and status["intercept_error"] is None
    assert status["phase"] == "healthy" and status["engine_pid"] == run.sup.engine_pid
    run.stop()


def test_eof_probe() -> None:
    port = free_port()
    assert not eof_probe("127.0.0.1", port, 0.2)()  # refused
    # A listener that never accepts still completes handshakes: the probe must say no.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", port))
        silent.listen(8)
        started = time.monotonic()
        assert not eof_probe("127.0.0.1", port, 0.3)()
        assert time.monotonic() - started < 1.0


def test_run_refuses_the_host_namespace_in_namespace_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "engine.yml"
    config.write_text("torswitch: 1\nengine:\n  listen: 0.0.0.0:19866\n")
    monkeypatch.setattr(interception, "in_host_namespace", lambda: True)
    assert cli.main(["run", "--config", str(config), "--namespace-mode"]) == 1
    assert "not a named network namespace" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(tmp_path / "missing.yml")]) == 1
    assert "cannot read" in capsys.readouterr().err
