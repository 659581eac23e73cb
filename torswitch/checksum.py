"""HDFS chunk checksums: CRC32C (the 3.x default), CRC32 and NULL, a packet at a time.

HDFS checksums every `bytes_per_checksum` bytes of a block (512 by default) separately and
stores each as a 4-byte big-endian value; a DataTransferProtocol packet carries the checksums
of its chunks ahead of its data (shared/docs/hdfs-wire-protocol.md §3.2, §3.7). Which
algorithm and chunk size apply is whatever the DataNode's read response declares, never the
cluster default, hence `ChecksumSpec`.

All work is done by the native core (native/core/tsw_checksum.c) in one call per packet:
CRC32C runs on the SSE4.2 crc32 instruction, three chunks side by side. The benchmark
`torswitch bench codec` measures it beside the `crc32c` PyPI package and memcpy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from torswitch import _native
from torswitch.errors import TorswitchError

Buffer = bytes | bytearray | memoryview


class ChecksumType(enum.IntEnum):
    """Checksum algorithms, numbered as ChecksumTypeProto on the wire."""

    NULL = _native.CHECKSUM_NULL
    CRC32 = _native.CHECKSUM_CRC32
    CRC32C = _native.CHECKSUM_CRC32C

    @property
    def size(self) -> int:
        """Bytes of one chunk checksum: 0 for NULL, else 4."""
        return 0 if self is ChecksumType.NULL else 4

    @classmethod
    def from_name(cls, name: str) -> ChecksumType:
        """Parse a `dfs.checksum.type` value ("CRC32C", "crc32", "NULL").

        Raises ValueError (as a ChecksumError) for anything else, naming the accepted values.
        """
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ChecksumConfigError(
                f"unknown checksum type {name!r}; expected one of NULL, CRC32, CRC32C"
            ) from None


class ChecksumError(TorswitchError):
    """Data does not match its checksum. `chunk` is the index of the first bad chunk."""

    def __init__(self, message: str, chunk: int = -1) -> None:
        super().__init__(message)
        self.chunk = chunk


class ChecksumConfigError(ChecksumError, ValueError):
    """An invalid checksum type or chunk size was asked for."""


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    """How a stream of block bytes is checksummed: algorithm and bytes per chunk."""

    type: ChecksumType = ChecksumType.CRC32C
    bytes_per_checksum: int = 512

    def __post_init__(self) -> None:
        if not 0 < self.bytes_per_checksum < 1 << 31:
            raise ChecksumConfigError(f"bytes per checksum {self.bytes_per_checksum} out of range")

    @property
    def size(self) -> int:
        """Bytes of one chunk checksum (0 or 4)."""
        return self.type.size

    def chunks(self, data_len: int) -> int:
        """Number of chunks covering `data_len` bytes (the last may be short)."""
        return -(-data_len // self.bytes_per_checksum)

    def checksum_len(self, data_len: int) -> int:
        """Bytes of checksums that cover `data_len` data bytes."""
        return self.chunks(data_len) * self.size

    def align_down(self, offset: int) -> int:
        """`offset` rounded down to a chunk boundary, as a DataNode starts a read."""
        return offset - offset % self.bytes_per_checksum

    def align_up(self, offset: int) -> int:
        """`offset` rounded up to a chunk boundary."""
        return -(-offset // self.bytes_per_checksum) * self.bytes_per_checksum

    def compute(self, data: Buffer) -> bytes:
        """Checksums of every chunk of `data`, big-endian, back to back."""
        return compute(self.type, self.bytes_per_checksum, data)

    def verify(self, data: Buffer, sums: Buffer) -> int:
        """Index of the first chunk whose checksum does not match, or -1 if all match."""
        return verify(self.type, self.bytes_per_checksum, data, sums)

    def check(self, data: Buffer, sums: Buffer) -> None:
        """Raise ChecksumError naming the first bad chunk unless every chunk matches."""
        bad = self.verify(data, sums)
        if bad >= 0:
            raise ChecksumError(
                f"{self.type.name} mismatch in chunk {bad} "
                f"(bytes {bad * self.bytes_per_checksum}..)", chunk=bad
            )


def crc32c(data: Buffer, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, continuing `crc` (0 to start)."""
    return _native.tsw_crc32c(data, crc)


def crc32(data: Buffer, crc: int = 0) -> int:
    """CRC-32 (IEEE, zlib-compatible) of `data`, continuing `crc` (0 to start)."""
    return _native.tsw_crc32(data, crc)


def compute(kind: ChecksumType | int, bytes_per_checksum: int, data: Buffer) -> bytes:
    """Chunk checksums of `data`: 4 big-endian bytes per chunk, b"" for NULL.

    Raises ChecksumConfigError for an unknown type or a chunk size outside 1..2^31-1.
    """
    _validate(kind, bytes_per_checksum)
    return _native.tsw_checksum_compute(int(kind), bytes_per_checksum, data)


def verify(kind: ChecksumType | int, bytes_per_checksum: int, data: Buffer, sums: Buffer) -> int:
    """Index of the first chunk of `data` whose checksum in `sums` is wrong, -1 if none.

    Raises ChecksumConfigError when the type or chunk size is invalid or `sums` does not hold
    exactly one checksum per chunk.
    """
    _validate(kind, bytes_per_checksum)
    size = ChecksumType(kind).size
    chunks = -(-len(data) // bytes_per_checksum)
    if len(sums) != chunks * size:
        raise ChecksumConfigError(
            f"{len(sums)} checksum bytes for {chunks} chunks of {len(data)} data bytes"
        )
    good = _native.tsw_checksum_verify(int(kind), bytes_per_checksum, data, sums)
    return -1 if good == chunks else good


def _validate(kind: ChecksumType | int, bytes_per_checksum: int) -> None:
    if kind not in ChecksumType.__members__.values():
        raise ChecksumConfigError(f"unknown checksum type {kind}")
    if not 0 < bytes_per_checksum < 1 << 31:
        raise ChecksumConfigError(f"bytes per checksum {bytes_per_checksum} out of range")
