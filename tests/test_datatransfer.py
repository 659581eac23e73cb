"""torswitch.datatransfer: framing vectors, the stream parser's events and its robustness.

Byte vectors come from shared/docs/hdfs-wire-protocol.md (§1.5, §3.2, §3.4, §3.9). Streams are
built with the module's own serializers and checked against the reference checksums; the
integration tests hold the same serializers byte-identical to a real DataNode.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torswitch import datatransfer as D
from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.api.hadoop import hdfs_pb2 as hdfs
from torswitch.checksum import ChecksumSpec, ChecksumType
from torswitch.oracles import ref_checksum

BLOCK = hdfs.ExtendedBlockProto(
    poolId="BP-1183318230-198.18.2.10-1764130000000", blockId=1073741825,
    generationStamp=1001, numBytes=3000,
)
BLOCK_DATA = bytes((i * 7 + 3) % 251 for i in range(3000))


def read_req(offset: int, length: int) -> dt.OpReadBlockProto:
    return D.read_block_request(BLOCK, offset, length, client_name="DFSClient_test")


def reply_for(offset: int, length: int, packet: int = 1024) -> bytes:
    """What a DataNode sends for READ_BLOCK(offset, length) of BLOCK_DATA (§3.3 alignment)."""
    spec = ChecksumSpec()
    start = spec.align_down(offset)
    end = min(spec.align_up(offset + length), len(BLOCK_DATA))
    return D.encode_read_reply(BLOCK_DATA[start:end], spec, start, packet_data_size=packet)


# Two reads on one connection, as a client with a socket cache makes them.
CLIENT_STREAM = (
    D.encode_request(D.Op.READ_BLOCK, read_req(100, 1000)) + D.encode_client_read_status()
    + D.encode_request(D.Op.READ_BLOCK, read_req(2900, 100)) + D.encode_client_read_status()
)
DATANODE_STREAM = reply_for(100, 1000) + reply_for(2900, 100)


def norm(events: list[D.Event]) -> list[tuple[object, ...]]:
    """Events as comparable tuples (memoryviews as bytes), Opaque runs merged."""
    out = []
    for ev in D.coalesce_opaque(events):
        fields = tuple(getattr(ev, f) for f in type(ev).__slots__)
        out.append((type(ev).__name__,) + tuple(
            bytes(v) if isinstance(v, memoryview) else v for v in fields
        ))
    return out


def parse_datanode(chunks: list[bytes], expect: list[tuple[D.Op, object]] | None = None
                   ) -> list[D.Event]:
    reqs = expect if expect is not None else [
        (D.Op.READ_BLOCK, read_req(100, 1000)), (D.Op.READ_BLOCK, read_req(2900, 100))
    ]
    p = D.StreamParser(D.Direction.DATANODE, expect=reqs)  # type: ignore[arg-type]
    events: list[D.Event] = []
    for c in chunks:
        events += p.feed(c)
    events += p.close()
    return events


def parse_client(chunks: list[bytes]) -> list[D.Event]:
    p = D.StreamParser(D.Direction.CLIENT)
    events: list[D.Event] = []
    for c in chunks:
        events += p.feed(c)
    events += p.close()
    return events


# ---- vectors from the reference ------------------------------------------------------------


def test_packet_header_vector() -> None:
    # §3.2: offset 0, seqno 0, not last, dataLen 65536.
    want = bytes.fromhex("09 0000000000000000 11 0000000000000000 18 00 25 00000100")
    prefix = D.encode_packet_prefix(0, 0, 65536, 512)
    assert prefix[6:] == want
    assert prefix[:6] == (4 + 512 + 65536).to_bytes(4, "big") + (25).to_bytes(2, "big")
    assert dt.PacketHeaderProto(offsetInBlock=0, seqno=0, lastPacketInBlock=False,
                                dataLen=65536).SerializeToString() == want


def test_trailing_empty_packet_vector() -> None:
    # §3.2: the complete empty last packet at block offset 131072, seqno 2.
    want = bytes.fromhex(
        "00000004 0019 09 0000020000000000 11 0200000000000000 18 01 25 00000000"
    )
    assert D.encode_packet(131072, 2, b"", b"", last=True) == want


def test_read_response_vector() -> None:
    # §3.9: SUCCESS, CRC32C, bpc 512, chunkOffset 512.
    want = bytes.fromhex("0E 08 00 22 0A 0A 05 08 02 10 80 04 10 80 04")
    assert D.encode_read_response(ChecksumSpec(ChecksumType.CRC32C, 512), 512) == want


def test_client_read_status_vectors() -> None:
    assert D.encode_client_read_status() == bytes.fromhex("02 08 06")
    assert D.encode_client_read_status(dt.SUCCESS) == bytes.fromhex("02 08 00")


def test_request_framing() -> None:
    # §1.5: version 28, op 0x51, varint length, then the message (field 1 tag 0x0A).
    req = read_req(0, 3000)
    raw = D.encode_request(D.Op.READ_BLOCK, req)
    body = req.SerializeToString()
    assert raw[:3] == b"\x00\x1c\x51"
    assert raw[3:] == D.encode_varint(len(body)) + body
    assert body[0] == 0x0A
    assert not req.header.baseHeader.HasField("traceInfo")  # never originated (§2.1)


def test_varint_lengths() -> None:
    assert D.encode_varint(0) == b"\x00"
    assert D.encode_varint(86) == b"\x56"
    assert D.encode_varint(300) == b"\xac\x02"
    with pytest.raises(ValueError):
        D.encode_varint(-1)


def test_encode_request_rejects_the_wrong_message() -> None:
    with pytest.raises(ValueError, match="not the request message"):
        D.encode_request(D.Op.WRITE_BLOCK, read_req(0, 1))
    with pytest.raises(ValueError, match="lacks"):
        D.encode_request(D.Op.READ_BLOCK, dt.OpReadBlockProto(offset=0))


def test_op_codes_have_hadoops_names() -> None:
    assert D.Op.READ_BLOCK == 81 and D.Op.WRITE_BLOCK == 80 and D.Op.CUSTOM == 127
    assert [op.value for op in D.Op][:11] == list(range(80, 91))
    assert D.Status.CHECKSUM_OK == 6 and D.Status.ERROR_BLOCK_PINNED == 13


@pytest.mark.parametrize(("prefix", "kind"), [
    (b"", D.ConnectionKind.NEED_MORE),
    (b"\xde", D.ConnectionKind.NEED_MORE),
    (b"\xde\xad\xbe", D.ConnectionKind.NEED_MORE),
    (b"\xde\xad\xbe\xef", D.ConnectionKind.SASL),
    (b"\x00", D.ConnectionKind.NEED_MORE),
    (b"\x00\x1c", D.ConnectionKind.NEED_MORE),
    (b"\x00\x1c\x51\x56", D.ConnectionKind.READ_BLOCK),
    (b"\x00\x1c\x50", D.ConnectionKind.OTHER_OP),
    (b"\x00\x1b\x51", D.ConnectionKind.NOT_DTP),
    (b"\xde\xad\x00", D.ConnectionKind.NOT_DTP),
    (b"GET / HTTP/1.1", D.ConnectionKind.NOT_DTP),
])
def test_detect(prefix: bytes, kind: D.ConnectionKind) -> None:
    assert D.detect(prefix) is kind


def test_read_packet_data_size_rule() -> None:
    assert D.read_packet_data_size(512) == 65536
    assert D.read_packet_data_size(512, 131072) == 131072
    assert D.read_packet_data_size(512, 4096, wrapped=True) == 4096
    assert D.read_packet_data_size(1000, 4096, wrapped=True) == 5000


# ---- parsing whole streams ---------------------------------------------------------------


def test_read_reply_events() -> None:
    events = parse_datanode([DATANODE_STREAM])
    kinds = [type(e).__name__ for e in events]
    # Read 1: [0, 1536) in packets of 1024 and 512, then the empty packet; read 2: [2560, 3000).
    assert kinds == (
        ["Response"] + ["PacketHeader", "Checksums", "Data"] * 3 + ["End"]
        + ["Response"] + ["PacketHeader", "Checksums", "Data"] * 2 + ["End"]
    )
    resp = events[0]
    assert isinstance(resp, D.Response)
    assert resp.message.readOpChecksumInfo.chunkOffset == 0  # type: ignore[attr-defined]
    data = [e for e in events if isinstance(e, D.Data)]
    sums = [e for e in events if isinstance(e, D.Checksums)]
    assert bytes(data[0].data) + bytes(data[1].data) == BLOCK_DATA[:1536]
    assert [d.offset_in_block for d in data] == [0, 1024, 1536, 2560, 3000]
    for d, s in zip(data, sums, strict=True):
        assert bytes(s.data) == ref_checksum.chunk_sums(2, 512, bytes(d.data))
    headers = [e for e in events if isinstance(e, D.PacketHeader)]
    assert [(h.seqno, h.last) for h in headers] == [
        (0, False), (1, False), (2, True), (0, False), (1, True)
    ]
    assert bytes(data[3].data) == BLOCK_DATA[2560:3000]  # short final chunk at block end


def test_client_stream_events() -> None:
    events = parse_client([CLIENT_STREAM])
    assert [type(e).__name__ for e in events] == ["Request", "ReadStatus"] * 2
    req = events[0]
    assert isinstance(req, D.Request) and req.op is D.Op.READ_BLOCK
    assert req.message == read_req(100, 1000)
    status = events[1]
    assert isinstance(status, D.ReadStatus)
    assert status.message.status == dt.CHECKSUM_OK  # type: ignore[attr-defined]


def test_client_may_skip_the_read_status() -> None:
    # A client that abandons a read sends nothing more and may still send a new request.
    stream = (D.encode_request(D.Op.READ_BLOCK, read_req(0, 10))
              + D.encode_request(D.Op.READ_BLOCK, read_req(10, 10)))
    assert [type(e).__name__ for e in parse_client([stream])] == ["Request", "Request"]


def test_connection_parser_matches_replies_to_requests() -> None:
    conn = D.ConnectionParser()
    conn.feed_client(D.encode_request(D.Op.BLOCK_CHECKSUM, dt.OpBlockChecksumProto(
        header=read_req(0, 1).header.baseHeader)))
    conn.feed_client(D.encode_request(D.Op.READ_BLOCK, read_req(100, 1000)))
    cks = dt.BlockOpResponseProto(
        status=dt.SUCCESS,
        checksumResponse=dt.OpBlockChecksumResponseProto(
            bytesPerCrc=512, crcPerBlock=6, blockChecksum=b"\x01" * 16
        ),
    )
    events = conn.feed_datanode(D.encode_delimited(cks) + reply_for(100, 1000))
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["Response", "End", "Response"] and kinds[-1] == "End"
    assert isinstance(events[0], D.Response) and events[0].op is D.Op.BLOCK_CHECKSUM


def test_sasl_connection_is_opaque() -> None:
    stream = b"\xde\xad\xbe\xef" + b"\x05\x08\x00\x12\x01x" + bytes(range(200))
    events = parse_client([stream[:3], stream[3:50], stream[50:]])
    assert norm(events) == [("SaslHandshake",), ("Opaque", stream[4:])]
    conn = D.ConnectionParser()
    conn.feed_client(stream)
    assert norm(conn.feed_datanode(b"\x00\x01\x02")) == [("Opaque", b"\x00\x01\x02")]


def test_unknown_op_is_passed_through() -> None:
    stream = b"\x00\x1c\x5b" + b"\x03abc" + b"more"
    events = parse_client([stream])
    assert norm(events) == [("Request", 0x5B, None), ("Opaque", b"\x03abcmore")]


def test_error_response_ends_the_connection() -> None:
    err = D.encode_read_response(ChecksumSpec(), 0, status=dt.ERROR, message="no replica")
    p = D.StreamParser(D.Direction.DATANODE, expect=[D.Op.READ_BLOCK])
    events = p.feed(err)
    assert [type(e).__name__ for e in events] == ["Response", "End"]
    assert events[0].message.message == "no replica"  # type: ignore[union-attr]
    assert p.at_boundary
    with pytest.raises(D.ProtocolError, match="after a failed reply"):
        p.feed(b"\x00")


def test_replace_block_keepalives() -> None:
    prog = D.encode_delimited(dt.BlockOpResponseProto(status=dt.IN_PROGRESS))
    done = D.encode_delimited(dt.BlockOpResponseProto(status=dt.SUCCESS))
    p = D.StreamParser(D.Direction.DATANODE, expect=[D.Op.REPLACE_BLOCK])
    kinds = [type(e).__name__ for e in p.feed(prog + prog + done)]
    assert kinds == ["Response", "Response", "Response", "End"]


def test_write_stream_packets_and_heartbeats() -> None:
    spec = ChecksumSpec()
    write = dt.OpWriteBlockProto(
        header=read_req(0, 1).header, stage=dt.OpWriteBlockProto.PIPELINE_SETUP_CREATE,
        pipelineSize=1, minBytesRcvd=0, maxBytesRcvd=0, latestGenerationStamp=1001,
        requestedChecksum=dt.ChecksumProto(type=hdfs.CHECKSUM_CRC32C, bytesPerChecksum=512),
    )
    data = BLOCK_DATA[:700]
    stream = (
        D.encode_request(D.Op.WRITE_BLOCK, write)
        + D.encode_packet(0, -1, b"")  # heartbeat: seqno -1, not last
        + D.encode_packet(0, 0, data, spec.compute(data))
        + D.encode_packet(700, 1, b"", last=True)
    )
    events = parse_client([stream])
    assert [type(e).__name__ for e in events] == (
        ["Request"] + ["PacketHeader", "Checksums", "Data"] * 3 + ["End"]
    )
    conn = D.ConnectionParser()
    conn.feed_client(stream)
    ack = D.encode_delimited(dt.PipelineAckProto(seqno=0, reply=[dt.SUCCESS]))
    got = conn.feed_datanode(D.encode_delimited(dt.BlockOpResponseProto(status=dt.SUCCESS)) + ack)
    assert norm(got)[1:] == [("Opaque", ack)]


def test_data_is_zero_copy_when_a_packet_arrives_whole() -> None:
    reply = reply_for(0, 3000, packet=1024)
    p = D.StreamParser(D.Direction.DATANODE, expect=[D.Op.READ_BLOCK])
    events = p.feed(reply)
    data = next(e for e in events if isinstance(e, D.Data))
    assert data.data.obj is reply and data.data.readonly


def test_parser_never_buffers_more_than_a_packet() -> None:
    spec = ChecksumSpec()
    block = bytes(range(256)) * 4096  # 1 MiB
    reply = D.encode_read_reply(block, spec, 0)  # 64 KiB packets
    p = D.StreamParser(D.Direction.DATANODE, expect=[D.Op.READ_BLOCK])
    most = 0
    got = bytearray()
    for i in range(0, len(reply), 1000):
        for ev in p.feed(reply[i : i + 1000]):
            if isinstance(ev, D.Data):
                assert len(ev.data) <= 65536
                got += ev.data
        most = max(most, p.buffered_bytes)
    assert bytes(got) == block
    assert most <= 65536 + 512


# ---- sequencing and framing errors -----------------------------------------------------------


def _bad(stream: bytes, match: str, expect: list[D.Op] | None = None) -> None:
    p = D.StreamParser(D.Direction.DATANODE, expect=expect or [D.Op.READ_BLOCK])
    with pytest.raises(D.ProtocolError, match=match):
        p.feed(stream)
        p.close()
    with pytest.raises(D.ProtocolError):
        p.feed(b"")  # a failed parser stays failed


RESP = D.encode_read_response(ChecksumSpec(), 0)
DATA = BLOCK_DATA[:512]
SUMS = ChecksumSpec().compute(DATA)


@pytest.mark.parametrize(("stream", "match"), [
    (RESP + D.encode_packet(0, 1, DATA, SUMS), "seqno 1, expected 0"),
    (RESP + D.encode_packet(512, 0, DATA, SUMS), "offset 512, expected 0"),
    (RESP + D.encode_packet(0, 0, DATA, SUMS[:0]), "0 checksum bytes for 512"),
    (RESP + D.encode_packet(0, 0, DATA, SUMS, last=True), "lastPacketInBlock=True"),
    (RESP + D.encode_packet(0, 0, b"", b""), "lastPacketInBlock=False with dataLen 0"),
    (RESP + b"\x00\x00\x00\x03\x00\x19", "packet length 3"),
    (RESP + b"\x00\x00\x00\x04\x00\x00", "header length 0"),
    (RESP + b"\x7f\x00\x00\x00\x00\x19", "exceeds"),
    (RESP + b"\x00\x00\x00\x04\x00\x03\x08\x01\x10", "packet header"),
    (RESP + D.encode_packet(0, 0, DATA, SUMS)[:-100], "mid-message"),
    (D.encode_delimited(dt.BlockOpResponseProto(status=dt.SUCCESS)), "without readOpChecksumInfo"),
    (b"\x02\x08\x63", "lacks required"),
    (b"\x80\x80\x80\x80\x80\x01", "longer than 5 bytes"),
    (b"\xff\xff\xff\x7f", "exceeds"),
    (b"\x03\xff\xff\xff", "undecodable"),
])
def test_datanode_stream_errors(stream: bytes, match: str) -> None:
    _bad(stream, match)


def test_chunk_offset_must_align_the_requested_offset() -> None:
    p = D.StreamParser(D.Direction.DATANODE, expect=[(D.Op.READ_BLOCK, read_req(1100, 10))])
    with pytest.raises(D.ProtocolError, match="chunkOffset 512"):
        p.feed(D.encode_read_response(ChecksumSpec(), 512))


def test_datanode_may_not_speak_first() -> None:
    p = D.StreamParser(D.Direction.DATANODE)
    assert p.feed(b"") == []
    with pytest.raises(D.ProtocolError, match="before any request"):
        p.feed(b"\x0e")


@pytest.mark.parametrize(("stream", "match"), [
    (b"\x00\x1b\x51", "version 27"),
    (b"\xde\xad\x00\x00", "0xdead"),
    (b"\x00\x1c\x51\x02\x08\x01", "lacks required"),
    (D.encode_request(D.Op.READ_BLOCK, read_req(0, 1)) + b"\x02\x08", "mid-message"),
])
def test_client_stream_errors(stream: bytes, match: str) -> None:
    p = D.StreamParser(D.Direction.CLIENT)
    with pytest.raises(D.ProtocolError, match=match):
        p.feed(stream)
        p.close()


def test_clean_close_points() -> None:
    assert parse_client([b""]) == []
    p = D.StreamParser(D.Direction.DATANODE, expect=[D.Op.READ_BLOCK])
    p.feed(reply_for(0, 10))
    assert p.at_boundary and p.close() == []


# ---- splitting and robustness (hypothesis) ---------------------------------------------------


def test_every_split_point_gives_the_same_events() -> None:
    parsers: list[tuple[bytes, Callable[[list[bytes]], list[D.Event]]]] = [
        (DATANODE_STREAM, parse_datanode), (CLIENT_STREAM, parse_client)
    ]
    for stream, parse in parsers:
        whole = norm(parse([stream]))
        for i in range(len(stream) + 1):
            assert norm(parse([stream[:i], stream[i:]])) == whole, f"split at {i}"
    one_by_one = [DATANODE_STREAM[i : i + 1] for i in range(len(DATANODE_STREAM))]
    assert norm(parse_datanode(one_by_one)) == norm(parse_datanode([DATANODE_STREAM]))


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(0, len(DATANODE_STREAM)), max_size=12))
def test_any_splitting_gives_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(DATANODE_STREAM)]
    chunks = [DATANODE_STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert norm(parse_datanode(chunks)) == norm(parse_datanode([DATANODE_STREAM]))


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: float = 5.0) -> Iterator[None]:
    """Fail (instead of hanging) if the body runs longer than `seconds`."""

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"parser ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def only_protocol_errors(fn: Callable[[], object]) -> None:
    """Run fn; a ProtocolError is fine, any other exception (or a hang) fails the test."""
    with no_hang():
        try:
            fn()
        except D.ProtocolError:
            pass


ROBUST = settings(max_examples=300, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])


@ROBUST
@given(st.data())
def test_mutated_streams_only_raise_protocol_errors(data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["datanode", "client"]))
    stream = bytearray(DATANODE_STREAM if which == "datanode" else CLIENT_STREAM)
    for _ in range(data.draw(st.integers(1, 4))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(stream)))
    chunks = [bytes(stream[:cut]), bytes(stream[cut:])]
    only_protocol_errors(
        lambda: parse_datanode(chunks) if which == "datanode" else parse_client(chunks)
    )


@ROBUST
@given(n=st.integers(0, len(DATANODE_STREAM)))
def test_truncated_streams_only_raise_protocol_errors(n: int) -> None:
    only_protocol_errors(lambda: parse_datanode([DATANODE_STREAM[:n]]))
    only_protocol_errors(lambda: parse_client([CLIENT_STREAM[: n % (len(CLIENT_STREAM) + 1)]]))


@ROBUST
@given(junk=st.binary(max_size=3000), prefix=st.sampled_from([b"", b"\x00\x1c", RESP]))
def test_random_bytes_only_raise_protocol_errors(junk: bytes, prefix: bytes) -> None:
    only_protocol_errors(lambda: parse_client([prefix + junk]))
    only_protocol_errors(lambda: parse_datanode([prefix + junk]))
    # Also as the reply to every op, so every response type meets garbage.
    for op in D.Op:
        only_protocol_errors(lambda op=op: parse_datanode([junk], expect=[(op, None)]))


# ---- replies recorded from a real DataNode ----------------------------------------------------

DATA_DIR = Path(__file__).parent / "data"


def recorded(name: str) -> bytes:
    lines = (DATA_DIR / name).read_text().splitlines()
    return bytes.fromhex("".join(ln for ln in lines if not ln.startswith("#")))


@pytest.mark.parametrize(("name", "offset", "length", "block_len"), [
    ("dtp_read_reply_mid_block.hex", 1000, 5000, 8388608),
    ("dtp_read_reply_block_tail.hex", 2096575, 700, 2097275),
])
def test_recorded_datanode_replies(name: str, offset: int, length: int, block_len: int) -> None:
    reply = recorded(name)
    req = D.read_block_request(
        hdfs.ExtendedBlockProto(poolId="BP-x", blockId=1, generationStamp=1, numBytes=block_len),
        offset, length,
    )
    events = parse_datanode([reply], expect=[(D.Op.READ_BLOCK, req)])
    spec = ChecksumSpec()
    chunk_offset = spec.align_down(offset)
    data = b"".join(bytes(e.data) for e in events if isinstance(e, D.Data))
    # The DataNode widened the range to whole chunks, capped at the block end (§3.3).
    assert len(data) == min(spec.align_up(offset + length), block_len) - chunk_offset
    sums = b"".join(bytes(e.data) for e in events if isinstance(e, D.Checksums))
    assert sums == ref_checksum.chunk_sums(2, 512, data)
    # Our serializers reproduce the DataNode's bytes exactly.
    assert D.encode_read_reply(data, spec, chunk_offset) == reply
    whole = norm(events)
    for i in range(0, len(reply) + 1, 7):
        split = parse_datanode([reply[:i], reply[i:]], expect=[(D.Op.READ_BLOCK, req)])
        assert norm(split) == whole, f"split at {i}"
