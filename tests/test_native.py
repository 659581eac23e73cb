"""torswitch._native: statuses, hashes and CRC-32C against the pure-Python oracles."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torswitch import _native, errors
from torswitch.oracles import ref_hash


def test_every_native_status_has_an_exception_class() -> None:
    names = set(_native.STATUS_NAMES.values())
    assert "OK" in names and "EPROTO" in names
    assert names - {"OK"} <= set(errors.NATIVE_ERRORS)


def test_check_maps_status_to_exception() -> None:
    _native.check(0, "op")
    with pytest.raises(errors.NativeInvalidArgument) as info:
        _native.check(-1, "tsw_ring_build", "bad weight")
    assert isinstance(info.value, ValueError)
    assert "tsw_ring_build" in str(info.value) and "bad weight" in str(info.value)


def test_hash_names_match_the_reference() -> None:
    assert set(_native.HASH_NAMES) == set(ref_hash.HASHES)


@pytest.mark.parametrize("name", sorted(ref_hash.HASHES))
@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=300))
def test_native_hash_equals_reference(name: str, key: bytes) -> None:
    kind = _native.HASH_NAMES.index(name)
    assert _native.tsw_hash(kind, key) == ref_hash.HASHES[name](key)


@pytest.mark.parametrize("name", sorted(ref_hash.HASHES))
def test_batch_hash_equals_single(name: str) -> None:
    kind = _native.HASH_NAMES.index(name)
    keys = [os.urandom(n % 40) for n in range(500)]
    assert list(_native.tsw_hash_batch(kind, keys)) == [_native.tsw_hash(kind, k) for k in keys]


def test_crc32c_known_answers() -> None:
    assert _native.tsw_crc32c(b"123456789") == 0xE3069283
    assert _native.tsw_crc32c(bytes(32)) == 0x8A9136AA


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=70_000), split=st.integers(min_value=0, max_value=70_000))
def test_crc32c_hw_equals_sw_and_continues(data: bytes, split: int) -> None:
    split = min(split, len(data))
    whole = _native.tsw_crc32c(data)
    assert whole == _native.tsw_crc32c_sw(data)
    if len(data) <= 256:
        assert whole == ref_hash.crc32c(data)
    assert _native.tsw_crc32c(data[split:], _native.tsw_crc32c(data[:split])) == whole


def test_md5_matches_hashlib() -> None:
    import hashlib

    for n in (0, 1, 55, 56, 63, 64, 65, 200):
        data = os.urandom(n)
        assert _native.tsw_md5(data) == hashlib.md5(data).digest()
