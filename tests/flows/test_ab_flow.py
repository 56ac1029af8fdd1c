"""The ``curriculum-ab`` flow (cached per arm and seed), its UI artifacts and ``cl-curriculum ab``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from flows.ui import png_markdown

N_DIGITS = 1797
TINY = {"arms": ("easy", "uniform"), "steps": 6, "batch_size": 8, "eval_every": 3}


@pytest.fixture(scope="module")
def digits_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A curriculum over the 1,797 digits (seeded random difficulty; only N and order matter)."""
    from cl_core.artifacts import publish_curriculum

    difficulty = np.random.default_rng(0).random(N_DIGITS).astype(np.float32)
    root = tmp_path_factory.mktemp("artifacts")
    return publish_curriculum(root, "digits", difficulty, warmup_iterations=100)


def _artifact_of(n: int, root: Path) -> Path:
    from cl_core.artifacts import publish_curriculum

    difficulty = np.random.default_rng(1).random(n).astype(np.float32)
    return publish_curriculum(root, "small", difficulty)


def test_rerun_with_one_more_seed_computes_only_that_seed(
    prefect_server: None, digits_artifact: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.ab import curriculum_ab

    output = str(tmp_path / "ab")
    first = curriculum_ab(str(digits_artifact), "digits", seeds=1, output=output, **TINY)
    assert sorted(first.task_states) == [("easy", 0, "Completed"), ("uniform", 0, "Completed")]
    second = curriculum_ab(str(digits_artifact), "digits", seeds=2, output=output, **TINY)
    assert sorted(second.task_states) == [
        ("easy", 0, "Cached"),
        ("easy", 1, "Completed"),
        ("uniform", 0, "Cached"),
        ("uniform", 1, "Completed"),
    ]
    assert second.results_dir == first.results_dir  # the seed count is not part of the config id
    directory = Path(second.results_dir)
    assert directory.parent.name == digits_artifact.name  # runs/ab/<version>/<config id>
    results = json.loads((directory / "results.json").read_text())
    assert results["seeds"] == [0, 1]
    assert {(r["arm"], r["seed"]) for r in results["runs"]} == {
        ("easy", 0),
        ("easy", 1),
        ("uniform", 0),
        ("uniform", 1),
    }
    assert results["summary"]["verdict"] == second.verdict
    assert (directory / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert "| easy |" in (directory / "table.md").read_text()
    assert sorted(p.name for p in (directory / "runs").glob("*-seed?.json")) == [
        "easy-seed0.json",
        "easy-seed1.json",
        "uniform-seed0.json",
        "uniform-seed1.json",
    ]
    assert not list(digits_artifact.glob("runs*"))  # the artifact directory is only read

    # A cache record whose run file is gone recomputes that run only.
    (directory / "runs" / "easy-seed1.json").unlink()
    third = curriculum_ab(str(digits_artifact), "digits", seeds=2, output=output, **TINY)
    assert dict(((a, s), st) for a, s, st in third.task_states)[("easy", 1)] == "Completed"
    assert third.count("Cached") == 3

    # The UI shows the per-arm table and the plot embedded in a markdown artifact.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["digits-ab-summary", "digits-ab-plot"])
            )
        )
    kinds = {a.key: a for a in artifacts}
    assert kinds["digits-ab-summary"].type == "table"
    plot = kinds["digits-ab-plot"]
    assert plot.type == "markdown" and "](data:image/png;base64," in plot.data


def test_mae_objective_is_cached_per_arm_and_seed(
    prefect_server: None, digits_artifact: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.ab import curriculum_ab

    tiny = {**TINY, "objective": "mae", "steps": 4, "eval_every": 2}
    output = str(tmp_path / "ab")
    first = curriculum_ab(str(digits_artifact), "digits", seeds=1, output=output, **tiny)
    second = curriculum_ab(str(digits_artifact), "digits", seeds=2, output=output, **tiny)
    assert sorted(second.task_states) == [
        ("easy", 0, "Cached"),
        ("easy", 1, "Completed"),
        ("uniform", 0, "Cached"),
        ("uniform", 1, "Completed"),
    ]
    assert second.results_dir == first.results_dir
    results = json.loads((Path(second.results_dir) / "results.json").read_text())
    assert results["config"]["objective"] == "mae" and results["config"]["batch_size"] == 8
    assert results["task"]["task"] == "digits-mae"
    assert set(results["summary"]["floors"]) == {"raw pixels", "random init"}
    assert all(run["probe"] is not None for run in results["runs"])
    table = (Path(second.results_dir) / "table.md").read_text()
    assert "| floor: raw pixels |" in table and "linear probe" in table
    assert "final kNN accuracy" in second.verdict
    # the supervised objective on the same artifact is another config id
    supervised = curriculum_ab(str(digits_artifact), "digits", seeds=1, output=output, **TINY)
    assert supervised.results_dir != second.results_dir
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["digits-mae-ab-summary", "digits-mae-ab-plot"])
            )
        )
    assert {a.key for a in artifacts} == {"digits-mae-ab-summary", "digits-mae-ab-plot"}


def test_png_markdown_embeds_the_image(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
    text = png_markdown(png, alt="A [plot]")
    assert text.startswith("![A plot](data:image/png;base64,")
    assert base64.b64decode(text.split(",", 1)[1].rstrip(")")) == png
    path = tmp_path / "x.png"
    path.write_bytes(png)
    assert png_markdown(path, alt="A [plot]") == text
    with pytest.raises(ValueError, match="not a PNG"):
        png_markdown(b"GIF89a")


# ---- cl-curriculum ab: bad input exits 2 with one line, before Prefect starts --------------


def _cli() -> typer.Typer:
    from flows.cli_ab import ab

    app = typer.Typer(add_completion=False)
    app.command(name="ab")(ab)
    app.command(name="noop")(lambda: None)  # two commands: `ab` stays a sub-command
    return app


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0"], "seeds must be >= 1"),
        (["--arms", "easy,bogus"], "arm"),
        (["--steps", "0"], "steps must be >= 1"),
        (["--dataset", "mnist"], "--dataset 'mnist' is not one of"),
        (["--probe"], "--probe trains a linear probe on stored embeddings"),
        (["--objective", "simclr"], "objective"),
        (["--objective", "mae", "--dataset", "zarr:x.zarr"], "--objective mae pretrains on images"),
        (["--objective", "mae", "--model", "resnet18"], "drop --model/--weights"),
    ],
)
def test_cli_bad_input_exits_2(digits_artifact: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(_cli(), ["ab", str(digits_artifact), *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_cli_artifact_n_must_match_the_dataset(tmp_path: Path) -> None:
    small = _artifact_of(50, tmp_path)
    result = CliRunner().invoke(_cli(), ["ab", str(small), "--dataset", "digits"])
    assert result.exit_code == 2
    assert "scores 50 samples but the dataset" in result.output
    assert "has 1797" in result.output


def test_cli_missing_artifact(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["ab", str(tmp_path / "nothing" / "latest")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
