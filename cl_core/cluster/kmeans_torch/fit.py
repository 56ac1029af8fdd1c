"""The torch k-means fit: arguments checked, initial centres, the passes, the result.

Nothing holds the N x D matrix in host memory: every pass streams the source's chunks in batches
of ``batch_rows`` rows to the device (kept there after the first pass when they fit
``device_cache_bytes``: by default only on an accelerator) and accumulates float64 per-cluster
sums. Nearest centres come from the fp32 expansion ``||x||^2 - 2 x.c + ||c||^2``; inertia and
distances from the difference ``x - c``. Every random choice is seeded from ``random_state``; on
CUDA the cluster sums are a one-hot matmul (cuBLAS GEMMs are deterministic, atomics are not), so
for a given seed, device, ``batch_rows`` and thread count the result is bitwise identical.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.cluster.kmeans_torch.batches import DEFAULT_BATCH_ROWS, DeviceBatches
from cl_core.cluster.kmeans_torch.initial import initial_centroids
from cl_core.cluster.kmeans_torch.kernels import DEFAULT_MAX_SCORES
from cl_core.cluster.kmeans_torch.updates import ALGORITHMS, measure, run_lloyd, run_minibatch
from cl_core.cluster.sources import as_source
from cl_core.devices import resolve_device
from cl_core.threads import torch_threads
from cl_core.validation import check_choice, check_int


@dataclass(frozen=True, eq=False)
class TorchKMeansResult:
    """Outcome of :func:`fit_kmeans_torch`; arrays are read-only.

    Attributes
    ----------
    centroids : ndarray of shape (k, D), float32
        Cluster centres in the (normalised) feature space of the source.
    inertia : float
        Sum over all N rows of the squared distance to the nearest centroid. With
        ``final_pass=True`` (default) it is measured with the returned centroids (one extra
        assign-only pass); otherwise it is that of the last iteration's assignment step (the
        centroids *before* its update, an upper bound for Lloyd).
    n_iter : int
        Passes run (Lloyd iterations or mini-batch epochs), without the final inertia pass.
    converged : bool
        Lloyd: the centre shift fell below the tolerance before ``max_iter``; mini-batch: False.
    counts : ndarray of shape (k,), int64
        Rows per cluster in the pass that measured ``inertia``.
    n_rows : int
        N.
    n_relocated : int
        Empty clusters moved onto far rows over all Lloyd iterations.
    device : str
        Where the arithmetic ran (``"cpu"``, ``"cuda:0"``...).
    algorithm : {"lloyd", "minibatch"}
    seconds : float
        Wall time of the whole fit (init included).
    """

    centroids: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    counts: np.ndarray
    n_rows: int
    n_relocated: int
    device: str
    algorithm: str
    seconds: float

    def __post_init__(self) -> None:
        if self.centroids.ndim != 2 or self.counts.shape != (self.centroids.shape[0],):
            raise ValueError(
                f"centroids must be (k, D) and counts (k,), got {self.centroids.shape} and "
                f"{self.counts.shape}"
            )
        for array in (self.centroids, self.counts):
            array.flags.writeable = False

    @property
    def n_clusters(self) -> int:
        """k."""
        return int(self.centroids.shape[0])

    @property
    def mean_inertia(self) -> float:
        """Inertia per row."""
        return self.inertia / self.n_rows


def fit_kmeans_torch(
    source: Any,
    k: int,
    *,
    algorithm: str = "lloyd",
    max_iter: int = 20,
    tol: float = 1e-4,
    init: Any = "k-means++",
    n_init: int = 3,
    init_samples: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    max_scores: int = DEFAULT_MAX_SCORES,
    random_state: int = 0,
    device: Any = "auto",
    normalize: str = "standard",
    final_pass: bool = True,
    device_cache_bytes: int | None = None,
    n_threads: int | None = 1,
) -> TorchKMeansResult:
    """Fit k centroids with torch, streaming the rows chunk by chunk (host memory independent of N).

    Parameters
    ----------
    source : ChunkSource, EmbeddingStore, store path/URL or array-like of shape (N, D)
        Anything :func:`cl_core.cluster.as_source` accepts; read with ``normalize`` unless it
        is already a ``ChunkSource``.
    k : int
        Clusters, ``1 <= k <= N``.
    algorithm : {"lloyd", "minibatch"}
        Full-batch Lloyd (:func:`run_lloyd`) or online mini-batch k-means (:func:`run_minibatch`).
    max_iter : int
        Most passes over the data.
    tol : float
        Lloyd stops when the summed squared centre shift is <= ``tol`` x the mean
        per-dimension variance of the rows (0 runs all ``max_iter`` passes).
    init : "k-means++" or array-like of shape (k, D)
        ``"k-means++"``: best of ``n_init`` seeded draws (scikit-learn's ``kmeans_plusplus``) on
        a seeded subsample of ``init_samples`` rows. An array is used as the initial centres.
    n_init : int
        k-means++ draws (compared by inertia on the subsample).
    init_samples : int, optional
        Subsample size for k-means++; default ``max(20 000, 3 k)`` capped at N.
    batch_rows : int
        Rows per device batch (and per mini-batch).
    max_scores : int
        Largest ``rows x k`` score matrix of one matmul (device working memory).
    random_state : int
        Seed of the subsample, k-means++ and the mini-batch order.
    device : {"auto", "cpu", "cuda"}, "cuda:N" or torch.device
        ``"auto"`` = CUDA when available.
    normalize : {"standard", "l2", "none"}
        Row normalisation for stores/arrays (as :class:`cl_core.cluster.ClusterConfig`).
    final_pass : bool
        Measure ``inertia`` and ``counts`` with the returned centroids (one more pass).
    device_cache_bytes : int, optional
        Keep the normalised rows on the device after the first pass when they take at most
        this many bytes (default: half the device's free memory on CUDA, 0 on the CPU, where
        the rows are streamed). On the CPU a cache is for rows that are in memory already (the
        k sweep's replicates): later passes then neither copy nor normalise them again.
    n_threads : int or None
        torch CPU threads during the fit (restored afterwards); None keeps torch's setting.

    Returns
    -------
    TorchKMeansResult

    Raises
    ------
    ValueError
        Bad arguments (named with the fix), ``k > N``, NaN/inf rows (first bad index), fewer
        distinct sample rows than ``k``.
    """
    import torch

    started = time.perf_counter()
    check_choice("algorithm", algorithm, ALGORITHMS)
    k = check_int("k", k, 1)
    max_iter = check_int("max_iter", max_iter, 1)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}; e.g. tol=1e-4")
    n_init = check_int("n_init", n_init, 1)
    batch_rows = check_int("batch_rows", batch_rows, 1)
    max_scores = check_int("max_scores", max_scores, 1)
    seed = check_int(
        "random_state", random_state, 0, "; e.g. random_state=0 (the GPU fit is always seeded)"
    )
    if n_threads is not None:
        n_threads = check_int("n_threads", n_threads, 1, "; or None for torch's default")
    dev = resolve_device(device)
    src = as_source(source, normalize=normalize)
    if k > src.n_rows:
        raise ValueError(
            f"k={k} exceeds the number of rows N={src.n_rows}; choose k <= {src.n_rows}"
        )
    if device_cache_bytes is None:
        device_cache_bytes = torch.cuda.mem_get_info(dev)[0] // 2 if dev.type == "cuda" else 0
    elif isinstance(device_cache_bytes, bool) or not isinstance(device_cache_bytes, int):
        raise TypeError(
            f"device_cache_bytes must be an integer or None, got {device_cache_bytes!r}"
        )

    with torch_threads(n_threads):
        initial = initial_centroids(src, k, init, n_init, init_samples, seed, dev)
        batches = DeviceBatches(src, dev, batch_rows, device_cache_bytes)
        centroids = torch.from_numpy(initial).to(dev)
        with torch.no_grad():
            if algorithm == "lloyd":
                state = run_lloyd(batches, centroids, max_iter, float(tol), max_scores)
            else:
                state = run_minibatch(batches, centroids, max_iter, max_scores, seed)
            centroids, inertia, counts, n_iter, converged, relocated = state
            if final_pass:
                inertia, counts = measure(batches, centroids, max_scores)
        return TorchKMeansResult(
            centroids=centroids.cpu().numpy().astype(np.float32, copy=False),
            inertia=float(inertia),
            n_iter=n_iter,
            converged=converged,
            counts=counts.cpu().numpy().astype(np.int64, copy=False),
            n_rows=int(src.n_rows),
            n_relocated=relocated,
            device=str(dev),
            algorithm=algorithm,
            seconds=time.perf_counter() - started,
        )
