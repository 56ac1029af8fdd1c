"""Where bytes go and how they are identified: locations, atomic writes, canonical JSON, hashes.

A location is a local :class:`pathlib.Path` or, for an fsspec URL (``s3://bucket/prefix``,
``gs://...``, ``memory://...``), a :class:`upath.UPath`; both offer the same ``Path`` interface.
universal_pathlib, fsspec and the protocol's package (``s3fs`` for ``s3://``) are imported only
when a URL is used, so this module stays numpy + standard library for :mod:`cl_core.sampler`.
Credentials and endpoints come from the environment as for any fsspec client (``AWS_*``
variables or profiles, ``AWS_ENDPOINT_URL``, fsspec's configuration).

Every content id in the project (artifact versions, store fingerprints, the flows' stage ids) is
the sha256 of :func:`canonical_json` of a document, and every file that must never be seen
half-written goes through :func:`atomic_write_bytes`: a local file is written to a temporary name
and renamed, an object is stored in one request (atomic on object storage, which has no rename).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np

if TYPE_CHECKING:
    from upath import UPath

__all__ = [
    "BucketAccessError",
    "BucketNotFoundError",
    "Location",
    "as_location",
    "atomic_write_bytes",
    "canonical_json",
    "content_hash",
    "fsync_directory",
    "is_url",
    "json_default",
    "list_dir",
    "readable_json",
    "sha256_hex",
    "storage_errors",
]

Location = Union[Path, "UPath"]  # a runtime alias; upath is imported on use only


def is_url(path: object) -> bool:
    """True for an fsspec URL (a string or a ``UPath``) other than ``file://``, a local path."""
    if isinstance(path, Path):
        return False
    text = str(path)
    return "://" in text and not text.startswith("file://")


def as_location(path: str | os.PathLike[str] | UPath) -> Location:
    """``path`` as a :class:`~pathlib.Path` (local, ``file://`` included) or a ``UPath`` (a URL).

    Raises
    ------
    ImportError
        Naming the package to install when universal_pathlib, fsspec or the URL protocol's
        implementation is missing.
    ValueError
        An unknown protocol.
    """
    if isinstance(path, Path):
        return path
    if not is_url(path):
        text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        return Path(text.removeprefix("file://"))
    if not isinstance(path, str):
        return cast("UPath", path)  # a UPath already
    try:
        import fsspec
        from fsspec.registry import known_implementations
        from upath import UPath
    except ImportError:
        raise ImportError(
            f"{path!r} is an fsspec URL; reading or writing it needs the universal_pathlib and "
            f"fsspec packages: pip install universal_pathlib fsspec"
        ) from None
    protocol = path.partition("://")[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as error:
        package = known_implementations.get(protocol, {}).get("class", "").split(".")[0]
        fix = f"the {package} package: pip install {package}" if package else f"({error})"
        raise ImportError(f"{protocol}:// URLs such as {path!r} need {fix}") from None
    except ValueError as error:  # unknown protocol
        raise ValueError(f"{path!r}: {error}; use a local path or a supported fsspec URL") from None
    # No listing cache: other writers change the bucket, and a cached listing would not see it.
    return UPath(path, use_listings_cache=False)


class BucketNotFoundError(FileNotFoundError):
    """The bucket (or container) of an object-storage URL does not exist."""


class BucketAccessError(PermissionError):
    """Object storage refused an operation (credentials or the bucket's policy)."""


def _bucket(location: UPath) -> str:
    return str(location).partition("://")[2].lstrip("/").split("/", 1)[0]


def _bucket_missing(location: UPath, error: BaseException) -> bool:
    """Whether ``error`` (a FileNotFoundError) means the bucket itself does not exist."""
    text = str(error).lower()
    if "bucket" in text and ("not exist" in text or "nosuchbucket" in text):
        return True
    if location.protocol in ("memory", "file", "local"):
        return False
    try:
        location.fs.info(f"{location.protocol}://{_bucket(location)}")
    except FileNotFoundError:
        return True
    except Exception:  # denied, offline...: the original error says more
        return False
    return False


@contextlib.contextmanager
def storage_errors(operation: str, location: Location) -> Iterator[None]:
    """Re-raise an object-storage failure naming the bucket and the ``operation`` that failed.

    Denied access becomes a :class:`BucketAccessError`, a missing bucket (a FileNotFoundError or
    NotADirectoryError whose bucket is gone) a :class:`BucketNotFoundError`. A missing object in
    an existing bucket, and every error of a local path, pass unchanged.
    """
    try:
        yield
    except (BucketAccessError, BucketNotFoundError):
        raise
    except PermissionError as error:
        if isinstance(location, Path):
            raise
        raise BucketAccessError(
            f"access denied to bucket {_bucket(location)!r}: cannot {operation} {location} "
            f"({error}); check the credentials (AWS_* variables or profile) and the bucket's "
            f"policy"
        ) from error
    except (FileNotFoundError, NotADirectoryError) as error:
        if isinstance(location, Path) or not _bucket_missing(location, error):
            raise
        raise BucketNotFoundError(
            f"bucket {_bucket(location)!r} does not exist: cannot {operation} {location}; "
            f"create the bucket or fix the URL"
        ) from error


def list_dir(directory: Location) -> list[Location]:
    """The entries of a directory (an object prefix), sorted; ``[]`` when there is none.

    Raises
    ------
    BucketNotFoundError, BucketAccessError
        On object storage, a missing bucket or denied access.
    """
    try:
        with storage_errors("list", directory):
            return sorted(directory.iterdir())
    except (BucketAccessError, BucketNotFoundError):
        raise
    except (FileNotFoundError, NotADirectoryError):
        return []


def json_default(value: Any) -> Any:
    """Plain JSON data for the non-JSON values configs hold, deterministically.

    numpy scalars and arrays (``item`` / ``tolist``), paths (``os.fspath``), dataclasses (their
    fields), pydantic models (``model_dump(mode="json")``) and sets (sorted).

    Raises
    ------
    TypeError
        Any other type (the caller names the document it was in).
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable; pass plain values")


def canonical_json(obj: Any, *, allow_nan: bool = False) -> str:
    """Compact, key-sorted JSON: equal documents give equal strings, the input of content ids.

    Parameters
    ----------
    obj : any
        Plain JSON data, or values :func:`json_default` converts.
    allow_nan : bool
        Write NaN/inf as ``NaN``/``Infinity`` tokens (not strict JSON) instead of refusing them.

    Raises
    ------
    TypeError, ValueError
        A value that is not serialisable, or NaN/inf with ``allow_nan=False``.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), allow_nan=allow_nan, default=json_default
    )


