"""torswitch.dataplane without DPDK: command lines, configuration checks, counter parsing, the
control client (against a scripted peer), the health checker's state machine, Hadoop conf ports
and the `torswitch dataplane` command on a stats file."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from torswitch import cli
from torswitch.dataplane import (
    CONTROL_MAX_REQUEST,
    MAX_STEERING_LEASE_MS,
    ControlClient,
    ControlError,
    Counters,
    Dataplane,
    DataplaneConfig,
    DataplaneError,
    HealthChecker,
    McServer,
    build_argv,
    mc_pool_words,
    parse_counters,
    parse_lcores,
    parse_mc_status,
    steer_ports_from_hadoop_conf,
)
from torswitch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

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
                     "net_af_packet2,iface=up,qdisc_bypass=0", "net_tap0,iface=t0"]
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


def test_argv_control_and_steering_off() -> None:
    cfg = DataplaneConfig(rack_ifaces=["a"], tap_iface="t", steer_tcp_ports=[9866],
                          steering=False)
    app = build_argv(cfg, Path("s"), Path("/w/control.sock"))
    app = app[app.index("--") + 1:]
    assert app[app.index("--control") + 1] == "/w/control.sock"
    assert app[app.index("--steering") + 1] == "off"
    assert "--steering" not in build_argv(DataplaneConfig(rack_ifaces=["a"]), Path("s"))


def test_health_check_starts_with_steering_off(tmp_path: Path) -> None:
    dp = Dataplane(DataplaneConfig(rack_ifaces=["a"], tap_iface="t", steer_tcp_ports=[9866]),
                   tmp_path, health=lambda: True)
    assert dp.config.steering is False


# ---- steered ports from a Hadoop conf dir -----------------------------------------------------

def _site(tmp_path: Path, name: str, props: dict[str, str]) -> Path:
    body = "".join(f"<property><name>{k}</name><value>{v}</value></property>"
                   for k, v in props.items())
    (tmp_path / name).write_text(f"<?xml version=\"1.0\"?><configuration>{body}</configuration>")
    return tmp_path


def test_steer_ports_from_hadoop_conf(tmp_path: Path) -> None:
    assert steer_ports_from_hadoop_conf(None) == (9866,)
    assert steer_ports_from_hadoop_conf(REPO / "hadoop-conf") == (9866,)
    conf = _site(tmp_path, "hdfs-site.xml", {"dfs.datanode.address": "0.0.0.0:50010"})
    assert steer_ports_from_hadoop_conf(conf) == (50010,)


def test_steer_ports_default_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    only_core = _site(tmp_path / "a", "core-site.xml", {"fs.defaultFS": "hdfs://nn:8020"})
    assert steer_ports_from_hadoop_conf(only_core) == (9866,)
    bad = _site(tmp_path / "b", "hdfs-site.xml", {"dfs.datanode.address": "0.0.0.0:x"})
    with pytest.raises(ConfigError):
        steer_ports_from_hadoop_conf(bad)
    with pytest.raises(ConfigError):
        steer_ports_from_hadoop_conf(tmp_path / "missing")


# ---- health checker ---------------------------------------------------------------------------

def _checker(results: list[object], applied: list[bool], rise: int = 2, fall: int = 2,
             apply: Callable[[bool], None] | None = None) -> HealthChecker:
    it = iter(results)

    def probe() -> bool:
        r = next(it)
        if isinstance(r, Exception):
            raise r
        return bool(r)
    return HealthChecker(probe, apply or applied.append, interval=1, rise=rise, fall=fall)


def test_health_checker_rise_and_fall() -> None:
    applied: list[bool] = []
    hc = _checker([False, False, True, True, True, False, RuntimeError("boom"), True], applied)
    verdicts = [hc.step() for _ in range(8)]
    assert verdicts == [None, False, False, True, True, True, False, False]
    assert applied == [False, True, False]
    assert hc.transitions == 3


def test_health_checker_flapping_probe_changes_nothing() -> None:
    applied: list[bool] = []
    hc = _checker([True, False] * 5, applied)
    assert [hc.step() for _ in range(10)] == [None] * 10 and applied == []


def test_health_checker_retries_failed_apply() -> None:
    calls: list[bool] = []

    def apply(on: bool) -> None:
        calls.append(on)
        if len(calls) == 1:
            raise ControlError("no reply")
    hc = _checker([True, True, True, True], [], apply=apply)
    for _ in range(4):
        hc.step()
    assert calls == [True, True]  # failed once, applied on the next probe, then left alone


def test_health_checker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        HealthChecker(lambda: True, lambda on: None, interval=0)


# ---- control client against a scripted peer ----------------------------------------------------

@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[str, list[bytes], list[Callable[[str], list[bytes]]]]]:
    """A fake data plane: each request is answered by the next script (request -> datagrams)."""
    path = str(tmp_path / "ctl.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(0.1)
    seen: list[bytes] = []
    scripts: list[Callable[[str], list[bytes]]] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = srv.recvfrom(CONTROL_MAX_REQUEST)
            except TimeoutError:
                continue
            seen.append(data)
            for reply in scripts.pop(0)(data.decode().split()[1]):
                srv.sendto(reply, addr)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, seen, scripts
    stop.set()
    thread.join()
    srv.close()


def test_control_client_protocol(peer: tuple[str, list[bytes], list[Callable[[str], list[bytes]]]]
                                 ) -> None:
    path, seen, scripts = peer
    scripts += [
        # A late reply to some earlier request comes first and must be ignored.
        lambda seq: [b"v1 999 ok\nsteering=off\n",
                     f"v1 {seq} ok\nprotocol=1\nsteering=on\n".encode()],
        lambda seq: [f"v1 {seq} error no tap port to steer to\n".encode()],
        lambda seq: [f"v2 {seq} ok\n".encode()],
        lambda seq: [],
    ]
    with ControlClient(path, timeout=0.3) as client:
        assert client.status() == {"protocol": "1", "steering": "on"}
        with pytest.raises(ControlError, match="no tap port"):
            client.set_steering(True)
        with pytest.raises(ControlError, match="speaks v2"):
            client.request("status")
        with pytest.raises(ControlError, match="no reply"):
            client.request("counters")
        with pytest.raises(ValueError):
            client.set_steer_ports([0])
        client_dir = Path(client._dir)
    assert [d.split(b" ", 2)[2] for d in seen] == [b"status", b"steering on", b"status",
                                                   b"counters"]
    assert all(d.startswith(b"v1 ") for d in seen)
    assert not client_dir.exists()


# ---- torswitch dataplane counters on a stats file ----------------------------------------------

def test_cli_counters_from_stats_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stats = tmp_path / "stats.prom"
    stats.write_text(STATS)
    assert cli.main(["dataplane", "counters", "--stats-file", str(stats), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["ports"]["net_af_packet0"] == {"rx_packets": 12, "steered": 5}
    assert got["totals"] == {"mac_learned": 7}
    assert cli.main(["dataplane", "counters", "--stats-file", str(stats)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["counter", "net_af_packet0", "net_af_packet1", "net_tap0"]
    assert lines[2].split() == ["rx_packets", "12", "3", "0"]
    assert lines[3].split() == ["steered", "5", "0", "0"]
    assert lines[-1].split() == ["mac_learned", "7"]
    assert cli.main(["dataplane", "counters", "--stats-file", str(stats), "--prometheus"]) == 0
    assert capsys.readouterr().out == STATS
    assert cli.main(["dataplane", "counters", "--stats-file", str(tmp_path / "no")]) == 1
    assert cli.main(["dataplane", "status", "--control", str(tmp_path / "no.sock")]) == 1


# ---- MemSwitch: options, counters, control commands ----------------------------------------------

def test_argv_memcached_options() -> None:
    cfg = DataplaneConfig(rack_ifaces=["a"], mc_cache_slots=0, mc_max_value=1400,
                          mc_hot_threshold=5, mc_cache_ttl_ms=2000, mc_write_timeout_ms=300,
                          mc_pool_file=Path("/etc/pools"))
    app = build_argv(cfg, Path("s"))
    app = app[app.index("--") + 1:]
    want = {"--mc-cache-slots": "0", "--mc-max-value": "1400", "--mc-hot-threshold": "5",
            "--mc-cache-ttl-ms": "2000", "--mc-write-timeout-ms": "300",
            "--mc-pool-file": "/etc/pools"}
    assert {flag: app[app.index(flag) + 1] for flag in want} == want
    # None leaves the data plane's defaults alone.
    plain = build_argv(DataplaneConfig(rack_ifaces=["a"]), Path("s"))
    assert not any(a.startswith("--mc-") for a in plain)


@pytest.mark.parametrize("kwargs", [
    {"mc_cache_slots": -1}, {"mc_max_value": 0}, {"mc_max_value": 1401},
    {"mc_hot_threshold": 0}, {"mc_hot_threshold": 65536}, {"mc_cache_ttl_ms": 0},
    {"mc_write_timeout_ms": -5},
])
def test_config_rejects_memcached_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DataplaneConfig(rack_ifaces=["a"], **kwargs)  # type: ignore[arg-type]


MC_STATS = STATS + """\
# HELP tsw_dataplane_mc_requests_total request datagrams to the pool's address
# TYPE tsw_dataplane_mc_requests_total counter
tsw_dataplane_mc_requests_total{pool="alpha",pool_id="0"} 40
tsw_dataplane_mc_requests_total{pool="beta",pool_id="3"} 2
tsw_dataplane_mc_hits_total{pool="alpha",pool_id="0"} 30
# HELP tsw_dataplane_mc_server_requests_total request datagrams sent to the server
tsw_dataplane_mc_server_requests_total{pool="alpha",server="10.0.0.1",sid="1"} 6
tsw_dataplane_mc_server_requests_total{pool="alpha",server="odd \\"name\\"",sid="2"} 4
tsw_dataplane_mc_server_hits_total{pool="alpha",server="10.0.0.1",sid="1"} 17
tsw_dataplane_mc_parse_total{result="ok"} 41
tsw_dataplane_mc_parse_total{result="too_many_keys"} 1
tsw_dataplane_mc_fill_total{result="filled"} 3
# TYPE tsw_dataplane_mc_cache_entries gauge
tsw_dataplane_mc_cache_entries 3
tsw_dataplane_mc_requests_in_flight 1
"""


def test_parse_counters_memcached_samples() -> None:
    c = parse_counters(MC_STATS)
    assert c.pools == {"alpha": {"requests": 40, "hits": 30}, "beta": {"requests": 2}}
    assert c.servers == {"alpha/10.0.0.1": {"requests": 6, "hits": 17},
                         'alpha/odd "name"': {"requests": 4}}
    assert c.labelled == {"mc_parse": {"ok": 41, "too_many_keys": 1},
                          "mc_fill": {"filled": 3}}
    # Ports and totals are what they were without MemSwitch, plus the two gauges.
    assert c.ports == parse_counters(STATS).ports
    assert c.totals == {"mac_learned": 7, "mc_cache_entries": 3, "mc_requests_in_flight": 1}
    assert c.help["mc_requests"] == "request datagrams to the pool's address"
    assert c.help["mc_server_requests"] == "request datagrams sent to the server"


SERVERS = [
    McServer(sid=3, ip="10.0.0.2", port=11211, mac="02:00:00:00:00:02", weight=2, live=True,
             identity=b"10.0.0.2"),
    McServer(sid=1, ip="10.0.0.1", port=11212, mac="00:00:00:00:00:00", weight=1, live=False,
             identity=b"10.0.0.1:11212"),
]


def test_mc_pool_words() -> None:
    words = mc_pool_words(2, "alpha", "10.0.0.100", 11211, "02:00:00:00:01:00", "fnv1a_64",
                          "ketama", "", True, SERVERS)
    assert words == ["mc-pool", "2", "alpha", "10.0.0.100:11211", "02:00:00:00:01:00",
                     "fnv1a_64", "ketama", "-", "on",
                     "3,10.0.0.2,11211,02:00:00:00:00:02,2,1," + b"10.0.0.2".hex(),
                     "1,10.0.0.1,11212,00:00:00:00:00:00,1,0," + b"10.0.0.1:11212".hex()]
    tagged = mc_pool_words(0, "b", "10.0.0.100", 1, "02:00:00:00:01:00", "md5", "modula",
                           "{}", False, SERVERS[:1])
    assert tagged[7:9] == ["{}", "off"]


@pytest.mark.parametrize("change", [
    {"pool_id": 8}, {"name": "bad name"}, {"name": ""}, {"vip": "10.0.0"}, {"port": 0},
    {"vmac": "02:00:00:00:01"}, {"hash_tag": "{"}, {"servers": []},
    {"servers": [SERVERS[0], SERVERS[0]]},
    {"servers": [McServer(sid=256, ip="10.0.0.1", port=1, mac="02:00:00:00:00:01",
                          identity=b"x")]},
    {"servers": [McServer(sid=1, ip="10.0.0.1", port=1, mac="02:00:00:00:00:01",
                          weight=0, identity=b"x")]},
    {"servers": [McServer(sid=1, ip="10.0.0.1", port=1, mac="02:00:00:00:00:01",
                          identity=b"a b\n")]},
    {"servers": [McServer(sid=1, ip="10.0.0.1", port=1, mac="02:00:00:00:00:01",
                          identity=b"x" * 96)]},
    {"servers": [McServer(sid=i, ip="10.0.0.1", port=1, mac="02:00:00:00:00:01",
                          identity=b"s%d" % i) for i in range(33)]},
])
def test_mc_pool_words_rejects(change: dict[str, object]) -> None:
    args: dict[str, object] = {
        "pool_id": 0, "name": "alpha", "vip": "10.0.0.100", "port": 11211,
        "vmac": "02:00:00:00:01:00", "hash": "fnv1a_64", "distribution": "ketama",
        "hash_tag": "", "cache": True, "servers": SERVERS}
    args.update(change)
    with pytest.raises(ValueError):
        mc_pool_words(**args)  # type: ignore[arg-type]


def test_parse_mc_status() -> None:
    body = (
        "cache_slots=16384\ncache_entries=2\nrequests_in_flight=0\n"
        "pool=2 name=alpha vip=10.0.0.100 port=11211 vmac=02:00:00:00:01:00 hash=fnv1a_64 "
        "distribution=ketama hash_tag=- cache=on servers=2\n"
        f"server pool=2 sid=3 ip=10.0.0.2 port=11211 mac=02:00:00:00:00:02 weight=2 live=1 "
        f"identity={b'10.0.0.2'.hex()}\n"
        f"server pool=2 sid=1 ip=10.0.0.1 port=11212 mac=00:00:00:00:00:00 weight=1 live=0 "
        f"identity={b'10.0.0.1:11212'.hex()}\n")
    st = parse_mc_status(body)
    assert (st.cache_slots, st.cache_entries, st.requests_in_flight) == (16384, 2, 0)
    p = st.pools[2]
    assert (p.name, p.vip, p.port, p.vmac, p.hash, p.distribution, p.hash_tag, p.cache) == (
        "alpha", "10.0.0.100", 11211, "02:00:00:00:01:00", "fnv1a_64", "ketama", "", True)
    assert p.servers == tuple(SERVERS)
    assert parse_mc_status("cache_slots=0\n").pools == {}


def test_control_client_memcached_commands(
        peer: tuple[str, list[bytes], list[Callable[[str], list[bytes]]]]) -> None:
    path, seen, scripts = peer
    scripts += [
        lambda seq: [f"v1 {seq} ok\n".encode()],
        lambda seq: [f"v1 {seq} error a server id belongs to another pool\n".encode()],
        lambda seq: [f"v1 {seq} ok\n".encode()],
        lambda seq: [f"v1 {seq} ok\n".encode()],
        lambda seq: [f"v1 {seq} ok\ncache_slots=0\ncache_entries=0\n"
                     f"requests_in_flight=0\n".encode()],
    ]
    big = [McServer(sid=i, ip=f"10.0.1.{i}", port=11211, mac=f"02:00:00:00:01:{i:02x}",
                    identity=b"server-%03d-" % i + b"x" * 80) for i in range(32)]
    with ControlClient(path, timeout=0.5) as client:
        client.mc_pool(1, "alpha", "10.0.0.100", 11211, "02:00:00:00:01:00", "fnv1a_64",
                       "ketama", "", True, big)
        with pytest.raises(ControlError, match="another pool"):
            client.mc_pool(1, "alpha", "10.0.0.100", 11211, "02:00:00:00:01:00", "md5",
                           "ketama", "{}", False, SERVERS)
        client.mc_pool_del(1)
        client.mc_flush()
        assert client.mc_status().pools == {}
        with pytest.raises(ValueError):
            client.mc_pool_del(9)
        with pytest.raises(ValueError):  # longer than the data plane takes
            client.request("mc-pool", "x" * CONTROL_MAX_REQUEST)
    first = seen[0].decode().split(" ")
    assert first[2:4] == ["mc-pool", "1"] and len(first) == 2 + 9 + 32
    assert len(seen[0]) <= CONTROL_MAX_REQUEST
    assert [d.decode().split(" ", 3)[2] for d in seen[2:]] == ["mc-pool-del", "mc-flush",
                                                                "mc-status"]


# ---- steering leases (issue 6) ------------------------------------------------------------------

def test_control_client_steering_lease(peer: tuple[str, list[bytes],
                                                   list[Callable[[str], list[bytes]]]]) -> None:
    path, seen, scripts = peer
    scripts += [lambda seq: [f"v1 {seq} ok\n".encode()]] * 2
    with ControlClient(path, timeout=0.3) as client:
        client.set_steering(True, lease_ms=5000)
        client.set_steering(False)
        for bad in (0, MAX_STEERING_LEASE_MS + 1):
            with pytest.raises(ValueError, match="lease"):
                client.set_steering(True, lease_ms=bad)
        with pytest.raises(ValueError, match="only steering on"):
            client.set_steering(False, lease_ms=100)
    assert [d.split(b" ", 2)[2] for d in seen] == [b"steering on 5000", b"steering off"]


def test_argv_flow_idle() -> None:
    config = DataplaneConfig(rack_ifaces=["veth0"], flow_idle_s=30)
    argv = build_argv(config, Path("/tmp/s"))
    assert argv[argv.index("--flow-idle-s") + 1] == "30"
    assert "--flow-idle-s" not in build_argv(DataplaneConfig(rack_ifaces=["veth0"]),
                                             Path("/tmp/s"))
    for bad in (0, 86401):
        with pytest.raises(ValueError, match="flow_idle_s"):
            DataplaneConfig(rack_ifaces=["veth0"], flow_idle_s=bad)


# ---- several lcores (issue 6: multi-queue, multi-core) ----------------------------------------

def test_argv_lcores_give_queue_pairs() -> None:
    cfg = DataplaneConfig(rack_ifaces=["a", "b"], uplink_iface="up", tap_iface="t0",
                          lcores=[0, 1])
    argv = build_argv(cfg, Path("s"))
    assert argv[argv.index("-l") + 1] == "0,1"
    vdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "--vdev"]
    # One queue pair per lcore on af_packet ports; net_tap takes its queues by itself.
    assert vdevs == ["net_af_packet0,iface=a,qpairs=2", "net_af_packet1,iface=b,qpairs=2",
                     "net_af_packet2,iface=up,qpairs=2,qdisc_bypass=0", "net_tap0,iface=t0"]


def test_argv_queues_apart_from_lcores() -> None:
    one_queue = build_argv(DataplaneConfig(rack_ifaces=["a"], lcores=[1, 3], queues=1),
                           Path("s"))
    assert one_queue[one_queue.index("-l") + 1] == "1,3"
    assert "net_af_packet0,iface=a" in one_queue
    four = build_argv(DataplaneConfig(rack_ifaces=["a"], lcore=2, queues=4), Path("s"))
    assert four[four.index("-l") + 1] == "2"
    assert "net_af_packet0,iface=a,qpairs=4" in four
    # The default is one lcore (lcore) and one queue, as before.
    plain = build_argv(DataplaneConfig(rack_ifaces=["a"]), Path("s"))
    assert plain[plain.index("-l") + 1] == "0" and "net_af_packet0,iface=a" in plain


@pytest.mark.parametrize("kwargs", [
    {"lcores": []},
    {"lcores": [0, 0]},
    {"lcores": [-1, 0]},
    {"lcores": list(range(17))},
    {"queues": 0},
    {"queues": 17},
    {"lcore": -1},
])
def test_config_rejects_lcores_and_queues(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DataplaneConfig(rack_ifaces=["a"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,want", [
    ("0", (0,)),
    ("0-1", (0, 1)),
    ("0,2", (0, 2)),
    ("1-3,5", (1, 2, 3, 5)),
    ("2,0-1,1", (2, 0, 1)),
    (" 0 , 1 ", (0, 1)),
])
def test_parse_lcores(text: str, want: tuple[int, ...]) -> None:
    assert parse_lcores(text) == want


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "-1", "0-16", "0,,1"])
def test_parse_lcores_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_lcores(text)


def test_parse_counters_worker_samples() -> None:
    text = """\
