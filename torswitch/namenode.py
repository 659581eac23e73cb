"""A Hadoop IPC client for the NameNode's ClientProtocol, simple authentication only.

Resolves paths to blocks and replica locations (getBlockLocations), stats files
(getFileInfo) and lists directories page by page (getListing). Wire format from
shared/docs/hdfs-wire-protocol.md §6-§7:

    connect:  "hrpc" 09 00 00                          preamble: IPC v9, class 0, auth NONE
              frame[ RpcRequestHeader(callId -3) | IpcConnectionContext(user, protocol) ]
    call:     frame[ RpcRequestHeader(callId n) | RequestHeader(method) | request ]
    reply:    frame[ RpcResponseHeader(callId n, status) | response ]     (SUCCESS)
              frame[ RpcResponseHeader(status ERROR/FATAL, exception class, message) ]

A frame is a 4-byte big-endian length followed by varint-delimited messages. Errors the
NameNode reports become RemoteError subclasses carrying the Java class and message
(java.io.FileNotFoundException is a FileNotFoundError). A call that finds its connection
closed (the NameNode drops idle clients) reconnects once and retries: every call here is a
read, so repeating it is harmless. Calls that time out close the connection, because a late
reply would otherwise be taken for the next call's.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Self, TypeVar

from google.protobuf.message import Message

from torswitch.api.hadoop import ClientNamenodeProtocol_pb2 as cnp
from torswitch.api.hadoop import IpcConnectionContext_pb2 as ipc
from torswitch.api.hadoop import ProtobufRpcEngine_pb2 as engine
from torswitch.api.hadoop import RpcHeader_pb2 as rpc
from torswitch.api.hadoop import Security_pb2 as sec
from torswitch.api.hadoop import hdfs_pb2 as hdfs
from torswitch.errors import TorswitchError

M = TypeVar("M", bound=Message)

#: Opens a TCP connection: (address, timeout in seconds) -> connected socket; raises OSError.
Connector = Callable[[tuple[str, int], float], socket.socket]


def direct_connect(address: tuple[str, int], timeout: float) -> socket.socket:
    """The default Connector: a plain connection from this process's network namespace."""
    return socket.create_connection(address, timeout=timeout)


IPC_VERSION: Final = 9
AUTH_NONE: Final = 0x00
CLIENT_PROTOCOL: Final = "org.apache.hadoop.hdfs.protocol.ClientProtocol"
CLIENT_PROTOCOL_VERSION: Final = 1
CONNECTION_CONTEXT_CALL_ID: Final = -3
PING_CALL_ID: Final = -4
#: Client limit on a reply frame (ipc.maximum.response.length default, 128 MiB).
MAX_RESPONSE_LENGTH: Final = 128 * 1024 * 1024
#: Java longs bound every NameNode offset; ask for "the rest of the file" with this.
MAX_FILE_LENGTH: Final = (1 << 63) - 1


# ---- errors ---------------------------------------------------------------------------------


class NameNodeError(TorswitchError):
    """Base of every failure talking to a NameNode."""


class NameNodeConnectionError(NameNodeError, ConnectionError):
    """Could not connect, or the connection broke and a retry did not help."""


class NameNodeTimeout(NameNodeConnectionError, TimeoutError):
    """No complete reply within the client's timeout."""


class IpcProtocolError(NameNodeError):
    """The NameNode's bytes did not follow Hadoop IPC framing."""


