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
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core._validation import check_choice, check_finite

if TYPE_CHECKING:
    from cl_core.store import EmbeddingStore

NORMALIZATIONS = ("standard", "l2", "none")
"""Row normalisations (same names and maths as :data:`cl_core.store.NORMALIZATIONS`)."""

SCHEDULERS = ("threads", "processes", "synchronous")
"""Local Dask schedulers for the k sweep (a ``dask.distributed.Client`` overrides them)."""

CHOSEN_BY = ("explicit", "davies_bouldin", "per_class")

EXECUTION_FIELDS = ("scheduler", "n_workers", "n_threads")
""":class:`ClusterConfig` fields that change where the sweep runs, never its results."""

DEFAULT_SWEEP_SAMPLES = 20_000
"""Rows of the subsample on which every k of the sweep is fitted and scored (and the final fit
is initialised). 20 000 x 384 float32 is 30 MiB; the Davies-Bouldin index of well-separated
structure is stable at that size, and each sweep job takes well under a second."""

DEFAULT_BATCH_SIZE = 4096
"""Rows per streamed ``partial_fit`` mini-batch (= the store's default chunk, so a block is one
chunk read)."""

DEFAULT_SWEEP_BATCH_SIZE = 1024
"""``MiniBatchKMeans`` batch size inside each sweep job (scikit-learn's default)."""

DEFAULT_CHUNK_ROWS = 4096
"""Rows per chunk when an in-memory array is streamed (:class:`ArraySource`)."""

_STATS_BLOCK_ROWS = 16_384  # fixed, so array statistics do not depend on chunk_rows
_ASSIGN_MAX_SCORES = 1 << 22  # rows x centroids scores per GEMM in assign (16 MiB float32)

# Keys that separate the random streams of the different uses of one random_state.
_KEY_SAMPLE = 1
_KEY_SWEEP = 2
_KEY_INIT = 3
_KEY_STREAM = 4
_KEY_ORDER = 5
_KEY_FIT_SAMPLE = 6
_KEY_CLASS = 7


class ClusterWarning(UserWarning):
    """A clustering request was adjusted (k capped, tiny class merged into one cluster...)."""


# --------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}{hint}")
    return int(value)


