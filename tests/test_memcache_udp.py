"""torswitch.memcache_udp: every command against a real memcached over UDP on loopback; the
retry, late-reply and framing rules against a scripted UDP server (a test double for the loss
and reordering a real daemon on loopback never shows)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from torswitch.memcache_udp import (
    HEADER,
    MAX_PAYLOAD,
    McUdpError,
    UdpClient,
    parse_values,
    reply_complete,
)
from torswitch.peers import Memcached, PeerError, TextClient, start_memcached

Handler = Callable[[int, bytes, int], list[bytes]]


@pytest.fixture(scope="module")
def server() -> Iterator[Memcached]:
    try:
        m = start_memcached(udp=True)
    except PeerError as e:
        pytest.skip(str(e))
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def client(server: Memcached) -> Iterator[UdpClient]:
    with UdpClient(server.host, server.port, timeout=1.0, retries=2) as c:
        assert c.flush_all()
        yield c


class Scripted:
    """A UDP server on loopback whose replies come from `handler(request_id, payload, n)`,
    where n counts received datagrams from 1; it records every datagram it gets."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                datagram, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.received.append(datagram)
            rid = HEADER.unpack_from(datagram)[0]
            for reply in self.handler(rid, datagram[HEADER.size:], len(self.received)):
                self.sock.sendto(reply, addr)

    def close(self) -> None:
        self.stopping = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Handler], Scripted]]:
    started: list[Scripted] = []

    def start(handler: Handler) -> Scripted:
        started.append(Scripted(handler))
        return started[-1]

    yield start
    for s in started:
        s.close()


def frame(rid: int, seq: int, total: int, payload: bytes) -> bytes:
    return HEADER.pack(rid, seq, total, 0) + payload


# -- real memcached ---------------------------------------------------------------------------


def test_version_get_set_delete(client: UdpClient) -> None:
    assert client.version()[0].isdigit()
    assert client.get(b"k") is None
    assert client.set(b"k", b"v1", flags=7)
    assert client.get(b"k") == b"v1"
    assert client.get_with_flags(b"k") == (b"v1", 7)
    assert client.get_with_flags(b"absent") is None
    assert client.delete(b"k")
    assert not client.delete(b"k")
    assert client.get(b"k") is None


def test_add_replace_append_prepend(client: UdpClient) -> None:
    assert not client.replace(b"k", b"x")
    assert client.add(b"k", b"mid")
    assert not client.add(b"k", b"other")
    assert client.append(b"k", b">")
    assert client.prepend(b"k", b"<")
    assert client.get(b"k") == b"<mid>"
    assert client.replace(b"k", b"new")
    assert client.get(b"k") == b"new"
    assert not client.append(b"absent", b"x")


def test_gets_and_cas(client: UdpClient) -> None:
    assert client.gets(b"k") is None
    assert client.cas(b"k", b"v", 1) == "NOT_FOUND"
    client.set(b"k", b"v0")
    got = client.gets(b"k")
    assert got is not None and got[0] == b"v0"
    assert client.cas(b"k", b"v1", got[1]) == "STORED"
    assert client.cas(b"k", b"v2", got[1]) == "EXISTS"
    assert client.get(b"k") == b"v1"


def test_incr_decr_touch_gat(client: UdpClient) -> None:
    assert client.incr(b"n", 1) is None
    client.set(b"n", b"10")
    assert client.incr(b"n", 5) == 15
    assert client.decr(b"n", 20) == 0
    assert client.touch(b"n", 100)
    assert not client.touch(b"absent", 100)
    client.set(b"g", b"gv")
    assert client.gat(100, b"g") == b"gv"
    assert client.gat(100, b"absent") is None


def test_noreply_and_flush_all(client: UdpClient) -> None:
    assert client.set(b"q", b"quiet", noreply=True)
    assert client.get(b"q") == b"quiet"
    assert client.delete(b"q", noreply=True)
    assert client.get(b"q") is None
    client.set(b"q", b"x")
    assert client.flush_all()
    assert client.get(b"q") is None


def test_get_multi_is_one_request(client: UdpClient) -> None:
    for i in range(5):
        client.set(b"m%d" % i, b"value-%d" % i)
    rid = client.last_request_id
    got = client.get_multi([b"m0", b"m2", b"nope", b"m4"])
    assert got == {b"m0": b"value-0", b"m2": b"value-2", b"m4": b"value-4"}
    # memcached 1.6: a message per value (the last one carries END), each from seq 0
    assert [f[:2] for f in client.last_reply_datagrams] == [(0, 1)] * 3
    assert client.last_request_id == ((rid or 0) + 1) & 0xFFFF
    assert client.get_multi([]) == {}


