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
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cl_core._validation import check_finite

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"
REQUIRED_MANIFEST_KEYS = ("schema_version", "name", "version", "files")
_HASH_CHUNK_BYTES = 1 << 22


class ArtifactIntegrityError(ValueError):
    """A published file is missing, tampered, or does not match its manifest entry.

    Attributes
    ----------
    path : Path
        The offending file (or the manifest when the manifest itself is malformed).
    """

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        self.path = Path(path)
        super().__init__(f"artifact file {self.path} {problem}; {fix}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large arrays never sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_plain_name(text: str) -> bool:
    """True for a single path component that is not hidden (no traversal through pointers)."""
    return bool(text) and text not in (".", "..") and "/" not in text and "\\" not in text


def _read_pointer(pointer: Path) -> Path:
    """Follow a ``latest`` pointer file to the version directory it names."""
    version = pointer.read_text(encoding="utf-8").strip()
    if not _is_plain_name(version) or version.startswith("."):
        raise ArtifactIntegrityError(
            pointer,
            f"holds {version!r}, which is not a version name",
            "publish again to rewrite the pointer, or pass a version directory explicitly",
        )
    return pointer.parent / version


def resolve_version(path: str | os.PathLike[str]) -> Path:
    """Return the version directory that ``path`` refers to.

    Parameters
    ----------
    path : str or PathLike
        A version directory ``<root>/<name>/<version>``, its ``manifest.json``, the pointer file
        ``<root>/<name>/latest``, or the name directory ``<root>/<name>`` (meaning latest).

    Returns
    -------
    Path
        A directory that holds a ``manifest.json``.

    Raises
    ------
    FileNotFoundError
        If nothing is published there. A version directory without ``manifest.json`` (an
        interrupted or broken publish) does not exist as far as readers are concerned.
    """
    candidate = Path(path)
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


def load_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of the version ``path`` resolves to.

    Parameters
    ----------
    path : str or PathLike
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


def read_npy_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a ``.npy`` header without reading the data (or unpickling anything).

    Raises
    ------
    ArtifactIntegrityError
        If the header is malformed or declares an object dtype (which would need pickle).
    """
    file_path = Path(path)
    try:
        with open(file_path, "rb") as handle:
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


def _file_entry(manifest: dict[str, Any], version_dir: Path, filename: str) -> dict[str, Any]:
    entry = manifest["files"].get(filename)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise ArtifactIntegrityError(
            version_dir / filename,
            f"is not listed in {MANIFEST_FILE} (listed: {', '.join(sorted(manifest['files']))})",
            "ask for a listed file or publish an artifact that contains it",
        )
    return entry


def _check_npy_entry(file_path: Path, entry: dict[str, Any]) -> None:
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


def verify_file(version_dir: Path, filename: str, manifest: dict[str, Any]) -> Path:
    """Check one listed file: present, sha256 as recorded, and for ``.npy`` shape and dtype.

    Returns
    -------
    Path
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


def verify_artifact(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify sha256 (and shape/dtype of ``.npy``) of every file a version's manifest lists.

    Parameters
    ----------
    path : str or PathLike
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
    return manifest


def _npy_name(name: str) -> str:
    return name if name.endswith(".npy") else f"{name}.npy"


def load_array(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """Load one verified array of a published version.

    Parameters
    ----------
    path : str or PathLike
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
    return np.load(file_path, allow_pickle=False)


def load_json(path: str | os.PathLike[str], name: str) -> Any:
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
