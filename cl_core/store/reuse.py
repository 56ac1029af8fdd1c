"""Per-file reuse: a new store takes the rows of unchanged files from an earlier store.

Among candidate stores (e.g. every store of a work dir) :func:`reuse_rows` picks the most recently
completed one of the same data location and the same embedding configuration (every identity
attribute but the dataset's: model, weights, layer, pooling, transform, precision, decode; and D,
dtype), verifies it, matches rows by file key and copies the rows of unchanged files shard by shard,
byte for byte. Fully copied shards are marked done; the copied rows of the other shards wait in
the new store for the embedding, which computes only the missing rows. The earlier store is only
read. Rows an earlier store skipped as unloadable are embedded again.

The earlier store's shards are read once: the rows its verification read are kept for the copy
while they fit in :data:`REUSE_MEMORY_BYTES` (a nightly run over a small or medium dataset), and
read again shard by shard for the copy beyond that (one shard in memory at a time).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.store.create import content_fingerprint, identity_attrs, open_store
from cl_core.store.embedding_store import EmbeddingStore, describe
from cl_core.store.keys import FileKeys

REUSE_MEMORY_BYTES = 256 * 2**20
"""At most this many bytes of verified rows of the earlier store are kept for the copy."""
_DATASET_KEYS = ("dataset_fingerprint", "dataset_identity_method")
_NAMES = {
    "model_id": "model differs",
    "weights_sha256": "weights differ",
    "input_transform": "transform differs",
    "dim": "feature dimension differs",
    "dtype": "storage dtype differs",
    "with_labels": "labels differ",
    "key_method": "file identity differs (listing vs --verify-content)",
}


@dataclass(frozen=True)
class FileMatch:
    """How a new listing's rows relate to an earlier store's.

    Attributes
    ----------
    source : ndarray of int64, shape (N_new,)
        The earlier store's row holding each new row's embedding, or -1 (to embed).
    added, changed, removed, retried : int
        New files; files whose key differs; files gone; unchanged files the earlier store
        skipped as unloadable (embedded again).
    """

    source: np.ndarray
    added: int
    changed: int
    removed: int
    retried: int

    @property
    def reused(self) -> int:
        return int((self.source >= 0).sum())


def match_files(new: FileKeys, old: FileKeys, old_skipped: Any = ()) -> FileMatch:
    """Match rows by relative path and size + mtime (or sha256 when both have it)."""
    _, new_at, old_at = np.intersect1d(
        new.paths, old.paths, assume_unique=True, return_indices=True
    )
    if new.sha256 is not None and old.sha256 is not None:
        same = new.sha256[new_at] == old.sha256[old_at]
    else:
        same = (new.sizes[new_at] == old.sizes[old_at]) & (
            new.mtimes_ns[new_at] == old.mtimes_ns[old_at]
        )
    same &= old.sizes[old_at] >= 0  # a file stat could not read is never trusted
    skipped = np.isin(old_at, np.asarray(old_skipped, dtype=np.int64))
    source = np.full(len(new), -1, dtype=np.int64)
    source[new_at[same & ~skipped]] = old_at[same & ~skipped]
    return FileMatch(
        source=source,
        added=len(new) - len(new_at),
        changed=int((~same).sum()),
        removed=len(old) - len(old_at),
        retried=int((same & skipped).sum()),
    )


def reuse_rows(
    store: EmbeddingStore, candidates: Iterable[Any], labels: Any = None
) -> dict[str, Any] | None:
    """Copy the rows of unchanged files from the best earlier store into a new ``store``.

    Parameters
    ----------
    store : EmbeddingStore
        Newly created, with file keys (``create_store(..., file_keys=...)``), opened for writing.
    candidates : iterable of paths or URLs
        Earlier stores to choose from (e.g. every store in a work dir; unreadable ones and
        ``store`` itself are ignored).
    labels : array-like of int, shape (N,), optional
        The new listing's labels for the copied rows (class indices may shift when class
        folders come or go); default the earlier store's.

    Returns
    -------
    dict or None
        The figures recorded in ``store.reuse``: ``parent`` (fingerprint) and ``parent_path``,
        ``reused``, ``added``, ``changed``, ``removed``, ``retried``, ``embedded``, or ``reason``
        (why nothing was reused: "no previous store", "model differs", "previous store ...
        failed verification: ..."). None for a store without file keys (not a file dataset) or
        one that was complete already. Idempotent: a store that recorded its reuse is left as
        it is.
    """
    if store.reuse is not None or store.is_complete or not store.attrs.get("file_keys"):
        return store.reuse
    with store.lock("reuse"):
        store.refresh()
        if store.reuse is not None:  # another process planned it meanwhile
            return store.reuse
        figures, mask = _reuse(store, list(candidates), labels)
        store.record_reuse(figures, mask)
    return figures


def _nothing(store: EmbeddingStore, reason: str) -> tuple[dict[str, Any], None]:
    return {"reused": 0, "embedded": store.n_rows, "reason": reason}, None


def _reuse(
    store: EmbeddingStore, candidates: list[Any], labels: Any
) -> tuple[dict[str, Any], np.ndarray | None]:
    keys = store.file_records()
    assert keys is not None  # reuse_rows checked
    same_place = _same_location(store, keys, candidates)
    if not same_place:
        return _nothing(store, "no previous store")
    wanted = _configuration(store.attrs)
    matching = [other for other in same_place if _difference(other.attrs, wanted) is None]
    if not matching:
        return _nothing(store, str(_difference(same_place[0].attrs, wanted)))
    rejected: list[str] = []
    for other in matching:
        old_keys = other.file_records()
        match = None if old_keys is None else match_files(keys, old_keys, other.skipped_indices)
        verified = _VerifiedRows(other)
        problem = _problem(other, old_keys, match, verified)
        if problem is not None:
            rejected.append(f"previous store {_name(other)} failed verification: {problem}")
            continue
        assert match is not None
        mask = _copy(verified, store, match.source, labels)
        figures = {
            "parent": other.fingerprint,
            "parent_path": describe(other.path),
            "reused": match.reused,
            "added": match.added,
            "changed": match.changed,
            "removed": match.removed,
            "retried": match.retried,
            "embedded": store.n_rows - match.reused,
        }
        if rejected:
            figures["rejected"] = rejected
        return figures, mask
    return _nothing(store, rejected[0])


def _same_location(store: EmbeddingStore, keys: FileKeys, candidates: list[Any]) -> list[Any]:
    """Complete candidate stores over the same data location, most recently completed first."""
    found = []
    for path in candidates:
        try:
            other = open_store(path, read_only=True)
        except (OSError, ValueError, KeyError):
            continue  # a half-written or foreign directory is no candidate
        meta = other.attrs
        described = meta.get("file_keys") or {}
        if other.fingerprint == store.fingerprint or not meta.get("complete"):
            continue
        if described.get("root") == keys.root:
            found.append(other)
    return sorted(found, key=lambda other: other.attrs.get("completed_at") or "", reverse=True)


def _configuration(meta: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for rows to be reusable: every identity attribute but the dataset's."""
    config = {k: v for k, v in identity_attrs(meta).items() if k not in _DATASET_KEYS}
    config.update(
        dim=meta["dim"],
        dtype=meta["dtype"],
        with_labels=meta["with_labels"],
        key_method=(meta.get("file_keys") or {}).get("method"),
    )
    return config


def _difference(meta: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first difference of configuration, as words ("model differs"), or None."""
    have = _configuration(meta)
    for key in ("model_id", "weights_sha256", *sorted(set(have) | set(wanted))):
        if have.get(key) != wanted.get(key):
            return _NAMES.get(key, f"{key} differs")
    return None


def _problem(
    other: EmbeddingStore,
    keys: FileKeys | None,
    match: FileMatch | None,
    verified: _VerifiedRows,
) -> str | None:
    """Why ``other`` may not be copied from, or None (only the shards the copy reads are read;
    their rows are handed to ``verified``)."""
    if keys is None or len(keys) != other.n_rows or match is None:
        return "its file keys do not cover its rows"
    if content_fingerprint(other.attrs) != other.fingerprint:
        return "its attributes do not match its fingerprint"
    used = match.source[match.source >= 0]
    return other.verify_rows(np.unique(used // other.shard_rows).tolist(), verified.keep)


class _VerifiedRows:
    """The earlier store's rows by shard as its verification read them (up to
    :data:`REUSE_MEMORY_BYTES`), and :meth:`take` to gather rows from them."""

    def __init__(self, store: EmbeddingStore) -> None:
        self.store = store
        self.blocks: dict[int, np.ndarray] = {}
        self.nbytes = 0
        self.complete = True  # every verified shard is kept

    def keep(self, shard: int, rows: np.ndarray) -> None:
        if not self.complete or self.nbytes + rows.nbytes > REUSE_MEMORY_BYTES:
            self.complete, self.blocks = False, {}
            return
        self.blocks[shard] = rows
        self.nbytes += rows.nbytes

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The stored rows ``rows`` (ascending indices), (len(rows), D)."""
        if not self.complete:
            return np.asarray(self.store.features.get_orthogonal_selection((rows, slice(None))))
        shard_rows = self.store.shard_rows
        out = np.empty((len(rows), self.store.dim), dtype=self.store.dtype)
        shards = rows // shard_rows
        for shard in np.unique(shards).tolist():
            at = shards == shard
            out[at] = self.blocks[shard][rows[at] - shard * shard_rows]
        return out


def _name(store: EmbeddingStore) -> str:
    name = describe(store.path).rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".zarr") or store.fingerprint


def _copy(
    verified: _VerifiedRows, new: EmbeddingStore, source: np.ndarray, labels: Any
) -> np.ndarray:
    """Copy the matched rows shard by shard (one new shard in memory); the mask of copied rows."""
    old = verified.store
    label_values = None if labels is None else np.asarray(labels, dtype=np.int64)
    old_labels = old.labels() if new.has_labels and label_values is None else None
    missing = set(new.missing_shards())
    for shard in range(new.n_shards):
        start, stop = new.shard_range(shard)
        rows = source[start:stop]
        have = rows >= 0
        if shard not in missing or not have.any():
            continue
        block = np.full((stop - start, new.dim), np.nan, dtype=new.dtype)
        order = np.argsort(rows[have], kind="stable")
        read = verified.take(rows[have][order])
        block[np.flatnonzero(have)[order]] = read
        shard_labels = None
        if new.has_labels:
            shard_labels = (
                label_values[start:stop].copy()
                if label_values is not None
                else np.where(have, old_labels[np.maximum(rows, 0)], -1)  # type: ignore[index]
            )
        if have.all():
            new.write_shard(shard, block, shard_labels)
        else:
            new.write_reused(shard, block, shard_labels)
    return source >= 0
