"""Shared fixtures of the integration tests.

`testbed`: one real HDFS cluster (Apache Hadoop JVMs in network namespaces behind an emulated
ToR running the block engine) for the whole pytest session, started only if a test asks for
it. Tests that do not use it (memcached, nutcracker) never pay for it.

$TORSWITCH_TEST_ENGINE=0 starts it without the engine (plain switching), =1 with it; unset,
the engine runs if the `torswitch engine` command exists. $TORSWITCH_TEST_TOR picks the ToR
mode (`testbed up --tor`): dpdk (the default, as for `testbed up`) or kernel; without the
engine it is kernel. Tests of one mode in particular ask for `dpdk_tor_testbed` or
`kernel_tor_testbed`: the session testbed when it has that mode, else a second session
testbed of that mode, started only if asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from torswitch import cli
from torswitch.errors import TorswitchError
from torswitch.testbed import hadoop, lifecycle
from torswitch.testbed.errors import AlreadyUp, InUse
from torswitch.testbed.handle import Testbed
from torswitch.testbed.state import RunDir
from torswitch.testbed.units import format_size

# The session's instance name. Not the developer default (tsw), so a developer's own testbed
# survives a test run. A session that finds it owned by another live session takes pyt2, pyt3
# ...: names starting with pyt are reserved for test sessions.
TEST_INSTANCE_ENV = "TORSWITCH_TEST_TESTBED"
TEST_INSTANCE = "pyt"
# Small blocks so that files of a few MiB span several blocks and DataNodes.
TEST_BLOCK_SIZE = 4 << 20
TEST_DATANODES = 3
TEST_ENGINE_ENV = "TORSWITCH_TEST_ENGINE"
TEST_TOR_ENV = "TORSWITCH_TEST_TOR"
# Big enough for every test's files; the tmpfs only holds what is cached.
TEST_CACHE_BYTES = 512 << 20


def session_tor() -> str:
    """The ToR mode of the session's testbed (see the module docstring)."""
    return os.environ.get(TEST_TOR_ENV) or ("dpdk" if engine_wanted() else "kernel")


def engine_wanted() -> bool:
    """Whether the session's testbed runs the ToR's block engine (see the module docstring)."""
    value = os.environ.get(TEST_ENGINE_ENV)
    if value is not None:
        return value.strip().lower() not in ("0", "no", "false", "off", "")
    return "torswitch.commands.engine" in cli.COMMAND_MODULES


