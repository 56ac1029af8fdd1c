"""The embedding stage: :func:`embed_dataset`, :func:`plan_store` + :func:`embed_shards` (one call
per shard from an orchestrator), :func:`plan_inference`, and the job they run.

A job (:func:`prepare_job`) is the model, the dataset, the resolved options and the store's
identity attrs. Several processes may embed the same store at once (two scheduled runs, say):
each shard is computed by whichever process locks it first (a lock file per shard, see
:meth:`cl_core.store.EmbeddingStore.try_lock`), the others skip it or wait for it, and the result
is the same as one process's. A sample that cannot be loaded raises
:class:`cl_core.embed.BadSampleError` naming it, or with ``on_bad_sample="skip"`` is recorded in
the store and left out.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cl_core import CODE_VERSION
from cl_core.devices import resolve_device
from cl_core.embed.config import DECODERS, EmbedConfig
from cl_core.embed.datasets import BadSampleError, DatasetSpec, resolve_dataset
from cl_core.embed.identity import DatasetIdentity, dataset_identity, list_file_keys
from cl_core.embed.inference import probe, run_shards
from cl_core.embed.loader import start_worker_server
from cl_core.embed.models import LoadedModel, load_model
from cl_core.embed.plan import InferencePlan, resolve_cpu_threads, resolve_precision
from cl_core.validation import check_choice

_LOCK_POLL_S = 0.2


# -- the job: model, dataset, identity ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EmbedJob:
    """One embedding job: the inference plan, the config, and the store identity attrs."""

    plan: InferencePlan
    config: EmbedConfig
    attrs: dict[str, Any]
    verify_content: bool = False


def prepare_job(
    dataset: Any,
    config: EmbedConfig | None,
    dataset_id: str | DatasetIdentity | None,
    verify_content: bool = False,
) -> EmbedJob:
    """Load the model, resolve the dataset and every ``auto`` option, and compute the store's
    identity attrs (what :func:`plan_store` and :func:`embed_shards` run)."""
    config = EmbedConfig() if config is None else config
    if not isinstance(config, EmbedConfig):
        raise TypeError(f"config must be an EmbedConfig, got {type(config).__name__}")
    device = resolve_device(config.device)
    if config.num_workers or (config.num_workers is None and device.type == "cuda"):
        start_worker_server()  # its imports overlap with loading the model
    loaded = load_model(config.model, config.weights, pretrained=config.pretrained)
    spec = resolve_dataset(dataset, image_size=config.image_size, data_config=loaded.data_config)
    decode = resolve_decode(config.decode, spec, loaded, device)
    plan = InferencePlan(
        loaded=loaded,
        spec=spec,
        device=device,
        precision=resolve_precision(config.precision, device),
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        layer=config.layer,
        pooling=config.pooling,
        output_key=config.output_key,
        channels_last=config.channels_last,
        writer_queue=config.writer_queue,
        on_bad_sample=config.on_bad_sample,
        decode=decode,
        eval_transform=_eval_transform(config, loaded, decode),
        cpu_threads=resolve_cpu_threads(config.n_threads, device),
    )
    if plan.workers:
        start_worker_server()
    identity = dataset_identity(spec, dataset_id, verify_content=verify_content)
    # Everything here enters the store's fingerprint (except code_version and cpu_threads, see
    # cl_core.store.NON_IDENTITY_KEYS): a store made with another model, layer, pooling,
    # precision or preprocessing is never reused.
    attrs = {
        "dataset_fingerprint": identity.fingerprint,
        "dataset_identity_method": identity.method,
        "model_id": loaded.model_id,
        "weights_sha256": loaded.weights_sha256,
        "layer": config.layer,
        "pooling": config.pooling,
        "output_key": config.output_key,
        "precision": plan.precision,
        "input_transform": _transform_description(spec, loaded, config),
        "decode": decode,
        "cpu_threads": plan.cpu_threads,
        "code_version": CODE_VERSION,
    }
    return EmbedJob(plan, config, attrs, verify_content)


def resolve_decode(decode: str, spec: DatasetSpec, loaded: LoadedModel, device: Any) -> str:
    """Where ``spec``'s samples are decoded: ``dataset``, ``cpu`` or ``gpu``.

    Only image folders are decoded by the pipeline (``dataset``: other datasets load their own
    samples); ``auto`` -> ``gpu`` when the model runs on CUDA and the GPU decoder works there, else
    ``cpu``. The resolved value (not ``auto``) is what identifies an embedding: the two decoders
    give slightly different pixels. Raises for ``gpu`` where it cannot run.
    """
    from cl_core.embed.files import ImageFiles

    check_choice("decode", decode, DECODERS)
    if not isinstance(spec.dataset, ImageFiles) or loaded.kind == "text":
        if decode == "gpu":
            raise ValueError(
                f"decode='gpu' decodes image files, but the dataset is "
                f"{spec.description or type(spec.dataset).__name__!r}, which loads its own "
                f"samples; use decode='auto' (or pass 'imagefolder:PATH')"
            )
        return "dataset"
    from cl_core.embed.batch_decoding import choose_decoder

    return choose_decoder(decode, device, argument="decode")


def _eval_transform(config: EmbedConfig, loaded: LoadedModel, decode: str) -> Any:
    """The tensor eval transform of the ``cpu`` / ``gpu`` decode paths (None for ``dataset``)."""
    if decode == "dataset":
        return None
    from cl_core.embed.datasets import resolved_data_config
    from cl_core.embed.transform import EvalTransform

    return EvalTransform.from_data_config(
        resolved_data_config(loaded.data_config, config.image_size)
    )


def _transform_description(spec: DatasetSpec, loaded: LoadedModel, config: EmbedConfig) -> str:
    if spec.kind == "text":
        return f"tokenizer of {loaded.model_id}"
    builtin = spec.dataset_id is not None or spec.description.startswith("imagefolder:")
    if not builtin:
        return "the dataset's own"
    data_config = dict(loaded.data_config or {})
    if config.image_size is not None:
        data_config["input_size"] = (3, config.image_size, config.image_size)
    return "timm eval transform " + json.dumps(data_config, sort_keys=True, default=str)


def _create(job: EmbedJob, path: Any, overwrite: bool, reuse_from: Any = None) -> Any:
    from cl_core.store import create_store, reuse_rows

    dim, with_labels = probe(job.plan)
    store = create_store(
        path,
        job.plan.spec.n_samples,
        dim,
        chunk_rows=job.config.chunk_rows,
        shard_rows=job.config.shard_rows,
        dtype=job.config.dtype,
        attrs=job.attrs,
        with_labels=with_labels,
        overwrite=overwrite,
        file_keys=list_file_keys(job.plan.spec, job.verify_content),
    )
    if reuse_from is not None:
        reuse_rows(store, reuse_from, _listing_labels(job.plan.spec) if with_labels else None)
    return store


def _listing_labels(spec: DatasetSpec) -> Any:
    """The labels of a file dataset's rows (the class folders of this listing), or None."""
    from cl_core.embed.files import ImageFiles

    if isinstance(spec.dataset, ImageFiles):
        return spec.dataset.labels
    return None


