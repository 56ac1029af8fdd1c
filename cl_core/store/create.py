"""Creating, reopening and opening embedding stores: the layout a store gets and the checks of it.

:func:`create_store` validates the layout and the provenance ``attrs``, derives the store's
content fingerprint and writes the arrays of a new store (or reopens a compatible one so that
only its missing shards are written); :func:`open_store` opens an existing one and
:func:`store_from_array` writes in-memory features as a finalized store. zarr is imported on use.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from cl_core import CODE_VERSION
from cl_core.io import content_hash, json_default
from cl_core.store.embedding_store import (
    ATTRS_KEY,
    SCHEMA_VERSION,
    EmbeddingStore,
    describe,
    open_group,
    read_meta,
)
from cl_core.store.keys import FileKeys, write_file_keys
from cl_core.store.locks import wait_lock
from cl_core.store.moments import N_MOMENTS, array_fingerprint
from cl_core.store.rows import LABEL_FILL, cast_for_storage, check_feature_array, check_labels
from cl_core.validation import check_int

DTYPES = ("float16", "float32")
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

NON_IDENTITY_KEYS = frozenset({"code_version", "created_at", "cpu_threads"})
"""Caller attributes that describe *when/with what release or setting* a store was made, not
*what* it holds.

Every other caller attribute (model id, weights hash, layer, pooling, input transform, precision,
...) enters :attr:`EmbeddingStore.fingerprint`. ``code_version`` stays out so that upgrading the
package does not throw away hours of embeddings whose model and inputs are unchanged;
``cpu_threads`` (the CPU thread count every shard of the store is embedded with, see
``cl_core.embed.EmbedConfig.n_threads``) so that a store can be resumed on a machine with another
number of cores, with the count it records.
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
        "file_keys",
        "reuse",
        "completed_at",
    }
)
_LABEL_DTYPE = "int64"


class StoreMismatchError(ValueError):
    """An existing store at the path was made for other data, another model or another layout."""


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


