"""The HDFS protocol layer against the real testbed (issue 4, item 7).

Everything here talks to Apache Hadoop JVMs: torswitch's NameNode client and block reader run
in-process with sockets opened from the compute host c1 (through the ToR), and the CLI runs
as a subprocess on c1. Hadoop's own FsShell is the reference for file contents. Files are
written with replication 3 so that every block has replicas to fail over to.

Scenarios: cat of files around chunk and block boundaries equals FsShell -cat; random byte
ranges (hypothesis) are byte-identical; a relay that flips one byte in transit causes a
checksum error naming block and offset, and the reader recovers from another replica; a
stopped DataNode (SIGSTOP, resumed afterwards) and a refused connection fail over; missing
paths give clear errors; getListing pages through more than dfs.ls.limit entries; our read
serializers reproduce a real DataNode's bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torswitch import datatransfer as D
from torswitch.blockreader import (
    BlockChecksumError,
    BlockReader,
    BlockReadError,
    DataNodeStatusError,
    iter_file_range,
)
from torswitch.checksum import ChecksumSpec
from torswitch.namenode import (
    Block,
    DatanodeInfo,
    LocatedBlock,
    NameNodeClient,
    RemoteFileNotFoundError,
)
from torswitch.testbed import hadoop
from torswitch.testbed.handle import Testbed

BLOCK = 4 << 20  # the session testbed's block size (integration/conftest.py)
ROOT = "/t/hdfs_protocol"
SIZES = {
    "empty": 0,
    "one": 1,
    "b511": 511,
    "b512": 512,
    "b513": 513,
    "one_block": BLOCK,
    "block_plus_1": BLOCK + 1,
    "several": 3 * BLOCK + 12345,
}
CLIENT = "c1"
RELAY_HOST = "c2"
RELAY_PORT = 19866
RELAY = Path(__file__).with_name("corrupting_relay.py")


@pytest.fixture(scope="module")
def files(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The test files, written once with FsShell -put (replication 3); name -> content."""
    local = tmp_path_factory.mktemp("hdfs_protocol")
    rng = random.Random(4)
    contents = {name: rng.randbytes(size) for name, size in SIZES.items()}
    for name, data in contents.items():
        (local / name).write_bytes(data)
    testbed.hdfs(CLIENT, "dfs", "-mkdir", "-p", ROOT)
    testbed.hdfs(
        CLIENT, "dfs", "-D", "dfs.replication=3", "-put", "-f",
        *(str(local / n) for n in contents), ROOT,
    )
    return contents


@pytest.fixture(scope="module")
def connect(testbed: Testbed):  # type: ignore[no-untyped-def]
    """A Connector opening sockets from the client host's namespace."""
    return lambda addr, timeout: testbed.connect(CLIENT, addr[0], addr[1], timeout)


@pytest.fixture(scope="module")
def nn(testbed: Testbed, connect) -> Iterator[NameNodeClient]:  # type: ignore[no-untyped-def]
    with NameNodeClient(testbed.namenode_address, 8020, timeout=20, connect=connect) as client:
        yield client


@pytest.fixture(scope="module")
def reader(connect) -> Iterator[BlockReader]:  # type: ignore[no-untyped-def]
    with BlockReader(timeout=20, connect=connect) as r:
        yield r


