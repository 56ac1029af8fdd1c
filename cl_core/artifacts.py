"""Versioned, content-addressed curriculum artifacts: publish, verify, load, ``latest``.

A version is ``<root>/<name>/<version>/`` where ``version`` is the first 12 hex characters of the
sha256 of the canonical JSON of ``{parents, config, schema_version, code_version}``; the same inputs
therefore always map to the same directory and a rerun publishes nothing new.

Publishing is atomic: every file is written (and fsynced) into
``<root>/<name>/.tmp-<version>@<host>@<pid>@<rand>/``, ``manifest.json`` last, and the directory is
then renamed to its version name. Readers treat a directory without ``manifest.json`` as absent, so
a crash at any point never exposes a partial artifact and never touches an earlier version.
``<root>/<name>/latest`` is a one-line pointer file replaced atomically (:func:`point_latest`:
write a temp file, fsync, ``os.replace``), so a concurrent reader sees the old or the new version,
never a partial name.

Every temporary name (``.tmp-*`` directories, ``.trash-*`` directories, ``.latest-*`` pointer
files) records its writer's host name and process id. A publish of a name first removes the
temporaries of that name whose writer is gone (same host, process no longer running), e.g. those
left by a publish killed with SIGKILL (:func:`remove_stale_temporaries`). A live writer's, or
another host's, are left alone; temporaries in the old unowned format are removed once older than
a day.

Samples that could not be loaded can be excluded with ``sample_mask`` (bool (N,), True =
drawable): the version then holds ``sample_mask.npy``, the manifest records ``excluded``
``{count, indices}``, and the mask is part of the version id. Nothing changes when no sample is
excluded.

Object storage
--------------
``root`` may be an fsspec URL (``s3://bucket/artifacts``; fsspec and ``s3fs`` installed). Object
stores have no rename, so a version is published in place, in the same order: every file is
uploaded under ``<root>/<name>/<version>/``, then ``manifest.json`` (one atomic object write), then
``latest`` (one atomic object write). Readers ignore a prefix without a manifest, so a reader
never sees a version without its manifest, and an interrupted upload is invisible; publishing the
version again overwrites its leftovers (there are no temporaries to clean up). The returned paths
are then :class:`ObjectPath` objects (``str()`` gives the URL). Missing packages, a missing
bucket and denied access are reported with the package to install, or the bucket and the
operation that failed.

The read side (resolve, manifest, verification, loading) lives in the numpy-only
:mod:`cl_core._manifest` so that the training-time sampler shares one implementation; it is
re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cl_core import CODE_VERSION
from cl_core._location import Location, ObjectPath, as_location, mtime
from cl_core._manifest import (
    LATEST_FILE,
    MANIFEST_FILE,
    SAMPLE_MASK_FILE,
    SCHEMA_VERSION,
    ArtifactIntegrityError,
    check_difficulty,
    load_array,
    load_json,
    load_manifest,
    resolve_version,
    sha256_file,
    verify_artifact,
)
from cl_core._validation import (
    check_choice,
    check_finite,
    check_fraction,
    check_non_negative_int,
    check_valid_mask,
)
from cl_core.schedule import (
    PACINGS,
    STRATEGIES,
    STRATEGY_ALIASES,
    Schedule,
    ScheduleConfig,
    build_schedule,
    canonical_strategy,
    effective_fraction_at,
)

__all__ = [
    "LATEST_FILE",
    "MANIFEST_FILE",
    "SAMPLE_MASK_FILE",
    "SCHEMA_VERSION",
    "ArtifactIntegrityError",
    "ObjectPath",
    "array_digest",
    "compute_version",
    "curriculum_identity",
    "latest_version",
    "list_versions",
    "load_array",
    "load_json",
    "load_manifest",
    "point_latest",
    "publish_artifact",
    "publish_curriculum",
    "remove_stale_temporaries",
    "resolve_version",
    "verify_artifact",
]

VERSION_LENGTH = 12
_NUMERIC_KINDS = "biufc"
_RESERVED_NAMES = (MANIFEST_FILE, LATEST_FILE)
_TEMP_KINDS = ("tmp", "trash", "latest")
# .<kind>-<label>@<host>@<pid>@<rand>: the writer of every temporary is on record.
_TEMP_PATTERN = re.compile(
    r"^\.(?P<kind>tmp|trash|latest)-(?P<label>[^@]*)@(?P<host>[A-Za-z0-9_.-]*)@(?P<pid>[0-9]+)"
    r"@(?P<rand>[0-9a-f]+)$"
)
_LEGACY_PATTERN = re.compile(r"^\.(tmp|trash|latest)-")
_LEGACY_MAX_AGE_S = 24 * 3600.0


# --------------------------------------------------------------------------------------------
# Content ids
# --------------------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    """Make numpy scalars/arrays and paths JSON-serialisable, deterministically."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _canonical_json(obj: object, what: str) -> str:
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} must be JSON-serialisable with finite numbers ({error}); use plain "
            f"str/int/float/bool/list/dict values and null instead of NaN"
        ) from None


