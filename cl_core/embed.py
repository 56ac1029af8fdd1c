"""The embedding stage: dataset -> encoder -> pooled features -> sharded Zarr store.

``embed_dataset`` = :func:`plan_store` (create, or reopen, the store keyed by the dataset
fingerprint and the model identity) + :func:`embed_shards` (compute the missing shards) +
``EmbeddingStore.finalize`` (dataset-wide mean/std). The store keeps the raw pooled features;
normalisation is applied lazily by its readers.

The parts: :mod:`cl_core.models` resolves encoders and weights, :mod:`cl_core.datasets` datasets
and their fingerprint, :mod:`cl_core.features` hooks and pooling (the design's definition of a
sample's features), :mod:`cl_core.inference` the batched, overlapped GPU/CPU inference.

Example
-------
>>> from cl_core.embed import EmbedConfig, embed_dataset
>>> store = embed_dataset("digits", "runs/digits.zarr", EmbedConfig(model="tf_efficientnet_lite0"))
>>> store.shape, store.labels()[:3]    # doctest: +SKIP
((1797, 1280), array([0, 1, 2]))
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cl_core import CODE_VERSION
from cl_core._validation import check_choice
from cl_core.datasets import DatasetSpec, dataset_fingerprint, resolve_dataset
from cl_core.features import OUTPUT_KEYS, POOLINGS, capture_layer, pool_features, select_output
from cl_core.inference import (
    PRECISIONS,
    InferencePlan,
    probe,
    resolve_device,
    resolve_precision,
    run_shards,
)
from cl_core.models import DEFAULT_MODEL, MODEL_ALIASES, LoadedModel, load_model

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "OUTPUT_KEYS",
    "POOLINGS",
    "PRECISIONS",
    "EmbedConfig",
    "capture_layer",
    "dataset_fingerprint",
    "embed_dataset",
    "embed_shards",
    "load_model",
    "plan_store",
    "pool_features",
    "resolve_dataset",
    "resolve_device",
    "resolve_precision",
    "select_output",
]

STORE_DTYPES = ("float16", "float32")
READER_NORMALIZATIONS = ("standard", "l2", "none")


@dataclass(frozen=True)
class EmbedConfig:
    """How to embed a dataset.

    Parameters
    ----------
    model : str, nn.Module or callable
        See :func:`cl_core.models.load_model`; default the paper's DINO ViT-S/16.
    weights : path, optional
        Local weights file for a timm model id (safetensors or torch state dict).
    pretrained : bool
        Without ``weights``: hub weights (True) or random initialisation (False).
    layer : str, optional
        Name of a module (``model.named_modules()``) whose output is the feature.
    pooling : {"auto", "cls", "mean", "none"}
        ``auto``: CLS token for (B, T, C), mean over H, W for (B, C, H, W).
    output_key : str, optional
        Key of dict / ModelOutput results; default the first of :data:`OUTPUT_KEYS` present.
    batch_size : int
        Samples per forward pass.
    num_workers : int, optional
        DataLoader workers; default up to 8 with CUDA, none with CPU inference on < 8 cores
        (workers would take cores from the model), for text and for in-memory TensorDatasets
        (sliced, not collated).
    device : str
        ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:1`` ...
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast dtype; ``auto`` = bf16 on CUDA (fp16 without bf16 support), fp32 on CPU.
    dtype : {"float16", "float32"}
        Storage dtype; values beyond float16's range raise.
    chunk_rows, shard_rows : int
        Store layout (rows per chunk; rows per shard, a multiple of ``chunk_rows``).
    normalize : {"standard", "l2", "none"}
        Normalisation for the readers downstream (the pipeline passes it on to clustering);
        never applied before writing and not part of the store's identity.
    image_size : int, optional
        Input size for the built-in image datasets (default: the model's).
    channels_last : bool, optional
        Channels-last memory format for 4-D inputs; default on CUDA only.
    writer_queue : int
        Complete shards that may wait for the background writer before compute pauses.
    """

    model: Any = DEFAULT_MODEL
    weights: str | os.PathLike[str] | None = None
    pretrained: bool = True
    layer: str | None = None
    pooling: str = "auto"
    output_key: str | None = None
    batch_size: int = 256
    num_workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    dtype: str = "float16"
    chunk_rows: int = 4096
    shard_rows: int | None = None
    normalize: str = "standard"
    image_size: int | None = None
    channels_last: bool | None = None
    writer_queue: int = 2

    def __post_init__(self) -> None:
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("dtype", self.dtype, STORE_DTYPES)
        check_choice("normalize", self.normalize, READER_NORMALIZATIONS)
        for name in ("batch_size", "chunk_rows", "writer_queue"):
            _check_positive(name, getattr(self, name))
        for name in ("shard_rows", "image_size"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.num_workers is not None and (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            raise ValueError(
                f"num_workers must be None or an integer >= 0, got {self.num_workers!r}"
            )
        if not isinstance(self.device, str):
            raise TypeError(
                f"device must be a string such as 'auto' or 'cuda:0', got {self.device!r}"
            )


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# -- the job: model, dataset, identity ---------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Job:
    plan: InferencePlan
    config: EmbedConfig
    attrs: dict[str, Any]


def _prepare(dataset: Any, config: EmbedConfig | None, dataset_id: str | None) -> _Job:
    config = EmbedConfig() if config is None else config
    if not isinstance(config, EmbedConfig):
        raise TypeError(f"config must be an EmbedConfig, got {type(config).__name__}")
    loaded = load_model(config.model, config.weights, pretrained=config.pretrained)
    spec = resolve_dataset(dataset, image_size=config.image_size, data_config=loaded.data_config)
    device = resolve_device(config.device)
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
    )
    # Everything here enters the store's fingerprint (except code_version): a store made with
    # another model, layer, pooling, precision or preprocessing is never reused.
    attrs = {
        "dataset_fingerprint": dataset_fingerprint(spec, dataset_id),
        "model_id": loaded.model_id,
        "weights_sha256": loaded.weights_sha256,
        "layer": config.layer,
        "pooling": config.pooling,
        "output_key": config.output_key,
        "precision": plan.precision,
        "input_transform": _transform_description(spec, loaded, config),
        "code_version": CODE_VERSION,
    }
    return _Job(plan, config, attrs)


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


def _create(job: _Job, path: Any, overwrite: bool) -> Any:
    from cl_core.store import create_store

    dim, with_labels = probe(job.plan)
    return create_store(
        path,
        job.plan.spec.n_samples,
        dim,
        chunk_rows=job.config.chunk_rows,
        shard_rows=job.config.shard_rows,
        dtype=job.config.dtype,
        attrs=job.attrs,
        with_labels=with_labels,
        overwrite=overwrite,
    )


def _check_store(job: _Job, store: Any) -> None:
    stored = store.attrs
    differing = [
        key for key in job.attrs if key != "code_version" and stored.get(key) != job.attrs[key]
    ]
    if store.n_rows != job.plan.spec.n_samples:
        differing.append(f"n_rows ({store.n_rows} != {job.plan.spec.n_samples})")
    if differing:
        raise ValueError(
            f"store {store.path!r} was planned for another dataset or model (differs in "
            f"{', '.join(differing)}); call embed_shards with the dataset, config and dataset_id "
            f"given to plan_store"
        )


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


# -- public entry points ---------------------------------------------------------------------


def plan_store(
    dataset: Any,
    path: Any,
    config: EmbedConfig | None = None,
    *,
    dataset_id: str | None = None,
    overwrite: bool = False,
) -> Any:
    """Create the embedding store for ``dataset``, or reopen the one already at ``path``.

    A store at ``path`` is reused only if it was made for the same dataset fingerprint, model,
    weights, layer, pooling, precision, preprocessing and layout; otherwise
    ``cl_core.store.StoreMismatchError`` says what differs (with ``overwrite=True`` the store is
    recreated). Runs the model on sample 0 to learn the feature dimension.

    Parameters
    ----------
    dataset, config, dataset_id, overwrite
        As for :func:`embed_dataset`.
    path : str, os.PathLike or zarr Store
        Store location.

    Returns
    -------
    EmbeddingStore
        Its ``missing_shards()`` are what :func:`embed_shards` computes.
    """
    return _create(_prepare(dataset, config, dataset_id), path, overwrite)


def embed_shards(
    store: Any,
    dataset: Any,
    config: EmbedConfig | None = None,
    shards: Sequence[int] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    dataset_id: str | None = None,
) -> list[int]:
    """Compute and write the given shards (default: the missing ones) of a planned store.

    Safe to call from several processes at once for disjoint shards (e.g. Prefect tasks); the
    model is loaded once per process.

    Parameters
    ----------
    store : EmbeddingStore
        From :func:`plan_store`; must have been planned for this dataset and config.
    dataset, config, dataset_id
        As given to :func:`plan_store`.
    shards : sequence of int, optional
        Shard indices to compute (again); default ``store.missing_shards()``.
    progress : callable(done, total), optional
        Called from the calling thread with the number of shards written so far.

    Returns
    -------
    list of int
        The shards written, ascending.
    """
    job = _prepare(dataset, config, dataset_id)
    _check_store(job, store)
    todo = _check_shards(store, shards)
    run_shards(job.plan, store, todo, progress)
    return todo


def embed_dataset(
    dataset: Any,
    path: Any,
    config: EmbedConfig | None = None,
    *,
    dataset_id: str | None = None,
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
        Model, layer, pooling, batching, precision, storage dtype and layout.
    dataset_id : str, optional
        Your own dataset identity instead of the sampled-content fingerprint.
    progress : callable(done, total), optional
        Shards written so far.
    overwrite : bool
        Recreate a store made for other data or another model instead of raising.

    Returns
    -------
    EmbeddingStore
        ``features`` (N, D) raw pooled features; ``labels`` (N,) when the samples carry integer
        labels; attrs record model id, weights sha256, layer, pooling, precision, preprocessing
        and dataset fingerprint.
    """
    job = _prepare(dataset, config, dataset_id)
    store = _create(job, path, overwrite)
    if not store.is_complete:
        run_shards(job.plan, store, store.missing_shards(), progress)
        store.finalize()
    return store
