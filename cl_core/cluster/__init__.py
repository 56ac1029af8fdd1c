"""Clustering stage: k-means over the embedding store, Davies-Bouldin k sweep, assignment.

The stage reads normalised rows from an embedding store (or an in-memory array) and produces the
centroids, the assignment of every row and its distance to its centroid. Nothing here ever holds
the N x D matrix: rows are streamed in chunks, and only bounded subsamples live in memory.

Pipeline of :func:`cluster_embeddings`
--------------------------------------
1. **Subsample.** ``sweep_samples`` rows (default 20 000; all rows when N is smaller) are drawn
   without replacement with a seeded generator (:func:`sample_rows`).
2. **Cluster count.** An explicit ``n_clusters`` is always used as given. Otherwise every k of
   ``cluster_range`` (inclusive) is an independent job (:func:`evaluate_k`): ``MiniBatchKMeans``
   (k-means++, ``sweep_n_init`` restarts) on the subsample, scored by scikit-learn's
   ``davies_bouldin_score`` on the same subsample. The jobs run in parallel on Dask
   (:func:`sweep_k`: local threads by default, processes, or a ``dask.distributed.Client``).
   The lowest Davies-Bouldin index wins (ties: the smaller k). Every k's index and inertia are
   kept (:class:`SweepPoint`).
3. **Fit.** When the subsample is the whole data set (N <= ``sweep_samples``), the centroids are
   scikit-learn ``KMeans`` (Lloyd to convergence, best of ``n_init`` k-means++ starts) on it.
   Otherwise ``MiniBatchKMeans`` (best of ``n_init`` k-means++ starts) on the subsample gives the
   initial centres, which ``MiniBatchKMeans.partial_fit`` then refines on *all* rows:
   mini-batches of ``batch_size`` consecutive rows, streamed in a seeded random block order for
   ``n_epochs`` passes (:func:`fit_kmeans`). With ``max_fit_samples`` the refinement streams a
   seeded subsample of that size instead of all rows.
4. **Assign.** Every row goes to its nearest centroid, chunk by chunk (:func:`assign`); the
   distance is the true Euclidean distance ``||x_i - c_a(i)||`` (float32), ready for
   :func:`cl_core.difficulty.normalize_difficulty`.

Supervised mode (``use_labels=True``) runs steps 1-3 within every class (k per class explicit,
capped at the class size, or chosen per class by Davies-Bouldin over ``cluster_range`` intersected
with ``[2, n_c - 1]``) and assigns each row to the nearest centroid *of its own class*. A class
too small for that (fewer than 3 samples for the auto sweep, or a single distinct point) becomes
one cluster at its mean, with a :class:`ClusterWarning`.

Memory
------
Peak memory is bounded by the configuration, not by N: the subsample
(``sweep_samples x D`` float32, 30 MiB at the defaults with D = 384), the working memory of one
sweep job per worker, one or two row chunks, the ``k x D`` centroids and the ``(N,)``
assignment/distances (8 bytes per row). Measured with D = 384 at the defaults: about 170 MiB
above the import floor, the same for N = 30 000 and N = 500 000.

Normalisation
-------------
Rows are read normalised with ``config.normalize`` (``"standard"`` = dataset-wide z-score per
dimension, then L2 per row, as the reference; ``"l2"``; ``"none"``). A store normalises with its
finalized statistics; an array given directly gets the same treatment from
:class:`ArraySource`, which streams the mean/std in float64 first (see
:func:`cl_core.store.normalize_block`).

Determinism
-----------
Every random choice is seeded from ``random_state`` and a fixed key per use (subsample, each k,
each class, each epoch's block order) via :class:`numpy.random.SeedSequence`, and every sweep job
runs single-threaded, so the sweep does not depend on scheduling, on the Dask backend or on the
number of cores (nor does the fit at the default ``n_threads=1``). Mini-batches are defined by ``batch_size`` over dataset row order, never by the
storage chunking, so for an in-memory array the centroids are bitwise identical whatever the
``chunk_rows``; assignments are identical except for rows equidistant from two centroids to
within float32 rounding. For a Zarr store the feature statistics are merged per shard, so stores
with different chunking normalise with means/stds that can differ in the last float64 bit: the
assignments are the same (up to such ties) and the centroids agree to float32 rounding.

Modules
-------
=====================  ===========================================================================
``config``             :class:`ClusterConfig`, vocabularies, defaults, :func:`resolve_fit_device`
``results``            :class:`SweepPoint`, :class:`ClusterResult`
``seeds``              the keyed seed streams (:func:`sweep_seeds`)
``sampling``           :func:`sample_rows` and the distinct-row / constant-feature checks
``sweep``              :func:`plan_sweep`, :func:`evaluate_k`, :func:`sweep_k`, :func:`choose_k`,
                       :func:`edge_of_range_warning`
``fit``                :func:`fit_kmeans` (scikit-learn; CUDA: :mod:`~cl_core.cluster.kmeans_torch`)
``assign``             :func:`assign` (with a Dask client: :mod:`~cl_core.cluster.assign_dask`)
``supervised``         the per-class variant of sweep, fit and assignment
``stage``              :func:`cluster_embeddings` = subsample -> sweep -> fit -> assign
=====================  ===========================================================================

The readers (:class:`ChunkSource`, :class:`ArraySource`, :class:`StoreSource`, :func:`as_source`)
live in :mod:`cl_core.sources`, next to the store, and are re-exported here.
"""

from __future__ import annotations

from cl_core.cluster.assign import assign
from cl_core.cluster.config import (
    CHOSEN_BY,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SWEEP_BATCH_SIZE,
    DEFAULT_SWEEP_SAMPLES,
    EXECUTION_FIELDS,
    FIT_DEVICES,
    NORMALIZATIONS,
    SCHEDULERS,
    ClusterConfig,
    ClusterWarning,
    resolve_fit_device,
)
from cl_core.cluster.fit import fit_kmeans
from cl_core.cluster.results import ClusterResult, SweepPoint
from cl_core.cluster.sampling import sample_rows
from cl_core.cluster.seeds import sweep_seeds
from cl_core.cluster.stage import cluster_embeddings
from cl_core.cluster.sweep import (
    SweepPlan,
    choose_k,
    edge_of_range_warning,
    evaluate_k,
    plan_sweep,
    sweep_k,
)
from cl_core.sources import DEFAULT_CHUNK_ROWS, ArraySource, ChunkSource, StoreSource, as_source

__all__ = [
    "CHOSEN_BY",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_SWEEP_BATCH_SIZE",
    "DEFAULT_SWEEP_SAMPLES",
    "EXECUTION_FIELDS",
    "FIT_DEVICES",
    "NORMALIZATIONS",
    "SCHEDULERS",
    "ArraySource",
    "ChunkSource",
    "ClusterConfig",
    "ClusterResult",
    "ClusterWarning",
    "StoreSource",
    "SweepPlan",
    "SweepPoint",
    "as_source",
    "assign",
    "choose_k",
    "cluster_embeddings",
    "edge_of_range_warning",
    "evaluate_k",
    "fit_kmeans",
    "plan_sweep",
    "resolve_fit_device",
    "sample_rows",
    "sweep_k",
    "sweep_seeds",
]
