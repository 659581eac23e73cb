"""The ToR block engine: terminates intercepted HDFS connections and serves reads from the cache.

The ToR's interception (kernel nftables, or the DPDK data plane's exception path) redirects rack
connections to DataNode transfer ports here; the DataNode they meant is read back with
SO_ORIGINAL_DST. Per connection and per op:

    client --READ_BLOCK--> engine
       |  all bytes cached:     engine answers as the DataNode would (response, 64 KiB packets
       |                        with the declared checksums, the empty last packet), reads the
       |                        client's status, waits for the next op
       |  not all cached:       engine relays request and reply byte for byte over its own
       |                        upstream connection (opened lazily, reused), keeping a copy of
       |                        every whole segment whose checksums verify
       |  SASL, other ops,      spliced to the DataNode byte for byte from the op's first byte
       |  anything unparseable: to the end of the connection, counted by reason

Safety. A hit needs the same pool, block id, generation stamp and length as cached (the cache
key); only verified bytes are cached and every served byte is re-verified (torswitch.blockcache);
NULL-checksum replies are relayed, never cached. Where the cluster uses block access tokens, a
client presenting a token is served a hit only after the DataNode accepted that token for that
block (a one-chunk READ_BLOCK upstream with the client's token; accepted tokens are remembered
for TOKEN_TTL_S); an empty token on such a cluster is relayed, so the DataNode refuses it
itself. SASL-protected streams (encryption, integrity) are spliced untouched.

Single flight: while a miss on a block is being relayed, other clients missing the same block
wait for it (up to SINGLE_FLIGHT_WAIT_S), then find it cached; so concurrent readers of one block
cause one upstream read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.blockcache import (
    BlockCache,
    BlockCacheError,
    BlockKey,
    CachedRange,
    SegmentAssembler,
)
from torswitch.blockreader import BlockReader, BlockReadError
from torswitch.checksum import ChecksumError, ChecksumSpec, ChecksumType
from torswitch.datatransfer import (
    DATA_TRANSFER_VERSION,
    SASL_TRANSFER_MAGIC,
    Checksums,
    Data,
    Direction,
    End,
    Op,
    ProtocolError,
    Response,
    StreamParser,
    encode_client_read_status,
    encode_packet,
    encode_read_response,
    encode_request,
    read_block_request,
    read_packet_data_size,
)
from torswitch.namenode import Block, DatanodeInfo, LocatedBlock
from torswitch.prefetcher import fetch_segments

log = logging.getLogger(__name__)

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
RECV_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 1 << 20
TOKEN_TTL_S = 60.0
SINGLE_FLIGHT_WAIT_S = 30.0
IDLE_TIMEOUT_S = 120.0
SERVE_PIECE_BYTES = 1 << 20  # cached bytes read, verified and sent per step of a hit
FIRST_PIECE_BYTES = 64 * 1024  # the first step: one packet

PASSTHROUGH_REASONS = ("sasl", "other_op", "unknown_op", "unparseable", "token_required")


@dataclass
class EngineStats:
    """Counters the metrics module exports (torswitch_engine_*)."""

    connections: int = 0
    hits: int = 0
    misses: int = 0
    bytes_from_cache: int = 0
    bytes_from_upstream: int = 0
    segments_cached: int = 0
    bytes_filled: int = 0  # fetched after a miss to complete partly read segments
    single_flight_waits: int = 0
    token_checks: int = 0
    token_rejections: int = 0
    upstream_errors: int = 0
    client_errors: int = 0
    passthrough: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PASSTHROUGH_REASONS, 0))
    hit_ttfb_s: list[float] = field(default_factory=list)
    miss_ttfb_s: list[float] = field(default_factory=list)

    def observe_ttfb(self, hit: bool, seconds: float) -> None:
        samples = self.hit_ttfb_s if hit else self.miss_ttfb_s
        samples.append(seconds)
        if len(samples) > 4096:  # the metrics module drains these; bound them if nobody does
            del samples[:2048]


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """The address a redirected TCP connection was meant for (netfilter's SO_ORIGINAL_DST)."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


class ClientClosed(Exception):
    """The client went away between ops: a normal end."""


class _Frames:
    """Client-side framing at op boundaries, over the bytes read so far.

    Kept separate from the parser so the engine always knows the exact raw bytes of an op, which
    it must replay upstream unchanged when it relays or splices.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buf = bytearray()

    async def fill(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = await self.reader.read(RECV_BYTES)
            if not chunk:
                return False
            self.buf += chunk
        return True

    async def varint_frame(self, start: int) -> int | None:
        """End offset of a varint-delimited message starting at `start`, or None at EOF."""
        pos, value, shift = start, 0, 0
        while True:
            if not await self.fill(pos + 1):
                return None
            b = self.buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
            if shift > 35:
                raise ProtocolError("varint too long")
        if value > MAX_REQUEST_BYTES:
            raise ProtocolError(f"message of {value} bytes")
        if not await self.fill(pos + value):
            return None
        return pos + value

    def take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


@dataclass
class _Request:
    raw: bytes
    op: int
    body: bytes


class BlockEngine:
    """The engine's server. Blocking cache calls run in `executor`."""

    def __init__(
        self,
        cache: BlockCache,
        *,
        host: str = "0.0.0.0",
        port: int = 19866,
        block_tokens: str = "auto",
        cluster_uses_tokens: bool = False,
        upstream_timeout_s: float = 30.0,
        destination: Callable[[socket.socket], tuple[str, int]] = original_destination,
        executor: ThreadPoolExecutor | None = None,
        fill_edges: bool = True,
    ) -> None:
        self.cache = cache
        self.host, self.port = host, port
        self.block_tokens = block_tokens
        self.cluster_uses_tokens = cluster_uses_tokens
        self.upstream_timeout_s = upstream_timeout_s
        self.destination = destination
        self.executor = executor or ThreadPoolExecutor(4, thread_name_prefix="tsw-cache")
        self.stats = EngineStats()
        self._server: asyncio.base_events.Server | None = None
        self._inflight: dict[BlockKey, asyncio.Event] = {}
        self._tokens_ok: dict[tuple[BlockKey, bytes, bytes], float] = {}
        self._sessions: set[asyncio.Task[None]] = set()
        self.active_relays = 0  # demand misses in progress (the prefetcher yields to them)
        self.fill_edges = fill_edges
        self._reader: BlockReader | None = None
        self._fills: set[asyncio.Task[None]] = set()

    @property
    def inflight(self) -> dict[BlockKey, asyncio.Event]:
        """Single-flight table shared with the prefetcher: block -> set when its fetch ends."""
        return self._inflight

    async def start(self) -> int:
        """Listen; returns the bound port."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  reuse_address=True, limit=RECV_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("block engine listening on %s:%d", self.host, self.port)
        return self.port

    def start_fill(self, key: BlockKey, msg: dt.OpReadBlockProto, dst: tuple[str, int],
                   missing: list[int], event: asyncio.Event) -> None:
        """Fetch `missing` segments of `key` from `dst` in the background; `event` (the
        block's single-flight marker, already in the table) is set when done."""
        if self._reader is None:
            self._reader = BlockReader(timeout=self.upstream_timeout_s)
        b = msg.header.baseHeader
        node = DatanodeInfo(dst[0], dst[0], "", dst[1], 0, 0, "", "NORMAL")
        located = LocatedBlock(Block(key.pool_id, key.block_id, key.gen_stamp, key.num_bytes), 0,
                               (node,), False, b.token)
        reader = self._reader

        async def fill() -> None:
            try:
                got = await self._run_cache(fetch_segments, self.cache, reader, located, missing)
                self.stats.bytes_filled += got
                self.stats.bytes_from_upstream += got
            except (BlockReadError, ChecksumError, BlockCacheError, OSError, ValueError) as exc:
                log.info("filling %s segments %s failed: %s", key, missing, exc)
            finally:
                self._inflight.pop(key, None)
                event.set()

        task = asyncio.get_running_loop().create_task(fill())
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._fills):
            task.cancel()
        await asyncio.gather(*self._fills, return_exceptions=True)
        if self._reader is not None:
            self._reader.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _run_cache(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self.stats.connections += 1
        try:
            try:
                dst = self.destination(writer.get_extra_info("socket"))
            except OSError:
                return  # not a redirected connection (e.g. a health probe): nothing to relay to
            if dst[1] == self.port and _is_local(dst[0]):
                return  # addressed to the engine itself: relaying would loop back here
            await _Session(self, reader, writer, dst).run()
        except (ConnectionError, asyncio.IncompleteReadError, ClientClosed, TimeoutError):
            pass
        except ProtocolError as exc:
            self.stats.client_errors += 1
            log.info("connection dropped: %s", exc)
        except Exception:  # one broken connection must never take the engine down
            self.stats.client_errors += 1
            log.exception("unexpected error on an intercepted connection")
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # ---- token validation -----------------------------------------------------------------------

    def _token_needed(self, req: dt.OpReadBlockProto) -> bool:
        if self.block_tokens == "off":
            return False
        token = req.header.baseHeader.token
        if token.identifier:
            self.cluster_uses_tokens = True
            return True
        return self.cluster_uses_tokens

    async def token_accepted(self, key: BlockKey, req: dt.OpReadBlockProto,
                             dst: tuple[str, int]) -> bool:
        """Ask the DataNode whether it accepts the client's token for this block."""
        token = req.header.baseHeader.token
        if not token.identifier:
            return False
        memo = (key, bytes(token.identifier), bytes(token.password))
        now = time.monotonic()
        if self._tokens_ok.get(memo, 0.0) > now:
            return True
        self.stats.token_checks += 1
        probe = read_block_request(req.header.baseHeader.block, 0, min(1, key.num_bytes),
                                   token=token, client_name=req.header.clientName or "torswitch")
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(*dst), self.upstream_timeout_s)
        except (OSError, TimeoutError):
            self.stats.upstream_errors += 1
            return False
        try:
            w.write(encode_request(Op.READ_BLOCK, probe))
            await w.drain()
            parser = StreamParser(Direction.DATANODE, expect=[(Op.READ_BLOCK, probe)])
            while True:
                chunk = await asyncio.wait_for(r.read(RECV_BYTES), self.upstream_timeout_s)
                if not chunk:
                    return False
                for ev in parser.feed(chunk):
                    if isinstance(ev, Response) and ev.message.status != dt.SUCCESS:
                        self.stats.token_rejections += 1
                        return False
                    if isinstance(ev, End):
                        w.write(encode_client_read_status(dt.CHECKSUM_OK))
                        await w.drain()
                        self._tokens_ok[memo] = now + TOKEN_TTL_S
                        return True
        except (OSError, TimeoutError, ProtocolError):
            self.stats.upstream_errors += 1
            return False
        finally:
            w.close()


class _Session:
    """One intercepted client connection."""

    def __init__(self, engine: BlockEngine, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, dst: tuple[str, int]) -> None:
        self.engine = engine
        self.stats = engine.stats
        self.client = writer
        self.frames = _Frames(reader)
        self.dst = dst
        self.up_r: asyncio.StreamReader | None = None
        self.up_w: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        try:
            while True:
                req = await self._next_request()
                if req is None:
                    return
                if req.op != Op.READ_BLOCK:
                    reason = "other_op" if req.op in Op._value2member_map_ else "unknown_op"
                    self.stats.passthrough[reason] += 1
                    await self._splice(req.raw)
                    return
                try:
                    msg = dt.OpReadBlockProto.FromString(req.body)
                    if not msg.IsInitialized():
                        raise ValueError("missing required fields")
                except (DecodeError, ValueError):
                    self.stats.passthrough["unparseable"] += 1
                    await self._splice(req.raw)
                    return
                if not await self._read_block(req, msg):
                    return
        finally:
            if self.up_w is not None:
                self.up_w.close()

    async def _next_request(self) -> _Request | None:
        """The next op, or None after the connection was handed to _splice or closed."""
        f = self.frames
        if not await f.fill(4):
            if f.buf:  # a few bytes then close: let the DataNode judge them
                await self._splice(f.take(len(f.buf)))
            return None
        if int.from_bytes(f.buf[:4], "big") == SASL_TRANSFER_MAGIC:
            self.stats.passthrough["sasl"] += 1
            await self._splice(f.take(len(f.buf)))
            return None
        if int.from_bytes(f.buf[:2], "big") != DATA_TRANSFER_VERSION:
            self.stats.passthrough["unparseable"] += 1
            await self._splice(f.take(len(f.buf)))
            return None
        try:
            end = await f.varint_frame(3)
        except ProtocolError:
            self.stats.passthrough["unparseable"] += 1
            await self._splice(f.take(len(f.buf)))
            return None
        if end is None:
            await self._splice(f.take(len(f.buf)))
            return None
        op = f.buf[2]
        raw = f.take(end)
        body_start = 3 + _varint_len(raw, 3)
        return _Request(raw, op, raw[body_start:])

    async def _read_status(self) -> bytes | None:
        """After a read: the client's ClientReadStatusProto frame, or None if it sent none.

        A client that abandoned the read may close, or go straight to its next request (a
        request starts with the version's 0x00; a status with its non-zero length).
        """
        f = self.frames
        if not await f.fill(1):
            raise ClientClosed
        if f.buf[0] == 0x00:
            return None
        end = await f.varint_frame(0)
        if end is None:
            raise ClientClosed
        return f.take(end)

    # ---- READ_BLOCK -----------------------------------------------------------------------------

    async def _read_block(self, req: _Request, msg: dt.OpReadBlockProto) -> bool:
        """Handle one READ_BLOCK; False when the connection is finished."""
        b = msg.header.baseHeader.block
        key = BlockKey(b.poolId, b.blockId, b.generationStamp, b.numBytes)
        offset, length = msg.offset, msg.len
        t0 = time.monotonic()
        valid_range = 0 <= offset and 0 <= length and offset + length <= key.num_bytes
        if valid_range and length > 0:
            covered = await self._covered(key, msg)
            if not covered and await self._wait_inflight(key):
                covered = await self._covered(key, msg)
            if covered:
                if self.engine._token_needed(msg) and not await self.engine.token_accepted(
                        key, msg, self.dst):
                    # Let the DataNode answer this client itself (it will refuse a bad token).
                    self.stats.passthrough["token_required"] += 1
                    return await self._relay(req, msg, key, t0, cache=False)
                if await self._serve(key, msg, t0):
                    await self._read_status()
                    return True
                # evicted or found corrupt between the check and the read, before any byte
                # was sent: relay instead
        return await self._relay(req, msg, key, t0, cache=valid_range)

    async def _covered(self, key: BlockKey, msg: dt.OpReadBlockProto) -> bool:
        # An in-memory index lookup: cheaper inline than a hop to the executor.
        return self.engine.cache.covers(key, msg.offset, msg.len)

    async def _wait_inflight(self, key: BlockKey) -> bool:
        event = self.engine._inflight.get(key)
        if event is None:
            return False
        self.stats.single_flight_waits += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), SINGLE_FLIGHT_WAIT_S)
        return True

    async def _serve(self, key: BlockKey, msg: dt.OpReadBlockProto, t0: float) -> bool:
        """Answer from the cache exactly as a DataNode would (§3.1-§3.6).

        The range is read from the cache a piece (SERVE_PIECE_BYTES) at a time, each piece
        verified as it is read, so the first byte leaves early and memory stays bounded. Returns
        False if the first piece is gone (nothing was sent); raises ConnectionAbortedError if a
        later piece is (the client retries, as after a DataNode failure).
        """
        engine = self.engine
        # The first piece is one packet, read inline (tens of microseconds): the first byte
        # leaves without waiting for a thread hop or a megabyte of copying.
        first = engine.cache.get_range(key, msg.offset, min(msg.len, FIRST_PIECE_BYTES))
        if first is None:
            return False
        if msg.sendChecksums:
            spec = first.spec
        else:
            # The DataNode reads no metadata: NULL checksums, 512-byte alignment (§3.6).
            spec = ChecksumSpec(ChecksumType.NULL, 512)
        unit = spec.bytes_per_checksum
        start = msg.offset - msg.offset % unit
        end = min(key.num_bytes, -(-(msg.offset + msg.len) // unit) * unit)
        packet = read_packet_data_size(unit)
        piece_bytes = max(packet, SERVE_PIECE_BYTES // packet * packet)
        w = self.client
        w.write(encode_read_response(spec, start))
        seqno, pos = 0, start
        cached: CachedRange | None = first
        while pos < end:
            n = min(piece_bytes if pos > start else packet, end - pos)
            if cached is None:
                cached = await engine._run_cache(engine.cache.get_range, key, pos, n)
                if cached is None:
                    raise ConnectionAbortedError(f"{key} left the cache mid-reply")
            data = memoryview(cached.data)[pos - cached.offset : pos - cached.offset + n]
            sums = memoryview(cached.sums)
            if spec.size:  # pos is chunk-aligned in the cached range when checksums are sent
                s0 = (pos - cached.offset) // unit * spec.size
                sums = sums[s0 : s0 + spec.checksum_len(len(data))]
            for p0 in range(0, len(data), packet):
                chunk = data[p0 : p0 + packet]
                psums = sums[p0 // unit * spec.size : (p0 // unit) * spec.size
                             + spec.checksum_len(len(chunk))] if spec.size else b""
                w.write(encode_packet(pos + p0, seqno, chunk, psums))
                seqno += 1
            if pos == start:
                self.stats.observe_ttfb(True, time.monotonic() - t0)
            pos += len(data)
            cached = None
            await w.drain()
        w.write(encode_packet(end, seqno, b"", b"", last=True))
        await w.drain()
        self.stats.hits += 1
        self.stats.bytes_from_cache += end - start
        return True

    # ---- relay (miss) ---------------------------------------------------------------------------

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.up_w is None or self.up_w.is_closing() or (self.up_r and self.up_r.at_eof()):
            self.up_r, self.up_w = await asyncio.wait_for(
                asyncio.open_connection(*self.dst, limit=RECV_BYTES), self.engine.upstream_timeout_s)
        assert self.up_r is not None and self.up_w is not None
        return self.up_r, self.up_w

    async def _relay(self, req: _Request, msg: dt.OpReadBlockProto, key: BlockKey, t0: float,
                     cache: bool) -> bool:
        """Relay one READ_BLOCK and its reply byte for byte, keeping verified segments."""
        engine = self.engine
        owner = cache and key not in engine._inflight
        event = asyncio.Event()
        if owner:
            engine._inflight[key] = event
        self.stats.misses += 1
        engine.active_relays += 1
        try:
            for attempt in (1, 2):
                up_r, up_w = await self._upstream()
                up_w.write(req.raw)
                await up_w.drain()
                first = await asyncio.wait_for(up_r.read(RECV_BYTES), engine.upstream_timeout_s)
                if first:
                    break
                # A reused upstream the DataNode had timed out: nothing was relayed, retry once.
                up_w.close()
                self.up_w = None
                if attempt == 2:
                    self.stats.upstream_errors += 1
                    return False
            parser = StreamParser(Direction.DATANODE, expect=[(Op.READ_BLOCK, msg)])
            collector = _SegmentCollector(engine, key) if cache else None
            chunk: bytes = first
            sent_any = False
            while True:
                self.client.write(chunk)
                if not sent_any:
                    sent_any = True
                    self.stats.observe_ttfb(False, time.monotonic() - t0)
                self.stats.bytes_from_upstream += len(chunk)
                events = parser.feed(chunk)
                if collector is not None:
                    await collector.take(events)
                done = False
                for ev in events:
                    if isinstance(ev, Response) and ev.message.status != dt.SUCCESS:
                        collector = None
                    if isinstance(ev, End):
                        done = True
                await self.client.drain()
                if done:
                    break
                chunk = await asyncio.wait_for(up_r.read(RECV_BYTES), engine.upstream_timeout_s)
                if not chunk:
                    # The DataNode closed: after an error reply that is the protocol; else the
                    # client sees a cut stream and retries, as it would have without us.
                    return False
            # a whole SUCCESS reply, whatever its checksums
            fill = collector is not None and collector.complete
            if fill and owner and engine.fill_edges:
                # Segments the client's range only partly covered were not kept; fetch them
                # whole in the background so the same read hits next time. The fill inherits
                # the single-flight marker: concurrent readers of the block keep waiting.
                missing = engine.cache.missing_segments(key, msg.offset, msg.len)
                if missing:
                    owner = False
                    engine.start_fill(key, msg, self.dst, missing, event)
            # The DataNode expects the client's status; the client may also abandon the read.
            status = await self._read_status()
            if status is not None:
                up_w.write(status)
                await up_w.drain()
            return True
        except (OSError, TimeoutError, ProtocolError) as exc:
            self.stats.upstream_errors += 1
            log.info("relay of %s from %s:%d failed: %s", key, *self.dst, exc)
            return False
        finally:
            engine.active_relays -= 1
            if owner:
                engine._inflight.pop(key, None)
                event.set()

    async def _splice(self, head: bytes) -> None:
        """Hand the rest of the connection to the DataNode, byte for byte, both ways."""
        up_r, up_w = await self._upstream()
        if head:
            up_w.write(head)
        if self.frames.buf:
            up_w.write(self.frames.take(len(self.frames.buf)))
        await up_w.drain()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(RECV_BYTES):
                    dst.write(chunk)
                    await dst.drain()
            finally:
                with contextlib.suppress(Exception):
                    if dst.can_write_eof():
                        dst.write_eof()

        await asyncio.gather(pump(self.frames.reader, up_w), pump(up_r, self.client),
                             return_exceptions=True)


class _SegmentCollector:
    """Gathers relayed packets into whole cache segments and stores each one that verifies."""

    def __init__(self, engine: BlockEngine, key: BlockKey) -> None:
        self.engine = engine
        self.key = key
        self.assembler: SegmentAssembler | None = None  # None: nothing (more) to keep
        self.pending_sums: memoryview | None = None
        self.complete = False  # the reply ended normally (End seen)

    async def take(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, Response):
                info = ev.message.readOpChecksumInfo
                spec = ChecksumSpec(ChecksumType(info.checksum.type),
                                    info.checksum.bytesPerChecksum)
                seg = self.engine.cache.segment_bytes
                # NULL checksums leave nothing verifiable to keep
                if spec.type is not ChecksumType.NULL and seg % spec.bytes_per_checksum == 0:
                    self.assembler = SegmentAssembler(self.key, spec, seg)
            elif isinstance(ev, End):
                self.complete = True
            elif isinstance(ev, Checksums):
                self.pending_sums = ev.data
            elif isinstance(ev, Data) and self.assembler is not None and len(ev.data):
                try:
                    segments = self.assembler.add(ev.offset_in_block, ev.data,
                                                  self.pending_sums or b"")
                except ValueError:
                    self.assembler = None  # a gap: stop collecting rather than guess
                    continue
                for index, data, sums in segments:
                    if not await self._store(self.assembler.spec, index, data, sums):
                        self.assembler = None  # keep nothing more of this reply
                        break

    async def _store(self, spec: ChecksumSpec, index: int, data: bytes, sums: bytes) -> bool:
        """Store one segment; False if the cache refused it as unverifiable or wrong."""
        try:
            stored = await self.engine._run_cache(self.engine.cache.put_segment, self.key,
                                                  spec, index, data, sums)
        except (ChecksumError, BlockCacheError) as exc:
            log.warning("not caching %s segment %d: %s", self.key, index, exc)
            return False
        if stored:
            self.engine.stats.segments_cached += 1
        return True


def _is_local(address: str) -> bool:
    """Whether `address` is one of this namespace's own (a loopback or bound address)."""
    if address.startswith("127.") or address == "0.0.0.0":
        return True
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False


def _varint_len(raw: bytes, pos: int) -> int:
    n = 0
    while raw[pos + n] & 0x80:
        n += 1
    return n + 1
