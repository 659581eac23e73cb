"""A stand-in for the block engine, for interception and supervision tests.

A plain TCP listener (one thread per connection). To every connection it writes one line,

    ORIGINAL_DST <address>:<port> PEER <client address>

where the original destination comes from getsockopt(SOL_IP, SO_ORIGINAL_DST) (``none`` when
the connection was not redirected and conntrack has no entry), then reads until the client
closes, and closes. So a redirected client learns which DataNode it had asked for, and the
supervisor's half-close probe gets its answer.

Usage: python fake_engine.py HOST PORT [--exit-after S] [--exit-status N]
  --exit-after S: exit with --exit-status (default 3) after S seconds; 0 exits at once,
  without listening (an engine that cannot start).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import threading

SO_ORIGINAL_DST = 80


def original_dst(conn: socket.socket) -> str:
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return "none"
    port = struct.unpack_from("!H", raw, 2)[0]
    return f"{socket.inet_ntoa(raw[4:8])}:{port}"


def handle(conn: socket.socket) -> None:
    with conn:
        try:
            peer = conn.getpeername()[0]
            conn.sendall(f"ORIGINAL_DST {original_dst(conn)} PEER {peer}\n".encode())
            while conn.recv(65536):
                pass
        except OSError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--exit-status", type=int, default=3)
    args = parser.parse_args()
    if args.exit_after is not None:
        if args.exit_after <= 0:
            return int(args.exit_status)
        timer = threading.Timer(args.exit_after, os._exit, (args.exit_status,))
        timer.daemon = True
        timer.start()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.host, args.port))
    server.listen(128)
    print(f"fake engine listening on {args.host}:{args.port}, pid {os.getpid()}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
