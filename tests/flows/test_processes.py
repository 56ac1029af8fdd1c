"""The CLI and the pipeline as real processes: what a terminal shows, a SIGKILL, two runs at once.

The children report to the session's test server (``server_env``) unless the test is about the
embedded server itself, so most of them do not pay for a temporary server's start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flows.params import ClusterParams, DatasetParams, OutputParams

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: Any) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *map(str, args)]


def _tiny_model(weights: Path) -> list[str]:
    return ["--model", "test_efficientnet", "--weights", str(weights), "--image-size", "32"]


def _embedded_env(home: Path) -> dict[str, str]:
    """No server configured: the child starts Prefect's embedded server on ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_PROFILES_PATH=str(home / "profiles.toml"))
    return env


def _run_cli(home: Path, *args: Any, timeout: float) -> subprocess.CompletedProcess[str]:
    """``cl-curriculum ARGS`` in a child with no server configured (embedded server on ``home``)."""
    return subprocess.run(
        _cli(*args),
        cwd=ROOT,
        env=_embedded_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------------
# 5. validation before work, 4. failure output
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["digits", "--k", "5000"], "--k 5000 is more than the 1,797 samples of 'digits'"),
        (["digits", "--weights", "/no/such/weights.safetensors"], "no such file"),
        (["digits", "--model", "no_such_model_xyz"], "unknown model 'no_such_model_xyz'"),
        (["digits", "--k-range", "20:2"], "cluster_range"),
    ],
)
@pytest.mark.integration
def test_bad_input_exits_2_before_prefect_starts(
    args: list[str], message: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    completed = _run_cli(
        home, "run", *args, "--work-dir", tmp_path / "runs", "--no-progress", timeout=300
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [completed.stderr.strip()]  # one line
    assert completed.stderr.startswith("error: ") and message in completed.stderr
    # no database left behind: the parameter checks run before the temporary server starts, and
    # one that starts alongside the model check is stopped and its fresh database removed
    assert not (home / "prefect.db").exists()
    assert not (tmp_path / "runs").exists()  # nothing was embedded


@pytest.mark.integration
def test_cuda_without_cuda_exits_2_before_prefect_starts(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    completed = _run_cli(
        tmp_path / "home", "run", "digits", "--device", "cuda", "--no-progress", timeout=300
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        "error: device='cuda' asks for a CUDA GPU, but torch sees no CUDA device "
        f"(torch {torch.__version__}); use device='auto' or 'cpu'"
    )
    assert not (tmp_path / "home" / "prefect.db").exists()


@pytest.mark.integration
def test_a_bad_image_fails_in_one_line_naming_it_without_tracebacks(
    image_folder: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    """On the embedded server, as a user runs it: the error is the last line on stderr."""
    folder = Path(shutil.copytree(image_folder, tmp_path / "images"))
    (folder / "class1" / "zz-empty.png").write_bytes(b"")  # index 48
    completed = _run_cli(
        tmp_path / "home",
        "run", f"imagefolder:{folder}", *_tiny_model(tiny_weights), "--device", "cpu",
        "--k", "3", "--no-progress", "--output", tmp_path / "artifacts",
        "--work-dir", tmp_path / "runs",
        timeout=600,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stderr.count("could not be loaded") == 1  # said once, by the CLI
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the run failed: sample 48 (")
    assert "zz-empty.png" in last and "--on-bad-sample skip" in last
    assert re.search(r"flow run '[\w-]+', id [0-9a-f-]{36}", last), last
    assert not (tmp_path / "artifacts").exists()


# --------------------------------------------------------------------------------------------
# 9. SIGKILL during embedding, then a rerun
# --------------------------------------------------------------------------------------------

SLOW_SHARDS_RUN = """
import json, sys, time
import cl_core.embed
real = cl_core.embed.embed_shards
def slow(*args, **kwargs):
    done = real(*args, **kwargs)
    time.sleep(1.5)  # leave time to be killed between shards
    return done
cl_core.embed.embed_shards = slow
from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams, OutputParams
from flows.pipeline import curriculum_pipeline
raw = json.loads(sys.argv[1])
models = dict(dataset=DatasetParams, embedding=EmbedParams, clustering=ClusterParams,
              curriculum=CurriculumParams, output=OutputParams)
curriculum_pipeline(**{key: models[key](**value) for key, value in raw.items()})
"""


def _params_json(params: dict, output: OutputParams) -> str:
    return json.dumps(
        {k: v.model_dump(mode="json") for k, v in {**params, "output": output}.items()}
    )


def _wait_for_done_shards(work: Path, at_least: int, process: subprocess.Popen) -> Path:
    from cl_core.store import open_store

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        for store_path in (work / "embeddings").glob("*.zarr"):
            try:
                store = open_store(store_path, read_only=True)
            except Exception:  # not created yet
                continue
            if store.n_shards - len(store.missing_shards()) >= at_least:
                return store_path
        time.sleep(0.2)
    raise AssertionError(f"no {at_least} shards were embedded (exit {process.poll()})")


def test_sigkill_during_embedding_then_rerun_computes_only_missing_shards(
    prefect_server: None,
    server_env: dict[str, str],
    pipeline_params: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cl_core.store import open_store
    from flows.pipeline import curriculum_pipeline

    params = {**pipeline_params, "clustering": ClusterParams(n_clusters=3)}
    killed = OutputParams(
        output_dir=str(tmp_path / "a"), work_dir=str(tmp_path / "runs"), sweep_runner="threads"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SHARDS_RUN, _params_json(params, killed)],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        store_path = _wait_for_done_shards(tmp_path / "runs", 2, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    missing = open_store(store_path, read_only=True).missing_shards()
    assert 0 < len(missing) < 5, missing
    assert not (tmp_path / "a").exists()

    import cl_core.embed

    real_embed_shards = cl_core.embed.embed_shards
    embedded: list[int] = []

    def counting(store: Any, dataset: Any, config: Any, shards: Any = None, **kw: Any) -> Any:
        embedded.extend(shards)
        return real_embed_shards(store, dataset, config, shards, **kw)

    monkeypatch.setattr(cl_core.embed, "embed_shards", counting)
    resumed = curriculum_pipeline(**params, output=killed)
    assert sorted(embedded) == missing  # the shards done before the kill are not embedded again
    # A shard killed after its done marker but before Prefect persisted its result reruns its
    # task (state Completed) and finds the shard done: at most one such shard.
    assert resumed.task_states["embed-shard"].count("Cached") >= 5 - len(missing) - 1
    monkeypatch.setattr(cl_core.embed, "embed_shards", real_embed_shards)
    clean_output = killed.model_copy(
        update={"output_dir": str(tmp_path / "b"), "work_dir": str(tmp_path / "clean")}
    )
    clean = curriculum_pipeline(**params, output=clean_output)
    assert resumed.version == clean.version


# --------------------------------------------------------------------------------------------
# 8. two identical runs at the same moment
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_two_identical_runs_at_once_both_publish_the_same_version(
    image_folder: Path, tiny_weights: Path, tmp_path: Path
) -> None:
    """Embedded server (no PREFECT_API_URL), one Prefect home, one work dir, one output."""
    from cl_core.artifacts import verify_artifact
    from cl_core.store import open_store

    command = _cli(
        "run", f"imagefolder:{image_folder}", *_tiny_model(tiny_weights), "--device", "cpu",
        "--k", "3", "--sweep-runner", "threads", "--no-progress", "--name", "twins",
        "--output", tmp_path / "artifacts", "--work-dir", tmp_path / "runs",
    )  # fmt: skip
    env = _embedded_env(tmp_path / "home")
    runs = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr
        assert "database is locked" not in stderr
    versions = {re.search(r"twins version (\w+):", out).group(1) for out, _ in outputs}  # type: ignore[union-attr]
    assert len(versions) == 1
    (version,) = versions
    verify_artifact(tmp_path / "artifacts" / "twins" / version)
    assert (tmp_path / "artifacts" / "twins" / "latest").read_text().strip() == version
    (store_path,) = (tmp_path / "runs" / "embeddings").glob("*.zarr")
    store = open_store(store_path, read_only=True)
    assert store.is_complete and store.missing_shards() == []
    assert any("waiting for another run" in err for _, err in outputs)


def test_dataset_params_in_a_child_round_trip() -> None:
    """The SIGKILL child rebuilds the same parameters the parent passes (JSON round trip)."""
    params = DatasetParams(spec="digits", dataset_id="v1", verify_content=True)
    assert DatasetParams(**json.loads(params.model_dump_json())) == params


# --------------------------------------------------------------------------------------------
# the quiet console of `ab` on the embedded server
# --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_ab_on_the_embedded_server_prints_no_server_lifecycle_lines(tmp_path: Path) -> None:
    """``cl-curriculum ab`` shares the other commands' run path: it runs on the run's own
    temporary server, so Prefect starts none (whose "Starting / Stopping temporary server"
    lines, the stop line at interpreter exit after the verdict, once reached the console)."""
    import numpy as np

    from cl_core.artifacts import publish_curriculum

    rng = np.random.default_rng(0)
    artifact = publish_curriculum(
        tmp_path / "artifacts", "digits", rng.random(1797), warmup_iterations=10
    )
    completed = _run_cli(
        tmp_path / "home",
        "ab", artifact, "--dataset", "digits", "--seeds", "1", "--steps", "20",
        "--arms", "easy,uniform", "--output", tmp_path / "ab",
        timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "verdict:" in completed.stdout
    output = completed.stdout + completed.stderr
    assert "temporary server" not in output, output
