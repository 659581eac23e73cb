"""A blocking memcached text-protocol client over UDP, for tests of the UDP redirect and cache.

memcached's UDP framing (protocol.txt, "UDP protocol"): every datagram starts with an 8-byte
frame header of four big-endian uint16 - request id, sequence number, total datagrams in this
message, reserved (0). The server echoes the request id; a reply longer than one datagram is
split into `total` datagrams numbered 0..total-1 that the client concatenates in sequence order.
The same section tells clients to discard datagrams with an unknown request id, as late answers
to earlier requests; duplicates are dropped too.

memcached 1.6 deviates from that text: it frames each response object of a reply as a message
of its own, so "get a b" comes back as three messages (VALUE a, VALUE b, END), each numbered
from sequence 0 and all carrying the request id. The client therefore reassembles message after
message, in arrival order, until their concatenation is a whole text reply (`reply_complete`).
A reply that is one message, as protocol.txt describes, is the special case.

Loss is handled the simple way: if the whole reply has not arrived `timeout` seconds after a
send, the request is sent again with the same request id, at most `retries` times. Datagrams
of a partial reply are discarded on a resend, so one reply is never stitched from two answers.
memcached refuses requests of more than one datagram (it drops them unanswered);
`request_datagrams` sends them anyway, because the data plane must pass them through untouched.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Sequence
from typing import Self

from torswitch.errors import TorswitchError

HEADER = struct.Struct(">HHHH")
# memcached's UDP_MAX_PAYLOAD_SIZE: the payload size it splits replies at.
MAX_PAYLOAD = 1400
MAX_KEY = 250
_ERROR_PREFIXES = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")


class McUdpError(TorswitchError):
    """No reply after every retry, a malformed reply, or ERROR/CLIENT_ERROR/SERVER_ERROR."""


def check_key(key: bytes) -> bytes:
    """Return `key` if memcached accepts it (1..250 bytes, no whitespace or control bytes)."""
    if not isinstance(key, bytes):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if not 1 <= len(key) <= MAX_KEY:
        raise ValueError(f"key length {len(key)} is outside 1..{MAX_KEY}")
    if any(b <= 0x20 or b == 0x7F for b in key):
        raise ValueError(f"key {key[:40]!r} contains whitespace or a control character")
    return key


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value < 1 << 32:
        raise ValueError(f"{name} {value} is outside 0..2^32-1")


def _raise_if_error(reply: bytes) -> None:
    if reply.startswith(_ERROR_PREFIXES):
        line = reply.split(b"\r\n", 1)[0]
        raise McUdpError(f"server replied {line.decode('latin-1')}")


def _single_line(reply: bytes, what: str) -> bytes:
    """The one line of a one-line reply, error replies raised."""
    _raise_if_error(reply)
    if not reply.endswith(b"\r\n") or reply.count(b"\r\n") != 1:
        raise McUdpError(f"malformed reply to {what}: {reply[:80]!r}")
    return reply[:-2]


def reply_complete(data: bytes) -> bool:
    """Whether `data` is a whole text-protocol reply: any VALUE blocks and STAT/ITEM lines, then
    one final line (END, STORED, an error, ...). Malformed data counts as complete, for the
    caller's parser to reject."""
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return False
        line = data[pos:eol]
        pos = eol + 2
        if line.startswith(b"VALUE "):
            fields = line.split(b" ")
            if len(fields) < 4 or not fields[3].isdigit():
                return True
            pos += int(fields[3]) + 2
            if pos > len(data):
                return False
        elif not line.startswith((b"STAT ", b"ITEM ")):
            return True


def parse_values(reply: bytes) -> list[tuple[bytes, int, bytes, int | None]]:
    """Parse a retrieval reply ("VALUE key flags bytes [cas]" blocks, then END) into
    (key, flags, data, cas) tuples. Raises McUdpError on anything else, a missing END included."""
    _raise_if_error(reply)
    values: list[tuple[bytes, int, bytes, int | None]] = []
    pos = 0
    while True:
        eol = reply.find(b"\r\n", pos)
        if eol < 0:
            raise McUdpError(f"reply ends without END after {len(values)} values")
        line = reply[pos:eol]
        pos = eol + 2
        if line == b"END":
            if pos != len(reply):
                raise McUdpError(f"{len(reply) - pos} bytes after END: {reply[pos:pos + 40]!r}")
            return values
        if line.startswith(_ERROR_PREFIXES):
            raise McUdpError(f"server replied {line.decode('latin-1')}")
        parts = line.split(b" ")
        if parts[0] != b"VALUE" or len(parts) not in (4, 5):
            raise McUdpError(f"malformed value line {line[:80]!r}")
        try:
            flags, size = int(parts[2]), int(parts[3])
            cas = int(parts[4]) if len(parts) == 5 else None
        except ValueError:
            raise McUdpError(f"malformed value line {line[:80]!r}") from None
        if size < 0 or flags < 0:
            raise McUdpError(f"malformed value line {line[:80]!r}")
        if reply[pos + size : pos + size + 2] != b"\r\n":
            raise McUdpError(f"value of {parts[1][:40]!r} is not {size} bytes followed by CRLF")
        values.append((parts[1], flags, reply[pos : pos + size], cas))
        pos += size + 2


