"""DataTransferProtocol (DTP) codec: op framing, a resumable stream parser, read serializers.

This is the wire layer between HDFS clients and DataNodes (port 9866), written from
shared/docs/hdfs-wire-protocol.md §1-§4. It does no I/O: callers feed bytes as they arrive
and get events back, or ask for the bytes to send.

    client -> DataNode   00 1C | op | varint len | Op...Proto        (a request, §1.2)
                         [after a read]  varint len | ClientReadStatusProto
    DataNode -> client   varint len | BlockOpResponseProto            (§1.4)
                         [reads] packets: PLEN(4) HLEN(2) header checksums data (§3.2)
                         ... then one empty packet with lastPacketInBlock

One TCP connection may carry several operations in turn (§1.1), so each parser returns to
"expect the next request / reply" after an operation completes.

Events, in the order a parser emits them:

    SaslHandshake   the connection started with 0xDEADBEEF; everything after is Opaque
    Request         an op request (op code + parsed message)
    Response        the DataNode's reply message to an op
    PacketHeader    one packet's header (then always Checksums, then Data, for that packet)
    Checksums       that packet's chunk checksums (big-endian, 4 bytes per chunk, or empty)
    Data            that packet's data bytes
    ReadStatus      the client's ClientReadStatusProto after a read
    End             the reply to an op (or a client's write stream) is complete
    Opaque          bytes this codec passes through without parsing (SASL, write acks, ...)

A parser buffers at most one packet (bounded by MAX_PACKET_SIZE), never a block: a packet
that arrives in one feed() is handed out as zero-copy views of the fed buffer, so the events
are valid as long as the caller does not modify what it fed. Malformed input raises
ProtocolError, and nothing else, after which the parser refuses further input.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

from google.protobuf.message import Message

from torswitch.api.hadoop import Security_pb2 as sec
from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.api.hadoop import hdfs_pb2 as hdfs
from torswitch.checksum import ChecksumSpec, ChecksumType
from torswitch.errors import TorswitchError

Buffer = bytes | bytearray | memoryview

#: DataTransferProtocol version; 28 in every Hadoop 2.x and 3.x release (§1.2).
DATA_TRANSFER_VERSION: Final = 28
#: First 4 bytes of a SASL-protected connection; cannot equal a version + op (§4, §5.2).
SASL_TRANSFER_MAGIC: Final = 0xDEADBEEF
#: Receiver limit on PLEN + HLEN: 16 MiB, hard-coded before 3.4.0 and the default since (§3.5).
MAX_PACKET_SIZE: Final = 16 * 1024 * 1024
#: Upper bound on a varint-delimited message we accept; real requests are a few hundred bytes.
MAX_MESSAGE_SIZE: Final = 1024 * 1024
#: Encoded PacketHeaderProto without syncBlock: fixed-width fields make it always 25 bytes.
PACKET_HEADER_LEN: Final = 25
#: Data bytes per packet a DataNode sends on a plain socket with default settings (§3.5).
DEFAULT_READ_PACKET_DATA: Final = 65536


class ProtocolError(TorswitchError):
    """Bytes that are not valid DataTransferProtocol, or break its sequencing rules."""


class Op(enum.IntEnum):
    """DataTransferProtocol op codes, with Hadoop's names (§1.3)."""

    WRITE_BLOCK = 80
    READ_BLOCK = 81
    READ_METADATA = 82  # reserved: stock DataNodes drop the connection
    REPLACE_BLOCK = 83
    COPY_BLOCK = 84
    BLOCK_CHECKSUM = 85
    TRANSFER_BLOCK = 86
    REQUEST_SHORT_CIRCUIT_FDS = 87
    RELEASE_SHORT_CIRCUIT_FDS = 88
    REQUEST_SHORT_CIRCUIT_SHM = 89
    BLOCK_GROUP_CHECKSUM = 90
    CUSTOM = 127  # extension hook: stock DataNodes do not decode it


