"""What the clustering stage returns: :class:`SweepPoint` (one candidate k) and
:class:`ClusterResult` (centroids, assignment, distances and how k was chosen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from cl_core.cluster.config import CHOSEN_BY, ClusterConfig
from cl_core.validation import check_choice


@dataclass(frozen=True)
class SweepPoint:
    """Scores of one candidate k, measured on the sweep subsample.

    Attributes
    ----------
    k : int
        Number of clusters.
    davies_bouldin : float
        Davies-Bouldin index (lower is better): the mean over the half-sample replicates.
    inertia : float
        Sum of squared distances of the rows to their centroid: the replicates' mean, scaled
        to the ``n_samples`` rows of the sweep sample (:attr:`mean_inertia` per row).
    seconds : float
        Wall time of the job (fit + score).
    n_samples : int
        Rows of the sweep sample (each replicate is half of them).
    class_label : int, str or None
        The class whose rows were clustered (supervised mode), else None.
    davies_bouldin_se : float
        Standard error of the index: the standard deviation of the half-sample replicates,
        which estimates the index's standard error on the whole sweep sample (half-sampling,
        McCarthy 1969); NaN for one replicate.
    replicates : tuple of float
        The index of each replicate.
    """

    k: int
    davies_bouldin: float
    inertia: float
    seconds: float
    n_samples: int = 0
    class_label: Any = None
    davies_bouldin_se: float = math.nan
    replicates: tuple[float, ...] = ()

    @property
    def mean_inertia(self) -> float:
        """Inertia per subsample row (comparable across subsample sizes)."""
        return self.inertia / self.n_samples if self.n_samples else math.nan

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SweepPoint:
        """The point :meth:`to_dict` wrote (derived keys such as ``mean_inertia`` ignored)."""
        names = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in names}
        if "replicates" in kept:
            kept["replicates"] = tuple(float(v) for v in kept["replicates"])
        if kept.get("davies_bouldin_se") is None:
            kept.pop("davies_bouldin_se", None)
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (numpy scalars converted)."""
        values = asdict(self)
        if isinstance(self.class_label, np.generic):
            values["class_label"] = self.class_label.item()
        values["mean_inertia"] = self.mean_inertia
        values["replicates"] = list(self.replicates)
        if math.isnan(self.davies_bouldin_se):
            values["davies_bouldin_se"] = None  # JSON has no NaN
        return values


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """Output of :func:`cluster_embeddings`; arrays are read-only.

    Attributes
    ----------
    centroids : ndarray of shape (k, D), float32
        Cluster centres in the normalised feature space.
    assignment : ndarray of shape (N,), int32
        Cluster id of every row, in dataset order.
    distances : ndarray of shape (N,), float32
        ``||x_i - centroids[assignment[i]]||`` of every normalised row.
    n_clusters : int
        k (total over classes in supervised mode).
    chosen_by : {"explicit", "davies_bouldin", "per_class"}
        How k was decided.
    sweep : tuple of SweepPoint
        Every candidate's scores (empty for an explicit k), per class in supervised mode.
    cluster_class : ndarray of shape (k,) or None
        Class label of each cluster (supervised mode).
    inertia : float
        Sum of squared distances over all N rows.
    config : ClusterConfig or None
        The configuration that produced the result.
    valid : ndarray of shape (N,), bool, or None
        The rows that took part (True); excluded rows have assignment -1 and distance 0.0.
        None when every row took part.
    k_choice : dict or None
        How the sweep chose k (``chosen_by == "davies_bouldin"``): the rule, the band, the
        grid, the refinement and the sweep sample (:func:`cl_core.cluster.describe_sweep`).
    """

    centroids: np.ndarray
    assignment: np.ndarray
    distances: np.ndarray
    n_clusters: int
    chosen_by: str
    sweep: tuple[SweepPoint, ...] = ()
    cluster_class: np.ndarray | None = None
    inertia: float = math.nan
    config: ClusterConfig | None = field(default=None)
    valid: np.ndarray | None = None
    k_choice: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_choice("chosen_by", self.chosen_by, CHOSEN_BY)
        k = int(self.n_clusters)
        if self.centroids.shape[0] != k or self.centroids.ndim != 2:
            raise ValueError(f"centroids must have shape ({k}, D), got {self.centroids.shape}")
        if self.assignment.shape != self.distances.shape or self.assignment.ndim != 1:
            raise ValueError(
                f"assignment {self.assignment.shape} and distances {self.distances.shape} must "
                "both have shape (N,)"
            )
        if self.cluster_class is not None and self.cluster_class.shape != (k,):
            raise ValueError(
                f"cluster_class must have shape ({k},), got {self.cluster_class.shape}"
            )
        if self.valid is not None and self.valid.shape != self.assignment.shape:
            raise ValueError(
                f"valid must have shape {self.assignment.shape} like assignment, got "
                f"{self.valid.shape}"
            )
        arrays = (self.centroids, self.assignment, self.distances, self.cluster_class, self.valid)
        for array in arrays:
            if array is not None:
                array.flags.writeable = False

    @property
    def n_rows(self) -> int:
        """N, the number of assigned rows."""
        return int(self.assignment.shape[0])

    @property
    def n_excluded(self) -> int:
        """Rows left out of the clustering (``valid`` False); 0 when none."""
        return 0 if self.valid is None else int(self.valid.size - np.count_nonzero(self.valid))

    def cluster_sizes(self) -> np.ndarray:
        """Rows per cluster, int64 (k,) (excluded rows, assignment -1, are not counted)."""
        assigned = self.assignment if self.valid is None else self.assignment[self.valid]
        return np.bincount(assigned, minlength=self.n_clusters)

    def sweep_records(self) -> list[dict[str, Any]]:
        """The sweep as JSON-ready dicts (for ``sweep.json`` and report tables)."""
        return [point.to_dict() for point in self.sweep]
