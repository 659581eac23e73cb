"""The key-routing core's Python face: rings built from pools, published atomically.

Control builds, the data path indexes: a `Ring` is an immutable native object made from a pool
(servers, weights, liveness, hash, distribution, hash tag) plus exact-match overrides; a
`Router` holds the current ring and swaps in a new one in a single reference assignment, so a
lookup sees either the old ring or the new one, never a mix. The same C code routes memcached
keys in the data plane and blocks in the directory.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable, Mapping, Sequence

from torswitch import _native
from torswitch.config import Pool, Server
from torswitch.errors import ConfigError

HASHES: tuple[str, ...] = _native.HASH_NAMES
DISTRIBUTIONS: tuple[str, ...] = _native.DIST_NAMES
NONE = _native.ROUTE_NONE


def nutcracker_sort_key(server: Server) -> tuple[int, bytes]:
    """nutcracker's order of a pool's servers: by ring identity, shorter first, then bytewise
    (its string_compare)."""
    return (len(server.identity), server.identity)


class Ring:
    """An immutable routing table for one pool.

    `live` marks servers that may take keys (all by default; an ejected server is not live).
    `overrides` pins exact keys to server indexes; a pinned key follows the distribution while
    its target is not live. Raises ConfigError for an unknown hash or distribution.
    """

    def __init__(
        self,
        servers: Sequence[Server],
        *,
        hash: str = "fnv1a_64",
        distribution: str = "ketama",
        hash_tag: str = "",
        live: Sequence[bool] | None = None,
        overrides: Mapping[bytes, int] | None = None,
        seed: int = 0,
    ) -> None:
        if hash not in HASHES:
            raise ConfigError(f"unknown hash {hash!r} (valid: {', '.join(HASHES)})")
        if distribution not in DISTRIBUTIONS:
            raise ConfigError(
                f"unknown distribution {distribution!r} (valid: {', '.join(DISTRIBUTIONS)})"
            )
        if not servers:
            raise ConfigError("a ring needs at least one server")
        self.servers: tuple[Server, ...] = tuple(servers)
        self.hash = hash
        self.distribution = distribution
        self.hash_tag = hash_tag
        self.live: tuple[bool, ...] = tuple(live) if live is not None else (True,) * len(servers)
        self.overrides: dict[bytes, int] = dict(overrides or {})
        for key, target in self.overrides.items():
            if not 0 <= target < len(servers):
                raise ConfigError(f"override for {key!r} names server {target}, not in 0..{len(servers) - 1}")
        # nutcracker sorts a pool's servers by name (shorter names first, then bytewise; its
        # string_compare) before building the distribution, which decides modula slots and
        # ketama ties. Build in that order; lookups still answer with our own indexes.
        order = sorted(range(len(servers)), key=lambda i: nutcracker_sort_key(self.servers[i]))
        position = {orig: pos for pos, orig in enumerate(order)}
        self._native = _native.NativeRing(
            distribution=DISTRIBUTIONS.index(distribution),
            hash_kind=HASHES.index(hash),
            names=[self.servers[i].identity for i in order],
            weights=[self.servers[i].weight for i in order],
            live=[self.live[i] for i in order],
            server_ids=order,
            hash_tag=hash_tag.encode(),
            overrides=[(k, position[t]) for k, t in self.overrides.items()],
            seed=seed,
        )

    @classmethod
    def from_pool(
        cls,
        pool: Pool,
        *,
        live: Sequence[bool] | None = None,
        overrides: Mapping[bytes, int] | None = None,
    ) -> Ring:
        return cls(
            pool.servers,
            hash=pool.hash,
            distribution=pool.distribution,
            hash_tag=pool.hash_tag,
            live=live,
            overrides=overrides,
        )

    def with_changes(
        self,
        *,
        live: Sequence[bool] | None = None,
        overrides: Mapping[bytes, int] | None = None,
        servers: Sequence[Server] | None = None,
    ) -> Ring:
        """A new ring differing in liveness, overrides or membership; this one is unchanged."""
        return Ring(
            servers if servers is not None else self.servers,
            hash=self.hash,
            distribution=self.distribution,
            hash_tag=self.hash_tag,
            live=live if live is not None else (None if servers is not None else self.live),
            overrides=overrides if overrides is not None else self.overrides,
        )

    def index(self, key: bytes) -> int | None:
        """Index of the server for `key`, or None when no server is live."""
        i = self._native.lookup(key)
        return None if i == NONE else i

    def lookup(self, key: bytes) -> Server | None:
        i = self._native.lookup(key)
        return None if i == NONE else self.servers[i]

    def index_batch(self, keys: Sequence[bytes]) -> array[int]:
        """Server indexes for many keys in one native call (NONE where no server is live)."""
        return self._native.lookup_batch(keys)

    def index_packed(self, blob: bytes, offsets: array[int]) -> array[int]:
        """As index_batch, for keys already packed (see torswitch._native.pack_keys)."""
        return self._native.lookup_packed(blob, offsets)

    def index_fixed(self, blob: bytes | memoryview, width: int) -> array[int]:
        """As index_batch, for keys of equal `width` bytes laid back to back."""
        return self._native.lookup_fixed(blob, width)

    def key_hash(self, key: bytes) -> int:
        """The 32-bit hash the distribution sees for `key` (after the hash tag)."""
        return self._native.key_hash(key)

    def points(self) -> list[tuple[int, int]]:
        """Ketama continuum (value, server index), sorted; modula table for modula."""
        return self._native.points()

    @property
    def nlive(self) -> int:
        return sum(self.live)

    def close(self) -> None:
        self._native.close()


class Router:
    """Holds the current Ring of a pool; publish() swaps it atomically.

    Readers call `ring` (one attribute read) and use that ring for a whole batch, so a batch is
    routed consistently even if a new ring is published meanwhile.
    """

    def __init__(self, ring: Ring) -> None:
        self._ring = ring
        self._publish_lock = threading.Lock()
        self.generation = 0

    @property
    def ring(self) -> Ring:
        return self._ring

    def publish(self, ring: Ring) -> Ring:
        """Make `ring` current; returns the previous ring (still valid for in-flight readers)."""
        with self._publish_lock:
            old, self._ring = self._ring, ring
            self.generation += 1
            return old

    def lookup(self, key: bytes) -> Server | None:
        return self._ring.lookup(key)

    def lookup_batch(self, keys: Sequence[bytes]) -> list[Server | None]:
        ring = self._ring
        servers = ring.servers
        return [None if i == NONE else servers[i] for i in ring.index_batch(keys)]


def route_keys(pool: Pool, keys: Iterable[bytes]) -> list[tuple[bytes, Server | None]]:
    """Place each key on its server, as nutcracker would for this pool."""
    ks = list(keys)
    ring = Ring.from_pool(pool)
    servers = ring.servers
    return [(k, None if i == NONE else servers[i]) for k, i in zip(ks, ring.index_batch(ks), strict=True)]
