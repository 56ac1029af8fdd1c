"""Moved to :mod:`cl_core.cluster.assign_dask`; this module keeps the old import path working."""

from cl_core.cluster.assign_dask import (
    DEFAULT_TASK_ROWS,
    AssignTaskStats,
    ChunkedAssignment,
    assign_chunks,
    assign_range,
    peak_rss_bytes,
)

__all__ = [
    "DEFAULT_TASK_ROWS",
    "AssignTaskStats",
    "ChunkedAssignment",
    "assign_chunks",
    "assign_range",
    "peak_rss_bytes",
]
