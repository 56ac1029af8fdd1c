"""Environment defaults for embedded Prefect runs; imported before anything imports prefect.

With no ``PREFECT_API_URL`` a flow run starts Prefect's ephemeral (temporary, in-process) server.
Three of its defaults do not suit a command-line tool, so we change them, but only with
``os.environ.setdefault``: whatever the user exported (a real server URL, their own home) wins.

- ``PREFECT_HOME`` -> ``<cwd>/.prefect``: the ephemeral database, result cache and logs stay with
  the project instead of the user's global ``~/.prefect``. Skipped when a server is configured,
  by ``PREFECT_API_URL`` in the environment or in the active profile of the user's own home
  (``prefect config set PREFECT_API_URL=...``): moving the home would hide that profile.
- ``PREFECT_SERVER_ANALYTICS_ENABLED=false``: the ephemeral server's startup telemetry otherwise
  races the run for the SQLite file and prints "database is locked" tracebacks.
- ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90``: creating a cold database takes ~15 s on
  a small machine, close to the 20 s default; a timeout there would fail the first run.

:func:`embedded_run_settings` additionally turns flow-run heartbeats off for runs on the ephemeral
server. Heartbeats let a server notice crashed runs of deployments; a temporary server dies with
the process, so there is nothing to notice, and in Prefect 3.8 every flow run waits up to a
second for its heartbeat thread to stop (about 0.7 s per stage flow, measured).

:func:`share_client_tls_context` makes Prefect's API clients share one TLS context (see there).
"""

from __future__ import annotations

import contextlib
import functools
import os
import ssl
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_SECONDS = 90


def embedded_defaults(
    cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment defaults for an embedded run (without applying them)."""
    env = os.environ if environ is None else environ
    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_SECONDS),
    }
    if not server_configured(env):
        defaults["PREFECT_HOME"] = str((cwd or Path.cwd()) / ".prefect")
    return defaults


def server_configured(environ: Mapping[str, str]) -> bool:
    """Whether ``PREFECT_API_URL`` is set in ``environ`` or in the active Prefect profile."""
    return bool(environ.get("PREFECT_API_URL") or profile_api_url(environ))


def profile_api_url(environ: Mapping[str, str]) -> str | None:
    """``PREFECT_API_URL`` of the active profile in ``profiles.toml``, read as Prefect would.

    The file is ``$PREFECT_PROFILES_PATH``, else ``$PREFECT_HOME/profiles.toml`` (home default
    ``~/.prefect``); the profile is ``$PREFECT_PROFILE``, else the file's ``active`` entry.
    """
    import tomllib

    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no profiles file, or one Prefect could not read either
        return None
    active = environ.get("PREFECT_PROFILE") or document.get("active")
    profile = document.get("profiles", {}).get(str(active), {})
    url = profile.get("PREFECT_API_URL") if isinstance(profile, dict) else None
    return str(url) if url else None


def configure_environment() -> None:
    """Apply :func:`embedded_defaults` to ``os.environ`` without overriding user settings."""
    for key, value in embedded_defaults().items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def embedded_run_settings() -> Iterator[None]:
    """Flow heartbeats off while no Prefect server is configured (and the user did not set them)."""
    if server_configured(os.environ) or "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in os.environ:
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


class _SharedContextSSL(types.ModuleType):
    """Stands in for the ``ssl`` module inside ``prefect.client.orchestration``.

    Everything is the real module's except ``create_default_context``, which returns one shared
    context per (CA file, its mtime) for the verified-client case that Prefect's clients use.
    Any other call (the insecure-skip-verify path, which mutates its context) gets a fresh one.
    """

    def __init__(self) -> None:
        super().__init__("ssl")

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        if purpose is ssl.Purpose.SERVER_AUTH and cafile and not capath and not cadata:
            return _verified_context(cafile, os.stat(cafile).st_mtime_ns)
        return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)


@functools.lru_cache(maxsize=4)
def _verified_context(cafile: str, mtime_ns: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def share_client_tls_context() -> bool:
    """Build the TLS context of Prefect's API clients once per process, not once per client.

    Prefect 3.8 parses certifi's CA bundle (``ssl.create_default_context(cafile=...)``, about
    25 ms of CPU on a small machine) in every ``PrefectClient`` / ``SyncPrefectClient`` it
    creates, even for a plain-HTTP API, and it creates one per subflow run and one per task run
    on a Dask worker. A verified context is immutable configuration and safe to share between
    clients and threads. Returns whether the hand-over is in place (False if Prefect's client
    module no longer has the layout this relies on; then nothing is changed).
    """
    import prefect.client.orchestration as orchestration

    current = getattr(orchestration, "ssl", None)
    if isinstance(current, _SharedContextSSL):
        return True
    if current is not ssl:
        return False
    orchestration.ssl = _SharedContextSSL()  # type: ignore[assignment]
    return True


configure_environment()
