"""torswitch.commands.testbed: argument handling and errors that need no running testbed."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch import cli
from torswitch.testbed import lifecycle, topology
from torswitch.testbed.errors import NotReady


@pytest.fixture(autouse=True)
def private_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORSWITCH_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("TORSWITCH_TESTBED", raising=False)
    return tmp_path


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["testbed", "--help"])
    out = capsys.readouterr().out
    for name in ("up", "status", "exec", "load", "down"):
        assert name in out


def test_status_of_an_instance_that_is_not_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["testbed", "status", "--instance", "nothere"]) == 3
    assert "not up" in capsys.readouterr().err
    assert cli.main(["testbed", "status", "--instance", "nothere", "--json"]) == 3
    assert '"up": false' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--uplink-rate", "1gbps"], "bad rate"),
        (["--uplink-delay", "5"], "bad delay"),
        (["--block-size", "lots"], "bad size"),
        (["--cache-size", "lots"], "bad size"),
        (["--tor", "ovs"], "invalid choice"),
    ],
)
def test_up_rejects_bad_values_before_doing_anything(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["testbed", "up", "--instance", "unit", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert topology.instance_namespaces("unit") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--block-size", "1000k"], "multiple of 512"),
        (["--replication", "4"], "replication 4"),
        (["--datanodes", "0"], "--datanodes"),
        (["--cache-size", "100k"], "--cache-size"),
        (["--instance", "Bad-Name"], "instance name"),
        (["--tor", "dpdk", "--no-cache"], "no --no-cache"),
    ],
)
def test_up_rejects_bad_combinations(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["testbed", "up", *args]
    if "--instance" not in args:
        argv += ["--instance", "unit"]
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err
    assert topology.instance_namespaces("unit") == []


def test_exec_needs_a_command_and_a_running_testbed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["testbed", "exec", "--instance", "unit", "c1", "--"]) == 1
    assert "no command given" in capsys.readouterr().err
    assert cli.main(["testbed", "exec", "--instance", "unit", "c1", "--", "true"]) == 1
    assert "not up" in capsys.readouterr().err


def test_load_validates_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["testbed", "load", "--instance", "unit"]) == 1
    assert "nothing to write" in capsys.readouterr().err


def test_down_of_an_instance_that_is_not_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["testbed", "down", "--instance", "unit"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle.os, "geteuid", lambda: 1000)
    with pytest.raises(NotReady, match="needs root"):
        lifecycle.check_prerequisites()
