"""Assignment as Dask tasks over row ranges of an embedding store (:func:`assign_chunks`).

Each task (:func:`assign_range`) opens the store itself (a path or fsspec URL, or an
:class:`~cl_core.store.EmbeddingStore`, which pickles as its location), streams its range chunk
by chunk through the in-process kernel (:func:`cl_core.cluster.assign.assign_block`, so the
result equals :func:`cl_core.cluster.assign` bitwise, whatever ``chunk_rows`` and however many
workers) and returns only its int32 assignment, float32 distances and statistics. The graph holds
the ``k x D`` centroids once. The tasks run with ``dask.compute`` on the current scheduler (a
``dask.distributed.Client`` the caller made, or Dask's threads); ``dask.distributed`` is never
imported here.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.cluster.assign import assign, assign_block, check_centroids, check_groups
from cl_core.cluster.sources import ChunkSource, RowSubset, StoreSource
from cl_core.store.moments import NORMALIZATIONS
from cl_core.threads import thread_limit
from cl_core.validation import check_choice, check_int, check_valid_mask

DEFAULT_TASK_ROWS = 65_536
"""Rows per task (rounded up to whole store chunks): 16 chunks of the default 4096 rows, ~77
tasks for 5 M rows. A task reads its range chunk by chunk, so this sets scheduling granularity,
not memory."""

__all__ = [
    "DEFAULT_TASK_ROWS",
    "AssignTaskStats",
    "ChunkedAssignment",
    "assign_chunks",
    "assign_range",
    "assign_rows",
    "peak_rss_bytes",
]


@dataclass(frozen=True)
class AssignTaskStats:
    """What one :func:`assign_range` task did, measured inside the worker.

    Attributes
    ----------
    start, stop : int
        Row range ``[start, stop)``.
    seconds : float
        Wall time of the task.
    cpu_seconds : float
        CPU time of the task's thread (``time.thread_time``).
    pid : int
        Process that ran it.
    peak_rss_bytes : int
        Peak resident memory of that process so far (:func:`peak_rss_bytes`).
    """

    start: int
    stop: int
    seconds: float
    cpu_seconds: float
    pid: int
    peak_rss_bytes: int


def peak_rss_bytes() -> int:
    """Peak resident set size of the calling process, in bytes.

    Linux: ``VmHWM`` of ``/proc/self/status`` (the peak of this process image;
    ``getrusage``'s ``ru_maxrss`` would also count a parent's peak inherited through
    fork/exec). Elsewhere ``getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _open(store: Any, storage_options: dict[str, Any] | None) -> Any:
    from cl_core.store import EmbeddingStore, open_store

    if isinstance(store, EmbeddingStore):
        return store
    return open_store(store, read_only=True, storage_options=storage_options)