def cli(testbed: Testbed, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`torswitch hdfs ARGS` on the client host."""
    return testbed.run(
        CLIENT, [sys.executable, "-m", "torswitch", "hdfs", *args], check=False, timeout=120
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- torswitch hdfs cat == FsShell -cat ------------------------------------------------------


@pytest.mark.parametrize("name", list(SIZES))
def test_cat_equals_fsshell(testbed: Testbed, files: dict[str, bytes], name: str) -> None:
    path = f"{ROOT}/{name}"
    theirs = testbed.hdfs(CLIENT, "dfs", "-cat", path).stdout
    # Alternate the two ways of finding the NameNode.
    where = (
        ["--namenode", f"{testbed.namenode_address}:8020"]
        if len(name) % 2
        else ["--conf-dir", str(testbed.client_conf_dir)]
    )
    ours = cli(testbed, "cat", *where, path)
    assert ours.returncode == 0, ours.stderr.decode()
    assert sha(ours.stdout) == sha(theirs) == sha(files[name])
    assert b"warning" not in ours.stderr


def test_cat_ranges_cli(testbed: Testbed, files: dict[str, bytes]) -> None:
    data = files["several"]
    for offset, length in [(0, 1), (511, 2), (BLOCK - 3, 7), (2 * BLOCK + 100, 50000)]:
        got = cli(testbed, "cat", "--offset", str(offset), "--length", str(length),
                  f"{ROOT}/several")
        assert got.returncode == 0, got.stderr.decode()
        assert got.stdout == data[offset : offset + length]
    bad = cli(testbed, "cat", "--offset", str(len(data) + 1), f"{ROOT}/several")
    assert bad.returncode == 1 and b"past the end" in bad.stderr


# ---- random ranges, in-process ----------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_ranges_are_byte_identical(
    nn: NameNodeClient, reader: BlockReader, files: dict[str, bytes], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(["several", "block_plus_1", "b513"]))
    content = files[name]
    offset = data.draw(st.integers(0, len(content)))
    length = data.draw(st.integers(0, min(len(content) - offset, 3 * BLOCK)))
    located = nn.file_blocks(f"{ROOT}/{name}")
    got = b"".join(bytes(p) for p in iter_file_range(reader, located.blocks, offset, length))
    assert got == content[offset : offset + length]


def test_block_range_keeps_checksums_and_reuses_connections(
    nn: NameNodeClient, connect, files: dict[str, bytes]  # type: ignore[no-untyped-def]
) -> None:
    lb = nn.file_blocks(f"{ROOT}/several").blocks[1]
    only_first = dataclasses.replace(lb, locations=lb.locations[:1])
    with BlockReader(timeout=20, connect=connect) as r:
        first = r.read(only_first, 1000, 5000)
        second = r.read(only_first, 70000, 100)
        assert r.connections_opened == 1 and r.connections_reused == 1  # CHECKSUM_OK sent
    spec = ChecksumSpec()
    assert first.data == files["several"][BLOCK + 1000 : BLOCK + 6000]
    assert first.chunk_offset == 512 and first.checksum == spec
    chunks = files["several"][BLOCK + 512 : BLOCK + spec.align_up(6000)]
    assert first.checksums == spec.compute(chunks)
    assert second.data == files["several"][BLOCK + 70000 : BLOCK + 70100]
    assert not first.failures and not second.failures


# ---- NameNode calls --------------------------------------------------------------------------


def test_namenode_file_info_blocks_and_listing(nn: NameNodeClient, files: dict[str, bytes]) -> None:
    st_ = nn.get_file_info(f"{ROOT}/several")
    assert st_ is not None and st_.kind == "file" and st_.length == SIZES["several"]
    assert st_.block_size == BLOCK and st_.replication == 3
    root = nn.get_file_info(ROOT)
    assert root is not None and root.is_dir
    assert nn.get_file_info(f"{ROOT}/nope") is None
    listing = {e.path: e.length for e in nn.list_status(ROOT)}
    assert {f"{ROOT}/{n}": s for n, s in SIZES.items()}.items() <= listing.items()
    located = nn.file_blocks(f"{ROOT}/several")
    assert located.file_length == SIZES["several"] and not located.under_construction
    assert [b.block.num_bytes for b in located.blocks] == [BLOCK, BLOCK, BLOCK, 12345]
    assert [b.offset for b in located.blocks] == [0, BLOCK, 2 * BLOCK, 3 * BLOCK]
    for b in located.blocks:
        assert len(b.locations) == 3 and {d.rack for d in b.locations} == {"/rack-b"}
        assert b.block.pool_id.startswith("BP-") and b.block.generation_stamp > 0
    assert nn.file_blocks(f"{ROOT}/empty").blocks == ()
    with pytest.raises(RemoteFileNotFoundError) as info:
        nn.get_block_locations(f"{ROOT}/nope")
    assert info.value.java_class == "java.io.FileNotFoundException"
    assert isinstance(info.value, FileNotFoundError)


def test_listing_pages_past_the_limit(testbed: Testbed, nn: NameNodeClient) -> None:
    # dfs.ls.limit defaults to 1000 entries per getListing reply: 1005 files need two pages.
    d = f"{ROOT}/many"
    names = [f"{d}/f{i:04d}" for i in range(1005)]
    testbed.hdfs(CLIENT, "dfs", "-mkdir", "-p", d)
    testbed.hdfs(CLIENT, "dfs", "-touchz", *names, timeout=300)
    calls: list[str] = []
    real_call = nn.call

    def counting(method, request, response_type):  # type: ignore[no-untyped-def]
        calls.append(method)
        return real_call(method, request, response_type)

    nn.call = counting  # type: ignore[method-assign]
    try:
        got = [e.path for e in nn.list_status(d)]
    finally:
        del nn.call
    assert got == names
    assert calls == ["getListing", "getListing"]


def test_blocks_cli_json(testbed: Testbed, files: dict[str, bytes]) -> None:
    import json

    out = cli(testbed, "blocks", "--json", f"{ROOT}/several")
    assert out.returncode == 0, out.stderr.decode()
    doc = json.loads(out.stdout)
    assert doc["file_length_bytes"] == SIZES["several"] and len(doc["blocks"]) == 4
    b0 = doc["blocks"][0]
    assert b0["length_bytes"] == BLOCK and b0["block_name"].startswith("blk_")
    assert {loc["rack"] for loc in b0["locations"]} == {"/rack-b"}
    assert {loc["ip"] for loc in b0["locations"]} == {
        testbed.addresses[dn] for dn in testbed.datanodes
    }
    ls = cli(testbed, "ls", ROOT)
    assert ls.returncode == 0 and f"{ROOT}/several".encode() in ls.stdout


def test_missing_paths_give_clear_errors(testbed: Testbed, files: dict[str, bytes]) -> None:
    for cmd in ("cat", "blocks", "ls"):
        got = cli(testbed, cmd, f"{ROOT}/does-not-exist")
        assert got.returncode == 1
        err = got.stderr.decode()
        assert f"{ROOT}/does-not-exist" in err and "Traceback" not in err, err
    got = cli(testbed, "cat", "--namenode", "198.18.2.10:1", f"{ROOT}/one")
    assert got.returncode == 1 and b"198.18.2.10:1" in got.stderr


# ---- failures and failover --------------------------------------------------------------------


def _relay(testbed: Testbed, upstream: DatanodeInfo, flip_at: int) -> subprocess.Popen[bytes]:
    argv = testbed.argv(RELAY_HOST, [
        sys.executable, str(RELAY), testbed.addresses[RELAY_HOST], str(RELAY_PORT),
        upstream.ip, str(upstream.xfer_port), str(flip_at),
    ])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"listening"
    return proc


def test_corrupted_byte_is_caught_and_another_replica_serves(
    testbed: Testbed, nn: NameNodeClient, reader: BlockReader, files: dict[str, bytes]
) -> None:
    lb = nn.file_blocks(f"{ROOT}/several").blocks[2]
    upstream = lb.locations[0]
    # Reply layout for READ_BLOCK(0, 100000): response, then packet 0 = 31-byte prefix, 128
    # checksums (512 bytes) and 64 KiB of data. Flip data byte 1000: chunk 1, block offset 512.
    spec = ChecksumSpec()
    flip_at = len(D.encode_read_response(spec, 0)) + 31 + 512 + 1000
    proc = _relay(testbed, upstream, flip_at)
    try:
        relay_dn = dataclasses.replace(
            upstream, ip=testbed.addresses[RELAY_HOST], xfer_port=RELAY_PORT, hostname="relay"
        )
        via_relay = dataclasses.replace(lb, locations=(relay_dn, *lb.locations))
        got = reader.read(via_relay, 0, 100000)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)
    assert got.data == files["several"][2 * BLOCK : 2 * BLOCK + 100000]
    assert len(got.failures) == 1
    failure = got.failures[0]
    assert failure.datanode == relay_dn
    err = failure.error
    assert isinstance(err, BlockChecksumError)
    assert err.block == lb.block and err.offset == 512
    assert lb.block.name in str(err) and "offset 512" in str(err)
    assert got.datanodes == [upstream]  # the real replica behind the relay served it all


def test_stopped_datanode_fails_over(  # type: ignore[no-untyped-def]
    testbed: Testbed, nn: NameNodeClient, connect, files: dict[str, bytes],
    plain_switching: Testbed,
) -> None:
    # The reader's own fail-over is the subject: with the ToR's engine in the path, a block
    # it has cached would be served without touching the stopped DataNode.
    lb = nn.file_blocks(f"{ROOT}/several").blocks[0]
    first = lb.locations[0]
    name = next(h for h, ip in testbed.addresses.items() if ip == first.ip)
    pids = [pid for pid, proc in hadoop.testbed_jvms(testbed.instance).items() if proc == name]
    assert len(pids) == 1, f"DataNode JVM of {name}: {pids}"
    os.kill(pids[0], signal.SIGSTOP)
    try:
        start = time.monotonic()
        with BlockReader(timeout=2, connect=connect) as r:
            got = r.read(lb)
        took = time.monotonic() - start
    finally:
        os.kill(pids[0], signal.SIGCONT)
    assert got.data == files["several"][:BLOCK]
    assert [f.datanode for f in got.failures] == [first]
    assert isinstance(got.failures[0].error, TimeoutError)
    assert first not in got.datanodes and took < 20


def test_refused_connection_fails_over(
    nn: NameNodeClient, reader: BlockReader, files: dict[str, bytes]
) -> None:
    lb = nn.file_blocks(f"{ROOT}/b513").blocks[0]
    closed = dataclasses.replace(lb.locations[0], xfer_port=9)
    got = reader.read(dataclasses.replace(lb, locations=(closed, *lb.locations)))
    assert got.data == files["b513"]
    assert isinstance(got.failures[0].error, ConnectionRefusedError)


def test_datanode_error_status(nn: NameNodeClient, reader: BlockReader) -> None:
    lb = nn.file_blocks(f"{ROOT}/b513").blocks[0]
    wrong = Block(lb.block.pool_id, lb.block.block_id + 999_999, 1, lb.block.num_bytes)
    bogus = LocatedBlock(wrong, 0, lb.locations[:1], False, lb.token)
    with pytest.raises(BlockReadError) as info:
        reader.read(bogus)
    err = info.value.failures[0].error
    assert isinstance(err, DataNodeStatusError) and "ERROR" in str(err)


def test_serializers_match_a_real_datanode(
    nn: NameNodeClient, testbed: Testbed, files: dict[str, bytes]
) -> None:
    lb = nn.file_blocks(f"{ROOT}/several").blocks[3]  # the short last block
    dn = lb.locations[0]
    spec = ChecksumSpec()
    for offset, length in [(0, lb.block.num_bytes), (1000, 5000), (12345 - 700, 700)]:
        req = D.read_block_request(lb.block.to_proto(), offset, length, token=lb.token)
        with testbed.connect(CLIENT, dn.ip, dn.xfer_port, 20) as s:
            s.sendall(D.encode_request(D.Op.READ_BLOCK, req))
            parser = D.StreamParser(D.Direction.DATANODE, expect=[(D.Op.READ_BLOCK, req)])
            raw = bytearray()
            done = False
            while not done:
                chunk = s.recv(1 << 20)
                assert chunk, "DataNode closed early"
                raw += chunk
                done = any(isinstance(e, D.End) for e in parser.feed(chunk))
            s.sendall(D.encode_client_read_status())
        start = spec.align_down(offset)
        end = min(spec.align_up(offset + length), lb.block.num_bytes)
        data = files["several"][3 * BLOCK + start : 3 * BLOCK + end]
        assert bytes(raw) == D.encode_read_reply(data, spec, start)
