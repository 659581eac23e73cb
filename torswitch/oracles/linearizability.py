"""Linearizability checker for histories of a memcached-like key-value store.

Each key is a read/write register (write sets a value, delete sets "absent", read returns the
value or None for a miss). Linearizability is compositional (Herlihy & Wing 1990), so every key
is checked on its own. Per key, the search is Wing & Gong's: repeatedly pick an operation that
may take effect next, apply it to the register, backtrack when a read cannot be explained. It
runs on Lowe's doubly linked list of call and return events ("Testing for linearizability",
2017) and memoizes every visited (set of linearized operations, register value), so a state
reached twice is explored once. An operation may take effect next only if its call comes before
the earliest return of any operation not yet linearized; the list gives that pruning for free.
One partial-order reduction on top: a read that may go next and returns the current value goes
at once, without a choice point, since reads change nothing and nothing still open has to
precede it. On histories from 8 mostly sequential clients this makes the search about linear.

Timing rules:
- op A precedes op B only if A.end < B.start; equal times count as concurrent, so a coarse
  clock never produces a false alarm;
- a write or delete without a response (end None, e.g. a client timeout) may take effect at any
  time after its start, or never; it is given an end of +infinity, which covers both, because
  taking effect after every other operation is indistinguishable from never;
- a read without a response tells nothing and is dropped;
- a write or delete without a response whose value no read returned is dropped too, and one
  that is the only source of a value some read returned gets that read's end (`_tighten`):
  without this, every such op stays a candidate to the end of the history, and the states to
  search double with each.

When a key fails, the history is shrunk to a small failing core (the first read, by response
time, that cannot be explained, then as few other reads and writes as still fail) and printed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

Kind = Literal["read", "write", "delete"]
T = TypeVar("T")

# How many extra searches the shrinking of a failing history may run.
EXPLAIN_BUDGET = 300


@dataclass(frozen=True)
class Op:
    """One operation on `key` by `client`, from invocation `start` to response `end`.

    write: `value` is what was written. read: `value` is what came back (None: miss).
    delete: `value` is None. `end` None: no response was seen.
    """

    client: int
    kind: Kind
    key: bytes
    value: bytes | None
    start: float
    end: float | None

    def __str__(self) -> str:
        end = "-" if self.end is None else f"{self.end:.6f}"
        what = {"read": f"read -> {_show(self.value)}", "write": f"write {_show(self.value)}",
                "delete": "delete"}[self.kind]
        return f"client {self.client} {what} [{self.start:.6f}, {end}]"


@dataclass(frozen=True)
class Result:
    """ok, or the first failing key (by byte order) with an explanation; op counts per key."""

    ok: bool
    key: bytes | None = None
    explanation: str = ""
    op_counts: Mapping[bytes, int] = field(default_factory=dict)
    failed_keys: tuple[bytes, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


def _show(value: bytes | None) -> str:
    if value is None:
        return "(absent)"
    return repr(value[:40]) + ("..." if len(value) > 40 else "")


def _validate(op: Op) -> None:
    if op.kind not in ("read", "write", "delete"):
        raise ValueError(f"unknown op kind {op.kind!r}")
    if op.kind == "write" and op.value is None:
        raise ValueError(f"a write without a value: {op}")
    if op.kind == "delete" and op.value is not None:
        raise ValueError(f"a delete with a value: {op}")
    if op.end is not None and op.end < op.start:
        raise ValueError(f"response before invocation: {op}")


def check(history: Iterable[Op], initial: dict[bytes, bytes | None] | None = None,
          explain: bool = True) -> Result:
    """Is `history` linearizable, every key starting at `initial` (default: absent)?

    Raises ValueError on an ill-formed op. `explain` False skips the shrinking of a failure.
    """
    by_key: dict[bytes, list[Op]] = defaultdict(list)
    for op in history:
        _validate(op)
        by_key[op.key].append(op)
    counts = {key: len(ops) for key, ops in by_key.items()}
    start_values = initial or {}
    failed: list[bytes] = []
    for key in sorted(by_key):
        if not _linearizable(_relevant(by_key[key]), start_values.get(key)):
            failed.append(key)
    if not failed:
        return Result(True, op_counts=counts)
    key = failed[0]
    text = f"key {_show(key)} is not linearizable ({counts[key]} ops)"
    if explain:
        text += ": " + _explain(_relevant(by_key[key]), start_values.get(key))
    return Result(False, key, text, counts, tuple(failed))


def _end(op: Op) -> float:
    return math.inf if op.end is None else op.end


def _relevant(ops: Sequence[Op]) -> list[Op]:
    """Drop reads without a response."""
    return [op for op in ops if op.kind != "read" or op.end is not None]


def _linearizable(ops: Sequence[Op], initial: bytes | None) -> bool:
    """Wing & Gong with Lowe's memoization, on one register."""
    ops = _tighten(ops, initial)
    if not ops:
        return True
    # Values are interned as small ints; 0 is "absent".
    codes: dict[bytes | None, int] = {None: 0}
    value = [codes.setdefault(op.value, len(codes)) for op in ops]
    is_read = [op.kind == "read" for op in ops]
    state = codes.setdefault(initial, len(codes))

    # Node 0 is the list head; nodes 1..2n are call and return events in time order, calls
    # before returns at equal times.
    events = sorted([(op.start, 0, i) for i, op in enumerate(ops)]
                    + [(_end(op), 1, i) for i, op in enumerate(ops)])
    n_nodes = len(events) + 1
    node_op = [0] * n_nodes
    is_call = [False] * n_nodes
    match = [0] * n_nodes  # call node -> its return node
    call_node = [0] * len(ops)
    for node, (_, ret, i) in enumerate(events, start=1):
        node_op[node] = i
        if ret:
            match[call_node[i]] = node
        else:
            is_call[node] = True
            call_node[i] = node
    nxt = list(range(1, n_nodes)) + [-1]
    prv = [-1] + list(range(n_nodes - 1))

    def unlink(node: int) -> None:
        nxt[prv[node]] = nxt[node]
        if nxt[node] != -1:
            prv[nxt[node]] = prv[node]

    def relink(node: int) -> None:
        nxt[prv[node]] = node
        if nxt[node] != -1:
            prv[nxt[node]] = node

    bit = [1 << i for i in range(len(ops))]
    linearized = 0
    stack: list[tuple[int, int, bool]] = []  # (call node, register value before it, forced)
    seen: set[tuple[int, int]] = set()
    node = 0
    fresh = True  # a configuration not yet scanned for a read that can go now
    while nxt[0] != -1:
        if fresh:
            # A read that returns the current value goes now, and is no choice point: a read
            # changes nothing, and one that may go next may go before any op still open.
            fresh = False
            node = nxt[0]
            while is_call[node] and not (is_read[node_op[node]] and value[node_op[node]] == state):
                node = nxt[node]
            if is_call[node]:
                candidate = (linearized | bit[node_op[node]], state)
                if candidate not in seen:
                    seen.add(candidate)
                    stack.append((node, state, True))
                    linearized = candidate[0]
                    unlink(node)
                    unlink(match[node])
                    fresh = True
                    continue
                # Explored before and failed: so does this configuration.
            else:
                node = nxt[0]
        if is_call[node] and not is_read[node_op[node]]:
            i = node_op[node]
            candidate = (linearized | bit[i], value[i])
            if candidate not in seen:
                seen.add(candidate)
                stack.append((node, state, False))
                linearized, state = candidate
                unlink(node)
                unlink(match[node])
                fresh = True
            else:
                node = nxt[node]
            continue
        if is_call[node]:
            node = nxt[node]  # a read of another value
            continue
        # Every candidate tried, or the earliest open return reached: back to the latest choice.
        while True:
            if not stack:
                return False
            node, state, forced = stack.pop()
            linearized ^= bit[node_op[node]]
            relink(match[node])
            relink(node)
            if not forced:
                break
        node = nxt[node]
    return True


