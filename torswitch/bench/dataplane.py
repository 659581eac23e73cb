"""`torswitch bench dataplane`: packets per second of the DPDK data plane on one core.

Frames are replayed from a pcap held in memory (DPDK's `net_pcap` with `infinite_rx=1`, rx only)
into a `net_null` port (`no-rx=1`), by `tsw-dataplane` on one lcore with the idle back-off off,
for --seconds per run. Three modes, each run --repeat times, interleaved so that noise from the
other tenants of the machine hits them alike; the best run of each counts:

  - bare forwarding (`--mode bare`): port 0 to port 1 without looking at the frames; the baseline;
  - L2 switching (`--mode switch`, no steering): learn the source, look up the destination;
    destinations are static MAC entries on the null port, so every frame is a known unicast;
  - HDFS steering: the same plus classification of every frame, steering IPv4 TCP to the
    DataNode port to the "tap" (here the null port, with its MAC written as destination).

The pcap is written here with the struct module: FRAME_BYTES-byte frames (as stored in the pcap;
64 bytes is the classic minimum frame size, at 10GbE line rate 14.88 Mpps) from SOURCES source
MACs to DESTINATIONS destination MACs; one in STEER_EVERY is IPv4 TCP to the steered port, the
others IPv4 UDP. Rates are the null port's transmitted frames divided by the worker loop's own
run time (`worker_us`, measured by the data plane), so EAL start-up is not counted.
Targets (reported, never asserted): L2 switching >= 14.88 Mpps and >= 0.6x bare forwarding.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from torswitch.bench.report import Report, Target

NAME = "dataplane"
HELP = "DPDK data plane Mpps on one core: bare forwarding, L2 switching, HDFS steering"

FRAME_BYTES = 64
SOURCES = 8
DESTINATIONS = 8
FRAMES = 1024
STEER_EVERY = 4
STEER_PORT = 9866
OTHER_PORT = 7000
LINE_RATE_64B_MPPS = 14.88

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1

# (figure prefix, table label, data-plane arguments after "--")
MODES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("bare_forwarding", "bare forwarding (baseline)", ("--mode", "bare")),
    ("l2_switching", "L2 switching", ("--mode", "switch")),
    ("hdfs_steering", "L2 + HDFS steering", ("--mode", "switch", "--tap", "1",
                                             "--steer-tcp-port", str(STEER_PORT))),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="run time of each measurement (default 1.0)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per mode, best counts (default 3)")
    parser.add_argument("--lcore", type=int, default=1, help="lcore to run on (default 1)")
    parser.add_argument("--binary", type=Path, default=None,
                        help="tsw-dataplane binary (default: native/dataplane/build)")


def source_mac(i: int) -> bytes:
    return bytes([0x02, 0, 0, 0, 0x01, i])


def dest_mac(i: int) -> bytes:
    return bytes([0x02, 0, 0, 0, 0x02, i])


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def ipv4_checksum(header: bytes) -> int:
    """RFC 791 header checksum: ones' complement of the ones' complement sum of 16-bit words."""
    words: tuple[int, ...] = struct.unpack(f"!{len(header) // 2}H", header)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


TCP_SYN = 0x02
TCP_ACK = 0x10


def frame(src: bytes, dst: bytes, proto: int, sport: int, dport: int,
          size: int = FRAME_BYTES, tcp_flags: int = TCP_ACK) -> bytes:
    """An Ethernet/IPv4 frame of `size` bytes carrying TCP (proto 6) or UDP (17) to dport."""
    ip_len = size - 14
    l4: bytes
    if proto == 6:
        # seq, ack, data offset 5 words, flags, window; checksum left 0 (nothing verifies it)
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, tcp_flags, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, ip_len - 20, 0)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0x4000, 64, proto, 0,
                               bytes([198, 18, 61, src[-1] + 1]),
                               bytes([198, 18, 61, 128 + dst[-1]])))
    struct.pack_into("!H", ip, 10, ipv4_checksum(bytes(ip)))
    body = bytes(ip) + l4
    return dst + src + b"\x08\x00" + body + bytes(ip_len - len(body))


def bench_frames(count: int = FRAMES) -> list[bytes]:
    """The replayed frames: every source talks to every destination; 1 in STEER_EVERY is HDFS.

    Steering is decided per connection at its SYN, so each HDFS flow's first frame is a SYN."""
    out = []
    flows: set[tuple[bytes, bytes, int]] = set()
    for i in range(count):
        src, dst = source_mac(i % SOURCES), dest_mac((i // SOURCES) % DESTINATIONS)
        if i % STEER_EVERY == STEER_EVERY - 1:
            flow = (src, dst, 40000 + i % 1000)
            flags = TCP_ACK if flow in flows else TCP_SYN
            flows.add(flow)
            out.append(frame(src, dst, 6, 40000 + i % 1000, STEER_PORT, tcp_flags=flags))
        else:
            out.append(frame(src, dst, 17, 40000 + i % 1000, OTHER_PORT))
    return out


def write_pcap(path: Path, frames: Sequence[bytes]) -> None:
    """A classic libpcap file (microsecond timestamps, Ethernet link type)."""
    with open(path, "wb") as f:
        f.write(struct.pack("=IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for i, data in enumerate(frames):
            f.write(struct.pack("=IIII", i // 1_000_000, i % 1_000_000, len(data), len(data)))
            f.write(data)


def read_pcap(path: Path) -> list[bytes]:
    """The frames of a pcap written by write_pcap (same byte order); for tests."""
    raw = path.read_bytes()
    magic, major, minor, _, _, _, link = struct.unpack_from("=IHHiIII", raw, 0)
    if magic != PCAP_MAGIC or (major, minor) != (2, 4) or link != LINKTYPE_ETHERNET:
        raise ValueError("not a little-endian Ethernet pcap 2.4")
    frames, off = [], 24
    while off < len(raw):
        _, _, incl, _ = struct.unpack_from("=IIII", raw, off)
        frames.append(raw[off + 16:off + 16 + incl])
        off += 16 + incl
    return frames


def dataplane_argv(binary: Path, pcap: Path, stats: Path, mode_args: Sequence[str],
                   seconds: float, lcore: int) -> list[str]:
    """One measured run: pcap in memory -> data plane -> null port, no back-off, fixed time."""
    argv = [str(binary), "-l", str(lcore), "--no-huge", "-m", "256", "--no-pci",
            "--no-shconf", "--file-prefix", f"tsw-dp-bench-{os.getpid()}",
            "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
            "--vdev", "net_null0,no-rx=1",
            "--", "--no-backoff", "--run-ms", str(max(1, int(seconds * 1000))),
            "--stats-file", str(stats), "--stats-interval-ms", "0"]
    for i in range(DESTINATIONS):
        argv += ["--static-mac", f"{mac_text(dest_mac(i))}@1"]
    return argv + list(mode_args)


def run_once(argv: Sequence[str], stats: Path, timeout: float) -> dict[str, int]:
    """Run the data plane to completion; returns the null port's and global counters.

    The process is always reaped: on timeout or interrupt it is killed, never left spinning.
    """
    from torswitch.dataplane import DataplaneError, parse_counters

    stats.unlink(missing_ok=True)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            Path(f"/var/run/dpdk/{argv[argv.index('--file-prefix') + 1]}").rmdir()
    if proc.returncode != 0 or not stats.exists():
        raise DataplaneError(f"benchmark run failed ({proc.returncode}):\n"
                             + out.decode(errors="replace")[-3000:])
    counters = parse_counters(stats.read_text())
    null = counters.port("net_null0")
    pcap = counters.port("net_pcap0")
    return {"rx": pcap["rx_packets"], "tx": null["tx_packets"], "steered": pcap.get("steered", 0),
            "flooded": pcap.get("flooded", 0), "worker_us": counters.totals["worker_us"]}


def run(args: argparse.Namespace) -> Report:
    from torswitch.dataplane import DEFAULT_BINARY, DataplaneError

    binary = args.binary or DEFAULT_BINARY
    if not os.access(binary, os.X_OK):
        raise DataplaneError(f"{binary} not built (run `make dataplane`)")
    if args.seconds <= 0 or args.repeat < 1:
        raise ValueError("--seconds must be > 0 and --repeat >= 1")
    best: dict[str, dict[str, int]] = {}
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tsw-bench-dp-") as tmp:
        pcap, stats = Path(tmp) / "frames.pcap", Path(tmp) / "stats.prom"
        write_pcap(pcap, bench_frames())
        for _ in range(args.repeat):
            for key, _, mode_args in MODES:
                argv = dataplane_argv(binary, pcap, stats, mode_args, args.seconds, args.lcore)
                res = run_once(argv, stats, timeout=args.seconds + 30)
                rate = res["tx"] / res["worker_us"] if res["worker_us"] else 0.0  # frames/us
                if rate >= rates.get(key, -1.0):
                    rates[key], best[key] = rate, res

    base = rates["bare_forwarding"]
    report = Report(NAME, columns=["mode", "Mpps", "x bare", "frames", "steered", "flooded"])
    for key, label, _ in MODES:
        res = best[key]
        ratio = rates[key] / base if base else 0.0
        report.figures[f"{key}_mpps"] = rates[key]
        report.figures[f"{key}_over_bare_ratio"] = ratio
        report.rows.append([label, f"{rates[key]:.2f}", f"{ratio:.2f}", res["tx"],
                            res["steered"], res["flooded"]])
    report.figures["l2_over_bare_ratio"] = report.figures.pop("l2_switching_over_bare_ratio")
    report.figures["steering_over_bare_ratio"] = report.figures.pop(
        "hdfs_steering_over_bare_ratio")
    del report.figures["bare_forwarding_over_bare_ratio"]
    report.figures["hdfs_steered_frames_ratio"] = (
        best["hdfs_steering"]["steered"] / best["hdfs_steering"]["rx"]
        if best["hdfs_steering"]["rx"] else 0.0)
    report.figures.update({"frame_bytes": FRAME_BYTES, "seconds_per_run": args.seconds,
                           "runs_per_mode": args.repeat})
    report.targets = [Target("l2_switching_mpps", ">=", LINE_RATE_64B_MPPS),
                      Target("l2_over_bare_ratio", ">=", 0.6)]
    report.notes.append(
        f"one core (lcore {args.lcore}), back-off off, best of {args.repeat} x {args.seconds:g} s;"
        f" {FRAME_BYTES}-byte frames from a pcap in memory into net_null;"
        f" 1 in {STEER_EVERY} frames is TCP to port {STEER_PORT}")
    return report
