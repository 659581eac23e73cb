"""torswitch.tor_dpdk without DPDK or a namespace: the tap redirect's rules, the keeper's
restarts (a stand-in process for tsw-dataplane), the data plane service loop, the steering
interception's order of operations and leases, steering through a control socket, and the
supervisor keeping its companion. The real thing, on a testbed with --tor dpdk, is
integration/test_tor_dpdk.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from torswitch.dataplane import DataplaneConfig, DataplaneError
from torswitch.interception import InterceptionError
from torswitch.supervisor import Supervisor, Timing, eof_probe
from torswitch.testbed import topology, tor
from torswitch.testbed.state import RunDir
from torswitch.tor_dpdk import (
    TABLE_TAP,
    ControlSteering,
    DataplaneKeeper,
    KeeperTiming,
    SteeringInterception,
    redirect_counter,
    redirect_text,
    serve,
)

FAKE_ENGINE = Path(__file__).parent / "fake_engine.py"

# Stands in for tsw-dataplane: writes its stats file (the readiness signal) and waits.
FAKE_DATAPLANE = """#!{python}
import os, signal, sys, time
args = sys.argv[sys.argv.index("--") + 1:]
stats = args[args.index("--stats-file") + 1]
with open(stats + ".tmp", "w") as f:
    f.write('tsw_dataplane_rx_packets_total{{port="0",name="net_af_packet0",role="rack"}} 1\\n')
