"""Readers of embeddings for the clustering stage: one chunked interface over stores and arrays.

A :class:`ChunkSource` hands out normalised float32 rows by chunk, by range or by index, so every
stage step (subsample, k sweep, streamed fit, assignment) reads a store and an array the same way
and never holds the N x D matrix. :func:`as_source` wraps whatever the user passes (a store, a
store path or URL, an array, a torch tensor, a memmap or h5py dataset).

Normalisation
-------------
``"standard"`` = dataset-wide z-score per dimension, then L2 per row (as the reference); ``"l2"``;
``"none"``. A store normalises with its finalized statistics; an array gets the same treatment
from :class:`ArraySource`, which streams the mean/std in float64 first (see
:func:`cl_core.store.normalize_block`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cl_core.store import EmbeddingStore, open_store
from cl_core.store.moments import (
    N_MOMENTS,
    NORMALIZATIONS,
    block_moments,
    merge_moments,
    normalize_block,
)
from cl_core.store.rows import check_row_indices
from cl_core.validation import check_choice, check_finite, check_int, check_valid_mask

DEFAULT_CHUNK_ROWS = 4096
"""Rows per chunk when an in-memory array is streamed (:class:`ArraySource`)."""

_STATS_BLOCK_ROWS = 16_384  # fixed, so array statistics do not depend on chunk_rows


class ChunkSource:
    """Normalised float32 rows of a data set, read by chunk, range or index.

    Subclasses set ``n_rows``, ``dim``, ``chunk_rows`` and ``normalize`` and implement
    :meth:`read_range`, :meth:`read_rows` and :meth:`labels`.
    """

    n_rows: int
    dim: int
    chunk_rows: int
    normalize: str

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)``, float32 (stop - start, D), normalised."""
        raise NotImplementedError

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Rows at ``indices`` (ascending is fastest), float32 (len(indices), D), normalised."""
        raise NotImplementedError

    def labels(self) -> np.ndarray | None:
        """Per-row labels stored with the data, or None."""
        return None

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, rows)`` blocks of ``chunk_rows`` rows in dataset order."""
        for start in range(0, self.n_rows, self.chunk_rows):
            yield start, self.read_range(start, min(start + self.chunk_rows, self.n_rows))

    def iter_blocks(
        self, order: Iterable[int], block_rows: int
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, rows)`` of the blocks ``[b * block_rows, (b + 1) * block_rows)``,
        ``b`` in ``order``, reading the next block in a second thread meanwhile.

        The caller's work on one block (a ``partial_fit``, a device transfer) overlaps the
        storage read of the next one.
        """
        positions = [int(block) for block in order]

        def read(block: int) -> tuple[int, np.ndarray]:
            start = block * block_rows
            return start, self.read_range(start, min(start + block_rows, self.n_rows))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cl-cluster-prefetch") as pool:
            pending = pool.submit(read, positions[0]) if positions else None
            for position in range(len(positions)):
                assert pending is not None
                current = pending.result()
                if position + 1 < len(positions):
                    pending = pool.submit(read, positions[position + 1])
                yield current

    def __len__(self) -> int:
        return self.n_rows


class ArraySource(ChunkSource):
    """An in-memory or memory-mapped (N, D) array read as normalised float32 chunks.

    The array is referenced, never copied whole. With ``normalize="standard"`` the per-dimension
    mean/std are streamed once in float64 over fixed blocks of rows (so they, and therefore
    every result, do not depend on ``chunk_rows``); that pass also rejects NaN/inf rows.

    Parameters
    ----------
    features : array-like of shape (N, D)
        Real-valued, finite features: a numpy array or memmap, a torch tensor, a list, or a
        lazily sliced array (an object with ``shape``, ``dtype`` and numpy-style slicing and
        integer-array row indexing, e.g. an h5py dataset), which is read block by block.
    normalize : {"standard", "l2", "none"}
    chunk_rows : int
        Rows per chunk of :meth:`iter_chunks`.
    labels : array-like of shape (N,), optional
        Per-row class labels returned by :meth:`labels`.
    valid : array-like of shape (N,), bool, optional
        Rows that count (True): the mean/std and the finiteness check cover only those, so the
        placeholder rows of skipped samples (zeros, or anything) do not shift the statistics.
        The source still exposes all N rows; :func:`cluster_embeddings` reads only valid ones.

    Attributes
    ----------
    feature_mean, feature_std : ndarray of shape (D,), float64, or None
        The per-dimension mean/std of the valid rows that ``"standard"`` normalises with (as a
        store's :attr:`~cl_core.store.EmbeddingStore.feature_mean`); None for other
        normalisations.
    """

    def __init__(
        self,
        features: Any,
        *,
        normalize: str = "standard",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        labels: Any = None,
        valid: Any = None,
    ) -> None:
        values = _lazy_array(features)
        if np.dtype(values.dtype).kind not in "fiu":
            raise TypeError(
                f"features must be real numbers, got dtype {values.dtype}; convert with "
                "np.asarray(x, dtype=np.float32)"
            )
        shape = tuple(int(size) for size in values.shape)
        if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
            raise ValueError(
                f"features must be a non-empty 2-D array (N, D), got shape {shape}; an "
                "empty dataset cannot be clustered"
            )
        self._values = values
        self.n_rows, self.dim = (int(s) for s in values.shape)
        self.chunk_rows = check_int("chunk_rows", chunk_rows, 1)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)
        self._labels = None if labels is None else as_label_array(labels, self.n_rows)
        self.valid = check_valid_mask("valid", valid, self.n_rows)
        self.feature_mean, self.feature_std = self._scan_statistics()

    def _scan_statistics(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Check every row is finite; return float64 mean/std when normalising ``standard``."""
        total = np.zeros((N_MOMENTS, self.dim))
        for start in range(0, self.n_rows, _STATS_BLOCK_ROWS):
            block = np.asarray(self._values[start : start + _STATS_BLOCK_ROWS])
            if self.valid is not None:
                kept = np.flatnonzero(self.valid[start : start + block.shape[0]])
                block = block[kept]
                _check_finite_rows(block, kept + start)
                if block.shape[0] == 0:
                    continue
            else:
                check_finite("features", block, offset=start)
            if self.normalize == "standard":
                total = merge_moments(total, block_moments(block))
        if self.normalize != "standard":
            return None, None
        count, mean, m2 = total
        return mean, np.sqrt(m2 / count)

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        return normalize_block(raw, self.normalize, self.feature_mean, self.feature_std)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self._normalized(np.asarray(self._values[start:stop]))

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        wanted = check_row_indices(indices, self.n_rows)
        return self._normalized(np.asarray(self._values[wanted.astype(np.intp)]))

    def labels(self) -> np.ndarray | None:
        return self._labels


def _check_finite_rows(block: np.ndarray, row_index: np.ndarray) -> None:
    """NaN/inf check of selected rows, naming the first bad row by its dataset index."""
    if block.dtype.kind not in "fc" or block.shape[0] == 0:
        return
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"features has non-finite (NaN/inf) values in {bad.size} valid rows; first at index "
            f"{int(row_index[bad[0]])}. Remove or repair those samples, or mark them invalid "
            f"(valid[i] = False)"
        )


