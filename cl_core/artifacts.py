"""Versioned, content-addressed curriculum artifacts: publish, verify, load, ``latest``.

A version is ``<root>/<name>/<version>/`` where ``version`` is the first 12 hex characters of the
sha256 of the canonical JSON of ``{parents, config, schema_version, code_version}``; the same inputs
therefore always map to the same directory and a rerun publishes nothing new.

Publishing is atomic: every file is written (and fsynced) into ``<root>/<name>/.tmp-<version>-<rand>/``,
``manifest.json`` last, and the directory is then renamed to its version name. Readers treat a
directory without ``manifest.json`` as absent, so a crash at any point never exposes a partial
artifact and never touches an earlier version. ``<root>/<name>/latest`` is a one-line pointer file
replaced atomically (write a temp file, ``os.replace``).

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
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cl_core import CODE_VERSION
from cl_core._manifest import (
    LATEST_FILE,
    MANIFEST_FILE,
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
)
from cl_core.schedule import (
    PACINGS,
    STRATEGIES,
    STRATEGY_ALIASES,
    ScheduleConfig,
    build_schedule,
    canonical_strategy,
)

__all__ = [
    "LATEST_FILE",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "ArtifactIntegrityError",
    "array_digest",
    "compute_version",
    "latest_version",
    "list_versions",
    "load_array",
    "load_json",
    "load_manifest",
    "publish_artifact",
    "publish_curriculum",
    "resolve_version",
    "verify_artifact",
]

VERSION_LENGTH = 12
_NUMERIC_KINDS = "biufc"
_RESERVED_NAMES = (MANIFEST_FILE, LATEST_FILE)


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


def _point_latest(name_dir: Path, version: str) -> None:
    """Atomically replace ``<name_dir>/latest`` with ``version``."""
    temp = name_dir / f".latest-{secrets.token_hex(6)}"
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(version + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, name_dir / LATEST_FILE)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_directory(name_dir)


def _existing_version(version_dir: Path) -> bool:
    """True if a complete, verified version is already published at ``version_dir``.

    A directory without a manifest does not count (it is replaced); a manifest whose files fail
    verification raises, because silently overwriting a tampered artifact would hide the damage.
    """
    if not (version_dir / MANIFEST_FILE).is_file():
        return False
    try:
        verify_artifact(version_dir)
    except ArtifactIntegrityError as error:
        raise ArtifactIntegrityError(
            error.path,
            f"belongs to the already published version {version_dir.name}, which fails "
            f"verification ({error})",
            f"delete {version_dir} and publish again",
        ) from None
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
    trash = version_dir.parent / f".trash-{version_dir.name}-{secrets.token_hex(6)}"
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


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def publish_artifact(
    root: str | os.PathLike[str],
    name: str,
    *,
    arrays: Mapping[str, np.ndarray],
    json_files: Mapping[str, object],
    config: Mapping[str, Any],
    parents: Sequence[str],
    metrics: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    dataset_fingerprint: str | None = None,
) -> Path:
    """Publish files as one content-addressed, verified artifact version.

    Parameters
    ----------
    root : str or PathLike
        Artifact root; the version lands in ``<root>/<name>/<version>/``.
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

    Returns
    -------
    Path
        The version directory. If that version already exists (and verifies) it is returned
        untouched; either way ``latest`` then points to it.
    """
    name = _check_artifact_name(name)
    version = compute_version(parents, config)
    name_dir = Path(root) / name
    version_dir = name_dir / version
    if _existing_version(version_dir):
        _point_latest(name_dir, version)
        return version_dir

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
        **_size_fields(arrays),
        "files": {},
        "metrics": dict(metrics or {}),
    }
    _json_bytes(manifest["metrics"], "metrics")  # fail before anything touches the disk

    name_dir.mkdir(parents=True, exist_ok=True)
    temp_dir = name_dir / f".tmp-{version}-{secrets.token_hex(6)}"
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


def latest_version(root: str | os.PathLike[str], name: str) -> Path:
    """The version directory ``<root>/<name>/latest`` points to.

    Raises
    ------
    FileNotFoundError
        If nothing was published under that name (or the pointed-to version is gone).
    """
    name = _check_artifact_name(name)
    pointer = Path(root) / name / LATEST_FILE
    if not pointer.is_file():
        raise FileNotFoundError(
            f"no artifact named {name!r} under {str(root)!r} (missing {pointer}); publish one "
            f"first or check root and name"
        )
    return resolve_version(pointer)


def list_versions(root: str | os.PathLike[str], name: str) -> list[Path]:
    """Published (manifest-bearing) version directories of ``name``, oldest first."""
    name_dir = Path(root) / _check_artifact_name(name)
    if not name_dir.is_dir():
        return []
    versions = [
        path
        for path in name_dir.iterdir()
        if path.is_dir() and not path.name.startswith(".") and (path / MANIFEST_FILE).is_file()
    ]
    return sorted(versions, key=lambda path: (path.joinpath(MANIFEST_FILE).stat().st_mtime, path))


# --------------------------------------------------------------------------------------------
# Curriculum artifacts
# --------------------------------------------------------------------------------------------


def _as_assignment(assignment: object, n_samples: int) -> np.ndarray | None:
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
    if values.min() < 0 or values.max() > np.iinfo(np.int32).max:
        raise ValueError(
            f"assignment holds ids from {values.min()} to {values.max()}; cluster ids must lie "
            f"in [0, {np.iinfo(np.int32).max}]"
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
    if assignment is not None and assignment.max() >= values.shape[0]:
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

    Returns
    -------
    (list of str, dict)
        ``parents`` and ``config`` for :func:`publish_artifact` / :func:`compute_version`.
    """
    full_parents = [*map(str, parents), *(array_digest(value) for value in arrays.values())]
    full_config = {
        "artifact": "curriculum",
        "schedule": schedule_config.to_json(),
        "pipeline": dict(pipeline_config or {}),
    }
    return full_parents, full_config


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
    valid_options = sorted(
        field.name
        for field in dataclasses.fields(ScheduleConfig)
        if field.name not in ("strategy", "pacing", "initial_fraction", "warmup_iterations")
    )
    unknown = sorted(set(schedule_options) - set(valid_options))
    if unknown:
        raise TypeError(f"unknown schedule option(s) {unknown}; valid: {', '.join(valid_options)}")
    return ScheduleConfig(
        strategy=canonical_strategy(strategy),
        pacing=pacing,
        initial_fraction=float(initial_fraction),
        warmup_iterations=int(warmup_iterations),
        **schedule_options,
    )


