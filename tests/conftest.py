"""Session-wide test settings: offline, headless, and a throwaway Prefect home.

Environment defaults are set before any test module imports Prefect, Hugging Face or matplotlib.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

_PREFECT_HOME = tempfile.mkdtemp(prefix="cl-curriculum-prefect-")
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MPLBACKEND": "Agg",
    "PREFECT_HOME": _PREFECT_HOME,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests on machines without CUDA (torch is only imported if such tests exist)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator; every random test input comes from a seed."""
    return np.random.default_rng(12345)


# --------------------------------------------------------------------------------------------
# A real S3-compatible server (moto in server mode, its own process on 127.0.0.1)
# --------------------------------------------------------------------------------------------


def start_moto_server(env: dict[str, str] | None = None) -> tuple[Any, str]:
    """Start ``python -m moto.server`` on a free port of 127.0.0.1; (process, endpoint URL)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

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
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def use_s3_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str, key: str, secret: str) -> None:
    """Point every S3 client of this process (and of processes it starts) at ``endpoint``."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    missing = os.path.join(tempfile.gettempdir(), "cl-no-such-aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)  # the machine's own profiles stay out
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # clients are cached per process


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint of a moto S3 server shared by the session."""
    process, endpoint = start_moto_server()
    yield endpoint
    stop_server(process)


@pytest.fixture
def s3_bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket on the session's S3 server (this process points at it); its name."""
    import uuid

    import fsspec
    import s3fs

    use_s3_endpoint(monkeypatch, moto_server, "testing", "testing")
    name = f"cl-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(f"s3://{name}")
    yield name
    s3fs.S3FileSystem.clear_instance_cache()
