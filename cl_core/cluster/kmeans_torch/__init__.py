"""k-means in torch over streamed row chunks: the GPU fit of the clustering stage.

The same code runs on CPU tensors (so CI tests the exact code path) and on CUDA; torch is imported
inside the functions, so importing this package does not load it.
"""

from __future__ import annotations

from cl_core.cluster.kmeans_torch.batches import DEFAULT_BATCH_ROWS
from cl_core.cluster.kmeans_torch.fit import TorchKMeansResult, fit_kmeans_torch
from cl_core.cluster.kmeans_torch.initial import (
    DEFAULT_INIT_SAMPLES,
    TRIAL_WORK,
    kmeans_plusplus_init,
    local_trials,
)
from cl_core.cluster.kmeans_torch.kernels import DEFAULT_MAX_SCORES, cluster_sums, nearest_centroids
from cl_core.cluster.kmeans_torch.updates import ALGORITHMS

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_INIT_SAMPLES",
    "DEFAULT_MAX_SCORES",
    "TRIAL_WORK",
    "TorchKMeansResult",
    "cluster_sums",
    "fit_kmeans_torch",
    "kmeans_plusplus_init",
    "local_trials",
    "nearest_centroids",
]