def _check_store(job: EmbedJob, store: Any) -> None:
    from cl_core.store import NON_IDENTITY_KEYS

    stored = store.attrs
    differing = [
        key
        for key in job.attrs
        if key not in NON_IDENTITY_KEYS and stored.get(key) != job.attrs[key]
    ]
    if store.n_rows != job.plan.spec.n_samples:
        differing.append(f"n_rows ({store.n_rows} != {job.plan.spec.n_samples})")
    if differing:
        raise ValueError(
            f"store {store.path!r} was planned for another dataset or model (differs in "
            f"{', '.join(differing)}); call embed_shards with the dataset, config and dataset_id "
            f"given to plan_store"
        )


def _store_threads(job: EmbedJob, store: Any) -> EmbedJob:
    """``job`` with the CPU thread count ``store`` was created with (its ``cpu_threads`` attr).

    One count per store, whichever process embeds which shard (see ``EmbedConfig.n_threads``).
    A store without one (made on CUDA, or before the count was recorded) is embedded with the
    count this process resolved; a count given explicitly that contradicts the store's raises.
    """
    recorded = store.attrs.get("cpu_threads")
    if job.plan.cpu_threads is None or recorded is None or recorded == job.plan.cpu_threads:
        return job
    if job.config.n_threads is not None:
        raise ValueError(
            f"n_threads={job.config.n_threads} contradicts the store {store.path!r}, whose shards "
            f"are embedded with {recorded} CPU threads (fp32 CPU features depend on the thread "
            f"count, and one store holds one); pass n_threads={recorded} or n_threads=None, or "
            f"overwrite the store"
        )
    return dataclasses.replace(job, plan=dataclasses.replace(job.plan, cpu_threads=recorded))


def _check_shards(store: Any, shards: Sequence[int] | None) -> list[int]:
    if shards is None:
        return list(store.missing_shards())
    chosen = sorted({int(shard) for shard in shards})
    bad = [shard for shard in chosen if not 0 <= shard < store.n_shards]
    if bad:
        raise ValueError(
            f"shards {bad} are out of range for a store with {store.n_shards} shards; "
            f"pass indices in [0, {store.n_shards}) (see store.missing_shards())"
        )
    return chosen


