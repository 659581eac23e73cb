"""Pure-Python reference ring: TwemProxy's ketama and modula, and torswitch's rendezvous.

The oracle for torswitch.routing: same inputs (server identities, weights, liveness, hash
name, hash tag, overrides), same answers. Ketama's point count is computed in float32 on
purpose, as TwemProxy's C does, because it decides how many points a weighted server gets.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct

import numpy as np

from torswitch.oracles.ref_hash import HASHES

M64 = 0xFFFFFFFFFFFFFFFF


def _mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def ketama_points(names: list[bytes], weights: list[int], live: list[bool]) -> list[tuple[int, int]]:
    nlive = sum(live)
    total = sum(w for w, up in zip(weights, live) if up)
    points: list[tuple[int, int, int]] = []
    for idx, (name, weight, up) in enumerate(zip(names, weights, live)):
        if not up:
            continue
        f32 = np.float32
        pct = f32(weight) / f32(total)
        inner = f32(f32(f32(pct * f32(160)) / f32(4)) * f32(nlive))
        count = int(f32(math.floor(f32(float(inner) + 0.0000000001)))) * 4
        for i in range(count // 4):
            digest = hashlib.md5(name + b"-%d" % i).digest()
            for x in range(4):
                value = struct.unpack_from("<I", digest, 4 * x)[0]
                points.append((value, len(points), idx))
    points.sort()
    return [(v, s) for v, _, s in points]


class RefRing:
    def __init__(
        self,
        distribution: str,
        hash_name: str,
        names: list[bytes],
        weights: list[int],
        live: list[bool] | None = None,
        hash_tag: bytes = b"",
        overrides: dict[bytes, int] | None = None,
        seed: int = 0,
    ) -> None:
        # nutcracker sorts a pool's servers by name (shorter first, then bytewise) before
        # building its distribution; work in that order and answer in the caller's numbering.
        order = sorted(range(len(names)), key=lambda i: (len(names[i]), names[i]))
        self.ids = order
        names = [names[i] for i in order]
        weights = [weights[i] for i in order]
        live = [live[i] for i in order] if live is not None else None
        pos = {orig: p for p, orig in enumerate(order)}
        overrides = {k: pos[t] for k, t in (overrides or {}).items()}
        self.dist = distribution
        self.hash = HASHES[hash_name]
        self.live = list(live) if live is not None else [True] * len(names)
        self.tag = hash_tag
        self.overrides = dict(overrides or {})
        if distribution == "ketama":
            self.points = ketama_points(names, weights, self.live)
            self.values = [v for v, _ in self.points]
        elif distribution == "modula":
            self.table = [i for i, (w, up) in enumerate(zip(weights, self.live)) if up for _ in range(w)]
        elif distribution == "rendezvous":
            self.rdv = [
                (_mix64(_fnv1a64(names[i]) ^ seed), float(weights[i]), i)
                for i in range(len(names))
                if self.live[i]
            ]

    def key_hash(self, key: bytes) -> int:
        if self.tag:
            start = key.find(self.tag[:1])
            if start >= 0:
                end = key.find(self.tag[1:], start + 1)
                if end >= 0 and end - start > 1:
                    key = key[start + 1 : end]
        return self.hash(key) if key else 0

    def lookup(self, key: bytes) -> int | None:
        pos = self._lookup_position(key)
        return None if pos is None else self.ids[pos]

    def _lookup_position(self, key: bytes) -> int | None:
        target = self.overrides.get(key)
        if target is not None and self.live[target]:
            return target
        if not any(self.live):
            return None
        h = self.key_hash(key)
        if self.dist == "ketama":
            i = bisect.bisect_left(self.values, h)
            return self.points[i if i < len(self.points) else 0][1]
        if self.dist == "modula":
            return self.table[h % len(self.table)]
        if self.dist == "rendezvous":
            base = (h << 32) | h
            best, pick = -1.0, None
            for salt, weight, idx in self.rdv:
                x = _mix64(base ^ salt)
                u = ((x >> 11) + 0.5) * (1.0 / 9007199254740992.0)
                score = weight / -math.log(u)
                if score > best:
                    best, pick = score, idx
            return pick
        raise ValueError(f"no reference for distribution {self.dist}")