class PathNotFoundError(NameNodeError, FileNotFoundError):
    """An HDFS path does not exist."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RemoteError(NameNodeError):
    """An exception the NameNode raised for a call: Java class, message, error code."""

    def __init__(self, java_class: str, message: str, error_code: str = "", fatal: bool = False):
        first_line = message.strip().splitlines()[0] if message.strip() else ""
        super().__init__(f"{java_class}: {first_line}" if first_line else java_class)
        self.java_class = java_class
        self.message = message
        self.error_code = error_code
        self.fatal = fatal

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.java_class


class RemoteFileNotFoundError(RemoteError, PathNotFoundError):
    """java.io.FileNotFoundException."""


class RemoteAccessControlError(RemoteError, PermissionError):
    """org.apache.hadoop.security.AccessControlException."""


class RemoteStandbyError(RemoteError):
    """org.apache.hadoop.ipc.StandbyException: this NameNode is an HA standby."""


class RemoteRetriableError(RemoteError):
    """org.apache.hadoop.ipc.RetriableException (e.g. safe mode): try again later."""


#: Java exception class -> Python class; anything else is a plain RemoteError.
REMOTE_EXCEPTIONS: Final[dict[str, type[RemoteError]]] = {
    "java.io.FileNotFoundException": RemoteFileNotFoundError,
    "org.apache.hadoop.security.AccessControlException": RemoteAccessControlError,
    "org.apache.hadoop.ipc.StandbyException": RemoteStandbyError,
    "org.apache.hadoop.ipc.RetriableException": RemoteRetriableError,
    "org.apache.hadoop.hdfs.server.namenode.SafeModeException": RemoteRetriableError,
}


def remote_error(header: rpc.RpcResponseHeaderProto) -> RemoteError:
    """The Python exception for an ERROR or FATAL reply header."""
    java_class = header.exceptionClassName or "org.apache.hadoop.ipc.RemoteException"
    code = (
        rpc.RpcResponseHeaderProto.RpcErrorCodeProto.Name(header.errorDetail)
        if header.HasField("errorDetail")
        else ""
    )
    cls = REMOTE_EXCEPTIONS.get(java_class, RemoteError)
    fatal = header.status == rpc.RpcResponseHeaderProto.FATAL
    return cls(java_class, header.errorMsg, code, fatal)


# ---- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A block's identity: pool, id, generation stamp, and its length in bytes."""

    pool_id: str
    block_id: int
    generation_stamp: int
    num_bytes: int

    @classmethod
    def from_proto(cls, p: hdfs.ExtendedBlockProto) -> Block:
        return cls(p.poolId, p.blockId, p.generationStamp, p.numBytes)

    def to_proto(self) -> hdfs.ExtendedBlockProto:
        return hdfs.ExtendedBlockProto(
            poolId=self.pool_id, blockId=self.block_id,
            generationStamp=self.generation_stamp, numBytes=self.num_bytes,
        )

    @property
    def name(self) -> str:
        """Hadoop's block name, e.g. blk_1073741825_1001."""
        return f"blk_{self.block_id}_{self.generation_stamp}"


@dataclass(frozen=True, slots=True)
class DatanodeInfo:
    """A replica holder as the NameNode describes it."""

    ip: str
    hostname: str
    uuid: str
    xfer_port: int
    info_port: int
    ipc_port: int
    rack: str
    admin_state: str

    @classmethod
    def from_proto(cls, p: hdfs.DatanodeInfoProto) -> DatanodeInfo:
        i = p.id
        return cls(
            i.ipAddr, i.hostName, i.datanodeUuid, i.xferPort, i.infoPort, i.ipcPort,
            p.location, hdfs.DatanodeInfoProto.AdminState.Name(p.adminState),
        )

    @property
    def xfer_address(self) -> tuple[str, int]:
        """Where DataTransferProtocol requests for this replica go."""
        return self.ip, self.xfer_port

    def __str__(self) -> str:
        return f"{self.ip}:{self.xfer_port}"


@dataclass(frozen=True, slots=True)
class LocatedBlock:
    """One block of a file with its replicas, nearest first, and its read token."""

    block: Block
    offset: int
    locations: tuple[DatanodeInfo, ...]
    corrupt: bool
    token: sec.TokenProto
    storage_types: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, p: hdfs.LocatedBlockProto) -> LocatedBlock:
        return cls(
            Block.from_proto(p.b), p.offset, tuple(DatanodeInfo.from_proto(d) for d in p.locs),
            p.corrupt, p.blockToken,
            tuple(hdfs.StorageTypeProto.Name(t) for t in p.storageTypes),
        )

    @property
    def end(self) -> int:
        """File offset just past the block."""
        return self.offset + self.block.num_bytes


