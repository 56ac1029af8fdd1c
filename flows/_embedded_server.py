"""The run's own temporary Prefect server, and the lock that lets runs on one Prefect home take
turns.

:func:`embedded_server` starts the temporary server itself, as the first thing a run does, so that
its start (Python imports, then database migrations: ~12 s of CPU with a new database) overlaps
the run's own imports and checks instead of following them. It serves the same app as Prefect's
temporary server (``create_app(ephemeral=True)``: no UI, only the services a temporary server
runs) and points ``PREFECT_API_URL`` at it for this run only. The environment defaults of such
runs are in :mod:`flows.prefect_env`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from flows.prefect_env import (
    EMBEDDED_API_URL,
    STARTUP_TIMEOUT_SECONDS,
    prefect_home,
    server_configured,
)

SERVER_LOG = "cl-curriculum-server.log"
"""The temporary server's output, in the Prefect home (replaced by each run)."""
DATABASE_FILE = "prefect.db"


@contextlib.contextmanager
def one_embedded_server_at_a_time(on_wait: Callable[[str], None]) -> Iterator[None]:
    """Let runs that would start an embedded server on the same Prefect home take turns.

    Each embedded run starts its own temporary server on ``$PREFECT_HOME/prefect.db``; two of
    them on one SQLite file at once race for its write lock (migrations, run records), and a
    run can fail on "database is locked". So a run holds an exclusive lock on
    ``$PREFECT_HOME/cl-curriculum-run.lock`` (released by the OS if the process dies) and a
    second run waits, telling the user why (``on_wait``). With a Prefect server configured the
    server serialises its database and runs go ahead at once.
    """
    if server_configured(os.environ):
        yield
        return
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "cl-curriculum-run.lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(
                f"waiting for another run that uses the embedded Prefect server of {home} "
                "(runs with a Prefect server, PREFECT_API_URL, run side by side)"
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# The run's own temporary server
# --------------------------------------------------------------------------------------------


class EmbeddedServerError(RuntimeError):
    """The temporary Prefect server did not start (the message names its log file)."""


