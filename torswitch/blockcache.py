"""The ToR's block cache: verified HDFS block bytes in LMDB, on tmpfs (RAM) or NVMe.

What is stored. A cache entry is one block *as a client named it*: pool id, block id,
generation stamp and the block length in the read request. An appended or recreated file
changes the generation stamp or the length (or the block id), so it can never match an old
entry. Bytes are kept in fixed-size segments aligned to the block start (64 KiB by default, a
multiple of the chunk size); the last segment ends at the block length. Each segment holds its
data and the HDFS chunk checksums of that data, in the type and chunk size the DataNode
declared, so a hit can be served exactly as the DataNode would serve it.

Why it cannot serve wrong bytes. A segment is admitted only after its chunk checksums verify
(NULL-checksum blocks are never cached: nothing could be verified); each stored segment carries
a CRC-32C of its record; every read re-verifies the record CRC and the chunk checksums of what it
returns. Anything that fails is deleted, counted as corrupt, and reported as a miss. LMDB makes
each insert one transaction: a process killed mid-insert leaves either the whole segment or
nothing. A store whose files cannot be opened is moved aside and started afresh.

Eviction. Whole blocks leave, least recently used first among unpinned blocks, pinned (hinted)
blocks last. Admission follows TinyLFU: once the cache is full, a block not pinned enters only if
it has been asked for more often (exact counts, halved every `aging_period` accesses) than the
victim it would displace. Why: the workload is iterative jobs that re-read one dataset. When the
dataset fits, every policy keeps it. When it does not, LRU, 2Q and ARC all churn a cyclic scan to
a hit ratio of zero, while frequency-gated admission keeps a stable part of the dataset resident
(hit ratio about capacity/dataset) and also keeps one-off scans from flushing hot blocks. LIRS
would handle loops too, at more bookkeeping; blocks are few (thousands), so exact counts are cheap.

Concurrency. One BlockCache per process (LMDB forbids opening an environment twice in one
process; a second open raises). Methods are thread-safe and blocking; asyncio callers run them
in an executor. Writers serialize on LMDB's write lock; readers never block.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Self

import lmdb

from torswitch import checksum
from torswitch.checksum import ChecksumSpec, ChecksumType
from torswitch.errors import TorswitchError

DEFAULT_SEGMENT_BYTES = 64 * 1024
DEFAULT_PATH = "/dev/shm/torswitch-blockcache"

# Segment record: magic, version, data length, checksum bytes, CRC-32C of all that follows.
_SEG_HEADER = struct.Struct(">4sBxHII")
_SEG_MAGIC = b"TSWS"
_SEG_VERSION = 1
# Block record: checksum type, bytes per checksum, segment size, pinned-until (unix s), hits.
_BLOCK_REC = struct.Struct(">BxxxIIdQ")

_OPEN_PATHS: set[str] = set()
_OPEN_LOCK = threading.Lock()


class BlockCacheError(TorswitchError):
    """The cache cannot do what was asked (bad arguments, unusable store)."""


@dataclass(frozen=True, slots=True, order=True)
class BlockKey:
    """A block as a read request names it (ExtendedBlockProto: poolId, blockId, genStamp, numBytes)."""

    pool_id: str
    block_id: int
    gen_stamp: int
    num_bytes: int

    def encode(self) -> bytes:
        pool = self.pool_id.encode()
        return struct.pack(">H", len(pool)) + pool + struct.pack(
            ">qqq", self.block_id, self.gen_stamp, self.num_bytes
        )

    @classmethod
    def decode(cls, raw: bytes) -> BlockKey:
        (n,) = struct.unpack_from(">H", raw)
        pool = raw[2 : 2 + n].decode()
        block_id, gen, length = struct.unpack_from(">qqq", raw, 2 + n)
        return cls(pool, block_id, gen, length)

    def __str__(self) -> str:
        return f"{self.pool_id}:blk_{self.block_id}_{self.gen_stamp} ({self.num_bytes} bytes)"


@dataclass(slots=True)
class _Block:
    key: BlockKey
    spec: ChecksumSpec
    segment_bytes: int
    segments: set[int] = field(default_factory=set)
    stored_bytes: int = 0
    pinned_until: float = 0.0
    hits: int = 0

    @property
    def nsegments(self) -> int:
        return max(1, -(-self.key.num_bytes // self.segment_bytes))

    def pinned(self, now: float) -> bool:
        return self.pinned_until > now


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """What `list_blocks` reports for one cached block."""

    key: BlockKey
    checksum_type: str
    bytes_per_checksum: int
    segments_cached: int
    segments_total: int
    stored_bytes: int
    pinned_until: float
    hits: int

    @property
    def complete(self) -> bool:
        return self.segments_cached == self.segments_total


@dataclass(frozen=True, slots=True)
class CachedRange:
    """Chunk-aligned bytes of a block and their checksums, ready to be framed into packets.

    `offset` is where `data` starts in the block (a multiple of the chunk size, at or before the
    offset asked for); `sums` holds one checksum per chunk of `data`.
    """

    key: BlockKey
    spec: ChecksumSpec
    offset: int
    data: bytes
    sums: bytes


@dataclass(slots=True)
class CacheStats:
    capacity_bytes: int = 0
    used_bytes: int = 0
    blocks: int = 0
    segments: int = 0
    hits: int = 0
    misses: int = 0
    inserted_segments: int = 0
    rejected_segments: int = 0  # failed checksum verification or unverifiable
    not_admitted_segments: int = 0  # refused by the admission policy
    evicted_blocks: int = 0
    corrupt_segments: int = 0


class BlockCache:
    """An LMDB-backed block cache of `capacity_bytes` bytes of data and checksums.

    Raises BlockCacheError for invalid arguments or when `path` is already open in this process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        capacity_bytes: int = 1 << 30,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        aging_period: int = 10_000,
        sync: bool = False,
    ) -> None:
        if capacity_bytes <= 0:
            raise BlockCacheError(f"capacity must be positive, not {capacity_bytes}")
        if segment_bytes <= 0 or segment_bytes % 512:
            raise BlockCacheError(f"segment size {segment_bytes} is not a positive multiple of 512")
        self.path = os.path.abspath(os.fspath(path))
        with _OPEN_LOCK:
            # LMDB corrupts its lock table if one process opens an environment twice.
            if self.path in _OPEN_PATHS:
                raise BlockCacheError(f"{self.path} is already open in this process")
            _OPEN_PATHS.add(self.path)
        self.capacity_bytes = capacity_bytes
        self.segment_bytes = segment_bytes
        self.aging_period = aging_period
        self._lock = threading.RLock()
        self._blocks: dict[BlockKey, _Block] = {}
        self._lru: OrderedDict[BlockKey, None] = OrderedDict()
        self._freq: dict[BlockKey, int] = {}
        self._accesses = 0
        self._pins: dict[BlockKey, float] = {}  # pins for blocks not cached yet
        self.stats = CacheStats(capacity_bytes=capacity_bytes)
        self.recovered_from: str | None = None
        try:
            self._env = self._open_env(sync)
        except BaseException:
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(self.path)
            raise
        self._meta = self._env.open_db(b"blocks")
        self._segs = self._env.open_db(b"segments")
        self._load()

    # ---- set-up ---------------------------------------------------------------------------------

    def _open_env(self, sync: bool) -> lmdb.Environment:
        # Room for the data plus B-tree pages and free pages awaiting reuse.
        map_size = self.capacity_bytes * 2 + (64 << 20)
        os.makedirs(self.path, exist_ok=True)
        def open_env() -> lmdb.Environment:
            return lmdb.open(self.path, map_size=map_size, max_dbs=4, sync=sync, metasync=sync,
                             readahead=False, max_readers=256)

        try:
            env = open_env()
            with env.begin() as txn:
                txn.stat(env.open_db(b"blocks", txn=txn, create=False))
            return env
        except lmdb.NotFoundError:
            return env  # a new store: databases are created below
        except lmdb.Error as exc:
            # Unreadable store: keep it for inspection, start empty.
            aside = f"{self.path}.corrupt-{int(time.time())}"
            shutil.move(self.path, aside)
            os.makedirs(self.path)
            self.recovered_from = f"{exc.__class__.__name__}: {exc} (moved to {aside})"
            return open_env()

    def _load(self) -> None:
        """Rebuild the in-memory index from the store (after a restart or a crash)."""
        with self._env.begin() as txn:
            for raw_key, rec in txn.cursor(db=self._meta):
                try:
                    key = BlockKey.decode(bytes(raw_key))
                    ctype, bpc, seg, pinned, hits = _BLOCK_REC.unpack(rec)
                    spec = ChecksumSpec(ChecksumType(ctype), bpc)
                except (struct.error, ValueError, UnicodeDecodeError):
                    continue  # dropped below with its segments
                self._blocks[key] = _Block(key, spec, seg, pinned_until=pinned, hits=hits)
            orphans: list[bytes] = []
            for raw, value in txn.cursor(db=self._segs):
                raw = bytes(raw)
                owner = BlockKey.decode(raw[:-4]) if len(raw) > 4 else None
                block = self._blocks.get(owner) if owner else None
                if block is None or len(value) < _SEG_HEADER.size:
                    orphans.append(raw)
                    continue
                index = struct.unpack(">I", raw[-4:])[0]
                _, _, _, dlen, slen = _seg_fields(value)
                block.segments.add(index)
                block.stored_bytes += dlen + slen
        if orphans:
            with self._env.begin(write=True) as txn:
                for raw in orphans:
                    txn.delete(raw, db=self._segs)
        # Oldest first: restart order approximates recency by hit count.
        for key in sorted(self._blocks, key=lambda k: self._blocks[k].hits):
            self._lru[key] = None
            self._freq[key] = self._blocks[key].hits
        self._refresh_stats()

    def close(self) -> None:
        """Flush hit counts and close the store. Idempotent."""
        with self._lock:
            if self._env is None:
                return
            with contextlib.suppress(lmdb.Error), self._env.begin(write=True) as txn:
                for block in self._blocks.values():
                    txn.put(block.key.encode(), _block_record(block), db=self._meta)
            self._env.close()
            self._env = None  # type: ignore[assignment]
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(self.path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- geometry -------------------------------------------------------------------------------

    def segments_for(self, key: BlockKey, offset: int, length: int) -> range:
        """Indexes of the segments covering block bytes [offset, offset + length)."""
        if offset < 0 or length < 0 or offset + length > key.num_bytes:
            raise BlockCacheError(
                f"range {offset}+{length} outside block {key} of {key.num_bytes} bytes"
            )
        if length == 0:
            return range(0)
        return range(offset // self.segment_bytes, (offset + length - 1) // self.segment_bytes + 1)

    def segment_span(self, key: BlockKey, index: int) -> tuple[int, int]:
        """(start, length) of segment `index` of `key`."""
        start = index * self.segment_bytes
        if index < 0 or start >= max(key.num_bytes, 1):
            raise BlockCacheError(f"segment {index} outside block {key}")
        return start, min(self.segment_bytes, key.num_bytes - start)

    # ---- writes ---------------------------------------------------------------------------------

    def put_segment(self, key: BlockKey, spec: ChecksumSpec, index: int, data: bytes | memoryview,
                    sums: bytes | memoryview) -> bool:
        """Store segment `index` of `key` after verifying its chunk checksums.

        Returns True if stored (or already present), False if the admission policy or the
        capacity refused it or it cannot be verified (NULL checksums). Raises
        checksum.ChecksumError when the checksums do not match (nothing is stored) and
        BlockCacheError for a segment of the wrong size or a checksum chunk size that does not
        divide the segment size.
        """
        _, expected = self.segment_span(key, index)
        if len(data) != expected:
            raise BlockCacheError(f"segment {index} of {key} must hold {expected} bytes, not {len(data)}")
        if self.segment_bytes % spec.bytes_per_checksum:
            raise BlockCacheError(
                f"chunk size {spec.bytes_per_checksum} does not divide segment size {self.segment_bytes}"
            )
        if spec.type is ChecksumType.NULL:
            with self._lock:
                self.stats.rejected_segments += 1
            return False
        try:
            spec.check(data, sums)
        except checksum.ChecksumError:
            with self._lock:
                self.stats.rejected_segments += 1
            raise
        record = _segment_record(bytes(data), bytes(sums))
        cost = len(data) + len(sums)
        with self._lock:
            block = self._blocks.get(key)
            if block is not None and index in block.segments:
                return True
            if block is not None and block.spec != spec:
                # Same block identity, different checksum declaration: never mix the two.
                self._drop(key)
                block = None
            if not self._make_room(key, cost):
                self.stats.not_admitted_segments += 1
                return False
            if block is None:
                block = _Block(key, spec, self.segment_bytes, pinned_until=self._pins.pop(key, 0.0))
            with self._env.begin(write=True) as txn:
                txn.put(key.encode(), _block_record(block), db=self._meta)
                txn.put(key.encode() + struct.pack(">I", index), record, db=self._segs)
            self._blocks[key] = block
            block.segments.add(index)
            block.stored_bytes += cost
            self._lru[key] = None
            self._lru.move_to_end(key)
            self.stats.inserted_segments += 1
            self._refresh_stats()
            return True

    def _make_room(self, key: BlockKey, need: int) -> bool:
        """Evict until `need` more bytes fit; False if the policy refuses. Caller holds the lock."""
        if need > self.capacity_bytes:
            return False
        now = time.time()
        incoming = self._blocks.get(key)
        incoming_pinned = (incoming.pinned(now) if incoming is not None
                           else self._pins.get(key, 0.0) > now)
        while self.stats.used_bytes + need > self.capacity_bytes:
            victim = self._victim(now, exclude=key)
            if victim is None:
                return False
            vblock = self._blocks[victim]
            if vblock.pinned(now) and not incoming_pinned:
                return False  # pinned blocks only make way for other pinned blocks
            if not incoming_pinned and not vblock.pinned(now) and (
                self._freq.get(key, 0) <= self._freq.get(victim, 0)
            ):
                return False  # TinyLFU: the newcomer must be wanted more than the victim
            self._drop(victim)
            self.stats.evicted_blocks += 1
        return True

    def _victim(self, now: float, exclude: BlockKey) -> BlockKey | None:
        pinned_candidate = None
        for k in self._lru:  # least recently used first
            if k == exclude:
                continue
            if not self._blocks[k].pinned(now):
                return k
            if pinned_candidate is None:
                pinned_candidate = k
        return pinned_candidate

    def _drop(self, key: BlockKey) -> None:
        block = self._blocks.pop(key, None)
        self._lru.pop(key, None)
        if block is None:
            return
        with self._env.begin(write=True) as txn:
            txn.delete(key.encode(), db=self._meta)
            for index in block.segments:
                txn.delete(key.encode() + struct.pack(">I", index), db=self._segs)
        self._refresh_stats()

    def evict(self, key: BlockKey) -> bool:
        """Remove a block. Returns whether it was cached."""
        with self._lock:
            present = key in self._blocks
            self._drop(key)
            if present:
                self.stats.evicted_blocks += 1
            return present

    def evict_all(self) -> int:
        with self._lock:
            keys = list(self._blocks)
            for key in keys:
                self._drop(key)
            self.stats.evicted_blocks += len(keys)
            return len(keys)

    def pin(self, key: BlockKey, until: float) -> None:
        """Keep `key` until the unix time `until` (hinted blocks); it need not be cached yet."""
        with self._lock:
            block = self._blocks.get(key)
            self._freq[key] = max(self._freq.get(key, 0), 1)
            if block is None:
                self._pins[key] = until
                return
            block.pinned_until = until
            with self._env.begin(write=True) as txn:
                txn.put(key.encode(), _block_record(block), db=self._meta)

    def unpin(self, key: BlockKey) -> None:
        self.pin(key, 0.0)

    # ---- reads ----------------------------------------------------------------------------------

    def record_access(self, key: BlockKey) -> None:
        """Count one request for `key` (hit or miss): the admission policy's frequency."""
        with self._lock:
            self._freq[key] = self._freq.get(key, 0) + 1
            self._accesses += 1
            if self._accesses >= self.aging_period:
                self._accesses = 0
                self._freq = {k: v // 2 for k, v in self._freq.items() if v // 2 or k in self._blocks}

    def covers(self, key: BlockKey, offset: int, length: int) -> bool:
        """Whether every segment covering [offset, offset + length) is cached."""
        with self._lock:
            block = self._blocks.get(key)
            if block is None:
                return False
            return all(i in block.segments for i in self.segments_for(key, offset, length))

    def missing_segments(self, key: BlockKey, offset: int, length: int) -> list[int]:
        with self._lock:
            block = self._blocks.get(key)
            have = block.segments if block else set()
            return [i for i in self.segments_for(key, offset, length) if i not in have]

    def get_range(self, key: BlockKey, offset: int, length: int) -> CachedRange | None:
        """The chunk-aligned cached bytes covering [offset, offset + length), or None (a miss).

        Every byte returned has just been verified against its chunk checksum; a segment that
        fails is deleted (with its block) and the call is a miss.
        """
        self.record_access(key)
        with self._lock:
            block = self._blocks.get(key)
            wanted = self.segments_for(key, offset, length)
            if block is None or any(i not in block.segments for i in wanted):
                self.stats.misses += 1
                return None
            spec = block.spec
            self._lru.move_to_end(key)
            block.hits += 1
        bpc = spec.bytes_per_checksum
        start = offset - offset % bpc
        end = min(key.num_bytes, -(-(offset + length) // bpc) * bpc) if length else start
        data = bytearray()
        sums = bytearray()
        with self._env.begin(buffers=True) as txn:
            for i in wanted:
                raw = txn.get(key.encode() + struct.pack(">I", i), db=self._segs)
                parsed = _parse_segment(raw) if raw is not None else None
                if parsed is None:
                    self._corrupt(key)
                    return None
                seg_data, seg_sums = parsed
                seg_start = i * self.segment_bytes
                lo = max(start, seg_start) - seg_start
                hi = min(end, seg_start + len(seg_data)) - seg_start
                data += seg_data[lo:hi]
                size = spec.size
                sums += seg_sums[lo // bpc * size : -(-hi // bpc) * size]
        if spec.verify(data, sums) >= 0:
            self._corrupt(key)
            return None
        with self._lock:
            self.stats.hits += 1
        return CachedRange(key, spec, start, bytes(data), bytes(sums))

    def _corrupt(self, key: BlockKey) -> None:
        with self._lock:
            self.stats.corrupt_segments += 1
            self.stats.misses += 1
            self._drop(key)

    # ---- inspection -----------------------------------------------------------------------------

    def list_blocks(self) -> list[BlockInfo]:
        with self._lock:
            return [
                BlockInfo(b.key, b.spec.type.name, b.spec.bytes_per_checksum, len(b.segments),
                          b.nsegments, b.stored_bytes, b.pinned_until, b.hits)
                for b in self._blocks.values()
            ]

    def info(self, key: BlockKey) -> BlockInfo | None:
        return next((b for b in self.list_blocks() if b.key == key), None)

    def iter_keys(self) -> Iterator[BlockKey]:
        with self._lock:
            keys = list(self._blocks)
        yield from keys

    def _refresh_stats(self) -> None:
        self.stats.used_bytes = sum(b.stored_bytes for b in self._blocks.values())
        self.stats.blocks = len(self._blocks)
        self.stats.segments = sum(len(b.segments) for b in self._blocks.values())


class SegmentAssembler:
    """Cuts a contiguous run of checksummed block bytes into whole cache segments.

    Feed it data as it arrives (the engine's relayed packets, the prefetcher's verified reads);
    each add() returns the segments it completed as (index, data, sums), ready for put_segment.
    Bytes before the first segment boundary belong to a segment this run does not cover whole,
    so they are dropped. Raises ValueError on a gap between runs.
    """

    def __init__(self, key: BlockKey, spec: ChecksumSpec, segment_bytes: int) -> None:
        self.key, self.spec, self.seg = key, spec, segment_bytes
        self.start = -1  # block offset of buf[0]
        self.buf = bytearray()
        self.sums = bytearray()

    def add(self, offset: int, data: bytes | memoryview, sums: bytes | memoryview
            ) -> list[tuple[int, bytes, bytes]]:
        if self.start < 0:
            self.start = offset
        elif offset != self.start + len(self.buf):
            raise ValueError(f"{self.key}: bytes at {offset}, expected {self.start + len(self.buf)}")
        self.buf += data
        self.sums += sums
        bpc, size = self.spec.bytes_per_checksum, self.spec.size
        done: list[tuple[int, bytes, bytes]] = []
        if self.start % self.seg:
            # Drop the head up to the next segment boundary (whole chunks only).
            skip = min(len(self.buf), self.seg - self.start % self.seg)
            skip -= skip % bpc
            del self.buf[:skip]
            del self.sums[: skip // bpc * size]
            self.start += skip
            if self.start % self.seg:
                return done
        while True:
            seg_len = min(self.seg, self.key.num_bytes - self.start)
            if seg_len <= 0 or len(self.buf) < seg_len:
                return done
            nsums = -(-seg_len // bpc) * size
            done.append((self.start // self.seg, bytes(self.buf[:seg_len]),
                         bytes(self.sums[:nsums])))
            del self.buf[:seg_len]
            del self.sums[:nsums]
            self.start += seg_len


def _block_record(block: _Block) -> bytes:
    return _BLOCK_REC.pack(int(block.spec.type), block.spec.bytes_per_checksum,
                           block.segment_bytes, block.pinned_until, block.hits)


def _segment_record(data: bytes, sums: bytes) -> bytes:
    body = sums + data
    header = _SEG_HEADER.pack(_SEG_MAGIC, _SEG_VERSION, 0, len(data), len(sums))
    crc = checksum.crc32c(body, checksum.crc32c(header))
    return header + struct.pack(">I", crc) + body


def _seg_fields(value: bytes | memoryview) -> tuple[bytes, int, int, int, int]:
    magic, version, _pad, dlen, slen = _SEG_HEADER.unpack_from(value)
    return magic, version, _pad, dlen, slen


def _parse_segment(value: bytes | memoryview) -> tuple[memoryview, memoryview] | None:
    """(data, sums) of a stored segment record, or None if it is damaged in any way."""
    view = memoryview(value)
    if len(view) < _SEG_HEADER.size + 4:
        return None
    magic, version, _pad, dlen, slen = _seg_fields(view)
    if magic != _SEG_MAGIC or version != _SEG_VERSION:
        return None
    (crc,) = struct.unpack_from(">I", view, _SEG_HEADER.size)
    body = view[_SEG_HEADER.size + 4 :]
    if len(body) != dlen + slen:
        return None
    if checksum.crc32c(body, checksum.crc32c(view[: _SEG_HEADER.size])) != crc:
        return None
    return body[slen:], body[:slen]
