"""`torswitch engine --config FILE`: the block engine in the foreground.

Usually started by `torswitch run`, which supervises it and installs the interception only
while it is healthy. Stops cleanly on SIGTERM or SIGINT (the cache is flushed and closed).
"""

from __future__ import annotations

import argparse
import asyncio
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
    uses_tokens = False
    if cfg.hadoop_conf_dir:
        from torswitch.hadoopconf import HadoopConf

        uses_tokens = HadoopConf.load(cfg.hadoop_conf_dir).get_bool("dfs.block.access.token.enable")
    cache = BlockCache(cfg.cache_path, cfg.cache_capacity_bytes, segment_bytes=cfg.segment_bytes)
    log = logging.getLogger("torswitch.engine")
    if cache.recovered_from:
        log.error("cache store was unreadable and was reset: %s", cache.recovered_from)
    engine = BlockEngine(cache, host=cfg.listen_host, port=cfg.listen_port,
                         block_tokens=cfg.block_tokens, cluster_uses_tokens=uses_tokens,
                         upstream_timeout_s=cfg.upstream_timeout_s)
    if cfg.metrics_port:
        REGISTRY.register(EngineCollector(engine, cache))
        start_http_server(cfg.metrics_port)
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
        await engine.stop()
        cache.close()
        log.info("engine stopped")
    return 0
