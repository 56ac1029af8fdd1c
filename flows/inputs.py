"""Resolving what a run names (model, dataset, an existing store) without importing Prefect.

The CLI checks its input with these before the run starts (:mod:`flows.checks`); the tasks use the
same functions, memoised per process, so a model or a dataset opened by the check is reused by
the run.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flows.params import DatasetParams, EmbedParams


def load_encoder(embedding: EmbedParams) -> Any:
    """The encoder for ``embedding`` (cl_core caches loaded models per process)."""
    from cl_core.embed import load_model

    return load_model(embedding.model, embedding.weights, pretrained=embedding.pretrained)


@functools.lru_cache(maxsize=4)
def _resolved_dataset(spec: str, image_size: int | None, data_config_key: str, _: str) -> Any:
    return _resolve_dataset(spec, image_size, data_config_key)


def _resolve_dataset(spec: str, image_size: int | None, data_config_key: str) -> Any:
    from cl_core.embed import resolve_dataset

    data_config = json.loads(data_config_key) or None
    return resolve_dataset(spec, image_size=image_size, data_config=data_config)


def resolve_inputs(
    dataset: DatasetParams, embedding: EmbedParams, identity: str | None = None
) -> tuple[Any, Any]:
    """(LoadedModel, DatasetSpec) for an embedding plan.

    Without ``identity`` the dataset is resolved afresh (a folder is listed again: a long-lived
    process such as ``serve`` must see today's files). With the dataset identity the flow
    computed, the result is memoised per process, so a run's tasks list the folder once.
    """
    loaded = load_encoder(embedding)
    key = json.dumps(loaded.data_config or {}, sort_keys=True, default=str)
    if identity is None:
        return loaded, _resolve_dataset(dataset.spec, embedding.image_size, key)
    return loaded, _resolved_dataset(dataset.spec, embedding.image_size, key, identity)


def describe_store(store: Any) -> dict[str, Any]:
    """The facts downstream stages and the report need about a store (no arrays)."""
    attrs = store.attrs
    return {
        "store_path": str(store.path),
        "fingerprint": store.fingerprint,
        "dataset_fingerprint": store.dataset_fingerprint,
        "n_rows": int(store.n_rows),
        "dim": int(store.dim),
        "model_id": attrs.get("model_id"),
        "has_labels": bool(store.has_labels),
        "skipped": [dict(sample) for sample in store.skipped_samples],
    }


def open_complete_store(dataset: DatasetParams) -> dict[str, Any]:
    """``describe_store`` of the finished store a ``zarr:PATH`` dataset names."""
    from cl_core.store import open_store

    store = open_store(dataset.location, read_only=True)
    if not store.is_complete:
        missing = store.missing_shards()
        raise ValueError(
            f"dataset spec {dataset.spec!r}: the store is not complete ({len(missing)} of "
            f"{store.n_shards} shards missing, or not finalized); finish the embedding first "
            "or pass the original dataset instead of zarr:PATH"
        )
    return {**describe_store(store), "n_shards": store.n_shards}
