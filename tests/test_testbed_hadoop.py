"""torswitch.testbed.hadoop: JVM command lines, the hdfs launcher, finding and stopping JVMs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from torswitch.testbed import hadoop
from torswitch.testbed.errors import NotReady
from torswitch.testbed.state import DaemonRecord


def test_java_argv_for_a_daemon(tmp_path: Path) -> None:
    argv = hadoop.java_argv(
        java="/usr/bin/java",
        role="datanode",
        instance="tsw",
        process="dn1",
        conf_dir=tmp_path / "conf",
        hosts_file=tmp_path / "hosts",
        lib=tmp_path / "lib",
        main_class=hadoop.DATANODE_CLASS,
        log_dir=tmp_path / "logs",
    )
    assert argv[0] == "/usr/bin/java"
    assert argv[-1] == hadoop.DATANODE_CLASS
    assert "-Xmx256m" in argv and "-XX:+UseSerialGC" in argv
    assert hadoop.marker("tsw", "dn1") in argv
    # Configuration first on the classpath, then the web resources, then the jars.
    cp = argv[argv.index("-cp") + 1]
    assert cp == f"{tmp_path}/conf:{tmp_path}/lib/resources:{tmp_path}/lib/*"
    assert f"-Dhadoop.log.dir={tmp_path}/logs" in argv
    assert "-Dhadoop.root.logger=INFO,RFA" in argv
    assert f"-Djdk.net.hosts.file={tmp_path}/hosts" in argv


def test_client_tools_log_to_stderr_only(tmp_path: Path) -> None:
    argv = hadoop.java_argv(
        java="java",
        role="client",
        instance="tsw",
        process="client",
        conf_dir=tmp_path,
        hosts_file=tmp_path,
        lib=tmp_path,
        main_class="X",
        args=("-ls", "/"),
    )
    assert "-Dhadoop.root.logger=WARN,console" in argv
    assert argv[-3:] == ["X", "-ls", "/"]


def test_hadoop_lib_must_hold_hdfs_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hadoop.LIB_ENV, str(tmp_path))
    with pytest.raises(NotReady, match="make hadoop-jars"):
        hadoop.hadoop_lib()
    (tmp_path / "hadoop-hdfs-3.5.0.jar").write_bytes(b"")
    assert hadoop.hadoop_lib() == tmp_path


def test_launcher_dispatches_like_the_hdfs_script(tmp_path: Path) -> None:
    # A stand-in "java" that prints the command line it was given.
    java = tmp_path / "java"
    java.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    java.chmod(0o755)
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    (hosts / "c1").write_text("127.0.0.1 localhost\n")
    script = tmp_path / "hdfs"
    script.write_text(
        hadoop.launcher_script(
            hadoop.LauncherPaths(
                java=str(java),
                lib=tmp_path / "lib",
                client_conf=tmp_path / "conf",
                hosts_dir=hosts,
                instance="tsw",
            )
        )
    )
    script.chmod(0o755)

    def run(*args: str, host: str = "c1", **extra: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "TORSWITCH_TESTBED_HOST": host, **extra}
        return subprocess.run(
            [str(script), *args], capture_output=True, text=True, env=env, check=False
        )

    out = run("dfs", "-cat", "/a b").stdout.splitlines()
    assert out[-3:] == ["org.apache.hadoop.fs.FsShell", "-cat", "/a b"]
    assert f"-Djdk.net.hosts.file={hosts}/c1" in out
    assert f"{tmp_path}/conf:{tmp_path}/lib/resources:{tmp_path}/lib/*" in out
    assert run("dfsadmin", "-report").stdout.splitlines()[-2] == hadoop.CLIENT_COMMANDS["dfsadmin"]
    assert run("fsck", "/").stdout.splitlines()[-2] == "org.apache.hadoop.hdfs.tools.DFSck"
    assert run("classpath").stdout.strip().endswith("/lib/*")
    # Like Hadoop's own script: $HADOOP_CONF_DIR and $HADOOP_CLIENT_OPTS are honoured.
    custom = run("dfs", "-ls", HADOOP_CONF_DIR="/other", HADOOP_CLIENT_OPTS="-Xmx1g -Dx=1")
    lines = custom.stdout.splitlines()
    assert f"/other:{tmp_path}/lib/resources:{tmp_path}/lib/*" in lines
    assert lines.index("-Xmx1g") > lines.index("-Xmx128m")  # later wins in the JVM
    assert "-Dx=1" in lines
    bad = run("frobnicate")
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr
    assert run().returncode == 2
    unknown_host = run("dfs", "-ls", host="zz9")
    assert unknown_host.returncode == 2 and "unknown testbed host" in unknown_host.stderr


def test_find_verify_and_stop_marked_processes() -> None:
    marker = hadoop.marker("utest", "dn7")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", marker, "Main"],
    )
    try:
        record = DaemonRecord(name="dn7", host="dn7", main_class="Main", pid=proc.pid)
        # Popen returns after fork; until the child has exec'd, its cmdline is still ours.
        deadline = time.monotonic() + 5
        while marker.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the child never exec'd"
            time.sleep(0.01)
        found = hadoop.testbed_jvms("utest")
        assert found == {proc.pid: "dn7"}
        assert hadoop.is_running(record, "utest")
        assert not hadoop.is_running(record, "other")  # a recycled PID is not ours
        assert hadoop.rss_bytes(proc.pid) > 0
        assert hadoop.stop_pids([proc.pid], grace=5.0) == []  # SIGTERM was enough
        assert not hadoop.is_running(record, "utest")
        assert hadoop.testbed_jvms("utest") == {}
        assert hadoop.rss_bytes(proc.pid) == 0
    finally:
        proc.kill()
        proc.wait()


def test_stop_escalates_to_sigkill() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert hadoop.stop_pids([proc.pid], grace=0.5) == [proc.pid]
        assert not hadoop.pid_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\n".join(str(i) for i in range(100)))
    assert hadoop.tail(log, 3) == "97\n98\n99"
    assert hadoop.tail(tmp_path / "missing") == ""
