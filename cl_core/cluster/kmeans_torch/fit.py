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
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core.cluster.sampling import sample_rows
from cl_core.sources import as_source
from cl_core.validation import check_choice, check_finite, check_int

if TYPE_CHECKING:
    import torch

ALGORITHMS = ("lloyd", "minibatch")
"""Update rules of :func:`fit_kmeans_torch`."""

DEFAULT_BATCH_ROWS = 65_536
"""Rows moved to the device per step (16 store chunks of 4096 rows; 96 MiB in fp32 at D=384)."""

DEFAULT_MAX_SCORES = 1 << 24
"""Rows x centroids distance scores per matmul (64 MiB fp32); bounds the device working set."""

DEFAULT_INIT_SAMPLES = 20_000
"""Rows of the seeded subsample for k-means++ (at least ``3 k``), as the CPU path's
:data:`cl_core.cluster.DEFAULT_SWEEP_SAMPLES`."""

_KEY_INIT_SAMPLE = 11
_KEY_INIT = 12
_KEY_ORDER = 13


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


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(
            f"random_state must be a non-negative integer, got {value!r}; e.g. random_state=0 "
            "(the GPU fit is always seeded)"
        )
    return int(value)


def resolve_device(device: Any = "auto") -> torch.device:
    """The torch device for ``device``: ``"auto"`` is CUDA when available, else CPU.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, "cuda:N" or torch.device

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        An unknown device name, or CUDA asked for but not available.
    """
    import torch

    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str) and device == "auto":
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from None
    else:
        raise TypeError(f"device must be a string or torch.device, got {device!r}")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: only 'cpu' and 'cuda' are supported")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA, but torch sees no CUDA device "
            f"(torch {torch.__version__}); use device='auto' or 'cpu'"
        )
    return resolved


def _derive_seed(entropy: int, *keys: int) -> int:
    sequence = np.random.SeedSequence(entropy, spawn_key=tuple(int(key) for key in keys))
    return int(sequence.generate_state(1)[0])


# --------------------------------------------------------------------------------------------
# Streaming batches
# --------------------------------------------------------------------------------------------