def publish_curriculum(
    root: str | os.PathLike[str],
    name: str,
    difficulty: np.ndarray,
    assignment: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
    strategy: str = "easy",
    pacing: str = "linear",
    initial_fraction: float = 0.3,
    warmup_iterations: int = 1000,
    *,
    parents: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    sweep: object = None,
    dataset_fingerprint: str | None = None,
    **schedule_options: Any,
) -> Path:
    """Turn any per-sample score into a published curriculum artifact.

    Parameters
    ----------
    root : str or PathLike
        Artifact root directory.
    name : str
        Artifact name; the version lands in ``<root>/<name>/<version>/``.
    difficulty : array-like of shape (N,)
        One finite score per sample, in dataset order (higher = harder). Stored as float32.
    assignment : array-like of shape (N,), optional
        Integer cluster id per sample; stored as int32.
    centroids : array-like of shape (k, D), optional
        Cluster centres; stored as float32.
    strategy : {"easy", "hard"} or alias ("prototypes", "difficulty")
        ``easy`` samples prototypes first (p ~ exp(-d/T)); ``hard`` the reverse.
    pacing : {"linear", "cosine", "root", "step"}
        How the target effective fraction grows from ``initial_fraction`` to 1.
    initial_fraction : float in (0, 1]
        Effective fraction of the dataset at iteration 0.
    warmup_iterations : int >= 0
        Iteration from which sampling is uniform.
    parents : sequence of str
        Upstream content ids (e.g. the embedding store's fingerprint). The sha256 of every
        array passed here is appended, so different scores never share a version.
    config : mapping, optional
        Upstream configuration recorded under ``config["pipeline"]`` (part of the version id).
    metrics : mapping, optional
        Extra summary figures for the manifest.
    extra_files : mapping of str to path, optional
        Files (plots) copied into the version.
    sweep : JSON-serialisable, optional
        Per-k cluster sweep, stored as ``sweep.json``.
    dataset_fingerprint : str, optional
        Recorded in the manifest.
    **schedule_options
        Further :class:`cl_core.schedule.ScheduleConfig` fields (``power``, ``n_steps``, ...).

    Returns
    -------
    Path
        The version directory (loadable with :func:`cl_core.sampler.load_curriculum`).
    """
    scores = check_difficulty(difficulty)
    cluster_ids = _as_assignment(assignment, scores.shape[0])
    centres = _as_centroids(centroids, cluster_ids)
    schedule_config = _schedule_config(
        strategy, pacing, initial_fraction, warmup_iterations, schedule_options
    )
    arrays = {"difficulty": scores}
    if cluster_ids is not None:
        arrays["assignment"] = cluster_ids
    if centres is not None:
        arrays["centroids"] = centres
    full_parents, full_config = curriculum_identity(arrays, schedule_config, config, parents)
    name = _check_artifact_name(name)
    version_dir = Path(root) / name / compute_version(full_parents, full_config)
    if _existing_version(version_dir):
        # Same scores and settings: skip the schedule solve, just move the pointer.
        _point_latest(version_dir.parent, version_dir.name)
        return version_dir

    schedule = build_schedule(scores, schedule_config)
    json_files: dict[str, object] = {"schedule": schedule.to_json()}
    if sweep is not None:
        json_files["sweep"] = sweep
    summary = {
        "difficulty_min": float(scores.min()),
        "difficulty_mean": float(scores.mean(dtype=np.float64)),
        "difficulty_max": float(scores.max()),
        "max_inverse_temperature": float(np.max(schedule.betas)),
    }
    return publish_artifact(
        root,
        name,
        arrays=arrays,
        json_files=json_files,
        config=full_config,
        parents=full_parents,
        metrics={**summary, **dict(metrics or {})},
        extra_files=extra_files,
        dataset_fingerprint=dataset_fingerprint,
    )