def compute_version(parents: Sequence[str], config: Mapping[str, Any]) -> str:
    """Content id of an artifact: 12 hex chars of sha256 over its canonical inputs.

    Parameters
    ----------
    parents : sequence of str
        Content ids of everything the artifact derives from (store fingerprints, array digests).
    config : mapping
        The full configuration, defaults included.

    Returns
    -------
    str
        The version string, identical for identical (parents, config, schema, code version).
    """
    payload = {
        "parents": [str(parent) for parent in parents],
        "config": dict(config),
        "schema_version": SCHEMA_VERSION,
        "code_version": CODE_VERSION,
    }
    text = _canonical_json(payload, "config")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:VERSION_LENGTH]


def array_digest(array: np.ndarray) -> str:
    """``"sha256:<hex>"`` of an array's dtype, shape and C-order bytes.

    Independent of the ``.npy`` header layout, so the id does not change with numpy's file format.
    """
    values = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{values.dtype.str}|{values.shape}|".encode())
    digest.update(values.data)  # C-contiguous buffer, hashed without a copy
    return f"sha256:{digest.hexdigest()}"


# --------------------------------------------------------------------------------------------
# Serialising files (in memory, before anything touches the disk)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _PendingFile:
    """One file to publish: its bytes (or a source path to copy) and manifest shape/dtype."""

    name: str
    data: bytes | None
    source: Path | None
    shape: list[int] | None
    dtype: str | None


def _check_file_name(name: object, argument: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name[0] == ".":
        raise ValueError(
            f"{argument} key {name!r} is not a plain file name; use names like 'difficulty' or "
            f"'plot.png' without directories or a leading dot"
        )
    if name in _RESERVED_NAMES:
        raise ValueError(f"{argument} key {name!r} is reserved by the artifact layout; rename it")
    return name


def _npy_file(key: str, array: object) -> _PendingFile:
    name = _check_file_name(key if key.endswith(".npy") else f"{key}.npy", "arrays")
    values = np.asarray(array)
    if values.dtype.hasobject or values.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"arrays[{key!r}] has dtype {values.dtype}; artifacts hold numeric arrays only "
            f"(no pickle), so convert it to a numeric dtype or store it as JSON"
        )
    values = np.ascontiguousarray(values)
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return _PendingFile(name, buffer.getvalue(), None, list(values.shape), str(values.dtype))


