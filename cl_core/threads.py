"""Thread limits: OpenMP/BLAS pools (threadpoolctl) and torch's intra-op threads.

A leaf module (threadpoolctl, scikit-learn and torch are imported inside the functions), used
by the clustering stage, the Dask assignment tasks and the A/B training loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


def thread_limit(
    n_threads: int | None, user_api: str | None = None, *, sklearn: bool = True
) -> AbstractContextManager[Any]:
    """At most ``n_threads`` threads in the native pools of ``user_api`` while the block runs.

    Parameters
    ----------
    n_threads : int or None
        The limit; None sets none (a no-op context).
    user_api : {"blas", "openmp"}, optional
        The pools to limit; None limits every one.
    sklearn : bool
        Load scikit-learn's native libraries first (:func:`_load_native_libraries`) so that the
        limit covers them; False for numpy-only callers (no scikit-learn import).
    """
    if n_threads is None:
        return nullcontext()
    if sklearn:
        _load_native_libraries()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n_threads, user_api=user_api)


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``n_threads`` inside the block, restored after it.

    None leaves torch's setting alone. Not thread-safe: the setting is process-wide.
    """
    if n_threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
