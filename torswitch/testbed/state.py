"""The run directory of a testbed instance, and the state file `up` leaves in it.

Layout of ``run/testbed-<instance>/`` (under the repository; ``run/`` is git-ignored)::

    state.json        what `up` started: hosts, addresses, daemon PIDs, options, timings
    conf/<process>/   rendered Hadoop configuration, one directory per JVM (and `client`)
    hosts/<host>      the JVM hosts file of each host (-Djdk.net.hosts.file)
    data/<process>/   NameNode metadata and DataNode block storage
    logs/             one log (log4j) and one .out (stdout/stderr) per daemon; supervisor.log
                      and engine.log of the ToR's block engine; directory.log
    engine/           the engine's config and its supervisor's status file (testbed.tor)
    directory/        the block directory's config (testbed.directory)
    bin/hdfs          the Hadoop command launcher that `testbed exec` puts on PATH
    bin/torswitch     this checkout's torswitch command, also on that PATH

`up` wipes the directory before it starts, keeping the previous run's logs as logs.previous/;
`down` keeps the logs so a failed run can be read afterwards. A lock file beside the directory serialises `up` and
`down` of the same instance.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torswitch.testbed.errors import InUse, NotUp
from torswitch.testbed.topology import validate_instance

DEFAULT_INSTANCE = "tsw"
INSTANCE_ENV = "TORSWITCH_TESTBED"
RUN_DIR_ENV = "TORSWITCH_RUN_DIR"


def repo_root() -> Path:
    """The checkout this package runs from (it holds hadoop/ and hadoop-conf/).

    Falls back to the current directory when the package is installed elsewhere.
    """
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "hadoop" / "pom.xml").is_file():
        return candidate
    return Path.cwd()


def resolve_instance(name: str | None) -> str:
    """The instance to act on: `name`, else $TORSWITCH_TESTBED, else ``tsw``.

    Raises `BadValue` for a malformed name.
    """
    return validate_instance(name or os.environ.get(INSTANCE_ENV) or DEFAULT_INSTANCE)


@dataclass
class DaemonRecord:
    """One JVM `up` started: where it runs and how to recognise its PID later."""

    name: str
    host: str
    main_class: str
    pid: int


@dataclass
class State:
    """Everything `status`, `exec`, `load` and `down` need to know about a running instance.

    Times are seconds (``started_at`` since the epoch), sizes bytes, rates bits per second.
    """

    instance: str
    started_at: float
    options: dict[str, Any]
    hosts: list[dict[str, Any]]
    daemons: list[DaemonRecord] = field(default_factory=list)
    java: str = "java"
    hadoop_lib: str = ""
    owner_pid: int | None = None
    ready_seconds: float | None = None
    jvm_rss_bytes: int | None = None
    # The ToR's block engine (torswitch.testbed.tor), None without one (--no-cache):
    # supervisor_pid (None while stopped), engine_cmd (None: the real engine), cache_dir,
    # cache_bytes.
    engine: dict[str, Any] | None = None
    # The block directory (torswitch.testbed.directory), None if the instance has none:
    # pid (None while stopped), address (host:port).
    directory: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The state as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> State:
        """Parse what `to_json` wrote. Raises `ValueError` (json or key errors) if malformed."""
        raw = json.loads(text)
        raw["daemons"] = [DaemonRecord(**d) for d in raw.get("daemons", [])]
        return cls(**raw)


class RunDir:
    """Paths of one instance's run directory, and its state file and lock."""

    def __init__(self, instance: str, root: Path | None = None) -> None:
        self.instance = validate_instance(instance)
        base = root or Path(os.environ.get(RUN_DIR_ENV) or repo_root() / "run")
        self.root = base
        self.path = base / f"testbed-{instance}"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def log_dir(self) -> Path:
        return self.path / "logs"

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    def conf_dir(self, process: str) -> Path:
        """Configuration directory of one JVM (``nn``, ``dn1``, ...) or of the clients."""
        return self.path / "conf" / process

    def data_dir(self, process: str) -> Path:
        return self.path / "data" / process

    def hosts_file(self, host: str) -> Path:
        return self.path / "hosts" / host

    def prepare(self) -> None:
        """Empty the directory for a new run; the last run's logs move to logs.previous/."""
        previous = self.path / "logs.previous"
        if self.path.exists():
            if previous.exists():
                shutil.rmtree(previous)
            if self.log_dir.exists():
                self.log_dir.rename(previous)
            for child in self.path.iterdir():
                if child == previous:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        for d in (self.path, self.log_dir, self.bin_dir):
            d.mkdir(parents=True, exist_ok=True)

    def save(self, state: State) -> None:
        """Write the state file atomically (readers never see half a file)."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json() + "\n")
        tmp.replace(self.state_file)

    def load(self) -> State:
        """Read the state file. Raises `NotUp` if there is none or it cannot be parsed."""
        try:
            return State.from_json(self.state_file.read_text())
        except FileNotFoundError:
            raise NotUp(
                f"testbed {self.instance!r} is not up (no {self.state_file}); "
                f"start it with `torswitch testbed up --instance {self.instance}`"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise NotUp(f"testbed {self.instance!r}: unreadable {self.state_file}: {exc}") from exc

    def forget(self) -> None:
        """Remove the state file, marking the instance as down."""
        self.state_file.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the instance's lock; raises `InUse` at once if another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"testbed-{self.instance}.lock"
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InUse(
                    f"testbed {self.instance!r} is being started or stopped by another process "
                    f"(lock {path})"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
