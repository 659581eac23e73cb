"""The pure parts of `torswitch bench memcached`: frames and pcaps, the pool line, statistics,
the report's figures, and the C latency probe against a fake memcached on loopback."""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from torswitch.bench import dataplane as dpbench
from torswitch.bench import memcached as bench
from torswitch.dataplane import McServer, parse_counters
from torswitch.memcache_udp import parse_values


def _fields(frame: bytes) -> dict[str, object]:
    """Ethernet/IPv4/UDP fields of a frame, the checksums checked."""
    assert frame[12:14] == b"\x08\x00"
    ip = frame[14:34]
    assert ip[0] == 0x45 and ip[9] == 17
    assert dpbench.ipv4_checksum(ip) == 0, "IPv4 header checksum must verify"
    ip_len = struct.unpack("!H", ip[2:4])[0]
    udp = frame[34:14 + ip_len]
    sport, dport, ulen, _ = struct.unpack("!HHHH", udp[:8])
    assert ulen == len(udp) == ip_len - 20
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
    assert bench.ones_complement_sum(pseudo + udp) == 0xFFFF, "UDP checksum must verify"
    req_id, seq, total, reserved = struct.unpack("!HHHH", udp[8:16])
    assert (seq, total, reserved) == (0, 1, 0)
    return {"dst_mac": frame[0:6], "src_mac": frame[6:12], "src_ip": ip[12:16],
            "dst_ip": ip[16:20], "sport": sport, "dport": dport, "req_id": req_id,
            "body": udp[16:]}


def test_ones_complement_sum_known_answer() -> None:
    # RFC 1071, section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
    assert bench.ones_complement_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    # An odd length is padded with a zero byte.
    assert bench.ones_complement_sum(b"\x01") == 0x0100


def test_udp_checksum_zero_goes_as_ffff() -> None:
    # Find the payload word that makes the computed checksum 0: it must be sent as 0xFFFF
    # (RFC 768), which still verifies (0xFFFF and 0 are the same number in ones' complement).
    src, dst = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    pseudo = src + dst + struct.pack("!BBH", 0, 17, 10)
    for n in range(1 << 16):
        udp = struct.pack("!HHHHH", 1, 2, 10, 0, n)
        if bench.ones_complement_sum(pseudo + udp) == 0xFFFF:
            break
    else:
        pytest.fail("no payload word sums to 0xffff")
    assert bench.udp_checksum(src, dst, udp) == 0xFFFF


def test_redirect_frames_are_small_gets_over_many_keys() -> None:
    frames = bench.redirect_frames()
    assert len(frames) == bench.PCAP_FRAMES
    keys = set()
    for i, frame in enumerate(frames):
        f = _fields(frame)
        assert 64 <= len(frame) <= 72
        assert f["dst_mac"] == bench.PCAP_VMAC and f["dst_ip"] == bench.ip4(bench.PCAP_VIP)
        assert f["dport"] == bench.PCAP_PORT and f["req_id"] == i
        body = f["body"]
        assert isinstance(body, bytes) and body.startswith(b"get ") and body.endswith(b"\r\n")
        key = body[4:-2]
        assert 8 <= len(key) <= 16 and b" " not in key
        keys.add(key)
        assert not frame[6] & 1, "unicast source"
    assert len(keys) == bench.PCAP_KEYS


