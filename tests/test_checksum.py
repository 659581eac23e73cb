"""torswitch.checksum: native chunked CRC32/CRC32C against the pure-Python reference."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torswitch import checksum
from torswitch.checksum import ChecksumConfigError, ChecksumError, ChecksumSpec, ChecksumType
from torswitch.oracles import ref_checksum
from torswitch.oracles.ref_hash import crc32c as ref_crc32c

# Catalogue check values for "123456789" and RFC 3720 B.4 patterns.
KNOWN = [
    (ChecksumType.CRC32, b"123456789", 0xCBF43926),
    (ChecksumType.CRC32C, b"123456789", 0xE3069283),
    (ChecksumType.CRC32C, bytes(32), 0x8A9136AA),
    (ChecksumType.CRC32C, b"\xff" * 32, 0x62A8AB43),
    (ChecksumType.CRC32C, bytes(range(32)), 0x46DD794E),
    (ChecksumType.CRC32C, bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize(("kind", "data", "want"), KNOWN)
def test_known_answers(kind: ChecksumType, data: bytes, want: int) -> None:
    fn = checksum.crc32c if kind is ChecksumType.CRC32C else checksum.crc32
    assert fn(data) == want
    # One chunk covering everything is that CRC, big-endian.
    assert checksum.compute(kind, 4096, data) == want.to_bytes(4, "big")


def test_crc_continues_a_running_value() -> None:
    assert checksum.crc32c(b"56789", checksum.crc32c(b"1234")) == 0xE3069283
    assert checksum.crc32(b"56789", checksum.crc32(b"1234")) == 0xCBF43926


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=5000),
    bpc=st.sampled_from([1, 3, 8, 64, 511, 512, 513, 1024]),
    kind=st.sampled_from(list(ChecksumType)),
    skew=st.integers(0, 7),
)
def test_compute_matches_reference(data: bytes, bpc: int, kind: ChecksumType, skew: int) -> None:
    # A memoryview at an odd address exercises the unaligned paths.
    view = memoryview(b"\0" * skew + data)[skew:]
    want = ref_checksum.chunk_sums(int(kind), bpc, data)
    assert checksum.compute(kind, bpc, view) == want
    assert checksum.verify(kind, bpc, view, want) == -1


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2048))
def test_single_crcs_match_reference(data: bytes) -> None:
    assert checksum.crc32c(data) == ref_crc32c(data)
    assert checksum.crc32(data) == zlib.crc32(data)


@pytest.mark.parametrize("kind", [ChecksumType.CRC32, ChecksumType.CRC32C])
def test_verify_names_the_first_bad_chunk(kind: ChecksumType) -> None:
    spec = ChecksumSpec(kind, 512)
    data = bytearray(bytes(range(256)) * 28)  # 7168 bytes: 14 chunks
    sums = spec.compute(data)
    for chunk in (0, 1, 2, 3, 13):
        data[chunk * 512 + 17] ^= 0x01
        assert spec.verify(data, sums) == chunk
        with pytest.raises(ChecksumError) as info:
            spec.check(data, sums)
        assert info.value.chunk == chunk
        data[chunk * 512 + 17] ^= 0x01
    assert spec.verify(data, sums) == -1
    spec.check(data, sums)


def test_null_checksums_are_empty() -> None:
    spec = ChecksumSpec(ChecksumType.NULL, 512)
    assert spec.compute(b"x" * 1000) == b""
    assert spec.verify(b"x" * 1000, b"") == -1
    assert spec.size == 0 and spec.checksum_len(1000) == 0


def test_spec_alignment_arithmetic() -> None:
    spec = ChecksumSpec()
    assert (spec.type, spec.bytes_per_checksum) == (ChecksumType.CRC32C, 512)
    assert spec.align_down(1023) == 512 and spec.align_down(1024) == 1024
    assert spec.align_up(1) == 512 and spec.align_up(0) == 0 and spec.align_up(513) == 1024
    assert spec.chunks(0) == 0 and spec.chunks(1) == 1 and spec.chunks(1025) == 3
    assert spec.checksum_len(1025) == 12


def test_bad_arguments_raise_config_errors() -> None:
    with pytest.raises(ChecksumConfigError):
        ChecksumSpec(ChecksumType.CRC32C, 0)
    with pytest.raises(ChecksumConfigError):
        checksum.compute(7, 512, b"abc")
    with pytest.raises(ChecksumConfigError, match="3 chunks"):
        checksum.verify(ChecksumType.CRC32C, 512, b"x" * 1025, b"\0" * 8)
    with pytest.raises(ValueError, match="CRC32C"):
        ChecksumType.from_name("md5")
    assert ChecksumType.from_name(" crc32 ") is ChecksumType.CRC32


def test_wrapper_types_accepted() -> None:
    data = b"hello world" * 100
    want = checksum.compute(ChecksumType.CRC32C, 512, data)
    assert checksum.compute(ChecksumType.CRC32C, 512, bytearray(data)) == want
    assert checksum.compute(ChecksumType.CRC32C, 512, memoryview(data)) == want
