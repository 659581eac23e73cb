"""torswitch.testbed.tor without a testbed: the engine config `up` writes, the supervisor's
command line, and what status makes of an instance without an engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch import config
from torswitch.testbed import topology, tor
from torswitch.testbed.state import RunDir


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir("unit", root=tmp_path)


def test_engine_config_is_a_valid_torswitch_config(run: RunDir) -> None:
    text = tor.config_text(Path("/dev/shm/torswitch-unit"), 3 << 30, run.conf_dir("client"))
    engine = config.loads(text, "engine.yml").engine
    assert (engine.listen_host, engine.listen_port) == ("0.0.0.0", tor.ENGINE_PORT)
    assert engine.cache_path == "/dev/shm/torswitch-unit"
    assert engine.cache_capacity_bytes == 3 << 30
    assert engine.hadoop_conf_dir == str(run.conf_dir("client"))


def test_cache_lives_on_tmpfs_per_instance() -> None:
    assert tor.cache_dir("e5") == Path("/dev/shm/torswitch-e5")
    assert tor.cache_dir("e5") != tor.cache_dir("e55")


def test_supervisor_command_line(run: RunDir) -> None:
    argv = tor.supervisor_argv(run)
    assert argv[1:4] == ["-m", "torswitch", "run"]
    assert argv[argv.index("--config") + 1] == str(tor.config_path(run))
    assert "--namespace-mode" in argv  # never the host's nftables
    # The status file path identifies this instance's supervisor among all processes.
    assert argv[argv.index("--status-file") + 1] == str(tor.status_path(run))
    assert "--engine-cmd" not in argv
    stand_in = tor.supervisor_argv(run, "python3 fake.py 0.0.0.0 19866")
    assert stand_in[-2:] == ["--engine-cmd", "python3 fake.py 0.0.0.0 19866"]


def test_no_engine_and_no_supervisor(run: RunDir) -> None:
    topo = topology.plan("unit")
    assert tor.report(run, topo, None) == {"enabled": False}
    assert not tor.is_supervisor(run, None)
    assert not tor.is_supervisor(run, 2**22 + 12345)  # no such process
    assert tor.engine_pid(run, None) is None
    assert tor.read_status(run) is None
    assert not tor.stop(run, None)
