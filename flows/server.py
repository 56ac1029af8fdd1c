"""The run's temporary Prefect server: Prefect's own ``prefect server start`` in a child process.

Without a configured server (``PREFECT_API_URL``, see :func:`flows.prefect_env.server_configured`)
a run starts ``python -m prefect server start --host 127.0.0.1 --port PORT`` on the project-local
Prefect home as the first thing it does, so that the server's start (imports, then database
migrations: ~12 s of CPU with a new database) overlaps the run's own imports and checks, and
points ``PREFECT_API_URL`` at it. The server runs with the settings of :data:`SERVER_SETTINGS`
(Prefect's temporary server has the same: no UI, no services that watch deployments or workers),
its output goes to :data:`SERVER_LOG` in the Prefect home, and the run waits for ``/api/health``
before its first flow.

A server that a flow used stops when the interpreter exits, after Prefect's own background
workers have delivered the run's last logs and events (they drain in the interpreter's thread
shutdown, before ``atexit``), as Prefect's own temporary server does. One that no flow used (bad
input found by the checks it overlapped) stops at once, and a database it created is removed.
It also stops if the run's process dies (``PR_SET_PDEATHSIG`` on Linux), and it has its own
session, so a Ctrl-C meant for the run does not reach it.

Runs that share a Prefect home take turns: two servers on one SQLite file race for its write
lock, so a run holds an exclusive lock on ``$PREFECT_HOME/cl-curriculum-run.lock`` (released by
the OS if the process dies) while its server runs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flows.prefect_env import (
    EMBEDDED_API_URL,
    STARTUP_TIMEOUT_SECONDS,
    prefect_home,
    server_configured,
)

SERVER_LOG = "cl-curriculum-server.log"
"""The temporary server's output, in the Prefect home (replaced by each run)."""
DATABASE_FILE = "prefect.db"
LOCK_FILE = "cl-curriculum-run.lock"

SERVER_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    # Saving block types into a new database is ~1 s of the start; runs here save no blocks
    # (task results go to a path), and a later `prefect server start` on this home adds them.
    "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    # A server that lives for one run schedules no deployments, watches no workers or leases
    # and evaluates no automations.
    **{
        f"PREFECT_SERVER_SERVICES_{service}_ENABLED": "false"
        for service in (
            "SCHEDULER",
            "LATE_RUNS",
            "FOREMAN",
            "CANCELLATION_CLEANUP",
            "PAUSE_EXPIRATIONS",
            "REPOSSESSOR",
            "CLEANUP_RECONCILER",
            "TRIGGERS",
        )
    },
}
"""Settings of the temporary server (the user's own values of them win)."""


class ServerError(RuntimeError):
    """The temporary Prefect server did not start (the message names its log file)."""