def test_hit_pcap_fills_then_only_gets() -> None:
    frames = bench.hit_frames(32)
    assert len(frames) == bench.PCAP_FRAMES
    head, tail = frames[:2 * bench.HOT_KEYS], frames[2 * bench.HOT_KEYS:]
    tickets = {}
    for get, reply in zip(head[0::2], head[1::2], strict=True):
        g, r = _fields(get), _fields(reply)
        # The reply is the server's answer to this very get: direct server return from
        # VIP:PORT to the client's address and port, the same request id.
        assert r["src_ip"] == g["dst_ip"] and r["dst_ip"] == g["src_ip"]
        assert r["sport"] == g["dport"] and r["dport"] == g["sport"]
        assert r["dst_mac"] == g["src_mac"] and r["src_mac"] == bench.server_mac(0)
        assert r["req_id"] == g["req_id"]
        body, rbody = g["body"], r["body"]
        assert isinstance(body, bytes) and isinstance(rbody, bytes)
        key = body[4:-2]
        [(k, flags, value, cas)] = parse_values(rbody)
        assert (k, flags, cas) == (key, bench.PCAP_FLAGS, None) and len(value) == 32
        tickets[key] = (g["src_ip"], g["sport"], g["req_id"])
    assert len(tickets) == bench.HOT_KEYS
    for frame in tail:
        f = _fields(frame)
        body = f["body"]
        assert isinstance(body, bytes) and f["dst_mac"] == bench.PCAP_VMAC
        # Every later get of a key has the ticket its reply answers.
        assert tickets[body[4:-2]] == (f["src_ip"], f["sport"], f["req_id"])


def test_pcap_round_trip(tmp_path: Path) -> None:
    frames = bench.hit_frames(100, count=64)
    dpbench.write_pcap(tmp_path / "h.pcap", frames)
    assert dpbench.read_pcap(tmp_path / "h.pcap") == frames


def test_pool_line_in_nutcracker_order() -> None:
    def server(sid: int, ip: str, port: int, weight: int = 1, live: bool = True) -> McServer:
        return McServer(sid, ip, port, f"02:00:00:00:00:{sid:02x}", weight, live,
                        bench.server_identity(ip, port, weight))

    servers = [server(1, "10.0.0.10", 11211), server(2, "10.0.0.9", 11211),
               server(3, "10.0.0.11", 22122, weight=2, live=False)]
    line = bench.pool_line(3, "bench", "10.0.0.100", 11211, bytes.fromhex("02005e000001"),
                           servers, cache=True)
    words = line.split()
    assert words[:9] == ["mc-pool", "3", "bench", "10.0.0.100:11211", "02:00:5e:00:00:01",
                         "fnv1a_64", "ketama", "-", "on"]
    fields = [w.split(",") for w in words[9:]]
    # nutcracker's order: shorter identity first (the host alone on 11211), then bytewise.
    assert [f[0] for f in fields] == ["2", "1", "3"]
    assert fields[0] == ["2", "10.0.0.9", "11211", "02:00:00:00:00:02", "1", "1",
                         b"10.0.0.9".hex()]
    assert fields[2][4:] == ["2", "0", b"10.0.0.11:22122".hex()]
    off = bench.pool_line(0, "p", "10.0.0.100", 11211, bytes(6), servers[:1], cache=False,
                          tag="{}")
    assert off.split()[7:9] == ["{}", "off"]


def test_pcap_pool_holds_the_static_servers() -> None:
    line = bench.pool_line(0, "bench", bench.PCAP_VIP, bench.PCAP_PORT, bench.PCAP_VMAC,
                           bench.pcap_servers(), cache=False)
    macs = {w.split(",")[3] for w in line.split()[9:]}
    assert macs == {bench.mac_text(bench.server_mac(i)) for i in range(bench.PCAP_SERVERS)}


def test_capacity_arguments(tmp_path: Path) -> None:
    assert bench.capacity_mode_args("bare_forwarding", tmp_path / "p") == ["--mode", "bare"]
    args = bench.capacity_mode_args("redirect", tmp_path / "p")
    assert args[args.index("--mc-pool-file") + 1] == str(tmp_path / "p")
    statics = [args[i + 1] for i, a in enumerate(args) if a == "--static-mac"]
    assert len(statics) == bench.PCAP_SERVERS + bench.PCAP_CLIENTS
    assert all(s.endswith("@1") for s in statics)


def test_statistics() -> None:
    assert bench.percentile([1, 2, 3, 4], 50) == 2
    assert bench.percentile(list(range(1, 101)), 99) == 99
    assert bench.percentile([7], 99) == 7
    with pytest.raises(ValueError):
        bench.percentile([], 50)
    s = bench.summarize([3000, 1000, 2000])
    assert s == {"min": 1.0, "avg": 2.0, "max": 3.0, "p50": 2.0, "p99": 3.0}


