"""The only importer of the compiled core `torswitch._core`.

Thin wrappers that keep the C names' meaning, check sizes, allocate output buffers, translate
statuses into exceptions once (torswitch.errors), and tie native lifetimes to Python objects.
Nothing here makes policy decisions; torswitch.routing and others build on it.
"""

from __future__ import annotations

import itertools
import threading
from array import array
from collections.abc import Sequence
from typing import Any

from torswitch import errors
from torswitch._core import ffi, lib

# ---- statuses ---------------------------------------------------------------------------------

STATUS_NAMES: dict[int, str] = {}
for _code in range(-64, 64):
    _name = lib.tsw_status_name(_code)
    if _name != ffi.NULL:
        STATUS_NAMES[_code] = ffi.string(_name).decode()
# Drift check: every native status must have an exception class (or be OK).
_missing = {n for n in STATUS_NAMES.values() if n != "OK"} - set(errors.NATIVE_ERRORS)
if _missing:  # pragma: no cover - caught by tests/test_native.py
    raise ImportError(f"torswitch.errors lacks classes for native statuses {sorted(_missing)}")


def check(status: int, operation: str, detail: str = "") -> None:
    """Raise the exception for a native status; return silently on TSW_OK."""
    if status == 0:
        return
    name = STATUS_NAMES.get(status, "UNKNOWN")
    cls = errors.NATIVE_ERRORS.get(name, errors.NativeError)
    text = lib.tsw_status_text(status)
    reason = ffi.string(text).decode() if text != ffi.NULL else f"status {status}"
    raise cls(operation, f"{reason}; {detail}" if detail else reason)


# ---- packing helpers --------------------------------------------------------------------------


def pack_keys(keys: Sequence[bytes]) -> tuple[bytes, array[int]]:
    """Pack keys back to back with n+1 uint32 offsets, the core's batch layout."""
    offsets = array("I", [0])
    offsets.extend(itertools.accumulate(map(len, keys)))
    return b"".join(keys), offsets


# ---- hashes (tsw_hash.h, tsw_md5.h, tsw_crc32c.h) -----------------------------------------------

HASH_NAMES: tuple[str, ...] = tuple(
    ffi.string(lib.tsw_hash_name(i)).decode() for i in range(lib.tsw_hash_count())
)
DIST_NAMES: tuple[str, ...] = tuple(
    ffi.string(lib.tsw_dist_name(i)).decode() for i in range(lib.tsw_dist_count())
)
ROUTE_NONE: int = lib.TSW_ROUTE_NONE


def tsw_hash(kind: int, key: bytes) -> int:
    return int(lib.tsw_hash(kind, key, len(key)))


def tsw_hash_batch(kind: int, keys: Sequence[bytes]) -> array[int]:
    blob, offsets = pack_keys(keys)
    out = array("I", bytes(4 * len(keys)))
    lib.tsw_hash_batch(
        kind, ffi.from_buffer(blob), ffi.from_buffer("uint32_t[]", offsets), len(keys),
        ffi.from_buffer("uint32_t[]", out),
    )
    return out


def tsw_md5(data: bytes) -> bytes:
    out = ffi.new("uint8_t[16]")
    lib.tsw_md5(data, len(data), out)
    return bytes(ffi.buffer(out))


def tsw_crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    buf = ffi.from_buffer(data)
    return int(lib.tsw_crc32c(crc, buf, len(buf)))


