"""Environment defaults of runs without a configured Prefect server, applied explicitly before
Prefect is imported, only with ``os.environ.setdefault``: whatever the user exported (a real
server URL, their own home) wins.

- ``PREFECT_HOME`` -> ``<cwd>/.prefect``: the temporary server's database, the result cache and
  logs stay with the project instead of the user's global ``~/.prefect``. Skipped when a server is
  configured, by ``PREFECT_API_URL`` in the environment or in the active profile of the user's own
  home (``prefect config set PREFECT_API_URL=...``): moving the home would hide that profile.
- ``PREFECT_SERVER_ANALYTICS_ENABLED=false``: a temporary server's startup telemetry otherwise
  races the run for the SQLite file and prints "database is locked" tracebacks.
- ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90``: for Prefect's own temporary server
  (``serve`` without a server); creating a cold database takes ~15 s on a small machine, close to
  the 20 s default.

:func:`embedded_run_settings` additionally turns flow-run heartbeats off for runs on a temporary
server. Heartbeats let a server notice crashed runs of deployments; a temporary server dies with
the process, so there is nothing to notice, and every flow run waits up to a second for its
heartbeat thread to stop (about 0.7 s per stage flow, measured in Prefect 3.8).

Nothing here runs at import time. The CLI's runs start their own temporary server
(:mod:`flows.server`) with these defaults.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

STARTUP_TIMEOUT_SECONDS = 90
EMBEDDED_API_URL = "CL_CURRICULUM_EMBEDDED_API_URL"
"""Set to ``PREFECT_API_URL`` while it names this run's own temporary server (not a user's)."""


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
    """Whether ``PREFECT_API_URL`` is set in ``environ`` or in the active Prefect profile.

    The URL of the run's own temporary server (:func:`flows.server.temporary_server`) does not
    count.
    """
    url = environ.get("PREFECT_API_URL")
    if url and url == environ.get(EMBEDDED_API_URL):
        return False
    return bool(url or profile_api_url(environ))


def profile_api_url(environ: Mapping[str, str]) -> str | None:
    """``PREFECT_API_URL`` of the active profile in ``profiles.toml``, read as Prefect would.

    The file is ``$PREFECT_PROFILES_PATH``, else ``$PREFECT_HOME/profiles.toml`` (home default
    ``~/.prefect``); the profile is ``$PREFECT_PROFILE``, else the file's ``active`` entry.
    """
    import tomllib

    home = prefect_home(environ)
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


def prefect_home(environ: Mapping[str, str] | None = None) -> Path:
    """The Prefect home a run uses (``$PREFECT_HOME``, default ``~/.prefect``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
