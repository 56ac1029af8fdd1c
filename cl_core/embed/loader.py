"""The DataLoader of an inference run: index batches in, ``(indices, batch, failures)`` out,
workers forked from a preloaded forkserver.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any

import torch

from cl_core.embed.features import BatchCollator, IndexedDataset
from cl_core.embed.files import ImageFileBytes, ImageFileUint8
from cl_core.embed.plan import InferencePlan

_WORKER_PRELOAD = (
    "__main__",
    "torch",
    "numpy",
    "PIL.Image",
    "torchvision.transforms",
    "timm.data",
    "cl_core.embed.datasets",
    "cl_core.embed.files",
    "cl_core.embed.decoding",
    "cl_core.embed.batch_decoding",
    "cl_core.embed.features",
    __name__,
)


def make_loader(
    plan: InferencePlan, batches: Sequence[Sequence[int]], workers: int | None = None
) -> torch.utils.data.DataLoader[Any]:
    """DataLoader yielding ``(indices, batch)`` for the given index batches, in order."""
    loaded, spec = plan.loaded, plan.spec
    tokenize = loaded.tokenize if loaded.kind == "text" and spec.collate_fn is None else None
    if spec.kind == "text" and tokenize is None:
        raise ValueError(
            f"dataset is a list of strings but model {loaded.model_id!r} is not a text encoder; "
            f"use model='all-MiniLM-L6-v2' or a SentenceTransformer"
        )
    n_workers = plan.workers if workers is None else workers
    batch_sampler: Any = batches  # any iterable of index sequences works; typed as list[int]
    in_memory = spec.collate_fn is None and tokenize is None
    dataset, collate_fn = spec.dataset, spec.collate_fn
    if plan.decode == "cpu":
        dataset = ImageFileUint8(spec.dataset, plan.eval_transform)
    elif plan.decode == "gpu":
        from cl_core.embed.batch_decoding import collate_encoded

        dataset, collate_fn = ImageFileBytes(spec.dataset), collate_encoded
    return torch.utils.data.DataLoader(
        IndexedDataset(dataset, slice_tensors=in_memory),
        batch_sampler=batch_sampler,
        collate_fn=BatchCollator(collate_fn, tokenize),
        num_workers=n_workers,
        pin_memory=plan.device.type == "cuda",
        # Batches in flight: 4 per worker, 2 beyond 8 workers (shared memory is finite).
        prefetch_factor=(4 if n_workers <= 8 else 2) if n_workers else None,
        multiprocessing_context=_worker_context() if n_workers else None,
    )


def _worker_context() -> Any:
    """Start DataLoader workers from a forkserver, not by forking this process.

    The pipeline embeds inside Prefect tasks, next to Prefect's, Dask's and zarr's threads; a
    worker forked from such a process inherited their state and died on exit (exit code 1, found
    by the full test suite). A forkserver forks from a clean, single-threaded process. What made
    it slow (~11 s to the first batch here, 42 s with 8 workers on 16 cores) was that the server
    imported only torch: each worker then re-imported the main script and, to unpickle the
    dataset, timm and torchvision, all at once. The server now preloads those (and the main
    script, Python's own default), so a worker is one ``fork()`` of a warm process; call
    :func:`start_worker_server` early to have that import done in the background before the
    first loader starts. Datasets must be picklable (module-level classes), as under ``spawn``.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_WORKER_PRELOAD))  # ignored once the server runs
    return context


def start_worker_server() -> None:
    """Start the process DataLoader workers are forked from, in the background (idempotent).

    It imports torch, PIL, timm's transforms and this package once per process (seconds); call
    this at start-up (the CLI does, before its Prefect server starts) so the first image-folder
    loader does not wait for it. A no-op where the platform has no forkserver.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    _worker_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()