# HELP tsw_dataplane_worker_rx_packets_total frames the worker received on its queues
# TYPE tsw_dataplane_worker_rx_packets_total counter
tsw_dataplane_worker_rx_packets_total{worker="0",lcore="0"} 10
tsw_dataplane_worker_rx_packets_total{worker="1",lcore="1"} 7
# HELP tsw_dataplane_worker_mc_handoff_total frames this worker handed to worker 0
# TYPE tsw_dataplane_worker_mc_handoff_total counter
tsw_dataplane_worker_mc_handoff_total{worker="0",lcore="0"} 0
tsw_dataplane_worker_mc_handoff_total{worker="1",lcore="1"} 3
"""
    c = parse_counters(text)
    assert c.labelled["worker_rx_packets"] == {"worker=0,lcore=0": 10, "worker=1,lcore=1": 7}
    assert c.labelled["worker_mc_handoff"]["worker=1,lcore=1"] == 3
    assert not c.ports and not c.totals


def test_cli_lcores_options() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["dataplane", "serve", "--tap-address", "198.18.1.1/16",
                              "--lcores", "0-1", "--queues", "2"])
    assert args.lcores == (0, 1) and args.queues == 2
    args = parser.parse_args(["memswitch", "--config", "c.yml", "--rack-iface", "a", "--tap",
                              "t", "--tap-address", "198.18.1.1/24", "--lcores", "0,1"])
    assert args.lcores == (0, 1) and args.queues is None and args.lcore == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["memswitch", "--config", "c.yml", "--rack-iface", "a", "--tap", "t",
                           "--tap-address", "198.18.1.1/24", "--lcores", "1-0"])
