"""`torswitch spark-submit-hinted --input PATH... [--rack R] [--no-wait] SCRIPT [ARGS...]`.

Hints a PySpark job's input paths to the block directory, waits until the ToR caches hold them
(unless --no-wait), runs SCRIPT with pyspark in this process (--master and --conf go to Spark),
then releases the plan's pins (the blocks stay cached). The job runs even if the hint fails,
unless --strict. The directory address comes from --directory, else $TORSWITCH_DIRECTORY, else
127.0.0.1:19870. See torswitch.jobs.spark_hint.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "spark-submit-hinted",
        help="hint a PySpark job's input to the block directory, wait, then run the job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", action="append", default=[], required=True, metavar="PATH",
                        help="an input of the job: hdfs:// URI or HDFS path, globs allowed "
                        "(repeatable)")
    parser.add_argument("--directory", default=None,
                        help="directory host:port (default $TORSWITCH_DIRECTORY or "
                        "127.0.0.1:19870)")
    parser.add_argument("--rack", action="append", default=[], metavar="RACK",
                        help="rack the job's tasks run in (repeatable; default: this host's)")
    parser.add_argument("--host", action="append", default=[], metavar="HOST",
                        help="host the job's tasks run on (repeatable)")
    parser.add_argument("--no-wait", dest="wait", action="store_false",
                        help="start the job at once; the prefetch races it")
    parser.add_argument("--wait-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="give up waiting after this long and run the job (default 600)")
    parser.add_argument("--all-or-nothing", action="store_true",
                        help="refuse the hint unless all of the input fits")
    parser.add_argument("--ttl", type=float, default=3600.0, metavar="SECONDS",
                        help="pin the input at most this long (default 3600)")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--job-id", default="", help="the job's name (default: SCRIPT's)")
    parser.add_argument("--keep-pinned", action="store_true",
                        help="leave the input pinned after the job, until the TTL")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 instead of running the job when the hint fails or the "
                        "input is not ready in time")
    parser.add_argument("--master", help="Spark master for the job, e.g. local[2]")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="Spark configuration for the job (repeatable)")
    parser.add_argument("script", metavar="SCRIPT", help="the PySpark script")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="arguments of the script")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torswitch.errors import TorswitchError
    from torswitch.jobs import spark_hint

    try:
        submit = spark_hint.submit_args(args.master, args.conf)
        for uri in args.input:
            spark_hint.hdfs_path(uri)
    except ValueError as exc:
        raise TorswitchError(str(exc)) from None
    if not os.path.isfile(args.script):
        raise TorswitchError(f"no such script: {args.script}")
    if submit:
        os.environ["PYSPARK_SUBMIT_ARGS"] = submit
    job_id = args.job_id or os.path.basename(args.script)
    with spark_hint.hinted(
        args.input, directory=args.directory, racks=args.rack, hosts=args.host,
        wait=args.wait, wait_timeout_s=args.wait_timeout, ttl_s=args.ttl,
        all_or_nothing=args.all_or_nothing, job_id=job_id, priority=args.priority,
        keep_pinned=args.keep_pinned,
    ) as outcome:
        for problem in outcome.problems:
            print(f"torswitch spark-submit-hinted: {problem}", file=sys.stderr)
        if outcome.plan_id:
            how = (f"{outcome.blocks_ready}/{outcome.blocks_total} blocks ready after "
                   f"{outcome.waited_s:.2f} s" if args.wait
                   else f"{outcome.blocks_total} blocks prefetching")
            print(f"torswitch spark-submit-hinted: plan {outcome.plan_id}: {how}; "
                  f"running {args.script}", file=sys.stderr)
        if args.strict and (outcome.problems or (args.wait and not outcome.ready)):
            print("torswitch spark-submit-hinted: --strict: not running the job",
                  file=sys.stderr)
            return 1
        return spark_hint.run_script(args.script, args.args)
