"""The pipeline with its work dir and output on object storage (a real S3-compatible server:
moto in server mode on 127.0.0.1, the real s3fs client), and the CLI's checks of where a run goes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.params import ClusterParams, CurriculumParams, DatasetParams, OutputParams

ROOT = Path(__file__).resolve().parents[2]


def _params(store: Path) -> dict[str, Any]:
    return {
        "dataset": DatasetParams(spec=f"zarr:{store}", name="blobs"),
        "clustering": ClusterParams(cluster_range=(2, 4)),
        "curriculum": CurriculumParams(warmup_iterations=50),
    }


def _run(params: dict[str, Any], work_dir: str, output_dir: str) -> Any:
    from flows.pipeline import curriculum_pipeline

    output = OutputParams(work_dir=work_dir, output_dir=output_dir, sweep_runner="threads")
    return curriculum_pipeline(**params, output=output)


@pytest.mark.usefixtures("prefect_server")
def test_a_run_on_s3_publishes_the_local_runs_version_and_reruns_from_its_cache(
    blob_store: Path, s3_bucket: str, tmp_path: Path
) -> None:
    from cl_core.sampler import load_curriculum

    params = _params(blob_store)
    local = _run(params, str(tmp_path / "runs"), str(tmp_path / "artifacts"))
    root = f"s3://{s3_bucket}"
    remote = _run(params, f"{root}/runs", f"{root}/artifacts")
    assert remote.version == local.version
    assert remote.artifact_path == f"{root}/artifacts/blobs/{local.version}"
    assert set(remote.task_states["sweep-sample"]) == {"Completed"}
    loaded = load_curriculum(f"{root}/artifacts/blobs/latest")
    np.testing.assert_array_equal(
        loaded.difficulty, load_curriculum(local.artifact_path).difficulty
    )
    again = _run(params, f"{root}/runs", f"{root}/artifacts")  # cache records live on S3 too
    assert again.version == local.version
    assert {state for states in again.task_states.values() for state in states} == {"Cached"}


def _refused_address() -> str:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_an_unreachable_dask_address_exits_2_naming_it_before_any_work(
    blob_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    address = _refused_address()
    work_dir = tmp_path / "runs"
    started = time.monotonic()
    result = CliRunner().invoke(
        app,
        ["run", f"zarr:{blob_store}", "--dask-address", address, "--work-dir", str(work_dir)],
    )
    assert time.monotonic() - started < 10
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0], result.stderr
    assert not work_dir.exists()  # nothing was started


def test_a_missing_bucket_exits_2_naming_it_and_the_operation(
    blob_store: Path, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(
        app,
        [
            "run",
            f"zarr:{blob_store}",
            "--work-dir",
            f"s3://{s3_bucket}/runs",
            "--output",
            "s3://cl-no-such-bucket-here/artifacts",
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cl-no-such-bucket-here" in lines[0], result.stderr
    assert "write" in lines[0]


@pytest.mark.integration
def test_an_s3_work_dir_without_s3fs_exits_2_naming_the_package(blob_store: Path) -> None:
    code = (
        "import sys; sys.modules['s3fs'] = None  # as if s3fs were not installed\n"
        "from flows.cli import main\n"
        f"main(['run', 'zarr:{blob_store}', '--work-dir', 's3://bucket/runs'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install s3fs" in lines[0], result.stderr


@pytest.mark.usefixtures("prefect_server")
def test_embedding_on_a_dask_cluster_into_an_s3_work_dir_publishes_the_local_version(
    pipeline_params: dict, pipeline_local_run: Any, s3_bucket: str
) -> None:
    """Worker processes (started after the S3 endpoint is set) embed their shards into the
    store on S3, fit and assign from it; the version is the single-process run's."""
    from cl_core.sampler import load_curriculum
    from cl_core.store import open_store
    from flows.pipeline import curriculum_pipeline
    from flows.runners import process_cluster

    root = f"s3://{s3_bucket}"
    with process_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        output = OutputParams(
            work_dir=f"{root}/runs",
            output_dir=f"{root}/artifacts",
            dask_address=cluster.scheduler_address,
        )
        result = curriculum_pipeline(**pipeline_params, output=output)
    assert result.version == pipeline_local_run.version
    store_path = f"{root}/runs/embeddings"
    stores = [path for path in _listing(store_path) if path.endswith(".zarr")]
    assert len(stores) == 1 and open_store(f"s3://{stores[0]}").is_complete
    loaded = load_curriculum(f"{root}/artifacts/tiny/latest")
    assert loaded.n_samples == 72


def _listing(url: str) -> list[str]:
    import fsspec

    return fsspec.filesystem("s3").ls(url, detail=False)
