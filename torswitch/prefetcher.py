"""Prefetching blocks into the ToR cache before anyone asks for them.

A prefetch names paths (files or directories, resolved through the NameNode) or blocks. Each
block's missing segments are read with the verifying block reader (torswitch.blockreader) from
the ToR itself, over the uplink, and stored segment by segment. Rules:

- bounded concurrency: at most `concurrency` blocks are fetched at once;
- priority: jobs with a higher priority are started first;
- demand first: while the engine is relaying client misses, prefetching slows to a quarter of
  its rate, so a job's first iteration is not starved by its own prefetch;
- a rate cap (bytes/s) so prefetching cannot fill the uplink;
- single flight, shared with the engine: a block being fetched is fetched once, and a client
  missing it waits for that fetch instead of relaying its own;
- hinted blocks are pinned in the cache until the hint's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from torswitch.blockcache import BlockCache, BlockKey, SegmentAssembler
from torswitch.blockreader import BlockReader, BlockReadError
from torswitch.checksum import ChecksumError
from torswitch.namenode import LocatedBlock, NameNodeClient

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far one prefetch request has come. Bytes are block bytes, not wire bytes."""

    blocks_total: int = 0
    blocks_ready: int = 0
    blocks_failed: int = 0
    bytes_total: int = 0
    bytes_ready: int = 0
    errors: list[str] = field(default_factory=list)
    done: bool = False


class RateLimiter:
    """A token bucket in bytes/s, for blocking (thread) callers. None = unlimited."""

    def __init__(self, rate: int | None, burst: int = 1 << 20) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()
        self.slow: Callable[[], bool] = lambda: False

    def take(self, n: int) -> None:
        if not self.rate:
            return
        while True:
            with self.lock:
                now = time.monotonic()
                rate = self.rate / 4 if self.slow() else self.rate
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * rate)
                self.stamp = now
                if self.tokens >= n or self.tokens >= self.burst:
                    self.tokens -= n
                    return
                wait = (n - self.tokens) / rate
            time.sleep(min(wait, 0.05))


