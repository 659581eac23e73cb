"""torswitch.engine against a scripted DataNode on loopback: exact bytes on the wire.

These check the engine's framing, hit/miss/relay paths, single flight and pass-through with a
peer whose every byte is known. The same scenarios run against real Hadoop DataNodes in
integration/test_engine.py; this file never replaces that.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator

from torswitch import checksum
from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.api.hadoop import hdfs_pb2 as hdfs
from torswitch.blockcache import BlockCache, BlockKey
from torswitch.checksum import ChecksumSpec, ChecksumType
from torswitch.datatransfer import (
    Data,
    Direction,
    End,
    Op,
    ProtocolError,
    Response,
    StreamParser,
    encode_client_read_status,
    encode_read_reply,
    encode_request,
    read_block_request,
)
from torswitch.engine import BlockEngine

POOL = "BP-test-198.18.2.10-1"
BLOCK_LEN = 300_000
SPEC = ChecksumSpec(ChecksumType.CRC32C, 512)


def block_data(block_id: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < BLOCK_LEN:
        out += checksum.crc32c(b"%d-%d" % (block_id, i)).to_bytes(4, "big") * 16
        i += 1
    return bytes(out[:BLOCK_LEN])


class ScriptedDataNode:
    """Answers READ_BLOCK as a DataNode would, for blocks 1..9 of POOL; counts reads."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int, int]] = []
        self.other_bytes = bytearray()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.delay = 0.0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        parser = StreamParser(Direction.CLIENT)
        try:
            while chunk := await r.read(65536):
                for ev in parser.feed(chunk):
                    if getattr(ev, "op", None) == Op.READ_BLOCK and hasattr(ev, "message"):
                        msg = ev.message
                        b = msg.header.baseHeader.block
                        self.reads.append((b.blockId, msg.offset, msg.len))
                        if self.delay:
                            await asyncio.sleep(self.delay)
                        if b.numBytes != BLOCK_LEN or msg.offset + msg.len > BLOCK_LEN:
                            resp = dt.BlockOpResponseProto(status=dt.ERROR, message="bad range")
                            body = resp.SerializeToString()
                            w.write(bytes([len(body)]) + body)
                            await w.drain()
                            w.close()
                            return
                        data = block_data(b.blockId)
                        start = msg.offset - msg.offset % 512
                        end = min(BLOCK_LEN, -(-(msg.offset + msg.len) // 512) * 512)
                        spec = SPEC if msg.sendChecksums else ChecksumSpec(ChecksumType.NULL, 512)
                        w.write(encode_read_reply(data[start:end], spec, start,
                                                  sums=None if spec.size else b""))
                        await w.drain()
                    elif getattr(ev, "op", None) not in (None, Op.READ_BLOCK):
                        self.other_bytes += b"op"
        except (ConnectionError, ProtocolError):
            pass  # a client that sent garbage or went away: close, as a DataNode would
        finally:
            w.close()


def request(block_id: int, offset: int, length: int, *, num_bytes: int = BLOCK_LEN,
            checksums: bool = True) -> bytes:
    blk = hdfs.ExtendedBlockProto(poolId=POOL, blockId=block_id, generationStamp=1001,
                                  numBytes=num_bytes)
    return encode_request(Op.READ_BLOCK, read_block_request(blk, offset, length,
                                                            send_checksums=checksums))


async def read_via(port: int, block_id: int, offset: int, length: int, *,
                   checksums: bool = True, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
                   keep: bool = False) -> tuple[bytes, dt.BlockOpResponseProto, bytes, Any]:
    r, w = conn or await asyncio.open_connection("127.0.0.1", port)
    w.write(request(block_id, offset, length, checksums=checksums))
    await w.drain()
    blk = hdfs.ExtendedBlockProto(poolId=POOL, blockId=block_id, generationStamp=1001, numBytes=BLOCK_LEN)
    parser = StreamParser(Direction.DATANODE, expect=[(Op.READ_BLOCK, read_block_request(blk, offset, length))])
    raw = bytearray()
    data = bytearray()
    resp = None
    done = False
    while not done:
        chunk = await asyncio.wait_for(r.read(65536), 10)
        if not chunk:
            break
        raw += chunk
        for ev in parser.feed(chunk):
            if isinstance(ev, Response):
                resp = ev.message
            elif isinstance(ev, Data):
                data += ev.data
            elif isinstance(ev, End):
                done = True
    if done and resp is not None and resp.status == dt.SUCCESS:
        w.write(encode_client_read_status(dt.CHECKSUM_OK if checksums else dt.SUCCESS))
        await w.drain()
    if not keep:
        w.close()
    assert resp is not None
    return bytes(data), resp, bytes(raw), (r, w)


from typing import Any

import pytest


@contextlib.asynccontextmanager
async def setup(tmp: pathlib.Path, **kw: Any) -> AsyncIterator[tuple[ScriptedDataNode, BlockEngine]]:
    dn = ScriptedDataNode()
    await dn.start()
    cache = BlockCache(tmp / "cache", capacity_bytes=64 << 20)
    engine = BlockEngine(cache, host="127.0.0.1", port=0,
                         destination=lambda sock: ("127.0.0.1", dn.port), **kw)
    port = await engine.start()
    engine.port = port
    try:
        yield dn, engine
    finally:
        await engine.stop()
        cache.close()
        assert dn.server is not None
        dn.server.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_miss_then_hit_bytes_identical(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            first, _, raw1, _ = await read_via(engine.port, 1, 0, BLOCK_LEN)
            await asyncio.sleep(0.05)
            second, _, raw2, _ = await read_via(engine.port, 1, 0, BLOCK_LEN)
            assert first == second == block_data(1)
            assert raw1 == raw2  # the hit is byte-identical to the DataNode's own reply
            assert len(dn.reads) == 1
            assert engine.stats.hits == 1 and engine.stats.misses == 1
    run(body())


def test_ranges_and_alignment(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            await read_via(engine.port, 2, 0, BLOCK_LEN)
            direct_reads = len(dn.reads)
            for offset, length in [(0, 1), (511, 2), (513, 70_000), (BLOCK_LEN - 10, 10),
                                   (65_536, 65_536), (123_457, 100_001)]:
                got, resp, raw, _ = await read_via(engine.port, 2, offset, length)
                # what a DataNode would send for the same request, byte for byte
                want_data, _, want_raw, _ = await read_via(dn.port, 2, offset, length)
                assert raw == want_raw, (offset, length)
                assert got == want_data
                start = offset - offset % 512
                assert resp.readOpChecksumInfo.chunkOffset == start
                assert got[offset - start: offset - start + length] == block_data(2)[offset:offset + length]
            assert len(dn.reads) == direct_reads + 6  # only the direct comparison reads
    run(body())


def test_send_checksums_false_is_served_like_a_datanode(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            await read_via(engine.port, 3, 0, BLOCK_LEN)
            _, resp, raw, _ = await read_via(engine.port, 3, 1000, 5000, checksums=False)
            _, _, want_raw, _ = await read_via(dn.port, 3, 1000, 5000, checksums=False)
            assert raw == want_raw
            assert resp.readOpChecksumInfo.checksum.type == ChecksumType.NULL
    run(body())


def test_several_ops_on_one_connection(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            conn = None
            for i in range(4):  # miss, hit, miss of another block, hit
                block = 4 if i < 2 else 5
                data, _, _, conn = await read_via(engine.port, block, 0, BLOCK_LEN, conn=conn, keep=True)
                assert data == block_data(block)
            assert [b for b, _, _ in dn.reads] == [4, 5]
            conn[1].close()
    run(body())


def test_concurrent_readers_cause_one_upstream_fetch(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            dn.delay = 0.2
            results = await asyncio.gather(*(read_via(engine.port, 6, 0, BLOCK_LEN) for _ in range(8)))
            assert all(r[0] == block_data(6) for r in results)
            assert len(dn.reads) == 1
            assert engine.stats.single_flight_waits == 7
    run(body())


def test_other_ops_and_garbage_are_spliced(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            # BLOCK_CHECKSUM: passed through to the DataNode
            blk = hdfs.ExtendedBlockProto(poolId=POOL, blockId=7, generationStamp=1, numBytes=BLOCK_LEN)
            op = dt.OpBlockChecksumProto()
            op.header.block.CopyFrom(blk)
            op.header.token.SetInParent()
            op.header.token.identifier = b""
            op.header.token.password = b""
            op.header.token.kind = ""
            op.header.token.service = ""
            _, w = await asyncio.open_connection("127.0.0.1", engine.port)
            w.write(encode_request(Op.BLOCK_CHECKSUM, op))
            await w.drain()
            await asyncio.sleep(0.2)
            assert engine.stats.passthrough["other_op"] == 1
            assert dn.other_bytes
            w.close()
            # SASL magic: spliced, and the DataNode sees exactly those bytes
            _, w = await asyncio.open_connection("127.0.0.1", engine.port)
            w.write(b"\xde\xad\xbe\xef" + b"\x00" * 8)
            await w.drain()
            await asyncio.sleep(0.2)
            assert engine.stats.passthrough["sasl"] == 1
            w.close()
            # random bytes with a wrong version: spliced, not parsed
            _, w = await asyncio.open_connection("127.0.0.1", engine.port)
            w.write(b"\x01\x02garbage\r\n")
            await w.drain()
            await asyncio.sleep(0.2)
            assert engine.stats.passthrough["unparseable"] == 1
            w.close()
    run(body())


def test_wrong_length_or_genstamp_is_never_a_hit(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            await read_via(engine.port, 8, 0, BLOCK_LEN)
            r, w = await asyncio.open_connection("127.0.0.1", engine.port)
            w.write(request(8, 0, 100, num_bytes=BLOCK_LEN + 100))  # an appended block
            await w.drain()
            reply = await asyncio.wait_for(r.read(65536), 5)
            assert reply  # the DataNode's own answer (an error for this fake length)
            assert len(dn.reads) == 2
            w.close()
    run(body())


def test_truncated_request_then_close(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (_, engine):
            raw = request(9, 0, 100)
            for cut in (1, 3, 5, len(raw) - 1):
                _, w = await asyncio.open_connection("127.0.0.1", engine.port)
                w.write(raw[:cut])
                await w.drain()
                w.close()
            await asyncio.sleep(0.2)
            # the engine is still serving
            data, _, _, _ = await read_via(engine.port, 9, 0, 100)
            assert data[:100] == block_data(9)[:100]
    run(body())


def test_unredirected_and_self_addressed_connections_are_closed(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        dn = ScriptedDataNode()
        await dn.start()
        cache = BlockCache(tmp_path / "cache", capacity_bytes=8 << 20)
        holder: dict[str, int] = {}

        def dest(sock: Any) -> tuple[str, int]:
            if holder.get("mode") == "self":
                return ("127.0.0.1", holder["port"])
            raise FileNotFoundError(2, "no original destination")

        engine = BlockEngine(cache, host="127.0.0.1", port=0, destination=dest)
        holder["port"] = await engine.start()
        for mode in ("none", "self"):
            holder["mode"] = mode
            r, w = await asyncio.open_connection("127.0.0.1", holder["port"])
            w.write(request(1, 0, 10))
            await w.drain()
            try:  # closed (a reset, as unread bytes were pending), nothing relayed
                assert await asyncio.wait_for(r.read(100), 5) == b""
            except ConnectionResetError:
                pass
            w.close()
        assert engine.stats.client_errors == 0 and dn.reads == []
        await engine.stop()
        cache.close()
        assert dn.server is not None
        dn.server.close()
    run(body())


def test_hits_served_in_pieces_are_byte_identical(tmp_path: pathlib.Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from torswitch import engine as engine_module

    monkeypatch.setattr(engine_module, "SERVE_PIECE_BYTES", 2 * 65536)  # several pieces

    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            await read_via(engine.port, 1, 0, BLOCK_LEN)
            for offset, length, sums in [(0, BLOCK_LEN, True), (1000, 250_000, True),
                                         (70_000, 200_000, False)]:
                _, _, raw, _ = await read_via(engine.port, 1, offset, length, checksums=sums)
                _, _, want, _ = await read_via(dn.port, 1, offset, length, checksums=sums)
                assert raw == want, (offset, length, sums)
            assert engine.stats.hits == 3
    run(body())


def test_partial_miss_fills_edge_segments_then_hits(tmp_path: pathlib.Path) -> None:
    async def body() -> None:
        async with setup(tmp_path) as (dn, engine):
            # a column-chunk-like read: starts and ends inside 64 KiB segments
            offset, length = 65536 + 512, 150_000
            first, resp, raw1, _ = await read_via(engine.port, 2, offset, length)
            assert resp.status == dt.SUCCESS
            for _ in range(50):  # the background fill of the two edge segments
                if not engine._fills and not engine.inflight:
                    break
                await asyncio.sleep(0.02)
            assert engine.stats.segments_cached == 1  # only segment 2 was whole in the reply
            assert engine.cache.covers(BlockKey(POOL, 2, 1001, BLOCK_LEN), offset, length)
            reads = len(dn.reads)
            # the relay, then the two edge segments (not contiguous: two reads)
            assert dn.reads[1:] == [(2, 65536, 65536), (2, 196608, 65536)]
            second, _, raw2, _ = await read_via(engine.port, 2, offset, length)
            assert raw1 == raw2 and first == second
            assert len(dn.reads) == reads and engine.stats.hits == 1
            assert engine.stats.bytes_filled > 0
            # and with sendChecksums=false (nothing verifiable relayed): filled all the same
            await read_via(engine.port, 3, 1000, 70_000, checksums=False)
            for _ in range(50):
                if not engine._fills:
                    break
                await asyncio.sleep(0.02)
            _, _, raw3, _ = await read_via(engine.port, 3, 1000, 70_000, checksums=False)
            _, _, want3, _ = await read_via(dn.port, 3, 1000, 70_000, checksums=False)
            assert raw3 == want3 and engine.stats.hits == 2
    run(body())
