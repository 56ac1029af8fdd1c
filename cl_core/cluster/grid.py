"""Where the k sweep looks: the candidate ks, their refinement, and the size of the sweep sample.

* :func:`k_grid`: every integer of a small range (at most :data:`ALL_INTEGERS_UP_TO` values),
  else :data:`GRID_VALUES` geometrically spaced ks (a fixed *relative* resolution: 900 and
  1,000 are as far apart as 9 and 10).
* :func:`refine_ks`: once, up to :data:`REFINE_VALUES` more ks strictly between the grid
  neighbours of the best grid k (every integer there when that is fewer).
* :func:`sweep_sample_size`: the sweep sample grows with the largest k, at least
  :data:`ROWS_PER_CLUSTER` rows per cluster at ``k_max`` (and at least ``sweep_samples``),
  within :data:`SWEEP_MEMORY_BYTES` of float32 rows, capped by N.
* :func:`check_range_fits`: a range whose top k the sample cannot score is refused before any
  work, with one line saying how to widen the sample or narrow the range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALL_INTEGERS_UP_TO = 30
"""Ranges of at most this many ks are swept at every integer."""

GRID_VALUES = 20
"""Geometric grid size for wider ranges (100..2000: a step of ~17 %)."""

REFINE_VALUES = 6
"""Extra ks between the best grid k's neighbours (100..2000: a step of ~5 % around the best)."""

ROWS_PER_CLUSTER = 20
"""Rows of the sweep sample per cluster at the largest k of the range (each half-sample
replicate then has 10 rows per cluster at ``k_max``, 20 at ``k_max / 2``). Measured on the
benchmark's 1,000-cluster data (``benchmarks/bench_k.py``), this is enough to place k within
10 % of the truth, and keeps a 100..2,000 sweep within minutes on two CPU cores."""

SWEEP_MEMORY_BYTES = 1 << 30
"""Most bytes of float32 rows in the sweep sample (1 GiB: 700,000 rows at D = 384)."""


def k_grid(low: int, high: int) -> tuple[int, ...]:
    """The first-round candidates of the inclusive range ``low..high``, ascending.

    Parameters
    ----------
    low, high : int
        ``2 <= low <= high``.

    Returns
    -------
    tuple of int
        Every integer when ``high - low + 1 <= ALL_INTEGERS_UP_TO``; else ``GRID_VALUES``
        distinct ks rounded from a geometric sequence, ``low`` and ``high`` included.
    """
    if high - low + 1 <= ALL_INTEGERS_UP_TO:
        return tuple(range(low, high + 1))
    values = np.rint(np.geomspace(low, high, GRID_VALUES)).astype(np.int64)
    return tuple(sorted({int(v) for v in values} | {low, high}))


def refine_ks(grid: Sequence[int], best_k: int) -> tuple[int, ...]:
    """Second-round candidates: ks strictly between the grid neighbours of ``best_k``.

    Parameters
    ----------
    grid : sequence of int
        The first-round ks (ascending), ``best_k`` among them.
    best_k : int
        The grid k with the lowest mean index.

    Returns
    -------
    tuple of int
        Up to :data:`REFINE_VALUES` ks not in ``grid``, evenly spread between the neighbours
        (every integer there when there are fewer); empty when the grid is every integer.
    """
    ks = sorted(int(k) for k in grid)
    position = ks.index(int(best_k))
    left = ks[max(position - 1, 0)]
    right = ks[min(position + 1, len(ks) - 1)]
    inside = [k for k in range(left + 1, right) if k not in ks]
    if len(inside) <= REFINE_VALUES:
        return tuple(inside)
    picks = np.rint(np.linspace(left, right, REFINE_VALUES + 2)[1:-1]).astype(np.int64)
    return tuple(sorted({int(k) for k in picks} - set(ks)))


def sweep_sample_size(
    cluster_range: Sequence[int], n_rows: int, min_rows: int, dim: int | None = None
) -> int:
    """Rows of the sweep sample for ``cluster_range`` over ``n_rows`` rows of ``dim`` features.

    ``max(min_rows, ROWS_PER_CLUSTER * k_max)``, at most :data:`SWEEP_MEMORY_BYTES` of float32
    rows (when ``dim`` is known), at most ``n_rows``.
    """
    wanted = max(int(min_rows), ROWS_PER_CLUSTER * int(cluster_range[1]))
    if dim:
        wanted = min(wanted, max(SWEEP_MEMORY_BYTES // (4 * int(dim)), int(min_rows)))
    return min(wanted, int(n_rows))


def replicate_rows(n_sample: int) -> int:
    """Rows of one half-sample replicate of an ``n_sample``-row sweep sample."""
    return max(int(n_sample) // 2, 1)


def check_range_fits(cluster_range: Sequence[int], n_sample: int, n_rows: int) -> None:
    """Refuse a range whose top k the sweep sample cannot score (before any work).

    The Davies-Bouldin index of k clusters needs ``k <= rows - 1``, and every k is scored on
    half-samples of the sweep sample, so ``k_max <= n_sample // 2 - 1``.

    Raises
    ------
    ValueError
        One line: the range, the sample, and how to narrow the range or widen the sample.
    """
    low, high = int(cluster_range[0]), int(cluster_range[1])
    top = replicate_rows(n_sample) - 1
    if high <= top:
        return
    needed = 2 * (high + 1)
    widen = (
        f"widen the sample (sweep_samples >= {needed})"
        if n_rows >= needed
        else f"use a data set of at least {needed} rows"
    )
    raise ValueError(
        f"k range {low}:{high} is too wide for the sweep sample of {n_sample:,} rows (of "
        f"{n_rows:,}): each k is scored on half-samples of {top + 1:,} rows, so k <= {top}; "
        f"narrow the range (--k-range {min(low, max(top, 2))}:{max(top, 2)}) or {widen}"
    )
