"""The Zarr v3 embedding store: features written in resumable shards, read back in row chunks.

Layout of a store (one Zarr v3 group, local path, fsspec URL or zarr ``Store``)::

    features     (N, D)  float16 (default) or float32, chunks of ``chunk_rows`` whole rows
    labels       (N,)    int64, same row chunks (only when created ``with_labels=True``)
    shard_done   (S,)    uint8, one chunk (= one storage object) per shard: 1 once written
    shard_stats  (S, 3, D) float64, one chunk per shard: count, mean, M2 of the stored rows
    shard_skipped (S,)   string, one chunk per shard: JSON list of the shard's skipped samples
    attrs["cl_curriculum"]  layout, provenance, fingerprints, feature mean/std, ``complete``

A *shard* is a range of ``shard_rows`` rows (a multiple of ``chunk_rows``; the last shard may be
short), so a shard owns whole chunk objects of every row-chunked array. That is what makes shards
safe to write from independent processes: two writers never touch the same storage object, and the
group metadata is only written by :func:`create_store` and :meth:`EmbeddingStore.finalize`.

A shard's ``shard_done`` marker is written only after its rows, labels and statistics, so a crash
leaves the shard "missing" and a rerun writes it again. Feature statistics are computed per shard
(in float64, from the values *as stored*, i.e. after the float16 cast, so they describe exactly what
readers get) and merged in shard order by :meth:`EmbeddingStore.finalize`; the result therefore does
not depend on the order, the number of processes or the number of restarts that wrote the shards.

Samples that could not be loaded (``on_bad_sample="skip"``) are recorded per shard (index, path,
reason); their rows hold zeros and are left out of the statistics, so nothing downstream sees NaN.
:attr:`EmbeddingStore.skipped_indices` lists them.

One writer per shard across processes: for local stores :meth:`EmbeddingStore.try_lock` takes a
lock file (``O_CREAT | O_EXCL``, holding pid, host and process start time) in the sibling folder
``<store>.locks``; a lock whose process is gone is stale and taken over. (zarr-python issue 3682:
concurrent partial writes to one shard lose data.) Stores at fsspec URLs are not locked: give each
shard to one worker.

The store is keyed by :attr:`EmbeddingStore.fingerprint` (dataset fingerprint + model identity +
shape + dtype): :func:`create_store` on an existing store with a different fingerprint refuses
(or, with ``overwrite=True``, deletes and recreates it), so embeddings of another dataset or another
model are never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cl_core import CODE_VERSION
from cl_core.validation import check_choice, check_finite

NORMALIZATIONS = ("standard", "l2", "none")
"""``standard``: dataset-wide z-score per dimension, then L2 per row; ``l2``: L2 only; ``none``."""

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
_N_MOMENTS = 3  # count, mean, M2 (sum of squared deviations), each per dimension


class StoreMismatchError(ValueError):
    """An existing store at the path was made for other data, another model or another layout."""


# --------------------------------------------------------------------------------------------
# Small numeric helpers (pure numpy; also useful to callers that hold features in memory)
# --------------------------------------------------------------------------------------------


def standardization_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Return the per-dimension divisor for z-scoring: ``std``, or 1.0 for constant dimensions.

    A dimension whose std is at float64 rounding level (relative to its mean) is constant; dividing
    by its tiny std would blow rounding noise up to O(1) values, so, like scikit-learn's
    ``StandardScaler``, it is left unscaled (its centred values are ~0 anyway).

    Parameters
    ----------
    mean, std : ndarray of shape (D,)
        Dataset-wide feature mean and (population) standard deviation.

    Returns
    -------
    ndarray of shape (D,), float64
    """
    mean64 = np.asarray(mean, dtype=np.float64)
    std64 = np.asarray(std, dtype=np.float64)
    constant = std64 <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean64), 1.0)
    return np.where(constant, 1.0, std64)


