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

Modules
-------
=====================  =====================================================================
``moments``            :data:`NORMALIZATIONS`, :func:`normalize_block`, streamed moments,
                       :func:`array_fingerprint` (pure numpy; :mod:`cl_core.sources` uses them)
``layout``             constants, ``attrs`` checks, the content fingerprint, opening the group
``rows``               checks of a shard's rows, labels and skipped-sample records
``locks``              :class:`StoreLock`: one writer per shard across processes
``embedding_store``    :class:`EmbeddingStore`: shard writes, finalize, skipped samples, reads
``create``             :func:`create_store`, :func:`open_store`, :func:`store_from_array`
=====================  =====================================================================
"""

from __future__ import annotations

from cl_core.store.create import create_store, open_store, store_from_array
from cl_core.store.embedding_store import EmbeddingStore
from cl_core.store.layout import (
    ATTRS_KEY,
    DEFAULT_CHUNK_ROWS,
    DEFAULT_CHUNKS_PER_SHARD,
    DTYPES,
    NON_IDENTITY_KEYS,
    PROVENANCE_KEYS,
    SCHEMA_VERSION,
    StoreMismatchError,
)
from cl_core.store.locks import StoreLock
from cl_core.store.moments import (
    NORMALIZATIONS,
    array_fingerprint,
    block_moments,
    merge_moments,
    normalize_block,
    standardization_scale,
)

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
    "StoreLock",
    "StoreMismatchError",
    "array_fingerprint",
    "block_moments",
    "create_store",
    "merge_moments",
    "normalize_block",
    "open_store",
    "standardization_scale",
    "store_from_array",
]
