"""Reference HDFS chunk checksums: one bit-at-a-time CRC per chunk, stored big-endian.

The layout rule (shared/docs/hdfs-wire-protocol.md §3.7) written as plainly as possible, for
tests of torswitch.checksum and of the packet serializers. CRC-32 comes from zlib, CRC-32C from
the bitwise oracle in ref_hash.
"""

from __future__ import annotations

import zlib

from torswitch.oracles.ref_hash import crc32c as ref_crc32c

NULL, CRC32, CRC32C = 0, 1, 2


def chunk_sums(kind: int, bytes_per_checksum: int, data: bytes) -> bytes:
    """4 big-endian bytes per chunk of `data` (b"" for NULL)."""
    if kind == NULL:
        return b""
    fn = ref_crc32c if kind == CRC32C else zlib.crc32
    out = bytearray()
    for start in range(0, len(data), bytes_per_checksum):
        out += fn(data[start : start + bytes_per_checksum]).to_bytes(4, "big")
    return bytes(out)
