"""A real S3-compatible server for the tests: moto in server mode, its own process on 127.0.0.1,
and the environment that points every S3 client (s3fs, boto3, subprocesses) at it.

A plain module (not a conftest) so that any test can import it: ``from s3_server import ...``
(``tests/`` is on ``sys.path`` because the root conftest lives there).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import pytest


def start_moto_server(env: dict[str, str] | None = None) -> tuple[Any, str]:
    """Start ``python -m moto.server`` on a free port of 127.0.0.1; (process, endpoint URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return process, endpoint
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto server did not start on {endpoint}") from None
            time.sleep(0.1)


def stop_server(process: Any) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def use_s3_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str, key: str, secret: str) -> None:
    """Point every S3 client of this process (and of processes it starts) at ``endpoint``."""
    import s3fs  # on use: every test session loads this module through the root conftest

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    missing = os.path.join(tempfile.gettempdir(), "cl-no-such-aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)  # the machine's own profiles stay out
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # clients are cached per process
