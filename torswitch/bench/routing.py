"""`torswitch bench routing`: ketama lookups per second, native and Python paths.

For 16-byte keys on 4, 16 and 64 servers (ketama, fnv1a_64, TwemProxy's default), it measures:
  - C batch: keys already packed, one native call per batch (what the data plane does);
  - Python batch: a list of bytes keys through Ring.index_batch (packing included);
  - Python single key: Ring.index(key) in a loop;
  - the pure-Python reference ring (torswitch.oracles), the baseline of the same run.
Targets: C batch >= 15 M lookups/s on one core; Python batch >= 3 M keys/s.
"""

from __future__ import annotations

import argparse
import os
import time

from torswitch.bench.report import Report, Target

NAME = "routing"
HELP = "ketama lookup rate: C batch, Python batch and single key, pure-Python reference"

SERVER_COUNTS = (4, 16, 64)
KEY_BYTES = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=int, default=1_000_000,
                        help="keys per batch measurement (default 1,000,000)")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="minimum time per measurement, best of 3 (default 0.5)")


def _rate(fn, n: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """Best-of-3 items/s, each repetition running fn() until `seconds` have passed."""
    best = 0.0
    for _ in range(3):
        done, start = 0, time.perf_counter()
        while True:
            fn()
            done += n
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, done / elapsed)
    return best


def run(args: argparse.Namespace) -> Report:
    from torswitch import _native
    from torswitch.config import Server
    from torswitch.oracles.ref_ring import RefRing
    from torswitch.routing import Ring

    n = args.keys
    blob = os.urandom(n * KEY_BYTES)
    keys = [blob[i : i + KEY_BYTES] for i in range(0, len(blob), KEY_BYTES)]
    packed, offsets = _native.pack_keys(keys)
    single = keys[:100_000]
    ref_keys = keys[:20_000]
    report = Report(NAME, columns=["servers", "C batch", "Py batch", "Py single", "Py reference",
                                   "C/reference"])
    for count in SERVER_COUNTS:
        servers = [Server(f"198.18.{i // 250}.{i % 250 + 1}", 11211, 1) for i in range(count)]
        ring = Ring(servers)
        ref = RefRing("ketama", "fnv1a_64", [s.identity for s in servers], [1] * count)
        c_batch = _rate(lambda r=ring: r.index_packed(packed, offsets), n, args.seconds)
        py_batch = _rate(lambda r=ring: r.index_batch(keys), n, args.seconds)
        py_single = _rate(lambda r=ring: [r.index(k) for k in single], len(single), args.seconds)
        py_ref = _rate(lambda rr=ref: [rr.lookup(k) for k in ref_keys], len(ref_keys), args.seconds / 2)
        report.figures.update({
            f"c_batch_{count}_servers_lookups_per_s": c_batch,
            f"python_batch_{count}_servers_keys_per_s": py_batch,
            f"python_single_{count}_servers_keys_per_s": py_single,
            f"reference_{count}_servers_keys_per_s": py_ref,
            f"c_batch_over_reference_{count}_servers_ratio": c_batch / py_ref,
        })
        report.rows.append([count, c_batch, py_batch, py_single, py_ref, c_batch / py_ref])
        ring.close()
    report.figures["c_batch_min_lookups_per_s"] = min(
        report.figures[f"c_batch_{c}_servers_lookups_per_s"] for c in SERVER_COUNTS)
    report.figures["python_batch_min_keys_per_s"] = min(
        report.figures[f"python_batch_{c}_servers_keys_per_s"] for c in SERVER_COUNTS)
    report.figures["key_bytes"] = KEY_BYTES
    report.targets = [
        Target("c_batch_min_lookups_per_s", ">=", 15e6),
        Target("python_batch_min_keys_per_s", ">=", 3e6),
    ]
    report.notes.append("rates in lookups (keys) per second, one thread; ketama + fnv1a_64")
    return report
