"""OpenMP/BLAS thread limits around the scikit-learn kernels (threadpoolctl)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any


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


def _thread_limit(n_threads: int | None) -> AbstractContextManager[Any]:
    if n_threads is None:
        return nullcontext()
    _load_native_libraries()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n_threads)
