"""The body of one assignment task: open the store, assign a row range, measure the task.

A pure function of picklable arguments that runs inside a Dask worker; it returns only its
int32 assignment, float32 distances and :class:`AssignTaskStats`.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.cluster.assign import _assign_block  # the in-process kernel: bitwise-equal results
from cl_core.threads import thread_limit


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
            assignment[lo:hi], distances[lo:hi] = _assign_block(
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
