"""The engine on a cluster with block access tokens: no cached bytes without a valid token.

A testbed instance of its own (`up --block-tokens`, smaller than the session's: 1 DataNode).
A file is read twice with FsShell (its real tokens from the NameNode): the second read is a hit,
after the engine had the DataNode check the client's token. Then a client on c1 asks for the
same cached block with a forged token, and with no token: it gets the DataNode's
ERROR_ACCESS_TOKEN and not one byte of data.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from torswitch.testbed import lifecycle
from torswitch.testbed.handle import Testbed
from torswitch.testbed.state import RunDir

AGENT = "198.18.1.1:19867"

PROBE = r"""
import json, socket, sys
from torswitch.api.hadoop import datatransfer_pb2 as dt
from torswitch.api.hadoop import Security_pb2 as sec
from torswitch.datatransfer import (Data, Direction, End, Op, Response, StreamParser,
    encode_request, read_block_request)
from torswitch.hadoopconf import HadoopConf
from torswitch.namenode import NameNodeClient
host, port = HadoopConf.load(sys.argv[2]).namenode_address()
with NameNodeClient(host, port) as nn:
    lb = nn.file_blocks(sys.argv[1]).blocks[0]
results = {}
forged = sec.TokenProto()
forged.CopyFrom(lb.token)
forged.password = bytes(b ^ 0x5A for b in lb.token.password)
empty = sec.TokenProto(identifier=b"", password=b"", kind="", service="")
for name, token in (("valid", lb.token), ("forged", forged), ("empty", empty)):
    req = read_block_request(lb.block.to_proto(), 0, lb.block.num_bytes, token=token)
    s = socket.create_connection(lb.locations[0].xfer_address, timeout=30)
    s.sendall(encode_request(Op.READ_BLOCK, req))
    parser = StreamParser(Direction.DATANODE, expect=[(Op.READ_BLOCK, req)])
    status, data = None, 0
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        evs = parser.feed(chunk)
        for ev in evs:
            if isinstance(ev, Response):
                status = dt.Status.Name(ev.message.status)
            elif isinstance(ev, Data):
                data += len(ev.data)
        if any(isinstance(ev, End) for ev in evs):
            break
    s.close()
    results[name] = {"status": status, "data_bytes": data, "token_len": len(token.identifier)}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def token_testbed() -> Iterator[Testbed]:
    instance = os.environ.get("TORSWITCH_TEST_TOKEN_TESTBED", "pytok")
    run = RunDir(instance)
    lifecycle.down(instance, run=run)  # leftovers of a crashed session
    lifecycle.up(instance, lifecycle.UpOptions(datanodes=1, block_size=4 << 20,
                                               block_tokens=True, cache_bytes=64 << 20),
                 progress=False, owner_pid=os.getpid(), run=run)
    try:
        yield Testbed.attach(instance, run=run)
    finally:
        lifecycle.down(instance, run=run)


def stats(tb: Testbed) -> dict[str, int]:
    out = tb.run("c1", [sys.executable, "-m", "torswitch", "cache", "--agent", AGENT, "stats",
                        "--json"]).stdout
    return {k: int(v) for k, v in json.loads(out).items() if str(v).isdigit()}


def test_no_cached_bytes_without_a_valid_token(token_testbed: Testbed, tmp_path: Path) -> None:
    tb = token_testbed
    tb.wait_engine(True)
    data = os.urandom(3 << 20)
    local = tmp_path / "secret.bin"
    local.write_bytes(data)
    tb.hdfs("c1", "dfs", "-put", "-f", str(local), "/secret.bin")
    assert tb.hdfs("c1", "dfs", "-cat", "/secret.bin").stdout == data  # miss, cached
    before = stats(tb)
    assert tb.hdfs("c1", "dfs", "-cat", "/secret.bin").stdout == data  # hit, token checked
    after = stats(tb)
    assert after["hits"] > before["hits"]
    results = json.loads(tb.python("c1", PROBE, "/secret.bin", str(tb.client_conf_dir)).stdout)
    assert results["valid"]["token_len"] > 0, "the cluster did not issue a block token"
    assert results["valid"] == {"status": "SUCCESS", "data_bytes": len(data),
                                "token_len": results["valid"]["token_len"]}
    for bad in ("forged", "empty"):
        assert results[bad]["status"] == "ERROR_ACCESS_TOKEN", results
        assert results[bad]["data_bytes"] == 0
    metrics = tb.python("c1", "import urllib.request; print(urllib.request.urlopen("
                        "'http://198.18.1.1:19868/metrics').read().decode())").stdout.decode()
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("torswitch_engine_token")}
    assert values["torswitch_engine_token_checks_total"] >= 2  # the valid and the forged token
    assert values["torswitch_engine_token_rejections_total"] >= 1  # the forged one