@dataclass
class TemporaryServer:
    """A run's temporary Prefect server (:func:`temporary_server`).

    ``api_url`` is ``http://127.0.0.1:PORT/api``, or None when a configured server is used;
    ``used`` is set by :meth:`wait_until_ready` (a flow is about to run on it).
    """

    api_url: str | None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    used: bool = False

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Block until the server answers ``/health``; return at once without a server.

        Raises
        ------
        ServerError
            The server exited, or did not answer within ``timeout`` seconds.
        """
        self.used = True
        if self.process is None:
            return
        deadline = time.monotonic() + timeout
        while not _healthy(f"{self.api_url}/health"):
            if self.process.poll() is not None:
                raise ServerError(self._failure(f"exited (code {self.process.returncode})"))
            if time.monotonic() > deadline:
                raise ServerError(self._failure(f"did not answer within {timeout:.0f} s"))
            time.sleep(0.05)

    def _failure(self, what: str) -> str:
        log = self.log_path.read_text(errors="replace") if self.log_path else ""
        last = log.strip().rsplit("\n", 1)[-1].strip()
        tail = f"; last line: {last}" if last else ""
        return f"the temporary Prefect server {what}; its log is {self.log_path}{tail}"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):  # refused, reset, timed out (still starting)
        return False


_current: TemporaryServer | None = None
"""The server of this process once a flow used it (it runs until the interpreter exits)."""


@contextlib.contextmanager
def temporary_server(on_wait: Callable[[str], None]) -> Iterator[TemporaryServer]:
    """Start this run's temporary Prefect server now, in the background (see the module).

    Inside the block ``PREFECT_API_URL`` (and Prefect's settings, if Prefect is imported) name
    the server and ``PREFECT_UI_URL`` is empty; call :meth:`TemporaryServer.wait_until_ready`
    before the first flow. ``on_wait`` is told when another run on the same Prefect home goes
    first. With a configured server nothing is started and ``api_url`` is None; a later run of
    the same process reuses the server an earlier run started.
    """
    if server_configured(os.environ) or _settings_api_url():
        yield TemporaryServer(api_url=None)
        return
    if _current is not None:
        with _api_url_set(str(_current.api_url)):
            yield _current
        return
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    lock = take_turns(home, on_wait)
    fresh = not (home / DATABASE_FILE).exists()
    server = _start(home)
    try:
        with _api_url_set(str(server.api_url)):
            yield server
    finally:
        if server.used:
            _keep_until_exit(server, lock)
        else:  # the checks it overlapped failed: as if it had never started
            names = (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm", SERVER_LOG)
            _stop(server, lock, 1.0, tuple(home / name for name in names) if fresh else ())


def take_turns(home: Path, on_wait: Callable[[str], None]) -> IO[bytes]:
    """An exclusive lock on the home's lock file (waits, saying why, while another run holds it)."""
    handle = open(home / LOCK_FILE, "a+b")  # noqa: SIM115 (held until the server stops)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        on_wait(
            f"waiting for another run that uses the temporary Prefect server of {home} "
            "(runs with a Prefect server, PREFECT_API_URL, run side by side)"
        )
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _keep_until_exit(server: TemporaryServer, lock: IO[bytes]) -> None:
    global _current
    _current = server
    atexit.register(_stop, server, lock, 5.0)


def _stop(
    server: TemporaryServer, lock: IO[bytes], timeout: float, leftovers: tuple[Path, ...] = ()
) -> None:
    """SIGTERM (a graceful shutdown), SIGKILL after ``timeout`` seconds; remove ``leftovers``;
    release the lock."""
    process = server.process
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for path in leftovers:
        path.unlink(missing_ok=True)
    lock.close()


def _settings_api_url() -> str | None:
    """``PREFECT_API_URL`` of Prefect's active settings context, when Prefect is imported.

    A test harness (``prefect_test_harness``) or ``temporary_settings`` sets the API URL in the
    settings context rather than the environment; such a server counts as configured.
    """
    if "prefect.settings" not in sys.modules:
        return None
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url and url != os.environ.get(EMBEDDED_API_URL) else None


def server_environment() -> dict[str, str]:
    """The server's environment: this one without any API or UI URL, plus
    :data:`SERVER_SETTINGS` where the user did not set them."""
    hidden = {"PREFECT_API_URL", "PREFECT_UI_URL", EMBEDDED_API_URL}
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    return {**SERVER_SETTINGS, **env}


def _start(home: Path) -> TemporaryServer:
    with socket.socket() as probe:  # a free port (the server checks it again before binding)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "prefect", "server", "start"]
    log_path = home / SERVER_LOG
    with open(log_path, "wb") as log:
        process = start_child([*command, "--host", "127.0.0.1", "--port", str(port)], log)
    return TemporaryServer(f"http://127.0.0.1:{port}/api", process, log_path)


def start_child(command: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``command`` with :func:`server_environment`, output to ``log``, in its own session (a
    Ctrl-C for the run does not reach it), stopped with SIGTERM if the thread that started it
    (the run's) dies first (Linux)."""
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_environment(),
        start_new_session=True,
        preexec_fn=_die_with_parent() if sys.platform.startswith("linux") else None,
    )


def _die_with_parent() -> Callable[[], None]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not in the forked child
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return in_child


@contextlib.contextmanager
def _api_url_set(api_url: str) -> Iterator[None]:
    """``PREFECT_API_URL`` = ``api_url`` and no UI URL, in the environment and Prefect's settings."""
    updates = {"PREFECT_API_URL": api_url, EMBEDDED_API_URL: api_url, "PREFECT_UI_URL": ""}
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        if "prefect.settings" in sys.modules:  # Prefect read the environment on import: tell it
            from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_UI_URL: ""}):
                yield
        else:
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
