"""Real peers for tests, benchmarks and the demo: memcached and nutcracker from Debian.

Each peer is a child process on loopback with its own port, started with a readiness wait
(the port answers `version`) and stopped on exit. A tiny memcached text-protocol client is
here too, for setting keys through a proxy and asking each server directly what it holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Self

from torswitch.errors import TorswitchError


class PeerError(TorswitchError):
    """A peer daemon is missing, did not start, or answered nonsense."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not path:
        raise PeerError(f"{name} is not installed (Debian package {name}; `make deps` installs it)")
    return path


def _wait_ready(host: str, port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerError(f"{what} exited with status {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.sendall(b"version\r\n")
                if s.recv(64).startswith(b"VERSION"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise PeerError(f"{what} did not answer on {host}:{port} within {timeout:.0f} s")


@dataclass
class Memcached:
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_memcached(host: str = "127.0.0.1", port: int | None = None, memory_mb: int = 64,
                    udp: bool = False) -> Memcached:
    """Start a memcached (TCP, and UDP on the same port if `udp`). Raises PeerError."""
    port = port or free_port(host)
    args = [_binary("memcached"), "-l", host, "-p", str(port), "-U", str(port if udp else 0),
            "-m", str(memory_mb), "-t", "1", "-c", "1024"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_ready(host, port, proc, f"memcached on {host}:{port}")
    return Memcached(host, port, proc)


@dataclass
class Nutcracker:
    listen: tuple[str, int]
    proc: subprocess.Popen[bytes]
    workdir: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_nutcracker(config_yaml: str, listen: tuple[str, int]) -> Nutcracker:
    """Run nutcracker on `config_yaml` (whose pool listens on `listen`). Raises PeerError."""
    workdir = tempfile.mkdtemp(prefix="tsw-nutcracker-")
    conf = os.path.join(workdir, "nutcracker.yml")
    with open(conf, "w") as f:
        f.write(config_yaml)
    binary = _binary("nutcracker")
    check = subprocess.run([binary, "-t", "-c", conf], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise PeerError(f"nutcracker rejected the config: {check.stderr.strip()}")
    stats = free_port()
    proc = subprocess.Popen(
        [binary, "-c", conf, "-s", str(stats), "-a", "127.0.0.1", "-o", os.path.join(workdir, "log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_ready(*listen, proc, f"nutcracker on {listen[0]}:{listen[1]}")
    return Nutcracker(listen, proc, workdir)


class TextClient:
    """Blocking memcached text-protocol client, pipelined; enough for tests and the demo."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PeerError("connection closed mid-reply")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PeerError("connection closed mid-value")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def set_many(self, items: Iterable[tuple[bytes, bytes]], window: int = 200) -> None:
        """Store every (key, value); raises PeerError on any reply but STORED."""
        batch: list[bytes] = []

        def flush() -> None:
            self.sock.sendall(b"".join(batch))
            for _ in range(len(batch)):
                reply = self._line()
                if reply != b"STORED":
                    raise PeerError(f"set failed: {reply!r}")
            batch.clear()

        for key, value in items:
            batch.append(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
            if len(batch) >= window:
                flush()
        if batch:
            flush()

    def get_many(self, keys: Sequence[bytes], per_request: int = 100) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        for i in range(0, len(keys), per_request):
            self.sock.sendall(b"get " + b" ".join(keys[i : i + per_request]) + b"\r\n")
            while True:
                line = self._line()
                if line == b"END":
                    break
                parts = line.split(b" ")
                if parts[0] != b"VALUE" or len(parts) < 4:
                    raise PeerError(f"unexpected reply to get: {line[:80]!r}")
                value = self._exact(int(parts[3]) + 2)[:-2]
                found[parts[1]] = value
        return found

    def flush_all(self) -> None:
        self.sock.sendall(b"flush_all\r\n")
        if self._line() != b"OK":
            raise PeerError("flush_all failed")


def random_keys(n: int, seed: int) -> list[bytes]:
    """Distinct memcached-legal keys of 1..60 bytes, some with bytes >= 0x80.

    High bytes matter: several TwemProxy hashes read them as signed char.
    """
    import random

    rng = random.Random(seed)
    printable = bytes(range(0x21, 0x7F))
    high = bytes(range(0x80, 0x100))
    keys: set[bytes] = set()
    while len(keys) < n:
        length = rng.randint(1, 60)
        alphabet = printable + high if rng.random() < 0.2 else printable
        keys.add(bytes(rng.choice(alphabet) for _ in range(length)))
    return sorted(keys)


def where_keys_live(servers: Sequence[Memcached], keys: Sequence[bytes]) -> dict[bytes, list[int]]:
    """Ask every server directly for every key: key -> indexes of servers holding it."""
    held: dict[bytes, list[int]] = {k: [] for k in keys}
    for idx, server in enumerate(servers):
        with TextClient(server.host, server.port) as c:
            for key in c.get_many(keys):
                held[key].append(idx)
    return held


@contextlib.contextmanager
def memcached_servers(hosts: Sequence[tuple[str, int | None]]) -> Iterator[list[Memcached]]:
    started: list[Memcached] = []
    try:
        for host, port in hosts:
            started.append(start_memcached(host, port))
        yield started
    finally:
        for m in started:
            m.stop()


def placement_check_demo(nkeys: int) -> int:
    """The demo: keys set through nutcracker land where torswitch's ring says they do."""
    from tqdm import tqdm

    from torswitch import config, routing

    pools = {
        "ketama+fnv1a_64": ("ketama", "fnv1a_64", ["1", "1", "1"]),
        "ketama+md5, weights 1:2:3": ("ketama", "md5", ["1", "2", "3"]),
        "modula+crc32a": ("modula", "crc32a", ["1", "1", "1"]),
    }
    print("torswitch demo: does torswitch's key-routing core place keys exactly as nutcracker?")
    keys = random_keys(nkeys, seed=2014)
    failures = 0
    with memcached_servers([("127.0.0.1", None)] * 3) as servers:
        for title, (dist, hash_name, weights) in pools.items():
            for s in servers:
                with TextClient(s.host, s.port) as c:
                    c.flush_all()
            listen = ("127.0.0.1", free_port())
            lines = [f"   - {s.address}:{w}" for s, w in zip(servers, weights, strict=True)]
            yml = (f"demo:\n  listen: {listen[0]}:{listen[1]}\n  hash: {hash_name}\n"
                   f"  distribution: {dist}\n  servers:\n" + "\n".join(lines) + "\n")
            nc = start_nutcracker(yml, listen)
            try:
                with TextClient(*listen) as c:
                    chunk = 500
                    for i in tqdm(range(0, len(keys), chunk), desc=f"set via nutcracker ({title})",
                                  unit_scale=chunk, leave=False):
                        c.set_many((k, b"v") for k in keys[i : i + chunk])
            finally:
                nc.stop()
            held = where_keys_live(servers, keys)
            ring = routing.Ring.from_pool(config.loads(yml).pool("demo"))
            predicted = ring.index_batch(keys)
            agree = sum(1 for k, p in zip(keys, predicted, strict=True) if held[k] == [p])
            failures += len(keys) - agree
            print(f"  {title:28s} {agree}/{len(keys)} keys on the server torswitch predicts")
    print()
    print("result:", "all keys agree" if failures == 0 else f"{failures} keys DISAGREE")
    return 0 if failures == 0 else 1