class Prefetcher:
    """Fetches blocks into `cache`. `inflight` is the engine's single-flight table."""

    def __init__(
        self,
        cache: BlockCache,
        *,
        namenode: Callable[[], NameNodeClient] | None = None,
        reader: BlockReader | None = None,
        concurrency: int = 4,
        rate_bytes_per_s: int | None = None,
        inflight: dict[BlockKey, asyncio.Event] | None = None,
        demand_active: Callable[[], bool] = lambda: False,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.cache = cache
        self.namenode = namenode
        self.reader = reader or BlockReader()
        self.slots = concurrency
        self.active = 0
        self.limiter = RateLimiter(rate_bytes_per_s)
        self.limiter.slow = demand_active
        self.inflight = inflight if inflight is not None else {}
        self.executor = executor or ThreadPoolExecutor(concurrency, thread_name_prefix="tsw-prefetch")
        self.bytes_prefetched = 0
        self._queue_seq = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []

    # ---- resolving ------------------------------------------------------------------------------

    def resolve_paths(self, paths: Sequence[str]) -> list[LocatedBlock]:
        """Every block of every file under `paths` (directories recursively). Blocking.

        Raises namenode errors (FileNotFoundError subclass for a missing path).
        """
        if self.namenode is None:
            raise ValueError("no NameNode configured for resolving paths")
        blocks: list[LocatedBlock] = []
        with self.namenode() as nn:
            todo = list(paths)
            while todo:
                path = todo.pop()
                status = nn.get_file_info(path)
                if status is None:
                    raise FileNotFoundError(f"{path}: no such file or directory")
                if status.is_dir:
                    todo.extend(child.path for child in nn.list_status(path))
                    continue
                located = nn.file_blocks(path)
                if located.encrypted or located.erasure_coded:
                    log.info("not prefetching %s: encrypted or erasure-coded", path)
                    continue
                # Only complete blocks are stable; a block being written may still grow.
                complete = located.blocks if located.last_block_complete else located.blocks[:-1]
                blocks.extend(b for b in complete if b.block.num_bytes > 0)
        return blocks

    # ---- fetching -------------------------------------------------------------------------------

    async def prefetch(self, blocks: Sequence[LocatedBlock], *, pin_until: float = 0.0,
                       priority: int = 0) -> AsyncIterator[Progress]:
        """Fetch `blocks`, yielding progress after each block; the last has done=True."""
        progress = Progress(blocks_total=len(blocks),
                            bytes_total=sum(b.block.num_bytes for b in blocks))
        for lb in blocks:
            if pin_until:
                self.cache.pin(_key(lb), pin_until)
        queue: asyncio.Queue[tuple[LocatedBlock, Exception | None]] = asyncio.Queue()

        async def one(lb: LocatedBlock) -> None:
            try:
                await self.fetch(lb, priority=priority)
                await queue.put((lb, None))
            except (BlockReadError, ChecksumError, OSError, ValueError) as exc:
                await queue.put((lb, exc))

        tasks = [asyncio.create_task(one(lb)) for lb in blocks]
        try:
            for _ in blocks:
                lb, exc = await queue.get()
                if exc is None:
                    progress.blocks_ready += 1
                    progress.bytes_ready += lb.block.num_bytes
                else:
                    progress.blocks_failed += 1
                    progress.errors.append(f"{lb.block.name}: {exc}")
                yield progress
        finally:
            for t in tasks:
                t.cancel()
        progress.done = True
        yield progress

    async def fetch(self, lb: LocatedBlock, *, priority: int = 0) -> None:
        """Make every segment of one block cached (single flight with the engine)."""
        key = _key(lb)
        while (event := self.inflight.get(key)) is not None:
            await event.wait()
        if not self.cache.missing_segments(key, 0, key.num_bytes):
            return
        event = asyncio.Event()
        self.inflight[key] = event
        try:
            await self._turn(priority)
            try:
                missing = self.cache.missing_segments(key, 0, key.num_bytes)
                if missing:
                    loop = asyncio.get_running_loop()
                    fetched = await loop.run_in_executor(self.executor, self._fetch_sync, lb, missing)
                    self.bytes_prefetched += fetched
            finally:
                self.active -= 1
                self._wake()
        finally:
            self.inflight.pop(key, None)
            event.set()

    async def _turn(self, priority: int) -> None:
        """Take one of the `slots` fetch slots; waiters are served higher priority first."""
        if not self._waiting and self.active < self.slots:
            self.active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue_seq += 1
        self._waiting.append((-priority, self._queue_seq, fut))
        self._waiting.sort(key=lambda w: (w[0], w[1]))
        self._wake()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.active -= 1  # the slot was handed over just as we were cancelled
                self._wake()
            raise

    def _wake(self) -> None:
        while self._waiting and self.active < self.slots:
            _, _, fut = self._waiting.pop(0)
            if not fut.done():
                self.active += 1  # the slot passes to the woken waiter
                fut.set_result(None)

    def _fetch_sync(self, lb: LocatedBlock, missing: list[int]) -> int:
        return fetch_segments(self.cache, self.reader, lb, missing, self.limiter.take)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.reader.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def fetch_segments(cache: BlockCache, reader: BlockReader, lb: LocatedBlock, missing: list[int],
                   pace: Callable[[int], None] = lambda n: None) -> int:
    """Read segments `missing` of a block from its DataNodes and store each one. Blocking.

    Contiguous segments are read in one READ_BLOCK; every packet is verified by the reader and
    every segment again by the cache. `pace(n)` is called before using n bytes (rate limits).
    Returns the block bytes read. Raises BlockReadError when no replica could serve a range.
    """
    key = _key(lb)
    seg = cache.segment_bytes
    fetched = 0
    for first, last in _runs(missing):
        start = first * seg
        end = min(key.num_bytes, (last + 1) * seg)
        assembler: SegmentAssembler | None = None
        for pkt in reader.stream(lb, start, end - start):
            pace(len(pkt.data))
            spec = pkt.spec
            if assembler is None:
                assembler = SegmentAssembler(key, spec, seg)
            # start is segment- hence chunk-aligned, so packets begin on chunk boundaries
            lo_chunk = (pkt.offset - pkt.chunk_offset) // spec.bytes_per_checksum
            n_chunks = -(-len(pkt.data) // spec.bytes_per_checksum)
            sums = pkt.checksums[lo_chunk * spec.size : (lo_chunk + n_chunks) * spec.size]
            fetched += len(pkt.data)
            for index, data, seg_sums in assembler.add(pkt.offset, pkt.data, sums):
                cache.put_segment(key, spec, index, data, seg_sums)
    return fetched


def _key(lb: LocatedBlock) -> BlockKey:
    b = lb.block
    return BlockKey(b.pool_id, b.block_id, b.generation_stamp, b.num_bytes)


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted segment indexes, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs
