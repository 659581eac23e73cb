"""torswitch.oracles.linearizability: hand-written histories that are and are not linearizable,
histories from a simulated correct register (must pass) with one stale read injected (must
fail), and a 2000-op history from 8 clients on one key."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from torswitch.oracles.linearizability import Op, check

K = b"k"


def w(client: int, value: bytes, start: float, end: float | None, key: bytes = K) -> Op:
    return Op(client, "write", key, value, start, end)


def r(client: int, value: bytes | None, start: float, end: float | None, key: bytes = K) -> Op:
    return Op(client, "read", key, value, start, end)


def d(client: int, start: float, end: float | None, key: bytes = K) -> Op:
    return Op(client, "delete", key, None, start, end)


# -- hand-written, linearizable ---------------------------------------------------------------

LINEARIZABLE = {
    "sequential": [w(1, b"a", 0, 1), r(2, b"a", 2, 3), w(1, b"b", 4, 5), r(2, b"b", 6, 7),
                   d(3, 8, 9), r(2, None, 10, 11)],
    "miss before any write": [r(1, None, 0, 1), w(2, b"a", 2, 3)],
    "overlapping writes, either order": [w(1, b"a", 0, 5), w(2, b"b", 1, 6), r(3, b"a", 2, 3),
                                         r(3, b"a", 7, 8)],
    "overlapping writes, other order": [w(1, b"a", 0, 5), w(2, b"b", 1, 6), r(3, b"a", 2, 3),
                                        r(3, b"b", 7, 8)],
    "concurrent reads disagree": [w(1, b"a", 0, 1), w(2, b"b", 2, 10), r(3, b"b", 3, 6),
                                  r(4, b"a", 4, 5)],
    "read of an in-flight write": [w(1, b"a", 0, 1), w(2, b"b", 2, 10), r(3, b"b", 3, 4),
                                   r(3, b"b", 5, 6)],
    "read sees the write before it returns": [w(1, b"a", 0, 10), r(2, None, 1, 2),
                                              r(2, b"a", 3, 4)],
    "timed-out write takes effect": [w(1, b"a", 0, 1), w(2, b"b", 2, None), r(3, b"b", 10, 11)],
    "timed-out write never takes effect": [w(1, b"a", 0, 1), w(2, b"b", 2, None),
                                           r(3, b"a", 10, 11), r(3, b"a", 12, 13)],
    "timed-out write takes effect late": [w(1, b"a", 0, 1), w(2, b"b", 2, None),
                                          r(3, b"a", 10, 11), r(3, b"b", 12, 13)],
    "timed-out delete": [w(1, b"a", 0, 1), d(2, 2, None), r(3, b"a", 3, 4), r(3, None, 5, 6)],
    "read without response is dropped": [w(1, b"a", 0, 1), r(2, b"garbage", 2, None)],
    "equal times are concurrent": [w(1, b"a", 0, 1), r(2, None, 1, 2)],
    "same value written twice": [w(1, b"a", 0, 1), w(2, b"b", 2, 3), w(1, b"a", 4, 5),
                                 r(3, b"a", 6, 7)],
    "keys are independent": [w(1, b"a", 0, 1, b"x"), w(1, b"b", 0, 1, b"y"),
                             r(2, b"a", 2, 3, b"x"), r(2, b"b", 2, 3, b"y")],
}


@pytest.mark.parametrize("name", sorted(LINEARIZABLE))
def test_linearizable(name: str) -> None:
    history = LINEARIZABLE[name]
    result = check(history)
    assert result.ok and bool(result), result.explanation
    assert sum(result.op_counts.values()) == len(history)
    assert check(list(reversed(history))).ok


def test_initial_values() -> None:
    history = [r(1, b"x", 0, 1), w(2, b"y", 2, 3), r(1, b"y", 4, 5)]
    assert check(history, {K: b"x"}).ok
    assert not check(history).ok
    assert not check([r(1, b"x", 4, 5)] + history, {K: b"x"}).ok


# -- hand-written, not linearizable -----------------------------------------------------------


def test_stale_read_after_completed_overwrite() -> None:
    result = check([w(1, b"a", 0, 1), w(2, b"b", 2, 3), r(3, b"a", 4, 5)])
    assert not result.ok and result.key == K and result.failed_keys == (K,)
    assert "stale read" in result.explanation
    assert "offending read: client 3 read -> b'a'" in result.explanation
    assert "client 1 write b'a'" in result.explanation
    assert "client 2 write b'b'" in result.explanation


def test_read_of_a_value_never_written() -> None:
    result = check([w(1, b"a", 0, 1), r(2, b"ghost", 2, 3)])
    assert not result.ok and "no write could have produced" in result.explanation
    # written, but only after the read had returned
    assert not check([r(2, b"late", 0, 1), w(1, b"late", 2, 3)]).ok


def test_new_old_inversion() -> None:
    result = check([w(1, b"a", 0, 1), w(2, b"b", 2, 10), r(3, b"b", 3, 4), r(4, b"a", 5, 6)])
    assert not result.ok and "new-old inversion" in result.explanation
    assert "offending read: client 4 read -> b'a'" in result.explanation
    assert "with: client 3 read -> b'b'" in result.explanation


def test_old_value_after_completed_delete() -> None:
    result = check([w(1, b"a", 0, 1), d(2, 2, 3), r(3, b"a", 4, 5)])
    assert not result.ok and "client 2 delete" in result.explanation


def test_timed_out_write_cannot_be_undone() -> None:
    assert not check([w(1, b"a", 0, 1), w(2, b"b", 2, None), r(3, b"b", 10, 11),
                      r(3, b"a", 12, 13)]).ok


def test_only_the_bad_key_fails() -> None:
    history = [w(1, b"a", 0, 1, b"good"), r(1, b"a", 2, 3, b"good"),
               w(1, b"a", 0, 1, b"bad"), w(1, b"b", 2, 3, b"bad"), r(2, b"a", 4, 5, b"bad")]
    result = check(history)
    assert result.failed_keys == (b"bad",) and result.key == b"bad"
    assert result.op_counts == {b"good": 2, b"bad": 3}


def test_explanation_is_small_amid_noise() -> None:
    history = [op for i in range(60) for op in (w(1, b"n%d" % i, 4 * i, 4 * i + 1),
                                                r(2, b"n%d" % i, 4 * i + 2, 4 * i + 3))]
    history += [w(1, b"a", 300, 301), w(2, b"b", 302, 303), r(3, b"a", 304, 305)]
    history += [r(2, b"b", 306 + i, 306.5 + i) for i in range(20)]
    result = check(history)
    assert not result.ok
    assert result.explanation.count("\n  with: ") <= 2, result.explanation


@pytest.mark.parametrize("bad", [
    Op(1, "write", K, None, 0, 1), Op(1, "delete", K, b"x", 0, 1), r(1, None, 2, 1),
    Op(1, "incr", K, None, 0, 1),  # type: ignore[arg-type]
])
def test_ill_formed_ops_are_refused(bad: Op) -> None:
    with pytest.raises(ValueError):
        check([bad])


# -- against brute force ---------------------------------------------------------------------


def brute_force(ops: list[Op], initial: bytes | None) -> bool:
    """Try every order of the ops that respects real time (no response: end +infinity)."""
    ops = [op for op in ops if op.kind != "read" or op.end is not None]
    for order in itertools.permutations(ops):
        if any((later.end if later.end is not None else math.inf) < earlier.start
               for earlier, later in itertools.combinations(order, 2)):
            continue
        state = initial
        for op in order:
            if op.kind == "read" and op.value != state:
                break
            if op.kind != "read":
                state = op.value
        else:
            return True
    return False


def test_agrees_with_brute_force_on_small_histories() -> None:
    rng = random.Random(7)
    outcomes = set()
    for _ in range(600):
        ops = []
        for _ in range(rng.randint(1, 6)):
            start = rng.randint(0, 8)
            end = None if rng.random() < 0.2 else start + rng.randint(0, 4)
            kind = rng.choice(["read", "read", "write", "write", "delete"])
            value = {"write": rng.choice([b"a", b"b", b"c"]), "delete": None,
                     "read": rng.choice([b"a", b"b", None])}[kind]
            ops.append(Op(rng.randint(0, 3), kind, K, value, start, end))  # type: ignore[arg-type]
        initial = rng.choice([None, b"a"])
        expected = brute_force(ops, initial)
        assert check(ops, {K: initial}).ok == expected, (initial, ops)
        outcomes.add(expected)
    assert outcomes == {True, False}


# -- simulated register -----------------------------------------------------------------------


def simulate(seed: int, n_ops: int, clients: int, keys: tuple[bytes, ...] = (K,),
             timeout_p: float = 0.0) -> list[Op]:
    """A correct register: every op takes effect at a random point inside its interval (a
    timed-out write or delete later, or never); reads return the value at their point."""
    rng = random.Random(seed)
    free = [0.0] * clients
    planned: list[tuple[float, Op, bool]] = []  # (point, op, takes effect)
    for i in range(n_ops):
        c = rng.randrange(clients)
        start = free[c] + rng.uniform(0, 1)
        point = start + rng.uniform(0, 2)
        end: float | None = point + rng.uniform(0, 2)
        free[c] = end or 0.0
        kind = rng.choices(["read", "write", "delete"], [5, 4, 1])[0]
        effect = True
        if kind != "read" and rng.random() < timeout_p:
            end, effect = None, rng.random() < 0.5
            point = start + rng.uniform(0, 10)
        value = b"v%d" % i if kind == "write" else None
        planned.append((point, Op(c, kind, rng.choice(keys), value, start, end), effect))  # type: ignore[arg-type]
    state: dict[bytes, bytes | None] = {}
    history = []
    for _, op, effect in sorted(planned, key=lambda p: p[0]):
        if op.kind == "read":
            op = Op(op.client, "read", op.key, state.get(op.key), op.start, op.end)
        elif effect:
            state[op.key] = op.value
        history.append(op)
    return history


def inject_stale_read(history: list[Op], rng: random.Random) -> tuple[list[Op], Op]:
    """Make a read return a value overwritten by a write that completed before it started."""
    done = [op for op in history if op.end is not None]
    for read in rng.sample(done, len(done)):
        if read.kind != "read":
            continue
        writes = [op for op in done if op.key == read.key and op.kind != "read"
                  and op.end is not None and op.end < read.start]
        for old in writes:
            if old.kind == "write" and old.value != read.value and any(
                    old.end is not None and old.end < w2.start for w2 in writes):
                bad = Op(read.client, "read", read.key, old.value, read.start, read.end)
                return [bad if op is read else op for op in history], bad
    raise AssertionError("no read to make stale")


@pytest.mark.parametrize("seed", range(6))
def test_simulated_register_passes_and_one_stale_read_fails(seed: int) -> None:
    history = simulate(seed, 300, clients=4 + seed % 5, keys=(b"a", b"b", b"c"), timeout_p=0.05)
    result = check(history)
    assert result.ok, result.explanation
    broken, bad = inject_stale_read(history, random.Random(seed))
    result = check(broken)
    assert not result.ok and result.failed_keys == (bad.key,)
    assert f"offending read: {bad}" in result.explanation


def test_two_thousand_ops_from_eight_clients() -> None:
    history = simulate(2014, 2000, clients=8, timeout_p=0.01)
    assert check(history).ok
    broken, bad = inject_stale_read(history, random.Random(1))
    result = check(broken)
    assert not result.ok and f"offending read: {bad}" in result.explanation
