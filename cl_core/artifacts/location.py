"""Where artifacts live: local paths, or fsspec URLs on object storage (stdlib only at import).

Artifact roots and version paths are either a local :class:`pathlib.Path` or an
:class:`ObjectPath`, an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``) with
the few ``Path`` operations the artifact code needs (``/``, ``name``, ``parent``, ``is_file``,
``is_dir``, ``iterdir``, ``read_bytes``, ``read_text``). fsspec, and the protocol's package
(``s3fs`` for ``s3://``), are imported only when a URL is used, so :mod:`cl_core.sampler` stays
numpy + standard library for local artifacts.

Credentials and endpoints come from the environment as for any fsspec/boto client: ``AWS_*``
variables or profiles (``AWS_ENDPOINT_URL`` for an S3-compatible server), or fsspec's
configuration (e.g. ``FSSPEC_S3='{"endpoint_url": "http://127.0.0.1:9000"}'``).

Errors name what failed: a URL whose package is missing says which one to install; a bucket that
does not exist, or denies access, is named with the operation that failed.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Union

_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "hf": "huggingface_hub",
}
"""The package that implements each common protocol (fsspec's own message for the others)."""


def is_url(path: object) -> bool:
    """True for an fsspec URL other than ``file://`` (which is a local path)."""
    if isinstance(path, ObjectPath):
        return True
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def as_location(path: str | os.PathLike[str] | ObjectPath) -> Path | ObjectPath:
    """``path`` as a :class:`~pathlib.Path` (local, ``file://`` included) or an :class:`ObjectPath`."""
    if isinstance(path, ObjectPath):
        return path
    if isinstance(path, str) and path.startswith("file://"):
        return Path(path[len("file://") :])
    if is_url(path):
        return ObjectPath(str(path))
    return Path(path)


def filesystem(protocol: str, url: str) -> Any:
    """The fsspec filesystem of ``protocol``, its listing cache cleared (other writers exist).

    Raises
    ------
    ImportError
        Naming the package to install when fsspec or the protocol's implementation is missing.
    """
    package = _PACKAGES.get(protocol)
    try:
        import fsspec
    except ImportError:
        extra = f" and {package}" if package else ""
        raise ImportError(
            f"{url!r} is an fsspec URL; reading or writing it needs the fsspec{extra} "
            f"package{'s' if package else ''}: pip install fsspec{' ' + package if package else ''}"
        ) from None
    try:
        fs = fsspec.filesystem(protocol)
    except ImportError as error:
        what = f"the {package} package: pip install {package}" if package else f"({error})"
        raise ImportError(f"{protocol}:// URLs such as {url!r} need {what}") from None
    except ValueError as error:  # unknown protocol
        raise ValueError(f"{url!r}: {error}; use a local path or a supported fsspec URL") from None
    fs.invalidate_cache()
    return fs


class ObjectPath:
    """A file or prefix on object storage, addressed by an fsspec URL.

    Object stores have no directories and no rename: a "directory" is a key prefix that exists
    once an object is stored under it, and writing one object is atomic (a reader sees the old
    or the new bytes, never a mix).

    Parameters
    ----------
    url : str
        ``<protocol>://<bucket>/<key...>``; a trailing slash is dropped.
    """

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        protocol, separator, rest = str(url).partition("://")
        if not separator or not protocol or not rest.strip("/"):
            raise ValueError(
                f"{url!r} is not an object-storage URL; use e.g. 's3://bucket/artifacts'"
            )
        self.url = f"{protocol}://{rest.rstrip('/')}"

    # -- names -------------------------------------------------------------------------------

    @property
    def protocol(self) -> str:
        """``"s3"`` for ``s3://...``."""
        return self.url.partition("://")[0]

    @property
    def bucket(self) -> str:
        """The first component after the protocol (the bucket or container)."""
        return self.url.partition("://")[2].lstrip("/").split("/", 1)[0]

    @property
    def name(self) -> str:
        """The last component (as :attr:`pathlib.PurePath.name`)."""
        return posixpath.basename(self.url.partition("://")[2])

    @property
    def parent(self) -> ObjectPath:
        """The enclosing prefix (the bucket's root at most)."""
        rest = self.url.partition("://")[2]
        head = posixpath.dirname(rest)
        return self if not head.strip("/") else ObjectPath(f"{self.protocol}://{head}")

    def joinpath(self, *parts: str) -> ObjectPath:
        """This prefix with ``parts`` appended, ``/``-separated."""
        return ObjectPath("/".join([self.url, *(str(part).strip("/") for part in parts)]))

    def __truediv__(self, part: str) -> ObjectPath:
        return self.joinpath(part)

    def with_name(self, name: str) -> ObjectPath:
        """A sibling with another last component."""
        return self.parent / name

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.url == self.url

    def __lt__(self, other: ObjectPath) -> bool:
        return self.url < other.url

    def __hash__(self) -> int:
        return hash(("ObjectPath", self.url))

    # -- reading -----------------------------------------------------------------------------

    def _fs(self) -> Any:
        return filesystem(self.protocol, self.url)

    def _info(self, operation: str) -> dict[str, Any] | None:
        fs = self._fs()
        try:
            with storage_errors(operation, self):
                return dict(fs.info(self.url))
        except FileNotFoundError as error:
            if getattr(error, "missing_bucket", False):
                raise
            return None

    def exists(self) -> bool:
        """True when an object, or any object under this prefix, exists."""
        return self._info("look up") is not None

    def is_file(self) -> bool:
        """True when an object is stored under exactly this key."""
        info = self._info("look up")
        return info is not None and info.get("type") == "file"

    def is_dir(self) -> bool:
        """True when objects are stored under this prefix (or it is a bucket)."""
        info = self._info("look up")
        return info is not None and info.get("type") == "directory"

    def iterdir(self) -> Iterator[ObjectPath]:
        """The objects and prefixes directly under this prefix."""
        fs = self._fs()
        try:
            with storage_errors("list", self):
                entries = fs.ls(self.url, detail=False)
        except FileNotFoundError as error:
            if getattr(error, "missing_bucket", False):
                raise
            return iter(())
        names = sorted({posixpath.basename(str(entry).rstrip("/")) for entry in entries})
        return iter([self / name for name in names if name])

    def size(self) -> int | None:
        """The object's size in bytes; None when no object is stored under this key."""
        info = self._info("look up")
        if info is None or info.get("type") != "file":
            return None
        return int(info.get("size") or 0)

    def read_bytes(self) -> bytes:
        """The object's bytes."""
        fs = self._fs()
        with storage_errors("read", self):
            return bytes(fs.cat_file(self.url))

    def read_text(self, encoding: str = "utf-8") -> str:
        """The object's bytes decoded."""
        return self.read_bytes().decode(encoding)

    @contextlib.contextmanager
    def open_binary(self) -> Iterator[IO[bytes]]:
        """A readable binary stream of the object (for hashing large files in chunks)."""
        fs = self._fs()
        with storage_errors("read", self), fs.open(self.url, "rb") as handle:
            yield handle

    def mtime(self) -> float:
        """The object's modification time, seconds since the epoch (0.0 when unknown)."""
        info = self._info("look up") or {}
        for key in ("mtime", "LastModified", "last_modified", "created"):
            value = info.get(key)
            if isinstance(value, datetime):
                return value.timestamp()
            if isinstance(value, (int, float)):
                return float(value)
        return 0.0

    # -- writing -----------------------------------------------------------------------------

    def write_bytes(self, data: bytes) -> None:
        """Store ``data`` under this key in one request (atomic per object)."""
        fs = self._fs()
        with storage_errors("write", self):
            fs.pipe_file(self.url, data)

    def upload(self, source: Path) -> None:
        """Store the local file ``source`` under this key."""
        fs = self._fs()
        with storage_errors("write", self):
            fs.put_file(str(source), self.url)

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object."""
        fs = self._fs()
        try:
            with storage_errors("delete", self):
                fs.rm_file(self.url)
        except FileNotFoundError as error:
            if not missing_ok or getattr(error, "missing_bucket", False):
                raise

    def remove_tree(self) -> None:
        """Delete every object under this prefix (nothing when there is none)."""
        fs = self._fs()
        try:
            with storage_errors("delete", self):
                fs.rm(self.url, recursive=True)
        except FileNotFoundError as error:
            if getattr(error, "missing_bucket", False):
                raise


def _bucket_missing(location: ObjectPath, error: BaseException) -> bool:
    """Whether ``error`` (a FileNotFoundError) means the bucket itself does not exist."""
    text = str(error).lower()
    if "bucket" in text and ("not exist" in text or "nosuchbucket" in text):
        return True
    if location.protocol in ("memory", "file", "local"):
        return False
    try:
        filesystem(location.protocol, location.url).info(f"{location.protocol}://{location.bucket}")
    except FileNotFoundError:
        return True
    except Exception:  # denied, offline...: the original error says more
        return False
    return False


@contextlib.contextmanager
def storage_errors(operation: str, location: ObjectPath) -> Iterator[None]:
    """Re-raise a storage failure naming the bucket and the operation that failed.

    A missing bucket becomes a :class:`FileNotFoundError` with ``missing_bucket = True``; denied
    access a :class:`PermissionError`. A missing object (FileNotFoundError) passes unchanged.
    """
    try:
        yield
    except PermissionError as error:
        raise PermissionError(
            f"access denied to bucket {location.bucket!r}: cannot {operation} {location.url} "
            f"({error}); check the credentials (AWS_* variables or profile) and the bucket's "
            f"policy"
        ) from error
    except FileNotFoundError as error:
        if getattr(error, "missing_bucket", False) or not _bucket_missing(location, error):
            raise
        missing = FileNotFoundError(
            f"bucket {location.bucket!r} does not exist: cannot {operation} {location.url}; "
            f"create the bucket or fix the URL"
        )
        missing.missing_bucket = True  # type: ignore[attr-defined]
        raise missing from error


Location = Union[Path, ObjectPath]  # noqa: UP007 (a runtime alias, Python 3.10 compatible)


def open_binary(path: Location) -> contextlib.AbstractContextManager[IO[bytes]]:
    """``open(path, "rb")`` for a local path, a streamed reader for an object."""
    if isinstance(path, ObjectPath):
        return path.open_binary()
    return open(path, "rb")


def mtime(path: Location) -> float:
    """Modification time (seconds since the epoch) of a local file or an object."""
    return path.mtime() if isinstance(path, ObjectPath) else path.stat().st_mtime


__all__ = ["Location", "ObjectPath", "as_location", "is_url", "mtime", "open_binary"]
