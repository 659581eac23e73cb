"""`torswitch hdfs`: argument handling that needs no cluster (the rest is in integration/)."""

from __future__ import annotations

import argparse
import pathlib
import socket
import subprocess
import sys

import pytest

from torswitch.commands import hdfs as cmd
from torswitch.errors import ConfigError


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torswitch", "hdfs", *args],
                          capture_output=True, text=True, check=False, env=env)


def ns(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"namenode": None, "conf_dir": None}
    return argparse.Namespace(**(base | kw))


def test_subcommands_have_help() -> None:
    for sub in ("ls", "blocks", "cat"):
        out = run(sub, "--help")
        assert out.returncode == 0 and "--namenode" in out.stdout and "--conf-dir" in out.stdout


def test_namenode_address_sources(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    assert cmd.namenode_address(ns(namenode="198.18.2.10:9000")) == ("198.18.2.10", 9000)
    assert cmd.namenode_address(ns(namenode="198.18.2.10")) == ("198.18.2.10", 8020)
    with pytest.raises(cmd.HdfsUsageError, match="--namenode HOST:PORT or --conf-dir"):
        cmd.namenode_address(ns())
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name>"
        "<value>hdfs://198.18.2.10:8020</value></property></configuration>"
    )
    assert cmd.namenode_address(ns(conf_dir=str(tmp_path))) == ("198.18.2.10", 8020)
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    assert cmd.namenode_address(ns()) == ("198.18.2.10", 8020)
    with pytest.raises(ConfigError, match="invalid port"):
        cmd.namenode_address(ns(namenode="nn:port"))


@pytest.mark.parametrize(("args", "message"), [
    (["cat", "--namenode", "127.0.0.1:1", "relative/path"], "must be absolute"),
    (["cat", "--namenode", "127.0.0.1:1", "--offset", "-1", "/f"], "must not be negative"),
    (["ls", "--namenode", "127.0.0.1:x", "/"], "invalid port"),
    (["blocks", "--conf-dir", "/nonexistent/conf", "/f"], "does not exist"),
])
def test_bad_arguments_give_one_line_errors(args: list[str], message: str) -> None:
    out = run(*args)
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr


def test_unreachable_namenode_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = s.getsockname()[1]
        out = run("ls", "--namenode", f"127.0.0.1:{port}", "/")
    assert out.returncode == 1
    assert f"NameNode 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


def test_mode_string() -> None:
    assert cmd._mode_string("dir", 0o755) == "drwxr-xr-x"
    assert cmd._mode_string("file", 0o640) == "-rw-r-----"
