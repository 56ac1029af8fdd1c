"""Session-wide test settings: offline, headless, and a throwaway Prefect home.

Environment defaults are set before any test module imports Prefect, Hugging Face or matplotlib.
Every test starts and ends with the project's per-process caches empty (:func:`_fresh_caches`),
and a test that needs a server fixture (Prefect's test server, the moto S3 server) is an
``integration`` test (:func:`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

# Made by the process that starts the session (pytest-xdist's workers inherit the variable) and
# removed when that process ends it (:func:`pytest_unconfigure`).
_OWN_PREFECT_HOME: str | None = None
if "PREFECT_HOME" not in os.environ:
    _OWN_PREFECT_HOME = os.environ["PREFECT_HOME"] = tempfile.mkdtemp(
        prefix="cl-curriculum-prefect-"
    )
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MPLBACKEND": "Agg",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from process_caches import clear_process_caches  # noqa: E402
from s3_server import start_moto_server, stop_server, use_s3_endpoint  # noqa: E402

# Session fixtures that start a server process: a test needing one (directly, through another
# fixture or `usefixtures`) is an integration test. Tests that start processes or Dask clusters
# themselves carry `@pytest.mark.integration` (or a module `pytestmark`) in their file.
SERVER_FIXTURES = frozenset({"prefect_server", "moto_server"})


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the throwaway Prefect home this process made (every session used to leave one
    in the temporary directory)."""
    if _OWN_PREFECT_HOME is not None:
        shutil.rmtree(_OWN_PREFECT_HOME, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests that need a server fixture `integration`; skip `gpu` tests on machines
    without CUDA (torch is only imported if such tests exist)."""
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)

    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


# --------------------------------------------------------------------------------------------
# Per-process caches: cleared before and after every test
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Every test starts and ends with empty per-process caches (models, memoised flows, Prefect
    blocks, the sweep sample, S3 clients): no test sees what an earlier one loaded."""
    clear_process_caches()
    yield
    clear_process_caches()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator; every random test input comes from a seed."""
    return np.random.default_rng(12345)


# --------------------------------------------------------------------------------------------
# A real S3-compatible server (moto in server mode, its own process on 127.0.0.1): s3_server.py
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint of a moto S3 server shared by the session."""
    process, endpoint = start_moto_server()
    yield endpoint
    stop_server(process)


@pytest.fixture
def s3_bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket on the session's S3 server (this process points at it); its name."""
    import uuid

    import fsspec

    use_s3_endpoint(monkeypatch, moto_server, "testing", "testing")
    name = f"cl-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(f"s3://{name}")
    return name
