"""torswitch.namenode: IPC framing against constructed bytes, error mapping, timeouts, reconnect.

The byte vectors are the worked examples of shared/docs/hdfs-wire-protocol.md §6.7. Client
behaviour (paging, remote errors, reconnect, timeouts) is driven by a scripted loopback peer
that answers frames it decodes with the same generated messages; the real NameNode is
exercised in integration/test_hdfs_protocol.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from torswitch import namenode as N
from torswitch.api.hadoop import ClientNamenodeProtocol_pb2 as cnp
from torswitch.api.hadoop import IpcConnectionContext_pb2 as ipc
from torswitch.api.hadoop import ProtobufRpcEngine_pb2 as engine
from torswitch.api.hadoop import RpcHeader_pb2 as rpc
from torswitch.api.hadoop import acl_pb2 as acl
from torswitch.api.hadoop import hdfs_pb2 as hdfs

CLIENT_ID = bytes(range(16))
PROTOCOL = b"org.apache.hadoop.hdfs.protocol.ClientProtocol"


# ---- framing vectors (§6.7) ----------------------------------------------------------------


def test_preamble_and_connection_context_bytes() -> None:
    want = (
        b"hrpc\x09\x00\x00"
        + bytes.fromhex("00000055")
        + bytes.fromhex("1a 08 02 10 00 18 05 22 10") + CLIENT_ID + bytes.fromhex("28 01")
        + bytes.fromhex("39 12 07 0a 05") + b"alice" + b"\x1a\x2e" + PROTOCOL
    )
    assert N.connection_context("alice", CLIENT_ID) == want


def test_get_block_locations_call_bytes() -> None:
    req = cnp.GetBlockLocationsRequestProto(src="/data/f", offset=0, length=1342177280)
    want = (
        bytes.fromhex("00000073")
        + bytes.fromhex("1a 08 02 10 00 18 00 22 10") + CLIENT_ID + bytes.fromhex("28 00")
        + b"\x45\x0a\x11getBlockLocations\x12\x2e" + PROTOCOL + b"\x18\x01"
        + b"\x11\x0a\x07/data/f\x10\x00\x18\x80\x80\x80\x80\x05"
    )
    assert N.call_frame(0, CLIENT_ID, "getBlockLocations", req) == want


def test_ping_bytes() -> None:
    want = bytes.fromhex("0000001b 1a 08 02 10 00 18 07 22 10") + CLIENT_ID + b"\x28\x01"
    assert N.ping_frame(CLIENT_ID) == want


def test_call_ids_zigzag_in_requests() -> None:
    # sint32: -3 -> 05, -4 -> 07, -33 -> 41 (§6.3).
    for cid, byte in ((-3, 0x05), (-4, 0x07), (-33, 0x41), (0, 0x00)):
        raw = N.request_header(cid, CLIENT_ID).SerializeToString()
        assert raw[4:6] == bytes([0x18, byte])


def _reply(header: rpc.RpcResponseHeaderProto, body: bytes = b"") -> bytes:
    h = header.SerializeToString()
    return N._varint(len(h)) + h + (N._varint(len(body)) + body if body else b"")


def test_parse_reply_success_and_negative_call_ids() -> None:
    fs = cnp.GetFileInfoResponseProto().SerializeToString()
    header = rpc.RpcResponseHeaderProto(callId=7, status=rpc.RpcResponseHeaderProto.SUCCESS,
                                        serverIpcVersionNum=9)
    got, payload = N.parse_reply(_reply(header, fs or b"\x00"[:0]) + N._varint(0))
    assert N.reply_call_id(got) == 7 and payload == b""
    # uint32 on the wire: -1 arrives as five varint bytes ff ff ff ff 0f.
    neg = rpc.RpcResponseHeaderProto(callId=0xFFFFFFFF, status=rpc.RpcResponseHeaderProto.FATAL)
    raw = neg.SerializeToString()
    assert raw[:6] == bytes.fromhex("08 ff ff ff ff 0f")
    got, _ = N.parse_reply(_reply(neg))
    assert N.reply_call_id(got) == -1


@pytest.mark.parametrize("body", [b"", b"\x05\x08", b"\xff\xff\xff\xff\xff\xff", b"\x02\x08\x00"])
def test_parse_reply_rejects_malformed_frames(body: bytes) -> None:
    with pytest.raises(N.IpcProtocolError):
        N.parse_reply(body)


@pytest.mark.parametrize(("java", "cls", "builtin"), [
    ("java.io.FileNotFoundException", N.RemoteFileNotFoundError, FileNotFoundError),
    ("org.apache.hadoop.security.AccessControlException", N.RemoteAccessControlError,
     PermissionError),
    ("org.apache.hadoop.ipc.StandbyException", N.RemoteStandbyError, N.RemoteError),
    ("org.apache.hadoop.ipc.RetriableException", N.RemoteRetriableError, N.RemoteError),
    ("java.lang.IllegalArgumentException", N.RemoteError, N.NameNodeError),
])
def test_remote_errors_map_by_java_class(java: str, cls: type, builtin: type) -> None:
    header = rpc.RpcResponseHeaderProto(
        callId=1, status=rpc.RpcResponseHeaderProto.ERROR, exceptionClassName=java,
        errorMsg="File does not exist: /nope\n\tat org.apache...",
        errorDetail=rpc.RpcResponseHeaderProto.ERROR_APPLICATION,
    )
    err = N.remote_error(header)
    assert type(err) is cls and isinstance(err, builtin)
    assert err.java_class == java and err.error_code == "ERROR_APPLICATION"
    assert str(err) == f"{java}: File does not exist: /nope"
    assert "\tat org.apache" in err.message and not err.fatal


# ---- a scripted peer --------------------------------------------------------------------------


@dataclass
class Call:
    conn: int
    call_id: int
    retry: int
    method: str
    request: bytes
    user: str


Handler = Callable[[Call], tuple[str, object]]


class ScriptedNameNode:
    """Loopback IPC peer: decodes each call and answers as `handler` says.

    handler(call) returns ("ok", message), ("error"|"fatal", (java_class, text)),
    ("close", None) to drop the connection, or ("silent", None) to never answer.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[Call] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # accept() polls `stop`: close() does not wake it
        self.address = self.listener.getsockname()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

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
            with sock:
                sock.settimeout(10)
                try:
                    self._session(sock, conn_no)
                except (OSError, ConnectionError):
                    pass

    @staticmethod
    def _exact(sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client went away")
            buf += chunk
        return buf

    def _frame(self, sock: socket.socket) -> list[bytes]:
        body = self._exact(sock, int.from_bytes(self._exact(sock, 4), "big"))
        parts, pos = [], 0
        while pos < len(body):
            raw, pos = N._read_delimited(body, pos)
            parts.append(raw)
        return parts

    def _session(self, sock: socket.socket, conn_no: int) -> None:
        assert self._exact(sock, 7) == b"hrpc\x09\x00\x00"
        head, ctx_raw = self._frame(sock)
        assert rpc.RpcRequestHeaderProto.FromString(head).callId == -3
        user = ipc.IpcConnectionContextProto.FromString(ctx_raw).userInfo.effectiveUser
        while True:
            head_raw, req_head_raw, request = self._frame(sock)
            head = rpc.RpcRequestHeaderProto.FromString(head_raw)
            method = engine.RequestHeaderProto.FromString(req_head_raw).methodName
            call = Call(conn_no, head.callId, head.retryCount, method, request, user)
            self.calls.append(call)
            kind, what = self.handler(call)
            status = {"ok": 0, "error": 1, "fatal": 2}.get(kind)
            if kind == "close":
                return
            if kind == "silent":
                self.stop.wait(30)
                return
            reply = rpc.RpcResponseHeaderProto(
                callId=head.callId & 0xFFFFFFFF, status=status,  # type: ignore[arg-type]
                serverIpcVersionNum=9, clientId=head.clientId, retryCount=head.retryCount,
            )
            if kind == "ok":
                parts = [reply, what]
            else:
                reply.exceptionClassName, reply.errorMsg = what  # type: ignore[misc]
                parts = [reply]
            sock.sendall(N.frame(*parts))  # type: ignore[arg-type]
            if kind == "fatal":
                return


@pytest.fixture
def scripted() -> Iterator[Callable[[Handler], ScriptedNameNode]]:
    peers: list[ScriptedNameNode] = []

    def make(handler: Handler) -> ScriptedNameNode:
        peer = ScriptedNameNode(handler)
        peers.append(peer)
        return peer

    yield make
    for p in peers:
        p.close()


def _status(name: bytes, kind: int = hdfs.HdfsFileStatusProto.IS_FILE) -> hdfs.HdfsFileStatusProto:
    return hdfs.HdfsFileStatusProto(
        fileType=kind, path=name, length=5, permission=acl.FsPermissionProto(perm=0o644),
        owner="alice", group="supergroup", modification_time=1, access_time=2,
        block_replication=3, blocksize=4 << 20, fileId=16390,
    )


def test_listing_pages_until_done(scripted: Callable[[Handler], ScriptedNameNode]) -> None:
    names = [f"f{i:02d}".encode() for i in range(7)]

    def handler(call: Call) -> tuple[str, object]:
        req = cnp.GetListingRequestProto.FromString(call.request)
        start = names.index(req.startAfter) + 1 if req.startAfter else 0
        page = names[start : start + 3]
        listing = hdfs.DirectoryListingProto(
            partialListing=[_status(n) for n in page],
            remainingEntries=len(names) - start - len(page),
        )
        return "ok", cnp.GetListingResponseProto(dirList=listing)

    peer = scripted(handler)
    with N.NameNodeClient(*peer.address, user="alice", client_id=CLIENT_ID) as nn:
        entries = list(nn.list_status("/dir"))
    assert [e.path for e in entries] == [f"/dir/{n.decode()}" for n in names]
    assert entries[0].permission == 0o644 and entries[0].kind == "file"
    assert [c.method for c in peer.calls] == ["getListing"] * 3
    assert [c.call_id for c in peer.calls] == [0, 1, 2]
    assert {c.conn for c in peer.calls} == {1}  # one connection reused
    assert peer.calls[0].user == "alice"


def test_missing_paths(scripted: Callable[[Handler], ScriptedNameNode]) -> None:
    def handler(call: Call) -> tuple[str, object]:
        if call.method == "getFileInfo":
            return "ok", cnp.GetFileInfoResponseProto()
        if call.method == "getListing":
            return "ok", cnp.GetListingResponseProto()
        return "error", ("java.io.FileNotFoundException", "File does not exist: /nope")

    peer = scripted(handler)
    with N.NameNodeClient(*peer.address) as nn:
        assert nn.get_file_info("/nope") is None
        with pytest.raises(FileNotFoundError, match="/nope"):
            list(nn.list_status("/nope"))
        with pytest.raises(N.RemoteFileNotFoundError) as info:
            nn.get_block_locations("/nope")
        assert info.value.java_class == "java.io.FileNotFoundException"
        # An ERROR reply leaves the connection usable.
        assert nn.get_file_info("/nope") is None
    assert {c.conn for c in peer.calls} == {1}


def test_fatal_reply_closes_and_next_call_reconnects(
    scripted: Callable[[Handler], ScriptedNameNode],
) -> None:
    def handler(call: Call) -> tuple[str, object]:
        if call.conn == 1:
            return "fatal", ("org.apache.hadoop.ipc.RpcServerException", "bad header")
        return "ok", cnp.GetFileInfoResponseProto(fs=_status(b""))

    peer = scripted(handler)
    with N.NameNodeClient(*peer.address) as nn:
        with pytest.raises(N.RemoteError) as info:
            nn.get_file_info("/x")
        assert info.value.fatal
        st = nn.get_file_info("/x")
    assert st is not None and st.path == "/x" and st.length == 5
    assert [c.conn for c in peer.calls] == [1, 2]


def test_dropped_connection_is_retried_once(
    scripted: Callable[[Handler], ScriptedNameNode],
) -> None:
    # The NameNode closes idle connections; the call must reconnect and succeed.
    def handler(call: Call) -> tuple[str, object]:
        if call.conn == 1 and len([c for c in peer.calls if c.conn == 1]) == 2:
            return "close", None
        return "ok", cnp.GetFileInfoResponseProto(fs=_status(b""))

    peer = scripted(handler)
    with N.NameNodeClient(*peer.address) as nn:
        assert nn.get_file_info("/a") is not None
        assert nn.get_file_info("/b") is not None  # conn 1 drops; retried on conn 2
        assert nn.reconnects == 1
    assert [(c.conn, c.retry) for c in peer.calls] == [(1, 0), (1, 0), (2, 1)]


def test_connection_lost_twice_is_an_error(scripted: Callable[[Handler], ScriptedNameNode]) -> None:
    peer = scripted(lambda call: ("close", None))
    with N.NameNodeClient(*peer.address) as nn, pytest.raises(
        N.NameNodeConnectionError, match="lost twice"
    ):
        nn.get_file_info("/a")


def test_timeout(scripted: Callable[[Handler], ScriptedNameNode]) -> None:
    peer = scripted(lambda call: ("silent", None))
    with N.NameNodeClient(*peer.address, timeout=0.5) as nn:
        with pytest.raises(N.NameNodeTimeout, match="no reply within 0.5 s") as info:
            nn.get_file_info("/slow")
        assert isinstance(info.value, TimeoutError)


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connect is refused
        with pytest.raises(N.NameNodeConnectionError, match=f"127.0.0.1:{port}"):
            N.NameNodeClient("127.0.0.1", port, timeout=2).get_file_info("/")


def test_results_from_protos() -> None:
    dn = hdfs.DatanodeInfoProto(
        id=hdfs.DatanodeIDProto(ipAddr="198.18.2.11", hostName="dn1", datanodeUuid="u1",
                                xferPort=9866, infoPort=9864, ipcPort=9867),
        location="/rack-b",
    )
    lb = hdfs.LocatedBlockProto(
        b=hdfs.ExtendedBlockProto(poolId="BP-1", blockId=1073741825, generationStamp=1001,
                                  numBytes=4 << 20),
        offset=0, locs=[dn], corrupt=False,
        blockToken={"identifier": b"", "password": b"", "kind": "", "service": ""},
    )
    got = N.LocatedBlock.from_proto(lb)
    assert got.block.name == "blk_1073741825_1001" and got.end == 4 << 20
    assert got.locations[0].xfer_address == ("198.18.2.11", 9866)
    assert got.locations[0].rack == "/rack-b" and got.locations[0].admin_state == "NORMAL"
    assert got.block.to_proto() == lb.b