def _check_random_state(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(
            f"random_state must be a non-negative integer or None, got {value!r}; "
            "e.g. random_state=0 for reproducible clusters"
        )
    return int(value)


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of the clustering stage.

    Parameters
    ----------
    n_clusters : int or None
        Explicit number of clusters (per class when ``use_labels``); always honoured. ``None``
        chooses k by the Davies-Bouldin index over ``cluster_range``.
    cluster_range : (int, int)
        Inclusive ``(low, high)`` candidates for the automatic choice; ``low >= 2`` because the
        Davies-Bouldin index needs two clusters.
    use_labels : bool
        Cluster within each class (supervised mode) instead of over all rows.
    sweep_samples : int
        Size of the seeded subsample used by the sweep and for the initial centres
        (default :data:`DEFAULT_SWEEP_SAMPLES`; per class in supervised mode).
    max_fit_samples : int or None
        If set and N is larger, the streamed refinement runs on a subsample of this many rows
        instead of on all rows (faster, slightly less precise centroids).
    batch_size : int
        Rows per ``MiniBatchKMeans.partial_fit`` step of the streamed refinement.
    normalize : {"standard", "l2", "none"}
        Row normalisation applied while reading (see the module notes).
    random_state : int or None
        Seed of every random choice; ``None`` draws fresh entropy (not reproducible).
    n_init : int
        k-means++ restarts for the initial centres; the lowest-inertia run is kept.
    n_epochs : int
        Passes of the streamed refinement over the data.
    sweep_batch_size : int
        ``MiniBatchKMeans`` batch size inside each sweep job.
    sweep_n_init : int
        k-means++ restarts inside each sweep job.
    scheduler : {"threads", "processes", "synchronous"}
        Local Dask scheduler of the sweep when no client is given.
    n_workers : int or None
        Parallel sweep jobs for the local scheduler (default: one per core).
    n_threads : int or None
        OpenMP/BLAS threads of the final fit and the assignment; ``None`` leaves the libraries'
        default (all cores). The default 1 is deliberate: each step is small (one mini-batch or
        one chunk), the chunk reader works in a second thread next to it, and multi-threaded
        OpenMP/BLAS regions stall badly when the cores are shared (measured on 2 cores: 5-10x
        slower under load). Raise it for very large k. Sweep jobs always run single-threaded,
        side by side.
    """

    n_clusters: int | None = None
    cluster_range: tuple[int, int] = (2, 20)
    use_labels: bool = False
    sweep_samples: int = DEFAULT_SWEEP_SAMPLES
    max_fit_samples: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    normalize: str = "standard"
    random_state: int | None = 0
    n_init: int = 3
    n_epochs: int = 1
    sweep_batch_size: int = DEFAULT_SWEEP_BATCH_SIZE
    sweep_n_init: int = 3
    scheduler: str = "threads"
    n_workers: int | None = None
    n_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.n_clusters is not None:
            _check_int(
                "n_clusters", self.n_clusters, 1, "; use None to choose k over cluster_range"
            )
        object.__setattr__(self, "cluster_range", _check_cluster_range(self.cluster_range))
        if not isinstance(self.use_labels, (bool, np.bool_)):
            raise TypeError(f"use_labels must be True or False, got {self.use_labels!r}")
        _check_int("sweep_samples", self.sweep_samples, 3, " (the sweep needs k + 1 rows)")
        if self.max_fit_samples is not None:
            _check_int("max_fit_samples", self.max_fit_samples, 1, "; or None to stream all rows")
        _check_int("batch_size", self.batch_size, 1)
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_random_state(self.random_state)
        _check_int("n_init", self.n_init, 1)
        _check_int("n_epochs", self.n_epochs, 1)
        _check_int("sweep_batch_size", self.sweep_batch_size, 1)
        _check_int("sweep_n_init", self.sweep_n_init, 1)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if self.n_workers is not None:
            _check_int("n_workers", self.n_workers, 1, "; or None for one per core")
        if self.n_threads is not None:
            _check_int("n_threads", self.n_threads, 1, "; or None for the library default")

    def to_dict(self, *, execution: bool = True) -> dict[str, Any]:
        """JSON-ready dict of the fields (``cluster_range`` as a list).

        With ``execution=False`` the fields that only say *how* to run (:data:`EXECUTION_FIELDS`)
        are left out: results do not depend on them, so cache keys should not either.
        """
        values = asdict(self)
        values["cluster_range"] = list(self.cluster_range)
        if not execution:
            for name in EXECUTION_FIELDS:
                values.pop(name)
        return values


def _check_cluster_range(value: object) -> tuple[int, int]:
    hint = "; give (low, high) with 2 <= low <= high, e.g. (2, 20)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"cluster_range must be a pair (low, high), got {value!r}{hint}")
    low, high = (_check_int("cluster_range", bound, 1, hint) for bound in value)
    if low < 2:
        raise ValueError(
            f"cluster_range={tuple(value)!r} starts below 2; the Davies-Bouldin index needs at "
            f"least 2 clusters{hint}"
        )
    if low > high:
        raise ValueError(f"cluster_range={tuple(value)!r} is inverted (low > high){hint}")
    return (low, high)


@dataclass(frozen=True)
class SweepPoint:
    """Scores of one candidate k, measured on the sweep subsample.

    Attributes
    ----------
    k : int
        Number of clusters.
    davies_bouldin : float
        Davies-Bouldin index (lower is better) of the fitted clustering of the subsample.
    inertia : float
        Sum of squared distances of the subsample rows to their centroid (divide by
        ``n_samples`` to compare subsamples of different sizes: :attr:`mean_inertia`).
    seconds : float
        Wall time of the job (fit + score).
    n_samples : int
        Rows of the subsample.
    class_label : int, str or None
        The class whose rows were clustered (supervised mode), else None.
    """

    k: int
    davies_bouldin: float
    inertia: float
    seconds: float
    n_samples: int = 0
    class_label: Any = None

    @property
    def mean_inertia(self) -> float:
        """Inertia per subsample row (comparable across subsample sizes)."""
        return self.inertia / self.n_samples if self.n_samples else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (numpy scalars converted)."""
        values = asdict(self)
        if isinstance(self.class_label, np.generic):
            values["class_label"] = self.class_label.item()
        values["mean_inertia"] = self.mean_inertia
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
        for array in (self.centroids, self.assignment, self.distances, self.cluster_class):
            if array is not None:
                array.flags.writeable = False

    @property
    def n_rows(self) -> int:
        """N, the number of assigned rows."""
        return int(self.assignment.shape[0])

    def cluster_sizes(self) -> np.ndarray:
        """Rows per cluster, int64 (k,)."""
        return np.bincount(self.assignment, minlength=self.n_clusters)

    def sweep_records(self) -> list[dict[str, Any]]:
        """The sweep as JSON-ready dicts (for ``sweep.json`` and report tables)."""
        return [point.to_dict() for point in self.sweep]


# --------------------------------------------------------------------------------------------
# Chunk sources: one interface over stores and arrays
# --------------------------------------------------------------------------------------------


class ChunkSource:
    """Normalised float32 rows of a data set, read by chunk, range or index.

    Subclasses set ``n_rows``, ``dim``, ``chunk_rows`` and ``normalize`` and implement
    :meth:`read_range`, :meth:`read_rows` and :meth:`labels`.
    """

    n_rows: int
    dim: int
    chunk_rows: int
    normalize: str

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)``, float32 (stop - start, D), normalised."""
        raise NotImplementedError

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Rows at ``indices`` (ascending is fastest), float32 (len(indices), D), normalised."""
        raise NotImplementedError

    def labels(self) -> np.ndarray | None:
        """Per-row labels stored with the data, or None."""
        return None

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, rows)`` blocks of ``chunk_rows`` rows in dataset order."""
        for start in range(0, self.n_rows, self.chunk_rows):
            yield start, self.read_range(start, min(start + self.chunk_rows, self.n_rows))

    def __len__(self) -> int:
        return self.n_rows


class ArraySource(ChunkSource):
    """An in-memory or memory-mapped (N, D) array read as normalised float32 chunks.

    The array is referenced, never copied whole. With ``normalize="standard"`` the per-dimension
    mean/std are streamed once in float64 over fixed blocks of rows (so they, and therefore
    every result, do not depend on ``chunk_rows``); that pass also rejects NaN/inf rows.

    Parameters
    ----------
    features : array-like of shape (N, D)
        Real-valued, finite features: a numpy array or memmap, a torch tensor, a list, or a
        lazily sliced array (an object with ``shape``, ``dtype`` and numpy-style slicing and
        integer-array row indexing, e.g. an h5py dataset), which is read block by block.
    normalize : {"standard", "l2", "none"}
    chunk_rows : int
        Rows per chunk of :meth:`iter_chunks`.
    labels : array-like of shape (N,), optional
        Per-row class labels returned by :meth:`labels`.
    """

    def __init__(
        self,
        features: Any,
        *,
        normalize: str = "standard",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        labels: Any = None,
    ) -> None:
        values = _lazy_array(features)
        if np.dtype(values.dtype).kind not in "fiu":
            raise TypeError(
                f"features must be real numbers, got dtype {values.dtype}; convert with "
                "np.asarray(x, dtype=np.float32)"
            )
        shape = tuple(int(size) for size in values.shape)
        if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
            raise ValueError(
                f"features must be a non-empty 2-D array (N, D), got shape {shape}; an "
                "empty dataset cannot be clustered"
            )
        self._values = values
        self.n_rows, self.dim = (int(s) for s in values.shape)
        self.chunk_rows = _check_int("chunk_rows", chunk_rows, 1)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)
        self._labels = None if labels is None else _as_label_array(labels, self.n_rows)
        self._mean, self._std = self._scan_statistics()

    def _scan_statistics(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Check every row is finite; return float64 mean/std when normalising ``standard``."""
        count = 0
        mean = np.zeros(self.dim)
        m2 = np.zeros(self.dim)
        for start in range(0, self.n_rows, _STATS_BLOCK_ROWS):
            block = np.asarray(self._values[start : start + _STATS_BLOCK_ROWS])
            check_finite("features", block, offset=start)
            if self.normalize != "standard":
                continue
            rows = block.astype(np.float64)
            block_mean = rows.mean(axis=0)
            block_m2 = np.square(rows - block_mean).sum(axis=0)
            # Chan et al.'s parallel merge: stable for large offsets, unlike sum of squares.
            total = count + rows.shape[0]
            delta = block_mean - mean
            mean = mean + delta * (rows.shape[0] / total)
            m2 = m2 + block_m2 + np.square(delta) * (count * rows.shape[0] / total)
            count = total
        if self.normalize != "standard":
            return None, None
        return mean, np.sqrt(m2 / count)

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        from cl_core.store import normalize_block

        return normalize_block(raw, self.normalize, self._mean, self._std)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self._normalized(np.asarray(self._values[start:stop]))

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        wanted = _check_indices(indices, self.n_rows)
        return self._normalized(np.asarray(self._values[wanted.astype(np.intp)]))

    def labels(self) -> np.ndarray | None:
        return self._labels


