"""Network-namespace primitives: list, run a command inside, open a socket inside, find processes.

Two ways into a namespace are used, for different costs:

* `exec_argv` / `run` prefix a command with ``ip netns exec NS``: a new process, needed for
  anything that opens its own sockets (Java, hdfs-native, tc, ethtool).
* `connect` opens a TCP socket from a short-lived thread that has called setns(2). A network
  namespace is a per-thread attribute on Linux and a socket keeps the namespace it was created
  in, so the socket works from any thread afterwards. JMX polling uses this: no process per
  probe, and the probe starts in the target's own namespace so it never crosses the ToR.

Everything here needs CAP_SYS_ADMIN (root); callers check that once, up front.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from torswitch.testbed.errors import StartupFailed

NETNS_RUN_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000  # <linux/sched.h>


def list_namespaces() -> list[str]:
    """Names of the named network namespaces (those ``ip netns add`` created)."""
    try:
        return sorted(p.name for p in NETNS_RUN_DIR.iterdir())
    except FileNotFoundError:
        return []


def exists(ns: str) -> bool:
    """Whether the named namespace exists."""
    return (NETNS_RUN_DIR / ns).exists()


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside namespace `ns`."""
    return ["ip", "netns", "exec", ns, *argv]


def run(
    argv: Sequence[str],
    *,
    ns: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a short command (in `ns` if given), capturing text output.

    `timeout` is in seconds. With `check`, a non-zero exit raises `StartupFailed` naming the
    command and quoting its stderr; a missing program raises `StartupFailed` as well.
    """
    full = exec_argv(ns, argv) if ns else list(argv)
    try:
        proc = subprocess.run(
            full,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise StartupFailed(f"{full[0]}: not found (is it installed?)") from exc
    except subprocess.TimeoutExpired as exc:
        raise StartupFailed(f"`{' '.join(full)}` did not finish in {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise StartupFailed(
            f"`{' '.join(full)}` failed with status {proc.returncode}"
            + (f": {detail[-1]}" if detail else "")
        )
    return proc


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def connect(ns: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """Open a TCP connection to `host`:`port` from inside namespace `ns`.

    `timeout` (seconds) applies to the connect and stays set on the returned socket. Raises
    `FileNotFoundError` if the namespace does not exist and the usual `OSError`s of connect.
    """
    result: list[socket.socket | OSError] = []

    def worker() -> None:
        try:
            fd = os.open(NETNS_RUN_DIR / ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc().setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(socket.create_connection((host, port), timeout=timeout))
        except OSError as exc:  # handed to the calling thread below
            result.append(exc)

    # The thread ends right after connecting, so the namespace switch dies with it.
    thread = threading.Thread(target=worker, name=f"netns-connect-{ns}", daemon=True)
    thread.start()
    thread.join()
    if not result:
        raise OSError(f"connect from namespace {ns} to {host}:{port} failed")
    outcome = result[0]
    if isinstance(outcome, OSError):
        raise outcome
    return outcome


def pids(ns: str) -> list[int]:
    """PIDs of the processes whose network namespace is `ns` (``ip netns pids``)."""
    if not exists(ns):
        return []
    proc = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def delete(ns: str) -> None:
    """Delete namespace `ns`; a namespace that is already gone is not an error.

    The kernel destroys the namespace, and the veth ends in it with their peers, once no
    process is left inside; callers stop those processes first.
    """
    if exists(ns):
        run(["ip", "netns", "del", ns], check=False)
