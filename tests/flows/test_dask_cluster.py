"""The pipeline on a Dask cluster of worker processes over TCP (``dask_address``): embedding
shards, the k sweep, the fit and the assignment run on the workers, and the published version is
the single-process run's; a worker killed while it embeds a shard leaves a store the run
completes."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from distributed import WorkerPlugin

from flows.params import OutputParams

pytestmark = pytest.mark.usefixtures("prefect_server")


def _output(root: Path, **options: Any) -> OutputParams:
    return OutputParams(output_dir=str(root / "artifacts"), work_dir=str(root / "runs"), **options)


def _run(params: dict, output: OutputParams) -> Any:
    from flows.pipeline import curriculum_pipeline

    return curriculum_pipeline(**params, output=output)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two single-threaded worker processes behind a scheduler on 127.0.0.1 (TCP)."""
    from flows.runners import process_cluster

    with process_cluster(
        n_workers=2, threads_per_worker=1, processes=True, protocol="tcp", dashboard_address=None
    ) as started:
        yield started


def _finished(cluster: Any, prefix: str) -> int:
    """Tasks whose key starts with ``prefix`` that finished on the cluster's workers."""
    prefixes = cluster.scheduler.task_prefixes
    return sum(
        int(counts.state_counts["memory"] + counts.state_counts["released"])
        for name, counts in prefixes.items()
        if name.startswith(prefix)
    )


def test_embedding_sweep_fit_and_assignment_on_a_cluster_publish_the_same_version(
    cluster: Any, pipeline_local_run: Any, pipeline_params: dict, tmp_path: Path
) -> None:
    result = _run(pipeline_params, _output(tmp_path, dask_address=cluster.scheduler_address))
    assert result.version == pipeline_local_run.version
    assert result.task_states["embed-shard"] == ["Completed"] * 5
    assert _finished(cluster, "embed_shard_task") >= 5  # every shard on a worker
    assert _finished(cluster, "evaluate_ks_task") >= 4  # one task per k on a remote cluster
    assert _finished(cluster, "cluster_task") >= 1  # the fit on a worker
    assert _finished(cluster, "cl-assign") >= 1  # the assignment over row ranges


class KillOnce(WorkerPlugin):
    """Worker plugin: the first worker to start an embedding shard task dies 0.3 s later
    (SIGKILL, as an out-of-memory kill), once per marker file."""

    name = "kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish != "executing" or not str(key).startswith("embed_shard_task"):
            return
        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(descriptor)
        threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGKILL)).start()


def test_a_worker_killed_while_embedding_leaves_a_store_the_run_completes(
    cluster: Any, pipeline_local_run: Any, pipeline_params: dict, tmp_path: Path
) -> None:
    from distributed import Client

    from cl_core.store import open_store

    marker = tmp_path / "killed"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with Client(cluster) as client:
            client.register_plugin(KillOnce(str(marker)))
            try:
                started = time.monotonic()
                result = _run(
                    pipeline_params, _output(tmp_path, dask_address=cluster.scheduler_address)
                )
            finally:
                client.unregister_worker_plugin(KillOnce.name)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists()  # a worker did die mid-shard
    assert result.version == pipeline_local_run.version
    store = open_store(next((tmp_path / "runs" / "embeddings").glob("*.zarr")))
    assert store.is_complete and store.missing_shards() == []
    assert time.monotonic() - started < 60


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from flows.cli import app

    return CliRunner().invoke(app, ["run", *args, "--no-progress"])


def _version(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if " version " in line)
    return line.split(" version ", 1)[1].split(":", 1)[0]


def test_the_cli_fits_and_assigns_on_the_cluster_at_dask_address(
    cluster: Any, blob_store: Path, tmp_path: Path
) -> None:
    common = ["--k", "3", "--name", "blobs"]
    local = _cli(
        f"zarr:{blob_store}", *common, "--work-dir", str(tmp_path / "a"), "--output",
        str(tmp_path / "a-out"),
    )  # fmt: skip
    assert local.exit_code == 0, local.output
    fits, assigned = _finished(cluster, "cluster_task"), _finished(cluster, "cl-assign")
    remote = _cli(
        f"zarr:{blob_store}", *common, "--work-dir", str(tmp_path / "b"), "--output",
        str(tmp_path / "b-out"), "--dask-address", cluster.scheduler_address,
    )  # fmt: skip
    assert remote.exit_code == 0, remote.output
    assert _version(remote.stdout) == _version(local.stdout)
    assert _finished(cluster, "cluster_task") == fits + 1
    assert _finished(cluster, "cl-assign") > assigned


def test_gpus_without_a_visible_gpu_exits_2_before_any_work(
    blob_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    result = _cli(f"zarr:{blob_store}", "--gpus", "1", "--work-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    assert "--gpus 1: no CUDA GPU is visible" in result.stderr
    assert not (tmp_path / "runs").exists()