# Measured figures of this session's testbed, shown in pytest's terminal summary.
_figures: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show how long the testbed took to come up and the memory its JVMs used."""
    for line in _figures:
        terminalreporter.write_line(line)


def _owner_alive(pid: int | None) -> bool:
    """Whether the pytest process that owns an instance is still running."""
    if not pid or pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pytest" in cmdline


def _start() -> tuple[str, RunDir, lifecycle.UpReport]:
    """Bring up the session's instance: $TORSWITCH_TEST_TESTBED, else the first of pyt,
    pyt2 .. pyt9 that no live pytest session owns (a crashed session's leftovers are
    reclaimed). Fails the requesting tests, loudly, if the testbed cannot be built."""
    chosen = os.environ.get(TEST_INSTANCE_ENV)
    names = [chosen] if chosen else [TEST_INSTANCE, *(f"{TEST_INSTANCE}{i}" for i in range(2, 10))]
    busy = []
    for name in names:
        run = RunDir(name)
        try:
            lifecycle.reclaim(name, _owner_alive, run=run)
            report = lifecycle.up(
                name,
                lifecycle.UpOptions(
                    datanodes=TEST_DATANODES,
                    block_size=TEST_BLOCK_SIZE,
                    cache=engine_wanted(),
                    cache_bytes=TEST_CACHE_BYTES,
                    tor=session_tor(),
                ),
                progress=False,
                owner_pid=os.getpid(),
                run=run,
            )
        except (InUse, AlreadyUp) as exc:
            busy.append(str(exc))  # another live session has it: try the next name
            continue
        except TorswitchError as exc:
            pytest.fail(f"the HDFS testbed could not be started: {exc}", pytrace=False)
        return name, run, report
    pytest.fail("no free testbed instance for this session: " + "; ".join(busy), pytrace=False)


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """A running HDFS testbed, shared by the whole session; taken down at the end.

    Topology (instance ``pyt``, ``pyt2`` .. if another session runs, or
    $TORSWITCH_TEST_TESTBED; ``tb.instance`` says which): compute hosts ``c1``, ``c2``
    (rack /rack-a, 198.18.1.11-12) behind the ToR ``tor-a`` (198.18.1.1; the DPDK data plane, or a
    kernel bridge: see `session_tor`),
    a tc-shaped uplink (1 Gbit/s) to the core, and ``nn`` (198.18.2.10) plus ``dn1``..``dn3``
    (rack /rack-b, 198.18.2.11-13), each host its own namespace and each daemon its own JVM.
    Block size 4 MiB, replication 1 (each block on exactly one DataNode).

    The ToR runs the block engine under ``torswitch run`` (unless $TORSWITCH_TEST_ENGINE=0):
    new connections from c1/c2 to a DataNode's 9866 go to the engine (port 19866 in tor-a),
    which serves hits from its cache (512 MiB, ``tb.cache_dir`` on tmpfs) and relays misses.

    The handle (`torswitch.testbed.handle.Testbed`) gives:

    * ``tb.namenode_url`` (``hdfs://198.18.2.10:8020``), ``tb.namenode_address``,
      ``tb.addresses`` (host -> IP), ``tb.datanodes``, ``tb.clients``, ``tb.run_dir``,
      ``tb.log_dir`` (daemon logs; DataNode logs carry ``clienttrace`` lines per read),
      ``tb.client_conf_dir`` (core-site.xml and hdfs-site.xml of the clients);
    * ``tb.run(host, argv)``: run a command in a host's namespace with the Hadoop client
      environment (``hdfs`` on PATH, HADOOP_CONF_DIR set); returns a CompletedProcess with
      bytes stdout/stderr and raises CalledProcessError on failure unless ``check=False``;
    * ``tb.hdfs(host, "dfs", "-put", local, path)``: Hadoop's own tools (FsShell, DFSAdmin,
      DFSck ...), one JVM per call (about 1 to 3 s);
    * ``tb.python(host, code, *args)``: a Python snippet in the namespace, e.g. with
      ``hdfs_native.Client()`` (it finds the NameNode through HADOOP_CONF_DIR);
    * ``tb.connect(host, address, port)``: an in-process TCP socket opened from a host's
      namespace (e.g. from ``c1`` to a DataNode's 9866, through the ToR);
    * ``tb.jmx("nn" | "dn1")``: a JMX reader (``.bean(query)``, ``.beans(query)``), read from
      the daemon's own namespace so probes never cross the ToR;
      ``tb.datanode_reads("dn1")``, ``tb.all_datanode_reads()`` and
      ``tb.settled_datanode_reads()`` for the DataNodeActivity read counters (metrics period
      1 s: use the settled variant after a read);
    * ``tb.client_traces("dn1")``: the DataNode's clienttrace records (one per completed
      block read, with ``blockid``, ``dest`` client address, ``bytes``, ``offset``), written
      immediately: the quickest proof of which DataNode served which block;
    * ``with tb.uplink(rate_bps=40_000_000): ...``: re-shape the uplink, restored on exit;
    * the engine: ``tb.engine_enabled``, ``tb.engine_status()`` (supervisor and engine PIDs,
      phase, restarts, and the interception as nft sees it, incl. redirected connections),
      ``tb.wait_engine(intercepting=True)``, ``tb.engine_pid()``, ``tb.kill_engine()``
      (SIGKILL by default; the supervisor fails open and restarts it), ``tb.stop_engine()``,
      ``tb.start_engine()``, ``tb.restart_engine()`` (cache kept), ``with
      tb.without_engine(): ...`` (plain switching inside), ``with tb.engine_as(cmd): ...``
      (a stand-in engine inside), ``tb.engine_log()``, ``tb.supervisor_log()``,
      ``tb.engine_config``, ``tb.cache_dir``;
    * DataNode JVMs: ``tb.datanode_pid("dn1")``, ``tb.stop_datanode("dn1")`` (SIGSTOP) and
      ``tb.cont_datanode("dn1")``, or ``with tb.frozen_datanode("dn1"): ...``;
    * ``tb.status()`` / ``tb.check_up()``.

    Tests that stop, kill or replace the engine must leave it running and intercepting
    (``tb.wait_engine()``) for the tests after them.

    Tests share the cluster: write under a path of your own (e.g. ``/t/<test name>``) and do
    not rely on an empty namespace. If the cluster cannot be built (not root, no jars, a
    daemon failing), this fixture fails loudly; it never skips.
    """
    instance, run, report = _start()
    engine = "with the block engine" if report.state.engine else "without engine"
    _figures.append(
        f"HDFS testbed {instance!r} up in {report.seconds:.1f} s ({engine}), JVM RSS "
        f"{format_size(report.jvm_rss_bytes)} in {len(report.state.daemons)} JVMs "
        f"(budget: 90 s, 2.5 GiB)"
    )
    _figures.extend(f"HDFS testbed warning: {w}" for w in report.warnings)
    tb = Testbed.attach(instance, run=run)
    try:
        yield tb
    finally:
        lifecycle.down(instance, run=run)
        left = hadoop.testbed_jvms(instance)
        assert not left, f"testbed JVMs still running after down: {left}"


@pytest.fixture
def plain_switching(testbed: Testbed) -> Iterator[Testbed]:
    """The session's testbed with a plainly switching ToR for one test: no engine, no
    interception. For tests of the DataNodes, the uplink or the HDFS client layer themselves,
    whose repeated reads the engine would otherwise serve from its cache. The engine (if the
    session runs one) is back, intercepting, after the test."""
    with testbed.without_engine():
        yield testbed


def _second_testbed(instance: str, mode: str) -> Iterator[Testbed]:
    """A second session testbed whose ToR runs `mode`, with the engine (same shape as
    `testbed`); taken down at the end of the session."""
    run = RunDir(instance)
    try:
        lifecycle.reclaim(instance, _owner_alive, run=run)
        report = lifecycle.up(
            instance,
            lifecycle.UpOptions(datanodes=TEST_DATANODES, block_size=TEST_BLOCK_SIZE,
                                cache_bytes=TEST_CACHE_BYTES, tor=mode),
            progress=False, owner_pid=os.getpid(), run=run,
        )
    except TorswitchError as exc:
        pytest.fail(f"the {mode}-ToR testbed could not be started: {exc}", pytrace=False)
    _figures.append(f"HDFS testbed {instance!r} ({mode} ToR) up in {report.seconds:.1f} s")
    tb = Testbed.attach(instance, run=run)
    try:
        yield tb
    finally:
        lifecycle.down(instance, run=run)
        assert not hadoop.testbed_jvms(instance), f"{mode}-ToR testbed JVMs still running"


@pytest.fixture(scope="session")
def dpdk_tor_testbed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """A session testbed whose ToR is the DPDK data plane (`up --tor dpdk`) with the engine:
    the session's `testbed` when it is one, else instance $TORSWITCH_TEST_DPDK_SESSION or
    ``pytd``."""
    if session_tor() == "dpdk" and engine_wanted():
        yield request.getfixturevalue("testbed")
        return
    yield from _second_testbed(os.environ.get("TORSWITCH_TEST_DPDK_SESSION", "pytd"), "dpdk")


@pytest.fixture(scope="session")
def kernel_tor_testbed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    """A session testbed whose ToR is the kernel bridge with nftables interception and the
    engine: the session's `testbed` when it is one, else instance
    $TORSWITCH_TEST_KERNEL_SESSION or ``pytk``."""
    if session_tor() == "kernel" and engine_wanted():
        yield request.getfixturevalue("testbed")
        return
    yield from _second_testbed(os.environ.get("TORSWITCH_TEST_KERNEL_SESSION", "pytk"),
                               "kernel")
