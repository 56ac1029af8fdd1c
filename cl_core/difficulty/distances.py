"""Distances of rows to their assigned centroids, streamed over row chunks.

Distances normally come from :func:`cl_core.cluster.cluster_embeddings`;
:func:`distances_to_centroids` computes them from any stream of ``(start, block)`` row chunks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cl_core.validation import check_finite


def distances_to_centroids(
    chunks: Iterable[tuple[int, np.ndarray]], centroids: object, assignment: object
) -> np.ndarray:
    """Euclidean distance of every row to its assigned centroid, streamed over row chunks.

    Parameters
    ----------
    chunks : iterable of (start, block)
        ``block`` is an array of shape (rows, D) holding rows ``start .. start + rows``; e.g.
        ``EmbeddingStore.iter_chunks()``. Chunks may come in any order but must cover every
        row exactly once.
    centroids : array-like of shape (k, D)
    assignment : array-like of shape (N,), integer
        Centroid index of every row, in ``[0, k)``.

    Returns
    -------
    ndarray of shape (N,), float32
        ``||x_i - centroids[assignment[i]]||``, accumulated in float64.
    """
    centers = np.asarray(centroids, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[0] == 0:
        raise ValueError(f"centroids must have shape (k, D) with k >= 1, got {centers.shape}")
    check_finite("centroids", centers)
    labels = np.asarray(assignment)
    if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"assignment must be a non-empty 1-D integer array (one centroid id per row), got "
            f"dtype {labels.dtype} shape {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= centers.shape[0]:
        bad = int(np.flatnonzero((labels < 0) | (labels >= centers.shape[0]))[0])
        raise ValueError(
            f"assignment[{bad}] = {labels[bad]} is not a centroid index in [0, "
            f"{centers.shape[0]}); pass the assignment that belongs to these centroids"
        )
    n_rows = labels.size
    out = np.empty(n_rows, dtype=np.float32)
    covered = np.zeros(n_rows, dtype=bool)
    for start, block in chunks:
        rows = np.asarray(block)
        first = int(start)
        stop = first + rows.shape[0]
        if rows.ndim != 2 or rows.shape[1] != centers.shape[1]:
            raise ValueError(
                f"chunk at row {first} has shape {rows.shape}; expected (rows, {centers.shape[1]}) "
                f"to match the centroids"
            )
        if first < 0 or stop > n_rows or covered[first:stop].any():
            raise ValueError(
                f"chunk rows {first}..{stop} fall outside [0, {n_rows}) or overlap an earlier "
                f"chunk; each row must come exactly once"
            )
        check_finite("features", rows, offset=first)
        difference = rows.astype(np.float64) - centers[labels[first:stop]]
        out[first:stop] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
        covered[first:stop] = True
    if not covered.all():
        missing = int(np.flatnonzero(~covered)[0])
        raise ValueError(
            f"chunks covered {int(covered.sum())} of {n_rows} rows (first missing: {missing}); "
            f"pass chunks for every row of the assignment"
        )
    return out