def _run_locked(
    job: EmbedJob,
    store: Any,
    shards: Sequence[int],
    progress: Callable[[int, int], None] | None,
) -> list[int]:
    """Compute ``shards``, each under its lock: one writer per shard across processes.

    A shard locked by another live process is left to it; this call waits until that process
    has written it (or died, when its lock is stale and taken over). The done marker is checked
    again after each lock is taken, so no shard is computed twice.
    """
    total, written, remaining = len(shards), [], list(shards)
    while remaining:
        claimed, waiting = {}, []
        for shard in remaining:
            lock = store.try_lock(shard)
            if lock is None:
                waiting.append(shard)
            elif store.is_shard_done(shard):
                lock.release()  # written by another process meanwhile
            else:
                claimed[shard] = lock
        offset = total - len(remaining)

        def report(done: int, _: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, total)

        try:
            run_shards(job.plan, store, sorted(claimed), report, _releaser(claimed))
        finally:
            for lock in claimed.values():
                lock.release()
        written.extend(sorted(claimed))
        remaining = [shard for shard in waiting if not store.is_shard_done(shard)]
        if remaining and not claimed:
            time.sleep(_LOCK_POLL_S)
    if progress is not None and total and not written:
        progress(total, total)
    return sorted(written)


def _releaser(locks: dict[int, Any]) -> Callable[[int], None]:
    """Called by the writer once a shard is written: its lock can go."""

    def release(shard: int) -> None:
        locks[shard].release()

    return release


def _check_no_skipped(job: EmbedJob, store: Any) -> None:
    """Under ``on_bad_sample="error"``, a store holding skipped samples is an error too."""
    if job.config.on_bad_sample != "error":
        return
    skipped = store.skipped_samples
    if skipped:
        first = skipped[0]
        raise BadSampleError(first["index"], first["path"], first["reason"])


# -- public entry points ---------------------------------------------------------------------


def plan_inference(dataset: Any, config: EmbedConfig | None = None) -> InferencePlan:
    """The inference plan :func:`embed_dataset` would run: model loaded, dataset resolved,
    device, precision, workers and decode path chosen (no store is created).

    Useful to check what a configuration resolves to (e.g. ``plan.decode`` is ``"gpu"`` or
    ``"cpu"``) and, with :func:`cl_core.embed.make_loader`, to time the data loader alone.
    """
    return prepare_job(dataset, config, None).plan


def plan_store(
    dataset: Any,
    path: Any,
    config: EmbedConfig | None = None,
    *,
    dataset_id: str | DatasetIdentity | None = None,
    verify_content: bool = False,
    overwrite: bool = False,
    reuse_from: Sequence[Any] | None = None,
) -> Any:
    """Create the embedding store for ``dataset``, or reopen the one already at ``path``.

    A store at ``path`` is reused only if it was made for the same dataset identity, model,
    weights, layer, pooling, precision, preprocessing and layout; otherwise
    ``cl_core.store.StoreMismatchError`` says what differs (with ``overwrite=True`` the store is
    recreated). Runs the model on sample 0 to learn the feature dimension.

    Parameters
    ----------
    dataset, config, dataset_id, verify_content, overwrite, reuse_from
        As for :func:`embed_dataset`.
    path : str, os.PathLike or zarr Store
        Store location.

    Returns
    -------
    EmbeddingStore
        Its ``missing_shards()`` are what :func:`embed_shards` computes.
    """
    job = prepare_job(dataset, config, dataset_id, verify_content)
    return _create(job, path, overwrite, reuse_from)


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
    job = prepare_job(dataset, config, dataset_id, verify_content)
    _check_store(job, store)
    todo = _check_shards(store, shards)
    if todo:
        job = _store_threads(job, store)
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
    reuse_from: Sequence[Any] | None = None,
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
    reuse_from : sequence of paths or URLs, optional
        Earlier stores (e.g. every store of a work dir): a new store of a file dataset copies
        the rows of unchanged files from the most recent one made with the same configuration
        over the same folder (:func:`cl_core.store.reuse_rows`; ``store.reuse`` says what was
        reused, or why nothing was) and embeds only added and changed files.

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
    job = prepare_job(dataset, config, dataset_id, verify_content)
    store = _create(job, path, overwrite, reuse_from)
    if not store.is_complete:
        _run_locked(_store_threads(job, store), store, store.missing_shards(), progress)
        with store.lock("finalize"):
            if not store.is_complete:  # another process may have finalized meanwhile
                store.finalize()
    _check_no_skipped(job, store)
    return store
