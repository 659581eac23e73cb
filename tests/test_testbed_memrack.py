"""torswitch.testbed.memrack without namespaces: the spec's checks, addresses and names, the
generated configs and the memswitch's command line (integration/test_memswitch.py runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch.config import loads
from torswitch.memswitch import IdAllocator, plan_pools
from torswitch.testbed import memrack, netns
from torswitch.testbed.errors import BadValue, InUse
from torswitch.testbed.memrack import MemRack, MemRackSpec


@pytest.mark.parametrize("kwargs,match", [
    ({"subnet": "10.0.0"}, "outside 198.18.0.0/15"),
    ({"subnet": "198.20.1"}, "outside"),
    ({"subnet": "198.18.300"}, "not the first three octets"),
    ({"prefix": "Bad_"}, "prefix"),
    ({"prefix": "waytoolongprefix"}, "prefix"),
    ({"nclients": 0}, "nclients"),
    ({"nservers": 8, "spare_servers": 3}, "nservers"),
    ({"vip_host": 254}, "vip_host"),
    ({"port": 0}, "port"),
])
def test_spec_refuses(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(BadValue, match=match):
        MemRackSpec(prefix=str(kwargs.pop("prefix", "mcs-")), **kwargs)  # type: ignore[arg-type]


def test_names_and_addresses(tmp_path: Path) -> None:
    rack = MemRack(MemRackSpec("mcs-", nclients=2, nservers=3, spare_servers=1, nutcracker=True,
                               workdir=tmp_path))
    assert rack.tor == "mcs-tor"
    assert rack.clients == ["mcs-c1", "mcs-c2"]
    assert rack.servers == ["mcs-m1", "mcs-m2", "mcs-m3", "mcs-m4"]
    assert rack.hosts == [*rack.clients, *rack.servers, "mcs-nc"]
    assert rack.rack_ifaces == ["p-c1", "p-c2", "p-m1", "p-m2", "p-m3", "p-m4", "p-nc"]
    assert all(len(i) <= 15 for i in rack.rack_ifaces)
    assert (rack.vip, rack.port, rack.tap_ip) == ("198.18.70.100", 11211, "198.18.70.254")
    assert rack.client_ip(1) == "198.18.70.12" and rack.server_ip(0) == "198.18.70.21"
    assert rack.host_ip("mcs-m4") == "198.18.70.24" and rack.host_ip("mcs-nc") == "198.18.70.31"
    assert rack.server_index("198.18.70.23") == 2
    with pytest.raises(KeyError):
        rack.server_index("198.18.70.11")
    assert rack.nutcracker_address == ("198.18.70.31", 11211)
    assert rack.control_path == tmp_path / "memswitch" / "control.sock"
    assert rack.stats_path.name == "stats.prom" and rack.status_path.name == "memswitch.json"
    assert rack.metrics_url == f"http://127.0.0.1:{memrack.METRICS_PORT}/metrics"


def test_configs_are_valid_pools(tmp_path: Path) -> None:
    rack = MemRack(MemRackSpec("mcs-", nservers=3, spare_servers=1, nutcracker=True,
                               workdir=tmp_path))
    pool = loads(rack.config_text()).pool("mc")
    assert pool.listen == "198.18.70.100:11211"
    assert [s.host for s in pool.servers] == ["198.18.70.21", "198.18.70.22", "198.18.70.23"]
    assert (pool.hash, pool.distribution, pool.auto_eject_hosts, pool.server_failure_limit,
            pool.server_retry_timeout_ms) == ("fnv1a_64", "ketama", True, 2, 2000)
    assert plan_pools(loads(rack.config_text()), IdAllocator(8), IdAllocator(256))["mc"].cache
    grown = loads(rack.config_text(servers=[0, 1, 2, 3], weights={3: 5})).pool("mc")
    assert [(s.host, s.weight) for s in grown.servers][-1] == ("198.18.70.24", 5)
    assert "tsw_cache: false" in rack.config_text(cache=False)
    assert "tsw_cache" not in rack.config_text()
    nc = loads(rack.nutcracker_config()).pool("mc")
    assert nc.listen == "198.18.70.31:11211" and nc.servers == pool.servers


def test_memswitch_command_line(tmp_path: Path) -> None:
    rack = MemRack(MemRackSpec("mcs-", nservers=2, hot_threshold=2, cache_slots=64,
                               no_backoff=True, lcore=1, workdir=tmp_path))
    argv = rack.memswitch_argv()
    assert argv[1:4] == ["-m", "torswitch", "memswitch"]
    pairs = dict(zip(argv[4::2], argv[5::2], strict=False))
    assert pairs["--config"] == str(rack.config_path)
    assert pairs["--tap-address"] == "198.18.70.254/24"
    assert pairs["--mc-hot-threshold"] == "2" and pairs["--mc-cache-slots"] == "64"
    assert pairs["--lcore"] == "1"
    assert "--mc-max-value" not in argv and argv[-1] == "--no-backoff"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--rack-iface"] == rack.rack_ifaces
    from torswitch import cli

    args = cli.build_parser().parse_args(argv[3:])
    assert args.rack_ifaces == rack.rack_ifaces and args.workdir == rack.dataplane_dir


def test_only_own_namespaces_are_cleaned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rack = MemRack(MemRackSpec("mcs-", workdir=tmp_path))
    monkeypatch.setattr(netns, "list_namespaces", lambda: [
        "mcs-tor", "mcs-c1", "mcs-m12", "mcs-nc", "mcs-x", "mcsb-tor", "mcs-c1x", "dp6-tor"])
    assert rack._own_namespaces() == ["mcs-tor", "mcs-c1", "mcs-m12", "mcs-nc"]


def test_the_prefix_lock_keeps_a_second_rack_out(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memrack, "LOCK_DIR", tmp_path)
    first = MemRack(MemRackSpec("mcs-", workdir=tmp_path / "a"))
    second = MemRack(MemRackSpec("mcs-", workdir=tmp_path / "b"))
    first._acquire(0.0)
    try:
        with pytest.raises(InUse, match="prefix 'mcs-'"):
            second.down()  # would otherwise tear the first one's rack down
        with pytest.raises(InUse):
            second._acquire(0.6)
    finally:
        first._release()
    second._acquire(0.0)
    second._release()
