"""Distance of each sample to its cluster centre, normalised within its cluster: the difficulty.

A sample close to its centroid is prototypical (easy), a far one is hard. Raw distances are not
comparable across clusters of different spread, so each is normalised within its group (its
cluster, or its class in supervised mode) to ``[0, 1]``:

* ``minmax`` (default, as the reference library): ``(d - min_g) / (max_g - min_g)``;
* ``rank``: the within-group empirical CDF, ``(rank - 1) / (n_g - 1)`` with tied distances
  given their average rank; robust to outliers, uniform on ``[0, 1]`` without ties;
* ``zscore``: ``Phi((d - mean_g) / std_g)`` (population std), i.e. the standard normal CDF of
  the within-group z-score, a monotone map of z onto ``(0, 1)``; ``z = 0`` maps to 0.5;
* ``none``: the raw distance divided by the global maximum (groups are ignored), so that it
  stays in ``[0, 1]``; all-zero distances give all zeros.

A group with one member, or whose members are all at the same distance (zero spread), gets
difficulty 0.0 for every member under ``minmax``, ``rank`` and ``zscore``: each is its group's
prototype. No method ever produces NaN.
"""

from __future__ import annotations

import numpy as np

from cl_core.validation import check_choice, check_finite, check_valid_mask

NORMALIZATIONS = ("minmax", "rank", "zscore", "none")


def _as_distances(distances: object) -> np.ndarray:
    values = np.asarray(distances)
    if values.dtype.kind not in "fiu":
        raise TypeError(
            f"distances must be a numeric array, got dtype {values.dtype}; pass float distances "
            f"of shape (N,)"
        )
    if values.ndim != 1:
        raise ValueError(
            f"distances must be 1-D with one value per sample, got shape {values.shape}"
        )
    if values.size == 0:
        raise ValueError("distances is empty (0 samples); pass one distance per sample (N >= 1)")
    check_finite("distances", values)
    return values.astype(np.float64, copy=False)


def _group_codes(groups: object, n_samples: int) -> tuple[np.ndarray, int]:
    """Map arbitrary group labels to codes ``0 .. n_groups - 1``."""
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(
            f"groups must have shape ({n_samples},) (one cluster/class id per sample), got "
            f"{labels.shape}"
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise TypeError(
                "groups must hold integer (or string) ids, got non-integral floats; pass the "
                "cluster assignment as integers"
            )
    elif labels.dtype.kind not in "iubUS":
        raise TypeError(
            f"groups must hold integer (or string) ids, got dtype {labels.dtype}; pass the "
            f"cluster assignment as integers"
        )
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1


def _group_extremes(
    values: np.ndarray, codes: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    low = np.full(n_groups, np.inf)
    high = np.full(n_groups, -np.inf)
    np.minimum.at(low, codes, values)
    np.maximum.at(high, codes, values)
    return low, high


def _minmax(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    low, high = _group_extremes(values, codes, n_groups)
    spread = high - low
    safe = np.where(spread > 0, spread, 1.0)  # zero spread: numerator is 0 too -> 0.0
    return (values - low[codes]) / safe[codes]


def _rank(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    order = np.lexsort((values, codes))  # by group, then distance
    sorted_codes = codes[order]
    sorted_values = values[order]
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.arange(values.size) - starts[sorted_codes] + 1.0
    # runs of equal (group, value) share their average rank
    new_run = np.empty(values.size, dtype=bool)
    new_run[0] = True
    new_run[1:] = (sorted_codes[1:] != sorted_codes[:-1]) | (
        sorted_values[1:] != sorted_values[:-1]
    )
    run = np.cumsum(new_run) - 1
    mean_rank = np.bincount(run, weights=rank) / np.bincount(run)
    denominator = np.maximum(sizes - 1, 1)[sorted_codes]
    ecdf = (mean_rank[run] - 1.0) / denominator
    low, high = _group_extremes(values, codes, n_groups)
    ecdf[(high == low)[sorted_codes]] = 0.0  # zero spread: every member is the prototype
    out = np.empty(values.size)
    out[order] = ecdf
    return out


def _zscore(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    from scipy.special import ndtr  # lazy: only this method needs scipy

    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    means = np.bincount(codes, weights=values, minlength=n_groups) / sizes
    deviation = values - means[codes]
    std = np.sqrt(np.bincount(codes, weights=deviation * deviation, minlength=n_groups) / sizes)
    spread = std[codes]
    z = deviation / np.where(spread > 0, spread, 1.0)
    return np.where(spread > 0, ndtr(z), 0.0)


def _global_scale(values: np.ndarray) -> np.ndarray:
    if np.any(values < 0):
        first = int(np.flatnonzero(values < 0)[0])
        raise ValueError(
            f"method 'none' needs non-negative distances, got {float(values[first])!r} at index {first}; "
            f"use method='minmax' or 'rank' for signed scores"
        )
    top = float(values.max())
    return values / top if top > 0 else np.zeros_like(values)


def normalize_difficulty(
    distances: object,
    groups: object = None,
    method: str = "minmax",
    *,
    valid: object = None,
) -> np.ndarray:
    """Per-group normalised difficulty in ``[0, 1]`` (see the module docstring for the maths).

    Parameters
    ----------
    distances : array-like of shape (N,)
        Finite distance of each sample to its centroid (or any per-sample score). Entries of
        excluded samples (``valid`` False) are ignored and may hold anything, NaN included.
    groups : array-like of shape (N,), optional
        Cluster id (or class id in supervised mode) of each sample; integer or string labels.
        ``None`` normalises over the whole data set as one group. Ignored by ``method="none"``.
        Excluded samples' ids (``-1`` from :func:`cl_core.cluster.cluster_embeddings`) are
        ignored.
    method : {"minmax", "rank", "zscore", "none"}
    valid : array-like of shape (N,), bool, optional
        True for usable samples. Group statistics (min, max, ranks, mean, std, the global
        maximum of ``none``) are computed over the valid samples only; excluded samples get
        difficulty 0.0. ``None`` (or all True): every sample is usable.

    Returns
    -------
    ndarray of shape (N,), float32
        Difficulty in ``[0, 1]``; 0.0 for every member of a one-member or zero-spread group
        (except ``none``, which has no groups) and for every excluded sample. Never NaN.
    """
    check_choice("method", method, NORMALIZATIONS)
    raw = np.asarray(distances)
    if raw.ndim != 1:
        _as_distances(raw)  # raises: the shape error names distances, not valid
    mask = check_valid_mask("valid", valid, raw.shape[0])
    if mask is not None:
        kept = normalize_difficulty(
            raw[mask],
            None if groups is None else _masked_groups(groups, mask),
            method,
        )
        out = np.zeros(mask.shape[0], dtype=np.float32)
        out[mask] = kept
        return out
    values = _as_distances(raw)
    if method == "none":
        result = _global_scale(values)
    else:
        if groups is None:
            codes, n_groups = np.zeros(values.size, dtype=np.intp), 1
        else:
            codes, n_groups = _group_codes(groups, values.size)
        normalise = {"minmax": _minmax, "rank": _rank, "zscore": _zscore}[method]
        result = normalise(values, codes, n_groups)
    return np.clip(result, 0.0, 1.0).astype(np.float32)


def _masked_groups(groups: object, mask: np.ndarray) -> np.ndarray:
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.shape[0] != mask.shape[0]:
        raise ValueError(
            f"groups must have shape ({mask.shape[0]},) (one cluster/class id per sample), got "
            f"{labels.shape}"
        )
    return labels[mask]
