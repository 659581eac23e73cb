"""The block directory in a testbed: `torswitch directory` inside the NameNode's namespace.

`up` runs the directory (torswitch.directory) in ``<instance>-nn``, on the core side of the
uplink beside the NameNode it resolves hinted paths with: 198.18.2.10:19870. Placing it there
rather than in a host of its own keeps the topology (and every address) as it was; the directory
is a control-plane service, and its NameNode lookups never cross the uplink. Its own traffic to
the ToR (Prefetch, Evict) and the ToR's registration, heartbeats and block reports do cross it,
as they would in a real cluster where the directory runs next to the NameNode.

The ToR's engine registers with it (rack /rack-a, switch id tor-a, agent 198.18.1.1:19867,
capacity = the cache size; testbed.tor writes that into the engine config). `testbed exec`
and the handle's `run` put TORSWITCH_DIRECTORY=198.18.2.10:19870 into the client environment,
so ``torswitch hint PATH --rack /rack-a`` finds it without flags.

With --no-cache the directory runs all the same, with no ToR registered: a hint is then
answered NOT_FOUND ("no ToR is registered for rack '/rack-a'"), which says what is going on
better than a connection refused, and a ToR engine started later (`Testbed.start_engine`)
registers with it.

Files::

    run/testbed-<instance>/directory/directory.yml   the directory's config
    run/testbed-<instance>/logs/directory.log        its output, all restarts

The state file records it under ``directory`` (pid, address); the process is recognised by
that PID together with its config path on its command line, never by a broad name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from torswitch.testbed import hadoop, netns, topology
from torswitch.testbed.errors import StartupFailed
from torswitch.testbed.state import RunDir

PORT = 19870
#: Heartbeat interval the directory asks ToRs for; a ToR silent for 3 of them takes no new
#: placements. Short, so a restarted directory has its ToR back within seconds.
HEARTBEAT_INTERVAL_S = 2.0
HOST = "nn"
SWITCH_ID = topology.TOR
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
QUERY_TIMEOUT_S = 30.0
ENV = "TORSWITCH_DIRECTORY"


def address(topo: topology.Topology) -> str:
    """host:port of the directory of `topo` (the NameNode host's address)."""
    return f"{topo.host(HOST).address}:{PORT}"


def directory_dir(run: RunDir) -> Path:
    return run.path / "directory"


def config_path(run: RunDir) -> Path:
    return directory_dir(run) / "directory.yml"


def log_path(run: RunDir) -> Path:
    return run.log_dir / "directory.log"


def config_text(hadoop_conf_dir: Path) -> str:
    """The directory config a testbed runs with."""
    return (
        "# Written by `torswitch testbed up`: the block directory, in the NameNode's namespace.\n"
        "torswitch: 1\n"
        "directory:\n"
        f"  listen: 0.0.0.0:{PORT}\n"
        f"  hadoop_conf_dir: {hadoop_conf_dir}\n"
        f"  heartbeat_interval_s: {HEARTBEAT_INTERVAL_S}\n"
    )


def write_config(run: RunDir) -> Path:
    path = config_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(run.conf_dir("client")))
    return path


def argv(run: RunDir) -> list[str]:
    return [sys.executable, "-m", "torswitch", "directory", "--config", str(config_path(run))]


