"""Moved to :mod:`cl_core.cluster.kmeans_torch`; this module keeps the old import path working."""

from cl_core.cluster.kmeans_torch import (
    ALGORITHMS,
    DEFAULT_BATCH_ROWS,
    DEFAULT_INIT_SAMPLES,
    DEFAULT_MAX_SCORES,
    TorchKMeansResult,
    cluster_sums,
    fit_kmeans_torch,
    kmeans_plusplus_init,
    nearest_centroids,
    resolve_device,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_INIT_SAMPLES",
    "DEFAULT_MAX_SCORES",
    "TorchKMeansResult",
    "cluster_sums",
    "fit_kmeans_torch",
    "kmeans_plusplus_init",
    "nearest_centroids",
    "resolve_device",
]
