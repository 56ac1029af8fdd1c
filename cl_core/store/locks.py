"""Lock files: one writer per shard across processes (local stores).

A lock is a file created with ``O_CREAT | O_EXCL`` in the sibling folder ``<store>.locks``,
holding the writer's pid, host and process start time; a lock whose process is gone is stale and
taken over (serialised by ``flock`` so two processes never both take it). Stores at fsspec URLs
and zarr ``Store`` objects are not locked (a lock that is always free is returned).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class StoreLock:
    """A held lock file (or, for non-local stores, a placeholder that guards nothing).

    Use as a context manager or call :meth:`release`; releasing twice is harmless, and a lock
    taken over by another process (after this one was presumed dead) is left alone.
    """

    def __init__(self, path: Path | None, token: str) -> None:
        self.path = path
        self.token = token
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            if self.path.read_text() == self.token:
                self.path.unlink()
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()  # only succeeds once no lock is left

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StoreLock({str(self.path) if self.path else 'unlocked store'!r})"


def _lock_dir(location: Any) -> Path | None:
    """``<store>.locks`` next to a local store; None for URLs and zarr Store objects."""
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if not isinstance(location, str):
        return None
    if location.startswith("file://"):
        location = location.removeprefix("file://")
    elif "://" in location:
        return None
    return Path(os.path.normpath(os.path.abspath(location)) + ".locks")


def _process_start(pid: int) -> str:
    """Start time of process ``pid`` (Linux ``/proc``), to tell a reused pid apart; "" elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def _holder_alive(token: str, age_s: float) -> bool:
    """Whether the process named in a lock file's ``token`` may still hold it."""
    parts = token.split()
    if len(parts) < 2:
        return age_s < 60  # a lock being written right now; empty for a minute = abandoned
    pid, host = int(parts[0]), parts[1]
    if host != socket.gethostname():
        return True  # cannot tell from here; remove the lock file by hand if its host is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = parts[2] if len(parts) > 2 else ""
    return not started or _process_start(pid) in ("", started)


def _try_lock(location: Any, name: int | str) -> StoreLock | None:
    folder = _lock_dir(location)
    if folder is None:
        return StoreLock(None, "")
    pid = os.getpid()
    token = f"{pid} {socket.gethostname()} {_process_start(pid)}\n"
    path = folder / (f"shard-{name}.lock" if isinstance(name, int) else f"{name}.lock")
    for _ in range(3):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        except FileNotFoundError:  # the folder was removed by a releasing process: again
            continue
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(token)
            return StoreLock(path, token)
        if not _take_over_stale(folder, path):
            return None
    return None


def _take_over_stale(folder: Path, path: Path) -> bool:
    """Remove ``path`` if its holder is gone; True when the caller should try again."""
    try:
        held = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True  # released meanwhile
    if _holder_alive(held, age):
        return False
    import fcntl

    # Serialise takeovers: two processes seeing the same stale lock must not both remove it
    # (the second would remove the first's fresh lock).
    with open(folder / ".takeover", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            if path.read_text() == held:
                path.unlink()
        except FileNotFoundError:
            pass
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
    return True


def _wait_lock(location: Any, name: int | str, poll_s: float = 0.2) -> StoreLock:
    while (lock := _try_lock(location, name)) is None:
        time.sleep(poll_s)
    return lock


@contextlib.contextmanager
def _held(location: Any, name: str) -> Iterator[StoreLock]:
    lock = _wait_lock(location, name)
    try:
        yield lock
    finally:
        lock.release()
