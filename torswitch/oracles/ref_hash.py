"""Pure-Python reference key hashes: the oracle the native core is checked against.

Written for clarity, not speed, from TwemProxy's documented behaviour (see
native/include/tsw/tsw_hash.h for the quirks reproduced here).
"""

from __future__ import annotations

import hashlib
import struct
import zlib

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def _sbyte32(b: int) -> int:
    """A key byte read through a signed char and widened to uint32."""
    return (b - 256) & M32 if b >= 0x80 else b


def _sbyte64(b: int) -> int:
    return (b - 256) & M64 if b >= 0x80 else b


def one_at_a_time(key: bytes) -> int:
    h = 0
    for b in key:
        h = (h + _sbyte32(b)) & M32
        h = (h + (h << 10)) & M32
        h ^= h >> 6
    h = (h + (h << 3)) & M32
    h ^= h >> 11
    h = (h + (h << 15)) & M32
    return h


def md5(key: bytes) -> int:
    return int(struct.unpack_from("<I", hashlib.md5(key).digest())[0])


def _xmodem_step(byte: int) -> int:
    c = byte << 8
    for _ in range(8):
        c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


_XMODEM = [_xmodem_step(i) for i in range(256)]


def crc16(key: bytes) -> int:
    # nutcracker 0.5.0: the XMODEM table in a 32-bit register never masked to 16 bits.
    crc = 0
    for b in key:
        crc = ((crc << 8) & M32) ^ _XMODEM[((crc >> 8) ^ b) & 0xFF]
    return crc


def crc32(key: bytes) -> int:
    return (zlib.crc32(key) >> 16) & 0x7FFF


def crc32a(key: bytes) -> int:
    return zlib.crc32(key)


def fnv1_64(key: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in key:
        h = (h * 0x100000001B3) & M64
        h ^= _sbyte64(b)
    return h & M32


def fnv1a_64(key: bytes) -> int:
    h = 0xCBF29CE484222325 & M32
    for b in key:
        h ^= _sbyte32(b)
        h = (h * (0x100000001B3 & M32)) & M32
    return h


def fnv1_32(key: bytes) -> int:
    h = 2166136261
    for b in key:
        h = (h * 16777619) & M32
        h ^= _sbyte32(b)
    return h


def fnv1a_32(key: bytes) -> int:
    h = 2166136261
    for b in key:
        h ^= _sbyte32(b)
        h = (h * 16777619) & M32
    return h


def hsieh(key: bytes) -> int:
    if not key:
        return 0
    h = 0
    n4 = len(key) // 4
    for i in range(n4):
        p = key[4 * i : 4 * i + 4]
        h = (h + (p[0] | p[1] << 8)) & M32
        tmp = (((p[2] | p[3] << 8) << 11) ^ h) & M32
        h = ((h << 16) ^ tmp) & M32
        h = (h + (h >> 11)) & M32
    rest = key[4 * n4 :]
    if len(rest) == 3:
        h = (h + (rest[0] | rest[1] << 8)) & M32
        h ^= (h << 16) & M32
        h ^= (_sbyte32(rest[2]) << 18) & M32
        h = (h + (h >> 11)) & M32
    elif len(rest) == 2:
        h = (h + (rest[0] | rest[1] << 8)) & M32
        h ^= (h << 11) & M32
        h = (h + (h >> 17)) & M32
    elif len(rest) == 1:
        h = (h + rest[0]) & M32
        h ^= (h << 10) & M32
        h = (h + (h >> 1)) & M32
    for op, n in (("x<", 3), ("+>", 5), ("x<", 4), ("+>", 17), ("x<", 25), ("+>", 6)):
        h = (h ^ (h << n)) & M32 if op == "x<" else (h + (h >> n)) & M32
    return h


def murmur(key: bytes) -> int:
    m = 0x5BD1E995
    n = len(key)
    h = ((0xDEADBEEF * n) & M32) ^ n
    i = 0
    while n - i >= 4:
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & M32
        k ^= k >> 24
        k = (k * m) & M32
        h = (h * m) & M32
        h ^= k
        i += 4
    rest = key[i:]
    if rest:
        if len(rest) == 3:
            h ^= rest[2] << 16
        if len(rest) >= 2:
            h ^= rest[1] << 8
        h ^= rest[0]
        h = (h * m) & M32
    h ^= h >> 13
    h = (h * m) & M32
    h ^= h >> 15
    return h


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M32


def jenkins(key: bytes) -> int:
    n = len(key)
    a = b = c = (0xDEADBEEF + n + 13) & M32
    i = 0
    while n - i > 12:
        a = (a + int.from_bytes(key[i : i + 4], "little")) & M32
        b = (b + int.from_bytes(key[i + 4 : i + 8], "little")) & M32
        c = (c + int.from_bytes(key[i + 8 : i + 12], "little")) & M32
        a = (a - c) & M32; a ^= _rot(c, 4); c = (c + b) & M32
        b = (b - a) & M32; b ^= _rot(a, 6); a = (a + c) & M32
        c = (c - b) & M32; c ^= _rot(b, 8); b = (b + a) & M32
        a = (a - c) & M32; a ^= _rot(c, 16); c = (c + b) & M32
        b = (b - a) & M32; b ^= _rot(a, 19); a = (a + c) & M32
        c = (c - b) & M32; c ^= _rot(b, 4); b = (b + a) & M32
        i += 12
    rest = key[i:]
    if not rest:
        return c
    tail = rest + bytes(12 - len(rest))
    a = (a + int.from_bytes(tail[0:4], "little")) & M32
    b = (b + int.from_bytes(tail[4:8], "little")) & M32
    c = (c + int.from_bytes(tail[8:12], "little")) & M32
    c ^= b; c = (c - _rot(b, 14)) & M32
    a ^= c; a = (a - _rot(c, 11)) & M32
    b ^= a; b = (b - _rot(a, 25)) & M32
    c ^= b; c = (c - _rot(b, 16)) & M32
    a ^= c; a = (a - _rot(c, 4)) & M32
    b ^= a; b = (b - _rot(a, 14)) & M32
    c ^= b; c = (c - _rot(b, 24)) & M32
    return c


def crc32c(key: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in key:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


HASHES = {
    "one_at_a_time": one_at_a_time,
    "md5": md5,
    "crc16": crc16,
    "crc32": crc32,
    "crc32a": crc32a,
    "fnv1_64": fnv1_64,
    "fnv1a_64": fnv1a_64,
    "fnv1_32": fnv1_32,
    "fnv1a_32": fnv1a_32,
    "hsieh": hsieh,
    "murmur": murmur,
    "jenkins": jenkins,
    "crc32c": crc32c,
}
