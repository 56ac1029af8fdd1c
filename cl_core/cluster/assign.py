"""Assignment: every row to its nearest centroid, chunk by chunk, with its true distance.

:func:`assign_block` is the kernel of :func:`assign` and of every Dask assignment task
(:mod:`cl_core.cluster.assign_dask`), so both give bitwise-equal results; this module imports no
other clustering module but the sources.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cl_core.cluster.sources import as_source, to_numpy
from cl_core.validation import check_finite

_ASSIGN_MAX_SCORES = 1 << 22  # rows x centroids scores per GEMM in assign (16 MiB float32)


def assign(
    source: Any,
    centroids: np.ndarray,
    *,
    row_groups: np.ndarray | None = None,
    centroid_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign every row to its nearest centroid, chunk by chunk.

    Parameters
    ----------
    source : ChunkSource, EmbeddingStore, path or array-like of shape (N, D)
        The data (``standard`` normalisation unless already a :class:`ChunkSource`).
    centroids : ndarray of shape (k, D)
        Centres in the same normalised space.
    row_groups : ndarray of shape (N,), optional
        Group (class index) of every row; with ``centroid_groups`` each row may only go to a
        centroid of its own group (supervised mode).
    centroid_groups : ndarray of shape (k,), optional
        Group of every centroid.

    Returns
    -------
    assignment : ndarray of shape (N,), int32
        Index of the nearest (allowed) centroid.
    distances : ndarray of shape (N,), float32
        ``||x_i - centroids[assignment[i]]||``, computed directly from the difference (no
        cancellation error), so rows at a centroid get exactly 0.
    """
    src = as_source(source)
    centers = check_centroids(centroids, src.dim)
    groups = check_groups(row_groups, centroid_groups, src.n_rows, centers.shape[0])
    assignment = np.empty(src.n_rows, dtype=np.int32)
    distances = np.empty(src.n_rows, dtype=np.float32)
    for start, block in src.iter_chunks():
        stop = start + block.shape[0]
        assignment[start:stop], distances[start:stop] = assign_block(
            block,
            centers,
            start,
            row_groups=None if groups is None else groups[0][start:stop],
            centroid_groups=None if groups is None else groups[1],
        )
    return assignment, distances


def assign_block(
    block: np.ndarray,
    centers: np.ndarray,
    first: int,
    *,
    row_groups: np.ndarray | None = None,
    centroid_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest (allowed) centroid and its distance for one block of rows: the kernel of
    :func:`assign` and of every Dask assignment task (so both give bitwise-equal results).

    Parameters
    ----------
    block : ndarray of shape (B, D), float32
        Normalised rows; checked for NaN/inf (reported as dataset rows ``first + i``).
    centers : ndarray of shape (k, D), float32, C-contiguous
        From :func:`check_centroids`.
    first : int
        Dataset index of the block's first row.
    row_groups : ndarray of shape (B,), int64, optional
        Group of every row; with ``centroid_groups`` a row only goes to a centroid of its group.
    centroid_groups : ndarray of shape (k,), int64, optional

    Returns
    -------
    nearest : ndarray of shape (B,), intp
    distances : ndarray of shape (B,), float32
        ``||x - c||`` from the difference (no cancellation error).
    """
    check_finite("features", block, offset=first)
    if row_groups is None or centroid_groups is None:
        nearest = _nearest(block, centers)
    else:
        nearest = _nearest_within_groups(block, centers, row_groups, centroid_groups)
    difference = block - centers[nearest]
    return nearest, np.sqrt(np.einsum("ij,ij->i", difference, difference))


def check_centroids(centroids: Any, dim: int) -> np.ndarray:
    """The centroids as a C-contiguous float32 (k, D) array; raise on a bad shape or NaN/inf."""
    centers = np.ascontiguousarray(to_numpy(centroids), dtype=np.float32)
    if centers.ndim != 2 or centers.shape[0] == 0 or centers.shape[1] != dim:
        raise ValueError(
            f"centroids must have shape (k, {dim}) to match the features, got {centers.shape}; "
            "fit them on the same data with the same normalisation"
        )
    check_finite("centroids", centers)
    return centers


def check_groups(
    row_groups: Any, centroid_groups: Any, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Supervised mode's (row_groups, centroid_groups) as int64 arrays, or None (neither given).

    Raises if only one is given, a shape is wrong, or a row group has no centroid.
    """
    if row_groups is None and centroid_groups is None:
        return None
    if row_groups is None or centroid_groups is None:
        raise ValueError(
            "give both row_groups and centroid_groups (supervised assignment), or neither"
        )
    rows = np.asarray(row_groups, dtype=np.int64)
    cents = np.asarray(centroid_groups, dtype=np.int64)
    if rows.shape != (n_rows,) or cents.shape != (k,):
        raise ValueError(
            f"row_groups must have shape ({n_rows},) and centroid_groups ({k},), got "
            f"{rows.shape} and {cents.shape}"
        )
    orphans = np.setdiff1d(np.unique(rows), cents)
    if orphans.size:
        raise ValueError(
            f"row_groups contains groups without any centroid (e.g. {orphans[:5].tolist()}); "
            "every group needs at least one centroid"
        )
    return rows, cents


def _nearest(block: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """argmin_j ||x - c_j||^2 = argmin_j (||c_j||^2 - 2 x.c_j), in row steps of bounded size."""
    half_sq = 0.5 * np.einsum("ij,ij->i", centers, centers)
    step = max(1, _ASSIGN_MAX_SCORES // centers.shape[0])
    out = np.empty(block.shape[0], dtype=np.intp)
    for start in range(0, block.shape[0], step):
        scores = block[start : start + step] @ centers.T
        out[start : start + step] = np.argmin(half_sq - scores, axis=1)
    return out


def _nearest_within_groups(
    block: np.ndarray, centers: np.ndarray, row_groups: np.ndarray, centroid_groups: np.ndarray
) -> np.ndarray:
    out = np.empty(block.shape[0], dtype=np.intp)
    for group in np.unique(row_groups).tolist():
        rows = np.flatnonzero(row_groups == group)
        allowed = np.flatnonzero(centroid_groups == group)
        out[rows] = allowed[_nearest(block[rows], centers[allowed])]
    return out