class StoreSource(ChunkSource):
    """A finalized :class:`cl_core.store.EmbeddingStore` read with a fixed normalisation."""

    def __init__(self, store: EmbeddingStore, *, normalize: str = "standard") -> None:
        self.store = store
        self.n_rows = int(store.n_rows)
        self.dim = int(store.dim)
        self.chunk_rows = int(store.chunk_rows)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        # One block: chunk_rows=n_rows puts no block edge inside [start, stop).
        blocks = [
            block
            for _, block in self.store.iter_chunks(
                self.normalize, rows=(start, stop), chunk_rows=self.n_rows, prefetch=False
            )
        ]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Gather rows chunk by chunk into one preallocated array, then normalise them.

        A uniform sample touches nearly every chunk, so this is one streamed pass whose
        temporaries are a chunk or two, instead of whole-selection copies; and only the gathered
        rows are normalised (the normalisation is row-wise, so the values are the same).
        """
        wanted = _check_indices(indices, self.n_rows)
        if wanted.shape[0] > 1 and np.any(wanted[1:] < wanted[:-1]):
            order = np.argsort(wanted, kind="stable")
            rows = np.empty((wanted.shape[0], self.dim), dtype=np.float32)
            rows[order] = self.read_rows(wanted[order])
            return rows
        out = np.empty((wanted.shape[0], self.dim), dtype=np.float32)
        if wanted.shape[0] == 0:
            return out
        chunk_of = wanted // self.chunk_rows
        hit_chunks, first = np.unique(chunk_of, return_index=True)
        bounds = [*first.tolist(), wanted.shape[0]]
        if 2 * hit_chunks.shape[0] > math.ceil(self.n_rows / self.chunk_rows):
            blocks: Iterator[tuple[int, np.ndarray]] = self.store.iter_chunks("none")  # prefetched
        else:
            blocks = self._read_chunks(hit_chunks)
        position = 0
        for start, block in blocks:
            if position == hit_chunks.shape[0]:
                break
            if start // self.chunk_rows != hit_chunks[position]:
                continue
            lo, hi = bounds[position], bounds[position + 1]
            out[lo:hi] = block[wanted[lo:hi] - start]
            position += 1
        return self._normalized(out)

    def _read_chunks(self, chunks: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for chunk in chunks.tolist():
            start = chunk * self.chunk_rows
            stop = min(start + self.chunk_rows, self.n_rows)
            yield from self.store.iter_chunks("none", rows=(start, stop), prefetch=False)

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        from cl_core.store import normalize_block

        if self.normalize == "standard" and self.store.feature_mean is None:
            raise ValueError(
                f"normalize='standard' needs the dataset mean/std of the store {self.store!r}, "
                "which is not finalized; call store.finalize() after writing every shard, or "
                "use normalize='l2' or 'none'"
            )
        return normalize_block(raw, self.normalize, self.store.feature_mean, self.store.feature_std)

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.store.iter_chunks(self.normalize)  # prefetches the next chunk

    def labels(self) -> np.ndarray | None:
        return self.store.labels()


def _check_indices(indices: Any, n_rows: int) -> np.ndarray:
    wanted = np.asarray(indices)
    if wanted.ndim != 1 or (wanted.size and wanted.dtype.kind not in "iu"):
        raise TypeError(
            f"indices must be a 1-D array of integers, got shape {wanted.shape} dtype {wanted.dtype}"
        )
    wanted = wanted.astype(np.int64, copy=False)
    bad = np.flatnonzero((wanted < 0) | (wanted >= n_rows))
    if bad.size:
        raise ValueError(
            f"indices must lie in [0, {n_rows}); indices[{int(bad[0])}] = {int(wanted[bad[0]])} "
            f"({bad.size} out of range)"
        )
    return wanted


def _lazy_array(values: Any) -> Any:
    """Keep sliceable array-likes (memmap, h5py...) as they are; convert everything else."""
    if hasattr(values, "detach"):  # torch tensor
        return _to_numpy(values)
    if all(hasattr(values, name) for name in ("shape", "dtype", "__getitem__")):
        try:
            np.dtype(values.dtype)
        except TypeError:
            return _to_numpy(values)
        return values
    return _to_numpy(values)


def _to_numpy(values: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors via ``.numpy()`` without importing torch."""
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        return np.asarray(values.detach().cpu().numpy())
    return np.asarray(values)


def as_source(x: Any, *, normalize: str = "standard", chunk_rows: int | None = None) -> ChunkSource:
    """Wrap an embedding store, a store path or an array as a :class:`ChunkSource`.

    Parameters
    ----------
    x : ChunkSource, EmbeddingStore, str, os.PathLike or array-like of shape (N, D)
        A :class:`ChunkSource` is returned unchanged (it keeps its own normalisation); a store
        (or the path of one) is read through its ``iter_chunks``/``read_rows``; an array is
        wrapped by :class:`ArraySource` (one validation/statistics pass).
    normalize : {"standard", "l2", "none"}
        Normalisation applied while reading.
    chunk_rows : int, optional
        Chunk size for arrays (default :data:`DEFAULT_CHUNK_ROWS`); stores use their own.

    Returns
    -------
    ChunkSource
    """
    if isinstance(x, ChunkSource):
        return x
    check_choice("normalize", normalize, NORMALIZATIONS)
    if isinstance(x, (str, os.PathLike)):
        from cl_core.store import open_store

        x = open_store(x, read_only=True)
    if _is_store(x):
        return StoreSource(x, normalize=normalize)
    return ArraySource(
        x, normalize=normalize, chunk_rows=DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
    )


def _is_store(x: Any) -> bool:
    return all(hasattr(x, name) for name in ("iter_chunks", "read_rows", "n_rows", "chunk_rows"))


# --------------------------------------------------------------------------------------------
# Seeds, sampling, validation helpers
# --------------------------------------------------------------------------------------------


def _entropy(random_state: int | None) -> int:
    """The root entropy: ``random_state`` itself, or fresh entropy for ``None``."""
    checked = _check_random_state(random_state)
    return int(np.random.SeedSequence().entropy) if checked is None else checked  # type: ignore[arg-type]


def _derive_seed(entropy: int, *keys: int) -> int:
    """A 32-bit seed for one use (keys), independent of every other use of ``entropy``."""
    sequence = np.random.SeedSequence(entropy, spawn_key=tuple(int(key) for key in keys))
    return int(sequence.generate_state(1)[0])


def sample_rows(source: Any, n: int, random_state: int | None = 0) -> np.ndarray:
    """Draw ``n`` distinct rows uniformly at random (all rows when ``n >= N``).

    Parameters
    ----------
    source : ChunkSource, EmbeddingStore, path or array-like of shape (N, D)
        Anything :func:`as_source` accepts (arrays/stores are read with ``standard``
        normalisation; wrap them with :func:`as_source` to choose another).
    n : int
        Rows wanted (>= 1).
    random_state : int or None
        Seed of the row choice.

    Returns
    -------
    ndarray of shape (min(n, N), D), float32
        Normalised rows in ascending dataset order.
    """
    src = as_source(source)
    n = _check_int("n", n, 1)
    if n >= src.n_rows:
        return _read_all(src)
    rng = np.random.default_rng(_entropy(random_state))
    indices = np.sort(rng.choice(src.n_rows, size=n, replace=False))
    return np.ascontiguousarray(src.read_rows(indices), dtype=np.float32)


def _read_all(src: ChunkSource) -> np.ndarray:
    out = np.empty((src.n_rows, src.dim), dtype=np.float32)
    for start, block in src.iter_chunks():
        out[start : start + block.shape[0]] = block
    return out


def _check_sample(sample: Any) -> np.ndarray:
    values = np.ascontiguousarray(_to_numpy(sample), dtype=np.float32)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"sample must be a non-empty 2-D array (n, D), got shape {values.shape}")
    check_finite("sample", values)
    return values


