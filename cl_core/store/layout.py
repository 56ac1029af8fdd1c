"""The store's layout: constants, the ``attrs`` it records, location checks, opening the group.

:func:`_write_new_store` creates the arrays of a new store; every other helper here validates
arguments or reads the group's metadata (zarr is imported on use, so ``import cl_core`` stays cheap).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from cl_core import CODE_VERSION
from cl_core.io import content_hash, json_default
from cl_core.store.moments import N_MOMENTS

DTYPES = ("float16", "float32")
SCHEMA_VERSION = 1
ATTRS_KEY = "cl_curriculum"
DEFAULT_CHUNK_ROWS = 4096
DEFAULT_CHUNKS_PER_SHARD = 4

PROVENANCE_KEYS = (
    "dataset_fingerprint",
    "model_id",
    "weights_sha256",
    "layer",
    "pooling",
    "input_transform",
    "code_version",
)
"""Provenance attributes every store carries (``None`` when the caller did not give one)."""

NON_IDENTITY_KEYS = frozenset({"code_version", "created_at"})
"""Caller attributes that describe *when/with what release* a store was made, not *what* it holds.

Every other caller attribute (model id, weights hash, layer, pooling, input transform, precision,
...) enters :attr:`EmbeddingStore.fingerprint`. ``code_version`` stays out so that upgrading the
package does not throw away hours of embeddings whose model and inputs are unchanged.
"""

_LAYOUT_KEYS = ("schema", "n_rows", "dim", "dtype", "chunk_rows", "shard_rows", "with_labels")
_MANAGED_KEYS = frozenset(
    {
        *_LAYOUT_KEYS,
        "fingerprint",
        "feature_mean",
        "feature_std",
        "complete",
        "n_shards",
        "n_skipped",
    }
)
_LABEL_DTYPE = "int64"
_LABEL_FILL = -1


class StoreMismatchError(ValueError):
    """An existing store at the path was made for other data, another model or another layout."""


def _check_positive_int(name: str, value: object, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}{hint}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}{hint}")
    return int(value)


def _check_dtype(dtype: object) -> str:
    try:
        name = np.dtype(dtype).name  # type: ignore[call-overload]
    except TypeError:
        name = repr(dtype)
    if name not in DTYPES:
        raise ValueError(
            f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)} "
            "(float16 halves the disk size; use float32 for features beyond +-65504)"
        )
    return name


def _json_normalized(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so tuples/numpy scalars compare equal to what the store holds."""
    try:
        return dict(json.loads(json.dumps(dict(value), default=json_default, allow_nan=False)))
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must hold JSON-serialisable values (str, int, float, bool, None, lists, "
            f"dicts); got {value!r} ({error}). Convert other objects to strings first."
        ) from None


