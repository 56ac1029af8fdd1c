"""Reading and verifying published artifact versions (numpy + stdlib only).

This is the single implementation of the on-disk artifact format's *read* side. Both
:mod:`cl_core.artifacts` (which also publishes) and :mod:`cl_core.sampler` (which must stay free of
heavy imports) use it, so a training job verifies exactly what the pipeline wrote.

Layout of one artifact name::

    <root>/<name>/latest                 text file holding the newest version string
    <root>/<name>/<version>/manifest.json  written last: a directory without it does not exist
    <root>/<name>/<version>/*.npy|*.json|*.png  every file listed in the manifest with its
                                             sha256, shape and dtype (shape/dtype null for non-npy)

No pickle anywhere: ``.npy`` files load with ``allow_pickle=False`` and object dtypes are refused
from the header, before any data is read.

``<root>`` may be a local path or an fsspec URL (``s3://bucket/artifacts``): paths are then
:class:`cl_core._location.ObjectPath` objects, and fsspec (with the protocol's package, ``s3fs``
for S3) is imported on first use only, so this module stays numpy + standard library.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cl_core._location import Location, ObjectPath, as_location, open_binary
from cl_core._validation import check_finite

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"
SAMPLE_MASK_FILE = "sample_mask.npy"
REQUIRED_MANIFEST_KEYS = ("schema_version", "name", "version", "files")
_HASH_CHUNK_BYTES = 1 << 22


class ArtifactIntegrityError(ValueError):
    """A published file is missing, tampered, or does not match its manifest entry.

    Attributes
    ----------
    path : Path or ObjectPath
        The offending file (or the manifest when the manifest itself is malformed).
    """

    def __init__(self, path: Location | str, problem: str, fix: str) -> None:
        self.path: Location = path if isinstance(path, ObjectPath) else Path(path)
        super().__init__(f"artifact file {self.path} {problem}; {fix}")


def sha256_file(path: str | os.PathLike[str] | ObjectPath) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large arrays never sit in memory twice."""
    digest = hashlib.sha256()
    with open_binary(as_location(path)) as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_plain_name(text: str) -> bool:
    """True for a single path component that is not hidden (no traversal through pointers)."""
    return bool(text) and text not in (".", "..") and "/" not in text and "\\" not in text


def _read_pointer(pointer: Location) -> Location:
    """Follow a ``latest`` pointer file to the version directory it names."""
    version = pointer.read_text(encoding="utf-8").strip()
    if not _is_plain_name(version) or version.startswith("."):
        raise ArtifactIntegrityError(
            pointer,
            f"holds {version!r}, which is not a version name",
            "publish again to rewrite the pointer, or pass a version directory explicitly",
        )
    return pointer.parent / version


def resolve_version(path: str | os.PathLike[str] | ObjectPath) -> Location:
    """Return the version directory that ``path`` refers to.

    Parameters
    ----------
    path : str, PathLike or ObjectPath
        A version directory ``<root>/<name>/<version>``, its ``manifest.json``, the pointer file
        ``<root>/<name>/latest``, or the name directory ``<root>/<name>`` (meaning latest); local
        or an fsspec URL such as ``s3://bucket/artifacts/digits/latest``.

    Returns
    -------
    Path or ObjectPath
        A directory (an object prefix for URLs) that holds a ``manifest.json``.

    Raises
    ------
    FileNotFoundError
        If nothing is published there. A version directory without ``manifest.json`` (an
        interrupted or broken publish) does not exist as far as readers are concerned.
    """
    candidate = as_location(path)
    if candidate.is_file() and candidate.name == MANIFEST_FILE:
        candidate = candidate.parent
    if candidate.is_file() and candidate.name == LATEST_FILE:
        target = _read_pointer(candidate)
    elif candidate.is_file():
        raise FileNotFoundError(
            f"artifact path {str(candidate)!r} is a file, not an artifact; pass <root>/<name>, "
            f"<root>/<name>/latest or a version directory"
        )
    elif candidate.is_dir() and (candidate / MANIFEST_FILE).is_file():
        return candidate
    elif candidate.is_dir() and (candidate / LATEST_FILE).is_file():
        target = _read_pointer(candidate / LATEST_FILE)
    elif candidate.is_dir():
        raise FileNotFoundError(
            f"artifact path {str(candidate)!r} has no {MANIFEST_FILE} and no {LATEST_FILE!r} "
            f"pointer, so no version exists there (a directory without a manifest is an "
            f"unfinished or broken publish); pass <root>/<name>, <root>/<name>/latest or a "
            f"version directory, and publish again if the version is gone"
        )
    else:
        raise FileNotFoundError(
            f"artifact path {str(candidate)!r} does not exist; pass <root>/<name>, "
            f"<root>/<name>/latest or a version directory of a published artifact"
        )
    if not (target / MANIFEST_FILE).is_file():
        raise FileNotFoundError(
            f"artifact version {str(target)!r} (named by {str(candidate)!r}) does not exist: it has "
            f"no {MANIFEST_FILE}; publish it again or point to another version"
        )
    return target


