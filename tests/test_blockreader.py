"""torswitch.blockreader against scripted loopback DataNodes built from our serializers.

The peers answer READ_BLOCK exactly as a DataNode does (alignment, packets, final empty
packet; held byte-identical to Hadoop by the integration tests) and can misbehave on cue:
corrupt a byte, answer ERROR, or close a cached connection. Real DataNodes, the corrupting
relay and a stopped DataNode are in integration/test_hdfs_protocol.py.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from torswitch import datatransfer as D
from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.blockreader import (
    BlockChecksumError,
    BlockReader,
    BlockReadError,
    DataNodeStatusError,
    iter_file_range,
)
from torswitch.checksum import ChecksumSpec, ChecksumType
from torswitch.datatransfer import empty_token
from torswitch.namenode import Block, DatanodeInfo, LocatedBlock

CONTENT = bytes((i * 131 + 7) % 256 for i in range(200_000))
BLOCK = Block("BP-7", 1073741900, 1005, len(CONTENT))


@dataclass
class Peer:
    """A loopback DataNode serving CONTENT; `mode` says how it misbehaves."""

    mode: str = "ok"  # ok | corrupt | error | close_after_first | reset_after_first
    spec: ChecksumSpec = field(default_factory=ChecksumSpec)
    requests: list[tuple[int, int, int]] = field(default_factory=list)  # (conn, offset, len)
    statuses: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def info(self) -> DatanodeInfo:
        return DatanodeInfo("127.0.0.1", "localhost", f"uuid-{self.port}", self.port, 0, 0,
                            "/rack-x", "NORMAL")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        conn_no = 0
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn_no += 1
            threading.Thread(target=self._session, args=(sock, conn_no), daemon=True).start()

    def _session(self, sock: socket.socket, conn_no: int) -> None:
        parser = D.StreamParser(D.Direction.CLIENT)
        ops = 0
        with sock:
            sock.settimeout(10)
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for ev in parser.feed(data):
                    if isinstance(ev, D.ReadStatus):
                        self.statuses.append(ev.message.status)  # type: ignore[attr-defined]
                        if self.mode == "close_after_first":
                            return
                        if self.mode == "reset_after_first":
                            # close with a reset, as a restarted ToR engine's socket would
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                            struct.pack("ii", 1, 0))
                            return
                    if not isinstance(ev, D.Request):
                        continue
                    ops += 1
                    req = ev.message
                    self.requests.append((conn_no, req.offset, req.len))  # type: ignore[union-attr]
                    sock.sendall(self._reply(req))
                    if self.mode == "error":
                        return

    def _reply(self, req: object) -> bytes:
        if self.mode == "error":
            return D.encode_read_response(self.spec, 0, status=dt.ERROR, message="replica gone")
        spec = self.spec
        start = spec.align_down(req.offset)  # type: ignore[attr-defined]
        end = min(spec.align_up(req.offset + req.len), len(CONTENT))  # type: ignore[attr-defined]
        reply = bytearray(D.encode_read_reply(CONTENT[start:end], spec, start,
                                              packet_data_size=8192))
        if self.mode == "corrupt":
            reply[-100] ^= 0x40  # a data byte of the last data packet
        return bytes(reply)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for p in made:
        p.close()


def settled(get: Callable[[], list[int]], want: int = 1, timeout: float = 5.0) -> list[int]:
    """The peer's record once it holds `want` items (the peer thread may lag the client)."""
    deadline = time.monotonic() + timeout
    while len(get()) < want and time.monotonic() < deadline:
        time.sleep(0.01)
    return get()


def located(*ps: Peer) -> LocatedBlock:
    return LocatedBlock(BLOCK, 0, tuple(p.info for p in ps), False, empty_token())


@pytest.mark.parametrize(("offset", "length"), [
    (0, len(CONTENT)), (0, 1), (1, 1), (511, 2), (512, 512), (1000, 5000),
    (len(CONTENT) - 1, 1), (len(CONTENT) - 700, 700), (8191, 8194), (0, 0),
])
def test_ranges_are_trimmed_and_checksums_kept(peers: list[Peer], offset: int, length: int) -> None:
    peer = Peer()
    peers.append(peer)
    with BlockReader(timeout=5) as r:
        got = r.read(located(peer), offset, length)
    assert got.data == CONTENT[offset : offset + length]
    spec = ChecksumSpec()
    if length:
        assert got.chunk_offset == spec.align_down(offset)
        end = min(spec.align_up(offset + length), len(CONTENT))
        assert got.checksums == spec.compute(CONTENT[got.chunk_offset : end])
        assert peer.requests == [(1, offset, length)]  # asked for exactly the range
        assert settled(lambda: peer.statuses) == [dt.CHECKSUM_OK]
    assert not got.failures


