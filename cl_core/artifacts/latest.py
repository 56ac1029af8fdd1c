"""One artifact name's directory: its ``latest`` pointer, its versions, its temporaries.

``<root>/<name>/latest`` is a one-line pointer file replaced atomically (:func:`point_latest`:
write a temp file, fsync, ``os.replace``), so a concurrent reader sees the old or the new
version, never a partial name.

Every temporary name (``.tmp-*`` directories, ``.trash-*`` directories, ``.latest-*`` pointer
files) records its writer's host name and process id (:func:`temp_name`). A publish of a name
first removes the temporaries of that name whose writer is gone (same host, process no longer
running), e.g. those left by a publish killed with SIGKILL (:func:`remove_stale_temporaries`).
A live writer's, or another host's, are left alone; temporaries in the old unowned format are
removed once older than a day. Object storage has no rename and publishing writes no
temporaries there; the pointer is replaced by one object write.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cl_core.artifacts.manifest import (
    LATEST_FILE,
    MANIFEST_FILE,
    ArtifactIntegrityError,
    load_manifest,
    resolve_version,
)
from cl_core.io import Location, as_location, atomic_write_bytes, list_dir, storage_errors

if TYPE_CHECKING:
    from upath import UPath

_TEMP_KINDS = ("tmp", "trash", "latest")
TEMP_PATTERN = re.compile(
    r"^\.(?P<kind>tmp|trash|latest)-(?P<label>[^@]*)@(?P<host>[A-Za-z0-9_.-]*)@(?P<pid>[0-9]+)"
    r"@(?P<rand>[0-9a-f]+)$"
)
"""``.<kind>-<label>@<host>@<pid>@<rand>``: the writer of every temporary is on record."""
_LEGACY_PATTERN = re.compile(r"^\.(tmp|trash|latest)-")
_LEGACY_MAX_AGE_S = 24 * 3600.0


def host_tag() -> str:
    """This machine's name, restricted to the characters a temporary's name may hold."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64]


def temp_name(kind: str, label: str) -> str:
    """``.<kind>-<label>@<host>@<pid>@<rand>``: a unique temporary naming its writer."""
    assert kind in _TEMP_KINDS and "@" not in label
    return f".{kind}-{label}@{host_tag()}@{os.getpid()}@{secrets.token_hex(6)}"


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


def _is_stale(entry: Location) -> bool:
    match = TEMP_PATTERN.match(entry.name)
    if match is not None:
        return match["host"] == host_tag() and _process_gone(int(match["pid"]))
    if _LEGACY_PATTERN.match(entry.name) is None:
        return False
    try:  # the writer of an old-format temporary is unknown: only age can tell
        return time.time() - entry.lstat().st_mtime > _LEGACY_MAX_AGE_S
    except OSError:
        return False


def remove_stale_temporaries(root: str | os.PathLike[str] | UPath, name: str) -> list[Location]:
    """Remove the leftovers of killed publishes of ``name`` (only those whose writer is gone).

    Every publish writes into ``<root>/<name>/.tmp-<version>@<host>@<pid>@<rand>/`` (and moves
    a broken version aside as ``.trash-*``, and writes the pointer through ``.latest-*``). A
    temporary is removed when its writer ran on this host and that process no longer exists;
    a live writer's (another publish in progress) and another host's are left alone.
    Old-format temporaries without an owner are removed once older than a day.
    :func:`publish_artifact` and :func:`publish_curriculum` call this first.

    Parameters
    ----------
    root : str, PathLike or UPath
        Artifact root.
    name : str
        Artifact name.

    Returns
    -------
    list of Path or UPath
        The temporaries removed (always empty for an object-storage root, where publishing
        writes no temporaries).
    """
    removed = []
    for entry in list_dir(as_location(root) / check_artifact_name(name)):
        if not entry.name.startswith(".") or not _is_stale(entry):
            continue
        if isinstance(entry, Path) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        if not entry.exists():
            removed.append(entry)
    return removed


def write_latest(name_dir: Location, version: str) -> None:
    """Atomically replace ``<name_dir>/latest`` with ``version`` (write, fsync, rename; on
    object storage one object write), without checking that the version exists."""
    atomic_write_bytes(
        name_dir / LATEST_FILE,
        (version + "\n").encode("utf-8"),
        durable=True,
        temp_name=temp_name("latest", ""),
    )


def point_latest(root: str | os.PathLike[str] | UPath, name: str, version: str) -> Location:
    """Make ``<root>/<name>/latest`` name ``version``, atomically.

    The pointer is written to a temporary file, fsynced and renamed over ``latest``
    (``os.replace``), so a reader at any moment sees the previous or the new version, never a
    partial name, and a crash leaves the previous pointer intact. Publishing calls this; call it
    yourself to roll back, or to record the version a cached run reported.

    Parameters
    ----------
    root : str, PathLike or UPath
        Artifact root (a local directory or an fsspec URL).
    name : str
        Artifact name.
    version : str
        A published version of ``name``: ``<root>/<name>/<version>/manifest.json`` must exist,
        be valid JSON with the required keys, and record this version and name. (The files are
        not hashed here; :func:`verify_artifact` does that.)

    Returns
    -------
    Path or UPath
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
    name = check_artifact_name(name)
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
    with storage_errors("look up", version_dir):
        if not (version_dir / MANIFEST_FILE).is_file():
            raise FileNotFoundError(
                f"cannot point {str(name_dir / LATEST_FILE)!r} at {version!r}: "
                f"{str(version_dir)!r} has no {MANIFEST_FILE}, so that version is not "
                f"published; publish it first or pick one of "
                f"{[path.name for path in list_versions(root, name)]}"
            )
    manifest = load_manifest(version_dir)
    if manifest.get("version") != version or manifest.get("name") != name:
        raise ArtifactIntegrityError(
            version_dir / MANIFEST_FILE,
            f"records name {manifest.get('name')!r} and version {manifest.get('version')!r}, not "
            f"{name!r} and {version!r}",
            "publish the artifact again instead of copying or renaming version directories",
        )
    write_latest(name_dir, version)
    return version_dir


def check_artifact_name(name: object) -> str:
    """``name`` if it is a plain directory name usable as an artifact name, else ValueError."""
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


def latest_version(root: str | os.PathLike[str] | UPath, name: str) -> Location:
    """The version directory ``<root>/<name>/latest`` points to.

    Raises
    ------
    FileNotFoundError
        If nothing was published under that name (or the pointed-to version is gone).
    """
    name = check_artifact_name(name)
    pointer = as_location(root) / name / LATEST_FILE
    with storage_errors("look up", pointer):
        if not pointer.is_file():
            raise FileNotFoundError(
                f"no artifact named {name!r} under {str(root)!r} (missing {pointer}); publish "
                f"one first or check root and name"
            )
    return resolve_version(pointer)


def list_versions(root: str | os.PathLike[str] | UPath, name: str) -> list[Location]:
    """Published (manifest-bearing) version directories of ``name``, oldest first."""
    versions = [
        path
        for path in list_dir(as_location(root) / check_artifact_name(name))
        if not path.name.startswith(".") and (path / MANIFEST_FILE).is_file()
    ]
    return sorted(versions, key=lambda path: ((path / MANIFEST_FILE).stat().st_mtime, str(path)))