def start(run: RunDir, topo: topology.Topology) -> int:
    """Start the directory in the NameNode's namespace; returns its PID (not waiting).

    Raises `StartupFailed` if it cannot be started.
    """
    write_config(run)
    ns = topo.host(HOST).namespace
    with open(log_path(run), "ab") as out:
        out.write(b"--- torswitch directory starting\n")
        out.flush()
        try:
            proc = subprocess.Popen(
                netns.exec_argv(ns, argv(run)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StartupFailed(f"cannot start torswitch directory in {ns}: {exc}") from exc
    return proc.pid


def is_directory(run: RunDir, pid: int | None) -> bool:
    """Whether `pid` is this run directory's `torswitch directory` (its config is an argument)."""
    return hadoop.runs_with(pid, str(config_path(run)))


def stop(run: RunDir, pid: int | None, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the directory and wait for it; SIGKILL after `timeout` seconds. Returns whether
    it was running."""
    if not is_directory(run, pid):
        return False
    assert pid is not None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while is_directory(run, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if hadoop.pid_alive(pid):
        hadoop.stop_pids([pid], grace=0.0)
    return True


# The directory listens only inside the testbed's segment, so the host side asks it through a
# short Python process in its namespace: `--wait-switch` polls Status until that ToR is live
# and has sent its full block report.
_QUERY = """
import json, sys, time
import grpc
from google.protobuf.json_format import MessageToDict
from torswitch.directory import DirectoryClient
addr, wait_for, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + timeout
with DirectoryClient(addr, timeout=5) as client:
    while True:
        try:
            status = client.status()
            if not wait_for or any(s.switch_id == wait_for and s.live
                                   for s in status.switches):
                print(json.dumps(MessageToDict(status, preserving_proto_field_name=True,
                                               always_print_fields_with_no_presence=True)))
                break
            err = "switch %s not registered" % wait_for
        except grpc.RpcError as exc:
            err = "%s: %s" % (exc.code().name, exc.details())
        if time.monotonic() > deadline:
            print(err, file=sys.stderr)
            sys.exit(1)
        time.sleep(0.2)
"""


def query_status(
    topo: topology.Topology, wait_switch: str = "", timeout: float = 3.0
) -> dict[str, Any]:
    """The directory's Status as a dict (MessageToDict of StatusReply), asked from inside the
    NameNode's namespace; with `wait_switch`, once that ToR is registered and live.

    Raises `StartupFailed` with the reason if it does not answer (so) within `timeout` s.
    """
    proc = netns.run(
        [sys.executable, "-c", _QUERY, address(topo), wait_switch, str(timeout)],
        ns=topo.host(HOST).namespace,
        timeout=timeout + QUERY_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        raise StartupFailed(f"directory {address(topo)}: {reason}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def wait_ready(
    run: RunDir,
    topo: topology.Topology,
    pid: int,
    wait_switch: str = "",
    timeout: float = START_TIMEOUT_S,
) -> dict[str, Any]:
    """Wait until the directory answers Status (and, with `wait_switch`, lists that ToR live).

    Returns the status. Raises `StartupFailed` with the log's last lines if the process exits
    or `timeout` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        if not is_directory(run, pid):
            raise StartupFailed(
                f"torswitch directory (pid {pid}) exited; see {log_path(run)}:\n"
                f"{hadoop.tail(log_path(run))}"
            )
        left = deadline - time.monotonic()
        try:
            return query_status(topo, wait_switch, timeout=max(1.0, min(left, 15.0)))
        except StartupFailed as exc:
            if time.monotonic() > deadline:
                raise StartupFailed(
                    f"{exc} after {timeout:.0f} s; see {log_path(run)}:\n"
                    f"{hadoop.tail(log_path(run))}"
                ) from None


def report(run: RunDir, topo: topology.Topology, record: dict[str, Any] | None) -> dict[str, Any]:
    """The directory's part of `testbed status`: process, address, and what its Status says
    (ToRs with rack, liveness, blocks, capacity; plans)."""
    if record is None:
        return {"enabled": False}
    pid = record.get("pid")
    running = is_directory(run, pid)
    out: dict[str, Any] = {
        "enabled": True,
        "pid": pid,
        "running": running,
        "address": record.get("address"),
        "namespace": topo.host(HOST).namespace,
        "switches": [],
        "plans": 0,
        "error": None,
    }
    if running:
        try:
            status = query_status(topo)
            out["switches"] = [
                {
                    "switch_id": s.get("switch_id"),
                    "rack": s.get("rack"),
                    "agent_address": s.get("agent_address"),
                    "live": bool(s.get("live")),
                    "blocks": int(s.get("blocks", 0)),
                    "capacity_bytes": int(s.get("capacity_bytes", 0)),
                    "used_bytes": int(s.get("used_bytes", 0)),
                    "pinned_bytes": int(s.get("pinned_bytes", 0)),
                }
                for s in status.get("switches", [])
            ]
            out["plans"] = len(status.get("plans", []))
        except StartupFailed as exc:
            out["error"] = str(exc)
    return out