def _count_distinct_rows(rows: np.ndarray, enough: int | None = None) -> int:
    """Number of distinct rows; with ``enough``, any count >= it may be returned instead.

    Rows with different projections on a fixed random direction are certainly different, so the
    number of distinct projections is a cheap lower bound; the exact (sorting) count is only
    needed when that bound falls short of ``enough``.
    """
    if rows.shape[0] <= 1 or not np.ptp(rows, axis=0).any():
        return min(rows.shape[0], 1)
    if enough is not None:
        direction = np.random.default_rng(0).standard_normal(size=rows.shape[1], dtype=np.float32)
        lower_bound = int(np.unique(rows.astype(np.float32, copy=False) @ direction).shape[0])
        if lower_bound >= enough:
            return lower_bound
    return int(np.unique(rows, axis=0).shape[0])


def _constant_features_error(n_sample: int, n_rows: int) -> ValueError:
    where = "all" if n_sample >= n_rows else f"a random sample of {n_sample} of the {n_rows}"
    return ValueError(
        f"features are constant: {where} rows are identical after normalisation, so there is no "
        "structure to cluster (the Davies-Bouldin index would be undefined). Check the embedding "
        "stage (a frozen or collapsed model, a wrong layer, or an all-zero input)"
    )


def _as_label_array(labels: Any, n_rows: int) -> np.ndarray:
    """Labels (list, ndarray or torch tensor) as a 1-D numpy array of length ``n_rows``."""
    values = _to_numpy(labels)
    if values.ndim != 1:
        raise ValueError(
            f"labels must be 1-D (one class per row), got shape {values.shape}; flatten it "
            "or pass class ids, not one-hot vectors"
        )
    if values.shape[0] != n_rows:
        raise ValueError(
            f"labels has length {values.shape[0]} but the features have {n_rows} rows; pass "
            "exactly one label per row, in dataset order"
        )
    if values.dtype.kind not in "biuUS":
        if (
            values.dtype.kind == "f"
            and np.isfinite(values).all()
            and (values == np.round(values)).all()
        ):
            return values.astype(np.int64)
        raise TypeError(
            f"labels must be integer class ids or strings, got dtype {values.dtype}; map them "
            "with np.unique(labels, return_inverse=True)[1]"
        )
    return values


# --------------------------------------------------------------------------------------------
# The k sweep
# --------------------------------------------------------------------------------------------


def _load_native_libraries() -> None:
    """Import scikit-learn's compiled parts before any thread limit is set.

    threadpoolctl only limits the libraries loaded when the limit is created, and
    scikit-learn's k-means kernels call scipy's own OpenBLAS (a second BLAS next to numpy's)
    and libgomp: a limit set before they load would silently miss them.
    """
    import sklearn.cluster
    import sklearn.metrics  # noqa: F401


def _openmp_limit(n_threads: int | None) -> AbstractContextManager[Any]:
    if n_threads is None:
        return nullcontext()
    _load_native_libraries()
    from threadpoolctl import threadpool_limits

    # OpenMP thread counts are per calling thread, so this is safe inside a thread pool.
    return threadpool_limits(limits=n_threads, user_api="openmp")


