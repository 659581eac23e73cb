"""torswitch.dataplane without DPDK: command lines, configuration checks, counter parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch.dataplane import (
    Counters,
    Dataplane,
    DataplaneConfig,
    DataplaneError,
    build_argv,
    parse_counters,
)

STATS = """\
# HELP tsw_dataplane_rx_packets_total frames received on the port
# TYPE tsw_dataplane_rx_packets_total counter
tsw_dataplane_rx_packets_total{port="0",name="net_af_packet0",role="rack"} 12
tsw_dataplane_rx_packets_total{port="1",name="net_af_packet1",role="uplink"} 3
tsw_dataplane_rx_packets_total{port="2",name="net_tap0",role="tap"} 0
# HELP tsw_dataplane_steered_total frames steered to the exception (tap) port
tsw_dataplane_steered_total{port="0",name="net_af_packet0",role="rack"} 5
tsw_dataplane_mac_learned_total 7
"""


def test_argv_full() -> None:
    cfg = DataplaneConfig(rack_ifaces=["a", "b"], uplink_iface="up", tap_iface="t0",
                          steer_tcp_ports=[9866, 9867], netns="ns", lcore=1, no_backoff=True,
                          mac_age_s=30, binary=Path("/x/tsw-dataplane"), file_prefix="p")
    argv = build_argv(cfg, Path("/s/stats.prom"))
    assert argv[:5] == ["ip", "netns", "exec", "ns", "/x/tsw-dataplane"]
    assert argv[argv.index("-l") + 1] == "1"
    for flag in ("--no-huge", "--no-pci", "--no-shconf"):
        assert flag in argv
    vdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "--vdev"]
    assert vdevs == ["net_af_packet0,iface=a", "net_af_packet1,iface=b",
                     "net_af_packet2,iface=up", "net_tap0,iface=t0"]
    app = argv[argv.index("--") + 1:]
    assert app[app.index("--uplink") + 1] == "2"
    assert [app[i + 1] for i, a in enumerate(app) if a == "--steer-tcp-port"] == ["9866", "9867"]
    assert app[app.index("--stats-file") + 1] == "/s/stats.prom"
    assert "--no-backoff" in app and app[app.index("--mac-age-s") + 1] == "30"


def test_argv_minimal_has_backoff_and_no_netns() -> None:
    argv = build_argv(DataplaneConfig(rack_ifaces=["a"]), Path("s"))
    assert argv[0].endswith("tsw-dataplane")
    assert "--no-backoff" not in argv and "--uplink" not in argv


@pytest.mark.parametrize("kwargs", [
    {"rack_ifaces": []},
    {"rack_ifaces": ["a"], "steer_tcp_ports": [9866]},  # steering without a tap
    {"rack_ifaces": ["a"], "tap_iface": "t", "steer_tcp_ports": [0]},
    {"rack_ifaces": ["a"], "tap_iface": "t", "steer_tcp_ports": list(range(1, 10))},
])
def test_config_rejects(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DataplaneConfig(**kwargs)  # type: ignore[arg-type]


def test_parse_counters_maps_ports_to_interfaces() -> None:
    cfg = DataplaneConfig(rack_ifaces=["veth1"], uplink_iface="up0", tap_iface="tap0")
    c = parse_counters(STATS, cfg.port_ifaces())
    assert c.port("veth1") == {"rx_packets": 12, "steered": 5}
    assert c.port("up0")["rx_packets"] == 3
    assert c.port("tap0")["rx_packets"] == 0
    assert c.totals == {"mac_learned": 7}
    assert c.sum("rx_packets") == 15
    assert c.help["steered"] == "frames steered to the exception (tap) port"
    with pytest.raises(DataplaneError):
        c.port("nope")


def test_parse_counters_without_names_keeps_device_names() -> None:
    assert "net_af_packet0" in parse_counters(STATS).ports


@pytest.mark.parametrize("line", ["garbage line here", "tsw_dataplane_x_total abc"])
def test_parse_counters_rejects(line: str) -> None:
    with pytest.raises(DataplaneError):
        parse_counters(line + "\n")


def test_empty_counters() -> None:
    assert Counters().sum("rx_packets") == 0


def test_start_without_binary_fails_clearly(tmp_path: Path) -> None:
    dp = Dataplane(DataplaneConfig(rack_ifaces=["a"], binary=tmp_path / "missing"), tmp_path)
    with pytest.raises(DataplaneError, match="make dataplane"):
        dp.start()
    assert dp.stop() is None
