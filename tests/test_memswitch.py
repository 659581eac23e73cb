"""torswitch.memswitch without a network: pool plans and their errors, nutcracker's server
order, stable ids, the ejection state machine on a fake clock, apply()/tick() diffs against a
recording control client, and the metrics collector."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from torswitch import _native, cli, routing
from torswitch.config import Config, Pool, Server, loads
from torswitch.dataplane import ControlError, Counters, McServer
from torswitch.errors import ConfigError
from torswitch.memswitch import (
    IdAllocator,
    MemSwitch,
    MemSwitchCollector,
    ServerHealth,
    nutcracker_order,
    plan_pools,
    virtual_mac,
)
from torswitch.peers import random_keys

NET = "198.18.70"


def pool_yaml(name: str = "mc", servers: Sequence[str] = ("21", "22", "23"),
              listen: str = f"{NET}.100:11211", extra: str = "",
              weights: dict[str, int] | None = None) -> str:
    w = weights or {}
    lines = [f"{name}:", f"  listen: {listen}", "  hash: fnv1a_64", "  distribution: ketama",
             "  auto_eject_hosts: true", "  server_failure_limit: 2",
             "  server_retry_timeout: 2000", "  timeout: 300"]
    lines += [f"  {x}" for x in extra.splitlines() if x]
    lines.append("  servers:")
    lines += [f"    - {NET}.{s}:11211:{w.get(s, 1)}" for s in servers]
    return "\n".join(lines) + "\n"


def plans(text: str) -> dict[str, Any]:
    return plan_pools(loads(text), IdAllocator(8), IdAllocator(256))


def with_pool(cfg: Config, name: str, **changes: Any) -> Config:
    pools = dict(cfg.pools)
    pools[name] = dataclasses.replace(pools[name], **changes)
    return dataclasses.replace(cfg, pools=pools)


# ---- plans --------------------------------------------------------------------------------------


@pytest.mark.parametrize("listen,why", [
    ("0.0.0.0:11211", "0.0.0.0"),
    ("localhost:11211", "specific IPv4"),
    ("/tmp/mc.sock", "unix socket"),
])
def test_listen_must_be_a_specific_ipv4_address(listen: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        plans(pool_yaml(listen=listen))
    assert "'mc'" in str(info.value)


def test_server_port_must_equal_listen_port() -> None:
    text = pool_yaml().replace(f"{NET}.22:11211", f"{NET}.22:11212")
    with pytest.raises(ConfigError, match=r"pool 'mc'.*198\.18\.70\.22:11212.*11211"):
        plans(text)


def test_servers_must_be_ipv4_and_not_the_vip() -> None:
    with pytest.raises(ConfigError, match="cache-a:11211.*IPv4"):
        plans(pool_yaml().replace(f"{NET}.22:11211", "cache-a:11211"))
    with pytest.raises(ConfigError, match="is the VIP"):
        plans(pool_yaml(servers=("21", "100")))


def test_too_many_servers_and_pools() -> None:
    with pytest.raises(ConfigError, match="33 servers, more than .* 32"):
        plans(pool_yaml(servers=[str(i) for i in range(1, 34)]))
    text = "".join(pool_yaml(f"p{i}", listen=f"{NET}.{100 + i}:11211") for i in range(9))
    with pytest.raises(ConfigError, match="9 pools"):
        plans(text)
    assert len(plans(text.rsplit("p8:", 1)[0])) == 8


def test_pools_without_listen_are_not_published() -> None:
    cfg = loads(pool_yaml())
    cfg = with_pool(cfg, "mc", listen=None)
    assert plan_pools(cfg, IdAllocator(8), IdAllocator(256)) == {}


def test_plan_fields_and_cache_key() -> None:
    plan = plans(pool_yaml())["mc"]
    assert (plan.vip, plan.port, plan.pool_id, plan.cache) == (f"{NET}.100", 11211, 0, True)
    assert (plan.hash, plan.distribution, plan.hash_tag) == ("fnv1a_64", "ketama", "")
    assert (plan.auto_eject_hosts, plan.failure_limit, plan.retry_timeout_s,
            plan.probe_timeout_s) == (True, 2, 2.0, 0.3)
    assert [s.identity for s in plan.servers] == [f"{NET}.{i}".encode() for i in (21, 22, 23)]
    cfg = with_pool(loads(pool_yaml()), "mc", extra={"tsw_cache": False})
    assert plan_pools(cfg, IdAllocator(8), IdAllocator(256))["mc"].cache is False
    with pytest.raises(ConfigError, match="tsw_cache"):
        plan_pools(with_pool(cfg, "mc", extra={"tsw_cache": "yes"}), IdAllocator(8),
                   IdAllocator(256))


def test_virtual_mac_is_local_unicast_and_derived_from_the_vip() -> None:
    mac = virtual_mac("198.18.70.100")
    assert mac == "02:74:c6:12:46:64"
    first = int(mac[:2], 16)
    assert first & 0x02 and not first & 0x01
    assert virtual_mac("198.18.70.101") != mac


@pytest.mark.parametrize("distribution", ["ketama", "modula"])
def test_order_is_rings_order(distribution: str) -> None:
    # Names of different lengths, default-port hosts (host-only identity) and other ports.
    servers = [Server("198.18.70.3", 11211, 2), Server("198.18.70.21", 22122, 1, "zz"),
               Server("198.18.70.100", 11211, 1), Server("198.18.70.4", 11211, 3, "b"),
               Server("198.18.70.22", 11211, 1, "aaa"), Server("198.18.70.5", 11211, 1)]
    order = nutcracker_order(servers)
    assert [s.identity for s in order] == [b"b", b"zz", b"aaa", b"198.18.70.3", b"198.18.70.5",
                                           b"198.18.70.100"]
    # A native ring built over the servers exactly in that order (as the data plane builds it)
    # places every key where Ring.from_pool does; modula is order-sensitive for every key.
    native = _native.NativeRing(
        distribution=routing.DISTRIBUTIONS.index(distribution),
        hash_kind=routing.HASHES.index("fnv1a_64"),
        names=[s.identity for s in order], weights=[s.weight for s in order],
        server_ids=list(range(len(order))))
    ring = routing.Ring.from_pool(Pool("p", tuple(servers), distribution=distribution))
    keys = random_keys(3000, seed=7)
    assert [order[i] for i in native.lookup_batch(keys)] == [ring.lookup(k) for k in keys]
    native.close()


# ---- ids ----------------------------------------------------------------------------------------


def test_id_allocator_keeps_reuses_and_prefers_fresh() -> None:
    ids: IdAllocator[str] = IdAllocator(4)
    assert ids.assign(["a", "b"]) == {"a": 0, "b": 1}
    assert ids.assign(["b", "c"]) == {"b": 1, "c": 2}  # a's 0 is not reused yet
    assert ids.assign(["b", "c", "a"]) == {"b": 1, "c": 2, "a": 0}  # a gets its own back
    assert ids.assign(["d", "e"]) == {"d": 3, "e": 0}  # then freed ids, lowest first
    with pytest.raises(ConfigError, match="5 things, more than the limit of 4"):
        ids.assign(list("vwxyz"), "things")
    assert ids.ids == {"d": 3, "e": 0}


def test_server_and_pool_ids_stable_across_reconfiguration() -> None:
    pool_ids: IdAllocator[str] = IdAllocator(8)
    server_ids: IdAllocator[tuple[str, bytes]] = IdAllocator(256)
    first = plan_pools(loads(pool_yaml("a", listen=f"{NET}.100:11211")
                             + pool_yaml("b", servers=("24", "25"), listen=f"{NET}.101:11211")),
                       pool_ids, server_ids)
    sid = {(p.name, s.host): s.sid for p in first.values() for s in p.servers}
    # Pools swapped in the file, a server removed from a, one added to a, b reweighted.
    second = plan_pools(loads(pool_yaml("b", servers=("24", "25"), listen=f"{NET}.101:11211",
                                        weights={"24": 5})
                              + pool_yaml("a", servers=("22", "23", "26"),
                                          listen=f"{NET}.100:11211")),
                        pool_ids, server_ids)
    assert (second["a"].pool_id, second["b"].pool_id) == (first["a"].pool_id,
                                                          first["b"].pool_id)
    sid2 = {(p.name, s.host): s.sid for p in second.values() for s in p.servers}
    for key in sid2.keys() & sid.keys():
        assert sid2[key] == sid[key]
    assert sid2[("a", f"{NET}.26")] not in sid.values()  # a fresh id, not the removed one's
    third = plan_pools(loads(pool_yaml("a", servers=("21", "22", "23", "26"))), pool_ids,
                       server_ids)
    assert {s.host: s.sid for s in third["a"].servers}[f"{NET}.21"] == sid[("a", f"{NET}.21")]


def test_a_refused_plan_changes_no_ids() -> None:
    pool_ids: IdAllocator[str] = IdAllocator(8)
    server_ids: IdAllocator[tuple[str, bytes]] = IdAllocator(256)
    plan_pools(loads(pool_yaml()), pool_ids, server_ids)
    before = (dict(pool_ids.ids), dict(server_ids.ids))
    with pytest.raises(ConfigError):
        plan_pools(loads(pool_yaml("x", servers=("30",)) + pool_yaml(listen="0.0.0.0:11211")),
                   pool_ids, server_ids)
    assert (pool_ids.ids, server_ids.ids) == before


# ---- ejection -----------------------------------------------------------------------------------


def test_ejection_after_failure_limit_then_retry() -> None:
    h = ServerHealth(auto_eject=True, failure_limit=2, retry_timeout_s=2.0)
    assert h.record(False, 0.0) is None and not h.ejected
    assert h.record(True, 0.5) is None and h.failures == 0  # a success breaks the streak
    assert h.record(False, 1.0) is None
    assert h.record(False, 1.5) == "ejected"
    assert h.ejected and h.ejections == 1
    assert not h.due(3.4) and h.record(True, 3.4) is None and h.ejected  # too early: ignored
    assert h.due(3.5)
    assert h.record(False, 3.5) == "ejected"  # a failed retry: ejected again, counted
    assert h.ejections == 2 and not h.due(5.4)
    assert h.record(True, 5.5) == "returned"
    assert not h.ejected and h.failures == 0
    assert h.record(False, 6.0) is None  # a returned server needs the full limit again
    assert h.record(False, 6.5) == "ejected" and h.ejections == 3
    assert (h.probes, h.failed_probes) == (8, 6)  # the ignored result is not a probe


def test_no_ejection_without_auto_eject_hosts() -> None:
    h = ServerHealth(auto_eject=False, failure_limit=2, retry_timeout_s=2.0)
    for t in range(10):
        assert h.record(False, float(t)) is None
    assert not h.ejected and h.ejections == 0 and h.failures == 10 and h.failed_probes == 10
    h = ServerHealth(auto_eject=True, failure_limit=1, retry_timeout_s=30.0)
    assert h.record(False, 0.0) == "ejected"
    h.configure(auto_eject=False, failure_limit=1, retry_timeout_s=30.0)
    assert not h.ejected  # turning ejection off returns the server


# ---- the control plane against a recording control client ------------------------------------


class FakeControl:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pools: dict[int, dict[str, Any]] = {}
        self.fail = 0

    def mc_pool(self, pool_id: int, name: str, vip: str, port: int, vmac: str, hash: str,
                distribution: str, hash_tag: str, cache: bool,
                servers: Sequence[McServer]) -> None:
        if self.fail:
            self.fail -= 1
            raise ControlError("mc-pool: refused")
        args = {"pool_id": pool_id, "name": name, "vip": vip, "port": port, "vmac": vmac,
                "hash": hash, "distribution": distribution, "hash_tag": hash_tag,
                "cache": cache, "servers": list(servers)}
        self.calls.append(("mc_pool", args))
        self.pools[pool_id] = args

    def mc_pool_del(self, pool_id: int) -> None:
        self.calls.append(("mc_pool_del", {"pool_id": pool_id}))
        del self.pools[pool_id]

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        calls, self.calls = self.calls, []
        return calls

    def live(self, pool_id: int) -> dict[str, bool]:
        return {s.ip: s.live for s in self.pools[pool_id]["servers"]}


class Rig:
    """A MemSwitch with a fake clock, scripted probes and a scripted neighbour table."""

    def __init__(self) -> None:
        self.now = 0.0
        self.down: set[str] = set()
        self.unresolved: set[str] = set()
        self.probed: list[str] = []
        self.control = FakeControl()
        self.switch = MemSwitch(self.control, probe=self.probe, resolve=self.resolve,
                                clock=lambda: self.now, probe_interval_s=0.5)

    def probe(self, host: str, port: int, timeout: float) -> bool:
        self.probed.append(host)
        return host not in self.down

    def resolve(self, hosts: Sequence[str]) -> dict[str, str]:
        return {h: "02:00:00:00:00:" + h.rsplit(".", 1)[1] for h in hosts
                if h not in self.unresolved}

    def tick(self, dt: float = 0.5) -> list[str]:
        self.now += dt
        return self.switch.tick()


def test_apply_pushes_only_what_changed() -> None:
    rig = Rig()
    two = pool_yaml("a") + pool_yaml("b", servers=("24", "25"), listen=f"{NET}.101:11211")
    rig.switch.apply(loads(two))
    calls = rig.control.take()
    assert [(c, a["name"]) for c, a in calls] == [("mc_pool", "a"), ("mc_pool", "b")]
    a = calls[0][1]
    assert (a["vip"], a["port"], a["vmac"], a["hash"], a["distribution"], a["cache"]) == (
        f"{NET}.100", 11211, virtual_mac(f"{NET}.100"), "fnv1a_64", "ketama", True)
    assert [s.mac for s in a["servers"]] == [f"02:00:00:00:00:{i}" for i in (21, 22, 23)]
    assert all(s.live and s.weight == 1 for s in a["servers"])
    assert a["servers"][0] == McServer(sid=0, ip=f"{NET}.21", port=11211,
                                       mac="02:00:00:00:00:21", weight=1, live=True,
                                       identity=f"{NET}.21".encode())
    assert rig.switch.in_sync

    rig.switch.apply(loads(two))  # unchanged
    assert rig.control.take() == []

    steps = [
        pool_yaml("a", servers=("21", "22", "23", "26")),  # add
        pool_yaml("a", servers=("21", "23", "26")),  # remove
        pool_yaml("a", servers=("21", "23", "26"), weights={"23": 4}),  # reweight
    ]
    b = pool_yaml("b", servers=("24", "25"), listen=f"{NET}.101:11211")
    expected_ips = [
        [f"{NET}.{i}" for i in (21, 22, 23, 26)],
        [f"{NET}.{i}" for i in (21, 23, 26)],
        [f"{NET}.{i}" for i in (21, 23, 26)],
    ]
    for text, ips in zip(steps, expected_ips, strict=True):
        rig.switch.apply(loads(text + b))
        calls = rig.control.take()
        assert [(c, a["name"]) for c, a in calls] == [("mc_pool", "a")], text
        servers = calls[0][1]["servers"]
        assert [s.ip for s in servers] == ips and all(s.live for s in servers)
    assert [s.weight for s in rig.control.pools[0]["servers"]] == [1, 4, 1]

    rig.switch.apply(loads(b))  # pool a removed
    assert rig.control.take() == [("mc_pool_del", {"pool_id": 0})]
    with pytest.raises(ConfigError):
        rig.switch.apply(loads(pool_yaml("a", listen="0.0.0.0:11211") + b))
    assert rig.control.take() == [] and set(rig.switch.plans) == {"b"}


def test_servers_follow_nutcracker_order_on_the_wire() -> None:
    rig = Rig()
    text = pool_yaml(servers=("3", "21", "100"), listen=f"{NET}.7:11211")
    rig.switch.apply(loads(text))
    servers = rig.control.take()[0][1]["servers"]
    assert [s.ip for s in servers] == [f"{NET}.3", f"{NET}.21", f"{NET}.100"]
    assert [s.ip for s in servers] == [
        s.host for s in nutcracker_order(loads(text).pool("mc").servers)]


def test_ejection_and_return_through_ticks() -> None:
    rig = Rig()
    rig.switch.apply(loads(pool_yaml()))
    rig.control.take()
    victim = f"{NET}.22"
    rig.tick()
    assert rig.control.take() == []  # all healthy: nothing to push
    rig.down.add(victim)
    rig.tick()
    assert rig.control.take() == []  # one failure of two
    rig.tick()
    calls = rig.control.take()
    assert len(calls) == 1 and rig.control.live(0)[victim] is False
    assert sum(rig.control.live(0).values()) == 2
    st = rig.switch.status()["pools"]["mc"]["servers"][victim]
    assert (st["ejected"], st["ejections"], st["live"], st["published_live"]) == (
        True, 1, False, False)
    rig.probed.clear()
    for _ in range(3):  # 1.5 s of the 2 s retry timeout: not probed
        rig.tick()
    assert victim not in rig.probed and rig.control.take() == []
    rig.tick()  # retry time reached; still down: ejected again, nothing pushed
    assert victim in rig.probed and rig.control.take() == []
    assert rig.switch.status()["pools"]["mc"]["servers"][victim]["ejections"] == 2
    rig.down.clear()
    for _ in range(3):
        rig.tick()
    assert rig.control.take() == []
    rig.tick()
    calls = rig.control.take()
    assert len(calls) == 1 and all(rig.control.live(0).values())


def test_unresolved_macs_are_not_live_until_resolved() -> None:
    rig = Rig()
    rig.unresolved.add(f"{NET}.23")
    rig.switch.apply(loads(pool_yaml()))
    pushed = rig.control.take()[0][1]["servers"]
    assert [(s.ip, s.live, s.mac) for s in pushed][2] == (f"{NET}.23", False,
                                                          "00:00:00:00:00:00")
    rig.tick()
    assert rig.control.take() == []
    rig.unresolved.clear()
    rig.tick()
    assert all(rig.control.live(0).values())


def test_failed_pushes_are_retried_and_a_restart_republishes() -> None:
    rig = Rig()
    rig.control.fail = 1
    rig.switch.apply(loads(pool_yaml()))
    assert rig.control.take() == [] and not rig.switch.in_sync
    assert rig.switch.push_errors == 1
    rig.tick()
    assert len(rig.control.take()) == 1 and rig.switch.in_sync
    rig.switch.forget_published()
    rig.tick()
    assert len(rig.control.take()) == 1


def test_reload_keeps_running_config_on_error() -> None:
    rig = Rig()
    rig.switch.apply(loads(pool_yaml()))
    rig.control.take()
    assert rig.switch.reload(lambda: loads(pool_yaml(listen="0.0.0.0:11211"))) == []
    assert rig.switch.config_error and "0.0.0.0" in rig.switch.config_error
    assert rig.switch.reloads == 1 and set(rig.switch.plans) == {"mc"}
    assert rig.switch.reload(lambda: loads(pool_yaml(servers=("21", "22"))))
    assert rig.switch.config_error is None


def test_metrics_collector() -> None:
    rig = Rig()
    rig.switch.apply(loads(pool_yaml()))
    rig.down.add(f"{NET}.21")
    rig.tick()
    rig.tick()
    counters = Counters()
    counters.pools = {"mc": {"requests": 10, "hits": 4, "misses": 6, "invalidations": 1}}
    counters.servers = {f"mc/{NET}.22": {"requests": 3, "hits": 2, "misses": 1,
                                         "invalidations": 0}}
    registry = CollectorRegistry()
    registry.register(MemSwitchCollector(rig.switch, lambda: counters))
    text = generate_latest(registry).decode()
    assert 'torswitch_memswitch_hits_total{pool="mc"} 4.0' in text
    assert 'torswitch_memswitch_requests_total{pool="mc"} 10.0' in text
    assert f'torswitch_memswitch_server_hits_total{{pool="mc",server="{NET}.22"}} 2.0' in text
    assert (f'torswitch_memswitch_server_invalidations_total{{pool="mc",server="{NET}.22"}} '
            "0.0") in text
    assert (f'torswitch_memswitch_server_ejections_total{{pool="mc",server="{NET}.21"}} 1.0'
            in text)
    assert f'torswitch_memswitch_server_up{{pool="mc",server="{NET}.21"}} 0.0' in text
    assert f'torswitch_memswitch_server_up{{pool="mc",server="{NET}.23"}} 1.0' in text
    assert f'torswitch_memswitch_server_ejected{{pool="mc",server="{NET}.21"}} 1.0' in text
    # No data plane counters (stopped): the control plane's metrics still come.
    registry = CollectorRegistry()
    registry.register(MemSwitchCollector(rig.switch, lambda: None))
    assert "torswitch_memswitch_server_ejections_total" in generate_latest(registry).decode()


def test_command_is_registered() -> None:
    args = cli.build_parser().parse_args(
        ["memswitch", "--config", "x.yml", "--rack-iface", "p1", "--rack-iface", "p2",
         "--tap", "t0", "--tap-address", "198.18.70.254/24", "--mc-hot-threshold", "2",
         "--no-backoff"])
    assert args.rack_ifaces == ["p1", "p2"] and args.mc_hot_threshold == 2 and args.no_backoff
    assert args.func.__module__ == "torswitch.commands.memswitch"


def test_what_the_data_plane_would_refuse_is_a_config_error() -> None:
    cfg = loads(pool_yaml())
    pool = cfg.pool("mc")
    bad = with_pool(cfg, "mc", servers=(dataclasses.replace(pool.servers[0], name="a b\x01"),
                                        *pool.servers[1:]))
    with pytest.raises(ConfigError, match="pool 'mc': server identity"):
        plan_pools(bad, IdAllocator(8), IdAllocator(256))
    with pytest.raises(ConfigError, match="pool 'bad name!'"):
        plans(pool_yaml("bad name!"))
