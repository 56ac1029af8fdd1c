"""Drift figures: how much the data changed since the last fit, and how far new rows sit.

``changed_share`` = rows added, changed or removed since the last fit (summed over the versions
that only assigned) / the rows that fit was made on. ``distance_ratio`` = median distance of this
run's new rows to their assigned (previous) centroids / median distance of the previous version's
rows. Both are defined in :class:`~cl_core.update.config.RefitPolicy`'s notes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DriftFigures:
    """The figures a refit decision is made from.

    Attributes
    ----------
    changed_since_fit : int
        Rows added + changed + removed since the version whose centroids are in use was fitted.
    fit_rows : int
        Valid rows that fit was made on.
    changed_share : float
        ``changed_since_fit / fit_rows``.
    new_rows : int
        Rows assigned this run (added, changed, or skipped before and loadable now).
    new_median, old_median : float or None
        Median distance to the assigned centroid of the new rows and of the previous
        version's valid rows (None when there are none).
    distance_ratio : float or None
        ``new_median / old_median`` (None without new rows or with ``old_median == 0``).
    """

    changed_since_fit: int
    fit_rows: int
    changed_share: float
    new_rows: int
    new_median: float | None
    old_median: float | None
    distance_ratio: float | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the manifest's ``lineage.drift``)."""
        return dataclasses.asdict(self)


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values.astype(np.float64))) if values.size else None


def drift_figures(
    changed_since_fit: int,
    fit_rows: int,
    new_distances: np.ndarray,
    old_distances: np.ndarray,
) -> DriftFigures:
    """The drift figures of one update.

    Parameters
    ----------
    changed_since_fit : int
        Rows added + changed + removed since the last fit, this run's included.
    fit_rows : int
        Valid rows of the last fit (>= 1).
    new_distances : ndarray of shape (n_new,)
        Distances of this run's new rows to their assigned previous centroids.
    old_distances : ndarray of shape (n_old,)
        Distances of the previous version's valid rows to their centroids.

    Returns
    -------
    DriftFigures
    """
    new_median = _median(np.asarray(new_distances))
    old_median = _median(np.asarray(old_distances))
    ratio = None
    if new_median is not None and old_median:
        ratio = new_median / old_median
    return DriftFigures(
        changed_since_fit=int(changed_since_fit),
        fit_rows=int(fit_rows),
        changed_share=float(changed_since_fit) / max(int(fit_rows), 1),
        new_rows=int(np.asarray(new_distances).size),
        new_median=new_median,
        old_median=old_median,
        distance_ratio=ratio,
    )
