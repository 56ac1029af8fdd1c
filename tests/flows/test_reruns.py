"""Scheduled reruns never serve a wrong curriculum (issue 11), in-process on the test server.

Most runs start from ``zarr:`` of a small synthetic store (no model, a few seconds each); the
ones about data (a changed image, a bad image) embed a copy of the generated image folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.params import ClusterParams, DatasetParams, EmbedParams, OutputParams

pytestmark = pytest.mark.usefixtures("prefect_server")
runner = CliRunner()


def _zarr_run(store: Path, root: Path, *options: str) -> Any:
    """``cl-curriculum run zarr:STORE`` into ``root`` (artifact name ``blobs``)."""
    args = ["run", f"zarr:{store}", "--name", "blobs", "--sweep-runner", "threads"]
    args += ["--output", str(root / "artifacts"), "--work-dir", str(root / "runs")]
    return runner.invoke(app, [*args, "--no-progress", *options])


def _reported(result: Any) -> dict[str, str]:
    """Version, artifact path and task counts from the summary lines of ``run``."""
    assert result.exit_code == 0, result.output
    version = re.search(r" version (\w+): ", result.stdout)
    counts = re.search(r"tasks: (\d+) cached, (\d+) computed", result.stdout)
    artifact = re.search(r"^artifact: (.+)$", result.stdout, re.MULTILINE)
    assert version and counts and artifact, result.stdout
    return {
        "version": version.group(1),
        "artifact": artifact.group(1).strip(),
        "cached": counts.group(1),
        "computed": counts.group(2),
    }


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _output(root: Path) -> OutputParams:
    return OutputParams(
        output_dir=str(root / "artifacts"), work_dir=str(root / "runs"), sweep_runner="threads"
    )


def _run(params: dict, root: Path, **overrides: Any) -> Any:
    from flows.pipeline import curriculum_pipeline

    return curriculum_pipeline(**{**params, **overrides, "output": _output(root)})


# --------------------------------------------------------------------------------------------
# 2. latest, 3. verified cache hits, 6. exit codes, 10. edge of the k range
# --------------------------------------------------------------------------------------------


def test_latest_names_the_version_the_last_run_reported(blob_store: Path, tmp_path: Path) -> None:
    """A, B, A: the third run is fully cached and still moves `latest` back to A."""
    first = _reported(_zarr_run(blob_store, tmp_path, "--k", "3", "--pacing", "linear"))
    other = _reported(_zarr_run(blob_store, tmp_path, "--k", "3", "--pacing", "cosine"))
    again = _reported(_zarr_run(blob_store, tmp_path, "--k", "3", "--pacing", "linear"))
    assert first["version"] == again["version"] != other["version"]
    assert again["computed"] == "0"
    latest = tmp_path / "artifacts" / "blobs" / "latest"
    assert latest.read_text().strip() == first["version"]


def test_damaged_outputs_are_recomputed_not_served(blob_store: Path, tmp_path: Path) -> None:
    first = _reported(_zarr_run(blob_store, tmp_path, "--k", "3"))
    published = Path(first["artifact"]) / "difficulty.npy"
    _flip_last_byte(published)
    assert runner.invoke(app, ["inspect", first["artifact"]]).exit_code == 2

    republished = _reported(_zarr_run(blob_store, tmp_path, "--k", "3"))
    assert republished["computed"] == "1"  # publish only: its output failed verification
    assert republished["version"] == first["version"]
    inspected = runner.invoke(app, ["inspect", first["artifact"]])
    assert inspected.exit_code == 0, inspected.output

    (intermediate,) = (tmp_path / "runs" / "difficulty").glob("*.npy")
    _flip_last_byte(intermediate)
    recomputed = _reported(_zarr_run(blob_store, tmp_path, "--k", "3"))
    assert recomputed["computed"] == "1"  # the difficulty task, whose file no longer matches
    assert recomputed["version"] == first["version"]


def test_an_error_inside_the_run_exits_1_naming_the_flow_run(
    blob_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.tasks

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("injected bug in the difficulty step")

    monkeypatch.setattr(flows.tasks, "fit_scale", broken)  # the step the task calls
    result = _zarr_run(blob_store, tmp_path, "--k", "3")
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the run failed: ValueError: injected bug in the difficulty")
    assert re.search(r"flow run '[\w-]+'", last), last
    # (no tracebacks on a real terminal: test_processes.py checks a child process's stderr)
    assert not (tmp_path / "artifacts").exists()


def test_k_at_the_edge_of_the_range_is_said_out_loud(blob_store: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    result = _zarr_run(blob_store, tmp_path, "--k-range", "2:3", "--name", "edge")
    reported = _reported(result)  # three blobs: Davies-Bouldin picks k = 3, the top of 2..3
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("warning: ") and "2..3" in last, result.stdout
    sentence = last.removeprefix("warning: ")
    assert sentence in (Path(reported["artifact"]) / "report.md").read_text()
    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=["edge-summary"])
        (summary,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert sentence in str(summary.data)


# --------------------------------------------------------------------------------------------
# 1. changed data, 4. bad samples
# --------------------------------------------------------------------------------------------


@pytest.fixture
def image_copy(image_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(image_folder, tmp_path / "images"))


def _on(folder: Path, params: dict, **embedding: Any) -> dict:
    return {
        **params,
        "dataset": DatasetParams(spec=f"imagefolder:{folder}", name="tiny"),
        "embedding": params["embedding"].model_copy(update=embedding),
        "clustering": ClusterParams(n_clusters=3),
    }


def test_an_image_replaced_in_place_is_embedded_again(
    image_copy: Path, pipeline_params: dict, tmp_path: Path
) -> None:
    params = _on(image_copy, pipeline_params)
    first = _run(params, tmp_path)
    assert first.dataset_identity == "listing"
    # index 1 of 72: one the sampled fingerprint never looked at
    shutil.copyfile(image_copy / "class2" / "000.png", image_copy / "class0" / "001.png")
    second = _run(params, tmp_path)
    assert "Completed" in second.task_states["embed-shard"]
    assert second.version != first.version
    assert not np.array_equal(
        np.load(Path(first.artifact_path) / "difficulty.npy"),
        np.load(Path(second.artifact_path) / "difficulty.npy"),
    )
    by_content = _run(
        {**params, "dataset": params["dataset"].model_copy(update={"verify_content": True})},
        tmp_path,
    )
    assert by_content.dataset_identity == "content"
    named = _run(
        {**params, "dataset": params["dataset"].model_copy(update={"dataset_id": "images-v1"})},
        tmp_path,
    )
    assert named.dataset_identity == "explicit"


def test_a_sampled_identity_is_warned_about() -> None:
    from flows.outcomes import SAMPLED_IDENTITY_WARNING, EmbeddingOutcome, run_warnings

    embedded = EmbeddingOutcome(
        store_path="s", fingerprint="f", dataset_fingerprint="d", n_rows=1, dim=1,
        model_id=None, has_labels=False, source="embedded", identity_method="sampled",
    )  # fmt: skip
    clustered = _clustered_without_warning()
    assert run_warnings(embedded, clustered) == [SAMPLED_IDENTITY_WARNING]
    assert "--dataset-id" in SAMPLED_IDENTITY_WARNING


def _clustered_without_warning() -> Any:
    from flows.outcomes import ClusterOutcome

    return ClusterOutcome(
        cluster_id="c", cluster_dir="d", n_clusters=3, chosen_by="explicit", sweep=[], clusters=[]
    )


def test_a_bad_sample_is_not_retried(
    image_copy: Path, pipeline_params: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cl_core.embed
    import flows.stages.embed
    from cl_core.embed import BadSampleError

    real_embed_shards = cl_core.embed.embed_shards
    calls: list[int] = []

    def bad_in_shard_1(store: Any, dataset: Any, config: Any, shards: Any = None, **kw: Any):
        calls.extend(shards)
        if 1 in shards:
            raise BadSampleError(20, "class0/020.png", "OSError: truncated")
        return real_embed_shards(store, dataset, config, shards, **kw)

    monkeypatch.setattr(cl_core.embed, "embed_shards", bad_in_shard_1)
    monkeypatch.setattr(flows.stages.embed, "SHARD_RETRY_DELAYS", [0])
    params = _on(image_copy, pipeline_params)
    with pytest.raises(BadSampleError, match=r"class0/020\.png"):
        flows.stages.embed.embed_flow(
            params["dataset"],
            params["embedding"],
            OutputParams(work_dir=str(tmp_path / "runs"), shard_retries=2),
        )
    assert calls.count(1) == 1  # a data error is deterministic: no retries


def test_skipped_bad_samples_get_zero_probability_and_are_listed(
    image_copy: Path, pipeline_params: dict, tmp_path: Path
) -> None:
    from cl_core.sampler import load_curriculum
    from flows.pipeline import run_summary_markdown

    bad = image_copy / "class1" / "zz-empty.png"  # sorts last in class1: index 24 + 24 = 48
    bad.write_bytes(b"")
    params = _on(image_copy, pipeline_params, on_bad_sample="skip")
    result = _run(params, tmp_path)
    assert [(s["index"], Path(s["path"]).name) for s in result.skipped] == [(48, "zz-empty.png")]
    curriculum = load_curriculum(result.artifact_path)
    assert curriculum.n_samples == 73
    for iteration in (0, 10_000):
        probabilities = curriculum.probabilities(iteration)
        assert probabilities[48] == 0.0 and probabilities.sum() == pytest.approx(1.0)
    manifest = (Path(result.artifact_path) / "manifest.json").read_text()
    assert '"excluded"' in manifest
    assert "zz-empty.png" in run_summary_markdown(result, params["dataset"])
    assert "zz-empty.png" in (Path(result.artifact_path) / "report.md").read_text()
    preview = runner.invoke(app, ["preview", result.artifact_path, "-t", "10000", "--top", "73"])
    assert preview.exit_code == 0, preview.output
    assert "effective fraction 1.0000" in preview.stdout  # uniform over the 72 drawable samples
    bottom = preview.stdout.split("least likely")[1]
    assert not re.search(r"^\W*48\b", bottom, re.MULTILINE)  # never drawn, so never listed


def test_on_bad_sample_is_a_cli_option(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "digits", "--on-bad-sample", "ignore"])
    assert result.exit_code == 2
    assert "on_bad_sample" in result.stderr and "'error' or 'skip'" in result.stderr


def test_embed_params_carry_on_bad_sample_into_the_embed_config() -> None:
    config = EmbedParams(on_bad_sample="skip").to_config()
    assert config.on_bad_sample == "skip"