def test_large_reply_spans_datagrams(client: UdpClient, server: Memcached) -> None:
    big = bytes(range(256)) * 400  # 100 KB, set over TCP: too big for one UDP datagram
    with TextClient(server.host, server.port) as t:
        t.set_many([(b"big", big)])
    assert client.get(b"big") == big
    frames = client.last_reply_datagrams
    total = frames[0][1]
    assert total > 1 and all(f[1] == total for f in frames)
    assert sorted(f[0] for f in frames) == list(range(total))
    assert all(len(f[2]) <= MAX_PAYLOAD for f in frames)
    assert b"".join(p for _, _, p in sorted(frames)) == b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (
        len(big), big)


def test_request_above_one_datagram_payload_is_sent_whole(client: UdpClient) -> None:
    value = b"f" * 20000  # IP fragments it; memcached reads it as one datagram
    assert client.set(b"frag", value)
    assert client.get(b"frag") == value


def test_server_error_lines_raise(client: UdpClient) -> None:
    with pytest.raises(McUdpError, match="server replied ERROR"):
        client.request(b"bogus_command\r\n")
    with pytest.raises(McUdpError, match="CLIENT_ERROR bad data chunk"):
        client.request(b"set k 0 0 2\r\nabc\r\n")
    client.set(b"s", b"text")
    with pytest.raises(McUdpError, match="CLIENT_ERROR cannot increment or decrement"):
        client.incr(b"s", 1)


def test_multi_datagram_request_is_refused(server: Memcached) -> None:
    # memcached 1.6 drops a request whose header says total != 1 without answering
    # (try_read_udp), so the client sees no reply, not an error line.
    with UdpClient(server.host, server.port, timeout=0.2, retries=1) as c:
        with pytest.raises(McUdpError, match="no complete reply .* after 2 sends"):
            c.request_datagrams([b"get ", b"k\r\n"])
        assert c.version()


def test_late_reply_with_old_request_id_is_ignored(client: UdpClient) -> None:
    client.set(b"old", b"stale")
    client.set(b"new", b"fresh")
    client.request(b"get old\r\n", expect_reply=False)  # its reply stays queued
    old_id = client.last_request_id
    assert client.get(b"new") == b"fresh"
    assert client.last_request_id == ((old_id or 0) + 1) & 0xFFFF


def test_request_id_wraps(client: UdpClient) -> None:
    client._next_id = 0xFFFF
    client.version()
    assert client.last_request_id == 0xFFFF
    client.version()
    assert client.last_request_id == 0


@pytest.mark.parametrize("key", [b"", b"k" * 251, b"a b", b"a\r\nb", b"tab\t", b"\x00", b"\x7f"])
def test_bad_keys_are_refused_before_sending(client: UdpClient, key: bytes) -> None:
    rid = client.last_request_id
    with pytest.raises(ValueError):
        client.get(key)
    with pytest.raises(ValueError):
        client.set(key, b"v")
    with pytest.raises(ValueError):
        client.get_multi([b"fine", key])
    assert client.last_request_id == rid


def test_longest_and_high_byte_keys_are_fine(client: UdpClient) -> None:
    for key in (b"k" * 250, b"\x80\xff-key"):
        assert client.set(key, b"v")
        assert client.get(key) == b"v"


# -- scripted server: loss, reordering, framing -----------------------------------------------


def test_retry_resends_the_same_request_after_a_drop(scripted: Callable[[Handler], Scripted]) -> None:
    srv = scripted(lambda rid, _p, n: [] if n == 1 else [frame(rid, 0, 1, b"VERSION 9.9\r\n")])
    with UdpClient("127.0.0.1", srv.port, timeout=0.2, retries=2) as c:
        assert c.version() == "9.9"
    assert len(srv.received) == 2 and srv.received[0] == srv.received[1]


def test_gives_up_after_retries(scripted: Callable[[Handler], Scripted]) -> None:
    srv = scripted(lambda _r, _p, _n: [])
    with UdpClient("127.0.0.1", srv.port, timeout=0.1, retries=2) as c, \
            pytest.raises(McUdpError, match="after 3 sends"):
        c.version()
    assert len(srv.received) == 3


def test_reassembly_ignores_other_ids_and_duplicates(scripted: Callable[[Handler], Scripted]) -> None:
    reply = b"VALUE k 0 10\r\n0123456789\r\nEND\r\n"
    parts = [reply[:10], reply[10:20], reply[20:]]

    def handler(rid: int, _p: bytes, _n: int) -> list[bytes]:
        return [frame((rid - 1) & 0xFFFF, 0, 1, b"END\r\n"), frame(rid, 2, 3, parts[2]),
                frame(rid, 0, 3, parts[0]), frame(rid, 2, 3, b"junk"),
                frame(rid, 1, 3, parts[1])]

    srv = scripted(handler)
    with UdpClient("127.0.0.1", srv.port, timeout=0.5, retries=0) as c:
        assert c.get(b"k") == b"0123456789"
        assert c.last_reply_datagrams == [(2, 3, parts[2]), (0, 3, parts[0]), (1, 3, parts[1])]


