"""The per-cluster scale of a difficulty normalisation, fitted once and applied to any distances.

:func:`normalize_difficulty` fits and applies in one go. A nightly run that assigns new samples
to a published version's centroids (``--refit never`` / ``auto``) must score them on that
version's scale instead, so that every unchanged sample keeps its difficulty bit for bit:
:func:`fit_scale` keeps the per-cluster figures (``minmax``: min and max; ``zscore``: mean and
population std; ``rank``: the sorted distances; ``none``: the global maximum) and
:meth:`DifficultyScale.apply` maps distances through them with the same float64 arithmetic as
:func:`normalize_difficulty`, so ``fit_scale(d, g, m).apply(d, g)`` equals
``normalize_difficulty(d, g, m)`` exactly. A distance outside the fitted range is clipped to
``[0, 1]`` (``rank``: a new distance takes the average rank it would have among the fitted ones).

Groups are integer ids ``0 .. n_groups - 1`` (cluster ids; ``-1`` marks an excluded sample). A
group without members, one member or zero spread scores 0.0, as in :func:`normalize_difficulty`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.difficulty.normalize import NORMALIZATIONS
from cl_core.validation import check_choice, check_finite, check_valid_mask


@dataclass(frozen=True)
class DifficultyScale:
    """Per-group figures of one difficulty normalisation.

    Attributes
    ----------
    method : {"minmax", "rank", "zscore", "none"}
    low, high : tuple of float, length n_groups
        ``minmax``: each group's min and max distance; ``zscore``: mean and population std;
        ``none``: ``low`` empty and ``high = (global max,)``; ``rank``: min and max.
    sorted_values : tuple of tuple of float, optional
        ``rank`` only: each group's fitted distances, ascending (N values in all).
    """

    method: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    sorted_values: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        check_choice("method", self.method, NORMALIZATIONS)
        if self.method != "none" and len(self.low) != len(self.high):
            raise ValueError(
                f"low and high must have one value per group, got {len(self.low)} and "
                f"{len(self.high)}"
            )
        if self.method == "rank" and (
            self.sorted_values is None or len(self.sorted_values) != len(self.low)
        ):
            raise ValueError("a rank scale needs sorted_values, one tuple per group")

    @property
    def n_groups(self) -> int:
        """Number of groups (clusters) the scale covers (1 for ``none``)."""
        return len(self.high) if self.method == "none" else len(self.low)

    def apply(self, distances: Any, groups: Any = None, *, valid: Any = None) -> np.ndarray:
        """Difficulty of each distance on this scale, clipped to ``[0, 1]``.

        Parameters
        ----------
        distances : array-like of shape (N,)
            Finite distances (excluded entries may hold anything).
        groups : array-like of int, shape (N,)
            Group (cluster) id of each distance in ``[0, n_groups)``; ignored by ``none``.
        valid : array-like of bool, shape (N,), optional
            Excluded samples (False) get 0.0.

        Returns
        -------
        ndarray of shape (N,), float32
        """
        values = np.asarray(distances)
        mask = check_valid_mask("valid", valid, values.shape[0])
        out = np.zeros(values.shape[0], dtype=np.float32)
        keep = np.ones(values.shape[0], dtype=bool) if mask is None else mask
        if not keep.any():
            return out
        kept = values[keep].astype(np.float64)
        check_finite("distances", kept)
        if self.method == "none":
            top = self.high[0]
            result = kept / top if top > 0 else np.zeros_like(kept)
        else:
            codes = _codes(groups, values.shape[0], self.n_groups)[keep]
            result = _APPLY[self.method](self, kept, codes)
        out[keep] = np.clip(result, 0.0, 1.0).astype(np.float32)
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (floats round-trip exactly through Python's ``repr``)."""
        document: dict[str, Any] = {
            "method": self.method,
            "low": list(self.low),
            "high": list(self.high),
        }
        if self.sorted_values is not None:
            document["sorted_values"] = [list(values) for values in self.sorted_values]
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> DifficultyScale:
        """The scale :meth:`to_json` wrote."""
        ordered = document.get("sorted_values")
        return cls(
            method=str(document["method"]),
            low=tuple(float(v) for v in document["low"]),
            high=tuple(float(v) for v in document["high"]),
            sorted_values=None
            if ordered is None
            else tuple(tuple(float(v) for v in values) for values in ordered),
        )


def fit_scale(
    distances: Any,
    groups: Any = None,
    method: str = "minmax",
    *,
    n_groups: int | None = None,
    valid: Any = None,
) -> DifficultyScale:
    """The per-group figures :func:`normalize_difficulty` uses, kept for later distances.

    Parameters
    ----------
    distances : array-like of shape (N,)
        Finite distances of the fitted samples.
    groups : array-like of int, shape (N,), optional
        Group (cluster) id of each sample in ``[0, n_groups)``; None: one group.
    method : {"minmax", "rank", "zscore", "none"}
    n_groups : int, optional
        Number of groups (default: the largest valid id + 1); groups without members get a
        zero-spread scale (their samples score 0.0).
    valid : array-like of bool, shape (N,), optional
        Only valid samples are fitted.

    Returns
    -------
    DifficultyScale
        ``fit_scale(d, g, m).apply(d, g)`` equals ``normalize_difficulty(d, g, m)`` bitwise.
    """
    check_choice("method", method, NORMALIZATIONS)
    values = np.asarray(distances)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"distances must be a non-empty 1-D array, got shape {values.shape}")
    mask = check_valid_mask("valid", valid, values.shape[0])
    keep = np.ones(values.shape[0], dtype=bool) if mask is None else mask
    kept = values[keep].astype(np.float64)
    check_finite("distances", kept)
    if method == "none":
        if np.any(kept < 0):
            raise ValueError("method 'none' needs non-negative distances")
        return DifficultyScale("none", (), (float(kept.max()),))
    if groups is None:
        codes = np.zeros(kept.size, dtype=np.intp)
        count = 1
    else:
        all_codes = np.asarray(groups, dtype=np.int64)
        count = int(all_codes[keep].max()) + 1 if n_groups is None else int(n_groups)
        codes = _codes(all_codes, values.shape[0], count)[keep]
    return _FIT[method](kept, codes, count)


