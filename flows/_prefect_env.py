"""Environment defaults for embedded Prefect runs; imported before anything imports prefect.

With no ``PREFECT_API_URL`` a flow run starts Prefect's ephemeral (temporary, in-process) server.
Three of its defaults do not suit a command-line tool, so we change them, but only with
``os.environ.setdefault``: whatever the user exported (a real server URL, their own home) wins.

- ``PREFECT_HOME`` -> ``<cwd>/.prefect``: the ephemeral database, result cache and logs stay with
  the project instead of the user's global ``~/.prefect``. Skipped when ``PREFECT_API_URL`` is set,
  because then the user's profile (in their home) is what points at their server.
- ``PREFECT_SERVER_ANALYTICS_ENABLED=false``: the ephemeral server's startup telemetry otherwise
  races the run for the SQLite file and prints "database is locked" tracebacks.
- ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90``: creating a cold database takes ~15 s on
  a small machine, close to the 20 s default; a timeout there would fail the first run.

:func:`embedded_run_settings` additionally turns flow-run heartbeats off for runs on the ephemeral
server. Heartbeats let a server notice crashed runs of deployments; a temporary server dies with
the process, so there is nothing to notice, and in Prefect 3.8 every flow run waits up to a
second for its heartbeat thread to stop (about 0.7 s per stage flow, measured).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

STARTUP_TIMEOUT_SECONDS = 90


def embedded_defaults(
    cwd: Path | None = None, environ: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment defaults for an embedded run (without applying them)."""
    env = os.environ if environ is None else environ
    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_SECONDS),
    }
    if not env.get("PREFECT_API_URL"):
        defaults["PREFECT_HOME"] = str((cwd or Path.cwd()) / ".prefect")
    return defaults


def configure_environment() -> None:
    """Apply :func:`embedded_defaults` to ``os.environ`` without overriding user settings."""
    for key, value in embedded_defaults().items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def embedded_run_settings() -> Iterator[None]:
    """Flow heartbeats off while no Prefect server is configured (and the user did not set them)."""
    if os.environ.get("PREFECT_API_URL") or "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in os.environ:
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


configure_environment()