def assign_range(
    store: Any,
    centroids: np.ndarray,
    start: int,
    stop: int,
    *,
    normalize: str = "standard",
    valid: np.ndarray | None = None,
    row_groups: np.ndarray | None = None,
    centroid_groups: np.ndarray | None = None,
    storage_options: dict[str, Any] | None = None,
    n_threads: int | None = 1,
) -> tuple[int, np.ndarray, np.ndarray, AssignTaskStats]:
    """Assign rows ``[start, stop)`` of a store: the body of one Dask task.

    A pure function of picklable arguments; it opens the store itself and reads its range
    chunk by chunk (memory: one chunk, not the range).

    Parameters
    ----------
    store : str, os.PathLike or EmbeddingStore
        Local path or fsspec URL of the store (or an open handle).
    centroids : ndarray of shape (k, D), float32
        Checked by :func:`assign_chunks`.
    start, stop : int
        Row range, ``0 <= start < stop <= N``.
    normalize : {"standard", "l2", "none"}
    valid : ndarray of shape (stop - start,), bool, optional
        False = excluded row (assignment -1, distance 0.0, not read for finiteness).
    row_groups : ndarray of shape (stop - start,), int64, optional
        Group of every row; with ``centroid_groups`` a row only goes to a centroid of its group.
    centroid_groups : ndarray of shape (k,), int64, optional
    storage_options : dict, optional
        fsspec options for URL stores.
    n_threads : int or None
        BLAS threads inside the task (1: one core per task; None: the library default).

    Returns
    -------
    start : int
    assignment : ndarray of shape (stop - start,), int32
    distances : ndarray of shape (stop - start,), float32
    stats : AssignTaskStats
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    handle = _open(store, storage_options)
    centers = np.ascontiguousarray(centroids, dtype=np.float32)
    assignment = np.empty(stop - start, dtype=np.int32)
    distances = np.empty(stop - start, dtype=np.float32)
    with thread_limit(n_threads, "blas", sklearn=False):  # numpy's BLAS only
        for first, block in handle.iter_chunks(normalize, rows=(start, stop), prefetch=False):
            lo, hi = first - start, first - start + block.shape[0]
            keep = None if valid is None else valid[lo:hi]
            if keep is not None and not keep.all():
                block = np.where(keep[:, None], block, np.float32(0.0))  # excluded: never read
            assignment[lo:hi], distances[lo:hi] = assign_block(
                block,
                centers,
                first,
                row_groups=None if row_groups is None else row_groups[lo:hi],
                centroid_groups=centroid_groups,
            )
    if valid is not None:
        assignment[~valid] = -1
        distances[~valid] = 0.0
    stats = AssignTaskStats(
        start=int(start),
        stop=int(stop),
        seconds=time.perf_counter() - started,
        cpu_seconds=time.thread_time() - cpu_started,
        pid=os.getpid(),
        peak_rss_bytes=peak_rss_bytes(),
    )
    return int(start), assignment, distances, stats


@dataclass(frozen=True, eq=False)
class ChunkedAssignment:
    """Result of :func:`assign_chunks`; unpacks like :func:`cl_core.cluster.assign`.

    ``assignment, distances = assign_chunks(...)`` works.

    Attributes
    ----------
    assignment : ndarray of shape (N,), int32
        Nearest (allowed) centroid of every row; -1 for rows excluded by ``valid``.
    distances : ndarray of shape (N,), float32
        ``||x_i - c_a(i)||``; 0.0 for excluded rows.
    tasks : tuple of AssignTaskStats
        One per task, in row order.
    """

    assignment: np.ndarray
    distances: np.ndarray
    tasks: tuple[AssignTaskStats, ...] = ()

    def __post_init__(self) -> None:
        if self.assignment.shape != self.distances.shape or self.assignment.ndim != 1:
            raise ValueError(
                f"assignment {self.assignment.shape} and distances {self.distances.shape} must "
                "both have shape (N,)"
            )
        for array in (self.assignment, self.distances):
            array.flags.writeable = False

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.assignment, self.distances))

    @property
    def inertia(self) -> float:
        """Sum of squared distances (float64)."""
        return float(np.square(self.distances, dtype=np.float64).sum())

    def per_process(self) -> dict[int, dict[str, float]]:
        """Per worker process: tasks, rows, CPU seconds, busy seconds and peak RSS (MiB)."""
        summary: dict[int, dict[str, float]] = {}
        for task in self.tasks:
            entry = summary.setdefault(
                task.pid,
                {
                    "tasks": 0,
                    "rows": 0,
                    "cpu_seconds": 0.0,
                    "busy_seconds": 0.0,
                    "peak_rss_mib": 0.0,
                },
            )
            entry["tasks"] += 1
            entry["rows"] += task.stop - task.start
            entry["cpu_seconds"] += task.cpu_seconds
            entry["busy_seconds"] += task.seconds
            entry["peak_rss_mib"] = max(entry["peak_rss_mib"], task.peak_rss_bytes / 2**20)
        return summary


def _check_store_ref(store: Any) -> Any:
    from cl_core.store import EmbeddingStore

    if isinstance(store, EmbeddingStore):
        return store
    if isinstance(store, os.PathLike):
        return os.fspath(store)
    if isinstance(store, str) and store:
        return store
    raise TypeError(
        f"store must be a store path / fsspec URL or an EmbeddingStore, got {store!r}; the "
        "tasks reopen it in their own process, so an in-memory zarr Store cannot be used"
    )


def assign_chunks(
    store: Any,
    centroids: Any,
    *,
    normalize: str = "standard",
    chunk_rows: int | None = None,
    valid: Any = None,
    row_groups: Any = None,
    centroid_groups: Any = None,
    scheduler: Any = None,
    storage_options: dict[str, Any] | None = None,
    n_threads: int | None = 1,
) -> ChunkedAssignment:
    """Assign every row of a store to its nearest centroid with one Dask task per row range.

    Parameters
    ----------
    store : str, os.PathLike or EmbeddingStore
        The embedding store: a local path or fsspec URL every worker can open, or a handle
        (pickled as its location).
    centroids : array-like of shape (k, D)
        Centres in the normalised space of ``normalize``.
    normalize : {"standard", "l2", "none"}
        Row normalisation (``standard`` needs a finalized store).
    chunk_rows : int, optional
        Rows per task; rounded up to a multiple of the store's chunk rows. Default
        :data:`DEFAULT_TASK_ROWS`.
    valid : array-like of shape (N,), bool, optional
        False for excluded rows: assignment -1 and distance 0.0 there.
    row_groups, centroid_groups : array-like of shape (N,) and (k,), optional
        Supervised mode: a row may only go to a centroid of its own group (give both or neither).
    scheduler : optional
        Passed to ``dask.compute``: None uses the current ``dask.distributed.Client`` if there is
        one, else Dask's threaded scheduler; a Client, ``"threads"``, ``"processes"`` or
        ``"synchronous"`` picks one explicitly.
    storage_options : dict, optional
        fsspec options for URL stores (sent to every task).
    n_threads : int or None
        BLAS threads per task (default 1: one core per task; the parallelism is the tasks').

    Returns
    -------
    ChunkedAssignment
        ``assignment`` int32 (N,), ``distances`` float32 (N,) and per-task statistics; equal to
        :func:`cl_core.cluster.assign` on the same store.

    Raises
    ------
    ValueError
        Wrong centroid shape or NaN/inf centroids, a mask or groups of the wrong length,
        ``standard`` on a store that is not finalized, NaN/inf rows (first bad index).
    """
    import dask

    ref = _check_store_ref(store)
    check_choice("normalize", normalize, NORMALIZATIONS)
    handle = _open(ref, storage_options)
    n_rows, dim, store_chunk = int(handle.n_rows), int(handle.dim), int(handle.chunk_rows)
    if normalize == "standard" and handle.feature_mean is None:
        raise ValueError(
            f"normalize='standard' needs the dataset mean/std, but the store {handle!r} is not "
            "finalized; call store.finalize() after writing every shard, or use "
            "normalize='l2' or 'none'"
        )
    centers = check_centroids(centroids, dim)
    task_rows = _task_rows(chunk_rows, store_chunk)
    mask = check_valid_mask("valid", valid, n_rows)
    groups = check_groups(row_groups, centroid_groups, n_rows, centers.shape[0])
    if n_threads is not None:
        n_threads = check_int("n_threads", n_threads, 1, "; or None for the library default")

    from dask.base import tokenize

    token = tokenize(str(getattr(handle, "path", ref)), centers, normalize, task_rows, mask, groups)
    shared_centers = dask.delayed(centers, name=f"cl-assign-centroids-{token}")
    shared_cgroups = (
        None if groups is None else dask.delayed(groups[1], name=f"cl-assign-cgroups-{token}")
    )
    tasks = []
    for start in range(0, n_rows, task_rows):
        stop = min(start + task_rows, n_rows)
        tasks.append(
            dask.delayed(assign_range, pure=True)(
                ref,
                shared_centers,
                start,
                stop,
                normalize=normalize,
                valid=None if mask is None else mask[start:stop],
                row_groups=None if groups is None else groups[0][start:stop],
                centroid_groups=shared_cgroups,
                storage_options=storage_options,
                n_threads=n_threads,
                dask_key_name=f"cl-assign-{start}-{token}",
            )
        )
    results = dask.compute(*tasks, scheduler=scheduler)
    assignment = np.empty(n_rows, dtype=np.int32)
    distances = np.empty(n_rows, dtype=np.float32)
    stats = []
    for first, part_assignment, part_distances, part_stats in results:
        assignment[first : first + part_assignment.shape[0]] = part_assignment
        distances[first : first + part_distances.shape[0]] = part_distances
        stats.append(part_stats)
    return ChunkedAssignment(
        assignment=assignment,
        distances=distances,
        tasks=tuple(sorted(stats, key=lambda item: item.start)),
    )


def _task_rows(chunk_rows: Any, store_chunk: int) -> int:
    if chunk_rows is None:
        chunk_rows = DEFAULT_TASK_ROWS
    rows = check_int("chunk_rows", chunk_rows, 1, f"; e.g. chunk_rows={DEFAULT_TASK_ROWS} or None")
    return -(-rows // store_chunk) * store_chunk


def assign_rows(
    src: ChunkSource,
    centroids: np.ndarray,
    client: Any,
    *,
    row_groups: np.ndarray | None = None,
    centroid_groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The stage's assignment: :func:`assign`, or with a Dask client :func:`assign_chunks`.

    The tasks need a store every worker can open (a path or fsspec URL); in-memory sources stay
    local. The results are identical either way.

    Parameters
    ----------
    src : ChunkSource
        The rows to assign (a :class:`RowSubset` of a store: only those rows).
    centroids : ndarray of shape (k, D)
    client : dask.distributed.Client or None
    row_groups, centroid_groups : ndarray of shape (len(src),) and (k,), optional
        Supervised mode, as in :func:`assign`.

    Returns
    -------
    assignment : ndarray of shape (len(src),), int32
    distances : ndarray of shape (len(src),), float32
    """
    base, rows = (src.base, src.rows) if isinstance(src, RowSubset) else (src, None)
    if (
        client is None
        or not isinstance(base, StoreSource)
        or not isinstance(getattr(base.store, "path", None), (str, os.PathLike))
    ):
        return assign(src, centroids, row_groups=row_groups, centroid_groups=centroid_groups)
    valid = full_groups = None
    if rows is not None:
        valid = np.zeros(base.n_rows, dtype=bool)
        valid[rows] = True
    if row_groups is not None and centroid_groups is not None:
        # Excluded rows need *some* group that has a centroid; they get -1 / 0.0 anyway.
        full_groups = np.full(base.n_rows, np.asarray(centroid_groups)[0], dtype=np.int64)
        full_groups[slice(None) if rows is None else rows] = row_groups
    result = assign_chunks(
        base.store,
        centroids,
        normalize=base.normalize,
        valid=valid,
        row_groups=full_groups,
        centroid_groups=centroid_groups,
        scheduler=client,
    )
    if rows is None:
        return result.assignment, result.distances
    return result.assignment[rows], result.distances[rows]  # cluster_embeddings spreads them back