def _codes(groups: Any, n_rows: int, n_groups: int) -> np.ndarray:
    codes = np.asarray(groups)
    if codes.shape != (n_rows,) or codes.dtype.kind not in "iu":
        raise ValueError(
            f"groups must be integer cluster ids of shape ({n_rows},), got dtype {codes.dtype} "
            f"shape {codes.shape}"
        )
    return codes.astype(np.intp)


def _check_codes(codes: np.ndarray, n_groups: int) -> None:
    if codes.size and (codes.min() < 0 or codes.max() >= n_groups):
        bad = int(codes[(codes < 0) | (codes >= n_groups)][0])
        raise ValueError(
            f"group id {bad} is outside the scale's {n_groups} groups; assign samples to the "
            "centroids this scale was fitted with"
        )


def _extremes(values: np.ndarray, codes: np.ndarray, n_groups: int) -> tuple[list, list]:
    low = np.full(n_groups, np.inf)
    high = np.full(n_groups, -np.inf)
    np.minimum.at(low, codes, values)
    np.maximum.at(high, codes, values)
    empty = ~np.isfinite(low)
    low[empty] = high[empty] = 0.0  # no member: zero spread, every later sample scores 0
    return low.tolist(), high.tolist()


def _fit_minmax(values: np.ndarray, codes: np.ndarray, n_groups: int) -> DifficultyScale:
    _check_codes(codes, n_groups)
    low, high = _extremes(values, codes, n_groups)
    return DifficultyScale("minmax", tuple(low), tuple(high))


def _apply_minmax(scale: DifficultyScale, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    _check_codes(codes, scale.n_groups)
    low = np.asarray(scale.low, dtype=np.float64)
    spread = np.asarray(scale.high, dtype=np.float64) - low
    safe = np.where(spread > 0, spread, 1.0)
    result = (values - low[codes]) / safe[codes]
    return np.where(spread[codes] > 0, result, 0.0)


def _fit_zscore(values: np.ndarray, codes: np.ndarray, n_groups: int) -> DifficultyScale:
    _check_codes(codes, n_groups)
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    safe_sizes = np.where(sizes > 0, sizes, 1.0)
    means = np.bincount(codes, weights=values, minlength=n_groups) / safe_sizes
    deviation = values - means[codes]
    std = np.sqrt(
        np.bincount(codes, weights=deviation * deviation, minlength=n_groups) / safe_sizes
    )
    return DifficultyScale("zscore", tuple(means.tolist()), tuple(std.tolist()))


def _apply_zscore(scale: DifficultyScale, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr  # lazy: only this method needs scipy

    _check_codes(codes, scale.n_groups)
    means = np.asarray(scale.low, dtype=np.float64)
    spread = np.asarray(scale.high, dtype=np.float64)[codes]
    z = (values - means[codes]) / np.where(spread > 0, spread, 1.0)
    return np.where(spread > 0, ndtr(z), 0.0)


def _fit_rank(values: np.ndarray, codes: np.ndarray, n_groups: int) -> DifficultyScale:
    _check_codes(codes, n_groups)
    low, high = _extremes(values, codes, n_groups)
    ordered = tuple(tuple(np.sort(values[codes == g]).tolist()) for g in range(n_groups))
    return DifficultyScale("rank", tuple(low), tuple(high), ordered)


def _apply_rank(scale: DifficultyScale, values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The within-group empirical CDF over the fitted distances, ties at their average rank:
    ``(mean_rank - 1) / (n_g - 1)`` with ``mean_rank = (below + 1 + at_or_below) / 2``."""
    _check_codes(codes, scale.n_groups)
    assert scale.sorted_values is not None
    out = np.zeros(values.size)
    for group in np.unique(codes).tolist():
        rows = np.flatnonzero(codes == group)
        fitted = np.asarray(scale.sorted_values[group], dtype=np.float64)
        if fitted.size == 0 or scale.high[group] == scale.low[group]:
            continue  # no member or zero spread: every sample is the prototype
        below = np.searchsorted(fitted, values[rows], side="left").astype(np.float64)
        at_or_below = np.searchsorted(fitted, values[rows], side="right").astype(np.float64)
        mean_rank = (below + 1.0 + at_or_below) / 2.0
        out[rows] = (mean_rank - 1.0) / max(fitted.size - 1, 1)
    return out


_FIT = {"minmax": _fit_minmax, "zscore": _fit_zscore, "rank": _fit_rank}
_APPLY = {"minmax": _apply_minmax, "zscore": _apply_zscore, "rank": _apply_rank}