def _json_bytes(obj: object, what: str) -> bytes:
    """Readable (indented, key-sorted) strict JSON; NaN/inf are refused, not written."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} is not JSON-serialisable with finite numbers ({error}); "
            f"use plain values and null instead of NaN"
        ) from None
    return (text + "\n").encode("utf-8")


def _json_file(key: str, obj: object) -> _PendingFile:
    name = _check_file_name(key if key.endswith(".json") else f"{key}.json", "json_files")
    return _PendingFile(name, _json_bytes(obj, f"json_files[{key!r}]"), None, None, None)


def _extra_file(key: str, source: str | os.PathLike[str]) -> _PendingFile:
    name = _check_file_name(key, "extra_files")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"extra_files[{key!r}] = {str(path)!r} is not a file; pass the path of a file to copy"
        )
    return _PendingFile(name, None, path, None, None)


def _pending_files(
    arrays: Mapping[str, object],
    json_files: Mapping[str, object],
    extra_files: Mapping[str, str | os.PathLike[str]] | None,
) -> list[_PendingFile]:
    pending = [_npy_file(key, value) for key, value in arrays.items()]
    pending += [_json_file(key, value) for key, value in json_files.items()]
    pending += [_extra_file(key, value) for key, value in (extra_files or {}).items()]
    names = [item.name for item in pending]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"file names {duplicates} are given more than once across arrays, json_files and "
            f"extra_files; give every file one unique name"
        )
    return pending


# --------------------------------------------------------------------------------------------
# Durable writes
# --------------------------------------------------------------------------------------------


def _fsync_directory(path: Path) -> None:
    """Persist a directory entry (rename/create) where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_file(directory: Path, item: _PendingFile) -> dict[str, Any]:
    """Write one pending file durably and return its manifest entry."""
    target = directory / item.name
    if item.source is not None:
        shutil.copyfile(item.source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(target)
    else:
        assert item.data is not None
        with open(target, "wb") as handle:
            handle.write(item.data)
            handle.flush()
            os.fsync(handle.fileno())
        digest = hashlib.sha256(item.data).hexdigest()
    return {"sha256": digest, "shape": item.shape, "dtype": item.dtype}


def _host_tag() -> str:
    """This machine's name, restricted to the characters a temporary's name may hold."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64]


def _temp_name(kind: str, label: str) -> str:
    """``.<kind>-<label>@<host>@<pid>@<rand>``: a unique temporary naming its writer."""
    assert kind in _TEMP_KINDS and "@" not in label
    return f".{kind}-{label}@{_host_tag()}@{os.getpid()}@{secrets.token_hex(6)}"


def _process_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists on this machine (unknown counts as alive)."""
    if pid <= 0 or pid == os.getpid() or os.name == "nt":  # os.kill on Windows would kill it
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, owned by someone else
        return False
    return False


def _is_stale(entry: Path) -> bool:
    match = _TEMP_PATTERN.match(entry.name)
    if match is not None:
        return match["host"] == _host_tag() and _process_gone(int(match["pid"]))
    if _LEGACY_PATTERN.match(entry.name) is None:
        return False
    try:  # the writer of an old-format temporary is unknown: only age can tell
        return time.time() - entry.lstat().st_mtime > _LEGACY_MAX_AGE_S
    except OSError:
        return False


def remove_stale_temporaries(root: str | os.PathLike[str] | ObjectPath, name: str) -> list[Path]:
    """Remove the leftovers of killed publishes of ``name`` (only those whose writer is gone).

    Every publish writes into ``<root>/<name>/.tmp-<version>@<host>@<pid>@<rand>/`` (and moves
    a broken version aside as ``.trash-*``, and writes the pointer through ``.latest-*``). A
    temporary is removed when its writer ran on this host and that process no longer exists;
    a live writer's (another publish in progress) and another host's are left alone.
    Old-format temporaries without an owner are removed once older than a day.
    :func:`publish_artifact` and :func:`publish_curriculum` call this first.

    Parameters
    ----------
    root : str, PathLike or ObjectPath
        Artifact root.
    name : str
        Artifact name.

    Returns
    -------
    list of Path
        The temporaries removed (always empty for an object-storage root, where publishing
        writes no temporaries).
    """
    name = _check_artifact_name(name)
    location = as_location(root)
    if isinstance(location, ObjectPath):
        return []
    name_dir = location / name
    try:
        entries = list(name_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in sorted(entries):
        if not entry.name.startswith(".") or not _is_stale(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        if not entry.exists():
            removed.append(entry)
    return removed


def _point_latest(name_dir: Location, version: str) -> None:
    """Atomically replace ``<name_dir>/latest`` with ``version`` (write, fsync, rename).

    On object storage one object write replaces the pointer as a whole.
    """
    if isinstance(name_dir, ObjectPath):
        (name_dir / LATEST_FILE).write_bytes((version + "\n").encode("utf-8"))
        return
    temp = name_dir / _temp_name("latest", "")
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(version + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, name_dir / LATEST_FILE)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_directory(name_dir)


def point_latest(root: str | os.PathLike[str] | ObjectPath, name: str, version: str) -> Location:
    """Make ``<root>/<name>/latest`` name ``version``, atomically.

    The pointer is written to a temporary file, fsynced and renamed over ``latest``
    (``os.replace``), so a reader at any moment sees the previous or the new version, never a
    partial name, and a crash leaves the previous pointer intact. Publishing calls this; call it
    yourself to roll back, or to record the version a cached run reported.

    Parameters
    ----------
    root : str, PathLike or ObjectPath
        Artifact root (a local directory or an fsspec URL).
    name : str
        Artifact name.
    version : str
        A published version of ``name``: ``<root>/<name>/<version>/manifest.json`` must exist,
        be valid JSON with the required keys, and record this version and name. (The files are
        not hashed here; :func:`verify_artifact` does that.)

    Returns
    -------
    Path or ObjectPath
        The version directory ``latest`` now names.

    Raises
    ------
    FileNotFoundError
        If ``version`` is not published under ``name`` (no directory or no manifest).
    ArtifactIntegrityError
        If its manifest is malformed or belongs to another version or name.
    ValueError
        If ``name`` or ``version`` is not a plain name.
    """
    name = _check_artifact_name(name)
    if (
        not isinstance(version, str)
        or not version
        or version[0] == "."
        or any(sep in version for sep in ("/", "\\"))
        or version in (LATEST_FILE, "..")
    ):
        raise ValueError(
            f"version {version!r} is not a version name; pass the directory name of a published "
            f"version, e.g. the .name of the path publish_curriculum returned"
        )
    name_dir = as_location(root) / name
    version_dir = name_dir / version
    if not (version_dir / MANIFEST_FILE).is_file():
        raise FileNotFoundError(
            f"cannot point {str(name_dir / LATEST_FILE)!r} at {version!r}: {str(version_dir)!r} "
            f"has no {MANIFEST_FILE}, so that version is not published; publish it first or "
            f"pick one of {[path.name for path in list_versions(root, name)]}"
        )
    manifest = load_manifest(version_dir)
    if manifest.get("version") != version or manifest.get("name") != name:
        raise ArtifactIntegrityError(
            version_dir / MANIFEST_FILE,
            f"records name {manifest.get('name')!r} and version {manifest.get('version')!r}, not "
            f"{name!r} and {version!r}",
            "publish the artifact again instead of copying or renaming version directories",
        )
    _point_latest(name_dir, version)
    return version_dir


def _existing_version(version_dir: Location, replace_damaged: bool = False) -> bool:
    """True if a complete, verified version is already published at ``version_dir``.

    A directory without a manifest does not count (it is replaced). A manifest whose files fail
    verification raises, because silently overwriting a tampered artifact would hide the damage;
    with ``replace_damaged`` the damaged directory is removed instead (renamed aside first, so
    the version never holds a mix of old and new files) and False is returned.
    """
    if not (version_dir / MANIFEST_FILE).is_file():
        return False
    try:
        verify_artifact(version_dir)
    except ArtifactIntegrityError as error:
        if not replace_damaged:
            raise ArtifactIntegrityError(
                error.path,
                f"belongs to the already published version {version_dir.name}, which fails "
                f"verification ({error})",
                f"delete {version_dir} and publish again, or pass replace_damaged=True",
            ) from None
        if isinstance(version_dir, ObjectPath):
            # No rename on object storage: the manifest goes first, so readers stop seeing the
            # damaged version before any of its files disappear.
            (version_dir / MANIFEST_FILE).unlink(missing_ok=True)
            version_dir.remove_tree()
            return False
        trash = version_dir.parent / _temp_name("trash", version_dir.name)
        try:
            os.rename(version_dir, trash)
        except FileNotFoundError:  # a concurrent publisher removed it first
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return False
    return True


def _install(temp_dir: Path, version_dir: Path) -> None:
    """Rename the finished temp dir into place; a manifest-less leftover is moved aside first."""
    try:
        os.rename(temp_dir, version_dir)
        return
    except OSError:
        if (version_dir / MANIFEST_FILE).is_file():
            # A concurrent publisher of the same content won the race; its copy is equivalent.
            shutil.rmtree(temp_dir, ignore_errors=True)
            return
        if not version_dir.exists():
            raise
    trash = version_dir.parent / _temp_name("trash", version_dir.name)
    os.rename(version_dir, trash)
    os.rename(temp_dir, version_dir)
    shutil.rmtree(trash, ignore_errors=True)


def _check_artifact_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or name[0] == "."
        or "/" in name
        or "\\" in name
        or name == LATEST_FILE
    ):
        raise ValueError(
            f"name {name!r} is not a valid artifact name; use a plain directory name such as "
            f"'digits' (no slashes, no leading dot, not {LATEST_FILE!r})"
        )
    return name


def _size_fields(arrays: Mapping[str, object]) -> dict[str, int | None]:
    """N, D and k for the manifest, taken from the standard array names when present."""
    shapes = {key.removesuffix(".npy"): np.asarray(value).shape for key, value in arrays.items()}
    per_sample = shapes.get("difficulty") or shapes.get("assignment")
    centroids = shapes.get("centroids")
    return {
        "n_samples": int(per_sample[0]) if per_sample else None,
        "dim": int(centroids[1]) if centroids and len(centroids) == 2 else None,
        "n_clusters": int(centroids[0]) if centroids else None,
    }


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_sample_mask(sample_mask: object, n_samples: int | None) -> np.ndarray | None:
    """The mask as bool (N,) when it excludes something, else None."""
    if sample_mask is None:
        return None
    if n_samples is None:
        raise ValueError(
            "sample_mask needs a per-sample array to fix N: pass 'difficulty' or 'assignment' "
            "in arrays, or leave sample_mask None"
        )
    return check_valid_mask("sample_mask", sample_mask, n_samples)


def _parents_with_mask(parents: Sequence[str], mask: np.ndarray | None) -> list[str]:
    """``parents`` plus the mask's digest (once), so the mask is part of the version id."""
    full = [str(parent) for parent in parents]
    if mask is not None:
        digest = array_digest(mask)
        if digest not in full:
            full.append(digest)
    return full


def _excluded_record(mask: np.ndarray) -> dict[str, Any]:
    indices = np.flatnonzero(~mask)
    return {"count": int(indices.size), "indices": [int(i) for i in indices]}


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def publish_artifact(
    root: str | os.PathLike[str] | ObjectPath,
    name: str,
    *,
    arrays: Mapping[str, np.ndarray],
    json_files: Mapping[str, object],
    config: Mapping[str, Any],
    parents: Sequence[str],
    metrics: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    dataset_fingerprint: str | None = None,
    sample_mask: np.ndarray | None = None,
    replace_damaged: bool = False,
) -> Location:
    """Publish files as one content-addressed, verified artifact version.

    Parameters
    ----------
    root : str, PathLike or ObjectPath
        Artifact root, a local directory or an fsspec URL (``s3://bucket/artifacts``); the
        version lands in ``<root>/<name>/<version>/``.
    name : str
        Artifact name (a plain directory name).
    arrays : mapping of str to ndarray
        Numeric arrays saved as ``<key>.npy`` (``.npy`` appended when missing); object dtypes
        are refused.
    json_files : mapping of str to object
        JSON documents saved as ``<key>.json``.
    config : mapping
        Full configuration (defaults included); part of the version id.
    parents : sequence of str
        Content ids of the inputs; part of the version id.
    metrics : mapping, optional
        Summary figures stored in the manifest (not part of the version id).
    extra_files : mapping of str to path, optional
        Files copied in under the given names (plots).
    dataset_fingerprint : str, optional
        Recorded in the manifest.
    sample_mask : array-like of shape (N,), bool, optional
        True for the samples a training job may draw (N from ``difficulty`` or ``assignment``
        in ``arrays``). When it excludes any sample it is written as ``sample_mask.npy``, the
        manifest records ``excluded`` ``{"count", "indices"}`` and its digest joins
        ``parents`` (the version id). ``None`` or all True: nothing is written or recorded.
    replace_damaged : bool
        What to do when this version is already published but fails verification (a file
        was modified or lost after publishing): False (default) raises
        :class:`ArtifactIntegrityError` naming the file; True removes the damaged version and
        publishes it again ("publish the artifact again").

    Returns
    -------
    Path or ObjectPath
        The version directory (an :class:`ObjectPath` for a URL root). If that version already
        exists (and verifies) it is returned untouched; either way ``latest`` then points to it.
    """
    name = _check_artifact_name(name)
    sizes = _size_fields(arrays)
    mask = _check_sample_mask(sample_mask, sizes["n_samples"])
    parents = _parents_with_mask(parents, mask)
    version = compute_version(parents, config)
    name_dir = as_location(root) / name
    version_dir = name_dir / version
    remove_stale_temporaries(root, name)
    if _existing_version(version_dir, _check_flag("replace_damaged", replace_damaged)):
        _point_latest(name_dir, version)
        return version_dir

    if mask is not None:
        arrays = {**arrays, SAMPLE_MASK_FILE: mask}
    pending = _pending_files(arrays, json_files, extra_files)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parents": [str(parent) for parent in parents],
        "config": dict(config),
        "code_version": CODE_VERSION,
        "dataset_fingerprint": dataset_fingerprint,
        **sizes,
        "files": {},
        "metrics": dict(metrics or {}),
    }
    if mask is not None:
        manifest["excluded"] = _excluded_record(mask)
    _json_bytes(manifest["metrics"], "metrics")  # fail before anything touches the disk

    if isinstance(version_dir, ObjectPath):
        _publish_objects(version_dir, pending, manifest)
        _point_latest(name_dir, version)
        return version_dir
    assert isinstance(name_dir, Path)
    name_dir.mkdir(parents=True, exist_ok=True)
    temp_dir = name_dir / _temp_name("tmp", version)
    temp_dir.mkdir()
    try:
        for item in pending:
            manifest["files"][item.name] = _write_file(temp_dir, item)
        # The manifest goes last: until it exists the directory is not a version.
        manifest_bytes = _json_bytes(manifest, "manifest")
        _write_file(temp_dir, _PendingFile(MANIFEST_FILE, manifest_bytes, None, None, None))
        _fsync_directory(temp_dir)
        _install(temp_dir, version_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    _fsync_directory(name_dir)
    _point_latest(name_dir, version)
    return version_dir


def _publish_objects(
    version_dir: ObjectPath, pending: Sequence[_PendingFile], manifest: dict[str, Any]
) -> None:
    """Upload a version in place: its files, then its manifest (object stores cannot rename).

    Until the manifest object exists the prefix is not a version to any reader, so an
    interrupted upload stays invisible and the next publish of the same version overwrites it.
    Concurrent publishers of one version upload the same content (the version is its content
    id); the first manifest stored wins and is kept.
    """
    for item in pending:
        target = version_dir / item.name
        if item.source is not None:
            digest = sha256_file(item.source)
            target.upload(item.source)
        else:
            assert item.data is not None
            digest = hashlib.sha256(item.data).hexdigest()
            target.write_bytes(item.data)
        manifest["files"][item.name] = {"sha256": digest, "shape": item.shape, "dtype": item.dtype}
    manifest_bytes = _json_bytes(manifest, "manifest")
    if not (version_dir / MANIFEST_FILE).is_file():
        (version_dir / MANIFEST_FILE).write_bytes(manifest_bytes)


def latest_version(root: str | os.PathLike[str] | ObjectPath, name: str) -> Location:
    """The version directory ``<root>/<name>/latest`` points to.

    Raises
    ------
    FileNotFoundError
        If nothing was published under that name (or the pointed-to version is gone).
    """
    name = _check_artifact_name(name)
    pointer = as_location(root) / name / LATEST_FILE
    if not pointer.is_file():
        raise FileNotFoundError(
            f"no artifact named {name!r} under {str(root)!r} (missing {pointer}); publish one "
            f"first or check root and name"
        )
    return resolve_version(pointer)


def list_versions(root: str | os.PathLike[str] | ObjectPath, name: str) -> list[Location]:
    """Published (manifest-bearing) version directories of ``name``, oldest first."""
    name_dir = as_location(root) / _check_artifact_name(name)
    if not name_dir.is_dir():
        return []
    versions = [
        path
        for path in name_dir.iterdir()
        if path.is_dir() and not path.name.startswith(".") and (path / MANIFEST_FILE).is_file()
    ]
    return sorted(versions, key=lambda path: (mtime(path / MANIFEST_FILE), str(path)))


# --------------------------------------------------------------------------------------------
# Curriculum artifacts
# --------------------------------------------------------------------------------------------


def _as_assignment(
    assignment: object, n_samples: int, mask: np.ndarray | None = None
) -> np.ndarray | None:
    if assignment is None:
        return None
    values = np.asarray(assignment)
    if values.dtype.kind not in "iu":
        raise TypeError(
            f"assignment must hold integer cluster ids, got dtype {values.dtype}; pass the "
            f"int cluster index of every sample"
        )
    if values.shape != (n_samples,):
        raise ValueError(
            f"assignment has shape {values.shape} but difficulty has {n_samples} samples; pass "
            f"one cluster id per sample, shape ({n_samples},)"
        )
    kept = values if mask is None else values[mask]
    if kept.min() < 0 or kept.max() > np.iinfo(np.int32).max:
        raise ValueError(
            f"assignment holds ids from {kept.min()} to {kept.max()}"
            f"{'' if mask is None else ' on the drawable samples'}; cluster ids must lie "
            f"in [0, {np.iinfo(np.int32).max}] (-1 is allowed only where sample_mask is False)"
        )
    if mask is not None:
        excluded = values[~mask]
        if excluded.size and (excluded.min() < -1 or excluded.max() > np.iinfo(np.int32).max):
            raise ValueError(
                f"assignment holds ids from {excluded.min()} to {excluded.max()} on excluded "
                f"samples; use -1 (or any valid cluster id) where sample_mask is False"
            )
    return values.astype(np.int32)


def _as_centroids(centroids: object, assignment: np.ndarray | None) -> np.ndarray | None:
    if centroids is None:
        return None
    values = np.asarray(centroids)
    if values.dtype.kind not in "biuf" or values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(
            f"centroids must be a real (k, D) array with k >= 1, got dtype {values.dtype} and "
            f"shape {values.shape}; pass the cluster centres as rows"
        )
    check_finite("centroids", values)
    if assignment is not None and assignment.size and assignment.max() >= values.shape[0]:
        raise ValueError(
            f"assignment refers to cluster {assignment.max()} but centroids has only "
            f"{values.shape[0]} rows; pass the centroids the assignment was computed with"
        )
    return values.astype(np.float32)


def curriculum_identity(
    arrays: Mapping[str, np.ndarray],
    schedule_config: ScheduleConfig,
    pipeline_config: Mapping[str, Any] | None = None,
    parents: Sequence[str] = (),
    *,
    sample_mask: np.ndarray | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The parents and config a curriculum artifact's version is hashed from.

    One definition for :func:`publish_curriculum` and the pipeline's publish task, so the same
    inputs give the same version whichever way they are published.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        The arrays to publish (``difficulty``, optional ``assignment``, ``centroids``); their
        sha256 digests are appended to ``parents`` so different scores never share a version.
    schedule_config : ScheduleConfig
        Recorded under ``config["schedule"]`` (its JSON form).
    pipeline_config : mapping, optional
        Upstream configuration, recorded under ``config["pipeline"]``.
    parents : sequence of str
        Upstream content ids.
    sample_mask : array-like of shape (N,), bool, optional
        Drawable samples; when it excludes any, its digest is appended to ``parents``.

    Returns
    -------
    (list of str, dict)
        ``parents`` and ``config`` for :func:`publish_artifact` / :func:`compute_version`:
        ``compute_version(*curriculum_identity(...))`` is the version :func:`publish_curriculum`
        publishes for the same (float32 difficulty, int32 assignment, float32 centroids) arrays.
    """
    full_parents = [*map(str, parents), *(array_digest(value) for value in arrays.values())]
    if sample_mask is not None:
        n_samples = _size_fields(arrays)["n_samples"]
        full_parents = _parents_with_mask(full_parents, _check_sample_mask(sample_mask, n_samples))
    full_config = {
        "artifact": "curriculum",
        "schedule": schedule_config.to_json(),
        "pipeline": dict(pipeline_config or {}),
    }
    return full_parents, full_config


_SCHEDULE_DEFAULTS: dict[str, Any] = {
    "strategy": "easy",
    "pacing": "linear",
    "initial_fraction": 0.3,
    "warmup_iterations": 1000,
}


def _schedule_config(
    strategy: str,
    pacing: str,
    initial_fraction: float,
    warmup_iterations: int,
    schedule_options: Mapping[str, Any],
) -> ScheduleConfig:
    """Validate the curriculum arguments here so errors name the caller's arguments."""
    valid_strategies = (*STRATEGIES, *STRATEGY_ALIASES)
    check_choice("strategy", strategy, valid_strategies)
    check_choice("pacing", pacing, PACINGS)
    check_fraction("initial_fraction", initial_fraction)
    check_non_negative_int("warmup_iterations", warmup_iterations)
    unknown = sorted(set(schedule_options) - set(_schedule_option_names()))
    if unknown:
        raise TypeError(
            f"unknown schedule option(s) {unknown}; valid: {', '.join(_schedule_option_names())}"
        )
    return ScheduleConfig(
        strategy=canonical_strategy(strategy),
        pacing=pacing,
        initial_fraction=float(initial_fraction),
        warmup_iterations=int(warmup_iterations),
        **schedule_options,
    )


def _schedule_option_names() -> list[str]:
    return sorted(
        field.name
        for field in dataclasses.fields(ScheduleConfig)
        if field.name not in _SCHEDULE_DEFAULTS
    )


def _prebuilt_schedule(
    schedule: object,
    explicit: Mapping[str, Any],
    scores: np.ndarray,
    mask: np.ndarray | None,
) -> Schedule:
    """Check a caller's prebuilt schedule against the arguments and the scores it must fit."""
    if isinstance(schedule, Mapping):
        try:
            schedule = Schedule.from_json(schedule)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"schedule is not a valid Schedule JSON ({error}); pass Schedule.to_json() of "
                f"a schedule built by build_schedule, or a Schedule"
            ) from None
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"schedule must be a Schedule or its to_json() dict, got {type(schedule).__name__}; "
            f"e.g. build_schedule(difficulty, config, valid=sample_mask)"
        )
    unknown = sorted(set(explicit) - set(_SCHEDULE_DEFAULTS) - set(_schedule_option_names()))
    if unknown:
        raise TypeError(
            f"unknown schedule option(s) {unknown}; valid: {', '.join(_schedule_option_names())}"
        )
    config = schedule.config
    for key, value in explicit.items():
        wanted = canonical_strategy(value) if key == "strategy" else value
        if getattr(config, key) != wanted:
            raise ValueError(
                f"{key}={value!r} disagrees with the given schedule's {key}="
                f"{getattr(config, key)!r}; leave {key} out when passing schedule= (the "
                f"schedule's config is what gets published), or rebuild the schedule"
            )
    drawable = scores if mask is None else scores[mask]
    if schedule.n_samples is not None and schedule.n_samples != drawable.shape[0]:
        raise ValueError(
            f"schedule was built for {schedule.n_samples} samples but there are "
            f"{drawable.shape[0]} drawable samples; build it with build_schedule(difficulty, "
            f"config, valid=sample_mask) from these scores"
        )
    if not schedule.is_uniform:
        # One exact O(N) evaluation: the table's first node must hold for these scores.
        achieved = effective_fraction_at(drawable, float(schedule.betas[0]), config.strategy)
        if not math.isclose(achieved, float(schedule.achieved[0]), rel_tol=0.0, abs_tol=1e-9):
            raise ValueError(
                f"schedule was not built from this difficulty (at its first inverse temperature "
                f"it records effective fraction {float(schedule.achieved[0])!r}, these scores "
                f"give {achieved!r}); build it with build_schedule(difficulty, config, "
                f"valid=sample_mask)"
            )
    return schedule


def publish_curriculum(
    root: str | os.PathLike[str] | ObjectPath,
    name: str,
    difficulty: np.ndarray,
    assignment: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
    strategy: str | None = None,
    pacing: str | None = None,
    initial_fraction: float | None = None,
    warmup_iterations: int | None = None,
    *,
    parents: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    sweep: object = None,
    dataset_fingerprint: str | None = None,
    sample_mask: np.ndarray | None = None,
    schedule: Schedule | Mapping[str, Any] | None = None,
    json_files: Mapping[str, object] | None = None,
    replace_damaged: bool = False,
    **schedule_options: Any,
) -> Location:
    """Turn any per-sample score into a published curriculum artifact.

    Parameters
    ----------
    root : str, PathLike or ObjectPath
        Artifact root: a local directory or an fsspec URL such as ``s3://bucket/artifacts``
        (object storage; see the module notes).
    name : str
        Artifact name; the version lands in ``<root>/<name>/<version>/``.
    difficulty : array-like of shape (N,)
        One finite score per sample, in dataset order (higher = harder). Stored as float32.
    assignment : array-like of shape (N,), optional
        Integer cluster id per sample (-1 allowed where ``sample_mask`` is False); stored as
        int32.
    centroids : array-like of shape (k, D), optional
        Cluster centres; stored as float32.
    strategy : {"easy", "hard"} or alias ("prototypes", "difficulty"), default "easy"
        ``easy`` samples prototypes first (p ~ exp(-d/T)); ``hard`` the reverse.
    pacing : {"linear", "cosine", "root", "step"}, default "linear"
        How the target effective fraction grows from ``initial_fraction`` to 1.
    initial_fraction : float in (0, 1], default 0.3
        Effective fraction of the dataset at iteration 0.
    warmup_iterations : int >= 0, default 1000
        Iteration from which sampling is uniform.
    parents : sequence of str
        Upstream content ids (e.g. the embedding store's fingerprint). The sha256 of every
        array passed here is appended, so different scores never share a version.
    config : mapping, optional
        Upstream configuration recorded under ``config["pipeline"]`` (part of the version id).
    metrics : mapping, optional
        Extra summary figures for the manifest (they win over the built-in
        ``difficulty_min/mean/max`` and ``max_inverse_temperature``).
    extra_files : mapping of str to path, optional
        Files (plots, ``report.md``) copied into the version.
    sweep : JSON-serialisable, optional
        Per-k cluster sweep, stored as ``sweep.json``.
    dataset_fingerprint : str, optional
        Recorded in the manifest.
    sample_mask : array-like of shape (N,), bool, optional
        True for drawable samples. Excluded samples get probability exactly 0 at training
        time: the schedule is solved over the drawable samples, ``sample_mask.npy`` and the
        manifest's ``excluded`` record them, and the mask is part of the version id. Their
        ``difficulty`` must still be finite (0.0 by convention). ``None`` or all True: as
        without a mask (same version as before masks existed).
    schedule : Schedule or its ``to_json()`` dict, optional
        A schedule already built for these scores (``build_schedule(difficulty, config,
        valid=sample_mask)``): published as is, not solved again. Its config is the version's
        schedule config; ``strategy``/``pacing``/... given as well must agree with it.
    json_files : mapping of str to object, optional
        Further JSON documents stored as ``<key>.json`` (``schedule`` and ``sweep`` are taken).
    replace_damaged : bool
        If this version is already published but fails verification: False (default) raises
        :class:`ArtifactIntegrityError`; True publishes it again in place of the damaged copy.
    **schedule_options
        Further :class:`cl_core.schedule.ScheduleConfig` fields (``power``, ``n_steps``, ...).

    Returns
    -------
    Path or ObjectPath
        The version directory (loadable with :func:`cl_core.sampler.load_curriculum`); an
        :class:`ObjectPath` for a URL root.
    """
    scores = check_difficulty(difficulty)
    mask = check_valid_mask("sample_mask", sample_mask, scores.shape[0])
    cluster_ids = _as_assignment(assignment, scores.shape[0], mask)
    centres = _as_centroids(centroids, cluster_ids)
    explicit = {
        key: value
        for key, value in {
            "strategy": strategy,
            "pacing": pacing,
            "initial_fraction": initial_fraction,
            "warmup_iterations": warmup_iterations,
        }.items()
        if value is not None
    }
    prebuilt: Schedule | None = None
    if schedule is None:
        chosen = {**_SCHEDULE_DEFAULTS, **explicit}
        schedule_config = _schedule_config(
            chosen["strategy"],
            chosen["pacing"],
            chosen["initial_fraction"],
            chosen["warmup_iterations"],
            schedule_options,
        )
    else:
        prebuilt = _prebuilt_schedule(schedule, {**explicit, **schedule_options}, scores, mask)
        schedule_config = prebuilt.config
    extra_json = dict(json_files or {})
    taken = sorted({"schedule", "sweep"} & {key.removesuffix(".json") for key in extra_json})
    if taken:
        raise ValueError(
            f"json_files keys {taken} are reserved (schedule.json is the schedule, sweep.json "
            f"comes from sweep=); rename them"
        )
    arrays = {"difficulty": scores}
    if cluster_ids is not None:
        arrays["assignment"] = cluster_ids
    if centres is not None:
        arrays["centroids"] = centres
    full_parents, full_config = curriculum_identity(
        arrays, schedule_config, config, parents, sample_mask=mask
    )
    name = _check_artifact_name(name)
    version_dir = as_location(root) / name / compute_version(full_parents, full_config)
    remove_stale_temporaries(root, name)
    if _existing_version(version_dir, _check_flag("replace_damaged", replace_damaged)):
        # Same scores and settings: skip the schedule solve, just move the pointer.
        _point_latest(version_dir.parent, version_dir.name)
        return version_dir

    if prebuilt is None:
        prebuilt = build_schedule(scores, schedule_config, valid=mask)
    json_out: dict[str, object] = {"schedule": prebuilt.to_json()}
    if sweep is not None:
        json_out["sweep"] = sweep
    json_out.update(extra_json)
    drawable = scores if mask is None else scores[mask]
    summary = {
        "difficulty_min": float(drawable.min()),
        "difficulty_mean": float(drawable.mean(dtype=np.float64)),
        "difficulty_max": float(drawable.max()),
        "max_inverse_temperature": float(np.max(prebuilt.betas)),
    }
    return publish_artifact(  # the damaged copy, if any, is gone: nothing left to replace
        root,
        name,
        arrays=arrays,
        json_files=json_out,
        config=full_config,
        parents=full_parents,
        metrics={**summary, **dict(metrics or {})},
        extra_files=extra_files,
        dataset_fingerprint=dataset_fingerprint,
        sample_mask=mask,
    )
