"""The embedding stage: dataset -> encoder -> pooled features -> sharded Zarr store.

``embed_dataset`` = :func:`plan_store` (create, or reopen, the store keyed by the dataset identity
and the model identity) + :func:`embed_shards` (compute the missing shards) +
``EmbeddingStore.finalize`` (dataset-wide mean/std). The store keeps the raw pooled features;
normalisation is applied lazily by its readers.

The modules, one concept each (this package re-exports the public steps; torch-heavy):

- :mod:`~cl_core.embed.config` :class:`EmbedConfig`; :mod:`~cl_core.embed.stage` the entry points
  (:func:`embed_dataset`, :func:`plan_store`, :func:`embed_shards`, :func:`plan_inference`);
  :mod:`~cl_core.embed.job` the resolved job (options, store identity attrs, locked shard loop).
- :mod:`~cl_core.embed.models`, :mod:`~cl_core.embed.weights`: encoders (timm names, DINO aliases,
  local weights, the bundled lite0 and text encoder).
- :mod:`~cl_core.embed.datasets` the one dataset-spec parser (:func:`resolve_dataset`),
  :mod:`~cl_core.embed.files` image-folder listings and file datasets,
  :mod:`~cl_core.embed.identity` :func:`dataset_identity`.
- :mod:`~cl_core.embed.features`: collation, hooks, pooling (the design's definition of features).
- :mod:`~cl_core.embed.transform`, :mod:`~cl_core.embed.decoding` (uint8 CPU path),
  :mod:`~cl_core.embed.batch_decoding` (batched GPU / CPU decode of encoded files).
- :mod:`~cl_core.embed.plan` device, precision, channels-last and worker choices;
  :mod:`~cl_core.embed.loader` the DataLoader and its forkserver; :mod:`~cl_core.embed.inference`
  the autocast forward into shards; :mod:`~cl_core.embed.writer` the background shard writer.

Example
-------
>>> from cl_core.embed import EmbedConfig, embed_dataset
>>> store = embed_dataset("digits", "runs/digits.zarr", EmbedConfig(model="tf_efficientnet_lite0"))
>>> store.shape, store.labels()[:3]    # doctest: +SKIP
((1797, 1280), array([0, 1, 2]))
"""

from __future__ import annotations

from cl_core.embed.config import DECODERS, EmbedConfig
from cl_core.embed.datasets import (
    DATASET_NAMES,
    BadSampleError,
    DatasetSpec,
    count_samples,
    image_transform,
    resolve_dataset,
    resolved_data_config,
)
from cl_core.embed.features import (
    OUTPUT_KEYS,
    POOLINGS,
    capture_layer,
    pool_features,
    select_output,
)
from cl_core.embed.identity import DatasetIdentity, dataset_fingerprint, dataset_identity
from cl_core.embed.job import resolve_decode
from cl_core.embed.loader import make_loader, start_worker_server
from cl_core.embed.models import (
    DEFAULT_MODEL,
    MODEL_ALIASES,
    LoadedModel,
    canonical_model_name,
    clear_model_cache,
    load_model,
)
from cl_core.embed.plan import (
    BAD_SAMPLE_POLICIES,
    PRECISIONS,
    InferencePlan,
    cpu_has_native_bf16,
    prefers_channels_last,
    resolve_precision,
)
from cl_core.embed.stage import embed_dataset, embed_shards, plan_inference, plan_store
from cl_core.embed.weights import file_sha256

__all__ = [
    "BAD_SAMPLE_POLICIES",
    "DATASET_NAMES",
    "DECODERS",
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "OUTPUT_KEYS",
    "POOLINGS",
    "PRECISIONS",
    "BadSampleError",
    "DatasetIdentity",
    "DatasetSpec",
    "EmbedConfig",
    "InferencePlan",
    "LoadedModel",
    "canonical_model_name",
    "capture_layer",
    "clear_model_cache",
    "count_samples",
    "cpu_has_native_bf16",
    "dataset_fingerprint",
    "dataset_identity",
    "embed_dataset",
    "embed_shards",
    "file_sha256",
    "image_transform",
    "load_model",
    "make_loader",
    "plan_inference",
    "plan_store",
    "pool_features",
    "prefers_channels_last",
    "resolve_dataset",
    "resolve_decode",
    "resolve_precision",
    "resolved_data_config",
    "select_output",
    "start_worker_server",
]
