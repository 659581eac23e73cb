"""`torswitch hdfs ls|blocks|cat`: browse and read HDFS through torswitch's own client.

Everything goes through torswitch.namenode (Hadoop IPC) and torswitch.blockreader
(DataTransferProtocol with checksum verification), never through a Hadoop library, so these
commands double as a check of the protocol layer against a real cluster. The NameNode comes
from --namenode HOST:PORT, or from fs.defaultFS in --conf-dir (default: $HADOOP_CONF_DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from torswitch.errors import TorswitchError


class HdfsUsageError(TorswitchError, ValueError):
    """Bad arguments to a `torswitch hdfs` command."""


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("cluster")
    where.add_argument("--namenode", metavar="HOST:PORT", help="NameNode client RPC address")
    where.add_argument(
        "--conf-dir", metavar="DIR",
        help="Hadoop conf dir to take fs.defaultFS from (default: $HADOOP_CONF_DIR)",
    )
    where.add_argument("--user", help="user name sent to the NameNode (default: login name)")
    where.add_argument(
        "--timeout", type=float, default=30.0, metavar="S",
        help="seconds to wait for a NameNode or DataNode (default 30)",
    )

    parser = subparsers.add_parser(
        "hdfs", help="list, locate and read HDFS files with torswitch's own client",
        description=__doc__,
    )
    sub = parser.add_subparsers(dest="hdfs_command", metavar="COMMAND")

    ls = sub.add_parser("ls", parents=[common], help="list a directory (or stat a file)")
    ls.add_argument("path", metavar="PATH")
    ls.set_defaults(func=cmd_ls)

    blocks = sub.add_parser(
        "blocks", parents=[common], help="show a file's blocks and their replica locations"
    )
    blocks.add_argument("path", metavar="PATH")
    blocks.add_argument("--json", action="store_true", help="print one JSON object")
    blocks.set_defaults(func=cmd_blocks)

    cat = sub.add_parser(
        "cat", parents=[common], help="write a file (or a byte range of it) to stdout"
    )
    cat.add_argument("path", metavar="PATH")
    cat.add_argument("--offset", type=int, default=0, metavar="O", help="first byte (default 0)")
    cat.add_argument(
        "--length", type=int, default=None, metavar="L",
        help="at most L bytes (default: to the end of the file)",
    )
    cat.set_defaults(func=cmd_cat)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


# ---- helpers --------------------------------------------------------------------------------


def namenode_address(args: argparse.Namespace) -> tuple[str, int]:
    """(host, port) from --namenode, else --conf-dir / $HADOOP_CONF_DIR's fs.defaultFS.

    Raises HdfsUsageError when neither is given, ConfigError for a bad conf dir.
    """
    from torswitch.hadoopconf import DEFAULT_NAMENODE_PORT, HadoopConf, parse_host_port

    if args.namenode:
        return parse_host_port(args.namenode, "--namenode", DEFAULT_NAMENODE_PORT)
    conf_dir = args.conf_dir or os.environ.get("HADOOP_CONF_DIR")
    if not conf_dir:
        raise HdfsUsageError("give --namenode HOST:PORT or --conf-dir DIR (or set HADOOP_CONF_DIR)")
    return HadoopConf.load(conf_dir).namenode_address()


def _client(args: argparse.Namespace) -> Any:
    from torswitch.namenode import NameNodeClient

    host, port = namenode_address(args)
    return NameNodeClient(host, port, user=args.user, timeout=args.timeout)


def _check_path(path: str) -> str:
    if not path.startswith("/"):
        raise HdfsUsageError(f"{path!r}: HDFS paths must be absolute (start with /)")
    return path


def _mode_string(kind: str, perm: int) -> str:
    out = {"dir": "d", "symlink": "l"}.get(kind, "-")
    for shift in (6, 3, 0):
        bits = (perm >> shift) & 7
        out += ("r" if bits & 4 else "-") + ("w" if bits & 2 else "-") + ("x" if bits & 1 else "-")
    return out


# ---- commands -------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    """Print one line per entry, in the layout of `hadoop fs -ls`."""
    path = _check_path(args.path)
    with _client(args) as nn:
        entries = list(nn.list_status(path))
    out = sys.stdout
    if len(entries) != 1 or entries[0].path != path or entries[0].is_dir:
        out.write(f"Found {len(entries)} items\n")
    for st in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.modification_time / 1000))
        repl = "-" if st.is_dir else str(st.replication)
        out.write(
            f"{_mode_string(st.kind, st.permission)} {repl:>3} {st.owner} {st.group} "
            f"{st.length:>12} {when} {st.path}\n"
        )
    return 0


def cmd_blocks(args: argparse.Namespace) -> int:
    """Print every block of a file: id, pool, generation stamp, length, replicas with racks."""
    path = _check_path(args.path)
    with _client(args) as nn:
        located = nn.file_blocks(path)
    blocks = [
        {
            "index": i,
            "file_offset": lb.offset,
            "block_id": lb.block.block_id,
            "block_name": lb.block.name,
            "pool_id": lb.block.pool_id,
            "generation_stamp": lb.block.generation_stamp,
            "length_bytes": lb.block.num_bytes,
            "corrupt": lb.corrupt,
            "locations": [
                {
                    "ip": dn.ip, "hostname": dn.hostname, "xfer_port": dn.xfer_port,
                    "rack": dn.rack, "uuid": dn.uuid, "admin_state": dn.admin_state,
                }
                for dn in lb.locations
            ],
        }
        for i, lb in enumerate(located.blocks)
    ]
    if args.json:
        doc = {
            "path": path,
            "file_length_bytes": located.file_length,
            "under_construction": located.under_construction,
            "last_block_complete": located.last_block_complete,
            "blocks": blocks,
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{path}: {located.file_length} bytes, {len(blocks)} block(s)")
    for b in blocks:
        locs = ", ".join(f"{loc['ip']}:{loc['xfer_port']} {loc['rack']}" for loc in b["locations"])
        print(
            f"  #{b['index']} offset {b['file_offset']} {b['block_name']} pool {b['pool_id']} "
            f"len {b['length_bytes']}{' CORRUPT' if b['corrupt'] else ''}\n      [{locs}]"
        )
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    """Stream [offset, offset+length) of a file to stdout, verifying every chunk."""
    from tqdm import tqdm

    from torswitch.blockreader import BlockReader, iter_file_range

    path = _check_path(args.path)
    if args.offset < 0 or (args.length is not None and args.length < 0):
        raise HdfsUsageError("--offset and --length must not be negative")
    with _client(args) as nn:
        located = nn.file_blocks(path)
    if located.erasure_coded or located.encrypted:
        # Striped block groups and ciphertext would need a decoder this reader does not have.
        kind = "erasure-coded" if located.erasure_coded else "in an encryption zone"
        raise HdfsUsageError(f"{path} is {kind}; torswitch hdfs cat reads replicated files only")
    size = located.file_length
    if args.offset > size:
        raise HdfsUsageError(f"--offset {args.offset} is past the end of {path} ({size} bytes)")
    end = size if args.length is None else min(size, args.offset + args.length)
    out = sys.stdout.buffer
    progress = tqdm(
        total=end - args.offset, unit="B", unit_scale=True, desc=path, file=sys.stderr,
        disable=None, leave=False,
    )
    try:
        with BlockReader(timeout=args.timeout) as reader:
            pieces = iter_file_range(reader, located.blocks, args.offset, end - args.offset)
            for piece in pieces:
                out.write(piece)
                progress.update(len(piece))
        out.flush()
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        # Replica failures the reader recovered from were already logged as warnings.
        progress.close()
    return 0
