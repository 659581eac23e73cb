"""`torswitch bench codec`: DataTransferProtocol parse speed beside CRC32C and memcpy.

Input is one recorded DataNode reply to READ_BLOCK (response + packets + final empty packet):
either a file given with --input (raw DataNode -> client bytes), or one produced by
torswitch.datatransfer's serializers, which the integration tests hold byte-identical to a
real DataNode's reply. It is fed to the stream parser in socket-sized pieces. Same run:
  - parse: StreamParser events only;
  - parse + verify: events plus the native per-packet checksum check (what BlockReader does);
  - raw CRC32C of the whole buffer: native (tsw_crc32c) and the `crc32c` / `google-crc32c`
    PyPI packages when installed;
  - chunked CRC32C: 512-byte chunk checksums a packet per call, native; and the same through
    the library one chunk per call (a library has no batch API);
  - CRC32 (IEEE): native chunked, and zlib's;
  - memcpy of the same bytes (memoryview slice assignment), the ceiling for byte handling.
Target: native chunked CRC32C >= 5 GB/s on one core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from torswitch.bench.report import Report, Target

NAME = "codec"
HELP = "DTP stream-parse GB/s of a recorded read reply, beside CRC32C and memcpy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mib", type=int, default=32,
                        help="MiB of block data in the synthesized reply (default 32)")
    parser.add_argument("--input", metavar="FILE",
                        help="a recorded DataNode -> client READ_BLOCK reply to parse instead")
    parser.add_argument("--feed-kib", type=int, default=256,
                        help="bytes per feed() call, like one socket read (default 256 KiB)")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="minimum time per measurement, best of 3 (default 0.5)")


def _gbps(fn: Callable[[], Any], nbytes: int, seconds: float) -> float:
    """Best-of-3 GB/s (1e9 bytes/s), each repetition running fn() until `seconds` passed."""
    best = 0.0
    for _ in range(3):
        done, start = 0, time.perf_counter()
        while True:
            fn()
            done += nbytes
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, done / elapsed / 1e9)
    return best


def run(args: argparse.Namespace) -> Report:
    import os
    import zlib

    from torswitch import checksum
    from torswitch.checksum import ChecksumSpec, ChecksumType
    from torswitch.datatransfer import (
        Checksums,
        Data,
        Direction,
        Op,
        Response,
        StreamParser,
        encode_read_reply,
    )

    if args.input:
        with open(args.input, "rb") as f:
            reply = f.read()
    else:
        if args.mib <= 0:
            raise ValueError("--mib must be positive")
        block = os.urandom(args.mib << 20)
        reply = encode_read_reply(block, ChecksumSpec(), 0)
    feed = max(1, args.feed_kib) << 10
    pieces = [reply[i : i + feed] for i in range(0, len(reply), feed)]

    def parse() -> int:
        parser = StreamParser(Direction.DATANODE, expect=[Op.READ_BLOCK])
        n = 0
        for piece in pieces:
            n += len(parser.feed(piece))
        parser.close()
        return n

    # The data bytes and their checksums, recovered with the parser (works for --input too).
    data_parts: list[bytes] = []
    spec = ChecksumSpec()
    parser = StreamParser(Direction.DATANODE, expect=[Op.READ_BLOCK])
    for piece in pieces:
        for ev in parser.feed(piece):
            if isinstance(ev, Response):
                spec = parser.checksum
            elif isinstance(ev, Data):
                data_parts.append(bytes(ev.data))
    data = b"".join(data_parts)
    if not data:
        raise ValueError("the reply holds no data packets")

    def parse_verify() -> None:
        p = StreamParser(Direction.DATANODE, expect=[Op.READ_BLOCK])
        sums = memoryview(b"")
        for piece in pieces:
            for ev in p.feed(piece):
                if isinstance(ev, Checksums):
                    sums = ev.data
                elif isinstance(ev, Data) and p.checksum.verify(ev.data, sums) >= 0:
                    raise AssertionError("recorded reply has a bad checksum")

    packet = 65536
    packets = [data[i : i + packet] for i in range(0, len(data), packet)]
    crc32c_spec = ChecksumSpec(ChecksumType.CRC32C, 512)
    crc32_spec = ChecksumSpec(ChecksumType.CRC32, 512)
    dst = memoryview(bytearray(len(data)))

    def memcpy() -> None:
        # Through a memoryview: bytearray slice assignment takes a slower generic path.
        dst[:] = data

    figures: dict[str, Any] = {
        "reply_bytes": len(reply),
        "data_bytes": len(data),
        "feed_bytes": feed,
        "checksum_type": spec.type.name,
        "bytes_per_checksum": spec.bytes_per_checksum,
    }
    s = args.seconds
    rows: list[list[Any]] = []

    def measure(key: str, label: str, fn: Callable[[], Any], nbytes: int) -> None:
        figures[key] = _gbps(fn, nbytes, s)
        rows.append([label, figures[key]])

    measure("parse_gbps", "DTP stream parse (events)", parse, len(reply))
    measure("parse_verify_gbps", "DTP parse + verify CRCs", parse_verify, len(reply))
    measure("memcpy_gbps", "memcpy (memoryview copy)", memcpy, len(data))
    measure("crc32c_native_gbps", "CRC32C whole buffer, native",
            lambda: checksum.crc32c(data), len(data))
    measure("crc32c_chunked_native_gbps", "CRC32C 512B chunks, native batch",
            lambda: [crc32c_spec.compute(p) for p in packets], len(data))
    measure("crc32_chunked_native_gbps", "CRC32 512B chunks, native batch",
            lambda: [crc32_spec.compute(p) for p in packets], len(data))
    measure("zlib_crc32_gbps", "CRC32 whole buffer, zlib", lambda: zlib.crc32(data), len(data))
    small = data[: 4 << 20]
    notes = []
    try:
        import crc32c as crc32c_lib

        measure("crc32c_lib_gbps", "CRC32C whole buffer, crc32c (PyPI)",
                lambda: crc32c_lib.crc32c(data), len(data))
        measure("crc32c_lib_chunked_gbps", "CRC32C 512B chunks, crc32c (PyPI)",
                lambda: [crc32c_lib.crc32c(small[i : i + 512]) for i in range(0, len(small), 512)],
                len(small))
    except ImportError:
        notes.append("crc32c (PyPI) not installed: library baseline skipped")
    try:
        import google_crc32c

        measure("google_crc32c_gbps", "CRC32C whole buffer, google-crc32c",
                lambda: google_crc32c.value(data), len(data))
    except ImportError:
        pass
    figures["parse_to_memcpy_ratio"] = figures["parse_gbps"] / figures["memcpy_gbps"]
    if "crc32c_lib_chunked_gbps" in figures:
        figures["crc32c_chunked_native_to_lib_ratio"] = (
            figures["crc32c_chunked_native_gbps"] / figures["crc32c_lib_chunked_gbps"]
        )
    if "crc32c_lib_gbps" in figures:
        figures["crc32c_native_to_lib_ratio"] = (
            figures["crc32c_native_gbps"] / figures["crc32c_lib_gbps"]
        )
    return Report(
        NAME, figures=figures, columns=["measurement", "GB/s"], rows=rows,
        targets=[Target("crc32c_chunked_native_gbps", ">=", 5.0)],
        notes=[
            "",
            (f"reply: {len(reply)} bytes, {len(data)} data bytes, "
             f"{spec.type.name}/{spec.bytes_per_checksum}, fed {feed} bytes at a time"),
            *notes,
        ],
    )