def normalize_block(
    block: np.ndarray,
    normalize: str,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> np.ndarray:
    """Apply one of :data:`NORMALIZATIONS` to a block of rows.

    Parameters
    ----------
    block : ndarray of shape (R, D)
        Raw feature rows (any float dtype).
    normalize : {"standard", "l2", "none"}
        ``standard`` = ``(x - mean) / std`` per dimension (see :func:`standardization_scale`),
        then each row divided by its L2 norm; ``l2`` = L2 only; ``none`` = raw values.
        Rows whose norm is zero stay zero.
    mean, std : ndarray of shape (D,), optional
        Dataset-wide statistics; required for ``standard``.

    Returns
    -------
    ndarray of shape (R, D), float32
        A new array (``block`` is never modified).
    """
    check_choice("normalize", normalize, NORMALIZATIONS)
    rows = np.array(block, dtype=np.float32, copy=True)
    if normalize == "none":
        return rows
    if normalize == "standard":
        if mean is None or std is None:
            raise ValueError(
                "normalize='standard' needs the dataset-wide mean and std; pass mean= and std= "
                "(an EmbeddingStore provides them after finalize()), or use normalize='l2'"
            )
        rows -= np.asarray(mean, dtype=np.float32)
        rows /= standardization_scale(mean, std).astype(np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    norms[norms == 0] = 1.0  # an all-zero row has no direction; keep it zero instead of NaN
    rows /= norms[:, None]
    return rows


def _moments(rows: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Per-dimension (count, mean, M2) of ``rows`` (those where ``keep``) in float64, (3, D).

    No rows give count 0, mean 0, M2 0 (never NaN).
    """
    values = np.asarray(rows, dtype=np.float64)
    if keep is not None:
        values = values[keep]
    if values.shape[0] == 0:
        return np.zeros((_N_MOMENTS, values.shape[1]), dtype=np.float64)
    mean = values.mean(axis=0)
    m2 = np.square(values - mean).sum(axis=0)
    return np.stack([np.full_like(mean, values.shape[0]), mean, m2])


def _merge_moments(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Merge two (count, mean, M2) stacks (Chan et al.'s parallel update, stable in float64).

    An empty side (count 0) leaves the other unchanged; two empty sides stay empty.
    """
    n_a, mean_a, m2_a = left
    n_b, mean_b, m2_b = right
    n = n_a + n_b
    delta = mean_b - mean_a
    share = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
    cross = np.divide(n_a * n_b, n, out=np.zeros_like(n), where=n > 0)
    mean = mean_a + delta * share
    m2 = m2_a + m2_b + np.square(delta) * cross
    return np.stack([n, mean, m2])


def array_fingerprint(features: Any, labels: Any = None, *, block_rows: int = 65536) -> str:
    """Content fingerprint of an in-memory dataset of features (and labels).

    ``"array:"`` followed by 16 hex digits of the sha256 of shape, dtype and the C-order bytes,
    hashed in row blocks so a memory-mapped array is never loaded whole.

    Parameters
    ----------
    features : array-like of shape (N, D)
    labels : array-like of shape (N,), optional
    block_rows : int
        Rows hashed per step.
    """
    digest = hashlib.sha256()
    values = features if hasattr(features, "shape") else np.asarray(features)
    header = {"shape": [int(s) for s in values.shape], "dtype": str(np.dtype(values.dtype))}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for start in range(0, int(values.shape[0]), block_rows):
        digest.update(np.ascontiguousarray(values[start : start + block_rows]).tobytes())
    if labels is not None:
        digest.update(b"labels")
        digest.update(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes())
    return f"array:{digest.hexdigest()[:16]}"


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


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
        return dict(json.loads(json.dumps(dict(value), default=_json_default, allow_nan=False)))
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must hold JSON-serialisable values (str, int, float, bool, None, lists, "
            f"dicts); got {value!r} ({error}). Convert other objects to strings first."
        ) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Opening and creating
# --------------------------------------------------------------------------------------------


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
        shape=(n_shards, _N_MOMENTS, dim),
        chunks=(1, _N_MOMENTS, dim),
        dtype="float64",
        fill_value=np.nan,
    )
    # JSON list of {"index", "path", "reason"} per shard; "" = nothing skipped.
    group.create_array("shard_skipped", shape=(n_shards,), chunks=(1,), dtype=str)
    group.attrs.update({ATTRS_KEY: dict(meta)})


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


def _check_feature_array(name: str, features: Any) -> Any:
    values = features if hasattr(features, "shape") and hasattr(features, "dtype") else None
    if values is None:
        values = np.asarray(features)
    if np.dtype(values.dtype).kind not in "fiu":
        raise TypeError(
            f"{name} must be real numbers, got dtype {values.dtype}; convert with "
            "np.asarray(x, dtype=np.float32)"
        )
    if len(values.shape) != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(values.shape)}")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(values.shape)}); a store needs at least one row "
            "and one dimension"
        )
    return values


