"""k-means (Lloyd's algorithm) in pieces that can be fed one chunk of points at a time.

An iteration is: for every chunk of points, `partial_sums` (nearest centre of each point, then
per-centre coordinate sums, counts and squared distances); `merge` the partial results; then
`update` the centres to the means. A centre that attracted no point stays where it was, so the
result never contains NaN. Everything is float64 numpy, deterministic for a given input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass
class Partial:
    """Per-centre sums over some points: `sums` (k x d), `counts` (k), and `sse`, the sum of
    squared distances of those points to their nearest centre."""

    sums: Array
    counts: npt.NDArray[np.int64]
    sse: float

    @classmethod
    def zero(cls, k: int, d: int) -> Partial:
        return cls(np.zeros((k, d)), np.zeros(k, dtype=np.int64), 0.0)


def initial_centres(k: int, d: int, seed: int = 0) -> Array:
    """`k` centres in [0, 1)^d, a pure function of (`k`, `d`, `seed`)."""
    if k < 1 or d < 1:
        raise ValueError(f"k and d must be at least 1 (k={k}, d={d})")
    return np.random.default_rng(seed).random((k, d))


def assign(points: Array, centres: Array) -> tuple[npt.NDArray[np.intp], Array]:
    """Index of the nearest centre of each point (ties: the lowest index) and the squared
    distance to it. `points` is n x d, `centres` k x d."""
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin, add it back after.
    cross = points @ centres.T
    partial = (centres * centres).sum(axis=1)[None, :] - 2.0 * cross
    labels = np.argmin(partial, axis=1)
    nearest = partial[np.arange(len(points)), labels] + (points * points).sum(axis=1)
    return labels, np.maximum(nearest, 0.0)


def partial_sums(points: Array, centres: Array) -> Partial:
    """The `Partial` of one chunk of points against `centres`."""
    k, d = centres.shape
    if points.ndim != 2 or points.shape[1] != d:
        raise ValueError(f"points must be n x {d}, not {points.shape}")
    if len(points) == 0:
        return Partial.zero(k, d)
    labels, dist = assign(points, centres)
    sums = np.stack(
        [np.bincount(labels, weights=points[:, j], minlength=k) for j in range(d)], axis=1
    ).astype(np.float64)
    counts = np.bincount(labels, minlength=k).astype(np.int64)
    return Partial(sums, counts, float(dist.sum()))


def merge(a: Partial, b: Partial) -> Partial:
    """The `Partial` of the union of two chunks."""
    return Partial(a.sums + b.sums, a.counts + b.counts, a.sse + b.sse)


def update(centres: Array, total: Partial) -> Array:
    """New centres: the mean of each centre's points; an empty centre keeps its position."""
    out = centres.copy()
    filled = total.counts > 0
    out[filled] = total.sums[filled] / total.counts[filled][:, None]
    return out


def step(points: Array, centres: Array) -> tuple[Array, Partial]:
    """One whole iteration over `points` held in memory: (new centres, the totals)."""
    total = partial_sums(points, centres)
    return update(centres, total), total