os.replace(stats + ".tmp", stats)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(1)
"""


def test_redirect_text_matches_only_the_tap() -> None:
    text = redirect_text("tswtap0", [9866, 9867], 19866)
    assert text.startswith(f"table ip {TABLE_TAP}\ndelete table ip {TABLE_TAP}\n")
    assert 'iifname "tswtap0" tcp dport { 9866, 9867 } counter redirect to :19866' in text
    assert "priority dstnat" in text
    assert "dnat to 198.18.1.1:19866" in redirect_text("t", [9866], 19866, "198.18.1.1")


def test_redirect_counter_from_nft_json() -> None:
    listing = {"nftables": [
        {"metainfo": {"json_schema_version": 1}},
        {"table": {"family": "ip", "name": TABLE_TAP}},
        {"rule": {"family": "ip", "table": "other", "comment": "redirect",
                  "expr": [{"counter": {"packets": 99, "bytes": 1}}]}},
        {"rule": {"family": "ip", "table": TABLE_TAP, "comment": "redirect",
                  "expr": [{"match": {}}, {"counter": {"packets": 7, "bytes": 420}},
                           {"redirect": {"port": 19866}}]}},
    ]}
    assert redirect_counter(json.dumps(listing)) == 7
    assert redirect_counter(json.dumps({"nftables": listing["nftables"][:3]})) is None
    assert redirect_counter("") is None


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    path = tmp_path / "fake-dataplane"
    path.write_text(FAKE_DATAPLANE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _keeper(tmp_path: Path, binary: Path, taps: list[tuple[str, str]]) -> DataplaneKeeper:
    config = DataplaneConfig(rack_ifaces=["c1"], uplink_iface="uplink", tap_iface="tswtap0",
                             steer_tcp_ports=[9866], binary=binary, file_prefix="unit-keeper")
    return DataplaneKeeper(config, tmp_path / "dp", "198.18.1.1/16",
                           timing=KeeperTiming(backoff_initial_s=0.1, backoff_max_s=0.2),
                           tap_setup=lambda tap, addr: taps.append((tap, addr)))


def test_keeper_restarts_a_dead_data_plane(tmp_path: Path, fake_binary: Path) -> None:
    (tmp_path / "dp").mkdir()
    taps: list[tuple[str, str]] = []
    keeper = _keeper(tmp_path, fake_binary, taps)
    assert keeper.config.steering is False  # steering only once the engine is healthy
    keeper.start()
    try:
        first = keeper.pid
        assert first is not None and taps == [("tswtap0", "198.18.1.1/16")]
        argv = (Path(f"/proc/{first}/cmdline").read_bytes().split(b"\0"))
        assert b"mac=fixed" in b" ".join(argv)  # the tap keeps its MAC across restarts
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while keeper.pid in (None, first):
            assert time.monotonic() < deadline, "not restarted"
            keeper.poll()
            time.sleep(0.05)
        assert keeper.starts == 2 and len(taps) == 2
        st = keeper.status()
        assert st["restarts"] == 1 and st["last_exit"] == -signal.SIGKILL
        assert st["ports"]["net_tap0"] == "tswtap0"
    finally:
        keeper.stop()
    assert keeper.pid is None and keeper.status()["running"] is False
    keeper.set_steering(False)  # nothing to turn off
    with pytest.raises(DataplaneError):
        keeper.set_steering(True)


def test_keeper_start_fails_when_the_tap_cannot_be_set_up(tmp_path: Path,
                                                          fake_binary: Path) -> None:
    (tmp_path / "dp").mkdir()

    def broken(tap: str, addr: str) -> None:
        raise InterceptionError("ip: no such device")

    config = DataplaneConfig(rack_ifaces=["c1"], tap_iface="t", binary=fake_binary)
    keeper = DataplaneKeeper(config, tmp_path / "dp", "198.18.1.1/16", tap_setup=broken)
    with pytest.raises(DataplaneError, match="no such device"):
        keeper.start()
    assert keeper.pid is None and keeper.dataplane.pid is None  # the process was stopped


class FakeKeeper:
    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log, self.fail = log, fail

    def set_steering(self, on: bool, lease_ms: int | None = None) -> None:
        if self.fail:
            raise DataplaneError("control socket gone")
        self.log.append(f"steering {'on' if on else 'off'}"
                        + (f" {lease_ms}" if lease_ms is not None else ""))


class FakeRedirect:
    def __init__(self, log: list[str]) -> None:
        self.log, self.present = log, False

    def install(self) -> None:
        self.log.append("redirect install")
        self.present = True

    def remove(self) -> None:
        self.log.append("redirect remove")
        self.present = False

    def redirected(self) -> int | None:
        return 0 if self.present else None


def test_steering_interception_order() -> None:
    log: list[str] = []
    redirect = FakeRedirect(log)
    it = SteeringInterception(FakeKeeper(log), redirect, lease_ms=5000)  # type: ignore[arg-type]
    it.install()
    it.renew()
    it.remove()
    # Off keeps the redirect: flows steered before still reach the engine (per-flow steering).
    assert log == ["redirect install", "steering on 5000", "steering on 5000", "steering off"]
    assert redirect.present
    log.clear()
    it.renew()
    assert log == ["steering on 5000"]
    log.clear()
    redirect.present = False
    it.renew()  # the table went away behind our back: put back, steering on again
    assert log == ["redirect install", "steering on 5000"]
    log.clear()
    it.close()  # the supervisor leaves: steering off, then the redirect goes
    assert log == ["steering off", "redirect remove"]
    broken = SteeringInterception(FakeKeeper(log, fail=True), redirect)  # type: ignore[arg-type]
    with pytest.raises(InterceptionError, match="control socket gone"):
        broken.install()
    log.clear()
    with pytest.raises(InterceptionError, match="control socket gone"):
        broken.close()
    assert log == ["redirect remove"]  # tried anyway


def test_control_steering_against_a_data_plane_that_is_not_there(tmp_path: Path) -> None:
    steering = ControlSteering(tmp_path / "control.sock", timeout=0.2)
    steering.set_steering(False)  # no socket: nothing steers, nothing to turn off
    with pytest.raises(FileNotFoundError):
        steering.set_steering(True, 5000)
    # A socket file nobody serves (a data plane that died): the same.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(tmp_path / "control.sock"))
    steering.set_steering(False)
    with pytest.raises(ConnectionRefusedError):
        steering.set_steering(True, 5000)
    steering.close()


def test_control_steering_sends_leases(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    seen: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        srv.settimeout(5)

        def answer() -> None:
            for _ in range(2):
                data, peer = srv.recvfrom(4096)
                words = data.decode().split()
                seen.append(" ".join(words[2:]))
                srv.sendto(f"v1 {words[1]} ok\n".encode(), peer)

        thread = threading.Thread(target=answer)
        thread.start()
        steering = ControlSteering(path)
        steering.set_steering(True, 3000)
        steering.set_steering(False, 3000)  # no lease on off
        thread.join()
        steering.close()
    assert seen == ["steering on 3000", "steering off"]


def test_serve_keeps_the_data_plane_and_reports_it(tmp_path: Path, fake_binary: Path) -> None:
    (tmp_path / "dp").mkdir()
    taps: list[tuple[str, str]] = []
    keeper = _keeper(tmp_path, fake_binary, taps)
    status_file = tmp_path / "dp" / "status.json"
    stop = threading.Event()
    keeper.start()
    thread = threading.Thread(target=serve, args=(keeper, stop, status_file, 0.05))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not status_file.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = json.loads(status_file.read_text())
        first = status["pid"]
        assert status["phase"] == "running" and status["service_pid"] == os.getpid()
        assert first == keeper.pid and status["control"].endswith("control.sock")
        os.kill(first, signal.SIGKILL)
        while json.loads(status_file.read_text())["pid"] in (None, first):
            assert time.monotonic() < deadline, "not restarted"
            time.sleep(0.05)
        assert json.loads(status_file.read_text())["restarts"] == 1
    finally:
        stop.set()
        thread.join(15)
    status = json.loads(status_file.read_text())
    assert status["phase"] == "stopped" and status["pid"] is None
    assert keeper.dataplane.pid is None


class Companion:
    def __init__(self, sup: list[Supervisor]) -> None:
        self.sup = sup
        self.polls = 0
        self.stopped_with_engine: bool | None = None

    def poll(self) -> None:
        self.polls += 1

    def status(self) -> dict[str, object]:
        return {"pid": 4242, "restarts": 0}

    def stop(self) -> None:
        self.stopped_with_engine = self.sup[0].engine_pid is not None


def test_supervisor_polls_reports_and_stops_its_companion_last(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    holder: list[Supervisor] = []
    companion = Companion(holder)
    timing = Timing(probe_interval_s=0.05, probe_timeout_s=0.3)
    sup = Supervisor([sys.executable, str(FAKE_ENGINE), "127.0.0.1", str(port)],
                     eof_probe("127.0.0.1", port, 0.3), None, timing,
                     status_file=tmp_path / "status.json", companion=companion)
    holder.append(sup)
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while sup.healthy is not True:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["dataplane"] == {"pid": 4242, "restarts": 0}
        assert companion.polls >= 2
    finally:
        sup.stop()
        thread.join(15)
    assert companion.stopped_with_engine is False  # the engine was gone first


def test_testbed_command_lines_in_dpdk_mode(tmp_path: Path) -> None:
    run = RunDir("unit", root=tmp_path)
    topo = topology.plan("unit", datanodes=1)
    # The data plane is a service of its own ...
    argv = tor.dataplane_service_argv(run, topo)
    assert argv[2:5] == ["torswitch", "dataplane", "serve"] and "--namespace-mode" in argv
    assert argv[argv.index("--tap-address") + 1] == "198.18.1.1/16"
    assert argv[argv.index("--uplink") + 1] == "uplink"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--rack-port"] == ["c1", "c2"]
    assert argv[argv.index("--dir") + 1] == str(tor.dataplane_dir(run))
    assert argv[argv.index("--status-file") + 1] == str(tor.dataplane_status_path(run))
    assert argv[argv.index("--hadoop-conf") + 1] == str(run.conf_dir("client"))
    # ... and the engine's supervisor attaches to its control socket.
    argv = tor.supervisor_argv(run, None, "dpdk", topo)
    assert "--namespace-mode" in argv and "--dataplane" not in argv
    assert argv[argv.index("--dataplane-control") + 1] == str(tor.dataplane_control(run))
    assert argv[argv.index("--tap") + 1] == "tswtap0"
    assert "--dataplane-control" not in tor.supervisor_argv(run)
    assert tor.eal_prefix(topo) == "tsw-dp-unit-tor-a"
    assert not tor.is_dataplane_service(run, None)
    assert not tor.stop_dataplane(run, None)
    assert tor.dataplane_report(run, {"dataplane_pid": None})["service_running"] is False
