"""One writer per shard across processes: a :class:`filelock.FileLock` per name (local stores).

The locks are ``flock`` s on files in the sibling folder ``<store>.locks``. The operating system
releases an ``flock`` when its holder exits, however it exits, so the shard of a killed writer is
free again at once; the lock files themselves stay (every process locks the same file). Stores at
fsspec URLs and zarr ``Store`` objects are not locked: a lock that is always free is returned.
filelock is imported when a lock is taken, so ``import cl_core.store`` stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cl_core.io import as_location, is_url

if TYPE_CHECKING:
    from filelock import FileLock


class StoreLock:
    """A held lock (or, for stores that are not local directories, a placeholder guarding nothing).

    Use as a context manager or call :meth:`release`; releasing twice is harmless.
    """

    def __init__(self, lock: FileLock | None) -> None:
        self._lock = lock

    @property
    def path(self) -> Path | None:
        """The lock file; None for a store that is not locked."""
        return None if self._lock is None else Path(self._lock.lock_file)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StoreLock({str(self.path) if self.path else 'unlocked store'!r})"


def _file_lock(location: Any, name: int | str) -> FileLock | None:
    """The lock ``name`` of a local store (in ``<store>.locks``); None for URLs and Store objects."""
    if not isinstance(location, (str, os.PathLike)) or is_url(location):
        return None
    from filelock import FileLock

    folder = Path(os.path.normpath(os.path.abspath(str(as_location(location)))) + ".locks")
    folder.mkdir(parents=True, exist_ok=True)
    file_name = f"shard-{name}.lock" if isinstance(name, int) else f"{name}.lock"
    # thread_local=False: a shard's lock is released by the writer thread that wrote the shard.
    return FileLock(folder / file_name, thread_local=False)


def try_lock(location: Any, name: int | str) -> StoreLock | None:
    """Take the lock ``name`` of the store at ``location`` if it is free; None while it is held."""
    lock = _file_lock(location, name)
    if lock is None:
        return StoreLock(None)
    from filelock import Timeout

    try:
        lock.acquire(blocking=False)
    except Timeout:
        return None
    return StoreLock(lock)


def wait_lock(location: Any, name: int | str, poll_s: float = 0.2) -> StoreLock:
    """Wait for and take the lock ``name`` of the store at ``location``."""
    lock = _file_lock(location, name)
    if lock is not None:
        lock.acquire(poll_interval=poll_s)
    return StoreLock(lock)