def test_parse_probe() -> None:
    res = bench.parse_probe(["0 V 1000\n", "1 V 2000\n", "0 T -1\n", "1 M 500\n", "\n"])
    assert res.ns == {0: [1000], 1: [2000]}
    assert res.status == {0: {"V": 1, "T": 1}, 1: {"V": 1, "M": 1}}
    with pytest.raises(ValueError):
        bench.parse_probe(["0 X 1"])


def test_pool_totals_from_the_stats_file() -> None:
    text = """\
# HELP tsw_dataplane_mc_hits_total gets answered from the switch's cache
tsw_dataplane_mc_hits_total{pool="a",pool_id="0"} 10
tsw_dataplane_mc_hits_total{pool="b",pool_id="1"} 5
tsw_dataplane_mc_server_hits_total{pool="a",server="s1",sid="1"} 10
tsw_dataplane_mc_get_keys_total{pool="a",pool_id="0"} 12
tsw_dataplane_rx_packets_total{name="net_pcap0"} 99
"""
    assert bench.pool_totals(parse_counters(text).pools) == {"hits": 15, "get_keys": 12}


def _stats() -> dict[str, dict[str, float]]:
    base = {"min": 20.0, "avg": 25.0, "max": 80.0, "p50": 24.0, "p99": 40.0}
    scale = {"direct": 1.0, "nutcracker": 2.0, "redirect": 1.05, "hit": 0.4}
    return {c: {k: v * scale[c] for k, v in base.items()} for c, _ in bench.CONFIGS}


def _args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(requests=500, rate=100.0, value_size=32, servers=3, seconds=1.0,
                              repeat=2, lcore=1, out=tmp_path)


def _capacity() -> dict[str, dict[str, int]]:
    run = {"rx": 20_000_000, "tx": 20_000_000, "worker_us": 1_000_000, "pcap_tx": 0}
    return {"bare_forwarding": dict(run, tx=25_000_000),
            "redirect": dict(run, mc_requests=20_000_000),
            "cache_hit": dict(run, tx=10_000, pcap_tx=11_900_000, mc_hits=12_000_000,
                              mc_get_keys=12_000_010)}


def test_report_figures_and_targets(tmp_path: Path) -> None:
    facts = {"hit_counter_delta": 505, "cache_hit_verified_ratio": 1.0, "direct_lost": 0,
             "nutcracker_lost": 0, "redirect_lost": 1, "hit_lost": 0, "hot_key_server": [1]}
    report = bench.build_report(_args(tmp_path), _stats(), facts, _capacity())
    f = report.figures
    for key in ("direct_avg_us", "direct_min_us", "direct_max_us", "direct_p50_us",
                "direct_p99_us", "nutcracker_avg_over_direct_ratio",
                "redirect_avg_over_direct_ratio", "redirect_min_over_direct_ratio",
                "hit_max_over_direct_ratio", "hit_over_direct_latency_ratio",
                "bare_forwarding_mpps", "redirect_mpps", "cache_hit_mpps",
                "redirect_over_bare_ratio", "cache_hit_over_bare_ratio", "cache_hits_per_s",
                "cache_hit_ratio", "cache_hit_verified_ratio"):
        assert key in f, key
    assert f["direct_avg_us"] == 25.0
    assert f["nutcracker_avg_over_direct_ratio"] == pytest.approx(2.0)
    assert f["hit_over_direct_latency_ratio"] == pytest.approx(0.4)
    assert f["redirect_mpps"] == 20.0 and f["bare_forwarding_mpps"] == 25.0
    assert f["redirect_over_bare_ratio"] == pytest.approx(0.8)
    assert f["cache_hit_mpps"] == 12.0 and f["cache_hits_per_s"] == 12e6
    assert f["cache_hit_ratio"] == pytest.approx(12_000_000 / 12_000_010)
    assert "hot_key_server" not in f, "only numbers in the figures"
    assert report.target_results() == {"redirect_avg_over_direct_ratio <= 1.1": True,
                                       "hit_over_direct_latency_ratio <= 0.5": True,
                                       "redirect_mpps >= 14.88": True,
                                       "cache_hit_mpps >= 10": True}
    table = report.to_table()
    assert "torswitch cache hit" in table and "memcached redirect" in table
    doc = json.loads(report.to_json())
    assert doc["targets_met"]["cache_hit_mpps >= 10"] is True


