"""Seeded subsamples of a source and the checks made on them (distinct rows, constant features)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cl_core.cluster.seeds import root_entropy
from cl_core.cluster.sources import ChunkSource, as_source, to_numpy
from cl_core.validation import check_finite, check_int


def sample_rows(source: Any, n: int, random_state: int | None = 0) -> np.ndarray:
    """Draw ``n`` distinct rows uniformly at random (all rows when ``n >= N``).

    Parameters
    ----------
    source : ChunkSource, EmbeddingStore, path or array-like of shape (N, D)
        Anything :func:`as_source` accepts (arrays/stores are read with ``standard``
        normalisation; wrap them with :func:`as_source` to choose another).
    n : int
        Rows wanted (>= 1).
    random_state : int or None
        Seed of the row choice.

    Returns
    -------
    ndarray of shape (min(n, N), D), float32
        Normalised rows in ascending dataset order.
    """
    src = as_source(source)
    n = check_int("n", n, 1)
    if n >= src.n_rows:
        return _read_all(src)
    rng = np.random.default_rng(root_entropy(random_state))
    indices = np.sort(rng.choice(src.n_rows, size=n, replace=False))
    return np.ascontiguousarray(src.read_rows(indices), dtype=np.float32)


def _read_all(src: ChunkSource) -> np.ndarray:
    out = np.empty((src.n_rows, src.dim), dtype=np.float32)
    for start, block in src.iter_chunks():
        out[start : start + block.shape[0]] = block
    return out


def check_sample(sample: Any) -> np.ndarray:
    """``sample`` as a C-contiguous float32 (n, D) array, non-empty and finite; else raise."""
    values = np.ascontiguousarray(to_numpy(sample), dtype=np.float32)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"sample must be a non-empty 2-D array (n, D), got shape {values.shape}")
    check_finite("sample", values)
    return values


def count_distinct_rows(rows: np.ndarray, enough: int | None = None) -> int:
    """Number of distinct rows; with ``enough``, any count >= it may be returned instead.

    Rows with different projections on a fixed random direction are certainly different, so the
    number of distinct projections is a cheap lower bound; the exact (sorting) count is only
    needed when that bound falls short of ``enough``.
    """
    if rows.shape[0] <= 1 or not np.ptp(rows, axis=0).any():
        return min(rows.shape[0], 1)
    if enough is not None:
        direction = np.random.default_rng(0).standard_normal(size=rows.shape[1], dtype=np.float32)
        lower_bound = int(np.unique(rows.astype(np.float32, copy=False) @ direction).shape[0])
        if lower_bound >= enough:
            return lower_bound
    return int(np.unique(rows, axis=0).shape[0])


def constant_features_error(n_sample: int, n_rows: int) -> ValueError:
    """The error for a sample of ``n_sample`` of ``n_rows`` rows that are all identical."""
    where = "all" if n_sample >= n_rows else f"a random sample of {n_sample} of the {n_rows}"
    return ValueError(
        f"features are constant: {where} rows are identical after normalisation, so there is no "
        "structure to cluster (the Davies-Bouldin index would be undefined). Check the embedding "
        "stage (a frozen or collapsed model, a wrong layer, or an all-zero input)"
    )
