"""The Zarr v3 embedding store: features written in resumable, independently locked shards and
read back in normalised row chunks, keyed by a content fingerprint of data, model and layout.

Local path, fsspec URL or zarr ``Store``; the layout and its guarantees are in
``shared/design.md`` (Storage), the map of modules in ``docs/architecture.md``.
"""

from __future__ import annotations

from cl_core.store.create import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_CHUNKS_PER_SHARD,
    DTYPES,
    NON_IDENTITY_KEYS,
    PROVENANCE_KEYS,
    StoreMismatchError,
    create_store,
    open_store,
    store_from_array,
)
from cl_core.store.embedding_store import ATTRS_KEY, SCHEMA_VERSION, EmbeddingStore
from cl_core.store.keys import FileKeys, keys_from_json, keys_to_json
from cl_core.store.locks import StoreLock
from cl_core.store.moments import (
    NORMALIZATIONS,
    array_fingerprint,
    block_moments,
    merge_moments,
    normalize_block,
    standardization_scale,
)
from cl_core.store.reuse import FileMatch, match_files, reuse_rows
from cl_core.store.rows import check_row_indices

__all__ = [
    "ATTRS_KEY",
    "DEFAULT_CHUNKS_PER_SHARD",
    "DEFAULT_CHUNK_ROWS",
    "DTYPES",
    "NON_IDENTITY_KEYS",
    "NORMALIZATIONS",
    "PROVENANCE_KEYS",
    "SCHEMA_VERSION",
    "EmbeddingStore",
    "FileKeys",
    "FileMatch",
    "StoreLock",
    "StoreMismatchError",
    "array_fingerprint",
    "block_moments",
    "check_row_indices",
    "create_store",
    "keys_from_json",
    "keys_to_json",
    "match_files",
    "merge_moments",
    "normalize_block",
    "open_store",
    "reuse_rows",
    "standardization_scale",
    "store_from_array",
]
