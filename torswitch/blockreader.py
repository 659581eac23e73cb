"""Reading a byte range of an HDFS block from DataNodes, verifying every checksum chunk.

The exchange (shared/docs/hdfs-wire-protocol.md §3): send READ_BLOCK for exactly the range
wanted; the DataNode widens it to whole checksum chunks (start rounded down, end rounded up,
capped at the replica length), answers with the checksum type and the aligned start
(chunkOffset), streams packets of chunk checksums + data, and ends with an empty packet.
This reader checks each packet's checksums in one native call before handing its bytes on,
trims the alignment padding, keeps the DataNode's checksums for the caller (a cache can
serve them again without recomputing), and sends CHECKSUM_OK so the DataNode can keep the
connection open for the next op, which the reader then reuses.

When a replica fails (refused connection, timeout, error status, malformed stream, or a
checksum mismatch) the reader moves on to the next location and resumes where the failed
one stopped; bytes already handed out are never repeated. Every failure is recorded in
the result and logged, so a corrupt replica is reported even when the read succeeds.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Self

from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.checksum import ChecksumError, ChecksumSpec, ChecksumType
from torswitch.datatransfer import (
    Checksums,
    Data,
    Direction,
    End,
    Op,
    PacketHeader,
    ProtocolError,
    Response,
    StreamParser,
    encode_client_read_status,
    encode_request,
    read_block_request,
)
from torswitch.errors import TorswitchError
from torswitch.namenode import Block, Connector, DatanodeInfo, LocatedBlock, direct_connect

log = logging.getLogger(__name__)

#: How long an idle DataNode connection is reused: under the DataNode's 4 s keepalive
#: (dfs.datanode.socket.reuse.keepalive), like the Java client's 3 s socket cache expiry.
KEEPALIVE_S = 3.0
RECV_SIZE = 256 * 1024


class BlockReadError(TorswitchError):
    """No replica could serve the range. `failures` lists what went wrong on each."""

    def __init__(self, message: str, failures: Sequence[ReplicaFailure] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


class BlockChecksumError(ChecksumError):
    """A chunk from a DataNode does not match its checksum.

    `offset` is the block offset of the first byte of the bad chunk.
    """

    def __init__(self, block: Block, offset: int, datanode: str, spec: ChecksumSpec) -> None:
        super().__init__(
            f"checksum error in {block.name} (pool {block.pool_id}) at block offset {offset} "
            f"({spec.type.name}, {spec.bytes_per_checksum}-byte chunk) from {datanode}",
            chunk=offset // spec.bytes_per_checksum,
        )
        self.block = block
        self.offset = offset
        self.datanode = datanode


class DataNodeStatusError(TorswitchError):
    """The DataNode refused the op: non-SUCCESS status, with its message."""

    def __init__(self, status: int, message: str, datanode: str) -> None:
        name = dt.Status.Name(status) if status in dt.Status.values() else str(status)
        super().__init__(f"{datanode} answered {name}" + (f": {message}" if message else ""))
        self.status = status
        self.datanode = datanode


@dataclass(frozen=True, slots=True)
class ReplicaFailure:
    """One replica that failed during a read, and why."""

    datanode: DatanodeInfo
    error: Exception

    def __str__(self) -> str:
        return f"{self.datanode}: {self.error}"


@dataclass(frozen=True, slots=True)
class VerifiedPacket:
    """One packet's verified chunks; `data` is the part inside the requested range.

    `chunk_offset` is the block offset of chunks[0]; checksums cover all of `chunks`.
    """

    chunk_offset: int
    chunks: memoryview
    checksums: memoryview
    lo: int
    hi: int
    datanode: DatanodeInfo
    spec: ChecksumSpec

    @property
    def data(self) -> memoryview:
        return self.chunks[self.lo : self.hi]

    @property
    def offset(self) -> int:
        """Block offset of data[0]."""
        return self.chunk_offset + self.lo


@dataclass
class BlockRange:
    """The result of read(): exactly the requested bytes, plus the verified chunk sums.

    `checksums` are the DataNode's chunk checksums from `chunk_offset` (the requested
    offset rounded down to a chunk), covering whole chunks up to the end of `data`.
    """

    block: Block
    offset: int
    data: bytes
    checksum: ChecksumSpec
    chunk_offset: int
    checksums: bytes
    datanodes: list[DatanodeInfo] = field(default_factory=list)
    failures: list[ReplicaFailure] = field(default_factory=list)


class _Conn:
    __slots__ = ("idle_since", "reused", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.idle_since = time.monotonic()
        self.reused = False


class _StaleConnection(Exception):
    """A cached connection turned out to be closed before the DataNode answered."""


class BlockReader:
    """Reads block ranges with verification, connection reuse and replica failover.

    `timeout` (seconds) bounds connecting and each wait for DataNode bytes. `connect` opens
    TCP connections (default: directly). Thread-safe; connections are cached per DataNode
    address and never shared by two reads at once.
    """

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        client_name: str = "torswitch",
        verify: bool = True,
        use_hostname: bool = False,
        keepalive: float = KEEPALIVE_S,
        connect: Connector = direct_connect,
    ) -> None:
        self._connector = connect
        self.timeout = timeout
        self.client_name = client_name
        self.verify = verify
        self.use_hostname = use_hostname
        self.keepalive = keepalive
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._lock = threading.Lock()
        self.connections_opened = 0
        self.connections_reused = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle cached connection."""
        with self._lock:
            conns = [c for lst in self._idle.values() for c in lst]
            self._idle.clear()
        for c in conns:
            c.sock.close()

    # -- public reads --------------------------------------------------------------------------

    def read(self, located: LocatedBlock, offset: int = 0, length: int | None = None) -> BlockRange:
        """Bytes [offset, offset+length) of the block (to its end if length is None).

        Raises ValueError for a range outside the block, BlockReadError if every replica
        failed (its `failures` say why, including BlockChecksumError for corrupt chunks).
        """
        failures: list[ReplicaFailure] = []
        pieces: list[memoryview] = []
        sums: list[memoryview] = []
        datanodes: list[DatanodeInfo] = []
        chunk_offset = -1
        spec: ChecksumSpec | None = None
        for pkt in self.stream(located, offset, length, failures=failures):
            if chunk_offset < 0:
                chunk_offset = pkt.chunk_offset
            if not datanodes or datanodes[-1] != pkt.datanode:
                datanodes.append(pkt.datanode)
            pieces.append(pkt.data)
            sums.append(pkt.checksums)
            spec = pkt.spec
        return BlockRange(
            located.block, offset, b"".join(pieces), spec or ChecksumSpec(),
            chunk_offset if chunk_offset >= 0 else offset, b"".join(sums), datanodes, failures,
        )

    def stream(
        self,
        located: LocatedBlock,
        offset: int = 0,
        length: int | None = None,
        *,
        failures: list[ReplicaFailure] | None = None,
    ) -> Iterator[VerifiedPacket]:
        """Verified packets covering [offset, offset+length), in order, with failover.

        Each replica failure is appended to `failures` (if given) and logged. Raises
        ValueError for a bad range and BlockReadError when no replica is left.
        """
        size = located.block.num_bytes
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError(
                f"range [{offset}, {offset + length}) is outside {located.block.name} "
                f"of {size} bytes"
            )
        if failures is None:
            failures = []
        if length == 0:
            return
        pos, end = offset, offset + length
        if not located.locations:
            raise BlockReadError(f"{located.block.name} has no locations")
        for dn in located.locations:
            try:
                for pkt in self._read_replica(located, dn, pos, end - pos):
                    yield pkt
                    pos += pkt.hi - pkt.lo
                return
            except (OSError, ProtocolError, ChecksumError, DataNodeStatusError) as exc:
                failures.append(ReplicaFailure(dn, exc))
                log.warning("reading %s from %s failed at offset %d: %s", located.block.name,
                            dn, pos, exc)
        raise BlockReadError(
            f"could not read {located.block.name} [{pos}, {end}) from any of "
            f"{len(located.locations)} replica(s): " + "; ".join(map(str, failures)),
            failures,
        )

    # -- one replica ----------------------------------------------------------------------------

    def _address(self, dn: DatanodeInfo) -> tuple[str, int]:
        return (dn.hostname if self.use_hostname else dn.ip), dn.xfer_port

    def _checkout(self, addr: tuple[str, int]) -> _Conn:
        now = time.monotonic()
        with self._lock:
            lst = self._idle.get(addr, [])
            while lst:
                conn = lst.pop()
                if now - conn.idle_since < self.keepalive:
                    conn.reused = True
                    self.connections_reused += 1
                    return conn
                conn.sock.close()
        return self._open(addr)

    def _open(self, addr: tuple[str, int]) -> _Conn:
        sock = self._connector(addr, self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections_opened += 1
        return _Conn(sock)

    def _checkin(self, addr: tuple[str, int], conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        conn.reused = False
        with self._lock:
            self._idle.setdefault(addr, []).append(conn)

    def _read_replica(
        self, located: LocatedBlock, dn: DatanodeInfo, offset: int, length: int
    ) -> Iterator[VerifiedPacket]:
        addr = self._address(dn)
        conn = self._checkout(addr)
        try:
            yield from self._exchange(conn, addr, located, dn, offset, length)
        except _StaleConnection:
            # The DataNode had closed the cached socket; one fresh try on the same node.
            conn.sock.close()
            conn = self._open(addr)
            yield from self._exchange(conn, addr, located, dn, offset, length)

    def _exchange(
        self,
        conn: _Conn,
        addr: tuple[str, int],
        located: LocatedBlock,
        dn: DatanodeInfo,
        offset: int,
        length: int,
    ) -> Iterator[VerifiedPacket]:
        block = located.block
        req = read_block_request(
            block.to_proto(), offset, length, token=located.token,
            client_name=self.client_name, send_checksums=self.verify,
        )
        sock = conn.sock
        done = False
        try:
            sock.settimeout(self.timeout)
            parser = StreamParser(Direction.DATANODE, expect=[(Op.READ_BLOCK, req)])
            try:
                sock.sendall(encode_request(Op.READ_BLOCK, req))
            except (BrokenPipeError, ConnectionResetError):
                # A cached socket whose peer is gone (a DataNode's keepalive ran out, or a ToR
                # engine restarted) fails on send with a reset: also just stale.
                if conn.reused:
                    raise _StaleConnection() from None
                raise
            got_any = False
            end = offset + length
            spec = ChecksumSpec()
            hdr: PacketHeader | None = None
            sums = memoryview(b"")
            while not done:
                try:
                    buf = sock.recv(RECV_SIZE)
                except ConnectionResetError:
                    if conn.reused and not got_any:
                        raise _StaleConnection() from None
                    raise
                if not buf:
                    if conn.reused and not got_any:
                        raise _StaleConnection()
                    parser.close()
                    raise ProtocolError(f"{dn} closed the connection before the read ended")
                got_any = True
                for ev in parser.feed(buf):
                    if isinstance(ev, Response):
                        status = ev.message.status
                        if status != dt.SUCCESS:
                            raise DataNodeStatusError(
                                status, ev.message.message, str(dn)
                            )
                        spec = parser.checksum
                    elif isinstance(ev, PacketHeader):
                        hdr = ev
                    elif isinstance(ev, Checksums):
                        sums = ev.data
                    elif isinstance(ev, Data):
                        if hdr is None or hdr.data_len == 0:
                            continue
                        pkt = self._verify(block, dn, spec, hdr, sums, ev.data, offset, end)
                        if pkt is not None:
                            yield pkt
                    elif isinstance(ev, End):
                        # Tell the DataNode we verified everything; it may then keep the
                        # connection for the next op (§3.4).
                        verified = self.verify and spec.type is not ChecksumType.NULL
                        sock.sendall(
                            encode_client_read_status(dt.CHECKSUM_OK if verified else dt.SUCCESS)
                        )
                        done = True
        finally:
            if done:
                self._checkin(addr, conn)
            else:
                sock.close()

    def _verify(
        self,
        block: Block,
        dn: DatanodeInfo,
        spec: ChecksumSpec,
        hdr: PacketHeader,
        sums: memoryview,
        data: memoryview,
        offset: int,
        end: int,
    ) -> VerifiedPacket | None:
        start = hdr.offset_in_block
        if self.verify and spec.type is not ChecksumType.NULL:
            bad = spec.verify(data, sums)
            if bad >= 0:
                raise BlockChecksumError(
                    block, start + bad * spec.bytes_per_checksum, str(dn), spec
                )
        lo = max(offset - start, 0)
        hi = min(end - start, len(data))
        if hi <= lo:
            return None  # alignment padding only
        return VerifiedPacket(start, data, sums, lo, hi, dn, spec)


def iter_file_range(
    reader: BlockReader,
    located: Sequence[LocatedBlock],
    offset: int,
    length: int,
    *,
    failures: list[ReplicaFailure] | None = None,
) -> Iterator[memoryview]:
    """Bytes [offset, offset+length) of a file, given its blocks in file order.

    Yields verified pieces (views; copy them to keep them). Raises ValueError if the blocks
    do not cover the range, and what BlockReader.stream() raises.
    """
    pos, end = offset, offset + length
    for lb in located:
        lo, hi = max(pos, lb.offset), min(end, lb.end)
        if lo >= hi:
            continue
        if lo != pos:
            raise ValueError(f"no block covers file offset {pos}")
        for pkt in reader.stream(lb, lo - lb.offset, hi - lo, failures=failures):
            yield pkt.data
            pos += pkt.hi - pkt.lo
    if pos != end:
        raise ValueError(f"no block covers file offset {pos}")