#: The request message of each op; READ_METADATA never had one.
REQUEST_MESSAGES: Final[dict[Op, type[Message] | None]] = {
    Op.WRITE_BLOCK: dt.OpWriteBlockProto,
    Op.READ_BLOCK: dt.OpReadBlockProto,
    Op.READ_METADATA: None,
    Op.REPLACE_BLOCK: dt.OpReplaceBlockProto,
    Op.COPY_BLOCK: dt.OpCopyBlockProto,
    Op.BLOCK_CHECKSUM: dt.OpBlockChecksumProto,
    Op.TRANSFER_BLOCK: dt.OpTransferBlockProto,
    Op.REQUEST_SHORT_CIRCUIT_FDS: dt.OpRequestShortCircuitAccessProto,
    Op.RELEASE_SHORT_CIRCUIT_FDS: dt.ReleaseShortCircuitAccessRequestProto,
    Op.REQUEST_SHORT_CIRCUIT_SHM: dt.ShortCircuitShmRequestProto,
    Op.BLOCK_GROUP_CHECKSUM: dt.OpBlockGroupChecksumProto,
    Op.CUSTOM: dt.OpCustomProto,
}

#: The first reply of each op: BlockOpResponseProto except for the two shared-memory ops (§1.4).
RESPONSE_MESSAGES: Final[dict[Op, type[Message]]] = {
    op: dt.BlockOpResponseProto for op in Op
} | {
    Op.RELEASE_SHORT_CIRCUIT_FDS: dt.ReleaseShortCircuitAccessResponseProto,
    Op.REQUEST_SHORT_CIRCUIT_SHM: dt.ShortCircuitShmResponseProto,
}

# Ops whose successful reply is followed by data packets like a read (COPY_BLOCK streams the
# whole block to the balancer with the same BlockSender).
_PACKET_REPLY_OPS: Final = frozenset({Op.READ_BLOCK, Op.COPY_BLOCK})
# Ops after which the rest of the stream is not request/reply framed: pipeline acks, file
# descriptors over a UNIX socket, or ops a stock DataNode does not implement.
_OPAQUE_AFTER_REPLY: Final = frozenset({Op.WRITE_BLOCK, Op.REQUEST_SHORT_CIRCUIT_FDS})
_NO_REPLY_OPS: Final = frozenset({Op.READ_METADATA, Op.CUSTOM})

#: DTP status codes (the proto's Status enum) as Python ints with names.
Status = enum.IntEnum(  # type: ignore[misc]
    "Status", {v.name: v.number for v in dt.Status.DESCRIPTOR.values}
)


class ConnectionKind(enum.Enum):
    """What the first bytes of a client -> DataNode connection say it carries (§4)."""

    NEED_MORE = "need more bytes"
    SASL = "SASL handshake (opaque)"
    READ_BLOCK = "plain DTP READ_BLOCK"
    OTHER_OP = "plain DTP, another op"
    NOT_DTP = "not DataTransferProtocol v28"


def detect(prefix: Buffer) -> ConnectionKind:
    """Classify a connection from the first bytes its connecting side sent.

    Needs at most 4 bytes; returns NEED_MORE while it cannot decide. A middlebox must pass
    SASL and NOT_DTP connections through untouched for their whole lifetime.
    """
    head = bytes(prefix[:4])
    magic = SASL_TRANSFER_MAGIC.to_bytes(4, "big")
    if head and magic.startswith(head):
        return ConnectionKind.SASL if len(head) == 4 else ConnectionKind.NEED_MORE
    version = DATA_TRANSFER_VERSION.to_bytes(2, "big")
    if not version.startswith(head[:2]):
        return ConnectionKind.NOT_DTP
    if len(head) < 3:
        return ConnectionKind.NEED_MORE
    return ConnectionKind.READ_BLOCK if head[2] == Op.READ_BLOCK else ConnectionKind.OTHER_OP


# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaslHandshake:
    """The connection began with the SASL magic; everything after it is Opaque."""


@dataclass(frozen=True, slots=True)
class Request:
    """An op request. `op` is an Op, or the raw int for codes this codec does not know."""

    op: Op | int
    message: Any  # the op's request message (REQUEST_MESSAGES), None for unknown ops


@dataclass(frozen=True, slots=True)
class Response:
    """The DataNode's first reply to `op` (a BlockOpResponseProto for most ops)."""

    op: Op
    message: Any  # RESPONSE_MESSAGES[op]


@dataclass(frozen=True, slots=True)
class PacketHeader:
    """A packet's header (§3.2). `offset_in_block` is the block offset of its first data byte."""

    offset_in_block: int
    seqno: int
    last: bool
    data_len: int
    sync_block: bool = False


@dataclass(frozen=True, slots=True)
class Checksums:
    """The chunk checksums of the packet whose header came just before."""

    data: memoryview