def _tighten(ops: Sequence[Op], initial: bytes | None) -> list[Op]:
    """Bound the writes and deletes without a response, each still an undecided "some time after
    start, or never", which the search would otherwise carry to the end of the history.

    Both rules keep the answer. A value's sources are the writes of it (deletes for None), plus
    the initial value if equal. If no read returns a pending op's value, drop the op: in any
    linearization, no read lies between it and the next write, so it changes nothing, and
    without it every linearization extends by putting it last. If a pending op is the only
    source of its value, every read returning that value follows it, so it must precede every
    op starting after the earliest such read ends: give it that end.
    """
    first_read_end: dict[bytes | None, float] = {}
    sources: dict[bytes | None, int] = defaultdict(int)
    sources[initial] += 1
    for op in ops:
        if op.kind != "read":
            sources[op.value] += 1
        elif op.end is not None and op.end < first_read_end.get(op.value, math.inf):
            first_read_end[op.value] = op.end
    out: list[Op] = []
    for op in ops:
        if op.kind == "read" or op.end is not None:
            out.append(op)
        elif op.value in first_read_end:
            out.append(op if sources[op.value] > 1 else
                       replace(op, end=max(op.start, first_read_end[op.value])))
    return out


def _shrink(items: list[T], fails: Callable[[list[T]], bool]) -> list[T]:
    """Zeller's ddmin, complements only: a 1-minimal sublist for which `fails` still holds,
    or a smaller one than given when `fails` raises _OutOfBudget."""
    granularity = 2
    try:
        while items:
            chunk = math.ceil(len(items) / granularity)
            for lo in range(0, len(items), chunk):
                rest = items[:lo] + items[lo + chunk:]
                if fails(rest):
                    items = rest
                    granularity = max(granularity - 1, 2)
                    break
            else:
                if chunk == 1:
                    return items
                granularity = min(granularity * 2, len(items))
    except _OutOfBudget:
        pass
    return items


