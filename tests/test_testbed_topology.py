"""torswitch.testbed.topology: the namespace plan and the commands that build it (nothing is
run here; integration/test_testbed.py builds the real thing)."""

from __future__ import annotations

import ipaddress

import pytest

from torswitch.testbed import topology
from torswitch.testbed.errors import BadValue
from torswitch.testbed.topology import Shaping


def test_plan_has_the_issue_topology() -> None:
    topo = topology.plan("tsw", datanodes=3)
    assert [h.name for h in topo.hosts] == ["c1", "c2", "tor-a", "core", "nn", "dn1", "dn2", "dn3"]
    assert {h.name: h.rack for h in topo.hosts if h.rack} == {
        "c1": "/rack-a",
        "c2": "/rack-a",
        "nn": "/rack-b",
        "dn1": "/rack-b",
        "dn2": "/rack-b",
        "dn3": "/rack-b",
    }
    assert all(h.namespace == f"tsw-{h.name}" for h in topo.hosts)
    bench = ipaddress.ip_network("198.18.0.0/15")
    addresses = [h.address for h in topo.hosts if h.address]
    assert len(set(addresses)) == len(addresses) == 7
    assert all(ipaddress.ip_address(a) in bench for a in addresses)
    assert topo.host("core").address is None  # pure L2
    assert topo.tor_rack_ports == ["c1", "c2"]


def test_every_host_has_one_port_and_rack_b_hangs_off_the_core() -> None:
    topo = topology.plan("x", datanodes=2)
    peers = {link.a: link.b for link in topo.links}
    assert peers == {
        "c1": "tor-a",
        "c2": "tor-a",
        "tor-a": "core",
        "nn": "core",
        "dn1": "core",
        "dn2": "core",
    }


def test_host_lookup_names_the_valid_hosts() -> None:
    with pytest.raises(BadValue, match="no host 'c9'.*dn1"):
        topology.plan("tsw").host("c9")


@pytest.mark.parametrize("name", ["", "Tsw", "1abc", "a-b", "abcdefghijk", "a b"])
def test_bad_instance_names(name: str) -> None:
    with pytest.raises(BadValue, match="instance name"):
        topology.plan(name)


@pytest.mark.parametrize("n", [0, -1, 33])
def test_datanode_count_is_bounded(n: int) -> None:
    with pytest.raises(BadValue, match="--datanodes"):
        topology.plan("tsw", datanodes=n)


def test_build_commands_never_touch_the_host_namespace() -> None:
    topo = topology.plan("tsw", datanodes=3)
    cmds = topology.build_commands(topo)
    namespaces = {h.namespace for h in topo.hosts}
    for argv in cmds:
        if argv[:3] in (["ip", "netns", "add"], ["ip", "netns", "exec"]):
            assert argv[3] in namespaces
        else:
            # Every link/addr command is scoped with -n to one of our namespaces.
            assert argv[:2] == ["ip", "-n"] and argv[2] in namespaces, argv
    veths = [a for a in cmds if "veth" in a]
    assert len(veths) == len(topo.links)
    for argv in veths:
        # Both ends are created directly in their namespaces.
        assert argv[argv.index("netns") + 1] in namespaces


def test_build_commands_order_and_offload() -> None:
    topo = topology.plan("tsw", datanodes=1)
    cmds = topology.build_commands(topo)
    first_link = next(i for i, a in enumerate(cmds) if "veth" in a)
    assert all(a[:3] == ["ip", "netns", "add"] for a in cmds[: len(topo.hosts)])
    assert first_link > len(topo.hosts)
    offloads = [a for a in cmds if "ethtool" in a]
    assert {a[3] for a in offloads} == {"tsw-c1", "tsw-c2", "tsw-nn", "tsw-dn1"}
    assert all(a[-4:] == ["-K", "eth0", "tx", "off"] for a in offloads)
    tor_bridge = [a for a in cmds if a[:3] == ["ip", "-n", "tsw-tor-a"] and "master" in a]
    assert [a[5] for a in tor_bridge] == ["c1", "c2", "uplink"]


def test_unknown_tor_mode() -> None:
    with pytest.raises(BadValue, match="ToR mode"):
        topology.build_commands(topology.plan("tsw"), tor_mode="ovs")


def test_dpdk_mode_leaves_the_tor_ports_to_the_data_plane() -> None:
    cmds = topology.build_commands(topology.plan("tsw", datanodes=1), tor_mode="dpdk")
    tor = [a for a in cmds if a[:3] == ["ip", "-n", "tsw-tor-a"]]
    assert not any("master" in a or "bridge" in a or "addr" in a for a in tor)
    ports = [a for a in tor if a[3:5] == ["link", "set"] and a[5] != "lo"]
    assert [a[5] for a in ports] == ["c1", "c2", "uplink"]
    assert all(a[6:] == ["arp", "off", "up"] for a in ports)
    # Hosts still send complete TCP checksums (tor-interception.md B.4).
    offloads = [a for a in cmds if "ethtool" in a]
    assert {a[3] for a in offloads} == {"tsw-c1", "tsw-c2", "tsw-nn", "tsw-dn1"}


def test_shaping_commands_cover_both_uplink_ends() -> None:
    topo = topology.plan("tsw")
    shaping = Shaping(rate_bps=10**9, delay_ms=0.2)
    netem = topology.shaping_commands(topo, shaping, "netem")
    assert [(a[2], a[6]) for a in netem] == [("tsw-tor-a", "uplink"), ("tsw-core", "tor-a")]
    assert all(a[8:14] == ["netem", "delay", "200us", "rate", "1gbit", "limit"] for a in netem)
    tbf = topology.shaping_commands(topo, Shaping(40 * 10**6, 0.2), "tbf")
    assert all(a[8:11] == ["tbf", "rate", "40mbit"] for a in tbf)
    assert all(int(a[a.index("burst") + 1]) == 64 * 1024 for a in tbf)
    with pytest.raises(BadValue, match="shaper"):
        topology.shaping_commands(topo, shaping, "cake")


def test_tbf_burst_is_one_millisecond_but_at_least_64k() -> None:
    assert topology.tbf_burst_bytes(10**9) == 125_000
    assert topology.tbf_burst_bytes(10**6) == 65536
