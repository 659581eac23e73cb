"""torswitch.jobs.spark_hint against an in-process directory with one fake ToR agent: the hint
step, waiting, release, and fail-open when the directory cannot help."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from torswitch.api.hadoop import Security_pb2 as sec
from torswitch.api.torswitch.agent.v1 import agent_pb2 as apb
from torswitch.api.torswitch.agent.v1 import agent_pb2_grpc as apb_grpc
from torswitch.api.torswitch.directory.v1 import directory_pb2 as pb
from torswitch.directory import Directory, create_server
from torswitch.jobs import spark_hint
from torswitch.namenode import Block, DatanodeInfo, FileStatus, LocatedBlock, LocatedBlocks


class OneFileNameNode:
    """/in/data: two blocks on one DataNode."""

    def get_file_info(self, path: str) -> FileStatus | None:
        if path != "/in/data":
            return None
        return FileStatus(path, "file", 8 << 20, 0o644, "u", "g", 0, 0, 1, 4 << 20, 0, 0)

    def list_status(self, path: str) -> Iterator[FileStatus]:
        return iter(())

    def file_blocks(self, path: str) -> LocatedBlocks:
        dn = DatanodeInfo("198.18.2.11", "dn1", "", 9866, 0, 0, "/rack-b", "NORMAL")
        token = sec.TokenProto(identifier=b"", password=b"", kind="", service="")
        blocks = tuple(LocatedBlock(Block("BP-1", 1000 + i, 1, 4 << 20), i * (4 << 20), (dn,),
                                    False, token) for i in range(2))
        return LocatedBlocks(8 << 20, blocks, False, True, False, False)


class InstantAgent(apb_grpc.CacheAgentServicer):
    def __init__(self) -> None:
        self.prefetched: list[int] = []

    async def Prefetch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.prefetched += [b.block_id for b in request.blocks]
        size = sum(b.num_bytes for b in request.blocks)
        n = len(request.blocks)
        yield apb.PrefetchProgress(blocks_total=n, blocks_ready=n, bytes_total=size,
                                   bytes_ready=size, done=True)

    async def Evict(self, request: Any, context: Any) -> Any:
        return apb.EvictReply(evicted=len(request.blocks))


@pytest.fixture
def directory() -> Iterator[tuple[str, InstantAgent, Directory]]:
    loop = asyncio.new_event_loop()
    agent = InstantAgent()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        d = Directory(namenode=OneFileNameNode, heartbeat_interval_s=60)
        server, port = await create_server("127.0.0.1:0", d)
        asrv = grpc.aio.server()
        apb_grpc.add_CacheAgentServicer_to_server(agent, asrv)
        aport = asrv.add_insecure_port("127.0.0.1:0")
        await asrv.start()
        d.register(pb.RegisterSwitchRequest(switch_id="tor-a", rack="/rack-a",
                                            agent_address=f"127.0.0.1:{aport}",
                                            capacity_bytes=1 << 30, hosts=["127.0.0.1"]))
        box.update(port=port, d=d, stop=asyncio.Event())
        ready.set()
        await box["stop"].wait()
        await asrv.stop(None)
        await server.stop(None)
        await d.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    yield f"127.0.0.1:{box['port']}", agent, box["d"]
    loop.call_soon_threadsafe(box["stop"].set)
    thread.join(10)


def test_hdfs_path() -> None:
    assert spark_hint.hdfs_path("hdfs://198.18.2.10:8020/data/x") == "/data/x"
    assert spark_hint.hdfs_path("hdfs:///data/x") == "/data/x"
    assert spark_hint.hdfs_path("/data/part-[0-3]") == "/data/part-[0-3]"
    for bad in ("data/x", "s3a://bucket/x", "file:///tmp/x"):
        with pytest.raises(ValueError):
            spark_hint.hdfs_path(bad)


def test_submit_args() -> None:
    assert spark_hint.submit_args(None, []) is None
    assert spark_hint.submit_args("local[2]", ["spark.ui.enabled=false"]) == (
        "--master local[2] --conf spark.ui.enabled=false pyspark-shell")
    with pytest.raises(ValueError):
        spark_hint.submit_args(None, ["no-equals"])


def test_hint_wait_run_release(directory: tuple[str, InstantAgent, Directory],
                               tmp_path: Any) -> None:
    address, agent, d = directory
    # No rack or host given: this host, by the address it reaches the directory from.
    with spark_hint.hinted(["hdfs://nn:8020/in/data"], directory=address) as outcome:
        assert outcome.problems == []
        assert outcome.ready and outcome.blocks_ready == outcome.blocks_total == 2
        assert outcome.bytes_ready == 8 << 20
        assert spark_hint.os.environ[spark_hint.PLAN_ENV] == outcome.plan_id
    assert sorted(agent.prefetched) == [1000, 1001]
    assert spark_hint.PLAN_ENV not in spark_hint.os.environ
    assert d.plans[outcome.plan_id].state == pb.PLAN_STATE_CANCELLED  # released after the job
    script = tmp_path / "job.py"
    script.write_text("import sys\nsys.exit(int(sys.argv[1]))\n")
    assert spark_hint.run_script(str(script), ["3"]) == 3


def test_fail_open(directory: tuple[str, InstantAgent, Directory]) -> None:
    address, agent, _ = directory
    missing = spark_hint.hint_inputs(["/in/nope"], directory=address, racks=["/rack-a"])
    assert missing.plan_id == "" and "NOT_FOUND" in missing.problems[0]
    refused = spark_hint.hint_inputs(["/in/data"], directory=address, racks=["/rack-z"])
    assert "no ToR is registered for rack '/rack-z'" in refused.problems[0]
    down = spark_hint.hint_inputs(["/in/data"], directory="127.0.0.1:1", racks=["/rack-a"])
    assert down.plan_id == "" and "UNAVAILABLE" in down.problems[0]
    assert agent.prefetched == []
