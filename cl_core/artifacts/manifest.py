"""The artifact layout, ``manifest.json`` and ``latest`` pointers: the read side (numpy + stdlib only).

This module and :mod:`~cl_core.artifacts.verify` are the single implementation of the on-disk
artifact format's *read* side. Both the publisher (:mod:`~cl_core.artifacts.publish`) and
:mod:`cl_core.sampler` (which must stay free of heavy imports) use them, so a training job
verifies exactly what the pipeline wrote.

Layout of one artifact name::

    <root>/<name>/latest                 text file holding the newest version string
    <root>/<name>/<version>/manifest.json  written last: a directory without it does not exist
    <root>/<name>/<version>/*.npy|*.json|*.png  every file listed in the manifest with its
                                             sha256, shape and dtype (shape/dtype null for non-npy)

No pickle anywhere: ``.npy`` files load with ``allow_pickle=False`` and object dtypes are refused
from the header, before any data is read.

``<root>`` may be a local path or an fsspec URL (``s3://bucket/artifacts``): paths are then
``upath.UPath`` objects (:func:`cl_core.io.as_location`), imported on first use only, so this
module stays numpy + standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core.io import Location, as_location, storage_errors

if TYPE_CHECKING:
    from upath import UPath

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
    path : Path or UPath
        The offending file (or the manifest when the manifest itself is malformed).
    """

    def __init__(self, path: Location | str, problem: str, fix: str) -> None:
        self.path: Location = as_location(path)
        super().__init__(f"artifact file {self.path} {problem}; {fix}")


def sha256_file(path: str | os.PathLike[str] | UPath) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large arrays never sit in memory twice."""
    digest = hashlib.sha256()
    location = as_location(path)
    with storage_errors("read", location), location.open("rb") as handle:
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


def resolve_version(path: str | os.PathLike[str] | UPath) -> Location:
    """Return the version directory that ``path`` refers to.

    Parameters
    ----------
    path : str, PathLike or UPath
        A version directory ``<root>/<name>/<version>``, its ``manifest.json``, the pointer file
        ``<root>/<name>/latest``, or the name directory ``<root>/<name>`` (meaning latest); local
        or an fsspec URL such as ``s3://bucket/artifacts/digits/latest``.

    Returns
    -------
    Path or UPath
        A directory (an object prefix for URLs) that holds a ``manifest.json``.

    Raises
    ------
    FileNotFoundError
        If nothing is published there. A version directory without ``manifest.json`` (an
        interrupted or broken publish) does not exist as far as readers are concerned.
    BucketNotFoundError, BucketAccessError
        On object storage, a missing bucket or denied access (:func:`cl_core.io.storage_errors`).
    """
    candidate = as_location(path)
    with storage_errors("look up", candidate):
        return _resolve(candidate)


def _resolve(candidate: Location) -> Location:
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


def load_manifest(path: str | os.PathLike[str] | UPath) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of the version ``path`` resolves to.

    Parameters
    ----------
    path : str, PathLike or UPath
        Anything :func:`resolve_version` accepts.

    Returns
    -------
    dict
        The manifest (``files`` maps file name to ``{"sha256", "shape", "dtype"}``).
    """
    manifest_path = resolve_version(path) / MANIFEST_FILE
    try:
        with storage_errors("read", manifest_path):
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
    path: str | os.PathLike[str] | UPath,
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a ``.npy`` header without reading the data (or unpickling anything).

    Raises
    ------
    ArtifactIntegrityError
        If the header is malformed or declares an object dtype (which would need pickle).
    """
    file_path = as_location(path)
    try:
        with storage_errors("read", file_path), file_path.open("rb") as handle:
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
