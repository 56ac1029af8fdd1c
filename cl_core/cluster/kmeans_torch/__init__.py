"""k-means in torch over streamed row chunks: the GPU fit of the clustering stage.

The same code runs on CPU tensors (so CI tests the exact code path) and on CUDA. Nothing here
holds the N x D matrix in host memory: every pass streams the source's row chunks, groups them
into batches of ``batch_rows`` rows, moves each batch to the device and accumulates float64
per-cluster sums there. Only the ``k x D`` centroids, the ``k x D`` float64 sums, an init
subsample and (optionally) a device-resident copy of the normalised rows live in memory; the
copy is kept only on an accelerator and only when it fits ``device_cache_bytes``.

Algorithms
----------
``lloyd`` (default)
    Full-batch Lloyd: each iteration is one pass over all rows (assign every row to its nearest
    centroid, then move every centroid to the mean of its rows). Every row takes part in every
    pass (unlike faiss's default, which trains on at most 256 rows per centroid). Converged when the total
    squared centre shift is at most ``tol`` times the mean per-dimension variance of the data
    (scikit-learn's criterion), or after ``max_iter`` passes.
``minibatch``
    Online mini-batch k-means (Sculley 2010, as scikit-learn's ``MiniBatchKMeans`` without
    random reassignment): batches of ``batch_rows`` consecutive rows in a seeded random order
    per pass; every centre moves to the count-weighted mean of its old position and the
    batch's rows. ``max_iter`` is the number of passes.

Distances
---------
Nearest centres come from the fp32 expansion ``||x||^2 - 2 x.c + ||c||^2`` with one matmul per
sub-batch (at most ``max_scores`` rows x centroids scores at a time). Inertia and reported
distances are computed exactly from the difference ``x - c`` (no cancellation error).

Empty clusters
--------------
A Lloyd cluster that receives no row keeps no stale position: it is moved onto one of the rows
farthest from their centre in that pass (the ``k`` farthest rows are tracked while streaming;
scikit-learn relocates empty clusters the same way). ``n_relocated`` counts such moves.

Determinism
-----------
Every random choice (init subsample, k-means++, mini-batch order) is seeded from
``random_state``. On CPU the per-cluster sums use ``index_add_`` (sequential); on CUDA they are a
one-hot matmul (cuBLAS GEMMs are deterministic, atomics are not). For a given seed, device,
``batch_rows`` and thread count the result is bitwise identical.

Modules
-------
:mod:`~.fit` (:func:`fit_kmeans_torch`, :class:`TorchKMeansResult`), :mod:`~.updates` (Lloyd,
mini-batch and measuring passes), :mod:`~.initial` (given centres or k-means++),
:mod:`~.batches` (rows streamed to the device, the device cache), :mod:`~.kernels` (nearest
centroid, cluster sums), :mod:`~.device` (:func:`resolve_device`). torch is imported inside the
functions: importing this package does not load it.
"""

from __future__ import annotations

from cl_core.cluster.kmeans_torch.batches import DEFAULT_BATCH_ROWS
from cl_core.cluster.kmeans_torch.batches import _Batches as _Batches  # tests reach it here
from cl_core.cluster.kmeans_torch.device import resolve_device
from cl_core.cluster.kmeans_torch.fit import TorchKMeansResult, fit_kmeans_torch
from cl_core.cluster.kmeans_torch.initial import DEFAULT_INIT_SAMPLES, kmeans_plusplus_init
from cl_core.cluster.kmeans_torch.kernels import DEFAULT_MAX_SCORES, cluster_sums, nearest_centroids
from cl_core.cluster.kmeans_torch.updates import ALGORITHMS

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