def readable_json(obj: Any) -> bytes:
    """Indented, key-sorted strict JSON (NaN/inf refused) with a final newline, UTF-8 bytes."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=json_default)
    return (text + "\n").encode("utf-8")


def sha256_hex(data: bytes | str) -> str:
    """Hex sha256 of ``data`` (a ``str`` is hashed as UTF-8)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def content_hash(obj: Any, length: int, *, allow_nan: bool = False) -> str:
    """The first ``length`` hex digits of the sha256 of :func:`canonical_json` of ``obj``."""
    return sha256_hex(canonical_json(obj, allow_nan=allow_nan))[:length]


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Persist a directory's entries (a rename or create in it) where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(
    path: str | os.PathLike[str] | UPath,
    data: bytes,
    *,
    durable: bool = False,
    temp_name: str | None = None,
) -> Location:
    """Replace ``path`` with ``data`` atomically: readers see the old or the new bytes, never a mix.

    A local file: the bytes go to a temporary file in the same directory (created with its
    parents), which is then renamed over ``path``; a crash leaves the old file and at most the
    temporary. An object (a URL): stored in one request, which is atomic on object storage.

    Parameters
    ----------
    path : str, PathLike or UPath
        The file to write, local or an fsspec URL.
    data : bytes
        Its new content.
    durable : bool
        fsync the file before the rename and the directory after it, so the new content also
        survives a power loss (costs a few milliseconds). Local files only.
    temp_name : str, optional
        Name of the temporary file (e.g. one that records its writer, for stale-file cleanup);
        default a unique ``.<name>.<random>.tmp``. Local files only.

    Returns
    -------
    Path or UPath
        ``path`` as a location.

    Raises
    ------
    BucketNotFoundError, BucketAccessError
        On object storage, a missing bucket or denied access.
    """
    target = as_location(path)
    if not isinstance(target, Path):
        with storage_errors("write", target):
            target.write_bytes(data)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if temp_name is None:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        handle = os.fdopen(fd, "wb")
    else:
        temp = str(target.parent / temp_name)
        handle = open(temp, "xb")  # noqa: SIM115 (closed below, before the rename)
    try:
        with handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(target.parent)
    return target
