"""The `torswitch` command: help for every subcommand, and `route` output formats and errors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from torswitch import cli

NC = "alpha:\n  listen: 127.0.0.1:22121\n  servers:\n   - 198.18.0.1:11212:1 one\n   - 198.18.0.2:11212:1\n"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torswitch", *args], capture_output=True,
                          text=True, input=stdin, check=False)


def test_help_lists_subcommands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for name in ("route", "bench", "demo"):
        assert name in out.stdout


def test_every_subcommand_has_help() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        out = run(name, "--help")
        assert out.returncode == 0, name
        assert "usage:" in out.stdout


def test_route_tab_and_json(tmp_path: pathlib.Path) -> None:
    conf = tmp_path / "nutcracker.yml"
    conf.write_text(NC)
    out = run("route", "--config", str(conf), "--pool", "alpha", "k1", "k2")
    assert out.returncode == 0
    lines = [line.split("\t") for line in out.stdout.splitlines()]
    assert [k for k, _ in lines] == ["k1", "k2"]
    assert {s for _, s in lines} <= {"one", "198.18.0.2:11212"}
    js = json.loads(run("route", "--config", str(conf), "--pool", "alpha", "--json", "k1").stdout)
    assert js == [{"key": "k1", "server": lines[0][1]}]


@pytest.mark.parametrize(
    ("text", "pool", "message"),
    [
        (NC, "beta", "no pool named 'beta'"),
        (NC.replace("servers:", "hash: sha9\n  servers:"), "alpha", "unknown hash 'sha9'"),
    ],
)
def test_route_errors_are_clear(tmp_path: pathlib.Path, text: str, pool: str, message: str) -> None:
    conf = tmp_path / "n.yml"
    conf.write_text(text)
    out = run("route", "--config", str(conf), "--pool", pool, "k")
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr
