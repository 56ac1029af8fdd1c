"""Checks of the rows, labels and skipped-sample records a shard write or a read is given."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cl_core.validation import check_finite

LABEL_FILL = -1
"""The label stored for samples that could not be loaded (and of unwritten rows)."""


def check_feature_array(name: str, features: Any) -> Any:
    """``features`` (an array-like or an array with shape and dtype) if it is a real (N, D) array."""
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


def check_labels(name: str, labels: Any, n_rows: int, offset: int = 0) -> np.ndarray:
    """``labels`` as int64 (n_rows,) if they are integer class ids of that shape."""
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


def cast_for_storage(rows: Any, dtype: str, offset: int) -> np.ndarray:
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


def check_row_indices(indices: Any, n_rows: int) -> np.ndarray:
    """``indices`` as int64 (M,), each in ``[0, n_rows)``; TypeError/ValueError naming the first bad one."""
    wanted = np.asarray(indices)
    if wanted.ndim != 1 or (wanted.size and wanted.dtype.kind not in "iu"):
        raise TypeError(
            f"indices must be a 1-D array of integers, got shape {wanted.shape} dtype {wanted.dtype}"
        )
    wanted = wanted.astype(np.int64, copy=False)
    bad = np.flatnonzero((wanted < 0) | (wanted >= n_rows))
    if bad.size:
        raise ValueError(
            f"indices must lie in [0, {n_rows}); indices[{int(bad[0])}] = {int(wanted[bad[0]])} "
            f"({bad.size} out of range)"
        )
    return wanted


def resolve_rows(rows: Any, n_rows: int) -> tuple[int, int]:
    """``rows`` (None, ``(start, stop)``, a range or a slice) as a contiguous ``[start, stop)``."""
    if rows is None:
        return 0, n_rows
    if isinstance(rows, slice):
        if rows.step not in (None, 1):
            raise ValueError(f"rows must be a contiguous range (step 1), got {rows!r}")
        start, stop, _ = rows.indices(n_rows)
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
    if not 0 <= start <= stop <= n_rows:
        raise ValueError(f"rows must satisfy 0 <= start <= stop <= {n_rows}, got {rows!r}")
    return start, stop


@dataclasses.dataclass(frozen=True)
class ShardRows:
    """A shard's rows ready to store: values cast, skipped rows zeroed, their labels -1."""

    stored: np.ndarray
    labels: np.ndarray | None
    keep: np.ndarray
    skipped: list[dict[str, Any]]


def prepare_shard(
    shard: int,
    bounds: tuple[int, int],
    features: Any,
    labels: Any,
    skipped: Sequence[Mapping[str, Any]] | None,
    dim: int,
    dtype: str,
    has_labels: bool,
) -> ShardRows:
    """Check one shard's arguments (rows ``bounds``) and prepare what is written."""
    start, stop = bounds
    values = check_feature_array("features", features)
    if tuple(values.shape) != (stop - start, dim):
        raise ValueError(
            f"features for shard {shard} must have shape ({stop - start}, {dim}) (rows "
            f"{start}..{stop - 1}), got {tuple(values.shape)}"
        )
    if has_labels and labels is None:
        raise ValueError(
            f"labels are required: the store was created with_labels=True; pass the "
            f"{stop - start} labels of rows {start}..{stop - 1}"
        )
    if not has_labels and labels is not None:
        raise ValueError(
            "labels were given but the store was created with_labels=False; recreate it with "
            "with_labels=True or drop labels"
        )
    records = _check_skipped(skipped, start, stop)
    keep = np.ones(stop - start, dtype=bool)
    keep[[record["index"] - start for record in records]] = False
    if not keep.all():
        values = np.where(keep[:, None], np.asarray(values), 0)
    stored = cast_for_storage(values, dtype, start)
    label_values = None if labels is None else check_labels("labels", labels, stop - start, start)
    if label_values is not None and not keep.all():
        label_values = np.where(keep, label_values, LABEL_FILL)
    return ShardRows(stored, label_values, keep, records)