@dataclass(frozen=True)
class EmbeddedServer:
    """A run's temporary Prefect server, started by :func:`embedded_server`.

    Attributes
    ----------
    api_url : str or None
        ``http://127.0.0.1:PORT/api``; None when a configured server is used instead.
    process : subprocess.Popen or None
        The server process.
    log_path : Path or None
        Its output (:data:`SERVER_LOG` in the Prefect home).
    """

    api_url: str | None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    used: threading.Event = field(default_factory=threading.Event, compare=False)

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Block until the server answers ``/health``; return at once without a server.

        Raises
        ------
        EmbeddedServerError
            The server exited, or did not answer within ``timeout`` seconds.
        """
        self.used.set()
        if self.api_url is None or self.process is None:
            return
        deadline = time.monotonic() + timeout
        while not _healthy(self.api_url, timeout=1.0):
            if self.process.poll() is not None:
                raise EmbeddedServerError(self._failure(f"exited (code {self.process.returncode})"))
            if time.monotonic() > deadline:
                raise EmbeddedServerError(self._failure(f"did not answer within {timeout:.0f} s"))
            time.sleep(0.05)

    def _failure(self, what: str) -> str:
        tail = ""
        if self.log_path is not None and self.log_path.exists():
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            tail = f"; last line: {lines[-1].strip()}" if lines else ""
        return f"the temporary Prefect server {what}; its log is {self.log_path}{tail}"


def _healthy(api_url: str, timeout: float) -> bool:
    """Whether ``GET {api_url}/health`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):  # refused, reset, timed out (queued, still starting)
        return False


@contextlib.contextmanager
def embedded_server() -> Iterator[EmbeddedServer]:
    """Start this run's temporary Prefect server now; stop it when the block exits.

    Without a configured server (:func:`server_configured`) every run starts a temporary one.
    Prefect starts it on the run's first API call and waits for it; this starts it at once, in
    the background, so the run's own imports and checks overlap its start. Call
    :meth:`EmbeddedServer.wait_until_ready` before the first flow.

    The server listens on a free port of 127.0.0.1 (a socket bound here and handed over, so no
    other process can take the port in between); inside the block ``PREFECT_API_URL`` (and, if
    Prefect is already imported, its settings) name it and ``PREFECT_UI_URL`` is empty (the
    temporary server has no UI). The server stops when the block exits, also on Ctrl-C or an
    error, and by itself if this process dies (it watches its stdin pipe). Use it inside
    :func:`one_embedded_server_at_a_time`: two servers on one database would race.

    With a configured server nothing is started and the yielded object's ``api_url`` is None.
    """
    if server_configured(os.environ) or _settings_api_url():
        yield EmbeddedServer(api_url=None)
        return
    home = prefect_home()
    fresh = not (home / DATABASE_FILE).exists()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / SERVER_LOG
    with _listening_socket() as listener, open(log_path, "wb") as log:
        port = listener.getsockname()[1]
        process = _launch_server(listener, log)
    server = EmbeddedServer(f"http://127.0.0.1:{port}/api", process, log_path)
    graceful = 1.0  # seconds to finish a shutdown; a run that failed (a typo: exit 2) waits less
    try:
        with _api_url_set(str(server.api_url)):
            try:
                yield server
                graceful = 5.0
            finally:
                _send_pending_logs_and_events()
    finally:
        stop_server(process, timeout=graceful)
        if fresh and not server.used.is_set():
            # The block ended before any run used the server (bad input found by the checks it
            # overlapped): leave no database behind, as if it had never started.
            _remove_database(home)


def _remove_database(home: Path) -> None:
    for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm", SERVER_LOG):
        with contextlib.suppress(FileNotFoundError):
            (home / name).unlink()


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


def _send_pending_logs_and_events(timeout: float = 5.0) -> None:
    """Deliver the run's queued API logs and events while the server still listens.

    Prefect sends them from background workers that otherwise drain at interpreter exit, after
    the server has stopped ("Error logging to API"); Prefect's own temporary test server
    (``prefect_test_harness``) drains them the same way before it stops.
    """
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)


def _listening_socket() -> socket.socket:
    """A TCP socket listening on a free port of 127.0.0.1 (connections queue until served)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


SERVER_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Saving block types into a new database is ~1 s of the start; runs here save no blocks
    # (task results go to a path), and a later `prefect server start` on this home adds them.
    "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    # Automations (triggers and their actions) cannot exist on a server that lives for one run;
    # without these services the server does not evaluate every event of the run against none.
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}
"""Settings of the temporary server (the user's own values of them win)."""


def _server_environment() -> dict[str, str]:
    """This process's environment without any API or UI URL, plus :data:`SERVER_DEFAULTS`."""
    hidden = {"PREFECT_API_URL", "PREFECT_UI_URL", EMBEDDED_API_URL}
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    for key, value in SERVER_DEFAULTS.items():
        env.setdefault(key, value)
    return env


def _launch_server(listener: socket.socket, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Run :func:`serve` on ``listener`` in a new Python process (stdin: the parent-alive pipe).

    The process gets its own session, so a Ctrl-C meant for the run does not reach it.
    """
    fd = listener.fileno()
    return subprocess.Popen(
        [sys.executable, "-m", "flows._embedded_server", str(fd)],
        pass_fds=(fd,),
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_server_environment(),
        # Ctrl-C in a terminal signals the whole foreground group: the server must outlive the
        # run's own handling of it (marking the flow run crashed) and stop after, from here.
        start_new_session=True,
    )


def stop_server(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop the server: SIGTERM (a graceful shutdown), SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdin is not None:
        process.stdin.close()


@contextlib.contextmanager
def _api_url_set(api_url: str) -> Iterator[None]:
    """``PREFECT_API_URL`` = ``api_url`` and no UI URL, in the environment and Prefect's settings."""
    updates = {"PREFECT_API_URL": api_url, EMBEDDED_API_URL: api_url, "PREFECT_UI_URL": ""}
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        with _prefect_settings_updated(api_url):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _prefect_settings_updated(api_url: str) -> Iterator[None]:
    """Prefect reads the environment once, on import: if it is imported already, tell it too."""
    if "prefect.settings" not in sys.modules:
        yield
        return
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_UI_URL: ""}):
        yield


def serve(fd: int) -> None:
    """Serve Prefect's temporary-server app on the listening socket ``fd`` (the server process).

    The app is Prefect's public ``create_app(ephemeral=True)``, the one Prefect's own temporary
    server runs; uvicorn serves it on the inherited socket. The process stops on SIGTERM and
    when its stdin reaches end of file (the run that started it has exited, even if killed).
    """
    threading.Thread(target=_stop_when_stdin_closes, daemon=True).start()
    import uvicorn
    from prefect.server.api.server import create_app

    listener = socket.socket(fileno=fd)
    config = uvicorn.Config(create_app(ephemeral=True, final=True), log_level="error")
    uvicorn.Server(config).run(sockets=[listener])


def _stop_when_stdin_closes() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)


def _main(argv: list[str]) -> Any:
    """``python -m flows._embedded_server FD``: :func:`serve` (used by :func:`embedded_server`)."""
    if len(argv) != 1 or not argv[0].isdigit():
        raise SystemExit("usage: python -m flows._embedded_server FD  (a listening socket)")
    return serve(int(argv[0]))


if __name__ == "__main__":
    _main(sys.argv[1:])
