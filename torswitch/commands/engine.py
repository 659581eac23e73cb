"""`torswitch engine --config FILE`: the block engine in the foreground.

Usually started by `torswitch run`, which supervises it and installs the interception only
while it is healthy. Stops cleanly on SIGTERM or SIGINT (the cache is flushed and closed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("engine", help="run the ToR block engine in the foreground",
                                   description=__doc__)
    parser.add_argument("--config", required=True, metavar="FILE", help="torswitch config file")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(args.config))


async def serve(config_path: str) -> int:
    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY

    from torswitch import config
    from torswitch.blockcache import BlockCache
    from torswitch.engine import BlockEngine
    from torswitch.metrics import EngineCollector

    cfg = config.load(config_path).engine
    from torswitch.hadoopconf import HadoopConf

    hadoop = HadoopConf.load(cfg.hadoop_conf_dir) if cfg.hadoop_conf_dir else None
    uses_tokens = hadoop.get_bool("dfs.block.access.token.enable") if hadoop else False
    cache = BlockCache(cfg.cache_path, cfg.cache_capacity_bytes, segment_bytes=cfg.segment_bytes)
    log = logging.getLogger("torswitch.engine")
    if cache.recovered_from:
        log.error("cache store was unreadable and was reset: %s", cache.recovered_from)
    engine = BlockEngine(cache, host=cfg.listen_host, port=cfg.listen_port,
                         block_tokens=cfg.block_tokens, cluster_uses_tokens=uses_tokens,
                         upstream_timeout_s=cfg.upstream_timeout_s)
    collector = EngineCollector(engine, cache)
    if cfg.metrics_port:
        REGISTRY.register(collector)
        start_http_server(cfg.metrics_port)
    agent_server = None
    prefetcher = None
    if cfg.agent_port:
        from torswitch.agent import CacheAgentServicer, create_server
        from torswitch.namenode import NameNodeClient
        from torswitch.prefetcher import Prefetcher

        # a new client per resolution, at the conf's NameNode
        namenode = (functools.partial(NameNodeClient, *hadoop.namenode_address())
                    if hadoop else None)
        prefetcher = Prefetcher(cache, namenode=namenode, concurrency=cfg.prefetch_concurrency,
                                rate_bytes_per_s=cfg.prefetch_rate_bytes_per_s,
                                inflight=engine.inflight,
                                demand_active=lambda: engine.active_relays > 0)
        collector.prefetched_bytes = lambda: prefetcher.bytes_prefetched if prefetcher else 0
        agent_server, _ = await create_server(f"{cfg.listen_host}:{cfg.agent_port}",
                                              CacheAgentServicer(engine, cache, prefetcher))
    reporter_task = None
    if cfg.directory and cfg.agent_port and cfg.rack:
        reporter_task = asyncio.create_task(_report_to_directory(cfg, cache))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    log.info("engine ready: %d blocks cached, %d of %d bytes", cache.stats.blocks,
             cache.stats.used_bytes, cache.capacity_bytes)
    try:
        await stop.wait()
    finally:
        if reporter_task is not None:
            reporter_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter_task
        if agent_server is not None:
            await agent_server.stop(grace=1.0)
        if prefetcher is not None:
            prefetcher.close()
        await engine.stop()
        cache.close()
        log.info("engine stopped")
    return 0


async def _report_to_directory(cfg: Any, cache: Any) -> None:
    """Register this ToR with the block directory and keep reporting its blocks."""
    import socket

    from torswitch.directory import SwitchReporter

    host = cfg.listen_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostbyname(socket.gethostname())
    reporter = SwitchReporter(
        cfg.directory, switch_id=cfg.switch_id or socket.gethostname(), rack=cfg.rack,
        agent_address=cfg.agent_address or f"{host}:{cfg.agent_port}",
        capacity_bytes=cache.capacity_bytes, list_blocks=cache.list_blocks,
        hosts=cfg.rack_hosts, used_bytes=lambda: cache.stats.used_bytes)
    try:
        await reporter.run()
    finally:
        await reporter.close()
