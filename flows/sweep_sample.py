"""The k sweep's subsample, read once per process: every k job of a sweep reads the same file
(a local path or an fsspec URL in the work dir)."""

from __future__ import annotations

import threading

import numpy as np

from cl_core.io import Location, as_location
from flows import files

_sample_lock = threading.Lock()
_sample_memo: tuple[tuple[str, int, int], np.ndarray] | None = None


def file_identity(path: str | Location) -> tuple[str, int, int]:
    # mtime and size are part of the identity so that a rewritten sample is read again.
    location = as_location(path).resolve()
    stat = location.stat()
    return str(location), stat.st_mtime_ns, stat.st_size


def remember_sample(sample_path: str | Location, sample: np.ndarray) -> np.ndarray:
    """Keep the sweep sample of ``sample_path`` for this process's k jobs (read-only)."""
    global _sample_memo
    sample.flags.writeable = False  # shared by concurrent jobs: nobody may change it
    with _sample_lock:
        _sample_memo = (file_identity(sample_path), sample)
    return sample


def sweep_sample(sample_path: str) -> np.ndarray:
    """The sweep sample, read once per process (every k job of a sweep reads the same file).

    The sample task hands its in-memory sample over (:func:`remember_sample`), so k jobs on the
    in-process Dask cluster never read it back; other processes read the file once.
    """
    identity = file_identity(sample_path)
    with _sample_lock:
        if _sample_memo is not None and _sample_memo[0] == identity:
            return _sample_memo[1]
    return remember_sample(sample_path, files.load_npy(sample_path))


def clear_sample_cache() -> None:
    """Forget the remembered sweep sample (tests start every test with no process caches)."""
    global _sample_memo
    with _sample_lock:
        _sample_memo = None