def load_manifest(path: str | os.PathLike[str] | ObjectPath) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of the version ``path`` resolves to.

    Parameters
    ----------
    path : str, PathLike or ObjectPath
        Anything :func:`resolve_version` accepts.

    Returns
    -------
    dict
        The manifest (``files`` maps file name to ``{"sha256", "shape", "dtype"}``).
    """
    manifest_path = resolve_version(path) / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactIntegrityError(
            manifest_path, f"is not valid JSON ({error})", "publish the version again"
        ) from None
    if not isinstance(manifest, dict):
        raise ArtifactIntegrityError(
            manifest_path, "does not hold a JSON object", "publish the version again"
        )
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    if missing or not isinstance(manifest.get("files"), dict):
        raise ArtifactIntegrityError(
            manifest_path,
            f"lacks the keys {missing or ['files (as an object)']}",
            "publish the version again",
        )
    schema = manifest["schema_version"]
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise ArtifactIntegrityError(
            manifest_path,
            f"has schema_version {schema!r}, newer than this library reads ({SCHEMA_VERSION})",
            "upgrade cl-curriculum to read it",
        )
    return manifest


def read_npy_header(
    path: str | os.PathLike[str] | ObjectPath,
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a ``.npy`` header without reading the data (or unpickling anything).

    Raises
    ------
    ArtifactIntegrityError
        If the header is malformed or declares an object dtype (which would need pickle).
    """
    file_path = as_location(path)
    try:
        with open_binary(file_path) as handle:
            major, minor = np.lib.format.read_magic(handle)
            if (major, minor) == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif (major, minor) == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {major}.{minor}")
    except (ValueError, OSError, SyntaxError) as error:
        raise ArtifactIntegrityError(
            file_path, f"is not a readable .npy file ({error})", "publish the version again"
        ) from None
    if dtype.hasobject:
        raise ArtifactIntegrityError(
            file_path,
            f"holds an object-dtype array ({dtype}), which only loads through pickle",
            "artifacts accept numeric arrays only; republish it as a numeric array",
        )
    return tuple(int(n) for n in shape), dtype


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
    Path or ObjectPath
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


def verify_artifact(path: str | os.PathLike[str] | ObjectPath) -> dict[str, Any]:
    """Verify sha256 (and shape/dtype of ``.npy``) of every file a version's manifest lists.

    Parameters
    ----------
    path : str, PathLike or ObjectPath
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
    version_dir : Path or ObjectPath
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
    """``np.load`` without pickle; an object is read into memory first."""
    if isinstance(file_path, ObjectPath):
        return np.load(io.BytesIO(file_path.read_bytes()), allow_pickle=False)
    return np.load(file_path, allow_pickle=False)


def _npy_name(name: str) -> str:
    return name if name.endswith(".npy") else f"{name}.npy"


def load_array(path: str | os.PathLike[str] | ObjectPath, name: str) -> np.ndarray:
    """Load one verified array of a published version.

    Parameters
    ----------
    path : str, PathLike or ObjectPath
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


def load_json(path: str | os.PathLike[str] | ObjectPath, name: str) -> Any:
    """Load one verified JSON file (``"schedule"`` or ``"schedule.json"``) of a published version."""
    version_dir = resolve_version(path)
    manifest = load_manifest(version_dir)
    filename = name if name.endswith(".json") else f"{name}.json"
    file_path = verify_file(version_dir, filename, manifest)
    try:
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