@dataclass(frozen=True, slots=True)
class Data:
    """The data bytes of the packet whose header came just before."""

    offset_in_block: int
    data: memoryview


@dataclass(frozen=True, slots=True)
class ReadStatus:
    """The client's ClientReadStatusProto after a read (CHECKSUM_OK or SUCCESS)."""

    message: Any  # dt.ClientReadStatusProto


@dataclass(frozen=True, slots=True)
class End:
    """The reply to `op` is complete (or, client side, the client's write stream)."""

    op: Op | int


@dataclass(frozen=True, slots=True)
class Opaque:
    """Bytes passed through unparsed (after SASL, write acks, unknown ops)."""

    data: memoryview


Event = (
    SaslHandshake | Request | Response | PacketHeader | Checksums | Data | ReadStatus | End
    | Opaque
)


def coalesce_opaque(events: Iterable[Event]) -> list[Event]:
    """Merge runs of Opaque events, whose boundaries depend on how input was split."""
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, Opaque) and out and isinstance(out[-1], Opaque):
            out[-1] = Opaque(memoryview(bytes(out[-1].data) + bytes(ev.data)))
        elif not (isinstance(ev, Opaque) and len(ev.data) == 0):
            out.append(ev)
    return out


# ---- the stream parser ----------------------------------------------------------------------


class Direction(enum.Enum):
    """Which side of a DataNode connection a parser reads."""

    CLIENT = "client -> DataNode"
    DATANODE = "DataNode -> client"


class _S(enum.Enum):
    """Parser states. Each names what the parser waits for next."""

    CONN_START = enum.auto()  # first 2 bytes of a client connection: version or SASL magic
    SASL_REST = enum.auto()  # last 2 bytes of the magic
    VERSION = enum.auto()  # 2-byte version of a further request
    OP = enum.auto()
    REQ_LEN = enum.auto()
    REQ_BODY = enum.auto()
    AFTER_READ = enum.auto()  # client: read status, or the next request
    STATUS_LEN = enum.auto()
    STATUS_BODY = enum.auto()
    RESP_LEN = enum.auto()
    RESP_BODY = enum.auto()
    PKT_LENS = enum.auto()  # PLEN + HLEN
    PKT_HEADER = enum.auto()
    PKT_SUMS = enum.auto()
    PKT_DATA = enum.auto()
    OPAQUE = enum.auto()
    DEAD = enum.auto()  # after a failed reply: the DataNode closes, nothing may follow
    FAILED = enum.auto()  # after a ProtocolError


# States at which the peer may close its side without truncating anything.
_CLEAN_EOF: Final = frozenset(
    {_S.CONN_START, _S.VERSION, _S.AFTER_READ, _S.RESP_LEN, _S.OPAQUE, _S.DEAD}
)
_LENS = struct.Struct(">ih")
_FAST_HEADER = struct.Struct("<BqBqBBBi")


@dataclass(slots=True)
class _Expected:
    op: Op | int
    request: Message | None


