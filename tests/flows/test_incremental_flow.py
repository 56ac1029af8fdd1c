"""Nightly runs embed what changed (issue 19) through the pipeline: the CLI twice, a Dask
cluster at ``--dask-address``, a work dir on object storage. The library-level cases are in
``tests/test_incremental_embed.py``."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cl_core.store import open_store
from flows.cli import app
from flows.params import ClusterParams, DatasetParams, OutputParams
from flows.pipeline import run_summary_markdown

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]
runner = CliRunner()
NEW_FILE = "class1/000a.png"  # row 25 of 73: shard 1 of 5 (16 rows each) holds the new row


@pytest.fixture
def images(image_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(image_folder, tmp_path / "images"))


def _add_image(folder: Path) -> None:
    pixels = np.random.default_rng(5).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / NEW_FILE)


def _cli(folder: Path, root: Path, tiny_weights: Path, embedding: Any) -> Any:
    result = runner.invoke(
        app,
        [
            "run", f"imagefolder:{folder}", "--name", "tiny", "--k", "3",
            "--model", "test_efficientnet", "--weights", str(tiny_weights),
            "--image-size", str(embedding.image_size), "--device", "cpu", "--precision", "fp32",
            "--batch-size", "16", "--sweep-runner", "threads",
            "--output", str(root / "artifacts"), "--work-dir", str(root / "runs"),
            "--no-progress",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.stdout


def _stores(root: Path) -> dict[str, Any]:
    """The work dir's stores by name (content id)."""
    folder = root / "runs" / "embeddings"
    return {path.stem: open_store(path, read_only=True) for path in folder.glob("*.zarr")}


def test_the_cli_run_twice_embeds_only_the_added_file(
    images: Path, tiny_weights: Path, pipeline_params: dict, tmp_path: Path
) -> None:
    """The CLI's last lines name the parent store and the counts; the second store holds the
    first one's rows byte for byte, plus the new one."""
    embedding = pipeline_params["embedding"]
    first = _cli(images, tmp_path, tiny_weights, embedding)
    assert "embeddings: reused 0 rows: no previous store" in first
    (first_id,) = _stores(tmp_path)
    _add_image(images)
    second = _cli(images, tmp_path, tiny_weights, embedding)
    expected = (
        f"embeddings: reused 72 rows from {first_id}; embedded 1+0 (added+changed); 0 removed"
    )
    assert expected in second, second
    stores = _stores(tmp_path)
    old, new = stores[first_id], next(s for name, s in stores.items() if name != first_id)
    reused = new.reused_rows()
    assert reused is not None and np.flatnonzero(~reused).tolist() == [25]
    assert np.asarray(new.features[:])[reused].tobytes() == np.asarray(old.features[:]).tobytes()
    (images / NEW_FILE).unlink()  # back to the first listing: its store and version, cached
    again = _cli(images, tmp_path, tiny_weights, embedding)
    assert re.search(r"tasks: \d+ cached, 0 computed", again), again


def _pipeline(folder: Path, params: dict, output: OutputParams) -> Any:
    from flows.pipeline import curriculum_pipeline

    return curriculum_pipeline(
        **{
            **params,
            "dataset": DatasetParams(spec=f"imagefolder:{folder}", name="tiny"),
            "clustering": ClusterParams(n_clusters=3),
        },
        output=output,
    )


def test_only_the_shard_with_new_files_is_a_task_on_a_dask_cluster(
    images: Path, pipeline_params: dict, tmp_path: Path
) -> None:
    from flows.runners import process_cluster

    with process_cluster(
        n_workers=1, threads_per_worker=1, processes=True, protocol="tcp", dashboard_address=None
    ) as cluster:
        output = OutputParams(
            output_dir=str(tmp_path / "artifacts"),
            work_dir=str(tmp_path / "runs"),
            dask_address=cluster.scheduler_address,
        )
        first = _pipeline(images, pipeline_params, output)
        assert first.task_states["embed-shard"] == ["Completed"] * 5
        _add_image(images)
        second = _pipeline(images, pipeline_params, output)
        finished = cluster.scheduler.task_prefixes["embed_shard_task"].state_counts
    assert second.task_states["embed-shard"] == ["Completed"]  # shard 1; 0, 2, 3, 4 copied
    assert finished["memory"] + finished["released"] == 5 + 1
    assert second.reuse is not None and second.reuse["reused"] == 72