def _check_attrs(attrs: object, layout: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(attrs, Mapping):
        raise TypeError(
            f"attrs must be a dict of provenance values, got {type(attrs).__name__}; e.g. "
            "attrs={'dataset_fingerprint': ..., 'model_id': ..., 'layer': ..., 'pooling': ...}"
        )
    bad_keys = [key for key in attrs if not isinstance(key, str)]
    if bad_keys:
        raise TypeError(f"attrs keys must be strings, got {bad_keys!r}")
    # Echoing a layout value (e.g. the config's dtype) is harmless; contradicting it is not.
    conflicts = sorted(
        key
        for key in _MANAGED_KEYS.intersection(attrs)
        if key not in layout or layout[key] != attrs[key]
    )
    if conflicts:
        raise ValueError(
            f"attrs may not set {conflicts} to other values than the store's own "
            f"({', '.join(f'{key}={layout.get(key)!r}' for key in conflicts)}): the store manages "
            "those keys; remove them (layout comes from create_store's arguments, statistics from "
            "finalize())"
        )
    fingerprint = attrs.get("dataset_fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError(
            f"attrs['dataset_fingerprint'] must be a non-empty string, got {fingerprint!r}; it keys "
            "the store so another dataset never reuses these embeddings. Use "
            "cl_core.embed.dataset_fingerprint(dataset), array_fingerprint(features) or a "
            "dataset_id of your own"
        )
    normalized = _json_normalized("attrs", attrs)
    for key in PROVENANCE_KEYS:
        normalized.setdefault(key, CODE_VERSION if key == "code_version" else None)
    return normalized


def _check_store_location(path: object) -> Any:
    if isinstance(path, os.PathLike):
        return os.fspath(path)
    if isinstance(path, str):
        if not path:
            raise ValueError("path must not be empty; give a directory like 'runs/emb.zarr'")
        return path
    from zarr.abc.store import Store
    from zarr.storage import StorePath

    if isinstance(path, (Store, StorePath)):
        return path
    raise TypeError(
        f"path must be a local path, an fsspec URL (e.g. 's3://bucket/emb.zarr') or a zarr Store, "
        f"got {type(path).__name__}"
    )


def _storage_options_for(location: Any, storage_options: Mapping[str, Any] | None) -> Any:
    """fsspec options for URL paths; ``file://`` gets ``auto_mkdir`` so chunk folders appear."""
    if not isinstance(location, str) or "://" not in location:
        if storage_options:
            raise ValueError(
                f"storage_options only apply to fsspec URLs, but path {location!r} is not one; "
                "drop storage_options or use a URL such as 's3://bucket/emb.zarr'"
            )
        return None
    options = dict(storage_options or {})
    if location.startswith("file://"):
        options.setdefault("auto_mkdir", True)
    return options


def _describe(location: Any) -> str:
    return location if isinstance(location, str) else repr(location)


def _content_fingerprint(meta: Mapping[str, Any]) -> str:
    """sha256 (16 hex) of what determines the stored values: identity attrs, shape, dtype."""
    identity = {
        key: value
        for key, value in meta.items()
        if key not in _MANAGED_KEYS and key not in NON_IDENTITY_KEYS
    }
    identity.update(schema=meta["schema"], n_rows=meta["n_rows"], dim=meta["dim"])
    identity["dtype"] = meta["dtype"]
    return content_hash(identity, 16, allow_nan=True)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open_group(location: Any, mode: Literal["r", "r+", "w", "w-"], storage_options: Any) -> Any:
    import zarr

    return zarr.open_group(store=location, mode=mode, storage_options=storage_options)


def _existing_group(location: Any, storage_options: Any) -> Any | None:
    """The Zarr group already at ``location`` (read-only), or None when nothing is there."""
    import zarr.errors

    try:
        return _open_group(location, "r", storage_options)
    except zarr.errors.ContainsArrayError:
        raise FileExistsError(
            f"path {_describe(location)} holds a Zarr array, not an embedding store; refusing to "
            "delete it. Choose another path or remove it yourself"
        ) from None
    except FileNotFoundError:  # includes zarr's GroupNotFoundError
        return None


def _meta_of(group: Any, location: Any) -> dict[str, Any]:
    meta = group.attrs.asdict().get(ATTRS_KEY)
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA_VERSION:
        raise ValueError(
            f"path {_describe(location)} is a Zarr group but not a cl_curriculum embedding store "
            f"(schema {SCHEMA_VERSION}); its attrs lack '{ATTRS_KEY}'. Choose another path, or "
            "create the store with create_store()/store_from_array()"
        )
    return dict(meta)


def _mismatch(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    keys = [key for key in (*_LAYOUT_KEYS, "fingerprint") if existing.get(key) != wanted.get(key)]
    identity_keys = sorted(
        key
        for key in set(existing) | set(wanted)
        if key not in _MANAGED_KEYS
        and key not in NON_IDENTITY_KEYS
        and existing.get(key) != wanted.get(key)
    )
    return [
        f"{key}: stored {_short(existing.get(key))} != requested {_short(wanted.get(key))}"
        for key in [*keys, *identity_keys]
    ]


def _write_new_store(
    location: Any, meta: Mapping[str, Any], options: Any, *, overwrite: bool
) -> None:
    import zarr.errors

    try:
        group = _open_group(location, "w" if overwrite else "w-", options)
    except (FileExistsError, zarr.errors.ContainsGroupError):
        raise FileExistsError(
            f"path {_describe(location)} already holds files that are not a Zarr store; refusing "
            "to write an embedding store over them. Choose a new or empty path"
        ) from None
    n_rows, dim, n_shards = meta["n_rows"], meta["dim"], meta["n_shards"]
    chunk_rows = meta["chunk_rows"]
    # NaN fill: rows of unwritten shards read as NaN, never as plausible zeros.
    group.create_array(
        "features",
        shape=(n_rows, dim),
        chunks=(chunk_rows, dim),
        dtype=meta["dtype"],
        fill_value=np.nan,
    )
    if meta["with_labels"]:
        group.create_array(
            "labels", shape=(n_rows,), chunks=(chunk_rows,), dtype=_LABEL_DTYPE, fill_value=-1
        )
    # One chunk per shard: each marker / statistics row is its own storage object.
    group.create_array("shard_done", shape=(n_shards,), chunks=(1,), dtype="uint8", fill_value=0)
    group.create_array(
        "shard_stats",
        shape=(n_shards, N_MOMENTS, dim),
        chunks=(1, N_MOMENTS, dim),
        dtype="float64",
        fill_value=np.nan,
    )
    # JSON list of {"index", "path", "reason"} per shard; "" = nothing skipped.
    group.create_array("shard_skipped", shape=(n_shards,), chunks=(1,), dtype=str)
    group.attrs.update({ATTRS_KEY: dict(meta)})