def evaluate_k(
    sample: np.ndarray,
    k: int,
    random_state: int | None = 0,
    batch_size: int = DEFAULT_SWEEP_BATCH_SIZE,
    *,
    n_init: int = 3,
    n_threads: int | None = 1,
    class_label: Any = None,
) -> SweepPoint:
    """Fit k clusters on ``sample`` and score them: one independent job of the sweep.

    A pure function of picklable arguments (the Prefect flow maps it as a Dask task). The
    ``MiniBatchKMeans`` seed is derived from ``(random_state, k)``, so a job's result does not
    depend on which other jobs run or where.

    Parameters
    ----------
    sample : ndarray of shape (n, D)
        Normalised rows (see :func:`sample_rows`).
    k : int
        Clusters, ``2 <= k <= n - 1`` (the range where Davies-Bouldin is defined).
    random_state : int or None
        Sweep seed (the same for every k of one sweep).
    batch_size : int
        ``MiniBatchKMeans`` batch size; k-means++ seeds on ``max(batch_size, 3k)`` rows.
    n_init : int
        k-means++ restarts; the one with the lowest inertia on the seeding rows is kept.
    n_threads : int or None
        OpenMP threads of the job (1 keeps parallel jobs from oversubscribing cores and makes
        the result independent of the core count); None leaves scikit-learn's default.
    class_label : optional
        Recorded in the returned point (supervised mode).

    Returns
    -------
    SweepPoint

    Notes
    -----
    To run several jobs as threads of one process (as :func:`sweep_k` does), hold
    ``threadpoolctl.threadpool_limits(1, user_api="blas")`` around them: scikit-learn switches
    BLAS to one thread around each fit through a process-wide setting, and concurrent fits
    restore it out of order, leaving BLAS threads to fight over the cores.
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import davies_bouldin_score

    values = _check_sample(sample)
    n = values.shape[0]
    k = _check_k_for_index(k, n)
    seed = _derive_seed(_entropy(random_state), _KEY_SWEEP, k)
    started = time.perf_counter()
    with _openmp_limit(n_threads), warnings.catch_warnings():
        # Duplicate points can leave a cluster empty; the index is still well defined then.
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        batch = min(_check_int("batch_size", batch_size, 1), n)
        model = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++",
            n_init=_check_int("n_init", n_init, 1),
            batch_size=batch,
            # k-means++ and the choice among restarts on one batch of rows (>= 3k), not
            # scikit-learn's 3 batches: a third of the job's seeding cost, same chosen k.
            init_size=min(n, max(batch, 3 * k)),
            random_state=seed,
        ).fit(values)
        if np.unique(model.labels_).size < 2:
            raise ValueError(
                f"sample has fewer than 2 distinct rows, so k={k} clusters cannot be scored; "
                "the features are (nearly) constant - check the embedding stage"
            )
        index = float(davies_bouldin_score(values, model.labels_))
    return SweepPoint(
        k=k,
        davies_bouldin=index,
        inertia=float(model.inertia_),
        seconds=time.perf_counter() - started,
        n_samples=n,
        class_label=class_label,
    )


def _check_k_for_index(k: object, n: int) -> int:
    k = _check_int("k", k, 2, " (the Davies-Bouldin index needs at least 2 clusters)")
    if k > n - 1:
        raise ValueError(
            f"k={k} is too large for a sample of {n} rows: the Davies-Bouldin index needs "
            f"k <= n - 1 = {n - 1}; lower the range or use more sweep_samples"
        )
    return k


def sweep_k(
    sample: np.ndarray,
    ks: Sequence[int],
    random_state: int | None = 0,
    *,
    client: Any = None,
    scheduler: str = "threads",
    n_workers: int | None = None,
    batch_size: int = DEFAULT_SWEEP_BATCH_SIZE,
    n_init: int = 3,
    class_label: Any = None,
) -> tuple[SweepPoint, ...]:
    """Run :func:`evaluate_k` for every k in parallel on Dask.

    Parameters
    ----------
    sample : ndarray of shape (n, D)
        Normalised rows shared by every job.
    ks : sequence of int
        Distinct candidates, each in ``[2, n - 1]``.
    random_state : int or None
        Sweep seed; each k's job derives its own seed from it.
    client : dask.distributed.Client, optional
        Run on this (possibly remote) cluster: the sample is scattered once and the jobs are
        submitted as futures. Without one, the local Dask ``scheduler`` is used.
    scheduler : {"threads", "processes", "synchronous"}
        Local scheduler (threads suit scikit-learn, which releases the GIL in its kernels).
    n_workers : int, optional
        Parallel jobs for the local scheduler (default: one per core).
    batch_size, n_init
        Passed to :func:`evaluate_k`.
    class_label : optional
        Recorded in every point (supervised mode).

    Returns
    -------
    tuple of SweepPoint
        In the order of ``ks``. Every job runs single-threaded, so the results are the same on
        every backend.
    """
    values = _check_sample(sample)
    candidates = [_check_k_for_index(k, values.shape[0]) for k in ks]
    if not candidates:
        raise ValueError("ks is empty; give at least one k to evaluate, e.g. range(2, 21)")
    if len(set(candidates)) != len(candidates):
        raise ValueError(f"ks has repeated values {list(ks)!r}; give each k once")
    check_choice("scheduler", scheduler, SCHEDULERS)
    entropy = _entropy(random_state)  # fixed before dispatch, so every job shares it
    options = {"n_init": n_init, "n_threads": 1, "class_label": class_label}
    if client is not None:
        shared = client.scatter(values, broadcast=True)
        futures = [
            client.submit(evaluate_k, shared, k, entropy, batch_size, **options) for k in candidates
        ]
        return tuple(client.gather(futures))
    _load_native_libraries()
    from threadpoolctl import threadpool_limits

    # Jobs run single-threaded: parallelism comes from running k's side by side, and one BLAS
    # thread per job avoids oversubscribing the cores. BLAS limits are process-wide, and
    # scikit-learn switches them around each fit, which concurrent fits can restore out of
    # order; this outer limit puts the caller's setting back once every job is done.
    with threadpool_limits(limits=1, user_api="blas"):
        if scheduler == "synchronous" or len(candidates) == 1:
            return tuple(evaluate_k(values, k, entropy, batch_size, **options) for k in candidates)
        import dask

        # Named nodes: dask would otherwise hash the whole sample once per job to build keys.
        token = f"{id(values):x}-{entropy:x}"
        shared = dask.delayed(values, name=f"cl-sweep-sample-{token}")
        jobs = [
            dask.delayed(evaluate_k)(
                shared,
                k,
                entropy,
                batch_size,
                dask_key_name=f"cl-evaluate-k-{k}-{token}",
                **options,
            )
            for k in candidates
        ]
        return tuple(dask.compute(*jobs, scheduler=scheduler, num_workers=n_workers))


def choose_k(points: Sequence[SweepPoint]) -> int:
    """The k with the lowest Davies-Bouldin index (ties: the smaller k)."""
    finite = [point for point in points if math.isfinite(point.davies_bouldin)]
    if not finite:
        raise ValueError(
            "no candidate k has a finite Davies-Bouldin index; the features are degenerate "
            "(constant or duplicated rows) - check the embedding stage"
        )
    return min(finite, key=lambda point: (point.davies_bouldin, point.k)).k


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def _initial_centers(
    rows: np.ndarray, k: int, config: ClusterConfig, seed: int, *, exact: bool
) -> np.ndarray:
    """Centres fitted on in-memory rows: the best of ``config.n_init`` k-means++ starts.

    With ``exact`` (the rows are the whole data set) this is scikit-learn ``KMeans`` (Lloyd to
    convergence), the final answer. Otherwise the centres only start the streamed refinement, so
    the much cheaper ``MiniBatchKMeans`` (k-means++ on ``3 * sweep_batch_size`` rows, the
    restarts compared on those rows) is enough. k = 1 is the mean.
    """
    if k == 1:
        return rows.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
    from sklearn.cluster import KMeans, MiniBatchKMeans

    model: Any
    if exact:
        model = KMeans(n_clusters=k, init="k-means++", n_init=config.n_init, random_state=seed)
    else:
        model = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++",
            n_init=config.n_init,
            batch_size=min(config.sweep_batch_size, rows.shape[0]),
            random_state=seed,
            compute_labels=False,
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        model.fit(rows)
    return np.asarray(model.cluster_centers_, dtype=np.float32)


class _Batcher:
    """Collects one group's rows and feeds them to its model in mini-batches of >= batch_size."""

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    @property
    def min_rows(self) -> int:
        # scikit-learn's first partial_fit call needs at least k rows.
        started = hasattr(self.model, "cluster_centers_")
        return 1 if started else int(self.model.n_clusters)

    def add(self, rows: np.ndarray) -> None:
        if rows.shape[0]:
            self.pending.append(rows)
            self.n_pending += rows.shape[0]

    def flush(self, *, force: bool = False) -> None:
        threshold = self.min_rows if force else max(self.batch_size, self.min_rows)
        if self.n_pending < threshold:
            return
        batch = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.pending, self.n_pending = [], 0
        self.model.partial_fit(batch)


