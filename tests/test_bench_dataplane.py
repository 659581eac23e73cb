"""The frames `torswitch bench dataplane` replays, and the pcap file it writes, without DPDK."""

from __future__ import annotations

import struct
from pathlib import Path

from torswitch.bench import dataplane as bench


def test_frames_are_valid_ipv4_of_the_right_mix() -> None:
    frames = bench.bench_frames()
    assert len(frames) == bench.FRAMES
    pairs, steered = set(), 0
    for f in frames:
        assert len(f) == bench.FRAME_BYTES
        assert f[12:14] == b"\x08\x00"
        ip = f[14:34]
        assert ip[0] == 0x45 and struct.unpack("!H", ip[2:4])[0] == bench.FRAME_BYTES - 14
        assert bench.ipv4_checksum(ip) == 0, "header checksum must verify"
        dport = struct.unpack("!H", f[36:38])[0]
        if ip[9] == 6:
            assert dport == bench.STEER_PORT
            steered += 1
        else:
            assert ip[9] == 17 and dport == bench.OTHER_PORT
        assert not f[0] & 1 and not f[6] & 1, "unicast MACs only"
        pairs.add((f[6:12], f[0:6]))
    assert steered * bench.STEER_EVERY == len(frames)
    assert len(pairs) == bench.SOURCES * bench.DESTINATIONS


def test_ipv4_checksum_known_answer() -> None:
    # The worked example of Wikipedia's "IPv4 header checksum" section: 0xB861.
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert bench.ipv4_checksum(hdr) == 0xB861


def test_pcap_round_trip(tmp_path: Path) -> None:
    frames = bench.bench_frames(16)
    path = tmp_path / "f.pcap"
    bench.write_pcap(path, frames)
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw)[0] == 0xA1B2C3D4  # written in host (little) order
    assert len(raw) == 24 + 16 * (16 + bench.FRAME_BYTES)
    assert bench.read_pcap(path) == frames


def test_argv_runs_one_core_without_backoff(tmp_path: Path) -> None:
    argv = bench.dataplane_argv(Path("/b"), tmp_path / "f.pcap", tmp_path / "s", ("--mode", "bare"),
                                0.5, 1)
    app = argv[argv.index("--") + 1:]
    assert argv[argv.index("-l") + 1] == "1"
    assert f"net_pcap0,rx_pcap={tmp_path / 'f.pcap'},infinite_rx=1" in argv
    assert "net_null0,no-rx=1" in argv
    assert "--no-backoff" in app and app[app.index("--run-ms") + 1] == "500"
    assert app[-2:] == ["--mode", "bare"]
    statics = [app[i + 1] for i, a in enumerate(app) if a == "--static-mac"]
    assert statics == [f"02:00:00:00:02:{i:02x}@1" for i in range(bench.DESTINATIONS)]
