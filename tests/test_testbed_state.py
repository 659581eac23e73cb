"""torswitch.testbed.state: run directory, state file and lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch.testbed.errors import BadValue, InUse, NotUp
from torswitch.testbed.state import DaemonRecord, RunDir, State, resolve_instance


def test_resolve_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORSWITCH_TESTBED", raising=False)
    assert resolve_instance(None) == "tsw"
    monkeypatch.setenv("TORSWITCH_TESTBED", "b4")
    assert resolve_instance(None) == "b4"
    assert resolve_instance("mine") == "mine"
    with pytest.raises(BadValue):
        resolve_instance("../etc")


def test_state_round_trip_and_missing_state(tmp_path: Path) -> None:
    run = RunDir("abc", root=tmp_path)
    assert run.path == tmp_path / "testbed-abc"
    with pytest.raises(NotUp, match="not up"):
        run.load()
    run.prepare()
    state = State(
        instance="abc",
        started_at=1.5,
        options={"datanodes": 3},
        hosts=[],
        daemons=[DaemonRecord("nn", "nn", "Main", 42)],
        owner_pid=7,
    )
    run.save(state)
    assert run.load() == state
    run.state_file.write_text("{not json")
    with pytest.raises(NotUp, match="unreadable"):
        run.load()
    run.forget()
    run.forget()  # idempotent
    assert not run.state_file.exists()


def test_prepare_keeps_one_previous_run_of_logs(tmp_path: Path) -> None:
    run = RunDir("abc", root=tmp_path)
    run.prepare()
    (run.log_dir / "nn.log").write_text("run 1")
    (run.path / "data").mkdir()
    run.prepare()
    assert (run.path / "logs.previous" / "nn.log").read_text() == "run 1"
    assert not (run.path / "data").exists()
    assert list(run.log_dir.iterdir()) == []
    (run.log_dir / "nn.log").write_text("run 2")
    run.prepare()
    assert (run.path / "logs.previous" / "nn.log").read_text() == "run 2"


def test_lock_is_exclusive(tmp_path: Path) -> None:
    a, b = RunDir("abc", root=tmp_path), RunDir("abc", root=tmp_path)
    other = RunDir("xyz", root=tmp_path)
    with a.lock():
        with pytest.raises(InUse, match="another process"), b.lock():
            pass
        with other.lock():  # other instances are independent
            pass
    with b.lock():
        pass
