"""Stage 1, embedding: dataset -> encoder -> pooled features -> sharded Zarr store (torch-heavy).

``embed_dataset`` = :func:`plan_store` (create or reopen the store keyed by the dataset and model
identity) + :func:`embed_shards` (compute the missing shards) + ``EmbeddingStore.finalize``. The
store keeps the raw pooled features; normalisation is applied lazily by its readers.
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
from cl_core.embed.identity import (
    DatasetIdentity,
    clear_file_keys_cache,
    dataset_fingerprint,
    dataset_identity,
    list_file_keys,
)
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
from cl_core.embed.stage import (
    embed_dataset,
    embed_shards,
    plan_inference,
    plan_store,
    resolve_decode,
)
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
    "clear_file_keys_cache",
    "clear_model_cache",
    "count_samples",
    "cpu_has_native_bf16",
    "dataset_fingerprint",
    "dataset_identity",
    "embed_dataset",
    "embed_shards",
    "file_sha256",
    "image_transform",
    "list_file_keys",
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
