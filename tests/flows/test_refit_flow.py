"""Nightly runs update the clusters as the policy says (issue 19): the CLI twice over a generated
image folder with added files, for ``--refit never``, ``always`` and ``auto``; lineage in the
manifest, ``inspect`` and report.md; ``--refit never`` without a previous version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cl_core.artifacts import load_array, load_manifest, resolve_version
from cl_core.cluster import ClusterConfig
from cl_core.store import open_store
from cl_core.update import fit_curriculum, update_curriculum
from flows.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]
runner = CliRunner()


@pytest.fixture
def images(image_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(image_folder, tmp_path / "images"))


def add_images(folder: Path, count: int, seed: int = 5) -> list[str]:
    """``count`` new PNGs in class1 (noise images), their relative paths."""
    rng = np.random.default_rng(seed)
    added = []
    for index in range(count):
        pixels = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        name = f"class1/new{seed}-{index:03d}.png"
        Image.fromarray(pixels).save(folder / name)
        added.append(name)
    return added


def cli_args(folder: Path, root: Path, weights: Path, *extra: str) -> list[str]:
    return [
        "run", f"imagefolder:{folder}", "--name", "tiny", "--k", "3",
        "--model", "test_efficientnet", "--weights", str(weights),
        "--image-size", "32", "--device", "cpu", "--precision", "fp32",
        "--batch-size", "16", "--sweep-runner", "threads",
        "--output", str(root / "artifacts"), "--work-dir", str(root / "runs"),
        "--no-progress", *extra,
    ]  # fmt: skip


def run_cli(folder: Path, root: Path, weights: Path, *extra: str) -> str:
    result = runner.invoke(app, cli_args(folder, root, weights, *extra))
    assert result.exit_code == 0, result.output
    return result.stdout


def _keys(version: Path) -> list[str]:
    return json.loads((version / "sample_keys.json").read_text())["paths"]


def test_never_assigns_the_added_files_and_keeps_every_old_difficulty(
    images: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    first_out = run_cli(images, tmp_path, tiny_weights)
    assert "clusters: fitted (no previous version)" in first_out
    first = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    added = add_images(images, 2)
    second_out = run_cli(images, tmp_path, tiny_weights, "--refit", "never")
    second = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    assert second.name != first.name
    line = next(x for x in second_out.splitlines() if x.startswith("clusters: "))
    assert line.startswith(f"clusters: assigned 2 new rows to the centroids of {first.name}")
    assert "(never: " in line and f"parent {first.name}: 72 reused, 2+0 added+changed" in line
    old_keys, new_keys = _keys(first), _keys(second)
    at_new = [new_keys.index(key) for key in old_keys]
    for name in ("difficulty", "assignment", "distances"):
        old, new = load_array(first, name), load_array(second, name)
        assert new[at_new].tobytes() == old.tobytes(), name
    assert np.array_equal(load_array(second, "centroids"), load_array(first, "centroids"))
    assert sorted(set(new_keys) - set(old_keys)) == sorted(added)
    manifest = load_manifest(second)
    lineage = manifest["lineage"]
    assert (lineage["parent"], lineage["centroids_from"]) == (first.name, first.name)
    assert (lineage["added"], lineage["changed"], lineage["removed"], lineage["reused"]) == (
        2, 0, 0, 72,
    )  # fmt: skip
    assert lineage["policy"]["mode"] == "never" and lineage["drift"]["new_rows"] == 2
    assert manifest["n_samples"] == 74
    schedule = json.loads((second / "schedule.json").read_text())
    assert schedule["n_samples"] == 74  # the schedule is solved again for the new N
    report = (second / "report.md").read_text()
    assert "## Lineage" in report and f"| parent version | {first.name} |" in report
    shown = runner.invoke(app, ["inspect", str(tmp_path / "artifacts" / "tiny" / "latest")])
    assert shown.exit_code == 0 and "lineage" in shown.stdout and first.name in shown.stdout
    assert "decision" in shown.stdout and "assign" in shown.stdout
    # a rerun over the same files reproduces the same version, every task cached
    again = run_cli(images, tmp_path, tiny_weights, "--refit", "never")
    assert f"tiny version {second.name}" in again and " 0 computed" in again, again


def test_always_refits_and_auto_decides_from_the_drift(
    images: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    run_cli(images, tmp_path, tiny_weights)
    first = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    add_images(images, 2)
    auto_out = run_cli(images, tmp_path, tiny_weights)  # auto: 2 of 72 = 2.8% < 10%
    assert "clusters: assigned 2 new rows" in auto_out and "(auto: 2.8% of the rows" in auto_out
    second = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    add_images(images, 6, seed=6)  # 8 of 72 since the fit: 11.1% >= 10%
    refit_out = run_cli(images, tmp_path, tiny_weights)
    third = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    assert "clusters: refit over 80 rows (auto: 11.1% of the rows" in refit_out, refit_out
    lineage = load_manifest(third)["lineage"]
    assert lineage["parent"] == second.name and lineage["centroids_from"] is None
    assert lineage["decision"] == "refit" and lineage["drift"]["changed_since_fit"] == 8
    add_images(images, 1, seed=7)
    always_out = run_cli(images, tmp_path, tiny_weights, "--refit", "always")
    assert "clusters: refit over 81 rows (always: " in always_out, always_out
    assert first.name != second.name != third.name


def test_refit_never_without_a_previous_version_exits_2(
    images: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, cli_args(images, tmp_path, tiny_weights, "--refit", "never"))
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: --refit never: no previous version of 'tiny' under --output "
        f"{tmp_path / 'artifacts'}; run once with --refit auto (or always) to publish a first "
        "version"
    ]


def test_the_python_api_updates_a_version_the_pipeline_published(
    images: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    run_cli(images, tmp_path, tiny_weights)
    first = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    add_images(images, 2)
    run_cli(images, tmp_path, tiny_weights, "--refit", "never")
    by_flow = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    fingerprint = load_manifest(by_flow)["parents"][0]
    stores = (tmp_path / "runs" / "embeddings").glob("*.zarr")
    store_path = next(p for p in stores if open_store(p, read_only=True).fingerprint == fingerprint)
    by_api = update_curriculum(first, store_path, "never", output_dir=tmp_path / "api")
    for name in ("difficulty", "assignment", "distances", "centroids"):
        assert load_array(by_api, name).tobytes() == load_array(by_flow, name).tobytes(), name
    assert load_manifest(by_api)["lineage"] == load_manifest(by_flow)["lineage"]
    fresh = fit_curriculum(
        store_path, tmp_path / "api", "fresh", cluster_config=ClusterConfig(n_clusters=3)
    )
    assert load_manifest(fresh)["lineage"]["decision"] == "fit"


def test_a_damaged_previous_store_and_version_are_not_used_and_the_run_says_so(
    images: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    run_cli(images, tmp_path, tiny_weights)
    first = resolve_version(tmp_path / "artifacts" / "tiny" / "latest")
    (store,) = (tmp_path / "runs" / "embeddings").glob("*.zarr")
    (store / "features" / "c" / "0" / "0").write_bytes(b"\x00garbage" * 10)  # its one chunk
    damaged = first / "distances.npy"
    damaged.write_bytes(damaged.read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    add_images(images, 1)
    out = run_cli(images, tmp_path, tiny_weights)
    assert f"embeddings: reused 0 rows: previous store {store.stem} failed verification" in out
    line = next(x for x in out.splitlines() if x.startswith("clusters: "))
    assert line.startswith(f"clusters: fitted (previous version {first.name} not used: "), line
    assert "distances.npy" in line
