"""``save_weights`` / ``load_weights``: a NumPy ``.npz`` archive, no pickle, written atomically.

Layout (format ``cl-curriculum/compat-weights``, version 1):

``weights``
    float32 (N,), the per-sample difficulty (always present).
``assignment``, ``distances``, ``labels``
    (N,) each, when known; ``centroids`` (k, D) and ``cluster_class`` (k,) likewise.
``meta``
    a 0-d string array holding a JSON document: ``format``, ``format_version``, ``params``
    (the constructor parameters except the extractor and ``cache_dir``), ``random_state``,
    ``feature_extractor`` (class name), ``optimal_clusters`` (the reference's meaning: k per
    class with ``use_labels``), ``n_clusters_total`` (absent in files written before it was
    added, whose ``optimal_clusters`` is the total), ``chosen_by``, ``store_fingerprint`` and
    ``schedule`` (:meth:`cl_core.schedule.Schedule.to_json` of the default strategy).

Files are read with ``allow_pickle=False``; the reference library's pickled files are refused
with a message (refit and save).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.io import atomic_write_bytes, json_default
from cl_core.schedule import Schedule

__all__ = ["SAVE_FORMAT", "SAVE_FORMAT_VERSION", "LoadedWeights", "load", "save"]

SAVE_FORMAT = "cl-curriculum/compat-weights"
SAVE_FORMAT_VERSION = 1
PER_SAMPLE = ("assignment", "distances", "labels")


@dataclass(frozen=True)
class LoadedWeights:
    """The fitted state read back from a weights file (see the module docstring)."""

    params: dict[str, Any]
    weights: np.ndarray
    assignment: np.ndarray | None
    centroids: np.ndarray | None
    distances: np.ndarray | None
    labels: np.ndarray | None
    cluster_class: np.ndarray | None
    n_clusters_total: int | None
    schedule: Schedule


def load(filepath: str | os.PathLike[str], known_params: Iterable[str]) -> LoadedWeights:
    """Read a file written by :func:`save`; parameters outside ``known_params`` are an error
    (the file came from a newer version)."""
    arrays, meta = _read_state(filepath)
    unknown = sorted(set(meta["params"]) - set(known_params))
    if unknown:
        raise ValueError(
            f"{str(filepath)!r} holds parameters {unknown} that this version does not know; "
            f"it was written by a newer version: upgrade, or refit and save again"
        )
    params = dict(meta["params"])
    params["cluster_range"] = tuple(params["cluster_range"])

    def optional(name: str, dtype: Any = None) -> np.ndarray | None:
        if name not in arrays:
            return None
        return arrays[name] if dtype is None else arrays[name].astype(dtype)

    return LoadedWeights(
        params=params,
        weights=arrays["weights"].astype(np.float32),
        assignment=optional("assignment", np.int32),
        centroids=optional("centroids", np.float32),
        distances=optional("distances", np.float32),
        labels=optional("labels"),
        cluster_class=optional("cluster_class"),
        # files written before n_clusters_total existed stored the total as optimal_clusters
        n_clusters_total=meta.get("n_clusters_total", meta["optimal_clusters"]),
        schedule=Schedule.from_json(meta["schedule"]),
    )


def save(
    filepath: str | os.PathLike[str], arrays: Mapping[str, Any], meta: Mapping[str, Any]
) -> Path:
    """Write ``arrays`` (None values skipped) and ``meta`` (stamped with the format and its
    version) to exactly ``filepath``.

    Saved into memory (``np.savez`` would append ``.npz`` to a name), then written with
    :func:`cl_core.io.atomic_write_bytes`: an interrupted save never leaves a truncated file.

    Returns
    -------
    Path
        ``filepath``.
    """
    path = Path(filepath)
    stored = {name: np.asarray(value) for name, value in arrays.items() if value is not None}
    document = {"format": SAVE_FORMAT, "format_version": SAVE_FORMAT_VERSION, **meta}
    stored["meta"] = np.array(json.dumps(document, sort_keys=True, default=json_default))
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **stored)
    return atomic_write_bytes(path, buffer.getvalue())


def _read_state(filepath: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a file written by :func:`save` (``allow_pickle=False``).

    Returns
    -------
    arrays : dict of str to ndarray
    meta : dict

    Raises
    ------
    FileNotFoundError
        When ``filepath`` is not a file.
    ValueError
        For a file of another format or version, a pickled (reference) file, or inconsistent
        array shapes.
    """
    path = Path(filepath)
    if not path.is_file():
        raise FileNotFoundError(
            f"filepath={str(filepath)!r} is not a file; pass the path given to save_weights"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as error:
        raise ValueError(
            f"filepath={str(filepath)!r} is not a weights file written by save_weights "
            f"({error}); files of the reference library hold pickled objects and are not "
            f"loaded (no pickle): refit and save again"
        ) from error
    missing = [name for name in ("meta", "weights") if name not in arrays]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks {missing}; it was not written by save_weights (refit and save)"
        )
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("format") != SAVE_FORMAT:
        raise ValueError(
            f"{str(path)!r} has format {meta.get('format')!r}, expected {SAVE_FORMAT!r}"
        )
    if meta.get("format_version") != SAVE_FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {meta.get('format_version')!r}; this version reads "
            f"{SAVE_FORMAT_VERSION}: refit and save again"
        )
    n_samples = arrays["weights"].shape[0]
    for name in PER_SAMPLE:
        if name in arrays and arrays[name].shape != (n_samples,):
            raise ValueError(
                f"{str(path)!r} is inconsistent: {name} has shape {arrays[name].shape}, expected "
                f"({n_samples},); the file is damaged, refit and save again"
            )
    return arrays, meta
