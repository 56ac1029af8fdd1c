"""Creating, reopening and opening embedding stores (:func:`create_store`, :func:`open_store`,
:func:`store_from_array`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cl_core.store.embedding_store import EmbeddingStore
from cl_core.store.layout import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_CHUNKS_PER_SHARD,
    SCHEMA_VERSION,
    StoreMismatchError,
    _check_attrs,
    _check_dtype,
    _check_positive_int,
    _check_store_location,
    _content_fingerprint,
    _describe,
    _existing_group,
    _meta_of,
    _mismatch,
    _storage_options_for,
    _write_new_store,
)
from cl_core.store.locks import _held
from cl_core.store.moments import array_fingerprint
from cl_core.store.rows import _cast_for_storage, _check_feature_array, _check_labels


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
    n_rows = _check_positive_int(
        "n_rows", n_rows, " (an empty dataset has nothing to embed; check the dataset path)"
    )
    dim = _check_positive_int("dim", dim)
    chunk_rows = _check_positive_int("chunk_rows", chunk_rows)
    if shard_rows is None:
        shard_rows = DEFAULT_CHUNKS_PER_SHARD * chunk_rows
    shard_rows = _check_positive_int("shard_rows", shard_rows)
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
    meta["fingerprint"] = _content_fingerprint(meta)

    # Two processes creating the same new store at once would both write its arrays.
    with _held(location, "create"):
        existing = _existing_group(location, options)
        if existing is not None:
            existing_meta = _meta_of(existing, location)  # never delete what we did not make
            differences = _mismatch(existing_meta, meta)
            if not overwrite and not differences:
                return EmbeddingStore(location, read_only=False, storage_options=options)
            if not overwrite:
                raise StoreMismatchError(
                    f"the embedding store at {_describe(location)} was made for other data, "
                    f"another model or another layout ({'; '.join(differences)}); refusing to "
                    "reuse it. Pass overwrite=True to delete and recreate it, or choose another path"
                )
        _write_new_store(location, meta, options, overwrite=existing is not None)
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
            f"no embedding store at {_describe(location)}; create one with create_store() or "
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
    values = _check_feature_array("features", features)
    n_rows, dim = (int(s) for s in values.shape)
    label_values = None
    if labels is not None:
        label_values = _check_labels("labels", labels, n_rows)
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
    block = _check_positive_int("chunk_rows", chunk_rows)
    for start in range(0, n_rows, block):  # fail before anything is written
        _cast_for_storage(values[start : start + block], target_dtype, start)
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
