"""A TCP relay that flips one byte of what the upstream sends, for checksum-failure tests.

    python corrupting_relay.py LISTEN_HOST LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT FLIP_AT

Run inside a testbed namespace, it sits between a reader and a real DataNode: every accepted
connection is relayed to UPSTREAM in both directions unchanged, except that the byte at
offset FLIP_AT of the upstream -> client stream (counted per connection) is XORed with 0xFF.
It prints "listening" once ready and exits when its stdin closes, or after MAX_LIFETIME_S so
that a crashed test never leaves it behind.
"""

from __future__ import annotations

import socket
import sys
import threading

MAX_LIFETIME_S = 120.0


def pump(src: socket.socket, dst: socket.socket, flip_at: int | None) -> None:
    """Copy src to dst until EOF, flipping the byte at stream offset `flip_at` (if any)."""
    seen = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if flip_at is not None and seen <= flip_at < seen + len(data):
                buf = bytearray(data)
                buf[flip_at - seen] ^= 0xFF
                data = bytes(buf)
            seen += len(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listener: socket.socket, upstream: tuple[str, int], flip_at: int) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(upstream, timeout=10)
        except OSError:
            client.close()
            continue
        server.settimeout(None)
        threading.Thread(target=pump, args=(client, server, None), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, flip_at), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, up_host, up_port, flip = argv
    listener = socket.create_server((host, int(port)), reuse_port=False)
    threading.Thread(
        target=serve, args=(listener, (up_host, int(up_port)), int(flip)), daemon=True
    ).start()
    print("listening", flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait(MAX_LIFETIME_S)
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