@dataclass(frozen=True, slots=True)
class LocatedBlocks:
    """Blocks of (a range of) a file, in file order."""

    file_length: int
    blocks: tuple[LocatedBlock, ...]
    under_construction: bool
    last_block_complete: bool
    encrypted: bool
    erasure_coded: bool

    @classmethod
    def from_proto(cls, p: hdfs.LocatedBlocksProto) -> LocatedBlocks:
        return cls(
            p.fileLength, tuple(LocatedBlock.from_proto(b) for b in p.blocks),
            p.underConstruction, p.isLastBlockComplete,
            p.HasField("fileEncryptionInfo"), p.HasField("ecPolicy"),
        )


@dataclass(frozen=True, slots=True)
class FileStatus:
    """stat() of an HDFS path. Times are milliseconds since the epoch."""

    path: str
    kind: str  # "file", "dir" or "symlink"
    length: int
    permission: int
    owner: str
    group: str
    modification_time: int
    access_time: int
    replication: int
    block_size: int
    file_id: int
    children: int
    symlink: str = ""

    @classmethod
    def from_proto(cls, p: hdfs.HdfsFileStatusProto, path: str) -> FileStatus:
        kinds = {1: "dir", 2: "file", 3: "symlink"}
        return cls(
            path, kinds.get(p.fileType, "unknown"), p.length, p.permission.perm & 0o7777,
            p.owner, p.group, p.modification_time, p.access_time, p.block_replication,
            p.blocksize, p.fileId, p.childrenNum, p.symlink.decode("utf-8", "replace"),
        )

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"


# ---- framing ----------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(*messages: Message) -> bytes:
    parts = []
    for m in messages:
        body = m.SerializeToString()
        parts.append(_varint(len(body)) + body)
    return b"".join(parts)


def frame(*messages: Message) -> bytes:
    """An IPC frame: 4-byte big-endian length, then each message varint-delimited."""
    body = _delimited(*messages)
    return len(body).to_bytes(4, "big") + body


def preamble(auth: int = AUTH_NONE) -> bytes:
    """The connection preamble: "hrpc", version 9, service class 0, auth protocol."""
    return b"hrpc" + bytes([IPC_VERSION, 0, auth])


def request_header(
    call_id: int, client_id: bytes, retry_count: int = 0
) -> rpc.RpcRequestHeaderProto:
    """RpcRequestHeaderProto for a protobuf-engine call (rpcKind 2, final packet)."""
    return rpc.RpcRequestHeaderProto(
        rpcKind=rpc.RPC_PROTOCOL_BUFFER,
        rpcOp=rpc.RpcRequestHeaderProto.RPC_FINAL_PACKET,
        callId=call_id,
        clientId=client_id,
        retryCount=retry_count,
    )


def connection_context(user: str, client_id: bytes) -> bytes:
    """Preamble plus connection-context frame: what a simple-auth client sends first (§6.4)."""
    ctx = ipc.IpcConnectionContextProto(protocol=CLIENT_PROTOCOL)
    ctx.userInfo.effectiveUser = user
    header = request_header(CONNECTION_CONTEXT_CALL_ID, client_id, retry_count=-1)
    return preamble() + frame(header, ctx)


def call_frame(
    call_id: int, client_id: bytes, method: str, request: Message, retry_count: int = 0
) -> bytes:
    """One call: RpcRequestHeader, RequestHeader(method, ClientProtocol, 1), request."""
    head = engine.RequestHeaderProto(
        methodName=method,
        declaringClassProtocolName=CLIENT_PROTOCOL,
        clientProtocolVersion=CLIENT_PROTOCOL_VERSION,
    )
    return frame(request_header(call_id, client_id, retry_count), head, request)


def ping_frame(client_id: bytes) -> bytes:
    """A keep-alive ping (callId -4); the server does not answer it."""
    return frame(request_header(PING_CALL_ID, client_id, retry_count=-1))