def _check_labels(name: str, labels: Any, n_rows: int, offset: int = 0) -> np.ndarray:
    values = np.asarray(labels)
    if values.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must be integer class ids, got dtype {values.dtype}; map names to ids with "
            "np.unique(labels, return_inverse=True)[1]"
        )
    if values.shape != (n_rows,):
        raise ValueError(
            f"{name} must have shape ({n_rows},) (one label per row starting at row {offset}), "
            f"got {values.shape}"
        )
    return values.astype(np.int64, copy=False)


def _check_skipped(
    skipped: Sequence[Mapping[str, Any]] | None, start: int, stop: int
) -> list[dict[str, Any]]:
    """Validated, sorted skipped-sample records of rows ``start..stop-1``."""
    if not skipped:
        return []
    records = []
    for position, record in enumerate(skipped):
        if not isinstance(record, Mapping) or "index" not in record:
            raise TypeError(
                f"skipped[{position}] must be a dict with 'index', 'path' and 'reason', got "
                f"{record!r}"
            )
        index = record["index"]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"skipped[{position}]['index'] must be an integer, got {index!r}")
        if not start <= index < stop:
            raise ValueError(
                f"skipped[{position}]['index'] = {int(index)} is outside this shard's rows "
                f"{start}..{stop - 1}; record each skipped sample with the shard that holds it"
            )
        path = record.get("path")
        records.append(
            {
                "index": int(index),
                "path": None if path is None else str(path),
                "reason": str(record.get("reason", "")),
            }
        )
    return sorted(records, key=lambda record: record["index"])