class _OutOfBudget(Exception):
    pass


def _explain(ops: list[Op], initial: bytes | None) -> str:
    """Shrink a failing single-key history to a small failing core and describe it."""
    reads = sorted((op for op in ops if op.kind == "read"), key=lambda op: (_end(op), op.start))
    writes = sorted((op for op in ops if op.kind != "read"), key=lambda op: op.start)

    def before(limit: float) -> list[Op]:
        return [w for w in writes if w.start <= limit]

    # A read with no possible source fails on its own.
    for read in reads:
        if read.value != initial and all(w.value != read.value for w in before(_end(read))):
            return ("a read returns a value no write could have produced by then\n"
                    f"  offending read: {read}")

    # The first read, by response time, that cannot be explained. Writes that start after
    # every read in the prefix ended can take effect last, so they are left out.
    lo, hi = 1, len(reads)
    while lo < hi:
        mid = (lo + hi) // 2
        if _linearizable(before(_end(reads[mid - 1])) + reads[:mid], initial):
            lo = mid + 1
        else:
            hi = mid
    offender = reads[lo - 1]
    budget = [EXPLAIN_BUDGET]

    def fails(subset: list[Op]) -> bool:
        if budget[0] <= 0:
            raise _OutOfBudget
        budget[0] -= 1
        return not _linearizable(subset, initial)

    window = before(_end(offender))
    others = [] if fails(window + [offender]) else _shrink(
        reads[:lo - 1], lambda sub: fails(window + sub + [offender]))
    chosen = others + [offender]
    seen_values = {r.value for r in chosen}
    sources = [w for w in window if w.value in seen_values]
    rest = [w for w in window if w.value not in seen_values]
    rest = _shrink(rest, lambda sub: fails(sources + sub + chosen))

    def sourced(sub: list[Op]) -> bool:
        written = {w.value for w in sub} | {initial}
        return all(r.value in written for r in chosen) and fails(sub + rest + chosen)

    sources = _shrink(sources, sourced)
    if not others:
        reason = "no order of the writes below lets the read return this value (stale read)"
    else:
        reason = "the reads below see the register go back to an older value (new-old inversion)"
    lines = [reason, f"  offending read: {offender}"]
    if initial is not None and initial in seen_values:
        lines.append(f"  initial value: {_show(initial)}")
    core = sorted(sources + rest + others, key=lambda op: op.start)
    lines += [f"  with: {op}" for op in core]
    if budget[0] <= 0:
        lines.append("  (shrinking stopped early; more ops than needed may be listed)")
    return "\n".join(lines)
