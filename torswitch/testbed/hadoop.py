"""Hadoop as JVM processes: finding Java and the jars, command lines, start, stop, memory.

Each daemon is started the way a Hadoop distribution's launcher does it, minus the shell:
``java <opts> -cp <confdir>:hadoop/lib/* <main class>``, inside its host's namespace through
``ip netns exec``, in a new session so it outlives the `torswitch testbed up` process. Its
command line carries ``-Dtorswitch.testbed=<instance>:<process>``: `down` and the tests find
and verify testbed JVMs by that marker, never by a broad name.

The client tools (``hdfs dfs``, ``hdfs dfsadmin`` ...) run through the `launcher_script` that
`up` writes into the run directory's bin/.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torswitch.testbed import netns
from torswitch.testbed.errors import NotReady, StartupFailed
from torswitch.testbed.state import DaemonRecord, repo_root

NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
LIB_ENV = "TORSWITCH_HADOOP_LIB"
MARKER_PROPERTY = "torswitch.testbed"

# The `hdfs` subcommands the launcher knows, as in the hdfs script of a Hadoop distribution.
CLIENT_COMMANDS = {
    "dfs": "org.apache.hadoop.fs.FsShell",
    "dfsadmin": "org.apache.hadoop.hdfs.tools.DFSAdmin",
    "fsck": "org.apache.hadoop.hdfs.tools.DFSck",
    "getconf": "org.apache.hadoop.hdfs.tools.GetConf",
    "cacheadmin": "org.apache.hadoop.hdfs.tools.CacheAdmin",
    "ec": "org.apache.hadoop.hdfs.tools.ECAdmin",
    "storagepolicies": "org.apache.hadoop.hdfs.tools.StoragePolicyAdmin",
    "debug": "org.apache.hadoop.hdfs.tools.DebugAdmin",
    "lsSnapshottableDir": "org.apache.hadoop.hdfs.tools.snapshot.LsSnapshottableDir",
    "snapshotDiff": "org.apache.hadoop.hdfs.tools.snapshot.SnapshotDiff",
    "version": "org.apache.hadoop.util.VersionInfo",
}

# What Hadoop 3.5's launcher adds for Java 17 (HADOOP-19310). HDFS has not been seen to need
# them, but a missing one would only show as a reflective-access failure deep in a test.
JPMS_OPTIONS = (
    "-XX:+IgnoreUnrecognizedVMOptions",
    *(
        f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
        for pkg in (
            "java.io",
            "java.lang",
            "java.lang.reflect",
            "java.math",
            "java.net",
            "java.text",
            "java.util",
            "java.util.concurrent",
            "java.util.zip",
            "sun.security.util",
            "sun.security.x509",
        )
    ),
    "--enable-native-access=ALL-UNNAMED",
)

# Heap per role: small, since the namespace holds at most a few thousand files. Serial GC
# because two cores are shared by all JVMs, and parallel collectors would start a GC thread
# per core in each of them.
HEAP_OPTIONS = {
    "namenode": ("-Xms64m", "-Xmx256m"),
    "datanode": ("-Xms64m", "-Xmx256m"),
    "client": ("-Xms32m", "-Xmx128m"),
}
COMMON_JVM_OPTIONS = (
    "-XX:+UseSerialGC",
    # Start-up bound: the C1 compiler alone gets every JVM to work sooner on two cores. Peak
    # throughput is lower, which matters for benchmarks of the Java client, not for the
    # daemons, whose transfers are sendfile/socket bound.
    "-XX:TieredStopAtLevel=1",
    "-XX:ReservedCodeCacheSize=64m",
    "-XX:MaxMetaspaceSize=256m",
    "-Djava.net.preferIPv4Stack=true",
)
# glibc otherwise gives each of a DataNode's many threads its own malloc arena.
DAEMON_ENV = {"MALLOC_ARENA_MAX": "4"}


def find_java() -> str:
    """Absolute path of the java to use: $JAVA_HOME/bin/java, else the one on PATH.

    Raises `NotReady` if there is none or it is older than 17 (Hadoop 3.5's minimum).
    """
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise NotReady("no java found (install openjdk-17-jdk-headless, or set JAVA_HOME)")
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)', proc.stderr)
    if not m or int(m[1]) < 17:
        raise NotReady(f"{java}: Java 17 or newer needed for Hadoop 3.5 ({proc.stderr.strip()})")
    return java


def hadoop_lib() -> Path:
    """The folder of Hadoop jars: $TORSWITCH_HADOOP_LIB, else hadoop/lib in the checkout.

    Raises `NotReady` (pointing at `make hadoop-jars`) if the HDFS jars are not there.
    """
    lib = Path(os.environ.get(LIB_ENV) or repo_root() / "hadoop" / "lib").resolve()
    if not any(lib.glob("hadoop-hdfs-[0-9]*.jar")):
        raise NotReady(f"no Hadoop jars in {lib}: run `make hadoop-jars` first")
    return lib


def marker(instance: str, process: str) -> str:
    """The command-line marker of one testbed JVM."""
    return f"-D{MARKER_PROPERTY}={instance}:{process}"


def java_argv(
    *,
    java: str,
    role: str,
    instance: str,
    process: str,
    conf_dir: Path,
    hosts_file: Path,
    lib: Path,
    main_class: str,
    args: Sequence[str] = (),
    log_dir: Path | None = None,
) -> list[str]:
    """The java command line of one Hadoop JVM.

    `role` selects the heap (namenode, datanode, client). With `log_dir`, log4j writes
    ``<process>.log`` there; without, WARN and above go to stderr.
    """
    if log_dir is not None:
        logging = [
            f"-Dhadoop.log.dir={log_dir}",
            f"-Dhadoop.log.file={process}.log",
            "-Dhadoop.root.logger=INFO,RFA",
        ]
    else:
        logging = ["-Dhadoop.root.logger=WARN,console"]
    return [
        java,
        *HEAP_OPTIONS[role],
        *COMMON_JVM_OPTIONS,
        *JPMS_OPTIONS,
        f"-Djdk.net.hosts.file={hosts_file}",
        f"-Dlog4j.configuration=file:{conf_dir / 'log4j.properties'}",
        *logging,
        marker(instance, process),
        "-cp",
        f"{conf_dir}:{lib}/resources:{lib}/*",
        main_class,
        *args,
    ]


def run_tool(argv: Sequence[str], ns: str, log: Path, timeout: float) -> None:
    """Run a Hadoop JVM to completion in `ns` (e.g. NameNode -format), output to `log`.

    `timeout` in seconds. Raises `StartupFailed` with the log's last lines on failure.
    """
    with open(log, "wb") as out:
        try:
            proc = subprocess.run(
                netns.exec_argv(ns, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **DAEMON_ENV},
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StartupFailed(f"{argv[-1]} did not finish in {timeout:.0f} s; see {log}") from exc
    if proc.returncode != 0:
        raise StartupFailed(f"status {proc.returncode}; see {log}:\n{tail(log)}")


def start_daemon(
    argv: Sequence[str], ns: str, out: Path, *, name: str, host: str, main_class: str
) -> DaemonRecord:
    """Start one daemon JVM in namespace `ns` in its own session; stdout/stderr go to `out`.

    Returns its record (``ip netns exec`` execs java, so the PID is the JVM's). Raises
    `StartupFailed` if it cannot be started.
    """
    with open(out, "wb") as fh:
        try:
            proc = subprocess.Popen(
                netns.exec_argv(ns, argv),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, **DAEMON_ENV},
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StartupFailed(f"cannot start {name}: {exc}") from exc
    return DaemonRecord(name=name, host=host, main_class=main_class, pid=proc.pid)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own exited child (a zombie would still look alive)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def is_running(record: DaemonRecord, instance: str) -> bool:
    """Whether `record`'s PID is still that testbed JVM (not a recycled PID)."""
    _reap(record.pid)
    if not pid_alive(record.pid):
        return False
    argv = _cmdline(record.pid)
    # The command line reads as empty for a moment while `ip netns exec` execs java.
    return not argv or (marker(instance, record.name) in argv and record.main_class in argv)


def testbed_jvms(instance: str) -> dict[int, str]:
    """PID -> process name of every running JVM carrying `instance`'s marker."""
    prefix = f"-D{MARKER_PROPERTY}={instance}:"
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        # No reaping here: this scans every process, and collecting someone else's child
        # would steal its exit status. A zombie has an empty command line, so it never matches.
        for arg in _cmdline(pid):
            if arg.startswith(prefix):
                found[pid] = arg[len(prefix) :]
                break
    return {pid: name for pid, name in found.items() if pid_alive(pid)}


def stop_pids(pids: Iterable[int], grace: float = 10.0) -> list[int]:
    """SIGTERM `pids`, wait up to `grace` seconds, then SIGKILL what is left.

    Returns the PIDs that had to be killed. Only ever called with PIDs verified to belong to
    the testbed (marker or namespace).
    """
    pending = set(pids)
    for pid in list(pending):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pending.discard(pid)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        for pid in list(pending):
            _reap(pid)
            if not pid_alive(pid):
                pending.discard(pid)
    killed = sorted(pending)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in killed:
        for _ in range(50):
            _reap(pid)
            if not pid_alive(pid):
                break
            time.sleep(0.1)
    return killed


def pid_alive(pid: int) -> bool:
    """Whether `pid` exists and has not exited (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the parenthesised command name; Z and X mean gone.
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def runs_with(pid: int | None, marker: str) -> bool:
    """Whether `pid` is alive and `marker` is one of its arguments (a run-dir path that names
    the process). During the exec of `ip netns exec` the command line reads as empty for a
    moment; that counts as a match, for the PID we started ourselves."""
    if not pid or not pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return marker.encode() in argv or argv == [b""]


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file, for error messages ('' if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class LauncherPaths:
    """What the generated `hdfs` launcher needs, all absolute paths."""

    java: str
    lib: Path
    client_conf: Path
    hosts_dir: Path
    instance: str


def launcher_script(paths: LauncherPaths) -> str:
    """Text of the ``bin/hdfs`` launcher of one run directory.

    Like the ``hdfs`` script of a Hadoop distribution it maps a subcommand to a main class and
    runs it with the configuration in $HADOOP_CONF_DIR (default: the testbed's client conf)
    and extra JVM options from $HADOOP_CLIENT_OPTS. The host it runs on comes from
    $TORSWITCH_TESTBED_HOST, which `testbed exec` sets, and selects the JVM hosts file.
    """
    base = java_argv(
        java=paths.java,
        role="client",
        instance=paths.instance,
        process="client",
        conf_dir=paths.client_conf,
        hosts_file=paths.hosts_dir / "HOST",
        lib=paths.lib,
        main_class="MAIN",
    )
    # The fixed options; hosts file and classpath depend on the environment, so the shell
    # fills those in. Logging always uses the testbed's log4j.properties (stderr only).
    cp_at = base.index("-cp")
    fixed = [a for a in base[1:cp_at] if not a.startswith("-Djdk.net.hosts.file=")]
    opts = " ".join(shlex.quote(a) for a in fixed)
    jars = shlex.quote(f"{paths.lib}/resources:{paths.lib}/*")
    cases = "\n".join(f"  {cmd}) main={cls} ;;" for cmd, cls in CLIENT_COMMANDS.items())
    names = " ".join(CLIENT_COMMANDS)
    return f"""#!/bin/sh
# hdfs launcher of torswitch testbed {paths.instance!r}, written by `torswitch testbed up`.
# Runs Hadoop's own client tools, as the hdfs script of a Hadoop distribution does.
# Usage: hdfs COMMAND [ARGS...]   (COMMAND: {names}, classpath)
set -e
host="${{TORSWITCH_TESTBED_HOST:-c1}}"
hosts_file={shlex.quote(str(paths.hosts_dir))}/"$host"
if [ ! -f "$hosts_file" ]; then
  echo "hdfs: unknown testbed host '$host' (TORSWITCH_TESTBED_HOST)" >&2
  exit 2
fi
conf="${{HADOOP_CONF_DIR:-{shlex.quote(str(paths.client_conf))}}}"
cmd="${{1:-}}"
case "$cmd" in
{cases}
  classpath) echo "$conf:"{jars}; exit 0 ;;
  ""|-h|--help|help)
    echo "Usage: hdfs COMMAND [ARGS...]" >&2
    echo "  COMMAND: {names} classpath" >&2
    exit 2 ;;
  *) echo "hdfs: unknown command '$cmd' (known: {names} classpath)" >&2; exit 2 ;;
esac
shift
export MALLOC_ARENA_MAX=4
exec {shlex.quote(paths.java)} \\
  {opts} \\
  -Djdk.net.hosts.file="$hosts_file" \\
  ${{HADOOP_CLIENT_OPTS:-}} \\
  -cp "$conf:"{jars} \\
  "$main" "$@"
"""