class StreamParser:
    """Resumable parser of one direction of a DataNode connection.

    feed() takes whatever bytes arrived and returns the events they complete; close() says
    the peer closed its side (raising ProtocolError if that cut a message). The DataNode
    direction has to know which op each reply answers: pass them in order to expect(), or
    use ConnectionParser, which does it from the client direction's Request events.
    """

    def __init__(
        self,
        direction: Direction,
        *,
        expect: Iterable[Op | tuple[Op, Message]] = (),
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        self.direction = direction
        self.max_packet_size = max_packet_size
        self._state = _S.CONN_START if direction is Direction.CLIENT else _S.RESP_LEN
        self._acc = bytearray()
        self._mv = memoryview(b"")
        self._pos = 0
        self._n = 0  # length of the message / packet part being read
        self._op: Op | int = 0  # op of the request being read (client) or answered (DataNode)
        self._expected: deque[_Expected] = deque()
        for item in expect:
            if isinstance(item, tuple):
                self.expect(item[0], item[1])
            else:
                self.expect(item)
        # Packet stream state.
        self._spec = ChecksumSpec()
        self._packets_from_datanode = direction is Direction.DATANODE
        self._next_seqno = 0
        self._next_offset = 0
        self._header: PacketHeader | None = None
        self._hlen = 0

    # -- public ---------------------------------------------------------------------------------

    def expect(self, op: Op | int, request: Message | None = None) -> None:
        """DataNode direction: the next unanswered request was `op` (with its message)."""
        self._expected.append(_Expected(op, request))

    @property
    def checksum(self) -> ChecksumSpec:
        """Checksum type and chunk size of the packets being parsed."""
        return self._spec

    @property
    def buffered_bytes(self) -> int:
        """Bytes held back waiting for the rest of a message or packet (at most one packet)."""
        return len(self._acc)

    @property
    def at_boundary(self) -> bool:
        """True when no message or packet is half read (the peer may close here)."""
        return self._state in _CLEAN_EOF and not self._acc

    def feed(self, data: Buffer) -> list[Event]:
        """Parse `data`, the next bytes of the stream; return the events it completes.

        Raises ProtocolError on malformed input; the parser is then unusable.
        """
        if self._state is _S.FAILED:
            raise ProtocolError("parser already failed; open a new one for a new connection")
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        self._mv = mv.toreadonly()
        self._pos = 0
        events: list[Event] = []
        try:
            while self._step(events):
                pass
        except ProtocolError:
            self._state = _S.FAILED
            raise
        finally:
            self._mv = memoryview(b"")
        return events

    def close(self) -> list[Event]:
        """The peer closed its side. Raises ProtocolError if that truncated a message."""
        if self._state is _S.FAILED:
            raise ProtocolError("parser already failed")
        if not self.at_boundary:
            state = self._state.name.lower()
            self._state = _S.FAILED
            raise ProtocolError(f"connection closed mid-message (while reading {state})")
        self._state = _S.DEAD
        return []

    # -- byte access ------------------------------------------------------------------------------

    def _take(self, n: int) -> memoryview | None:
        """Exactly n bytes (a view), or None after stashing a partial piece for later."""
        acc = self._acc
        mv, pos = self._mv, self._pos
        if not acc:
            if len(mv) - pos >= n:
                self._pos = pos + n
                return mv[pos : pos + n]
            acc += mv[pos:]
            self._pos = len(mv)
            return None
        piece = mv[pos : pos + n - len(acc)]
        acc += piece
        self._pos = pos + len(piece)
        if len(acc) < n:
            return None
        self._acc = bytearray()
        return memoryview(acc).toreadonly()

    def _take_varint(self) -> int | None:
        """A protobuf varint message length (at most 5 bytes), or None if incomplete."""
        mv, acc = self._mv, self._acc
        while self._pos < len(mv):
            b = mv[self._pos]
            self._pos += 1
            acc.append(b)
            if b < 0x80:
                value = 0
                for i, byte in enumerate(acc):
                    value |= (byte & 0x7F) << (7 * i)
                acc.clear()
                if value > MAX_MESSAGE_SIZE:
                    raise ProtocolError(f"message length {value} exceeds {MAX_MESSAGE_SIZE}")
                return value
            if len(acc) >= 5:
                raise ProtocolError("message length varint longer than 5 bytes")
        return None

    # -- state machine ------------------------------------------------------------------------

    def _step(self, events: list[Event]) -> bool:
        """Advance by one unit; False when more input is needed."""
        s = self._state
        if s is _S.PKT_LENS:
            return self._packet_lens()
        if s is _S.PKT_HEADER:
            return self._packet_header(events)
        if s is _S.PKT_SUMS:
            raw = self._take(self._n)
            if raw is None:
                return False
            events.append(Checksums(raw))
            self._state = _S.PKT_DATA
            return True
        if s is _S.PKT_DATA:
            return self._packet_data(events)
        if s is _S.OPAQUE:
            if self._pos >= len(self._mv):
                return False
            events.append(Opaque(self._mv[self._pos :]))
            self._pos = len(self._mv)
            return False
        if s is _S.CONN_START or s is _S.VERSION:
            return self._version(events)
        if s is _S.SASL_REST:
            raw = self._take(2)
            if raw is None:
                return False
            if bytes(raw) != b"\xbe\xef":
                raise ProtocolError("bad DTP version 0xdead (and not the SASL magic)")
            events.append(SaslHandshake())
            self._state = _S.OPAQUE
            return True
        if s is _S.OP:
            return self._opcode(events)
        if s is _S.REQ_LEN or s is _S.RESP_LEN or s is _S.STATUS_LEN:
            return self._length(events)
        if s is _S.REQ_BODY:
            return self._request_body(events)
        if s is _S.RESP_BODY:
            return self._response_body(events)
        if s is _S.AFTER_READ:
            if self._pos >= len(self._mv):
                return False
            # A new request starts with the version's high byte 0x00; a status message
            # starts with its (non-zero, since status is required) length.
            self._state = _S.VERSION if self._mv[self._pos] == 0 else _S.STATUS_LEN
            return True
        if s is _S.STATUS_BODY:
            raw = self._take(self._n)
            if raw is None:
                return False
            events.append(ReadStatus(_parse(dt.ClientReadStatusProto, raw, "client read status")))
            self._state = _S.VERSION
            return True
        if s is _S.DEAD:
            if self._pos >= len(self._mv):
                return False
            raise ProtocolError("bytes after a failed reply (the DataNode closes the connection)")
        raise ProtocolError(f"parser in unusable state {s.name}")  # FAILED

    def _version(self, events: list[Event]) -> bool:
        raw = self._take(2)
        if raw is None:
            return False
        if self._state is _S.CONN_START and raw[0] == 0xDE and raw[1] == 0xAD:
            self._state = _S.SASL_REST
            return True
        version = int.from_bytes(raw, "big", signed=True)
        if version != DATA_TRANSFER_VERSION:
            raise ProtocolError(f"DTP version {version}, expected {DATA_TRANSFER_VERSION}")
        self._state = _S.OP
        return True

    def _opcode(self, events: list[Event]) -> bool:
        raw = self._take(1)
        if raw is None:
            return False
        code = raw[0]
        try:
            op: Op | int = Op(code)
        except ValueError:
            op = code
        self._op = op
        if op not in REQUEST_MESSAGES or REQUEST_MESSAGES[op] is None:  # type: ignore[index]
            # Unknown framing: hand the rest over untouched (§1.3, "treat as pass-through").
            events.append(Request(op, None))
            self._state = _S.OPAQUE
            return True
        self._state = _S.REQ_LEN
        return True

    def _length(self, events: list[Event]) -> bool:
        if self._state is _S.RESP_LEN and self._pos < len(self._mv) and not self._acc:
            if not self._expected:
                raise ProtocolError("DataNode sent bytes before any request")
            self._op = self._expected[0].op
            if self._op not in RESPONSE_MESSAGES or self._op in _NO_REPLY_OPS:
                self._expected.popleft()
                self._state = _S.OPAQUE
                return True
        n = self._take_varint()
        if n is None:
            return False
        self._n = n
        self._state = {
            _S.REQ_LEN: _S.REQ_BODY, _S.RESP_LEN: _S.RESP_BODY, _S.STATUS_LEN: _S.STATUS_BODY
        }[self._state]
        return True

    def _request_body(self, events: list[Event]) -> bool:
        raw = self._take(self._n)
        if raw is None:
            return False
        op = self._op
        assert isinstance(op, Op)
        cls = REQUEST_MESSAGES[op]
        assert cls is not None
        msg = _parse(cls, raw, f"{op.name} request")
        events.append(Request(op, msg))
        if op is Op.READ_BLOCK:
            self._state = _S.AFTER_READ
        elif op is Op.WRITE_BLOCK:
            self._start_packets(
                _spec_from_proto(msg.requestedChecksum),
                from_datanode=False,
                first_offset=0,
            )
        elif op in _OPAQUE_AFTER_REPLY:
            self._state = _S.OPAQUE
        else:
            self._state = _S.VERSION
        return True

    def _response_body(self, events: list[Event]) -> bool:
        raw = self._take(self._n)
        if raw is None:
            return False
        exp = self._expected[0]
        op = exp.op
        assert isinstance(op, Op)
        msg = _parse(RESPONSE_MESSAGES[op], raw, f"{op.name} response")
        events.append(Response(op, msg))
        status = msg.status
        if op is Op.REPLACE_BLOCK and status == dt.IN_PROGRESS:
            self._state = _S.RESP_LEN  # keep-alive; the final reply to the same op follows
            return True
        self._expected.popleft()
        if status != dt.SUCCESS:
            events.append(End(op))
            self._state = _S.DEAD if op in _PACKET_REPLY_OPS | _OPAQUE_AFTER_REPLY else _S.RESP_LEN
            return True
        if op in _PACKET_REPLY_OPS:
            self._start_read(msg, exp.request)
        elif op in _OPAQUE_AFTER_REPLY:
            self._state = _S.OPAQUE
        else:
            events.append(End(op))
            self._state = _S.RESP_LEN
        return True

    def _start_read(self, msg: Any, request: Message | None) -> None:
        if not msg.HasField("readOpChecksumInfo"):
            raise ProtocolError("successful read response without readOpChecksumInfo")
        info = msg.readOpChecksumInfo
        spec = _spec_from_proto(info.checksum)
        chunk_offset = info.chunkOffset
        if request is not None and isinstance(request, dt.OpReadBlockProto):
            # The Java client's acceptance rule (§3.3): chunkOffset <= offset < chunkOffset + bpc.
            offset = request.offset
            if not chunk_offset <= offset < chunk_offset + spec.bytes_per_checksum:
                raise ProtocolError(
                    f"chunkOffset {chunk_offset} does not align requested offset {offset} "
                    f"to {spec.bytes_per_checksum}-byte chunks"
                )
        self._start_packets(spec, from_datanode=True, first_offset=chunk_offset)

    def _start_packets(self, spec: ChecksumSpec, *, from_datanode: bool, first_offset: int) -> None:
        self._spec = spec
        self._packets_from_datanode = from_datanode
        self._next_seqno = 0
        self._next_offset = first_offset
        self._state = _S.PKT_LENS

    # -- packets ------------------------------------------------------------------------------

    def _packet_lens(self) -> bool:
        raw = self._take(6)
        if raw is None:
            return False
        plen, hlen = _LENS.unpack(raw)
        if plen < 4:
            raise ProtocolError(f"packet length {plen} < 4")
        if hlen <= 0:
            raise ProtocolError(f"packet header length {hlen}")
        if plen + hlen > self.max_packet_size:
            raise ProtocolError(f"packet of {plen + hlen} bytes exceeds {self.max_packet_size}")
        self._n = plen - 4  # checksums + data
        self._hlen = hlen
        self._state = _S.PKT_HEADER
        return True

    def _packet_header(self, events: list[Event]) -> bool:
        raw = self._take(self._hlen)
        if raw is None:
            return False
        hdr = _decode_packet_header(raw)
        body = self._n
        if hdr.data_len < 0 or hdr.data_len > body:
            raise ProtocolError(f"packet dataLen {hdr.data_len} with {body} payload bytes")
        sums = body - hdr.data_len
        if self._packets_from_datanode:
            self._check_read_packet(hdr, sums)
        events.append(hdr)
        self._header = hdr
        self._n = sums
        self._state = _S.PKT_SUMS
        return True

    def _check_read_packet(self, hdr: PacketHeader, sums: int) -> None:
        """Sequencing rules a reader applies to DataNode packets (§3.3, §3.4)."""
        if hdr.seqno != self._next_seqno:
            raise ProtocolError(f"packet seqno {hdr.seqno}, expected {self._next_seqno}")
        if hdr.offset_in_block != self._next_offset:
            raise ProtocolError(
                f"packet at block offset {hdr.offset_in_block}, expected {self._next_offset}"
            )
        if hdr.last != (hdr.data_len == 0):
            raise ProtocolError(
                f"packet {hdr.seqno}: lastPacketInBlock={hdr.last} with dataLen {hdr.data_len}"
            )
        want = self._spec.checksum_len(hdr.data_len)
        if sums != want:
            raise ProtocolError(
                f"packet {hdr.seqno}: {sums} checksum bytes for {hdr.data_len} data bytes "
                f"({self._spec.type.name}, {self._spec.bytes_per_checksum}-byte chunks: {want})"
            )
        self._next_seqno += 1
        self._next_offset += hdr.data_len

    def _packet_data(self, events: list[Event]) -> bool:
        hdr = self._header
        assert hdr is not None
        raw = self._take(hdr.data_len)
        if raw is None:
            return False
        events.append(Data(hdr.offset_in_block, raw))
        self._header = None
        if not hdr.last:
            self._state = _S.PKT_LENS
            return True
        if self._packets_from_datanode:
            events.append(End(self._op))
            self._state = _S.RESP_LEN
        else:
            events.append(End(Op.WRITE_BLOCK))
            self._state = _S.VERSION
        return True


class ConnectionParser:
    """Both directions of one DataNode connection, with replies matched to requests.

    Feed client bytes to feed_client() and DataNode bytes to feed_datanode(), in the order
    they were seen; each Request from the client tells the DataNode side what comes back.
    """

    def __init__(self, *, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.client = StreamParser(Direction.CLIENT, max_packet_size=max_packet_size)
        self.datanode = StreamParser(Direction.DATANODE, max_packet_size=max_packet_size)

    def feed_client(self, data: Buffer) -> list[Event]:
        """Client -> DataNode bytes. Raises ProtocolError."""
        events = self.client.feed(data)
        for ev in events:
            if isinstance(ev, Request):
                self.datanode.expect(ev.op, ev.message)
            elif isinstance(ev, SaslHandshake):
                self.datanode.expect(-1)  # unknown op: the reply side is opaque too
        return events

    def feed_datanode(self, data: Buffer) -> list[Event]:
        """DataNode -> client bytes. Raises ProtocolError."""
        return self.datanode.feed(data)


def _parse(cls: type[Message], raw: memoryview, what: str) -> Any:
    """Decode one message, insisting on its required fields (upb does not check them)."""
    try:
        msg: Any = cls.FromString(bytes(raw))
    except Exception as exc:  # noqa: BLE001 - the codec raises only ProtocolError, whatever
        # the protobuf runtime throws on junk (DecodeError today).
        raise ProtocolError(f"undecodable {what}: {exc}") from None
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())
        raise ProtocolError(f"{what} lacks required field(s) {missing}")
    return msg


def _spec_from_proto(proto: Any) -> ChecksumSpec:
    kind = proto.type
    bpc = proto.bytesPerChecksum
    if kind not in (0, 1, 2):
        raise ProtocolError(f"unknown checksum type {kind}")
    if not 0 < bpc <= MAX_PACKET_SIZE:
        raise ProtocolError(f"bytesPerChecksum {bpc} out of range")
    return ChecksumSpec(ChecksumType(kind), bpc)


def _decode_packet_header(raw: memoryview) -> PacketHeader:
    # Fast path: the 25-byte layout every DataNode sends (tags 09, 11, 18, 25).
    if len(raw) == PACKET_HEADER_LEN and raw[0] == 0x09 and raw[9] == 0x11:
        _, off, _, seq, t3, last, t4, dlen = _FAST_HEADER.unpack(raw)
        if t3 == 0x18 and t4 == 0x25 and last <= 1:
            return PacketHeader(off, seq, bool(last), dlen)
    msg = _parse(dt.PacketHeaderProto, raw, "packet header")
    return PacketHeader(
        msg.offsetInBlock,
        msg.seqno,
        msg.lastPacketInBlock,
        msg.dataLen,
        msg.syncBlock,
    )


# ---- serializers ----------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_delimited(message: Message) -> bytes:
    """varint length + message bytes (Java's writeDelimitedTo)."""
    body: bytes = message.SerializeToString()
    return encode_varint(len(body)) + body


def encode_request(op: Op, message: Message) -> bytes:
    """A complete request: version 28, op code, varint-delimited message (§1.2).

    Raises ValueError if the message is not the op's request type or lacks required fields.
    """
    cls = REQUEST_MESSAGES.get(op)
    if cls is None or not isinstance(message, cls):
        raise ValueError(f"{type(message).__name__} is not the request message of {op!r}")
    if not message.IsInitialized():
        missing = cast(Any, message).FindInitializationErrors()
        raise ValueError(f"{op.name} request lacks {missing}")
    return DATA_TRANSFER_VERSION.to_bytes(2, "big") + bytes([op]) + encode_delimited(message)


def read_block_request(
    block: hdfs.ExtendedBlockProto,
    offset: int,
    length: int,
    *,
    token: sec.TokenProto | None = None,
    client_name: str = "torswitch",
    send_checksums: bool = True,
) -> dt.OpReadBlockProto:
    """An OpReadBlockProto as the Java client builds it (empty token, empty caching hints).

    Never sets traceInfo: pre-3.3.2 peers would reject it without its old required fields.
    """
    req = dt.OpReadBlockProto(offset=offset, len=length, sendChecksums=send_checksums)
    base = req.header.baseHeader
    base.block.CopyFrom(block)
    base.token.CopyFrom(token if token is not None else empty_token())
    req.header.clientName = client_name
    req.cachingStrategy.SetInParent()
    return req


def empty_token() -> sec.TokenProto:
    """The token a client sends when block tokens are disabled: every field empty."""
    return sec.TokenProto(identifier=b"", password=b"", kind="", service="")


def encode_client_read_status(status: int = dt.CHECKSUM_OK) -> bytes:
    """What a client sends after the last packet: CHECKSUM_OK (02 08 06) if it verified."""
    return encode_delimited(dt.ClientReadStatusProto(status=cast(Any, status)))


def encode_read_response(
    spec: ChecksumSpec, chunk_offset: int, status: int = dt.SUCCESS, message: str | None = None
) -> bytes:
    """A DataNode's varint-delimited BlockOpResponseProto to READ_BLOCK (§3.9).

    With a non-SUCCESS status no checksum info is sent, only the optional message.
    """
    resp = dt.BlockOpResponseProto(status=cast(Any, status))
    if status == dt.SUCCESS:
        info = resp.readOpChecksumInfo
        info.checksum.type = cast(Any, int(spec.type))
        info.checksum.bytesPerChecksum = spec.bytes_per_checksum
        info.chunkOffset = chunk_offset
    if message is not None:
        resp.message = message
    return encode_delimited(resp)


def encode_packet_prefix(
    offset_in_block: int, seqno: int, data_len: int, checksum_len: int, last: bool = False
) -> bytes:
    """PLEN, HLEN and the 25-byte header of a packet; the checksums and data follow it."""
    header = _FAST_HEADER.pack(0x09, offset_in_block, 0x11, seqno, 0x18, last, 0x25, data_len)
    return _LENS.pack(4 + checksum_len + data_len, PACKET_HEADER_LEN) + header


def encode_packet(
    offset_in_block: int, seqno: int, data: Buffer, sums: Buffer = b"", last: bool = False
) -> bytes:
    """One complete packet: prefix, checksums, data."""
    return encode_packet_prefix(offset_in_block, seqno, len(data), len(sums), last) + bytes(
        sums
    ) + bytes(data)


def read_packet_data_size(
    bytes_per_checksum: int, io_file_buffer_size: int = 4096, *, wrapped: bool = False
) -> int:
    """Data bytes per packet a DataNode sends on a read (BlockSender's rule, §3.5).

    On a plain socket with transferTo: ceil(max(io.file.buffer.size, 64 KiB) / bpc) chunks;
    on a SASL-wrapped stream: max(1, ceil(io.file.buffer.size / bpc)) chunks.
    """
    size = io_file_buffer_size if wrapped else max(io_file_buffer_size, DEFAULT_READ_PACKET_DATA)
    return max(1, -(-size // bytes_per_checksum)) * bytes_per_checksum


def iter_read_packets(
    data: Buffer,
    spec: ChecksumSpec,
    chunk_offset: int,
    *,
    packet_data_size: int = DEFAULT_READ_PACKET_DATA,
    sums: Buffer | None = None,
) -> Iterator[bytes]:
    """The packets a DataNode sends for `data`, which starts at block offset `chunk_offset`.

    `data` must start on a chunk boundary and end on one or at the end of the block.
    Checksums come from `sums` (e.g. kept from the DataNode) or are computed. Ends with the
    empty lastPacketInBlock packet. Raises ValueError for misaligned input.
    """
    bpc = spec.bytes_per_checksum
    if chunk_offset % bpc or packet_data_size % bpc or packet_data_size <= 0:
        raise ValueError("chunk offset and packet size must be multiples of bytesPerChecksum")
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    all_sums = memoryview(bytes(sums) if sums is not None else spec.compute(view))
    if len(all_sums) != spec.checksum_len(len(view)):
        raise ValueError(f"{len(all_sums)} checksum bytes for {len(view)} data bytes")
    seqno = 0
    pos = 0
    while pos < len(view):
        chunk = view[pos : pos + packet_data_size]
        s0 = (pos // bpc) * spec.size
        psums = all_sums[s0 : s0 + spec.checksum_len(len(chunk))]
        yield encode_packet(chunk_offset + pos, seqno, chunk, psums)
        seqno += 1
        pos += len(chunk)
    yield encode_packet(chunk_offset + pos, seqno, b"", b"", last=True)


def encode_read_reply(
    data: Buffer,
    spec: ChecksumSpec,
    chunk_offset: int,
    *,
    packet_data_size: int = DEFAULT_READ_PACKET_DATA,
    sums: Buffer | None = None,
) -> bytes:
    """The whole reply to a successful READ_BLOCK, response plus packets, as one bytes."""
    return encode_read_response(spec, chunk_offset) + b"".join(
        iter_read_packets(data, spec, chunk_offset, packet_data_size=packet_data_size, sums=sums)
    )