def _cast_for_storage(rows: Any, dtype: str, offset: int) -> np.ndarray:
    """Cast rows to the storage dtype, raising (with row indices) on NaN/inf or overflow."""
    values = np.asarray(rows)
    check_finite("features", values, offset=offset)
    with np.errstate(over="ignore"):
        stored = values.astype(dtype)
    overflow = ~np.isfinite(stored)
    if overflow.any():
        bad_rows = np.flatnonzero(overflow.any(axis=1))
        shown = ", ".join(str(int(row) + offset) for row in bad_rows[:5])
        largest = float(np.max(np.abs(values.astype(np.float64)[bad_rows])))
        raise ValueError(
            f"features row {int(bad_rows[0]) + offset} overflows {dtype} (|x| up to {largest:.4g} > "
            f"{float(np.finfo(dtype).max):.6g}; {bad_rows.size} rows: {shown}"
            f"{', ...' if bad_rows.size > 5 else ''}); create the store with dtype='float32' "
            "or scale the features down"
        )
    return stored


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class EmbeddingStore:
    """Handle on one Zarr embedding store; create with :func:`create_store` / :func:`open_store`.

    Attributes
    ----------
    path : str or zarr Store
        Where the store lives (as given).
    n_rows, dim : int
        N and D of ``features``.
    chunk_rows, shard_rows, n_shards : int
        Row layout; shard ``i`` covers rows ``shard_range(i)``.
    dtype : str
        ``"float16"`` or ``"float32"``.

    Notes
    -----
    Pickling an ``EmbeddingStore`` pickles its location, so handles can be passed to worker
    processes (each reopens the store). Write methods are safe to call from several processes at
    once as long as each shard has one writer at a time; call :meth:`finalize` from one process.
    """

    def __init__(
        self,
        path: Any,
        *,
        read_only: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.read_only = bool(read_only)
        self._storage_options = dict(storage_options) if storage_options else None
        self._group = _open_group(path, "r" if read_only else "r+", self._storage_options)
        self._load_meta()

    # -- metadata -------------------------------------------------------------------------

    def _load_meta(self) -> None:
        meta = _meta_of(self._group, self.path)
        self._meta = meta
        self.n_rows: int = int(meta["n_rows"])
        self.dim: int = int(meta["dim"])
        self.chunk_rows: int = int(meta["chunk_rows"])
        self.shard_rows: int = int(meta["shard_rows"])
        self.n_shards: int = int(meta["n_shards"])
        self.dtype: str = str(meta["dtype"])
        self.has_labels: bool = bool(meta["with_labels"])
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        if meta.get("feature_mean") is not None:
            self._mean = np.asarray(meta["feature_mean"], dtype=np.float64)
            self._std = np.asarray(meta["feature_std"], dtype=np.float64)

    def refresh(self) -> None:
        """Re-read the group attributes (after another process finalized the store)."""
        import zarr

        self._group = zarr.open_group(store=self._group.store, mode="r" if self.read_only else "r+")
        self._load_meta()

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of ``attrs["cl_curriculum"]``: layout, provenance, fingerprints, statistics."""
        return json.loads(json.dumps(self._meta))

    @property
    def fingerprint(self) -> str:
        """16 hex digits of sha256 over what determines the stored values.

        That is: the dataset fingerprint, every identity provenance attribute (model id, weights
        sha256, layer, pooling, input transform, and any other caller attribute except
        :data:`NON_IDENTITY_KEYS`), N, D, dtype and the schema version. Two stores with equal
        fingerprints hold the same embeddings; use it as the cache key of downstream stages.
        """
        return str(self._meta["fingerprint"])

    @property
    def dataset_fingerprint(self) -> str:
        """The fingerprint of the dataset alone (as given in ``attrs``)."""
        return str(self._meta["dataset_fingerprint"])

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, dim)``."""
        return (self.n_rows, self.dim)

    @property
    def feature_mean(self) -> np.ndarray | None:
        """Dataset-wide per-dimension mean, float64 (D,); None before :meth:`finalize`."""
        return None if self._mean is None else self._mean.copy()

    @property
    def feature_std(self) -> np.ndarray | None:
        """Dataset-wide per-dimension population std (ddof=0), float64 (D,); None before finalize."""
        return None if self._std is None else self._std.copy()

    @property
    def features(self) -> Any:
        """The raw ``features`` zarr array (e.g. for ``dask.array.from_zarr``)."""
        return self._group["features"]

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        state = "complete" if self._meta.get("complete") else "incomplete"
        return (
            f"EmbeddingStore({_describe(self.path)!r}, shape=({self.n_rows}, {self.dim}), "
            f"dtype={self.dtype}, shards={self.n_shards}, {state})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self.path, self.read_only, self._storage_options))

    # -- shards ---------------------------------------------------------------------------

    def _check_shard(self, shard: object) -> int:
        if isinstance(shard, bool) or not isinstance(shard, (int, np.integer)):
            raise TypeError(f"shard must be an integer index, got {shard!r}")
        if not 0 <= shard < self.n_shards:
            raise ValueError(
                f"shard must be in [0, {self.n_shards}) for this store, got {shard}; "
                "see missing_shards() for the shards still to write"
            )
        return int(shard)

    def shard_range(self, shard: int) -> tuple[int, int]:
        """Row range ``[start, stop)`` of shard ``shard``."""
        index = self._check_shard(shard)
        start = index * self.shard_rows
        return start, min(start + self.shard_rows, self.n_rows)

    def missing_shards(self) -> list[int]:
        """Indices of shards not yet marked done, ascending."""
        done = np.asarray(self._group["shard_done"][:])
        return [int(i) for i in np.flatnonzero(done == 0)]

    @property
    def is_complete(self) -> bool:
        """True once every shard is written and :meth:`finalize` stored the statistics."""
        if not self._meta.get("complete"):
            self.refresh()  # another process may have finalized since we opened
        return bool(self._meta.get("complete"))

    def _require_writable(self) -> None:
        if self.read_only:
            raise PermissionError(
                f"store {_describe(self.path)} was opened read_only=True; reopen it with "
                "open_store(path) to write"
            )
        if self._meta.get("complete"):
            raise ValueError(
                f"store {_describe(self.path)} is finalized; writing a shard would make its "
                "stored mean/std stale. Recreate it with create_store(..., overwrite=True)"
            )

    def write_shard(
        self,
        shard: int,
        features: Any,
        labels: Any = None,
        *,
        skipped: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Write one shard's rows (and labels) and then mark it done.

        Parameters
        ----------
        shard : int
            Shard index in ``[0, n_shards)``.
        features : array-like of shape (stop - start, D)
            Rows ``shard_range(shard)``, real and finite; cast to the store dtype (overflow raises).
            Rows of skipped samples are stored as zeros whatever they hold.
        labels : array-like of shape (stop - start,), optional
            Integer labels; required exactly when the store was created ``with_labels=True``
            (skipped samples' labels are stored as -1).
        skipped : sequence of dict, optional
            Samples of this shard that could not be loaded: ``{"index": int, "path": str or None,
            "reason": str}`` with ``index`` in ``shard_range(shard)``. Recorded in the store
            (:attr:`skipped_samples`) and left out of the feature statistics.

        Raises
        ------
        ValueError
            Wrong shape, NaN/inf rows or values beyond the dtype's range (dataset row indices
            are named). Nothing is marked done then.
        """
        self._require_writable()
        start, stop = self.shard_range(shard)
        values = _check_feature_array("features", features)
        if tuple(values.shape) != (stop - start, self.dim):
            raise ValueError(
                f"features for shard {shard} must have shape ({stop - start}, {self.dim}) (rows "
                f"{start}..{stop - 1}), got {tuple(values.shape)}"
            )
        if self.has_labels and labels is None:
            raise ValueError(
                f"labels are required: the store was created with_labels=True; pass the "
                f"{stop - start} labels of rows {start}..{stop - 1}"
            )
        if not self.has_labels and labels is not None:
            raise ValueError(
                "labels were given but the store was created with_labels=False; recreate it with "
                "with_labels=True or drop labels"
            )
        records = _check_skipped(skipped, start, stop)
        keep = np.ones(stop - start, dtype=bool)
        keep[[record["index"] - start for record in records]] = False
        if not keep.all():
            values = np.where(keep[:, None], np.asarray(values), 0)
        stored = _cast_for_storage(values, self.dtype, start)
        label_values = (
            None if labels is None else _check_labels("labels", labels, stop - start, start)
        )
        if label_values is not None and not keep.all():
            label_values = np.where(keep, label_values, _LABEL_FILL)

        self._group["features"][start:stop] = stored
        if label_values is not None:
            self._group["labels"][start:stop] = label_values
        self._group["shard_stats"][shard] = _moments(stored, keep)
        if records and "shard_skipped" in self._group:
            self._group["shard_skipped"][shard] = json.dumps(records, sort_keys=True)
        elif records:
            raise ValueError(
                f"store {_describe(self.path)} predates skipped-sample records; recreate it "
                "(create_store(..., overwrite=True)) to embed with on_bad_sample='skip'"
            )
        # Last: a crash before this line leaves the shard missing, so a rerun rewrites it.
        self._group["shard_done"][shard] = 1

    def finalize(self) -> None:
        """Merge the per-shard statistics (in shard order) into the dataset mean/std; mark complete.

        Idempotent. Needs every shard done; call it from one process.
        """
        if self.read_only:
            raise PermissionError(f"store {_describe(self.path)} was opened read_only=True")
        missing = self.missing_shards()
        if missing:
            raise ValueError(
                f"cannot finalize {_describe(self.path)}: {len(missing)} of {self.n_shards} shards "
                f"are not written yet (first: {missing[:5]}); write them with write_shard() "
                "(or rerun the embedding, which resumes) before finalize()"
            )
        stats = np.asarray(self._group["shard_stats"][:], dtype=np.float64)
        check_finite("shard_stats", stats)
        total = stats[0]
        for part in stats[1:]:
            total = _merge_moments(total, part)
        count, mean, m2 = total
        skipped = self.skipped_samples
        if not np.all(count > 0):
            raise ValueError(
                f"cannot finalize {_describe(self.path)}: all {self.n_rows} samples were skipped "
                f"as unloadable (first: {skipped[:1]}); check the dataset path and files"
            )
        std = np.sqrt(m2 / count)
        meta = dict(self._meta)
        meta.update(
            feature_mean=mean.tolist(),
            feature_std=std.tolist(),
            complete=True,
            n_skipped=len(skipped),
        )
        self._group.attrs.update({ATTRS_KEY: meta})
        self._load_meta()

    # -- skipped samples ------------------------------------------------------------------

    @property
    def skipped_samples(self) -> list[dict[str, Any]]:
        """Samples that could not be loaded, ascending by index (of the shards written so far).

        Each is ``{"index": int, "path": str or None, "reason": str}``; their feature rows hold
        zeros and are not part of :attr:`feature_mean` / :attr:`feature_std`.
        """
        if "shard_skipped" not in self._group:
            return []
        if self._meta.get("complete") and self._meta.get("n_skipped") == 0:
            return []
        records: list[dict[str, Any]] = []
        for text in np.asarray(self._group["shard_skipped"][:]).tolist():
            if text:
                records.extend(json.loads(text))
        return sorted(records, key=lambda record: record["index"])

    @property
    def skipped_indices(self) -> np.ndarray:
        """Dataset indices of the skipped samples, int64, sorted (empty when none)."""
        indices = [record["index"] for record in self.skipped_samples]
        return np.asarray(indices, dtype=np.int64)

    # -- one writer per shard ---------------------------------------------------------------

    def try_lock(self, name: int | str) -> StoreLock | None:
        """Take the lock named ``name`` (a shard index, or e.g. ``"finalize"``) if it is free.

        Returns
        -------
        StoreLock or None
            The held lock (release it, or use it as a context manager), or None while another
            live process holds it. Stores that are not local directories are never locked (a
            lock that is always free is returned).
        """
        return _try_lock(self.path, name)

    def lock(self, name: int | str, *, poll_s: float = 0.2) -> StoreLock:
        """Wait for and take the lock ``name`` (see :meth:`try_lock`)."""
        return _wait_lock(self.path, name, poll_s)

    def is_shard_done(self, shard: int) -> bool:
        """Whether ``shard`` is marked done (read from storage now, not cached)."""
        index = self._check_shard(shard)
        return bool(np.asarray(self._group["shard_done"][index]))

    # -- reading --------------------------------------------------------------------------

    def labels(self) -> np.ndarray | None:
        """All labels, int64 (N,), or None when the store has none."""
        if not self.has_labels:
            return None
        self._require_rows_written(0, self.n_rows)
        return np.asarray(self._group["labels"][:], dtype=np.int64)

    def _require_rows_written(self, start: int, stop: int) -> None:
        if self._meta.get("complete") or start >= stop:
            return
        first, last = start // self.shard_rows, (stop - 1) // self.shard_rows
        missing = [shard for shard in self.missing_shards() if first <= shard <= last]
        if missing:
            raise ValueError(
                f"rows {start}..{stop - 1} of {_describe(self.path)} include {len(missing)} "
                f"unwritten shards (first: {missing[:5]}); finish the embedding (a rerun writes "
                "only the missing shards) before reading"
            )

    def _require_stats(self, normalize: str) -> None:
        if normalize == "standard" and self._mean is None:
            self.refresh()
            if self._mean is None:
                raise ValueError(
                    f"normalize='standard' needs the dataset mean/std, but {_describe(self.path)} "
                    "is not finalized; call store.finalize() after writing every shard, or read "
                    "with normalize='l2' or 'none'"
                )

    def _resolve_rows(self, rows: Any) -> tuple[int, int]:
        if rows is None:
            return 0, self.n_rows
        if isinstance(rows, slice):
            if rows.step not in (None, 1):
                raise ValueError(f"rows must be a contiguous range (step 1), got {rows!r}")
            start, stop, _ = rows.indices(self.n_rows)
            return start, max(start, stop)
        if isinstance(rows, range):
            if rows.step != 1:
                raise ValueError(f"rows must be a contiguous range (step 1), got {rows!r}")
            bounds: tuple[Any, ...] = (rows.start, rows.stop)
        elif isinstance(rows, (tuple, list)) and len(rows) == 2:
            bounds = tuple(rows)
        else:
            raise TypeError(f"rows must be None, (start, stop), a range or a slice, got {rows!r}")
        start, stop = (int(b) for b in bounds)
        if not 0 <= start <= stop <= self.n_rows:
            raise ValueError(f"rows must satisfy 0 <= start <= stop <= {self.n_rows}, got {rows!r}")
        return start, stop

    def _read_block(self, start: int, stop: int, normalize: str) -> np.ndarray:
        raw = self._group["features"][start:stop]
        return normalize_block(raw, normalize, self._mean, self._std)

    def iter_chunks(
        self,
        normalize: str = "standard",
        rows: Any = None,
        chunk_rows: int | None = None,
        *,
        prefetch: bool = True,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Iterate over row blocks with the normalisation applied block by block.

        Parameters
        ----------
        normalize : {"standard", "l2", "none"}
            See :func:`normalize_block`; ``standard`` needs a finalized store.
        rows : (start, stop), range or slice, optional
            Restrict to this contiguous row range (default: all rows).
        chunk_rows : int, optional
            Rows per block (default: the store's ``chunk_rows``). Block boundaries fall on
            multiples of it, so a multiple of the store's chunk size reads whole chunks only.
        prefetch : bool
            Read and normalise the next block in a background thread while the caller works on
            the current one.

        Yields
        ------
        start : int
            Dataset index of the block's first row.
        block : ndarray of shape (rows, D), float32
        """
        check_choice("normalize", normalize, NORMALIZATIONS)
        start, stop = self._resolve_rows(rows)
        step = (
            self.chunk_rows if chunk_rows is None else _check_positive_int("chunk_rows", chunk_rows)
        )
        self._require_stats(normalize)
        self._require_rows_written(start, stop)
        edges = [start, *range((start // step + 1) * step, stop, step), stop]
        bounds = [(a, b) for a, b in itertools.pairwise(edges) if a < b]
        return self._iter_blocks(bounds, normalize, prefetch)

    def _iter_blocks(
        self, bounds: list[tuple[int, int]], normalize: str, prefetch: bool
    ) -> Iterator[tuple[int, np.ndarray]]:
        if not prefetch or len(bounds) < 2:
            for start, stop in bounds:
                yield start, self._read_block(start, stop, normalize)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cl-store-prefetch") as pool:
            pending = pool.submit(self._read_block, *bounds[0], normalize)
            for position, (start, _) in enumerate(bounds):
                block = pending.result()
                if position + 1 < len(bounds):
                    pending = pool.submit(self._read_block, *bounds[position + 1], normalize)
                yield start, block

    def read_rows(self, indices: Any, normalize: str = "standard") -> np.ndarray:
        """Read arbitrary rows (any order, repeats allowed), normalised.

        Parameters
        ----------
        indices : array-like of int, shape (M,)
            Row indices in ``[0, n_rows)``.
        normalize : {"standard", "l2", "none"}

        Returns
        -------
        ndarray of shape (M, D), float32
            Row ``j`` is dataset row ``indices[j]``.
        """
        check_choice("normalize", normalize, NORMALIZATIONS)
        wanted = np.asarray(indices)
        if wanted.ndim != 1 or (wanted.size and wanted.dtype.kind not in "iu"):
            raise TypeError(
                f"indices must be a 1-D array of integers, got shape {wanted.shape} dtype "
                f"{wanted.dtype}"
            )
        if wanted.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out_of_range = np.flatnonzero((wanted < 0) | (wanted >= self.n_rows))
        if out_of_range.size:
            position = int(out_of_range[0])
            raise ValueError(
                f"indices must lie in [0, {self.n_rows}); indices[{position}] = "
                f"{int(wanted[position])} ({out_of_range.size} out of range)"
            )
        self._require_stats(normalize)
        unique, inverse = np.unique(wanted.astype(np.int64), return_inverse=True)
        if not self._meta.get("complete"):
            shards = np.unique(unique // self.shard_rows)
            missing = sorted(set(self.missing_shards()).intersection(shards.tolist()))
            if missing:
                raise ValueError(
                    f"indices fall in {len(missing)} unwritten shards (first: {missing[:5]}); "
                    "finish the embedding before reading"
                )
        raw = self._group["features"].get_orthogonal_selection((unique, slice(None)))
        return normalize_block(raw, normalize, self._mean, self._std)[inverse.reshape(-1)]


# --------------------------------------------------------------------------------------------
# Lock files: one writer per shard across processes (local stores)
# --------------------------------------------------------------------------------------------


class StoreLock:
    """A held lock file (or, for non-local stores, a placeholder that guards nothing).

    Use as a context manager or call :meth:`release`; releasing twice is harmless, and a lock
    taken over by another process (after this one was presumed dead) is left alone.
    """

    def __init__(self, path: Path | None, token: str) -> None:
        self.path = path
        self.token = token
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            if self.path.read_text() == self.token:
                self.path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # only succeeds once no lock is left

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StoreLock({str(self.path) if self.path else 'unlocked store'!r})"


def _lock_dir(location: Any) -> Path | None:
    """``<store>.locks`` next to a local store; None for URLs and zarr Store objects."""
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str):
        return None
    if location.startswith("file://"):
        location = location.removeprefix("file://")
    elif "://" in location:
        return None
    return Path(os.path.normpath(os.path.abspath(location)) + ".locks")


def _process_start(pid: int) -> str:
    """Start time of process ``pid`` (Linux ``/proc``), to tell a reused pid apart; "" elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def _holder_alive(token: str, age_s: float) -> bool:
    """Whether the process named in a lock file's ``token`` may still hold it."""
    parts = token.split()
    if len(parts) < 2:
        return age_s < 60  # a lock being written right now; empty for a minute = abandoned
    pid, host = int(parts[0]), parts[1]
    if host != socket.gethostname():
        return True  # cannot tell from here; remove the lock file by hand if its host is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = parts[2] if len(parts) > 2 else ""
    return not started or _process_start(pid) in ("", started)


def _try_lock(location: Any, name: int | str) -> StoreLock | None:
    folder = _lock_dir(location)
    if folder is None:
        return StoreLock(None, "")
    pid = os.getpid()
    token = f"{pid} {socket.gethostname()} {_process_start(pid)}\n"
    path = folder / (f"shard-{name}.lock" if isinstance(name, int) else f"{name}.lock")
    for _ in range(3):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        except FileNotFoundError:  # the folder was removed by a releasing process: again
            continue
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(token)
            return StoreLock(path, token)
        if not _take_over_stale(folder, path):
            return None
    return None


def _take_over_stale(folder: Path, path: Path) -> bool:
    """Remove ``path`` if its holder is gone; True when the caller should try again."""
    try:
        held = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True  # released meanwhile
    if _holder_alive(held, age):
        return False
    import fcntl

    # Serialise takeovers: two processes seeing the same stale lock must not both remove it
    # (the second would remove the first's fresh lock).
    with open(folder / ".takeover", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            if path.read_text() == held:
                path.unlink()
        except FileNotFoundError:
            pass
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
    return True


def _wait_lock(location: Any, name: int | str, poll_s: float = 0.2) -> StoreLock:
    while (lock := _try_lock(location, name)) is None:
        time.sleep(poll_s)
    return lock


@contextlib.contextmanager
def _held(location: Any, name: str) -> Iterator[StoreLock]:
    lock = _wait_lock(location, name)
    try:
        yield lock
    finally:
        lock.release()


def _reopen(
    path: Any, read_only: bool, storage_options: Mapping[str, Any] | None
) -> EmbeddingStore:
    return EmbeddingStore(path, read_only=read_only, storage_options=storage_options)
