"""The embedding stage's entry points: :func:`embed_dataset`, :func:`plan_store` + :func:`embed_shards`
(one call per shard from an orchestrator), and :func:`plan_inference`.

Several processes may embed the same store at once (two scheduled runs, say): each shard is
computed by whichever process locks it first (a lock file per shard, see
:meth:`cl_core.store.EmbeddingStore.try_lock`), the others skip it or wait for it, and the result
is the same as one process's. A sample that cannot be loaded raises
:class:`cl_core.embed.BadSampleError` naming it, or with ``on_bad_sample="skip"`` is recorded in
the store and left out. The resolved job (options, the store's identity) is
:mod:`cl_core.embed.job`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cl_core.embed.config import EmbedConfig
from cl_core.embed.identity import DatasetIdentity
from cl_core.embed.job import (
    _check_no_skipped,
    _check_shards,
    _check_store,
    _create,
    _prepare,
    _run_locked,
)
from cl_core.embed.plan import InferencePlan

# -- public entry points ---------------------------------------------------------------------


def plan_inference(dataset: Any, config: EmbedConfig | None = None) -> InferencePlan:
    """The inference plan :func:`embed_dataset` would run: model loaded, dataset resolved,
    device, precision, workers and decode path chosen (no store is created).

    Useful to check what a configuration resolves to (e.g. ``plan.decode`` is ``"gpu"`` or
    ``"cpu"``) and, with :func:`cl_core.embed.make_loader`, to time the data loader alone.
    """
    return _prepare(dataset, config, None).plan


def plan_store(
    dataset: Any,
    path: Any,
    config: EmbedConfig | None = None,
    *,
    dataset_id: str | DatasetIdentity | None = None,
    verify_content: bool = False,
    overwrite: bool = False,
) -> Any:
    """Create the embedding store for ``dataset``, or reopen the one already at ``path``.

    A store at ``path`` is reused only if it was made for the same dataset identity, model,
    weights, layer, pooling, precision, preprocessing and layout; otherwise
    ``cl_core.store.StoreMismatchError`` says what differs (with ``overwrite=True`` the store is
    recreated). Runs the model on sample 0 to learn the feature dimension.

    Parameters
    ----------
    dataset, config, dataset_id, verify_content, overwrite
        As for :func:`embed_dataset`.
    path : str, os.PathLike or zarr Store
        Store location.

    Returns
    -------
    EmbeddingStore
        Its ``missing_shards()`` are what :func:`embed_shards` computes.
    """
    return _create(_prepare(dataset, config, dataset_id, verify_content), path, overwrite)


def embed_shards(
    store: Any,
    dataset: Any,
    config: EmbedConfig | None = None,
    shards: Sequence[int] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    dataset_id: str | DatasetIdentity | None = None,
    verify_content: bool = False,
) -> list[int]:
    """Compute and write the given shards (default: the missing ones) of a planned store.

    Safe to call from several processes at once, for the same or different shards (e.g. Prefect
    tasks, or two runs of the same pipeline): each shard is written by exactly one of them
    (local stores lock each shard; give each worker its own shards for stores at URLs). The
    model is loaded once per process.

    Parameters
    ----------
    store : EmbeddingStore
        From :func:`plan_store`; must have been planned for this dataset and config.
    dataset, config, dataset_id, verify_content
        As given to :func:`plan_store`. Passing the :class:`DatasetIdentity` that
        :func:`dataset_identity` returned as ``dataset_id`` skips listing the dataset again.
    shards : sequence of int, optional
        Shard indices to compute; default ``store.missing_shards()``. Shards another process
        has written meanwhile are not computed again.
    progress : callable(done, total), optional
        Called from the calling thread with the number of shards written so far.

    Returns
    -------
    list of int
        The shards this call wrote, ascending.

    Raises
    ------
    BadSampleError
        A sample could not be loaded and ``config.on_bad_sample`` is ``"error"``.
    """
    job = _prepare(dataset, config, dataset_id, verify_content)
    _check_store(job, store)
    todo = _check_shards(store, shards)
    written = _run_locked(job, store, todo, progress)
    _check_no_skipped(job, store)
    return written


def embed_dataset(
    dataset: Any,
    path: Any,
    config: EmbedConfig | None = None,
    *,
    dataset_id: str | DatasetIdentity | None = None,
    verify_content: bool = False,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> Any:
    """Embed every sample of ``dataset`` into a finalized Zarr store at ``path`` (resumable).

    Parameters
    ----------
    dataset : Dataset, DataLoader, str or list of str
        A map-style Dataset; a DataLoader that does not shuffle; ``"digits"``;
        ``"imagefolder:PATH"``; or a list of strings (text encoder). Row i is sample i.
    path : str, os.PathLike or zarr Store
        Store location (local directory or fsspec URL).
    config : EmbedConfig, optional
        Model, layer, pooling, batching, precision, storage dtype, layout, bad-sample policy.
    dataset_id : str or DatasetIdentity, optional
        Your own name for the dataset version (instead of the identity
        :func:`dataset_identity` computes: the full file listing of an image folder, the
        sampled content of a generic dataset), or an identity computed before.
    verify_content : bool
        Identify file datasets by their files' bytes instead of sizes and mtimes.
    progress : callable(done, total), optional
        Shards written so far.
    overwrite : bool
        Recreate a store made for other data or another model instead of raising.

    Returns
    -------
    EmbeddingStore
        ``features`` (N, D) raw pooled features; ``labels`` (N,) when the samples carry integer
        labels; attrs record model id, weights sha256, layer, pooling, precision, preprocessing,
        decoding and dataset identity; ``skipped_samples`` the samples left out.

    Raises
    ------
    BadSampleError
        A sample could not be loaded and ``config.on_bad_sample`` is ``"error"``.
    """
    job = _prepare(dataset, config, dataset_id, verify_content)
    store = _create(job, path, overwrite)
    if not store.is_complete:
        _run_locked(job, store, store.missing_shards(), progress)
        with store.lock("finalize"):
            if not store.is_complete:  # another process may have finalized meanwhile
                store.finalize()
    _check_no_skipped(job, store)
    return store
