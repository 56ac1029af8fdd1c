"""Verifying and loading the files of a published version (numpy + stdlib only).

Every file a manifest lists is checked for presence, sha256 and (``.npy``) shape and dtype before
it is handed out; arrays load with ``allow_pickle=False``. Shared by the publisher and
:mod:`cl_core.sampler`.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core.artifacts.manifest import (
    MANIFEST_FILE,
    SAMPLE_MASK_FILE,
    ArtifactIntegrityError,
    load_manifest,
    read_npy_header,
    resolve_version,
    sha256_file,
)
from cl_core.io import Location, storage_errors
from cl_core.validation import check_finite

if TYPE_CHECKING:
    from upath import UPath


def _file_entry(manifest: dict[str, Any], version_dir: Location, filename: str) -> dict[str, Any]:
    entry = manifest["files"].get(filename)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise ArtifactIntegrityError(
            version_dir / filename,
            f"is not listed in {MANIFEST_FILE} (listed: {', '.join(sorted(manifest['files']))})",
            "ask for a listed file or publish an artifact that contains it",
        )
    return entry


def _check_npy_entry(file_path: Location, entry: dict[str, Any]) -> None:
    shape, dtype = read_npy_header(file_path)
    expected_shape = entry.get("shape")
    if expected_shape is None or tuple(expected_shape) != shape:
        raise ArtifactIntegrityError(
            file_path,
            f"has shape {shape}, but {MANIFEST_FILE} records {expected_shape}",
            "the artifact is corrupt; publish it again",
        )
    expected_dtype = entry.get("dtype")
    if expected_dtype is None or np.dtype(expected_dtype) != dtype:
        raise ArtifactIntegrityError(
            file_path,
            f"has dtype {dtype}, but {MANIFEST_FILE} records {expected_dtype}",
            "the artifact is corrupt; publish it again",
        )


def verify_file(version_dir: Location, filename: str, manifest: dict[str, Any]) -> Location:
    """Check one listed file: present, sha256 as recorded, and for ``.npy`` shape and dtype.

    Returns
    -------
    Path or UPath
        The verified file's path.
    """
    entry = _file_entry(manifest, version_dir, filename)
    file_path = version_dir / filename
    if not file_path.is_file():
        raise ArtifactIntegrityError(
            file_path,
            f"is missing, but {MANIFEST_FILE} lists it",
            "the artifact is partial; publish it again",
        )
    actual = sha256_file(file_path)
    if actual != entry["sha256"]:
        raise ArtifactIntegrityError(
            file_path,
            f"has sha256 {actual[:12]}..., but {MANIFEST_FILE} records {str(entry['sha256'])[:12]}... "
            f"(the file was modified or truncated after publishing)",
            "publish the artifact again or restore the file",
        )
    if filename.endswith(".npy"):
        _check_npy_entry(file_path, entry)
    return file_path


def verify_artifact(path: str | os.PathLike[str] | UPath) -> dict[str, Any]:
    """Verify sha256 (and shape/dtype of ``.npy``) of every file a version's manifest lists.

    Parameters
    ----------
    path : str, PathLike or UPath
        Anything :func:`resolve_version` accepts.

    Returns
    -------
    dict
        The manifest, after every file passed.

    Raises
    ------
    ArtifactIntegrityError
        Naming the first file that is missing or does not match.
    """
    version_dir = resolve_version(path)
    manifest = load_manifest(version_dir)
    for filename in sorted(manifest["files"]):
        verify_file(version_dir, filename, manifest)
    load_sample_mask(version_dir, manifest)  # the mask agrees with the manifest's record
    return manifest


def load_sample_mask(version_dir: Location, manifest: dict[str, Any]) -> np.ndarray | None:
    """The version's ``sample_mask.npy`` (bool (N,), True = drawable), verified, or None.

    Checks that the file and the manifest's ``excluded`` record agree (both present or both
    absent, same count and indices) and that at least one sample is drawable.

    Parameters
    ----------
    version_dir : Path or UPath
        A resolved version directory.
    manifest : dict
        Its manifest (from :func:`load_manifest`).

    Returns
    -------
    ndarray of shape (N,), bool, or None
        None when the version excludes no sample.
    """
    listed = SAMPLE_MASK_FILE in manifest["files"]
    record = manifest.get("excluded")
    manifest_path = version_dir / MANIFEST_FILE
    if not listed and record is None:
        return None
    if not listed or not isinstance(record, dict):
        raise ArtifactIntegrityError(
            manifest_path,
            f"lists {SAMPLE_MASK_FILE} and the 'excluded' record inconsistently (file listed: "
            f"{listed}, record: {record!r})",
            "publish the version again",
        )
    file_path = verify_file(version_dir, SAMPLE_MASK_FILE, manifest)
    mask = _load_npy(file_path)
    n_samples = manifest.get("n_samples")
    if (
        mask.dtype != np.bool_
        or mask.ndim != 1
        or (n_samples is not None and mask.size != n_samples)
    ):
        raise ArtifactIntegrityError(
            file_path,
            f"holds dtype {mask.dtype} shape {mask.shape}, not a bool ({n_samples},) mask",
            "publish the version again",
        )
    excluded = np.flatnonzero(~mask)
    if record.get("count") != excluded.size or record.get("indices") != excluded.tolist():
        raise ArtifactIntegrityError(
            manifest_path,
            f"records {record.get('count')!r} excluded samples, but {SAMPLE_MASK_FILE} excludes "
            f"{excluded.size}",
            "publish the version again",
        )
    if not mask.any():
        raise ArtifactIntegrityError(
            file_path, "excludes every sample, so nothing can be drawn", "publish it again"
        )
    return mask


def _load_npy(file_path: Location) -> np.ndarray:
    """``np.load`` without pickle."""
    with storage_errors("read", file_path), file_path.open("rb") as handle:
        return np.load(handle, allow_pickle=False)


def _npy_name(name: str) -> str:
    return name if name.endswith(".npy") else f"{name}.npy"


def load_array(path: str | os.PathLike[str] | UPath, name: str) -> np.ndarray:
    """Load one verified array of a published version.

    Parameters
    ----------
    path : str, PathLike or UPath
        Anything :func:`resolve_version` accepts.
    name : str
        ``"difficulty"`` or ``"difficulty.npy"`` etc.

    Returns
    -------
    ndarray
        Shape and dtype as recorded in the manifest; loaded with ``allow_pickle=False``.
    """
    version_dir = resolve_version(path)
    manifest = load_manifest(version_dir)
    filename = _npy_name(name)
    file_path = verify_file(version_dir, filename, manifest)
    return _load_npy(file_path)


def load_json(path: str | os.PathLike[str] | UPath, name: str) -> Any:
    """Load one verified JSON file (``"schedule"`` or ``"schedule.json"``) of a published version."""
    version_dir = resolve_version(path)
    manifest = load_manifest(version_dir)
    filename = name if name.endswith(".json") else f"{name}.json"
    file_path = verify_file(version_dir, filename, manifest)
    try:
        with storage_errors("read", file_path):
            return json.loads(file_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactIntegrityError(
            file_path, f"is not valid JSON ({error})", "publish the version again"
        ) from None


def check_difficulty(difficulty: object) -> np.ndarray:
    """Validate per-sample scores and return them as the artifact's float32 (N,) vector.

    Shared by the publisher and the in-memory sampler constructor so both refuse the same input.

    Raises
    ------
    TypeError
        For non-real dtypes.
    ValueError
        For non-1-D or empty input, NaN/inf (count and first index), or values beyond float32.
    """
    values = np.asarray(difficulty)
    if values.dtype.kind not in "biuf":
        raise TypeError(
            f"difficulty must be a real-valued array, got dtype {values.dtype}; pass one float "
            f"score per sample"
        )
    if values.ndim != 1:
        raise ValueError(
            f"difficulty must be 1-D with one score per sample, got shape {values.shape}; "
            f"flatten it or pass the per-sample scores"
        )
    if values.size == 0:
        raise ValueError(
            "difficulty is empty (0 samples); a curriculum needs at least one scored sample"
        )
    check_finite("difficulty", values)
    limit = float(np.finfo(np.float32).max)
    too_large = np.abs(values) > limit
    if too_large.any():
        bad = np.flatnonzero(too_large)
        raise ValueError(
            f"difficulty has {bad.size} values beyond the float32 range (|d| > {limit:.3g}); "
            f"first at index {int(bad[0])}; rescale the scores (only their spread matters)"
        )
    return values.astype(np.float32)