def tsw_crc32c_sw(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    buf = ffi.from_buffer(data)
    return int(lib.tsw_crc32c_sw(crc, buf, len(buf)))


def tsw_crc32c_hw_available() -> bool:
    return bool(lib.tsw_crc32c_hw_available())


# ---- rings (tsw_route.h) ------------------------------------------------------------------------


class NativeRing:
    """An immutable native ring. Lookups may run from any thread; close() may not race them.

    Raises errors.NativeInvalidArgument (bad spec) or errors.NativeNoMemory on build.
    """

    def __init__(
        self,
        *,
        distribution: int,
        hash_kind: int,
        names: Sequence[bytes],
        weights: Sequence[int],
        live: Sequence[bool] | None = None,
        server_ids: Sequence[int] | None = None,
        hash_tag: bytes = b"",
        overrides: Sequence[tuple[bytes, int]] = (),
        seed: int = 0,
    ) -> None:
        if len(names) != len(weights) or (live is not None and len(live) != len(names)):
            raise errors.NativeInvalidArgument("tsw_ring_build", "names/weights/live lengths differ")
        if hash_tag and len(hash_tag) != 2:
            raise errors.NativeInvalidArgument("tsw_ring_build", "hash_tag must be 2 bytes")
        name_blob, name_offsets = pack_keys(names)
        weights_a = array("I", weights)
        keep: list[Any] = [name_blob, name_offsets, weights_a]
        spec = ffi.new("struct tsw_ring_spec *")
        spec.distribution = distribution
        spec.hash = hash_kind
        spec.has_hash_tag = 1 if hash_tag else 0
        if hash_tag:
            spec.hash_tag = list(hash_tag)
        spec.nserver = len(names)
        spec.names = ffi.from_buffer(name_blob)
        spec.name_offsets = ffi.from_buffer("uint32_t[]", name_offsets)
        spec.weights = ffi.from_buffer("uint32_t[]", weights_a)
        if server_ids is not None:
            if len(server_ids) != len(names):
                raise errors.NativeInvalidArgument("tsw_ring_build", "server_ids length differs")
            ids_a = array("I", server_ids)
            keep.append(ids_a)
            spec.server_ids = ffi.from_buffer("uint32_t[]", ids_a)
        if live is not None:
            live_b = bytes(1 if x else 0 for x in live)
            keep.append(live_b)
            spec.live = ffi.from_buffer(live_b)
        if overrides:
            okeys, ooffsets = pack_keys([k for k, _ in overrides])
            otargets = array("I", [t for _, t in overrides])
            keep += [okeys, ooffsets, otargets]
            spec.noverride = len(overrides)
            spec.override_keys = ffi.from_buffer(okeys)
            spec.override_offsets = ffi.from_buffer("uint32_t[]", ooffsets)
            spec.override_targets = ffi.from_buffer("uint32_t[]", otargets)
        spec.seed = seed & 0xFFFFFFFFFFFFFFFF
        out = ffi.new("struct tsw_ring **")
        check(lib.tsw_ring_build(spec, out), "tsw_ring_build")
        del keep  # the core copied everything it keeps
        self._ptr: Any = ffi.gc(out[0], lib.tsw_ring_free)
        self._users = 0
        self._lock = threading.Lock()
        self.nserver = len(names)

    def _enter(self) -> Any:
        with self._lock:
            if self._ptr is None:
                raise ValueError("ring is closed")
            self._users += 1
            return self._ptr

    def _exit(self) -> None:
        with self._lock:
            self._users -= 1

    def close(self) -> None:
        """Free the native ring now. Raises RuntimeError if a lookup is running."""
        with self._lock:
            if self._users:
                raise RuntimeError("ring closed while a lookup is running in another thread")
            if self._ptr is not None:
                ffi.release(self._ptr)
                self._ptr = None

    def lookup(self, key: bytes) -> int:
        ptr = self._enter()
        try:
            return int(lib.tsw_ring_lookup(ptr, key, len(key)))
        finally:
            self._exit()

    def lookup_packed(self, blob: bytes, offsets: array[int]) -> array[int]:
        """Servers of keys packed as by pack_keys(): len(offsets) - 1 keys."""
        n = len(offsets) - 1
        if n < 0 or (n and offsets[-1] > len(blob)):
            raise ValueError("offsets do not describe the blob")
        out = array("I", bytes(4 * n))
        ptr = self._enter()
        try:
            lib.tsw_ring_lookup_batch(
                ptr, ffi.from_buffer(blob), ffi.from_buffer("uint32_t[]", offsets), n,
                ffi.from_buffer("uint32_t[]", out),
            )
        finally:
            self._exit()
        return out

    def lookup_batch(self, keys: Sequence[bytes]) -> array[int]:
        blob, offsets = pack_keys(keys)
        return self.lookup_packed(blob, offsets)

    def lookup_fixed(self, blob: bytes | memoryview, width: int) -> array[int]:
        """Servers of keys of `width` bytes each, back to back in `blob`."""
        if width <= 0 or len(blob) % width:
            raise ValueError("blob length is not a multiple of width")
        n = len(blob) // width
        out = array("I", bytes(4 * n))
        ptr = self._enter()
        try:
            lib.tsw_ring_lookup_fixed(
                ptr, ffi.from_buffer(blob), width, n, ffi.from_buffer("uint32_t[]", out)
            )
        finally:
            self._exit()
        return out

    def key_hash(self, key: bytes) -> int:
        ptr = self._enter()
        try:
            return int(lib.tsw_ring_key_hash(ptr, key, len(key)))
        finally:
            self._exit()

    def points(self) -> list[tuple[int, int]]:
        """The continuum as (value, server index) pairs, in lookup order."""
        ptr = self._enter()
        try:
            n = int(lib.tsw_ring_npoints(ptr))
            values = ffi.new("uint32_t[]", max(n, 1))
            servers = ffi.new("uint32_t[]", max(n, 1))
            got = lib.tsw_ring_points(ptr, values, servers, n)
            return [(int(values[i]), int(servers[i])) for i in range(got)]
        finally:
            self._exit()

    @property
    def nlive(self) -> int:
        ptr = self._enter()
        try:
            return int(lib.tsw_ring_nlive(ptr))
        finally:
            self._exit()


# ---- checksums (tsw_checksum.h) -- owned by the HDFS protocol layer, see torswitch.checksum ---

CHECKSUM_NULL: int = lib.TSW_CHECKSUM_NULL
CHECKSUM_CRC32: int = lib.TSW_CHECKSUM_CRC32
CHECKSUM_CRC32C: int = lib.TSW_CHECKSUM_CRC32C


def tsw_crc32(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    buf = ffi.from_buffer(data)
    return int(lib.tsw_crc32(crc, buf, len(buf)))


def tsw_checksum_size(kind: int) -> int:
    """4 for CRC32/CRC32C, 0 for NULL. Raises NativeInvalidArgument for an unknown type."""
    size = int(lib.tsw_checksum_size(kind))
    if size < 0:
        check(size, "tsw_checksum_size", f"checksum type {kind}")
    return size


def tsw_checksum_compute(
    kind: int, bytes_per_checksum: int, data: bytes | bytearray | memoryview
) -> bytes:
    """Big-endian chunk checksums of `data`, 4 bytes per chunk (b"" for NULL)."""
    if bytes_per_checksum <= 0 or bytes_per_checksum >= 1 << 32:
        raise errors.NativeInvalidArgument("tsw_checksum_compute", "bytes_per_checksum")
    buf = ffi.from_buffer(data)
    n = -(-len(buf) // bytes_per_checksum)
    out = bytearray(4 * n if kind != CHECKSUM_NULL else 0)
    got = lib.tsw_checksum_compute(
        kind, bytes_per_checksum, buf, len(buf), ffi.from_buffer(out), len(out)
    )
    if got < 0:
        check(got, "tsw_checksum_compute", f"checksum type {kind}")
    return bytes(out)


def tsw_checksum_verify(
    kind: int,
    bytes_per_checksum: int,
    data: bytes | bytearray | memoryview,
    sums: bytes | bytearray | memoryview,
) -> int:
    """Number of leading chunks whose checksum matches (== chunk count when all do)."""
    if bytes_per_checksum <= 0 or bytes_per_checksum >= 1 << 32:
        raise errors.NativeInvalidArgument("tsw_checksum_verify", "bytes_per_checksum")
    buf = ffi.from_buffer(data)
    sbuf = ffi.from_buffer(sums)
    got = lib.tsw_checksum_verify(kind, bytes_per_checksum, buf, len(buf), sbuf, len(sbuf))
    if got < 0:
        check(got, "tsw_checksum_verify", f"checksum type {kind}, {len(sbuf)} checksum bytes")
    return int(got)