def test_connection_is_reused_after_checksum_ok(peers: list[Peer]) -> None:
    peer = Peer()
    peers.append(peer)
    with BlockReader(timeout=5) as r:
        for off in (0, 5000, 100_000):
            assert r.read(located(peer), off, 1000).data == CONTENT[off : off + 1000]
        assert (r.connections_opened, r.connections_reused) == (1, 2)
    assert [c for c, _, _ in peer.requests] == [1, 1, 1]


def test_stale_cached_connection_is_reopened(peers: list[Peer]) -> None:
    peer = Peer(mode="close_after_first")
    peers.append(peer)
    with BlockReader(timeout=5) as r:
        assert r.read(located(peer), 0, 10).data == CONTENT[:10]
        assert r.read(located(peer), 10, 10).data == CONTENT[10:20]
        assert r.connections_opened == 2
    assert [c for c, _, _ in peer.requests] == [1, 2]


def test_reset_cached_connection_is_reopened(peers: list[Peer]) -> None:
    peer = Peer(mode="reset_after_first")
    peers.append(peer)
    with BlockReader(timeout=5) as r:
        assert r.read(located(peer), 0, 10).data == CONTENT[:10]
        time.sleep(0.2)  # the reset has arrived: the next send on that socket fails
        assert r.read(located(peer), 10, 10).data == CONTENT[10:20]
        assert r.connections_opened == 2
    assert [c for c, _, _ in peer.requests] == [1, 2]


def test_corrupt_replica_is_reported_and_the_next_one_used(peers: list[Peer]) -> None:
    bad, good = Peer(mode="corrupt"), Peer()
    peers += [bad, good]
    with BlockReader(timeout=5) as r:
        got = r.read(located(bad, good), 0, len(CONTENT))
    assert got.data == CONTENT
    (failure,) = got.failures
    assert failure.datanode == bad.info
    err = failure.error
    assert isinstance(err, BlockChecksumError)
    bad_byte = len(CONTENT) - 100 + 4  # last packet: no checksum bytes after the data
    assert err.offset == ChecksumSpec().align_down(bad_byte - 4) and err.block == BLOCK
    assert BLOCK.name in str(err) and f"offset {err.offset}" in str(err)
    # The good replica resumed where the bad one stopped: nothing was read twice.
    assert good.requests == [(1, err.offset - err.offset % 8192, len(CONTENT) - err.offset
                              + err.offset % 8192)]
    assert bad.statuses == []  # no CHECKSUM_OK for a read that failed verification


def test_error_status_fails_over_and_all_failures_are_listed(peers: list[Peer]) -> None:
    e1, e2 = Peer(mode="error"), Peer(mode="error")
    peers += [e1, e2]
    with BlockReader(timeout=5) as r, pytest.raises(BlockReadError) as info:
        r.read(located(e1, e2), 0, 100)
    errors = [f.error for f in info.value.failures]
    assert len(errors) == 2 and all(isinstance(e, DataNodeStatusError) for e in errors)
    assert "ERROR: replica gone" in str(errors[0])


def test_null_checksums_send_success(peers: list[Peer]) -> None:
    peer = Peer(spec=ChecksumSpec(ChecksumType.NULL, 512))
    peers.append(peer)
    with BlockReader(timeout=5) as r:
        got = r.read(located(peer), 100, 1000)
    assert got.data == CONTENT[100:1100] and got.checksums == b""
    assert settled(lambda: peer.statuses) == [dt.SUCCESS]


def test_bad_ranges_are_rejected_before_any_io() -> None:
    lb = LocatedBlock(BLOCK, 0, (), False, empty_token())
    with BlockReader() as r:
        with pytest.raises(ValueError, match="outside"):
            r.read(lb, len(CONTENT), 1)
        with pytest.raises(ValueError, match="outside"):
            r.read(lb, -1, 1)
        with pytest.raises(BlockReadError, match="no locations"):
            r.read(lb, 0, 1)


def test_file_ranges_span_blocks(peers: list[Peer]) -> None:
    peer = Peer()
    peers.append(peer)
    half = 100_000  # two "blocks" cut from one replica's content: same bytes, other offsets
    b1 = LocatedBlock(Block("BP-7", 1, 1, half), 0, (peer.info,), False, empty_token())
    b2 = LocatedBlock(Block("BP-7", 2, 1, half), half, (peer.info,), False, empty_token())
    with BlockReader(timeout=5) as r:
        got = b"".join(bytes(p) for p in iter_file_range(r, [b1, b2], 99_000, 2000))
        assert got == CONTENT[99_000:100_000] + CONTENT[0:1000]
        with pytest.raises(ValueError, match="no block covers"):
            list(iter_file_range(r, [b2], 0, 10))