def _read_delimited(body: bytes, pos: int) -> tuple[bytes, int]:
    value = shift = 0
    while True:
        if pos >= len(body) or shift > 28:
            raise IpcProtocolError("truncated or oversized varint in a reply frame")
        b = body[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    if pos + value > len(body):
        raise IpcProtocolError(f"message of {value} bytes overruns its {len(body)}-byte frame")
    return body[pos : pos + value], pos + value


def parse_reply(body: bytes) -> tuple[rpc.RpcResponseHeaderProto, bytes]:
    """Split a reply frame's body (without the length) into header and response bytes.

    The header's callId is uint32 on the wire; use reply_call_id() for the signed value.
    Raises IpcProtocolError on malformed framing.
    """
    raw, pos = _read_delimited(body, 0)
    try:
        header = rpc.RpcResponseHeaderProto.FromString(raw)
    except Exception as exc:  # noqa: BLE001 - whatever the protobuf runtime raises on junk
        raise IpcProtocolError(f"undecodable RpcResponseHeaderProto: {exc}") from None
    if not header.IsInitialized():
        raise IpcProtocolError("RpcResponseHeaderProto lacks callId or status")
    if header.status != rpc.RpcResponseHeaderProto.SUCCESS:
        return header, b""
    payload, pos = _read_delimited(body, pos)
    return header, payload


def reply_call_id(header: rpc.RpcResponseHeaderProto) -> int:
    """The reply's callId as the signed int32 the client sent (e.g. -1 for 0xFFFFFFFF)."""
    cid = header.callId
    return cid - (1 << 32) if cid >= 1 << 31 else cid


# ---- the client ------------------------------------------------------------------------------


class _Broken(Exception):
    """Internal: the connection failed in a way a fresh connection may fix."""


def default_user() -> str:
    """HADOOP_USER_NAME if set (as the Java client honours it), else the login name."""
    return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()


class NameNodeClient:
    """A blocking ClientProtocol client over one reused connection (thread-safe, serial).

    `timeout` bounds each call (seconds, connect included). `connect` opens the TCP
    connection (e.g. from another network namespace); it defaults to a direct connect.
    Raises NameNodeError subclasses.
    """

    def __init__(
        self,
        host: str,
        port: int = 8020,
        *,
        user: str | None = None,
        timeout: float = 30.0,
        client_id: bytes | None = None,
        connect: Connector = direct_connect,
    ) -> None:
        self.address = (host, port)
        self._connector = connect
        self.user = user or default_user()
        self.timeout = timeout
        self.client_id = client_id or uuid.uuid4().bytes
        self._sock: socket.socket | None = None
        self._call_id = 0
        self._lock = threading.Lock()
        self.reconnects = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NameNodeClient({self.address[0]}:{self.address[1]}, user={self.user!r})"

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    # -- calls --------------------------------------------------------------------------------

    def call(self, method: str, request: Message, response_type: type[M]) -> M:
        """Invoke `method` and decode its reply as `response_type`.

        Raises RemoteError (by Java class), NameNodeTimeout, NameNodeConnectionError,
        IpcProtocolError.
        """
        with self._lock:
            try:
                return self._call_once(method, request, response_type, retry=0)
            except _Broken:
                # An idle connection the server closed, or a reset: reconnect once.
                self.close()
                self.reconnects += 1
                try:
                    return self._call_once(method, request, response_type, retry=1)
                except _Broken as exc:
                    self.close()
                    raise NameNodeConnectionError(
                        f"NameNode {self._addr()}: connection lost twice during {method}: {exc}"
                    ) from None

    def get_block_locations(
        self, path: str, offset: int = 0, length: int = MAX_FILE_LENGTH
    ) -> LocatedBlocks:
        """Blocks of `path` overlapping [offset, offset+length), with locations and tokens.

        Raises RemoteFileNotFoundError if the path does not exist (or is a directory).
        """
        req = cnp.GetBlockLocationsRequestProto(src=path, offset=offset, length=length)
        resp = self.call("getBlockLocations", req, cnp.GetBlockLocationsResponseProto)
        if not resp.HasField("locations"):
            raise PathNotFoundError(f"{path}: no such file", path)
        return LocatedBlocks.from_proto(resp.locations)

    def file_blocks(self, path: str) -> LocatedBlocks:
        """Every block of `path`, asking again from where an answer stopped if needed."""
        first = self.get_block_locations(path)
        blocks = list(first.blocks)
        while blocks and blocks[-1].end < first.file_length:
            more = self.get_block_locations(path, blocks[-1].end)
            new = [b for b in more.blocks if b.offset >= blocks[-1].end]
            if not new:
                break
            blocks += new
        return LocatedBlocks(
            first.file_length, tuple(blocks), first.under_construction,
            first.last_block_complete, first.encrypted, first.erasure_coded,
        )

    def get_file_info(self, path: str) -> FileStatus | None:
        """stat() of `path`, or None if it does not exist."""
        resp = self.call(
            "getFileInfo", cnp.GetFileInfoRequestProto(src=path), cnp.GetFileInfoResponseProto
        )
        if not resp.HasField("fs"):
            return None
        return FileStatus.from_proto(resp.fs, path)

    def list_status(self, path: str) -> Iterator[FileStatus]:
        """Entries of directory `path` (or `path` itself for a file), page by page.

        Each page is one getListing call; the next starts after the last name received.
        Raises PathNotFoundError if the path does not exist.
        """
        start_after = b""
        base = path.rstrip("/") or "/"
        while True:
            req = cnp.GetListingRequestProto(src=path, startAfter=start_after, needLocation=False)
            resp = self.call("getListing", req, cnp.GetListingResponseProto)
            if not resp.HasField("dirList"):
                raise PathNotFoundError(f"{path}: no such file or directory", path)
            page = resp.dirList.partialListing
            for st in page:
                name = st.path.decode("utf-8", "replace")
                full = path if not name else (base + name if base == "/" else f"{base}/{name}")
                yield FileStatus.from_proto(st, full)
            if resp.dirList.remainingEntries == 0 or not page:
                return
            start_after = page[-1].path

    def get_server_defaults(self) -> hdfs.FsServerDefaultsProto:
        """Block size, checksum type and chunk size, encryption flag of the cluster."""
        resp = self.call(
            "getServerDefaults", cnp.GetServerDefaultsRequestProto(),
            cnp.GetServerDefaultsResponseProto,
        )
        return resp.serverDefaults

    # -- connection ---------------------------------------------------------------------------

    def _addr(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _connect(self) -> socket.socket:
        try:
            sock = self._connector(self.address, self.timeout)
            sock.settimeout(self.timeout)
        except TimeoutError:
            raise NameNodeTimeout(
                f"NameNode {self._addr()}: no connection within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise NameNodeConnectionError(
                f"NameNode {self._addr()}: {exc.strerror or exc}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._send(connection_context(self.user, self.client_id))
        return sock

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except TimeoutError:
            self.close()
            raise NameNodeTimeout(f"NameNode {self._addr()}: send timed out") from None
        except OSError as exc:
            raise _Broken(f"send failed: {exc}") from None

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            except TimeoutError:
                self.close()
                raise NameNodeTimeout(
                    f"NameNode {self._addr()}: no reply within {self.timeout:g} s"
                ) from None
            except OSError as exc:
                raise _Broken(f"receive failed: {exc}") from None
            if not chunk:
                raise _Broken("connection closed by the NameNode")
            buf += chunk
        return bytes(buf)

    def _call_once(self, method: str, request: Message, response_type: type[M], retry: int) -> M:
        if self._sock is None:
            self._connect()
        call_id = self._call_id
        self._call_id = (self._call_id + 1) & 0x7FFFFFFF
        self._send(call_frame(call_id, self.client_id, method, request, retry))
        length = int.from_bytes(self._recv_exact(4), "big")
        if length > MAX_RESPONSE_LENGTH:
            self.close()
            raise IpcProtocolError(f"reply frame of {length} bytes exceeds {MAX_RESPONSE_LENGTH}")
        try:
            header, payload = parse_reply(self._recv_exact(length))
        except IpcProtocolError:
            self.close()
            raise
        got = reply_call_id(header)
        if header.status != rpc.RpcResponseHeaderProto.SUCCESS:
            err = remote_error(header)
            if err.fatal or got != call_id:
                self.close()  # the server closes after FATAL; stay in step either way
            raise err
        if got != call_id:
            self.close()
            raise IpcProtocolError(f"reply to call {got} while waiting for call {call_id}")
        try:
            reply: M = response_type.FromString(payload)
        except Exception as exc:  # noqa: BLE001 - whatever the protobuf runtime raises on junk
            raise IpcProtocolError(f"undecodable {response_type.__name__}: {exc}") from None
        return reply
