"""``cl-curriculum``: run, inspect and preview on a real artifact; bad input exits 2 in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app, main

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_artifact(
    prefect_server: None,
    image_folder: Path,
    tiny_weights: Path,
    pipeline_params: dict,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """``cl-curriculum run`` on the generated images; returns the published version dir."""
    root = tmp_path_factory.mktemp("cli")
    result = runner.invoke(
        app,
        [
            "run",
            f"imagefolder:{image_folder}",
            "--model", "test_efficientnet",
            "--weights", str(tiny_weights),
            "--image-size", str(pipeline_params["embedding"].image_size),
            "--device", "cpu",
            "--precision", "fp32",
            "--batch-size", "32",
            "--k-range", "2:4",
            "--pacing", "cosine",
            "--f0", "0.25",
            "--warmup", "200",
            "--sweep-runner", "threads",
            "--name", "cli-tiny",
            "--output", str(root / "artifacts"),
            "--work-dir", str(root / "runs"),
            "--no-progress",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    artifact = Path(lines["artifact"].strip())
    assert Path(lines["report"].strip()) == artifact / "report.md"
    assert "tasks: 0 cached" in result.stdout
    return artifact


def test_run_publishes_with_the_given_options(cli_artifact: Path) -> None:
    from cl_core.sampler import load_curriculum

    curriculum = load_curriculum(cli_artifact)
    assert cli_artifact.parent.name == "cli-tiny"
    assert curriculum.pacing == "cosine"
    assert curriculum.initial_fraction == pytest.approx(0.25)
    assert curriculum.warmup_iterations == 200
    assert curriculum.n_samples == 72


def test_precision_option_reaches_the_published_config(cli_artifact: Path) -> None:
    import json

    manifest = json.loads((cli_artifact / "manifest.json").read_text())
    assert '"precision": "fp32"' in json.dumps(manifest["config"], sort_keys=True)


def test_inspect_shows_the_manifest_and_verified_files(cli_artifact: Path) -> None:
    result = runner.invoke(app, ["inspect", str(cli_artifact.parent / "latest")])
    assert result.exit_code == 0, result.output
    assert cli_artifact.name in result.stdout
    for expected in ("difficulty.npy", "assignment.npy", "schedule.json", "cosine", "72"):
        assert expected in result.stdout


def test_preview_at_start_and_after_warmup(cli_artifact: Path) -> None:
    start = runner.invoke(app, ["preview", str(cli_artifact), "--iteration", "0", "--top", "3"])
    assert start.exit_code == 0, start.output
    assert "target fraction 0.2500" in start.stdout
    assert "top 3 (most likely)" in start.stdout and "bottom 3 (least likely)" in start.stdout
    after = runner.invoke(app, ["preview", str(cli_artifact), "--iteration", "500"])
    assert after.exit_code == 0, after.output
    assert "target fraction 1.0000" in after.stdout and "inf (uniform)" in after.stdout


def test_preview_ranks_easy_samples_first(cli_artifact: Path) -> None:
    """The first row of the 'top' table is a sample of minimal difficulty (easy strategy)."""
    result = runner.invoke(app, ["preview", str(cli_artifact), "--top", "1"])
    difficulty = np.load(cli_artifact / "difficulty.npy")
    top_table = result.stdout.split("top 1 (most likely)")[1].split("bottom")[0]
    index = int(next(cell for cell in top_table.split() if cell.isdigit()))
    assert difficulty[index] == pytest.approx(difficulty.min())


def test_inspect_names_a_tampered_file(cli_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(cli_artifact, copy)
    values = np.load(copy / "difficulty.npy")
    np.save(copy / "difficulty.npy", values[::-1].copy())
    result = runner.invoke(app, ["inspect", str(copy)])
    assert result.exit_code == 2
    assert "difficulty.npy" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nosuch:thing"], "unknown dataset spec 'nosuch:thing'"),
        (["run", "imagefolder:/no/such/dir"], "is not a directory"),
        (["run", "zarr:/no/such/store.zarr"], "no embedding store"),
        (["run", "digits", "--k-range", "5:2"], "cluster_range"),
        (["run", "digits", "--k-range", "2-20"], "is not LOW:HIGH"),
        (["run", "digits", "--k-range", "100:2000"], "narrow the range (--k-range 100:897)"),
        (["run", "digits", "--precision", "fp64"], "precision"),
        (["run", "digits", "--f0", "1.5"], "initial_fraction"),
        (["run", "digits", "--strategy", "sideways"], "unknown strategy 'sideways'"),
        (["run", "digits", "--pacing", "zigzag"], "unknown pacing 'zigzag'"),
        (["run", "digits", "--sweep-runner", "mpi"], "sweep_runner"),
        (["run", "digits", "--model", "no_such_model_xyz"], "unknown model 'no_such_model_xyz'"),
        (["inspect", "/no/such/artifact"], "/no/such/artifact"),
        (["serve", "--cron", "not a cron"], "cron"),
    ],
)
def test_bad_input_exits_2_with_one_readable_line(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_preview_rejects_a_negative_iteration(cli_artifact: Path) -> None:
    result = runner.invoke(app, ["preview", str(cli_artifact), "--iteration", "-1"])
    assert result.exit_code == 2
    assert "--iteration must be >= 0" in result.stderr


def test_deploy_without_a_server_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, ["deploy"])
    assert result.exit_code == 2
    assert "prefect server start" in result.stderr


def test_console_script_entry_point_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    for command in ("run", "demo", "inspect", "preview", "deploy", "serve"):
        assert command in help_text


def test_the_refit_thresholds_are_cl_cores_defaults_in_the_params_and_the_cli() -> None:
    """flows.params keeps literals (it imports no cl_core); the CLI takes the params' defaults."""
    import inspect

    from cl_core.update import DEFAULT_MAX_CHANGED_SHARE, DEFAULT_MAX_DISTANCE_RATIO
    from flows.cli import run
    from flows.params import ClusterParams

    fields = ClusterParams.model_fields
    assert fields["refit_share"].default == DEFAULT_MAX_CHANGED_SHARE
    assert fields["refit_distance_ratio"].default == DEFAULT_MAX_DISTANCE_RATIO
    options = inspect.signature(run).parameters
    assert options["refit_share"].default == DEFAULT_MAX_CHANGED_SHARE
    assert options["refit_distance_ratio"].default == DEFAULT_MAX_DISTANCE_RATIO
