"""The :class:`EmbeddingStore` handle: shard writes, finalize, skipped samples, normalised reads.

Also the group-level reading every store handle shares (:func:`open_group`, :func:`read_meta`);
zarr is imported on use, so ``import cl_core`` stays cheap.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from cl_core.store.keys import FileKeys, read_file_keys
from cl_core.store.locks import StoreLock, try_lock, wait_lock
from cl_core.store.moments import NORMALIZATIONS, block_moments, merge_moments, normalize_block
from cl_core.store.rows import check_row_indices, prepare_shard, resolve_rows
from cl_core.validation import check_choice, check_finite, check_int

SCHEMA_VERSION = 1
ATTRS_KEY = "cl_curriculum"
"""The group attribute that holds a store's layout, provenance and statistics."""


def describe(location: Any) -> str:
    """A store location for messages: a path or URL as given, a zarr Store by its repr."""
    return location if isinstance(location, str) else repr(location)


def open_group(location: Any, mode: Literal["r", "r+", "w", "w-"], storage_options: Any) -> Any:
    """``zarr.open_group`` of a store location (a path, an fsspec URL or a zarr Store)."""
    import zarr

    return zarr.open_group(store=location, mode=mode, storage_options=storage_options)


def read_meta(group: Any, location: Any) -> dict[str, Any]:
    """The ``attrs["cl_curriculum"]`` of an embedding store's group; ValueError for other groups."""
    meta = group.attrs.asdict().get(ATTRS_KEY)
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA_VERSION:
        raise ValueError(
            f"path {describe(location)} is a Zarr group but not a cl_curriculum embedding store "
            f"(schema {SCHEMA_VERSION}); its attrs lack '{ATTRS_KEY}'. Choose another path, or "
            "create the store with create_store()/store_from_array()"
        )
    return dict(meta)


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
        self._group = open_group(path, "r" if read_only else "r+", self._storage_options)
        self._load_meta()

    # -- metadata -------------------------------------------------------------------------

    def _load_meta(self) -> None:
        meta = read_meta(self._group, self.path)
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
            f"EmbeddingStore({describe(self.path)!r}, shape=({self.n_rows}, {self.dim}), "
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
                f"store {describe(self.path)} was opened read_only=True; reopen it with "
                "open_store(path) to write"
            )
        if self._meta.get("complete"):
            raise ValueError(
                f"store {describe(self.path)} is finalized; writing a shard would make its "
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
        rows = prepare_shard(
            shard, (start, stop), features, labels, skipped, self.dim, self.dtype, self.has_labels
        )
        stored, label_values, keep, records = rows.stored, rows.labels, rows.keep, rows.skipped
        self._group["features"][start:stop] = stored
        if label_values is not None:
            self._group["labels"][start:stop] = label_values
        self._group["shard_stats"][shard] = block_moments(stored, keep)
        if records and "shard_skipped" in self._group:
            self._group["shard_skipped"][shard] = json.dumps(records, sort_keys=True)
        elif records:
            raise ValueError(
                f"store {describe(self.path)} predates skipped-sample records; recreate it "
                "(create_store(..., overwrite=True)) to embed with on_bad_sample='skip'"
            )
        # Last: a crash before this line leaves the shard missing, so a rerun rewrites it.
        self._group["shard_done"][shard] = 1

    def finalize(self) -> None:
        """Merge the per-shard statistics (in shard order) into the dataset mean/std; mark complete.

        Idempotent. Needs every shard done; call it from one process.
        """
        if self.read_only:
            raise PermissionError(f"store {describe(self.path)} was opened read_only=True")
        missing = self.missing_shards()
        if missing:
            raise ValueError(
                f"cannot finalize {describe(self.path)}: {len(missing)} of {self.n_shards} shards "
                f"are not written yet (first: {missing[:5]}); write them with write_shard() "
                "(or rerun the embedding, which resumes) before finalize()"
            )
        stats = np.asarray(self._group["shard_stats"][:], dtype=np.float64)
        check_finite("shard_stats", stats)
        total = stats[0]
        for part in stats[1:]:
            total = merge_moments(total, part)
        count, mean, m2 = total
        skipped = self.skipped_samples
        if not np.all(count > 0):
            raise ValueError(
                f"cannot finalize {describe(self.path)}: all {self.n_rows} samples were skipped "
                f"as unloadable (first: {skipped[:1]}); check the dataset path and files"
            )
        std = np.sqrt(m2 / count)
        meta = dict(self._meta)
        meta.update(
            feature_mean=mean.tolist(),
            feature_std=std.tolist(),
            complete=True,
            n_skipped=len(skipped),
            # Which earlier store is the most recent one (cl_core.store.reuse picks it).
            completed_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        )
        self._group.attrs.update({ATTRS_KEY: meta})
        self._load_meta()

    # -- file keys ------------------------------------------------------------------------

    def file_keys(self) -> list[str] | None:
        """Each row's file path relative to the data location, in row order; None for datasets
        without files (or stores made before keys were recorded)."""
        records = self.file_records()
        return None if records is None else records.paths.tolist()

    def file_records(self) -> FileKeys | None:
        """Each row's full file key (data location, path, size, mtime, sha256); see
        :meth:`file_keys`."""
        return read_file_keys(self._group, self._meta.get("file_keys"))

    # -- rows reused from an earlier store ---------------------------------------------------

    @property
    def reuse(self) -> dict[str, Any] | None:
        """What :func:`cl_core.store.reuse_rows` recorded: the parent store and the counts of
        reused, added, changed and removed rows, or why nothing was reused; None before."""
        value = self._meta.get("reuse")
        return None if value is None else dict(value)

    def reused_rows(self, shard: int | None = None) -> np.ndarray | None:
        """Bool mask of the rows copied from the parent store (all rows, or one shard's); None
        when no row was copied."""
        if "reused" not in self._group:
            return None
        start, stop = (0, self.n_rows) if shard is None else self.shard_range(shard)
        return np.asarray(self._group["reused"][start:stop], dtype=bool)

    def reused_block(self, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """``(mask, rows, labels)`` of a shard's copied rows as stored, for the embedding to
        complete the shard with; None when none of its rows was copied."""
        mask = self.reused_rows(shard)
        if mask is None or not mask.any():
            return None
        start, stop = self.shard_range(shard)
        labels = self._group["labels"][start:stop] if self.has_labels else None
        return mask, np.asarray(self._group["features"][start:stop]), labels

    def write_reused(self, shard: int, rows: np.ndarray, labels: np.ndarray | None) -> None:
        """Store a shard's copied rows (NaN rows: still to embed) without marking it done."""
        self._require_writable()
        start, stop = self.shard_range(shard)
        self._group["features"][start:stop] = rows
        if labels is not None:
            self._group["labels"][start:stop] = labels

    def record_reuse(self, figures: Mapping[str, Any], mask: np.ndarray | None) -> None:
        """Record which rows were copied (``mask``, bool (N,)) and the reuse figures, last."""
        self._require_writable()
        if mask is not None:
            reused = self._group.create_array(
                "reused",
                shape=(self.n_rows,),
                chunks=(self.chunk_rows,),
                dtype="uint8",
                fill_value=0,
                overwrite=True,
            )
            reused[:] = mask.astype(np.uint8)
        meta = dict(self._meta, reuse=dict(figures))
        self._group.attrs.update({ATTRS_KEY: meta})
        self._load_meta()

    def verify_rows(
        self,
        shards: Sequence[int] | None = None,
        on_verified: Callable[[int, np.ndarray], None] | None = None,
    ) -> str | None:
        """What is wrong with a finished store's rows, or None when they check out.

        Checks the done markers, and that each shard's stored rows (``shards``; default all) give
        the statistics recorded when it was written, bit for bit (a changed, lost or unreadable
        chunk does not). ``on_verified(shard, rows)`` receives each shard's rows, (rows, D) as
        stored, once they check out (so a caller that needs them does not read them again).
        """
        if not self._meta.get("complete") or self.missing_shards():
            return "it is not complete"
        skipped: dict[int, list[int]] = {}
        for record in self.skipped_samples:
            skipped.setdefault(record["index"] // self.shard_rows, []).append(record["index"])
        for shard in range(self.n_shards) if shards is None else shards:
            start, stop = self.shard_range(shard)
            keep = np.ones(stop - start, dtype=bool)
            keep[[index - start for index in skipped.get(shard, [])]] = False
            try:
                rows = np.asarray(self._group["features"][start:stop])
                recorded = np.asarray(self._group["shard_stats"][shard])
            except Exception as error:  # any codec or storage error: the chunk is unusable
                return f"shard {shard} cannot be read ({type(error).__name__})"
            if not np.array_equal(block_moments(rows, keep), recorded):
                return f"shard {shard}'s rows do not give its recorded statistics"
            if on_verified is not None:
                on_verified(shard, rows)
        return None

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
        return try_lock(self.path, name)

    def lock(self, name: int | str, *, poll_s: float = 0.2) -> StoreLock:
        """Wait for and take the lock ``name`` (see :meth:`try_lock`)."""
        return wait_lock(self.path, name, poll_s)

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
                f"rows {start}..{stop - 1} of {describe(self.path)} include {len(missing)} "
                f"unwritten shards (first: {missing[:5]}); finish the embedding (a rerun writes "
                "only the missing shards) before reading"
            )

    def _require_stats(self, normalize: str) -> None:
        if normalize == "standard" and self._mean is None:
            self.refresh()
            if self._mean is None:
                raise ValueError(
                    f"normalize='standard' needs the dataset mean/std, but {describe(self.path)} "
                    "is not finalized; call store.finalize() after writing every shard, or read "
                    "with normalize='l2' or 'none'"
                )

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
        start, stop = resolve_rows(rows, self.n_rows)
        step = self.chunk_rows if chunk_rows is None else check_int("chunk_rows", chunk_rows, 1)
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
        wanted = check_row_indices(indices, self.n_rows)
        if wanted.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._require_stats(normalize)
        unique, inverse = np.unique(wanted, return_inverse=True)
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


def _reopen(
    path: Any, read_only: bool, storage_options: Mapping[str, Any] | None
) -> EmbeddingStore:
    return EmbeddingStore(path, read_only=read_only, storage_options=storage_options)
