"""Row normalisation and streamed feature moments (pure numpy; shared with :mod:`cl_core.sources`).

The statistics of a store or an array are merged from per-block ``(count, mean, M2)`` stacks in
float64 (Chan et al.'s parallel update), so they do not depend on how the rows were split; rows
are normalised block by block with :func:`normalize_block`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from cl_core.validation import check_choice

NORMALIZATIONS = ("standard", "l2", "none")
"""``standard``: dataset-wide z-score per dimension, then L2 per row; ``l2``: L2 only; ``none``."""

N_MOMENTS = 3
"""count, mean, M2 (sum of squared deviations), each per dimension."""


def standardization_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Return the per-dimension divisor for z-scoring: ``std``, or 1.0 for constant dimensions.

    A dimension whose std is at float64 rounding level (relative to its mean) is constant; dividing
    by its tiny std would blow rounding noise up to O(1) values, so, like scikit-learn's
    ``StandardScaler``, it is left unscaled (its centred values are ~0 anyway).

    Parameters
    ----------
    mean, std : ndarray of shape (D,)
        Dataset-wide feature mean and (population) standard deviation.

    Returns
    -------
    ndarray of shape (D,), float64
    """
    mean64 = np.asarray(mean, dtype=np.float64)
    std64 = np.asarray(std, dtype=np.float64)
    constant = std64 <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean64), 1.0)
    return np.where(constant, 1.0, std64)


def normalize_block(
    block: np.ndarray,
    normalize: str,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> np.ndarray:
    """Apply one of :data:`NORMALIZATIONS` to a block of rows.

    Parameters
    ----------
    block : ndarray of shape (R, D)
        Raw feature rows (any float dtype).
    normalize : {"standard", "l2", "none"}
        ``standard`` = ``(x - mean) / std`` per dimension (see :func:`standardization_scale`),
        then each row divided by its L2 norm; ``l2`` = L2 only; ``none`` = raw values.
        Rows whose norm is zero stay zero.
    mean, std : ndarray of shape (D,), optional
        Dataset-wide statistics; required for ``standard``.

    Returns
    -------
    ndarray of shape (R, D), float32
        A new array (``block`` is never modified).
    """
    check_choice("normalize", normalize, NORMALIZATIONS)
    rows = np.array(block, dtype=np.float32, copy=True)
    if normalize == "none":
        return rows
    if normalize == "standard":
        if mean is None or std is None:
            raise ValueError(
                "normalize='standard' needs the dataset-wide mean and std; pass mean= and std= "
                "(an EmbeddingStore provides them after finalize()), or use normalize='l2'"
            )
        rows -= np.asarray(mean, dtype=np.float32)
        rows /= standardization_scale(mean, std).astype(np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    norms[norms == 0] = 1.0  # an all-zero row has no direction; keep it zero instead of NaN
    rows /= norms[:, None]
    return rows


def block_moments(rows: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Per-dimension (count, mean, M2) of ``rows`` (those where ``keep``) in float64, (3, D).

    Merge blocks with :func:`merge_moments`; the mean is ``[1]`` and the population variance
    ``[2] / [0]`` of the result.

    No rows give count 0, mean 0, M2 0 (never NaN).
    """
    values = np.asarray(rows, dtype=np.float64)
    if keep is not None:
        values = values[keep]
    if values.shape[0] == 0:
        return np.zeros((N_MOMENTS, values.shape[1]), dtype=np.float64)
    mean = values.mean(axis=0)
    m2 = np.square(values - mean).sum(axis=0)
    return np.stack([np.full_like(mean, values.shape[0]), mean, m2])


def merge_moments(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Merge two (count, mean, M2) stacks (Chan et al.'s parallel update, stable in float64).

    An empty side (count 0) leaves the other unchanged; two empty sides stay empty.
    """
    n_a, mean_a, m2_a = left
    n_b, mean_b, m2_b = right
    n = n_a + n_b
    delta = mean_b - mean_a
    share = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
    cross = np.divide(n_a * n_b, n, out=np.zeros_like(n), where=n > 0)
    mean = mean_a + delta * share
    m2 = m2_a + m2_b + np.square(delta) * cross
    return np.stack([n, mean, m2])


def array_fingerprint(features: Any, labels: Any = None, *, block_rows: int = 65536) -> str:
    """Content fingerprint of an in-memory dataset of features (and labels).

    ``"array:"`` followed by 16 hex digits of the sha256 of shape, dtype and the C-order bytes,
    hashed in row blocks so a memory-mapped array is never loaded whole.

    Parameters
    ----------
    features : array-like of shape (N, D)
    labels : array-like of shape (N,), optional
    block_rows : int
        Rows hashed per step.
    """
    digest = hashlib.sha256()
    values = features if hasattr(features, "shape") else np.asarray(features)
    header = {"shape": [int(s) for s in values.shape], "dtype": str(np.dtype(values.dtype))}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for start in range(0, int(values.shape[0]), block_rows):
        digest.update(np.ascontiguousarray(values[start : start + block_rows]).tobytes())
    if labels is not None:
        digest.update(b"labels")
        digest.update(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes())
    return f"array:{digest.hexdigest()[:16]}"