def identity_attrs(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The caller attributes of a store's meta that enter its fingerprint (model, layer, ...)."""
    return {
        key: value
        for key, value in meta.items()
        if key not in _MANAGED_KEYS and key not in NON_IDENTITY_KEYS
    }


def content_fingerprint(meta: Mapping[str, Any]) -> str:
    """sha256 (16 hex) of what determines the stored values: identity attrs, shape, dtype."""
    identity = identity_attrs(meta)
    identity.update(schema=meta["schema"], n_rows=meta["n_rows"], dim=meta["dim"])
    identity["dtype"] = meta["dtype"]
    return content_hash(identity, 16, allow_nan=True)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _existing_group(location: Any, storage_options: Any) -> Any | None:
    """The Zarr group already at ``location`` (read-only), or None when nothing is there."""
    import zarr.errors

    try:
        return open_group(location, "r", storage_options)
    except zarr.errors.ContainsArrayError:
        raise FileExistsError(
            f"path {describe(location)} holds a Zarr array, not an embedding store; refusing to "
            "delete it. Choose another path or remove it yourself"
        ) from None
    except FileNotFoundError:  # includes zarr's GroupNotFoundError
        return None


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
    location: Any,
    meta: Mapping[str, Any],
    options: Any,
    *,
    overwrite: bool,
    file_keys: FileKeys | None = None,
) -> None:
    import zarr.errors

    try:
        group = open_group(location, "w" if overwrite else "w-", options)
    except (FileExistsError, zarr.errors.ContainsGroupError):
        raise FileExistsError(
            f"path {describe(location)} already holds files that are not a Zarr store; refusing "
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
            "labels",
            shape=(n_rows,),
            chunks=(chunk_rows,),
            dtype=_LABEL_DTYPE,
            fill_value=LABEL_FILL,
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
    meta = dict(meta)
    if file_keys is not None:
        meta["file_keys"] = write_file_keys(group, file_keys)
    group.attrs.update({ATTRS_KEY: meta})  # last: a store without it is not a store yet


def create_store(
    path: Any,
    n_rows: int,
    dim: int,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    shard_rows: int | None = None,
    dtype: str = "float16",
    attrs: Mapping[str, Any],
    with_labels: bool = False,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    file_keys: FileKeys | None = None,
) -> EmbeddingStore:
    """Create an embedding store, or reopen a compatible one to resume writing it.

    Parameters
    ----------
    path : str, os.PathLike or zarr Store
        Local directory, any fsspec URL zarr accepts (``file://``, ``s3://``, ``memory://``...)
        or a zarr ``Store`` object (e.g. ``zarr.storage.MemoryStore()``).
    n_rows : int
        N, the number of samples (>= 1).
    dim : int
        D, the feature dimension (>= 1).
    chunk_rows : int
        Rows per chunk (a chunk always holds whole rows). The default 4096 rows x 384 float16
        dims is 3 MiB before compression.
    shard_rows : int, optional
        Rows per shard, a multiple of ``chunk_rows``; default ``4 * chunk_rows``. The last shard
        may be shorter.
    dtype : {"float16", "float32"}
        Storage dtype of ``features``. Values outside the float16 range are an error, never inf.
    attrs : dict
        Provenance, stored under ``attrs["cl_curriculum"]``. Must contain a non-empty
        ``dataset_fingerprint``; the other :data:`PROVENANCE_KEYS` default to None
        (``code_version`` to the package version). Values must be JSON-serialisable. Layout
        keys (``dtype``, ``n_rows``...) may be repeated only with the same value as the
        arguments; statistics keys are set by :meth:`EmbeddingStore.finalize`.
    with_labels : bool
        Also create the ``labels`` (N,) int64 array; every :meth:`EmbeddingStore.write_shard`
        must then pass labels.
    overwrite : bool
        What to do with an existing store at ``path``: with ``False`` (default) a store with the
        same layout and :attr:`EmbeddingStore.fingerprint` is reopened so that only its missing
        shards need writing, and any other store raises :class:`StoreMismatchError`. With
        ``True`` an existing embedding store is deleted and created afresh (never call that from
        parallel workers). Paths holding anything that is not an embedding store are never
        deleted.
    storage_options : dict, optional
        fsspec options for URL paths (credentials, endpoint...).
    file_keys : FileKeys, optional
        The file behind each row (file datasets), recorded with a new store
        (:meth:`EmbeddingStore.file_keys`); not part of the fingerprint, ignored on reopening.

    Returns
    -------
    EmbeddingStore
        Opened for writing.

    Raises
    ------
    StoreMismatchError
        The existing store was made for another dataset, model or layout (the message lists what
        differs).
    """
    location = _check_store_location(path)
    n_rows = check_int(
        "n_rows", n_rows, 1, " (an empty dataset has nothing to embed; check the dataset path)"
    )
    dim = check_int("dim", dim, 1)
    chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    if shard_rows is None:
        shard_rows = DEFAULT_CHUNKS_PER_SHARD * chunk_rows
    shard_rows = check_int("shard_rows", shard_rows, 1)
    if shard_rows % chunk_rows:
        raise ValueError(
            f"shard_rows must be a multiple of chunk_rows={chunk_rows} so that shards own whole "
            f"chunks, got {shard_rows}; e.g. shard_rows={max(1, shard_rows // chunk_rows) * chunk_rows}"
        )
    dtype = _check_dtype(dtype)
    layout = {
        "schema": SCHEMA_VERSION,
        "n_rows": n_rows,
        "dim": dim,
        "dtype": dtype,
        "chunk_rows": chunk_rows,
        "shard_rows": shard_rows,
        "n_shards": math.ceil(n_rows / shard_rows),
        "with_labels": bool(with_labels),
    }
    meta = _check_attrs(attrs, layout)
    options = _storage_options_for(location, storage_options)
    meta.update(layout, feature_mean=None, feature_std=None, complete=False)
    meta["fingerprint"] = content_fingerprint(meta)
    if file_keys is not None and len(file_keys) != n_rows:
        raise ValueError(f"file_keys has {len(file_keys)} rows but the store {n_rows}")

    # Two processes creating the same new store at once would both write its arrays.
    with wait_lock(location, "create"):
        existing = _existing_group(location, options)
        if existing is not None:
            existing_meta = read_meta(existing, location)  # never delete what we did not make
            differences = _mismatch(existing_meta, meta)
            if not overwrite and not differences:
                return EmbeddingStore(location, read_only=False, storage_options=options)
            if not overwrite:
                raise StoreMismatchError(
                    f"the embedding store at {describe(location)} was made for other data, "
                    f"another model or another layout ({'; '.join(differences)}); refusing to "
                    "reuse it. Pass overwrite=True to delete and recreate it, or choose another path"
                )
        _write_new_store(
            location, meta, options, overwrite=existing is not None, file_keys=file_keys
        )
        return EmbeddingStore(location, read_only=False, storage_options=options)


def open_store(
    path: Any, *, read_only: bool = False, storage_options: Mapping[str, Any] | None = None
) -> EmbeddingStore:
    """Open an existing embedding store.

    Parameters
    ----------
    path : str, os.PathLike or zarr Store
        As for :func:`create_store`.
    read_only : bool
        Open without write access (readers, e.g. clustering).
    storage_options : dict, optional
        fsspec options for URL paths.

    Raises
    ------
    FileNotFoundError
        Nothing is stored at ``path``.
    ValueError
        ``path`` is a Zarr group that is not an embedding store.
    """
    location = _check_store_location(path)
    options = _storage_options_for(location, storage_options)
    if _existing_group(location, options) is None:
        raise FileNotFoundError(
            f"no embedding store at {describe(location)}; create one with create_store() or "
            "store_from_array(), or run the embed stage first"
        )
    return EmbeddingStore(location, read_only=read_only, storage_options=options)


def store_from_array(
    path: Any,
    features: Any,
    labels: Any = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    shard_rows: int | None = None,
    dtype: str = "float16",
    attrs: Mapping[str, Any] | None = None,
    dataset_id: str | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> EmbeddingStore:
    """Write in-memory (or memory-mapped) features to a finalized store.

    Validates every row before creating anything, writes the shards that are missing (so an
    interrupted call resumes), then :meth:`EmbeddingStore.finalize`.

    Parameters
    ----------
    path : str, os.PathLike or zarr Store
        Where to write (see :func:`create_store`).
    features : array-like of shape (N, D)
        Real-valued, finite features.
    labels : array-like of shape (N,), optional
        Integer class ids.
    chunk_rows, shard_rows, dtype, overwrite, storage_options
        As for :func:`create_store`.
    attrs : dict, optional
        Extra provenance (model id, layer...).
    dataset_id : str, optional
        Your own stable id of the data; by default the dataset fingerprint is
        :func:`array_fingerprint` of ``features`` and ``labels``.

    Returns
    -------
    EmbeddingStore
        Complete and finalized.
    """
    values = check_feature_array("features", features)
    n_rows, dim = (int(s) for s in values.shape)
    label_values = None
    if labels is not None:
        label_values = check_labels("labels", labels, n_rows)
    extra = dict(attrs or {})
    if dataset_id is not None:
        if not isinstance(dataset_id, str) or not dataset_id:
            raise ValueError(f"dataset_id must be a non-empty string, got {dataset_id!r}")
        if extra.get("dataset_fingerprint", dataset_id) != dataset_id:
            raise ValueError(
                f"dataset_id={dataset_id!r} conflicts with attrs['dataset_fingerprint']="
                f"{extra['dataset_fingerprint']!r}; give only one of them"
            )
        extra["dataset_fingerprint"] = dataset_id
    target_dtype = _check_dtype(dtype)
    block = check_int("chunk_rows", chunk_rows, 1)
    for start in range(0, n_rows, block):  # fail before anything is written
        cast_for_storage(values[start : start + block], target_dtype, start)
    extra.setdefault("dataset_fingerprint", array_fingerprint(values, label_values))
    store = create_store(
        path,
        n_rows,
        dim,
        chunk_rows=chunk_rows,
        shard_rows=shard_rows,
        dtype=target_dtype,
        attrs=extra,
        with_labels=label_values is not None,
        overwrite=overwrite,
        storage_options=storage_options,
    )
    if store.is_complete:
        return store
    for shard in store.missing_shards():
        start, stop = store.shard_range(shard)
        shard_labels = None if label_values is None else label_values[start:stop]
        store.write_shard(shard, values[start:stop], shard_labels)
    store.finalize()
    return store