def test_reuse_on_object_storage(
    images: Path, pipeline_params: dict, s3_bucket: str, tmp_path: Path
) -> None:
    root = f"s3://{s3_bucket}"
    output = OutputParams(
        output_dir=f"{root}/artifacts", work_dir=f"{root}/runs", sweep_runner="threads"
    )
    first = _pipeline(images, pipeline_params, output)
    (images / "class0" / "005.png").unlink()
    second = _pipeline(images, pipeline_params, output)
    assert second.reuse is not None and second.reuse["parent_path"].startswith(f"{root}/runs/")
    assert (second.reuse["reused"], second.reuse["removed"], second.reuse["embedded"]) == (71, 1, 0)
    assert "embed-shard" not in second.task_states  # every shard copied: nothing to embed
    summary = run_summary_markdown(second, DatasetParams(spec=f"imagefolder:{images}"))
    assert "| embeddings | reused 71 rows from " in summary and "embedded 0+0" in summary
    assert second.version != first.version


def _rewrite(path: Path) -> None:
    """Other pixels in the same file (another size and a later mtime)."""
    pixels = np.random.default_rng(9).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    before = path.stat().st_mtime_ns
    Image.fromarray(pixels).save(path)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


@pytest.mark.parametrize("case", ["changed", "removed"])
def test_one_changed_or_removed_file_through_the_pipeline(
    case: str, images: Path, pipeline_params: dict, tmp_path: Path
) -> None:
    """(b) one file changed: exactly that row is embedded again; (c) files removed: none is.
    Today's code (before per-file reuse) embedded all 72 rows in both cases."""
    output = OutputParams(
        output_dir=str(tmp_path / "artifacts"),
        work_dir=str(tmp_path / "runs"),
        sweep_runner="threads",
    )
    first = _pipeline(images, pipeline_params, output)
    (first_id,) = _stores(tmp_path)
    if case == "changed":
        _rewrite(images / "class0" / "005.png")  # row 5
        expected = (71, 0, 1, 0, 1)  # reused, added, changed, removed, embedded
    else:
        for name in ("class0/005.png", "class2/010.png"):
            (images / name).unlink()
        expected = (70, 0, 0, 2, 0)
    second = _pipeline(images, pipeline_params, output)
    reuse = second.reuse
    assert (
        reuse is not None
        and reuse["parent"]
        == open_store(
            tmp_path / "runs" / "embeddings" / f"{first_id}.zarr", read_only=True
        ).fingerprint
    )
    figures = tuple(reuse[k] for k in ("reused", "added", "changed", "removed", "embedded"))
    assert figures == expected
    stores = _stores(tmp_path)
    old, new = stores[first_id], next(s for name, s in stores.items() if name != first_id)
    copied = new.reused_rows()
    assert copied is not None
    assert np.flatnonzero(~copied).tolist() == ([5] if case == "changed" else [])
    old_rows = np.asarray(old.features[:])
    keep = np.ones(72, dtype=bool)
    keep[[5] if case == "changed" else [5, 48 + 10]] = False
    assert np.asarray(new.features[:])[copied].tobytes() == old_rows[keep].tobytes()
    if case == "removed":
        assert "embed-shard" not in second.task_states  # every shard copied whole
    else:
        assert second.task_states["embed-shard"] == ["Completed"]  # shard 0 only
    assert second.version != first.version


def test_new_files_in_several_shards_are_one_task_and_a_rerun_is_cached(
    images: Path, pipeline_params: dict, tmp_path: Path
) -> None:
    """New files in shards 0, 1 and 3 (one per class folder): one embedding task embeds the three
    rows (one loader, not three); the same listing again finds that task's result cached."""
    output = OutputParams(
        output_dir=str(tmp_path / "artifacts"),
        work_dir=str(tmp_path / "runs"),
        sweep_runner="threads",
    )
    _pipeline(images, pipeline_params, output)
    rng = np.random.default_rng(11)
    for label in range(3):
        pixels = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"class{label}" / "000a.png")  # rows 1, 26, 51
    second = _pipeline(images, pipeline_params, output)
    assert second.reuse is not None and (second.reuse["added"], second.reuse["embedded"]) == (3, 3)
    assert second.task_states["embed-shard"] == ["Completed"]
    new = next(s for s in _stores(tmp_path).values() if s.reuse and s.reuse.get("added"))
    copied = new.reused_rows()
    assert copied is not None and np.flatnonzero(~copied).tolist() == [1, 26, 51]
    again = _pipeline(images, pipeline_params, output)
    assert again.task_states["embed-shard"] == ["Cached"] and again.version == second.version
