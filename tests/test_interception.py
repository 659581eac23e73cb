"""torswitch.interception without a kernel: the generated nft text, the parsing of nft's JSON,
the spec's validation, and the install/renew/remove decisions (nft and ip replaced by a fake
that keeps the tables' state). integration/test_interception.py runs the rules for real."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from torswitch import interception
from torswitch.errors import ConfigError
from torswitch.interception import (
    BridgeInfo,
    InterceptionError,
    Interceptor,
    InterceptSpec,
    fingerprint,
    install_text,
    lease_text,
    parse_state,
    remove_text,
    spec_for_engine,
    tables_text,
)

DATA = Path(__file__).parent / "data"
MAC = "02:00:5e:10:00:01"

# The whole default ruleset, as nft is given it. Changing it is changing the interception:
# check the change against tor-interception.md and integration/test_interception.py.
EXPECTED_TABLES = """\
table bridge torswitch_bridge {
\tset rack_ports {
\t\ttype ifname
\t\tflags timeout
\t}
\tset flows {
\t\ttype ipv4_addr . inet_service . ipv4_addr . inet_service
\t\tsize 65536
\t\tflags dynamic,timeout
\t\ttimeout 600s
\t}
\tchain prerouting {
\t\ttype filter hook prerouting priority -300; policy accept;
\t\tether type != ip return
\t\tip protocol != tcp return
\t\ttcp dport != { 9866 } return
\t\tip saddr . tcp sport . ip daddr . tcp dport @flows \
update @flows { ip saddr . tcp sport . ip daddr . tcp dport } counter goto divert \
comment "known-flow"
\t\ttcp flags & (syn | ack) == syn iifname @rack_ports \
add @flows { ip saddr . tcp sport . ip daddr . tcp dport } counter goto divert \
comment "new-flow"
\t}
\tchain divert {
\t\tmeta mark set 0x7473 meta pkttype set host ether daddr set 02:00:5e:10:00:01 \
counter accept comment "divert"
\t}
}
table ip torswitch_nat {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tmeta mark 0x7473 tcp dport { 9866 } counter redirect to :19866 comment "redirect"
\t}
}
"""


def test_default_tables_text() -> None:
    assert tables_text(InterceptSpec(), MAC) == EXPECTED_TABLES


def test_install_is_one_transaction_that_replaces_both_tables() -> None:
    spec = InterceptSpec()
    text = install_text(spec, BridgeInfo(MAC, ("c1", "c2")))
    lines = text.splitlines()
    # Declaring first makes the delete safe when the table does not exist yet.
    assert lines[:4] == [
        "table bridge torswitch_bridge",
        "delete table bridge torswitch_bridge",
        "table ip torswitch_nat",
        "delete table ip torswitch_nat",
    ]
    fp = fingerprint(spec, MAC)
    assert lines[4:6] == ["table bridge torswitch_bridge {", f'\tcomment "torswitch {fp}"']
    assert f'counter accept comment "divert fp={fp}"' in text
    assert lines[-2:] == [
        "flush set bridge torswitch_bridge rack_ports",
        (
            'add element bridge torswitch_bridge rack_ports { "c1" timeout 5000ms, '
            '"c2" timeout 5000ms }'
        ),
    ]


def test_remove_text_declares_before_deleting() -> None:
    assert remove_text() == (
        "table bridge torswitch_bridge\n"
        "delete table bridge torswitch_bridge\n"
        "table ip torswitch_nat\n"
        "delete table ip torswitch_nat\n"
    )


def test_ports_destinations_and_dnat() -> None:
    spec = InterceptSpec(
        transfer_ports=(9866, 50010),
        engine_port=20000,
        engine_address="198.18.1.1",
        destinations=("198.18.2.0/24", "198.18.3.7"),
    )
    text = tables_text(spec, MAC)
    assert "\t\ttcp dport != { 9866, 50010 } return\n" in text
    assert "\t\tip daddr != { 198.18.2.0/24, 198.18.3.7/32 } return\n" in text
    assert (
        "meta mark 0x7473 tcp dport { 9866, 50010 } counter dnat to 198.18.1.1:20000 comment"
        in text
    )
    assert "redirect" not in text.split("table ip")[1].split("comment")[0]


def test_lease_text() -> None:
    assert lease_text(InterceptSpec(lease_s=1.25), ["c1"]) == (
        "flush set bridge torswitch_bridge rack_ports\n"
        'add element bridge torswitch_bridge rack_ports { "c1" timeout 1250ms }\n'
    )
    # Without a lease the ports stay until the tables are removed.
    assert lease_text(InterceptSpec(lease_s=None), ["c1", "c2"]).endswith('{ "c1", "c2" }\n')
    # No ports: the set is only emptied (an empty element list is a syntax error).
    assert lease_text(InterceptSpec(), []) == "flush set bridge torswitch_bridge rack_ports\n"


def test_fingerprint_covers_the_rules_not_the_lease() -> None:
    base = fingerprint(InterceptSpec(), MAC)
    assert fingerprint(InterceptSpec(lease_s=30), MAC) == base
    assert fingerprint(InterceptSpec(rack_ports=("c9",)), MAC) == base
    assert fingerprint(InterceptSpec(), "02:00:5e:10:00:02") != base
    assert fingerprint(InterceptSpec(engine_port=19867), MAC) != base
    assert fingerprint(InterceptSpec(transfer_ports=(50010,)), MAC) != base
    assert fingerprint(InterceptSpec(flow_idle_s=60), MAC) != base


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transfer_ports": ()}, "transfer ports"),
        ({"transfer_ports": (0,)}, "invalid TCP port"),
        ({"engine_port": 65536}, "invalid TCP port"),
        ({"engine_address": "not-an-ip"}, "IPv4"),
        ({"engine_address": "127.0.0.1"}, "loopback"),
        ({"bridge": 'br0" accept'}, "bad interface name"),
        ({"rack_ports": ("a" * 16,)}, "bad interface name"),
        ({"rack_ports": ()}, "rack_ports is empty"),
        ({"destinations": ("198.18.2.0/33",)}, "198.18.2.0/33"),
        ({"lease_s": 0.1}, "too short"),
        ({"flow_idle_s": 0}, "positive"),
    ],
)
def test_spec_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InterceptSpec(**kwargs)  # type: ignore[arg-type]


def test_parse_state_of_a_real_listing() -> None:
    # `nft -j list ruleset` of a ToR namespace (nft 1.0.6) just after one connection was
    # intercepted: one diverted flow, its SYN counted as new, the rest as known.
    listing = json.loads((DATA / "nft_ruleset_intercepting.json").read_text())
    state = parse_state(listing)
    assert state.installed and state.active
    assert state.fingerprint == "39044121936c57fb"
    assert state.leased_ports == ["pa"]
    assert state.flows == 1
    assert state.counters["new_flow"] == 1
    assert state.counters["redirect"] == 1
    assert state.counters["divert"] == state.counters["new_flow"] + state.counters["known_flow"]


def test_parse_state_needs_both_tables() -> None:
    listing = json.loads((DATA / "nft_ruleset_intercepting.json").read_text())
    without_nat = {
        "nftables": [
            item
            for item in listing["nftables"]
            if item.get("table", {}).get("name") != "torswitch_nat"
        ]
    }
    assert not parse_state(without_nat).installed
    empty = parse_state({"nftables": [{"metainfo": {"version": "1.0.6"}}]})
    assert not empty.installed and not empty.active and empty.leased_ports == []


def test_spec_for_engine_reads_the_transfer_port(tmp_path: Path) -> None:
    (tmp_path / "hdfs-site.xml").write_text(
        "<configuration><property><name>dfs.datanode.address</name>"
        "<value>0.0.0.0:50010</value></property></configuration>"
    )
    spec = spec_for_engine(("0.0.0.0", 19866), str(tmp_path))
    assert spec.transfer_ports == (50010,) and spec.engine_address is None
    assert spec_for_engine(("0.0.0.0", 19866), None).transfer_ports == (9866,)
    dnat = spec_for_engine(("198.18.1.1", 20000), None, lease_s=None)
    assert (dnat.engine_address, dnat.engine_port, dnat.lease_s) == ("198.18.1.1", 20000, None)
    with pytest.raises(ConfigError):
        spec_for_engine(("0.0.0.0", 19866), str(tmp_path / "missing"))


def test_host_namespace_is_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interception, "in_host_namespace", lambda: True)
    with pytest.raises(InterceptionError, match="host's own network namespace"):
        Interceptor(InterceptSpec())
    Interceptor(InterceptSpec(), allow_host_namespace=True)
    tor = Interceptor(InterceptSpec(), namespace="x-tor-a")
    assert tor._argv(["nft", "-f", "-"]) == ["ip", "netns", "exec", "x-tor-a", "nft", "-f", "-"]


def test_missing_nft_is_reported() -> None:
    with pytest.raises(InterceptionError, match="nftables"):
        Interceptor(InterceptSpec(), namespace="x", nft="/nonexistent/nft")


class FakeKernel:
    """Stands in for `ip -j link show` and nft: keeps which tables exist, their fingerprint
    and the leased ports, and records every transaction."""

    def __init__(self, mac: str = MAC, ports: Sequence[str] = ("c1", "c2")) -> None:
        self.mac, self.ports = mac, list(ports)
        self.fp: str | None = None
        self.leased: list[str] = []
        self.transactions: list[str] = []

    def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        if argv[:3] == ["ip", "-j", "link"]:
            links = [{"ifname": "br0", "address": self.mac}, {"ifname": "lo", "address": "0"}]
            links += [{"ifname": p, "master": "br0", "address": "x"} for p in self.ports]
            links.append({"ifname": "uplink", "master": "br0", "address": "y"})
            return json.dumps(links)
        if argv[1:] == ["-j", "list", "ruleset"]:
            items: list[dict[str, object]] = []
            if self.fp is not None:
                items += [
                    {"table": {"family": "bridge", "name": "torswitch_bridge"}},
                    {"table": {"family": "ip", "name": "torswitch_nat"}},
                    {
                        "rule": {
                            "table": "torswitch_bridge",
                            "comment": f"divert fp={self.fp}",
                            "expr": [{"counter": {"packets": 0}}],
                        }
                    },
                    {
                        "set": {
                            "family": "bridge",
                            "table": "torswitch_bridge",
                            "name": "rack_ports",
                            "elem": [{"elem": {"val": p}} for p in self.leased],
                        }
                    },
                ]
            return json.dumps({"nftables": items})
        assert argv[1:] == ["-f", "-"] and stdin is not None
        self.transactions.append(stdin)
        if stdin.startswith("table bridge torswitch_bridge\ndelete table"):
            self.fp = None
            for line in stdin.splitlines():
                if 'comment "divert fp=' in line:
                    self.fp = line.split("fp=")[1].rstrip('"')
        elif stdin.startswith("flush set") and self.fp is None:
            raise InterceptionError("Error: No such file or directory")
        self.leased = [p for p in self.ports if f'"{p}"' in stdin]
        return ""


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel()
    monkeypatch.setattr(Interceptor, "_run", lambda self, argv, stdin=None: fake.run(argv, stdin))
    return fake


def test_install_keeps_matching_tables_and_their_flows(kernel: FakeKernel) -> None:
    tor = Interceptor(InterceptSpec(), namespace="x-tor-a")
    assert tor.install() == BridgeInfo(MAC, ("c1", "c2"))  # the uplink is not a rack port
    assert kernel.transactions[-1].startswith("table bridge")
    assert kernel.leased == ["c1", "c2"] and tor.state().active
    # Installing again with the same rules only renews the lease: recreating the tables would
    # forget the diverted flows and cut their connections.
    Interceptor(InterceptSpec(), namespace="x-tor-a").install()
    assert kernel.transactions[-1].startswith("flush set")
    assert len(kernel.transactions) == 2
    # Different rules replace the tables.
    Interceptor(InterceptSpec(engine_port=19867), namespace="x-tor-a").install()
    assert kernel.transactions[-1].startswith("table bridge")


def test_renew_follows_the_bridge_and_never_reinstalls_removed_rules(kernel: FakeKernel) -> None:
    tor = Interceptor(InterceptSpec(), namespace="x-tor-a")
    with pytest.raises(InterceptionError, match="not installed"):
        tor.renew()
    tor.install()
    kernel.ports.append("c3")  # a port added to the bridge gets leased
    tor.renew()
    assert kernel.transactions[-1].startswith("flush set") and kernel.leased == ["c1", "c2", "c3"]
    kernel.mac = "02:00:5e:10:00:09"  # the bridge took another MAC: rules reinstalled
    tor.renew()
    assert kernel.transactions[-1].startswith("table bridge")
    assert kernel.fp == fingerprint(InterceptSpec(), kernel.mac)
    kernel.fp = None  # somebody removed the tables
    with pytest.raises(InterceptionError):
        tor.renew()
    tor.remove()
    assert not tor.state().installed


def test_explicit_rack_ports_and_a_bridge_without_them(kernel: FakeKernel) -> None:
    tor = Interceptor(InterceptSpec(rack_ports=("c2",)), namespace="x-tor-a")
    assert tor.install().rack_ports == ("c2",)
    kernel.ports = []
    with pytest.raises(InterceptionError, match="no rack ports"):
        Interceptor(InterceptSpec(), namespace="x-tor-a").install()
    with pytest.raises(InterceptionError, match="no bridge 'br9'"):
        Interceptor(InterceptSpec(bridge="br9"), namespace="x-tor-a").install()
