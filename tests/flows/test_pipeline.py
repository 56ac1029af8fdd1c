"""The Prefect pipeline end to end on 72 generated images with a tiny random-weight encoder.

One clean run (module fixture) is shared by the tests that only read its files or add runs beside
it (caching, selective recomputation, the Dask sweep); a test that deletes or breaks files runs
in a work dir of its own. Task states come from the run result, which records the final state
the task engine returned for every task (``Cached`` or ``Completed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows.params import ClusterParams, CurriculumParams, DatasetParams, OutputParams

pytestmark = pytest.mark.usefixtures("prefect_server")

ALL_TASKS = {
    "create-store",
    "embed-shard",
    "finalize-store",
    "sweep-sample",
    "evaluate-ks",
    "fit-clusters",
    "difficulty",
    "schedule",
    "publish",
}


def _output(root: Path, runner: str = "threads", **options: Any) -> OutputParams:
    return OutputParams(
        output_dir=str(root / "artifacts"),
        work_dir=str(root / "runs"),
        sweep_runner=runner,
        **options,
    )


def _run(params: dict, output: OutputParams, **overrides: Any) -> Any:
    from flows.pipeline import curriculum_pipeline

    return curriculum_pipeline(**{**params, **overrides, "output": output})


def _states(result: Any) -> dict[str, set[str]]:
    return {name: set(states) for name, states in result.task_states.items()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def clean_run(prefect_server: None, pipeline_params: dict, workspace: Path) -> Any:
    return _run(pipeline_params, _output(workspace))


def test_clean_run_publishes_a_loadable_verified_artifact(clean_run: Any) -> None:
    from cl_core.artifacts import verify_artifact
    from cl_core.sampler import load_curriculum

    assert set(clean_run.task_states) == ALL_TASKS
    assert clean_run.count("Cached") == 0
    assert len(clean_run.task_states["embed-shard"]) == 5  # 72 rows in shards of 16
    assert clean_run.task_states["evaluate-ks"] == ["Completed"] * 2  # k = 2..5 in 2 groups
    manifest = verify_artifact(clean_run.artifact_path)
    assert manifest["n_samples"] == 72 and manifest["version"] == clean_run.version
    curriculum = load_curriculum(Path(clean_run.artifact_path).parent / "latest")
    assert curriculum.n_samples == 72
    assert curriculum.probabilities(0).sum() == pytest.approx(1.0)
    # the generated classes are well separated: the sweep finds them
    assert clean_run.n_clusters == 3 and clean_run.chosen_by == "davies_bouldin"


def test_clean_run_writes_report_and_plots_into_the_version(clean_run: Any) -> None:
    version_dir = Path(clean_run.artifact_path)
    for plot in ("sweep.png", "difficulty.png", "schedule.png", "samples.png"):
        assert (version_dir / plot).read_bytes()[:4] == b"\x89PNG", plot
    report = (version_dir / "report.md").read_text()
    assert clean_run.version in report
    assert "![" in report and "(samples.png)" in report
    assert Path(clean_run.report_path) == version_dir / "report.md"


def test_clean_run_shows_summary_tables_progress_and_link_in_prefect(clean_run: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    keys = ["tiny-summary", "tiny-k-sweep", "tiny-clusters", "tiny-embedding", "tiny-artifact"]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)),
            sort=ArtifactSort.CREATED_DESC,
        )
    by_key: dict[str, Any] = {}
    for artifact in found:  # newest first: other tests' runs named "tiny" may have made older ones
        by_key.setdefault(artifact.key, artifact)
    assert set(by_key) == set(keys)
    assert by_key["tiny-summary"].type == "markdown"
    assert clean_run.version in str(by_key["tiny-summary"].data)
    assert by_key["tiny-k-sweep"].type == "table"
    assert by_key["tiny-embedding"].type == "progress"
    assert float(by_key["tiny-embedding"].data) == pytest.approx(100.0)
    assert by_key["tiny-artifact"].type == "markdown"  # Prefect stores links as markdown
    assert Path(clean_run.artifact_path).as_uri() in str(by_key["tiny-artifact"].data)


def test_second_run_is_fully_cached(clean_run: Any, pipeline_params: dict, workspace: Path) -> None:
    again = _run(pipeline_params, _output(workspace))
    assert set(again.task_states) == ALL_TASKS
    assert _states(again) == {name: {"Cached"} for name in ALL_TASKS}
    assert again.version == clean_run.version
    assert again.artifact_path == clean_run.artifact_path


def test_changing_pacing_recomputes_only_schedule_and_publish(
    clean_run: Any, pipeline_params: dict, workspace: Path
) -> None:
    cosine = pipeline_params["curriculum"].model_copy(update={"pacing": "cosine"})
    changed = _run(pipeline_params, _output(workspace), curriculum=cosine)
    states = _states(changed)
    assert states.pop("schedule") == {"Completed"}
    assert states.pop("publish") == {"Completed"}
    assert states == {name: {"Cached"} for name in ALL_TASKS - {"schedule", "publish"}}
    assert changed.version != clean_run.version
    from cl_core.sampler import load_curriculum

    assert load_curriculum(changed.artifact_path).pacing == "cosine"
    assert load_curriculum(clean_run.artifact_path).pacing == "linear"  # earlier one untouched


def test_cache_record_without_its_file_recomputes(pipeline_params: dict, tmp_path: Path) -> None:
    first = _run(pipeline_params, _output(tmp_path))  # its own work dir: it deletes files
    difficulty_files = list((tmp_path / "runs" / "difficulty").glob("*.npy"))
    assert difficulty_files
    for path in difficulty_files:
        path.unlink()
    rerun = _run(pipeline_params, _output(tmp_path))
    assert rerun.task_states["difficulty"] == ["Completed"]  # the record alone is not trusted
    assert rerun.task_states["schedule"] == ["Cached"]
    assert rerun.version == first.version


def test_failed_shard_then_rerun_resumes_and_matches_a_clean_run(
    clean_run: Any,
    pipeline_params: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cl_core.embed
    from cl_core.store import open_store

    real_embed_shards = cl_core.embed.embed_shards

    def failing_on_shard_2(store: Any, dataset: Any, config: Any, shards: Any = None, **kw: Any):
        if 2 in list(shards or []):
            raise RuntimeError("injected failure in shard 2")
        return real_embed_shards(store, dataset, config, shards, **kw)

    monkeypatch.setattr(cl_core.embed, "embed_shards", failing_on_shard_2)
    output = _output(tmp_path, shard_retries=0)
    with pytest.raises(RuntimeError, match="injected failure in shard 2"):
        _run(pipeline_params, output)
    stores = list((tmp_path / "runs" / "embeddings").glob("*.zarr"))
    assert len(stores) == 1
    assert open_store(stores[0]).missing_shards() == [2]
    assert not (tmp_path / "artifacts").exists()  # nothing partial was published

    monkeypatch.setattr(cl_core.embed, "embed_shards", real_embed_shards)
    resumed = _run(pipeline_params, output)
    assert sorted(resumed.task_states["embed-shard"]) == ["Cached"] * 4 + ["Completed"]
    assert resumed.version == clean_run.version
    for name in ("difficulty", "assignment", "centroids"):
        np.testing.assert_array_equal(
            np.load(Path(resumed.artifact_path) / f"{name}.npy"),
            np.load(Path(clean_run.artifact_path) / f"{name}.npy"),
        )


def test_transient_shard_failure_is_retried(
    pipeline_params: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cl_core.embed
    import flows.stages.embed

    real_embed_shards = cl_core.embed.embed_shards
    calls: list[int] = []

    def flaky(store: Any, dataset: Any, config: Any, shards: Any = None, **kw: Any):
        calls.extend(shards)
        if calls.count(1) == 1 and 1 in shards:
            raise OSError("transient I/O error")
        return real_embed_shards(store, dataset, config, shards, **kw)

    monkeypatch.setattr(cl_core.embed, "embed_shards", flaky)
    monkeypatch.setattr(flows.stages.embed, "SHARD_RETRY_DELAYS", [0])
    embedded = flows.stages.embed.embed_flow(
        pipeline_params["dataset"],
        pipeline_params["embedding"],
        _output(tmp_path, shard_retries=1),
    )
    assert calls.count(1) == 2
    assert [state for name, state in embedded.task_states if name == "embed-shard"] == [
        "Completed"
    ] * 5
    assert embedded.shards_computed == 5 and embedded.n_rows == 72


def test_dask_sweep_on_an_existing_store_matches_cl_core(
    clean_run: Any, pipeline_params: dict, workspace: Path, tmp_path: Path
) -> None:
    """zarr: input skips embedding; the k sweep runs as Prefect tasks on a DaskTaskRunner and
    chooses exactly what cl_core's own sweep chooses."""
    from cl_core.cluster import cluster_embeddings
    from cl_core.store import open_store

    store_path = next((workspace / "runs" / "embeddings").glob("*.zarr"))
    params = {**pipeline_params, "dataset": DatasetParams(spec=f"zarr:{store_path}", name="tiny")}
    result = _run(params, _output(tmp_path, runner="dask", dask_workers=2))
    assert "embed-shard" not in result.task_states
    assert result.task_states["evaluate-ks"] == ["Completed"] * 2  # one task per Dask worker
    reference = cluster_embeddings(
        open_store(store_path), pipeline_params["clustering"].to_config()
    )
    assert result.n_clusters == reference.n_clusters
    np.testing.assert_array_equal(
        np.load(Path(result.artifact_path) / "assignment.npy"), reference.assignment
    )


