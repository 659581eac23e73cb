"""`torswitch directory --config FILE`: run the block directory service in the foreground.

Reads the config's `directory:` section (listen address, hadoop_conf_dir for resolving hinted
paths through the NameNode, heartbeat interval). ToRs find it through their engine config
(`engine: directory: HOST:PORT`), clients through --directory or $TORSWITCH_DIRECTORY. Stops
cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
from collections.abc import Callable
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("directory", help="run the block directory service",
                                   description=__doc__)
    parser.add_argument("--config", required=True, metavar="FILE", help="torswitch config file")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(args.config))


async def serve(config_path: str) -> int:
    from torswitch import config
    from torswitch.directory import Directory, create_server

    cfg = config.load(config_path).directory
    namenode: Callable[[], Any] | None = None
    if cfg.hadoop_conf_dir:
        from torswitch.hadoopconf import HadoopConf
        from torswitch.namenode import NameNodeClient

        # a new client per resolution, at the conf's NameNode
        namenode = functools.partial(NameNodeClient,
                                     *HadoopConf.load(cfg.hadoop_conf_dir).namenode_address())

    directory = Directory(namenode=namenode, heartbeat_interval_s=cfg.heartbeat_interval_s,
                          plan_retention_s=cfg.plan_retention_s)
    server, port = await create_server(cfg.listen, directory)
    log = logging.getLogger("torswitch.directory")
    log.info("directory listening on %s (port %d)%s", cfg.listen, port,
             "" if namenode else "; no hadoop_conf_dir: hints must name blocks")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=1.0)
        await directory.close()
        log.info("directory stopped")
    return 0