def _iter_blocks(
    src: ChunkSource, order: np.ndarray, block_rows: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Read row blocks ``[b * block_rows, ...)`` in ``order``, prefetching the next one."""

    def read(block: int) -> tuple[int, np.ndarray]:
        start = int(block) * block_rows
        return start, src.read_range(start, min(start + block_rows, src.n_rows))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cl-cluster-prefetch") as pool:
        pending = pool.submit(read, order[0]) if len(order) else None
        for position in range(len(order)):
            assert pending is not None
            current = pending.result()
            if position + 1 < len(order):
                pending = pool.submit(read, order[position + 1])
            yield current


def _stream_refine(
    src: ChunkSource,
    initial: Sequence[np.ndarray],
    config: ClusterConfig,
    entropy: int,
    row_groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Refine each group's centres by ``MiniBatchKMeans.partial_fit`` over streamed rows.

    Mini-batches are blocks of ``batch_size`` consecutive rows visited in a seeded random order
    per epoch (independent of the storage chunking). In supervised mode a block's rows are routed
    to their class's model (``row_groups``: group per row, -1 = not refined) and collected until
    a full batch is ready; the buffers are flushed when they hold more than two batches in total,
    so memory stays bounded. Random reassignment of "empty" centres is disabled: the initial
    centres are already converged on the subsample, and a class-sorted data set would otherwise
    reassign the centres of classes not streamed yet.
    """
    from sklearn.cluster import MiniBatchKMeans

    block_rows = config.batch_size
    batchers = [
        _Batcher(
            MiniBatchKMeans(
                n_clusters=centers.shape[0],
                init=centers,
                n_init=1,
                batch_size=block_rows,
                reassignment_ratio=0.0,
                compute_labels=False,
                random_state=_derive_seed(entropy, _KEY_STREAM, group),
            ),
            block_rows,
        )
        for group, centers in enumerate(initial)
    ]
    n_blocks = math.ceil(src.n_rows / block_rows)
    for epoch in range(config.n_epochs):
        order = np.random.default_rng(_derive_seed(entropy, _KEY_ORDER, epoch)).permutation(
            n_blocks
        )
        for start, block in _iter_blocks(src, order, block_rows):
            if row_groups is None:
                batchers[0].add(block)
            else:
                _route_rows(block, row_groups[start : start + block.shape[0]], batchers)
            for batcher in batchers:
                batcher.flush()
            if sum(batcher.n_pending for batcher in batchers) > 2 * block_rows:
                for batcher in batchers:
                    batcher.flush(force=True)
        for batcher in batchers:
            batcher.flush(force=True)
    return [
        np.asarray(batcher.model.cluster_centers_, dtype=np.float32)
        if hasattr(batcher.model, "cluster_centers_")
        else np.asarray(initial[group], dtype=np.float32)
        for group, batcher in enumerate(batchers)
    ]


def _route_rows(block: np.ndarray, groups: np.ndarray, batchers: list[_Batcher]) -> None:
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    present, starts = np.unique(sorted_groups, return_index=True)
    bounds = [*starts.tolist(), len(order)]
    for position, group in enumerate(present.tolist()):
        if group >= 0:
            batchers[group].add(block[order[bounds[position] : bounds[position + 1]]])


def _init_sample_size(k: int, config: ClusterConfig, n_rows: int) -> int:
    # At least 3k rows so k-means++ has room to spread (as scikit-learn's init_size).
    return min(n_rows, max(config.sweep_samples, 3 * k))


def fit_kmeans(
    source: Any,
    k: int,
    config: ClusterConfig | None = None,
    *,
    sample: np.ndarray | None = None,
) -> np.ndarray:
    """Fit k centroids, streaming the rows chunk by chunk (memory independent of N).

    Parameters
    ----------
    source : ChunkSource, EmbeddingStore, path or array-like of shape (N, D)
        The data (read with ``config.normalize`` unless already a :class:`ChunkSource`).
    k : int
        Number of clusters, ``1 <= k <= N``.
    config : ClusterConfig, optional
        ``n_init``, ``n_epochs``, ``batch_size``, ``sweep_samples``, ``max_fit_samples``,
        ``random_state`` are used.
    sample : ndarray of shape (n, D), optional
        Normalised rows for the initial centres (e.g. the sweep subsample); drawn when omitted.

    Returns
    -------
    ndarray of shape (k, D), float32
    """
    config = ClusterConfig() if config is None else _check_config(config)
    src = as_source(source, normalize=config.normalize)
    k = _check_k_for_rows(k, src.n_rows)
    entropy = _entropy(config.random_state)
    with _thread_limit(config.n_threads):
        return _fit_centers(src, k, config, entropy, sample)


def _check_config(config: object) -> ClusterConfig:
    if not isinstance(config, ClusterConfig):
        raise TypeError(
            f"config must be a ClusterConfig, got {type(config).__name__}; e.g. "
            "ClusterConfig(n_clusters=10)"
        )
    return config


def _check_k_for_rows(k: object, n_rows: int) -> int:
    k = _check_int("n_clusters", k, 1)
    if k > n_rows:
        raise ValueError(
            f"n_clusters={k} exceeds the number of samples N={n_rows}; choose "
            f"n_clusters <= {n_rows} (or n_clusters=None to choose k automatically)"
        )
    return k


def _fit_centers(
    src: ChunkSource, k: int, config: ClusterConfig, entropy: int, sample: np.ndarray | None
) -> np.ndarray:
    if config.max_fit_samples is not None and src.n_rows > config.max_fit_samples:
        subsample = sample_rows(src, config.max_fit_samples, _derive_seed(entropy, _KEY_FIT_SAMPLE))
        src = ArraySource(subsample, normalize="none", chunk_rows=config.batch_size)
    covers_all = False
    if sample is None or sample.shape[0] < min(src.n_rows, 3 * k):
        size = _init_sample_size(k, config, src.n_rows)
        sample = sample_rows(src, size, _derive_seed(entropy, _KEY_SAMPLE))
        covers_all = size >= src.n_rows
    else:
        sample = _check_sample(sample)
        covers_all = sample.shape[0] >= src.n_rows and config.max_fit_samples is None
    _require_distinct(sample, k, src.n_rows, "n_clusters")
    seed = _derive_seed(entropy, _KEY_INIT)
    centers = _initial_centers(sample, k, config, seed, exact=covers_all)
    if covers_all:
        return centers  # Lloyd on every row already; streaming would only add noise
    return _stream_refine(src, [centers], config, entropy)[0]


def _require_distinct(sample: np.ndarray, k: int, n_rows: int, argument: str) -> int:
    distinct = _count_distinct_rows(sample, enough=max(k, 2))
    if distinct < 2 <= k:
        raise _constant_features_error(sample.shape[0], n_rows)
    if distinct < k:
        scope = "" if sample.shape[0] >= n_rows else f" in a sample of {sample.shape[0]} rows"
        raise ValueError(
            f"{argument} asks for {k} clusters but there are only {distinct} distinct rows"
            f"{scope} (after normalisation); choose {argument} <= {distinct}, or remove the "
            "duplicated samples"
        )
    return distinct


# --------------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------------


def assign(
    source: Any,
    centroids: np.ndarray,
    *,
    row_groups: np.ndarray | None = None,
    centroid_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign every row to its nearest centroid, chunk by chunk.

    Parameters
    ----------
    source : ChunkSource, EmbeddingStore, path or array-like of shape (N, D)
        The data (``standard`` normalisation unless already a :class:`ChunkSource`).
    centroids : ndarray of shape (k, D)
        Centres in the same normalised space.
    row_groups : ndarray of shape (N,), optional
        Group (class index) of every row; with ``centroid_groups`` each row may only go to a
        centroid of its own group (supervised mode).
    centroid_groups : ndarray of shape (k,), optional
        Group of every centroid.

    Returns
    -------
    assignment : ndarray of shape (N,), int32
        Index of the nearest (allowed) centroid.
    distances : ndarray of shape (N,), float32
        ``||x_i - centroids[assignment[i]]||``, computed directly from the difference (no
        cancellation error), so rows at a centroid get exactly 0.
    """
    src = as_source(source)
    centers = _check_centroids(centroids, src.dim)
    groups = _check_groups(row_groups, centroid_groups, src.n_rows, centers.shape[0])
    assignment = np.empty(src.n_rows, dtype=np.int32)
    distances = np.empty(src.n_rows, dtype=np.float32)
    for start, block in src.iter_chunks():
        check_finite("features", block, offset=start)
        stop = start + block.shape[0]
        if groups is None:
            nearest = _nearest(block, centers)
        else:
            nearest = _nearest_within_groups(block, centers, groups[0][start:stop], groups[1])
        difference = block - centers[nearest]
        assignment[start:stop] = nearest
        distances[start:stop] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
    return assignment, distances


def _check_centroids(centroids: Any, dim: int) -> np.ndarray:
    centers = np.ascontiguousarray(_to_numpy(centroids), dtype=np.float32)
    if centers.ndim != 2 or centers.shape[0] == 0 or centers.shape[1] != dim:
        raise ValueError(
            f"centroids must have shape (k, {dim}) to match the features, got {centers.shape}"
        )
    check_finite("centroids", centers)
    return centers


def _check_groups(
    row_groups: Any, centroid_groups: Any, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray] | None:
    if row_groups is None and centroid_groups is None:
        return None
    if row_groups is None or centroid_groups is None:
        raise ValueError("give both row_groups and centroid_groups, or neither")
    rows = np.asarray(row_groups, dtype=np.int64)
    cents = np.asarray(centroid_groups, dtype=np.int64)
    if rows.shape != (n_rows,) or cents.shape != (k,):
        raise ValueError(
            f"row_groups must have shape ({n_rows},) and centroid_groups ({k},), got "
            f"{rows.shape} and {cents.shape}"
        )
    orphans = np.setdiff1d(np.unique(rows), cents)
    if orphans.size:
        raise ValueError(
            f"row_groups contains groups without any centroid (e.g. {orphans[:5].tolist()}); "
            "every group needs at least one centroid"
        )
    return rows, cents


def _nearest(block: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """argmin_j ||x - c_j||^2 = argmin_j (||c_j||^2 - 2 x.c_j), in row steps of bounded size."""
    half_sq = 0.5 * np.einsum("ij,ij->i", centers, centers)
    step = max(1, _ASSIGN_MAX_SCORES // centers.shape[0])
    out = np.empty(block.shape[0], dtype=np.intp)
    for start in range(0, block.shape[0], step):
        scores = block[start : start + step] @ centers.T
        out[start : start + step] = np.argmin(half_sq - scores, axis=1)
    return out


def _nearest_within_groups(
    block: np.ndarray, centers: np.ndarray, row_groups: np.ndarray, centroid_groups: np.ndarray
) -> np.ndarray:
    out = np.empty(block.shape[0], dtype=np.intp)
    for group in np.unique(row_groups).tolist():
        rows = np.flatnonzero(row_groups == group)
        allowed = np.flatnonzero(centroid_groups == group)
        out[rows] = allowed[_nearest(block[rows], centers[allowed])]
    return out


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def cluster_embeddings(
    source: Any,
    config: ClusterConfig | None = None,
    labels: Any = None,
    *,
    client: Any = None,
) -> ClusterResult:
    """Cluster the embeddings: choose k, fit the centroids, assign every row.

    Parameters
    ----------
    source : EmbeddingStore, store path, ChunkSource or array-like of shape (N, D)
        The embeddings; read with ``config.normalize`` (a :class:`ChunkSource` keeps its own).
    config : ClusterConfig, optional
        Defaults to ``ClusterConfig()`` (auto k over 2..20, unsupervised).
    labels : list, ndarray or tensor of shape (N,), optional
        Class of every row for ``use_labels=True`` (default: the store's labels).
    client : dask.distributed.Client, optional
        Run the k sweep on this cluster instead of the local ``config.scheduler``.

    Returns
    -------
    ClusterResult

    Raises
    ------
    ValueError
        Empty data, NaN/inf rows (first bad index named), ``n_clusters > N``, constant
        features, fewer distinct rows than clusters, labels of the wrong length, or supervised
        mode without labels.
    """
    config = ClusterConfig() if config is None else _check_config(config)
    src = as_source(source, normalize=config.normalize)
    if src.normalize != config.normalize:
        warnings.warn(
            f"the given ChunkSource reads with normalize={src.normalize!r}, which wins over "
            f"config.normalize={config.normalize!r}; pass the store or array itself to use "
            "the config's normalisation",
            ClusterWarning,
            stacklevel=2,
        )
    entropy = _entropy(config.random_state)
    if config.use_labels:
        label_values = _resolve_labels(labels, src)
        with _thread_limit(config.n_threads):
            return _cluster_per_class(src, config, label_values, entropy, client)
    if labels is not None:
        warnings.warn(
            "labels were given but config.use_labels is False, so they are ignored; set "
            "ClusterConfig(use_labels=True) to cluster within each class",
            ClusterWarning,
            stacklevel=2,
        )
    with _thread_limit(config.n_threads):
        return _cluster_all(src, config, entropy, client)


def _thread_limit(n_threads: int | None) -> AbstractContextManager[Any]:
    if n_threads is None:
        return nullcontext()
    _load_native_libraries()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n_threads)


def _resolve_labels(labels: Any, src: ChunkSource) -> np.ndarray:
    if labels is None:
        labels = src.labels()
    if labels is None:
        raise ValueError(
            "use_labels=True needs labels: pass labels=... (one class per row) or use a store "
            "written with labels; or set use_labels=False"
        )
    return _as_label_array(labels, src.n_rows)


def _cluster_all(
    src: ChunkSource, config: ClusterConfig, entropy: int, client: Any
) -> ClusterResult:
    sweep: tuple[SweepPoint, ...] = ()
    if config.n_clusters is not None:
        k = _check_k_for_rows(config.n_clusters, src.n_rows)
        sample = sample_rows(
            src, _init_sample_size(k, config, src.n_rows), _derive_seed(entropy, _KEY_SAMPLE)
        )
        chosen_by = "explicit"
    else:
        sample = sample_rows(src, config.sweep_samples, _derive_seed(entropy, _KEY_SAMPLE))
        candidates = _candidate_ks(config.cluster_range, sample, src.n_rows)
        sweep = sweep_k(
            sample,
            candidates,
            _derive_seed(entropy, _KEY_SWEEP),
            client=client,
            scheduler=config.scheduler,
            n_workers=config.n_workers,
            batch_size=config.sweep_batch_size,
            n_init=config.sweep_n_init,
        )
        k = choose_k(sweep)
        chosen_by = "davies_bouldin"
    centroids = _fit_centers(src, k, config, entropy, sample)
    assignment, distances = assign(src, centroids)
    return ClusterResult(
        centroids=centroids,
        assignment=assignment,
        distances=distances,
        n_clusters=k,
        chosen_by=chosen_by,
        sweep=sweep,
        inertia=float(np.square(distances, dtype=np.float64).sum()),
        config=config,
    )


def _candidate_ks(cluster_range: tuple[int, int], sample: np.ndarray, n_rows: int) -> list[int]:
    """The sweep's ks: the range, capped (with a warning) at what the sample supports."""
    low, high = cluster_range
    distinct = _count_distinct_rows(sample, enough=high)
    if distinct < 2:
        raise _constant_features_error(sample.shape[0], n_rows)
    limit = min(sample.shape[0] - 1, distinct)
    if low > limit:
        raise ValueError(
            f"cluster_range={cluster_range!r} needs at least {low + 1} samples with {low} "
            f"distinct rows, but there are {sample.shape[0]} samples with {distinct} "
            f"distinct rows; lower the range to at most {limit} or pass n_clusters"
        )
    if high > limit:
        warnings.warn(
            f"cluster_range={cluster_range!r} capped at k <= {limit}: the "
            f"Davies-Bouldin index needs k <= samples - 1 and distinct rows >= k "
            f"({sample.shape[0]} samples, {distinct} distinct)",
            ClusterWarning,
            stacklevel=4,
        )
    return list(range(low, min(high, limit) + 1))


# -- supervised mode ---------------------------------------------------------------------------


@dataclass
class _ClassPlan:
    label: Any
    rows: np.ndarray  # dataset indices of the class, ascending
    sample_index: np.ndarray  # the subsample's dataset indices, ascending
    k: int = 1
    centers: np.ndarray | None = None
    sweep: tuple[SweepPoint, ...] = ()

    @property
    def covered(self) -> bool:
        return self.sample_index.shape[0] == self.rows.shape[0]


def _cluster_per_class(
    src: ChunkSource, config: ClusterConfig, labels: np.ndarray, entropy: int, client: Any
) -> ClusterResult:
    classes, class_index = np.unique(labels, return_inverse=True)
    plans = _plan_classes(classes, class_index.reshape(-1), config, entropy)
    any_class_varies = False
    for plan, sample in _iter_class_samples(src, plans, config.sweep_samples):
        any_class_varies |= _fit_class(plan, sample, config, entropy, client)
    if not any_class_varies and not _class_points_differ(plans):
        raise _constant_features_error(sum(p.sample_index.shape[0] for p in plans), src.n_rows)
    _refine_large_classes(src, plans, class_index, config, entropy)

    centroids = np.concatenate([np.asarray(plan.centers, dtype=np.float32) for plan in plans])
    centroid_groups = np.repeat(np.arange(len(plans)), [plan.k for plan in plans])
    assignment, distances = assign(
        src, centroids, row_groups=class_index, centroid_groups=centroid_groups
    )
    return ClusterResult(
        centroids=centroids,
        assignment=assignment,
        distances=distances,
        n_clusters=int(centroids.shape[0]),
        chosen_by="per_class",
        sweep=tuple(point for plan in plans for point in plan.sweep),
        cluster_class=classes[centroid_groups],
        inertia=float(np.square(distances, dtype=np.float64).sum()),
        config=config,
    )


def _plan_classes(
    classes: np.ndarray, class_index: np.ndarray, config: ClusterConfig, entropy: int
) -> list[_ClassPlan]:
    order = np.argsort(class_index, kind="stable")  # rows of each class, ascending
    bounds = np.concatenate([[0], np.cumsum(np.bincount(class_index, minlength=len(classes)))])
    plans = []
    for position, label in enumerate(classes):
        rows = order[bounds[position] : bounds[position + 1]]
        if rows.shape[0] > config.sweep_samples:
            rng = np.random.default_rng(_derive_seed(entropy, _KEY_CLASS, position))
            chosen = np.sort(rng.choice(rows, size=config.sweep_samples, replace=False))
        else:
            chosen = rows
        plans.append(_ClassPlan(label=label, rows=rows, sample_index=chosen))
    return plans


def _iter_class_samples(
    src: ChunkSource, plans: list[_ClassPlan], budget: int
) -> Iterator[tuple[_ClassPlan, np.ndarray]]:
    """Read the class subsamples, several classes per read, at most ~``budget`` rows at once."""
    group: list[_ClassPlan] = []
    size = 0
    for plan in [*plans, None]:
        if plan is not None and (not group or size + plan.sample_index.shape[0] <= budget):
            group.append(plan)
            size += plan.sample_index.shape[0]
            continue
        wanted = np.concatenate([member.sample_index for member in group])
        order = np.argsort(wanted, kind="stable")
        rows = np.empty((wanted.shape[0], src.dim), dtype=np.float32)
        rows[order] = src.read_rows(wanted[order])
        offset = 0
        for member in group:
            count = member.sample_index.shape[0]
            yield member, rows[offset : offset + count]
            offset += count
        if plan is not None:
            group, size = [plan], plan.sample_index.shape[0]


def _fit_class(
    plan: _ClassPlan, sample: np.ndarray, config: ClusterConfig, entropy: int, client: Any
) -> bool:
    """Choose the class's k and initial centres; True when its rows are not all identical."""
    n_class = plan.rows.shape[0]
    wanted = config.n_clusters if config.n_clusters is not None else config.cluster_range[1]
    distinct = _count_distinct_rows(sample, enough=max(wanted, 2))
    name = f"class {_plain(plan.label)!r}"
    if config.n_clusters is not None:
        plan.k = min(config.n_clusters, n_class, distinct)
        if plan.k < config.n_clusters:
            warnings.warn(
                f"{name} has {n_class} samples ({distinct} distinct in its sample), fewer than "
                f"n_clusters={config.n_clusters}; it gets {plan.k} cluster(s)",
                ClusterWarning,
                stacklevel=5,
            )
    else:
        low, high = config.cluster_range
        top = min(high, sample.shape[0] - 1, distinct)
        if low > top:
            plan.k = 1
            warnings.warn(
                f"{name} has {n_class} samples ({distinct} distinct), too few for the "
                f"Davies-Bouldin sweep over cluster_range={config.cluster_range!r} (needs at "
                f"least {low + 1}); it becomes one cluster at its mean",
                ClusterWarning,
                stacklevel=5,
            )
        else:
            class_seed = _derive_seed(entropy, _KEY_CLASS, _KEY_SWEEP, plan.rows[0])
            plan.sweep = sweep_k(
                sample,
                range(low, top + 1),
                class_seed,
                client=client,
                scheduler=config.scheduler,
                n_workers=config.n_workers,
                batch_size=config.sweep_batch_size,
                n_init=config.sweep_n_init,
                class_label=_plain(plan.label),
            )
            plan.k = choose_k(plan.sweep)
    seed = _derive_seed(entropy, _KEY_CLASS, _KEY_INIT, plan.rows[0])
    plan.centers = _initial_centers(sample, plan.k, config, seed, exact=plan.covered)
    return distinct > 1


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def _class_points_differ(plans: list[_ClassPlan]) -> bool:
    """With every class constant: do the classes' (single) points differ from each other?"""
    centers = np.concatenate([np.asarray(plan.centers) for plan in plans])
    return bool(np.ptp(centers, axis=0).any())


def _refine_large_classes(
    src: ChunkSource,
    plans: list[_ClassPlan],
    class_index: np.ndarray,
    config: ClusterConfig,
    entropy: int,
) -> None:
    """Stream every class larger than its subsample in one pass per epoch for all classes."""
    large = [position for position, plan in enumerate(plans) if not plan.covered]
    if not large:
        return
    data: ChunkSource = src
    groups = np.full(len(plans), -1, dtype=np.int64)
    groups[large] = np.arange(len(large))
    row_groups = groups[class_index]
    if config.max_fit_samples is not None and src.n_rows > config.max_fit_samples:
        rng = np.random.default_rng(_derive_seed(entropy, _KEY_FIT_SAMPLE))
        chosen = np.sort(rng.choice(src.n_rows, size=config.max_fit_samples, replace=False))
        data = ArraySource(src.read_rows(chosen), normalize="none", chunk_rows=config.batch_size)
        row_groups = row_groups[chosen]
    refined = _stream_refine(
        data,
        [np.asarray(plans[position].centers) for position in large],
        config,
        _derive_seed(entropy, _KEY_CLASS, _KEY_STREAM),
        row_groups=row_groups,
    )
    for position, centers in zip(large, refined, strict=True):
        plans[position].centers = centers


__all__ = [
    "CHOSEN_BY",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SWEEP_SAMPLES",
    "EXECUTION_FIELDS",
    "NORMALIZATIONS",
    "SCHEDULERS",
    "ArraySource",
    "ChunkSource",
    "ClusterConfig",
    "ClusterResult",
    "ClusterWarning",
    "StoreSource",
    "SweepPoint",
    "as_source",
    "assign",
    "choose_k",
    "cluster_embeddings",
    "evaluate_k",
    "fit_kmeans",
    "sample_rows",
    "sweep_k",
]
