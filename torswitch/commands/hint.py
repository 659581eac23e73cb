"""`torswitch hint PATH... --rack /rack-a [--wait]`: tell the block directory what a job will read.

The directory places the blocks of PATHs (files, directories, Hadoop globs like
/data/part-[0-3]) on the ToRs of the target racks (or of the racks of --host) and pins them
until the deadline. --wait follows the plan with a progress bar until every block is ready.
The directory address comes from --directory, else $TORSWITCH_DIRECTORY, else
127.0.0.1:19870. `--cancel PLAN` releases a plan instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

DEFAULT_DIRECTORY = "127.0.0.1:19870"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("hint", help="ask the block directory to prefetch a job's input",
                                   description=__doc__)
    parser.add_argument("paths", nargs="*", metavar="PATH", help="HDFS files, directories, globs")
    parser.add_argument("--directory", default=os.environ.get("TORSWITCH_DIRECTORY", DEFAULT_DIRECTORY),
                        help="directory host:port (default $TORSWITCH_DIRECTORY or %(default)s)")
    parser.add_argument("--rack", action="append", default=[], metavar="RACK",
                        help="target rack, e.g. /rack-a (repeatable)")
    parser.add_argument("--host", action="append", default=[], metavar="HOST",
                        help="target host; its rack is targeted (repeatable)")
    parser.add_argument("--job-id", default="", help="the job's name, for Status")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--ttl", type=float, default=3600.0, metavar="SECONDS",
                        help="pin the blocks this long (default %(default)s)")
    parser.add_argument("--all-or-nothing", action="store_true",
                        help="refuse the hint unless every block fits")
    parser.add_argument("--wait", action="store_true", help="follow the plan until it is ready")
    parser.add_argument("--cancel", metavar="PLAN", help="cancel a plan instead of hinting")
    parser.add_argument("--keep-cached", action="store_true",
                        help="with --cancel: keep the blocks, let the pins lapse")
    parser.add_argument("--json", action="store_true", help="print replies as JSON")
    parser.set_defaults(func=run)


def _fail(args: argparse.Namespace, exc: Any) -> int:
    print(f"torswitch hint: {args.directory}: {exc.code().name}: {exc.details()}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from torswitch.directory import DirectoryClient

    with DirectoryClient(args.directory) as client:
        try:
            if args.cancel:
                evicted = client.cancel(args.cancel, keep_cached=args.keep_cached)
                print(json.dumps({"evicted": evicted}) if args.json
                      else f"plan {args.cancel} cancelled, {evicted} block(s) evicted")
                return 0
            if not args.paths:
                print("torswitch hint: name at least one PATH", file=sys.stderr)
                return 2
            if not args.rack and not args.host:
                print("torswitch hint: give --rack or --host", file=sys.stderr)
                return 2
            reply = client.hint(args.paths, racks=args.rack, hosts=args.host, job_id=args.job_id,
                                priority=args.priority, deadline_unix_s=time.time() + args.ttl,
                                all_or_nothing=args.all_or_nothing)
            if args.json and not args.wait:
                print(json.dumps(MessageToDict(reply, preserving_proto_field_name=True)))
                return 0
            if not args.json:
                shares = ", ".join(f"{a.switch_id} {a.blocks}" for a in reply.assignments)
                print(f"plan {reply.plan_id}: {reply.blocks_total} blocks, {reply.bytes_total} "
                      f"bytes ({shares or 'nothing placed'})")
            if not args.wait:
                return 0
            last = _follow(client, reply.plan_id, quiet=args.json)
        except grpc.RpcError as exc:
            return _fail(args, exc)
    if args.json:
        print(json.dumps(MessageToDict(last, preserving_proto_field_name=True)))
    else:
        from torswitch.api.torswitch.directory.v1 import directory_pb2 as pb

        state = pb.PlanState.Name(last.state).removeprefix("PLAN_STATE_").lower()
        print(f"{state}: {last.blocks_ready}/{last.blocks_total} blocks ready"
              + (f", {last.blocks_failed} failed: {'; '.join(last.errors)}" if last.blocks_failed else ""))
    return 0 if last.blocks_failed == 0 and last.blocks_ready == last.blocks_total else 1


def _follow(client: Any, plan_id: str, quiet: bool) -> Any:
    from tqdm import tqdm

    last = None
    with tqdm(unit="B", unit_scale=True, desc="prefetch", disable=quiet) as bar:
        for p in client.watch(plan_id):
            bar.total = p.bytes_total
            bar.update(p.bytes_ready - bar.n)
            last = p
    return last
