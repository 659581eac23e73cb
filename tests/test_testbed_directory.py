"""torswitch.testbed.directory without a testbed: the configs `up` writes for the directory
and for the ToR registering with it, and status of an instance without a directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch import config
from torswitch.testbed import directory, topology, tor
from torswitch.testbed.state import RunDir, State


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir("unit", root=tmp_path)


def test_directory_config_is_a_valid_torswitch_config(run: RunDir) -> None:
    cfg = config.loads(directory.config_text(run.conf_dir("client")), "d.yml").directory
    assert cfg.listen == f"0.0.0.0:{directory.PORT}"
    assert cfg.hadoop_conf_dir == str(run.conf_dir("client"))
    assert cfg.heartbeat_interval_s == directory.HEARTBEAT_INTERVAL_S


def test_directory_runs_beside_the_namenode() -> None:
    topo = topology.plan("unit")
    assert directory.address(topo) == "198.18.2.10:19870"
    assert topo.host(directory.HOST).role == "namenode"


def test_engine_registers_with_the_directory(run: RunDir) -> None:
    text = tor.config_text(Path("/dev/shm/x"), 256 << 20, run.conf_dir("client"),
                           "198.18.2.10:19870", ("c1", "198.18.1.11"))
    engine = config.loads(text, "engine.yml").engine
    assert engine.directory == "198.18.2.10:19870"
    assert engine.rack == topology.RACK_A and engine.switch_id == topology.TOR
    assert engine.agent_address == f"{topology.TOR_ADDRESS}:{tor.AGENT_PORT}"
    assert engine.agent_port == tor.AGENT_PORT
    assert engine.rack_hosts == ("c1", "198.18.1.11")
    assert engine.cache_capacity_bytes == 256 << 20  # registered as the ToR's capacity
    plain = config.loads(tor.config_text(Path("/dev/shm/x"), 1 << 30, run.conf_dir("client")),
                         "engine.yml").engine
    assert plain.directory is None


def test_no_directory(run: RunDir) -> None:
    topo = topology.plan("unit")
    assert directory.report(run, topo, None) == {"enabled": False}
    assert not directory.is_directory(run, None)
    assert not directory.is_directory(run, 2**22 + 12345)
    assert not directory.stop(run, None)
    assert directory.argv(run)[-2:] == ["--config", str(directory.config_path(run))]


def test_state_without_directory_still_loads() -> None:
    # A state file written before the directory existed.
    text = State("unit", 0.0, {}, []).to_json().replace('"directory": null,', "")
    assert State.from_json(text).directory is None
