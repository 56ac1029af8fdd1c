"""Assignment and per-sample distances as Dask tasks over row ranges of an embedding store.

:func:`assign_chunks` splits the store's rows into ranges of ``chunk_rows`` rows and makes one
``dask.delayed`` task per range (:func:`assign_range`). Each task opens the store itself (a path
or fsspec URL, or an :class:`~cl_core.store.EmbeddingStore`, which pickles as its location),
streams its range chunk by chunk, and returns only its int32 assignment, its float32 distances
and a few task statistics. Nothing large passes through the scheduler: the graph holds the
``k x D`` centroids once (one shared key) and, when given, the per-range slices of the mask or
class groups.

The tasks run with ``dask.compute``, i.e. on whatever scheduler is current: a
``dask.distributed.Client`` that the caller created (or passed as ``scheduler=client``), or
else Dask's local threaded scheduler. This package never imports ``dask.distributed``.

The arithmetic is the one of :func:`cl_core.cluster.assign`, block by block on the same store
chunks: ``argmin_j (||c_j||^2 / 2 - x.c_j)`` in float32 for the nearest centroid (in row steps
of at most 2**22 scores), then the distance from the difference ``x - c``. So the result is
identical to ``cl_core.cluster.assign`` on the same store, whatever ``chunk_rows`` and however
many workers (the tests check equality).

Memory per task: one store chunk of normalised float32 rows, its score matrix (at most 16 MiB),
the centroids and the range's output (8 bytes per row). The caller holds the (N,) outputs.

Modules: :mod:`~.task` (:func:`assign_range`, the body of one task, and its statistics) and
:mod:`~.driver` (:func:`assign_chunks`: the graph, the checks, the gathered result).
"""

from __future__ import annotations

from cl_core.cluster.assign_dask.driver import DEFAULT_TASK_ROWS, ChunkedAssignment, assign_chunks
from cl_core.cluster.assign_dask.task import AssignTaskStats, assign_range, peak_rss_bytes
from cl_core.sources import NORMALIZATIONS as NORMALIZATIONS  # importable here, as before

__all__ = [
    "DEFAULT_TASK_ROWS",
    "AssignTaskStats",
    "ChunkedAssignment",
    "assign_chunks",
    "assign_range",
    "peak_rss_bytes",
]