def test_reply_of_several_messages(scripted: Callable[[Handler], Scripted]) -> None:
    # memcached 1.6 style: VALUE a (two datagrams), VALUE b, END - each a message from seq 0
    def handler(rid: int, _p: bytes, _n: int) -> list[bytes]:
        return [frame(rid, 1, 2, b"ab\r\n"), frame(rid, 0, 2, b"VALUE a 0 2\r\n"),
                frame(rid, 0, 1, b"VALUE b 3 1\r\nc\r\n"), frame(rid, 0, 1, b"END\r\n")]

    srv = scripted(handler)
    with UdpClient("127.0.0.1", srv.port, timeout=0.5, retries=0) as c:
        assert c.get_multi([b"a", b"b"]) == {b"a": b"ab", b"b": b"c"}
        assert [f[:2] for f in c.last_reply_datagrams] == [(1, 2), (0, 2), (0, 1), (0, 1)]


def test_empty_zero_of_zero_frames_are_ignored(scripted: Callable[[Handler], Scripted]) -> None:
    # memcached 1.6 follows some all-miss multi-gets with an empty frame "seq 0 of 0"
    srv = scripted(lambda rid, _p, _n: [HEADER.pack(rid, 0, 0, 0), frame(rid, 0, 1, b"END\r\n")])
    with UdpClient("127.0.0.1", srv.port, timeout=0.5, retries=0) as c:
        assert c.get_multi([b"a", b"b"]) == {}


def test_reply_complete() -> None:
    assert reply_complete(b"END\r\n") and reply_complete(b"STORED\r\n")
    assert reply_complete(b"VALUE a 0 2\r\n\r\n\r\nEND\r\n")
    assert reply_complete(b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n")
    assert not reply_complete(b"VALUE a 0 2\r\n\r\n\r\n")
    assert not reply_complete(b"VALUE a 0 5\r\nEND\r\n")
    assert not reply_complete(b"STAT pid 1\r\n")
    assert not reply_complete(b"STOR")


def test_request_datagrams_framing(scripted: Callable[[Handler], Scripted]) -> None:
    srv = scripted(lambda rid, _p, n: [frame(rid, 0, 1, b"END\r\n")] if n == 3 else [])
    with UdpClient("127.0.0.1", srv.port, timeout=0.5, retries=0) as c:
        assert c.request_datagrams([b"get ", b"a b", b"\r\n"]) == b"END\r\n"
        rid = c.last_request_id
    headers = [HEADER.unpack_from(d) for d in srv.received]
    assert headers == [(rid, 0, 3, 0), (rid, 1, 3, 0), (rid, 2, 3, 0)]
    assert b"".join(d[HEADER.size:] for d in srv.received) == b"get a b\r\n"


@pytest.mark.parametrize("bad", [(0, 0), (3, 2), (0, 2, 1, 3)])
def test_inconsistent_frame_headers_raise(scripted: Callable[[Handler], Scripted],
                                          bad: tuple[int, ...]) -> None:
    pairs = list(zip(bad[::2], bad[1::2], strict=True))
    srv = scripted(lambda rid, _p, _n: [frame(rid, s, t, b"x") for s, t in pairs])
    with UdpClient("127.0.0.1", srv.port, timeout=0.5, retries=0) as c, \
            pytest.raises(McUdpError, match="bad frame header"):
        c.version()


# -- parse_values -----------------------------------------------------------------------------


def test_parse_values() -> None:
    assert parse_values(b"END\r\n") == []
    assert parse_values(b"VALUE a 1 2\r\nxy\r\nVALUE b 0 0 77\r\n\r\nEND\r\n") == [
        (b"a", 1, b"xy", None), (b"b", 0, b"", 77)]
    assert parse_values(b"VALUE a 0 4\r\n\r\n\r\n\r\nEND\r\n") == [(b"a", 0, b"\r\n\r\n", None)]


@pytest.mark.parametrize("reply", [
    b"", b"VALUE a 0 2\r\nxy\r\n", b"VALUE a 0 2\r\nxy\r\nEND", b"VALUE a 0 3\r\nxy\r\nEND\r\n",
    b"VALUE a 0\r\nEND\r\n", b"VALUE a x 2\r\nxy\r\nEND\r\n", b"VALUE a 0 -1\r\nEND\r\n",
    b"END\r\nEND\r\n", b"STORED\r\n", b"SERVER_ERROR out of memory\r\n",
    b"VALUE a 0 1\r\nx\r\nSERVER_ERROR oops\r\n",
])
def test_parse_values_rejects_malformed(reply: bytes) -> None:
    with pytest.raises(McUdpError):
        parse_values(reply)