def test_report_of_one_part(tmp_path: Path) -> None:
    report = bench.build_report(_args(tmp_path), None, None, _capacity())
    assert "direct_avg_us" not in report.figures and "redirect_mpps" in report.figures
    assert len(report.targets) == 2
    report.to_table()


def test_write_outputs(tmp_path: Path) -> None:
    facts = {"hit_counter_delta": 505, "cache_hit_verified_ratio": 1.0, "direct_lost": 0,
             "nutcracker_lost": 0, "redirect_lost": 0, "hit_lost": 0}
    report = bench.build_report(_args(tmp_path), _stats(), facts, None)
    notes = bench.write_outputs(tmp_path / "out", report)
    doc = json.loads((tmp_path / "out/result.json").read_text())
    assert doc["figures"]["direct_avg_us"] == 25.0
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out/latency.png").stat().st_size > 1000
    assert any("latency.png" in n for n in notes)


def test_parse_parts() -> None:
    assert bench.parse_parts("latency, capacity") == ("latency", "capacity")
    assert bench.parse_parts("capacity") == ("capacity",)
    with pytest.raises(ValueError):
        bench.parse_parts("speed")


# ---- the C probe, against a fake memcached on loopback ----------------------------------------


@pytest.fixture
def fake_memcached() -> Iterator[tuple[int, int]]:
    """(udp port, tcp port) of a tiny server answering "get K" with a VALUE for keys starting
    with "k" and END otherwise."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    stop = threading.Event()

    def answer(line: bytes) -> bytes:
        key = line.split()[1]
        if key.startswith(b"k"):
            return b"VALUE %s 0 3\r\nabc\r\nEND\r\n" % key
        return b"END\r\n"

    def serve_udp() -> None:
        udp.settimeout(0.1)
        while not stop.is_set():
            try:
                data, peer = udp.recvfrom(2048)
            except TimeoutError:
                continue
            udp.sendto(data[:2] + b"\0\0\0\x01\0\0" + answer(data[8:]), peer)

    def serve_tcp() -> None:
        tcp.settimeout(5)
        try:
            conn, _ = tcp.accept()
        except TimeoutError:
            return
        with conn:
            buf = b""
            while not stop.is_set():
                data = conn.recv(2048)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    conn.sendall(answer(line))

    threads = [threading.Thread(target=serve_udp, daemon=True),
               threading.Thread(target=serve_tcp, daemon=True)]
    for t in threads:
        t.start()
    try:
        yield udp.getsockname()[1], tcp.getsockname()[1]
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        udp.close()
        tcp.close()


def test_probe_measures_every_target(fake_memcached: tuple[int, int]) -> None:
    udp_port, tcp_port = fake_memcached
    probe = bench.ensure_probe()
    targets = [bench.probe_target("udp", "127.0.0.1", udp_port, [b"k1", b"k2"]),
               bench.probe_target("tcp", "127.0.0.1", tcp_port, [b"k3"]),
               bench.probe_target("udp", "127.0.0.1", udp_port, [b"missing"])]
    argv = bench.probe_argv(probe, 20, 2000.0, targets)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    res = bench.parse_probe(out.stdout.splitlines())
    assert res.status == {0: {"V": 20}, 1: {"V": 20}, 2: {"M": 20}}
    assert all(0 < ns < 100_000_000 for ns in res.ns[0] + res.ns[1])
    with pytest.raises(ValueError):
        bench.probe_target("udp", "127.0.0.1", udp_port, [b"a,b"])