class _Batches:
    """Normalised rows of a :class:`cl_core.cluster.ChunkSource` as device batches.

    Batches are ``batch_rows`` consecutive rows (boundaries at multiples of ``batch_rows``,
    whatever the storage chunking). The first full pass checks every row is finite and, when
    the device is an accelerator and the rows fit ``cache_bytes``, keeps them on the device so
    later passes read no storage.
    """

    def __init__(self, src: Any, device: torch.device, batch_rows: int, cache_bytes: int):
        self.src = src
        self.device = device
        self.batch_rows = batch_rows
        self.n_batches = math.ceil(src.n_rows / batch_rows)
        need = 4 * src.n_rows * src.dim
        self.cache: list[torch.Tensor] | None = (
            [] if device.type != "cpu" and need <= cache_bytes else None
        )
        self.checked = False

    def _read(self, batch: int) -> np.ndarray:
        start = batch * self.batch_rows
        return self.src.read_range(start, min(start + self.batch_rows, self.src.n_rows))

    def _to_device(self, rows: np.ndarray) -> torch.Tensor:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def iterate(self, order: np.ndarray | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start_row, batch)`` in dataset order, or in block ``order``."""
        batches = range(self.n_batches) if order is None else order.tolist()
        if self.checked and self.cache is not None and len(self.cache) == self.n_batches:
            for batch in batches:
                yield batch * self.batch_rows, self.cache[batch]
            return
        first_full_pass = not self.checked and order is None
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cl-kmeans-read") as pool:
            positions = list(batches)
            pending = pool.submit(self._read, positions[0]) if positions else None
            for index, batch in enumerate(positions):
                assert pending is not None
                rows = pending.result()
                if index + 1 < len(positions):
                    pending = pool.submit(self._read, positions[index + 1])
                start = batch * self.batch_rows
                if not self.checked:
                    check_finite("features", rows, offset=start)
                tensor = self._to_device(rows)
                if first_full_pass and self.cache is not None:
                    self.cache.append(tensor)
                yield start, tensor
        if order is None or len(order) == self.n_batches:
            self.checked = True
        if self.cache is not None and len(self.cache) != self.n_batches:
            self.cache = None  # filled only by a dataset-order first pass


# --------------------------------------------------------------------------------------------
# Kernels (pure tensor functions; shapes in the docstrings)
# --------------------------------------------------------------------------------------------


def nearest_centroids(
    rows: torch.Tensor,
    centroids: torch.Tensor,
    centroid_sq: torch.Tensor | None = None,
    *,
    max_scores: int = DEFAULT_MAX_SCORES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row and the exact squared distance to it.

    Parameters
    ----------
    rows : Tensor of shape (B, D), float32
    centroids : Tensor of shape (k, D), float32, on the same device
    centroid_sq : Tensor of shape (k,), optional
        ``(centroids ** 2).sum(1)``, when the caller has it already.
    max_scores : int
        Largest number of ``rows x k`` scores computed by one matmul.

    Returns
    -------
    labels : Tensor of shape (B,), int64
        ``argmin_j ||x - c_j||^2`` from the fp32 expansion ``||c_j||^2 - 2 x.c_j``.
    sq_distances : Tensor of shape (B,), float32
        ``||x - c_label||^2`` computed from the difference (exact, >= 0).
    """
    import torch

    if centroid_sq is None:
        centroid_sq = (centroids * centroids).sum(dim=1)
    step = max(1, max_scores // centroids.shape[0])
    labels = torch.empty(rows.shape[0], dtype=torch.int64, device=rows.device)
    for start in range(0, rows.shape[0], step):
        part = rows[start : start + step]
        # ||c||^2 - 2 x.c  (||x||^2 is constant per row and cannot change the argmin)
        scores = torch.addmm(centroid_sq, part, centroids.T, beta=1.0, alpha=-2.0)
        labels[start : start + step] = scores.argmin(dim=1)
    difference = rows - centroids[labels]
    return labels, (difference * difference).sum(dim=1)


def cluster_sums(
    rows: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    *,
    onehot: bool | None = None,
    max_scores: int = DEFAULT_MAX_SCORES,
) -> torch.Tensor:
    """Per-cluster sums of the rows, float32 (k, D).

    Parameters
    ----------
    rows : Tensor of shape (B, D), float32
    labels : Tensor of shape (B,), int64 in [0, k)
    k : int
    onehot : bool, optional
        Sum with a one-hot matmul (deterministic on CUDA) instead of ``index_add_``
        (sequential on CPU, atomic on CUDA). Default: one-hot exactly on CUDA.
    max_scores : int
        Largest one-hot matrix (``k x rows`` entries) built at once.

    Returns
    -------
    Tensor of shape (k, D), float32
    """
    import torch

    if onehot is None:
        onehot = rows.device.type == "cuda"
    out = torch.zeros((k, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    if not onehot:
        return out.index_add_(0, labels, rows)
    step = max(1, max_scores // k)
    for start in range(0, rows.shape[0], step):
        part = labels[start : start + step]
        indicator = torch.zeros((k, part.shape[0]), dtype=rows.dtype, device=rows.device)
        indicator[part, torch.arange(part.shape[0], device=rows.device)] = 1.0
        out += indicator @ rows[start : start + step]
    return out


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def kmeans_plusplus_init(
    sample: np.ndarray, k: int, random_state: int = 0, *, n_init: int = 3, device: Any = "auto"
) -> np.ndarray:
    """Best of ``n_init`` seeded greedy k-means++ draws on an in-memory sample, in torch.

    The algorithm of scikit-learn's ``kmeans_plusplus`` (Arthur & Vassilvitskii with
    ``2 + log(k)`` local trials per centre, the trial that lowers the potential most wins),
    with fp32 matmul distances on ``device``. scikit-learn's own function upcasts float32 input
    chunk by chunk and took ~60 s per draw at 20 000 x 384, k = 200 on this project's CI
    machine; this port does the same work in ~1 s on one CPU core.

    Parameters
    ----------
    sample : ndarray of shape (n, D)
        Normalised rows, ``n >= k``.
    k : int
    random_state : int
        Seed; draw ``i`` uses a seed derived from ``(random_state, i)``. The random numbers
        come from numpy on the host, so a seed means the same draws on every device.
    n_init : int
        Draws; the one with the lowest inertia on ``sample`` is kept.
    device : {"auto", "cpu", "cuda"}, "cuda:N" or torch.device
        Where the distances are computed (see :func:`resolve_device`).

    Returns
    -------
    ndarray of shape (k, D), float32
    """
    import torch

    rows_np = np.ascontiguousarray(sample, dtype=np.float32)
    if rows_np.ndim != 2 or rows_np.shape[0] == 0:
        raise ValueError(f"sample must be a non-empty 2-D array (n, D), got {rows_np.shape}")
    k = check_int("k", k, 1)
    if k > rows_np.shape[0]:
        raise ValueError(f"k={k} exceeds the {rows_np.shape[0]} sample rows; use more rows")
    check_finite("sample", rows_np)
    dev = resolve_device(device)
    best: np.ndarray | None = None
    best_inertia = math.inf
    with torch.no_grad():
        rows = torch.from_numpy(rows_np).to(dev)
        sq_norms = (rows * rows).sum(dim=1)
        for draw in range(check_int("n_init", n_init, 1)):
            rng = np.random.default_rng(_derive_seed(random_state, _KEY_INIT, draw))
            centers = _kmeans_plusplus(rows, sq_norms, k, rng)
            inertia = float(nearest_centroids(rows, centers)[1].double().sum())
            if inertia < best_inertia:
                best, best_inertia = centers.cpu().numpy(), inertia
    assert best is not None
    return np.asarray(best, dtype=np.float32)


def _kmeans_plusplus(
    rows: torch.Tensor, sq_norms: torch.Tensor, k: int, rng: np.random.Generator
) -> torch.Tensor:
    """One greedy k-means++ draw: centres (k, D) on the rows' device."""
    import torch

    n = rows.shape[0]
    trials = 2 + int(math.log(k))
    centers = torch.empty((k, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    centers[0] = rows[int(rng.integers(n))]
    first_sq = (centers[0] * centers[0]).sum()
    closest = (sq_norms - 2.0 * (rows @ centers[0]) + first_sq).clamp_min_(0.0)
    potential = closest.double().sum()
    for index in range(1, k):
        targets = torch.from_numpy(rng.random(trials)).to(rows.device) * potential
        cumulative = closest.double().cumsum(dim=0)
        picks = torch.searchsorted(cumulative, targets).clamp_max_(n - 1)
        candidates = rows[picks]  # (trials, D)
        distances = torch.addmm(
            sq_norms[:, None] + (candidates * candidates).sum(dim=1)[None, :],
            rows,
            candidates.T,
            alpha=-2.0,
        ).clamp_min_(0.0)  # (n, trials)
        candidate_closest = torch.minimum(closest[:, None], distances)
        potentials = candidate_closest.double().sum(dim=0)
        winner = int(torch.argmin(potentials))
        closest = candidate_closest[:, winner].contiguous()
        potential = potentials[winner]
        centers[index] = candidates[winner]
    return centers


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------


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
        See the module notes.
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
        Keep the normalised rows on an accelerator after the first pass when they take at most
        this many bytes (default: half the device's free memory). Never used on CPU, where the
        rows are always streamed.
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
    seed = _check_seed(random_state)
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

    previous_threads = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        initial = _initial_centroids(src, k, init, n_init, init_samples, seed, dev)
        batches = _Batches(src, dev, batch_rows, device_cache_bytes)
        centroids = torch.from_numpy(initial).to(dev)
        with torch.no_grad():
            if algorithm == "lloyd":
                state = _lloyd(batches, centroids, max_iter, float(tol), max_scores)
            else:
                state = _minibatch(batches, centroids, max_iter, max_scores, seed)
            centroids, inertia, counts, n_iter, converged, relocated = state
            if final_pass:
                inertia, counts = _measure(batches, centroids, max_scores)
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
    finally:
        if n_threads is not None:
            torch.set_num_threads(previous_threads)


def _initial_centroids(
    src: Any,
    k: int,
    init: Any,
    n_init: int,
    init_samples: int | None,
    seed: int,
    device: torch.device,
) -> np.ndarray:
    if not (isinstance(init, str) and init == "k-means++"):
        if isinstance(init, str):
            raise ValueError(
                f"init={init!r} is not supported; use 'k-means++' or an array of shape "
                f"({k}, {src.dim})"
            )
        centers = np.ascontiguousarray(
            init.detach().cpu().numpy() if hasattr(init, "detach") else init, dtype=np.float32
        )
        if centers.shape != (k, src.dim):
            raise ValueError(f"init must have shape (k, D) = ({k}, {src.dim}), got {centers.shape}")
        check_finite("init", centers)
        return centers
    size = max(DEFAULT_INIT_SAMPLES, 3 * k) if init_samples is None else init_samples
    size = min(check_int("init_samples", size, 1), src.n_rows)
    if size < k:
        raise ValueError(
            f"init_samples={size} is smaller than k={k}; k-means++ needs at least k rows, "
            f"e.g. init_samples={3 * k}"
        )
    sample = sample_rows(src, size, _derive_seed(seed, _KEY_INIT_SAMPLE))
    check_finite("features", sample)
    distinct = _count_distinct(sample, k)
    if distinct < k:
        raise ValueError(
            f"k={k} clusters asked for, but the {size}-row init sample has only {distinct} "
            f"distinct rows; choose k <= {distinct} or remove duplicated samples"
        )
    return kmeans_plusplus_init(
        sample, k, _derive_seed(seed, _KEY_INIT), n_init=n_init, device=device
    )


def _count_distinct(rows: np.ndarray, enough: int) -> int:
    """Distinct rows (any count >= ``enough`` may stand for a larger one)."""
    direction = np.random.default_rng(0).standard_normal(size=rows.shape[1], dtype=np.float32)
    lower_bound = int(np.unique(rows @ direction).shape[0])  # different projections: different rows
    if lower_bound >= enough:
        return lower_bound
    return int(np.unique(rows, axis=0).shape[0])


def _lloyd(
    batches: _Batches, centroids: torch.Tensor, max_iter: int, tol: float, max_scores: int
) -> tuple[torch.Tensor, float, torch.Tensor, int, bool, int]:
    import torch

    k, dim = centroids.shape
    dev = centroids.device
    threshold: float | None = None
    inertia = math.inf
    counts = torch.zeros(k, dtype=torch.int64, device=dev)
    relocated = 0
    converged = False
    n_iter = 0
    far_keep = min(k, batches.src.n_rows)
    for _ in range(max_iter):
        n_iter += 1
        centroid_sq = (centroids * centroids).sum(dim=1)
        sums = torch.zeros((k, dim), dtype=torch.float64, device=dev)
        counts = torch.zeros(k, dtype=torch.int64, device=dev)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        moments = None
        if threshold is None:  # first pass: the data's per-dimension variance for tol
            moments = [
                torch.zeros(dim, dtype=torch.float64, device=dev),
                torch.zeros(dim, dtype=torch.float64, device=dev),
            ]
        far_sq = torch.empty(0, dtype=torch.float32, device=dev)
        far_rows = torch.empty((0, dim), dtype=torch.float32, device=dev)
        for _, rows in batches.iterate():
            labels, sq = nearest_centroids(rows, centroids, centroid_sq, max_scores=max_scores)
            sums += cluster_sums(rows, labels, k, max_scores=max_scores).double()
            counts += torch.bincount(labels, minlength=k)
            total += sq.double().sum()
            if moments is not None:
                moments[0] += rows.double().sum(dim=0)
                moments[1] += (rows.double() ** 2).sum(dim=0)
            # Keep the far_keep rows farthest from their centre (candidates for empty clusters).
            top = torch.topk(sq, min(far_keep, sq.shape[0]), sorted=False).indices
            pool_sq = torch.cat([far_sq, sq[top]])
            pool_rows = torch.cat([far_rows, rows[top]])
            keep = torch.topk(pool_sq, min(far_keep, pool_sq.shape[0]), sorted=True).indices
            far_sq, far_rows = pool_sq[keep], pool_rows[keep]
        inertia = float(total)
        if moments is not None:
            n = batches.src.n_rows
            mean = moments[0] / n
            variance = (moments[1] / n - mean * mean).clamp_min(0.0)
            threshold = tol * float(variance.mean())
        empty = torch.nonzero(counts == 0).flatten()
        new = torch.where(
            counts[:, None] > 0, sums / counts.clamp_min(1)[:, None].double(), centroids.double()
        ).float()
        if empty.numel():
            n_move = min(int(empty.numel()), far_rows.shape[0])
            new[empty[:n_move]] = far_rows[:n_move]
            relocated += n_move
        shift = float(((new - centroids) ** 2).sum())
        centroids = new
        assert threshold is not None
        if shift <= threshold and not empty.numel():
            converged = True
            break
    return centroids, inertia, counts, n_iter, converged, relocated


def _minibatch(
    batches: _Batches, centroids: torch.Tensor, max_iter: int, max_scores: int, seed: int
) -> tuple[torch.Tensor, float, torch.Tensor, int, bool, int]:
    import torch

    k = centroids.shape[0]
    dev = centroids.device
    seen = torch.zeros(k, dtype=torch.float64, device=dev)
    work = centroids.double()
    inertia = math.inf
    counts = torch.zeros(k, dtype=torch.int64, device=dev)
    for epoch in range(max_iter):
        order: np.ndarray | None = np.random.default_rng(
            _derive_seed(seed, _KEY_ORDER, epoch)
        ).permutation(batches.n_batches)
        if epoch == 0 and not batches.checked:
            order = None  # the first pass runs in dataset order: it checks rows, fills the cache
        total = torch.zeros((), dtype=torch.float64, device=dev)
        counts = torch.zeros(k, dtype=torch.int64, device=dev)
        for _, rows in batches.iterate(order):
            current = work.float()
            labels, sq = nearest_centroids(rows, current, max_scores=max_scores)
            batch_counts = torch.bincount(labels, minlength=k)
            sums = cluster_sums(rows, labels, k, max_scores=max_scores).double()
            hit = batch_counts > 0
            updated = (work * seen[:, None] + sums) / (seen + batch_counts)[:, None].clamp_min(1)
            work = torch.where(hit[:, None], updated, work)
            seen += batch_counts
            counts += batch_counts
            total += sq.double().sum()
        inertia = float(total)
    return work.float(), inertia, counts, max_iter, False, 0


def _measure(
    batches: _Batches, centroids: torch.Tensor, max_scores: int
) -> tuple[float, torch.Tensor]:
    import torch

    k = centroids.shape[0]
    centroid_sq = (centroids * centroids).sum(dim=1)
    total = torch.zeros((), dtype=torch.float64, device=centroids.device)
    counts = torch.zeros(k, dtype=torch.int64, device=centroids.device)
    for _, rows in batches.iterate():
        labels, sq = nearest_centroids(rows, centroids, centroid_sq, max_scores=max_scores)
        counts += torch.bincount(labels, minlength=k)
        total += sq.double().sum()
    return float(total), counts


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