class RowSubset(ChunkSource):
    """The rows ``rows`` (ascending dataset indices) of another source, as a source of their own.

    Row ``j`` of the subset is row ``rows[j]`` of ``base``; chunks are ``chunk_rows`` subset rows.
    Every stage step (subsample, sweep, fit, assign) run on it sees only those rows.
    """

    def __init__(self, base: ChunkSource, rows: np.ndarray) -> None:
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)
        self.n_rows = int(self.rows.shape[0])
        self.dim = base.dim
        self.chunk_rows = base.chunk_rows
        self.normalize = base.normalize

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self.base.read_rows(self.rows[start:stop])

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        return self.base.read_rows(self.rows[check_row_indices(indices, self.n_rows)])

    def labels(self) -> np.ndarray | None:
        labels = self.base.labels()
        return None if labels is None else np.asarray(labels)[self.rows]


class StoreSource(ChunkSource):
    """A finalized :class:`cl_core.store.EmbeddingStore` read with a fixed normalisation."""

    def __init__(self, store: EmbeddingStore, *, normalize: str = "standard") -> None:
        self.store = store
        self.n_rows = int(store.n_rows)
        self.dim = int(store.dim)
        self.chunk_rows = int(store.chunk_rows)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)

    def read_range(self, start: int, stop: int) -> np.ndarray:
        # One block: chunk_rows=n_rows puts no block edge inside [start, stop).
        blocks = [
            block
            for _, block in self.store.iter_chunks(
                self.normalize, rows=(start, stop), chunk_rows=self.n_rows, prefetch=False
            )
        ]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Gather rows chunk by chunk into one preallocated array, then normalise them.

        A uniform sample touches nearly every chunk, so this is one streamed pass whose
        temporaries are a chunk or two, instead of whole-selection copies; and only the gathered
        rows are normalised (the normalisation is row-wise, so the values are the same).
        """
        wanted = check_row_indices(indices, self.n_rows)
        if wanted.shape[0] > 1 and np.any(wanted[1:] < wanted[:-1]):
            order = np.argsort(wanted, kind="stable")
            rows = np.empty((wanted.shape[0], self.dim), dtype=np.float32)
            rows[order] = self.read_rows(wanted[order])
            return rows
        out = np.empty((wanted.shape[0], self.dim), dtype=np.float32)
        if wanted.shape[0] == 0:
            return out
        chunk_of = wanted // self.chunk_rows
        hit_chunks, first = np.unique(chunk_of, return_index=True)
        bounds = [*first.tolist(), wanted.shape[0]]
        if 2 * hit_chunks.shape[0] > math.ceil(self.n_rows / self.chunk_rows):
            blocks: Iterator[tuple[int, np.ndarray]] = self.store.iter_chunks("none")  # prefetched
        else:
            blocks = self._read_chunks(hit_chunks)
        position = 0
        for start, block in blocks:
            if position == hit_chunks.shape[0]:
                break
            if start // self.chunk_rows != hit_chunks[position]:
                continue
            lo, hi = bounds[position], bounds[position + 1]
            out[lo:hi] = block[wanted[lo:hi] - start]
            position += 1
        return self._normalized(out)

    def _read_chunks(self, chunks: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        for chunk in chunks.tolist():
            start = chunk * self.chunk_rows
            stop = min(start + self.chunk_rows, self.n_rows)
            yield from self.store.iter_chunks("none", rows=(start, stop), prefetch=False)

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        if self.normalize == "standard" and self.store.feature_mean is None:
            raise ValueError(
                f"normalize='standard' needs the dataset mean/std of the store {self.store!r}, "
                "which is not finalized; call store.finalize() after writing every shard, or "
                "use normalize='l2' or 'none'"
            )
        return normalize_block(raw, self.normalize, self.store.feature_mean, self.store.feature_std)

    def iter_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.store.iter_chunks(self.normalize)  # prefetches the next chunk

    def labels(self) -> np.ndarray | None:
        return self.store.labels()


def _lazy_array(values: Any) -> Any:
    """Keep sliceable array-likes (memmap, h5py...) as they are; convert everything else."""
    if hasattr(values, "detach"):  # torch tensor
        return to_numpy(values)
    if all(hasattr(values, name) for name in ("shape", "dtype", "__getitem__")):
        try:
            np.dtype(values.dtype)
        except TypeError:
            return to_numpy(values)
        return values
    return to_numpy(values)


def to_numpy(values: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors via ``.numpy()`` without importing torch."""
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        return np.asarray(values.detach().cpu().numpy())
    return np.asarray(values)