def test_explicit_k_and_supervised_mode(
    clean_run: Any, pipeline_params: dict, workspace: Path
) -> None:
    """Reuses the embedding of ``clean_run`` (requested here, not assumed from test order)."""
    explicit = _run(
        pipeline_params,
        _output(workspace),
        clustering=ClusterParams(n_clusters=4),
        curriculum=CurriculumParams(warmup_iterations=100, difficulty="rank"),
    )
    assert explicit.n_clusters == 4 and explicit.chosen_by == "explicit"
    assert "evaluate-ks" not in explicit.task_states
    assert set(explicit.task_states["embed-shard"]) == {"Cached"}
    supervised = _run(
        pipeline_params, _output(workspace), clustering=ClusterParams(n_clusters=1, use_labels=True)
    )
    assert supervised.chosen_by == "per_class" and supervised.n_clusters == 3
    difficulty = np.load(Path(supervised.artifact_path) / "difficulty.npy")
    labels = np.repeat(np.arange(3), 24)
    for label in range(3):  # min-max within each class: every class spans [0, 1]
        members = difficulty[labels == label]
        assert members.min() == pytest.approx(0.0) and members.max() == pytest.approx(1.0)


def test_sweep_on_an_existing_dask_cluster_by_address(
    clean_run: Any, pipeline_params: dict, workspace: Path, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    store_path = next((workspace / "runs" / "embeddings").glob("*.zarr"))
    params = {**pipeline_params, "dataset": DatasetParams(spec=f"zarr:{store_path}", name="tiny")}
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        output = _output(tmp_path, runner="dask", dask_address=cluster.scheduler_address)
        result = _run(params, output)
        finished_there = cluster.scheduler.task_prefixes["evaluate_ks_task"].state_counts["memory"]
    assert finished_there == 4  # the four k jobs ran on the cluster at that address
    assert result.task_states["evaluate-ks"] == ["Completed"] * 4  # one per k on a remote cluster
    assert result.n_clusters == clean_run.n_clusters


def test_flow_and_direct_publish_curriculum_write_the_same_manifest(
    clean_run: Any, pipeline_params: dict, tmp_path: Path
) -> None:
    """The publish task is ``publish_curriculum``: called directly on the same inputs (arrays,
    upstream ids, config, report files) it writes the same manifest, timestamp aside."""
    import dataclasses
    import json

    from cl_core.artifacts import publish_curriculum

    version_dir = Path(clean_run.artifact_path)
    flow_manifest = json.loads((version_dir / "manifest.json").read_text())
    schedule = pipeline_params["curriculum"].schedule_config()
    direct = publish_curriculum(
        tmp_path,
        clean_run.name,
        np.load(version_dir / "difficulty.npy"),
        np.load(version_dir / "assignment.npy"),
        np.load(version_dir / "centroids.npy"),
        parents=flow_manifest["parents"][:2],  # the store's fingerprint and the cluster id
        config=flow_manifest["config"]["pipeline"],
        metrics={
            key: flow_manifest["metrics"][key]
            for key in ("n_clusters", "chosen_by", "davies_bouldin")
        },
        extra_files={p.name: p for p in version_dir.iterdir() if p.suffix in (".png", ".md")},
        sweep=json.loads((version_dir / "sweep.json").read_text()),
        dataset_fingerprint=flow_manifest["dataset_fingerprint"],
        # what the next nightly run reads: sample keys, normalisation and scale, distances
        json_files={
            name: json.loads((version_dir / f"{name}.json").read_text())
            for name in ("sample_keys", "refit_state")
        },
        extra_arrays={"distances": np.load(version_dir / "distances.npy")},
        lineage=flow_manifest["lineage"],
        **dataclasses.asdict(schedule),  # the schedule solved here, not the flow's
    )
    direct_manifest = json.loads((Path(direct) / "manifest.json").read_text())
    for manifest in (flow_manifest, direct_manifest):
        manifest.pop("created_at")
    assert direct_manifest == flow_manifest
    assert {"difficulty_min", "difficulty_max", "max_inverse_temperature"} <= set(
        flow_manifest["metrics"]
    )


def test_the_fit_starts_from_the_sweep_sample_without_reading_it_again(
    blob_store: Path, pipeline_params: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit task hands the sample task's sample to ``cluster_embeddings(sample=...)``: the
    sample is drawn from the store once per run (the fit used to draw it a second time, as
    long as the whole sweep at N = 1M), and the result is still the library's own."""
    from cl_core.cluster import cluster_embeddings, stage
    from cl_core.store import open_store

    draws: list[int] = []
    original = stage.sample_rows

    def counted(*args: Any, **kwargs: Any) -> Any:
        draws.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, "sample_rows", counted)
    params = {**pipeline_params, "dataset": DatasetParams(spec=f"zarr:{blob_store}", name="b")}
    result = _run(params, _output(tmp_path))
    assert result.task_states["fit-clusters"] == ["Completed"]
    assert draws == []
    monkeypatch.setattr(stage, "sample_rows", original)
    reference = cluster_embeddings(open_store(blob_store), params["clustering"].to_config())
    assert result.n_clusters == reference.n_clusters
    np.testing.assert_array_equal(
        np.load(Path(result.artifact_path) / "assignment.npy"), reference.assignment
    )