class UdpClient:
    """One UDP socket talking to one memcached (or to anything that answers for it).

    Not thread-safe. The socket is not connected: a redirecting switch may answer from an
    address other than `host`, so replies are matched by request id only.
    """

    def __init__(self, host: str, port: int, timeout: float = 1.0, retries: int = 3,
                 bind: tuple[str, int] | None = None) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.host, self.port = host, port
        self._addr = addr
        self.timeout = timeout
        self.retries = retries
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if bind is not None:
                self.sock.bind(bind)
        except OSError:
            self.sock.close()
            raise
        self._next_id = random.randrange(1 << 16)
        self._last_id: int | None = None
        self._last_datagrams: list[tuple[int, int, bytes]] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_request_id(self) -> int | None:
        """Request id of the latest request, None before the first."""
        return self._last_id

    @property
    def last_reply_datagrams(self) -> list[tuple[int, int, bytes]]:
        """(seq, total, payload) of each datagram of the latest reply, in arrival order."""
        return list(self._last_datagrams)

    # -- framing ------------------------------------------------------------------------------

    def request(self, payload: bytes, expect_reply: bool = True) -> bytes:
        """Send `payload` (a whole request, unframed) as one datagram, whatever its size, and
        return the reassembled reply (b"" if not `expect_reply`). An ERROR, CLIENT_ERROR or
        SERVER_ERROR reply raises McUdpError."""
        return self._exchange([payload], expect_reply)

    def request_datagrams(self, chunks: Sequence[bytes]) -> bytes:
        """Send one request split over len(chunks) datagrams and return the reassembled reply."""
        if not chunks or len(chunks) >= 1 << 16:
            raise ValueError(f"{len(chunks)} chunks: need 1..65535")
        return self._exchange(list(chunks), True)

    def _exchange(self, chunks: list[bytes], expect_reply: bool) -> bytes:
        request_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFF
        self._last_id = request_id
        self._last_datagrams = []
        datagrams = [HEADER.pack(request_id, seq, len(chunks), 0) + chunk
                     for seq, chunk in enumerate(chunks)]
        for _ in range(self.retries + 1):
            for datagram in datagrams:
                self.sock.sendto(datagram, self._addr)
            if not expect_reply:
                return b""
            reply = self._collect(request_id)
            if reply is not None:
                _raise_if_error(reply)
                return reply
        raise McUdpError(f"no complete reply to request id {request_id} from "
                         f"{self.host}:{self.port} after {self.retries + 1} sends "
                         f"of {self.timeout:g} s each")

    def _collect(self, request_id: int) -> bytes | None:
        """Reassemble the reply to `request_id`; None if it is incomplete after `timeout`."""
        reply = b""
        parts: dict[int, bytes] = {}  # the message being assembled
        total = 0
        self._last_datagrams = []
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                datagram = self.sock.recv(65536)
            except TimeoutError:
                return None
            if len(datagram) < HEADER.size:
                continue
            rid, seq, count, _reserved = HEADER.unpack_from(datagram)
            if rid != request_id:
                continue
            if count == 0 and seq == 0 and len(datagram) == HEADER.size:
                continue  # memcached 1.6 sends these empty "0 of 0" frames after some replies
            if count == 0 or seq >= count or (parts and count != total):
                raise McUdpError(f"bad frame header for request id {rid}: seq {seq} of {count}"
                                 + (f", earlier datagrams said {total}" if parts else ""))
            if seq in parts:
                continue
            total = count
            parts[seq] = datagram[HEADER.size:]
            self._last_datagrams.append((seq, count, parts[seq]))
            if len(parts) == total:
                reply += b"".join(parts[i] for i in range(total))
                parts = {}
                if reply_complete(reply):
                    return reply

    # -- commands -----------------------------------------------------------------------------

    def _retrieve(self, command: bytes, keys: Sequence[bytes],
                  prefix: bytes = b"") -> list[tuple[bytes, int, bytes, int | None]]:
        for key in keys:
            check_key(key)
        reply = self.request(command + b" " + prefix + b" ".join(keys) + b"\r\n")
        values = parse_values(reply)
        for key, _, _, _ in values:
            if key not in keys:
                raise McUdpError(f"reply carries key {key[:40]!r}, which was not asked for")
        return values

    def get(self, key: bytes) -> bytes | None:
        values = self._retrieve(b"get", [key])
        return values[0][2] if values else None

    def get_multi(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """One "get k1 k2 ..." request; keys that missed are absent from the result."""
        if not keys:
            return {}
        return {k: data for k, _, data, _ in self._retrieve(b"get", keys)}

    def gets(self, key: bytes) -> tuple[bytes, int] | None:
        """(value, cas unique) or None."""
        values = self._retrieve(b"gets", [key])
        if not values:
            return None
        cas = values[0][3]
        if cas is None:
            raise McUdpError("reply to gets carries no cas unique")
        return values[0][2], cas

    def get_with_flags(self, key: bytes) -> tuple[bytes, int] | None:
        """(value, flags) or None."""
        values = self._retrieve(b"get", [key])
        return (values[0][2], values[0][1]) if values else None

    def gat(self, exptime: int, key: bytes) -> bytes | None:
        """Get and touch: the value (or None), its expiry set to `exptime`."""
        values = self._retrieve(b"gat", [key], b"%d " % exptime)
        return values[0][2] if values else None

    def _store(self, verb: bytes, key: bytes, value: bytes, flags: int, exptime: int,
               noreply: bool, cas_unique: int | None = None) -> bytes:
        check_key(key)
        _check_u32("flags", flags)
        line = b"%s %s %d %d %d" % (verb, key, flags, exptime, len(value))
        if cas_unique is not None:
            line += b" %d" % cas_unique
        if noreply:
            line += b" noreply"
        reply = self.request(line + b"\r\n" + value + b"\r\n", expect_reply=not noreply)
        return b"STORED" if noreply else _single_line(reply, verb.decode())

    def _stored(self, verb: bytes, key: bytes, value: bytes, flags: int, exptime: int,
                noreply: bool) -> bool:
        line = self._store(verb, key, value, flags, exptime, noreply)
        if line not in (b"STORED", b"NOT_STORED"):
            raise McUdpError(f"unexpected reply to {verb.decode()}: {line[:80]!r}")
        return line == b"STORED"

    def set(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0,
            noreply: bool = False) -> bool:
        return self._stored(b"set", key, value, flags, exptime, noreply)

    def add(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0,
            noreply: bool = False) -> bool:
        return self._stored(b"add", key, value, flags, exptime, noreply)

    def replace(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0,
                noreply: bool = False) -> bool:
        return self._stored(b"replace", key, value, flags, exptime, noreply)

    def append(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0,
               noreply: bool = False) -> bool:
        return self._stored(b"append", key, value, flags, exptime, noreply)

    def prepend(self, key: bytes, value: bytes, flags: int = 0, exptime: int = 0,
                noreply: bool = False) -> bool:
        return self._stored(b"prepend", key, value, flags, exptime, noreply)

    def cas(self, key: bytes, value: bytes, cas_unique: int, flags: int = 0,
            exptime: int = 0) -> str:
        """"STORED", "EXISTS" (changed since the gets) or "NOT_FOUND"."""
        if cas_unique < 0:
            raise ValueError(f"cas unique {cas_unique} is negative")
        line = self._store(b"cas", key, value, flags, exptime, False, cas_unique)
        if line not in (b"STORED", b"EXISTS", b"NOT_FOUND"):
            raise McUdpError(f"unexpected reply to cas: {line[:80]!r}")
        return line.decode()

    def delete(self, key: bytes, noreply: bool = False) -> bool:
        """True if the key was deleted, False if it was not there."""
        check_key(key)
        reply = self.request(b"delete %s%s\r\n" % (key, b" noreply" if noreply else b""),
                             expect_reply=not noreply)
        if noreply:
            return True
        line = _single_line(reply, "delete")
        if line not in (b"DELETED", b"NOT_FOUND"):
            raise McUdpError(f"unexpected reply to delete: {line[:80]!r}")
        return line == b"DELETED"

    def _arith(self, verb: bytes, key: bytes, delta: int) -> int | None:
        check_key(key)
        if not 0 <= delta < 1 << 64:
            raise ValueError(f"delta {delta} is outside 0..2^64-1")
        line = _single_line(self.request(b"%s %s %d\r\n" % (verb, key, delta)), verb.decode())
        if line == b"NOT_FOUND":
            return None
        if not line.isdigit():
            raise McUdpError(f"unexpected reply to {verb.decode()}: {line[:80]!r}")
        return int(line)

    def incr(self, key: bytes, delta: int) -> int | None:
        """The new value, or None if the key is not there."""
        return self._arith(b"incr", key, delta)

    def decr(self, key: bytes, delta: int) -> int | None:
        """The new value (memcached stops at 0), or None if the key is not there."""
        return self._arith(b"decr", key, delta)

    def touch(self, key: bytes, exptime: int) -> bool:
        check_key(key)
        line = _single_line(self.request(b"touch %s %d\r\n" % (key, exptime)), "touch")
        if line not in (b"TOUCHED", b"NOT_FOUND"):
            raise McUdpError(f"unexpected reply to touch: {line[:80]!r}")
        return line == b"TOUCHED"

    def flush_all(self) -> bool:
        return _single_line(self.request(b"flush_all\r\n"), "flush_all") == b"OK"

    def version(self) -> str:
        line = _single_line(self.request(b"version\r\n"), "version")
        if not line.startswith(b"VERSION "):
            raise McUdpError(f"unexpected reply to version: {line[:80]!r}")
        return line[8:].decode("latin-1")