def as_source(
    x: Any, *, normalize: str = "standard", chunk_rows: int | None = None, valid: Any = None
) -> ChunkSource:
    """Wrap an embedding store, a store path or an array as a :class:`ChunkSource`.

    Parameters
    ----------
    x : ChunkSource, EmbeddingStore, str, os.PathLike or array-like of shape (N, D)
        A :class:`ChunkSource` is returned unchanged (it keeps its own normalisation); a store
        (or the path of one) is read through its ``iter_chunks``/``read_rows``; an array is
        wrapped by :class:`ArraySource` (one validation/statistics pass).
    normalize : {"standard", "l2", "none"}
        Normalisation applied while reading.
    chunk_rows : int, optional
        Chunk size for arrays (default :data:`DEFAULT_CHUNK_ROWS`); stores use their own.
    valid : array-like of shape (N,), bool, optional
        For arrays: the rows whose statistics count (see :class:`ArraySource`). Stores compute
        their statistics without their skipped rows already; sources are returned as they are.

    Returns
    -------
    ChunkSource
    """
    if isinstance(x, ChunkSource):
        return x
    check_choice("normalize", normalize, NORMALIZATIONS)
    if isinstance(x, (str, os.PathLike)):
        x = open_store(x, read_only=True)
    if _is_store(x):
        return StoreSource(x, normalize=normalize)
    return ArraySource(
        x,
        normalize=normalize,
        chunk_rows=DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows,
        valid=valid,
    )


def _is_store(x: Any) -> bool:
    return all(hasattr(x, name) for name in ("iter_chunks", "read_rows", "n_rows", "chunk_rows"))


def as_label_array(labels: Any, n_rows: int) -> np.ndarray:
    """Labels (list, ndarray or torch tensor) as a 1-D numpy array of length ``n_rows``."""
    values = to_numpy(labels)
    if values.ndim != 1:
        raise ValueError(
            f"labels must be 1-D (one class per row), got shape {values.shape}; flatten it "
            "or pass class ids, not one-hot vectors"
        )
    if values.shape[0] != n_rows:
        raise ValueError(
            f"labels has length {values.shape[0]} but the features have {n_rows} rows; pass "
            "exactly one label per row, in dataset order"
        )
    if values.dtype.kind not in "biuUS":
        if (
            values.dtype.kind == "f"
            and np.isfinite(values).all()
            and (values == np.round(values)).all()
        ):
            return values.astype(np.int64)
        raise TypeError(
            f"labels must be integer class ids or strings, got dtype {values.dtype}; map them "
            "with np.unique(labels, return_inverse=True)[1]"
        )
    return values


def resolve_valid(valid: Any, src: ChunkSource) -> np.ndarray | None:
    """The row mask to use: ``valid`` checked, or a store's recorded skips, or None."""
    if valid is not None:
        return check_valid_mask("valid", valid, src.n_rows)
    if isinstance(src, StoreSource):
        skipped = getattr(src.store, "skipped_indices", None)
        if skipped is not None and len(skipped):
            mask = np.ones(src.n_rows, dtype=bool)
            mask[np.asarray(skipped, dtype=np.int64)] = False
            return check_valid_mask("store.skipped_indices", mask, src.n_rows)
    return None
