"""Docs that run: every ``cl-curriculum`` command line in README.md and deployments/README.md.

The commands are read from the markdown here, so the docs cannot drift from the CLI. Each one runs
as written, with these substitutions to keep it small and offline: the working directory is a
temporary one, image folders are a generated 240-image folder, every model is timm's tiny
``test_efficientnet`` with seeded random weights at 32 px on the CPU, ``<id>`` is a store an
earlier command wrote, the Dask address is a local cluster's, ``--no-progress`` is added, ``ab``
runs with ``--quick`` (``--objective mae``: also 2 seeds of 20 steps), and
``deploy``/``serve`` talk to the session's test server (``serve`` runs until its deployment is
registered, then is stopped).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flows import cli, cli_deploy, runs
from flows.params import EmbedParams

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "deployments" / "README.md"]
SUBCOMMANDS = ("run", "demo", "inspect", "preview", "ab", "deploy", "serve")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`(cl-curriculum [^`]+)`")
MENTION = re.compile(r"cl-curriculum\s+(?:" + "|".join(SUBCOMMANDS) + r")\b")
runner = CliRunner()


def fenced_commands(text: str) -> list[list[str]]:
    """argv (after ``cl-curriculum``) of every command line in the shell code blocks of ``text``."""
    commands = []
    for language, body in FENCE.findall(text):
        if language not in ("bash", "sh", "shell", "console", ""):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if line.startswith("cl-curriculum "):
                commands.append(shlex.split(line, comments=True)[1:])
            elif MENTION.search(line):
                raise AssertionError(f"a command hidden inside another line: {line!r}")
    return commands


def documented_commands() -> list[list[str]]:
    """Every distinct command of both READMEs, in the order they appear."""
    seen: list[list[str]] = []
    for path in DOCS:
        for argv in fenced_commands(path.read_text(encoding="utf-8")):
            if argv not in seen:
                seen.append(argv)
    return seen


def test_the_readmes_document_every_command_they_mention() -> None:
    commands = documented_commands()
    assert {argv[0] for argv in commands} == set(SUBCOMMANDS)
    for path in DOCS:
        for inline in INLINE.findall(path.read_text(encoding="utf-8")):
            argv = shlex.split(inline)[1:]
            if argv and argv[0] in SUBCOMMANDS:
                assert argv in commands, f"{path.name}: `{inline}` is not in a code block"


# --------------------------------------------------------------------------------------------
# Running them
# --------------------------------------------------------------------------------------------


class Workspace:
    """Rewrites a documented command into a small, offline one and runs it."""

    def __init__(self, root: Path, images: Path, weights: Path, dask_address: str) -> None:
        self.root = root
        self.images = images
        self.weights = weights
        self.dask_address = dask_address

    def run_argv(self, argv: list[str]) -> list[str]:
        dataset, options = argv[1], argv[2:]
        if dataset.startswith("imagefolder:"):
            dataset = "imagefolder:" + self.image_folder(dataset.removeprefix("imagefolder:"))
        if dataset.startswith("zarr:"):
            dataset = dataset.replace("<id>", self.earliest_store())
        options = [self.option_value(options, i) for i in range(len(options))]
        if not dataset.startswith("zarr:"):
            if "--model" not in options:
                options += ["--model", "test_efficientnet"]
            if "--weights" not in options:
                options += ["--weights", str(self.weights)]
            options += ["--image-size", "32", "--device", "cpu"]
        return ["run", dataset, *options, "--no-progress"]

    def option_value(self, options: list[str], index: int) -> str:
        previous = options[index - 1] if index else ""
        replacements = {
            "--model": "test_efficientnet",
            "--weights": str(self.weights),
            "--dask-address": self.dask_address,
        }
        return replacements.get(previous, options[index])

    def image_folder(self, documented: str) -> str:
        """A link at the documented path (made relative to the workspace) to the test images."""
        link = self.root / documented.lstrip("/")
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(self.images, target_is_directory=True)
        return documented if not documented.startswith("/") else str(link)

    def earliest_store(self) -> str:
        stores = sorted(
            (self.root / "runs" / "embeddings").glob("*.zarr"), key=lambda p: p.stat().st_mtime
        )
        assert stores, "a zarr: command runs before any store was written"
        return stores[0].stem


def tiny_demo_params(weights: Path) -> Any:
    real = cli.demo_params

    def demo_params(*args: Any, **kwargs: Any) -> dict[str, Any]:
        params = real(*args, **kwargs)
        params["embedding"] = EmbedParams(
            model="test_efficientnet",
            weights=str(weights),
            image_size=32,
            device="cpu",
            chunk_rows=256,
            shard_rows=256,
        )
        return params

    return demo_params


@pytest.fixture(scope="module")
def docs_images(
    tmp_path_factory: pytest.TempPathFactory, image_folder_writer: Callable[..., Path]
) -> Path:
    """240 generated PNGs in 3 class folders: enough rows that the documented default k range
    (up to 20 or 30 clusters, each with its own easiest sample) leaves room for f0 = 0.3."""
    return image_folder_writer(tmp_path_factory.mktemp("docs-images"), 80, 11)


@pytest.fixture
def dask_address() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _serve_until_registered(argv: list[str], env: dict[str, str]) -> None:
    """Start ``cl-curriculum serve ...``; once the deployment exists in the API, stop it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for earlier in client.read_deployments():  # only what this serve registers counts
            client.delete_deployment(earlier.id)
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    try:
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline and process.poll() is None:
                found = client.read_deployments()
                if any(d.name == "nightly-digits" and _serving(d, argv) for d in found):
                    return
                time.sleep(1.0)
        output = process.communicate(timeout=5)[0] if process.poll() is not None else ""
        raise AssertionError(f"`cl-curriculum {shlex.join(argv)}` registered nothing: {output}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _serving(deployment: Any, argv: list[str]) -> bool:
    wanted = argv[argv.index("--cron") + 1] if "--cron" in argv else "0 2 * * *"
    return any(getattr(s.schedule, "cron", None) == wanted for s in deployment.schedules)


def test_every_documented_command_parses_and_passes_validation(
    blob_store: Path,
    image_folder: Path,
    tiny_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fast guard for the default suite: options, arguments and the pre-run checks of every
    documented command (the run itself, deploy's subprocesses and serve's loop are stubbed; the
    ``slow`` test below runs them for real)."""
    from cl_core.artifacts import publish_curriculum

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "demo_params", tiny_demo_params(tiny_weights))
    ran: list[str] = []

    def run_flow(flow: str, params: dict, **options: Any) -> tuple[_FakeResult, float]:
        if options.get("checks"):
            options["checks"]()  # the checks that overlap the server's start
        ran.append("ab" if flow == "flows.ab:curriculum_ab" else "run")
        return _FakeResult(), 0.0

    monkeypatch.setattr(runs, "run_flow", run_flow)
    monkeypatch.setattr(cli_deploy, "prefect_command", lambda *_, **__: ran.append("deploy"))
    monkeypatch.setattr(cli_deploy, "load_serve_script", lambda: _FakeServe(ran))
    # the documented --dask-address names the user's scheduler; the slow test starts a real one
    monkeypatch.setattr("flows.runners.check_dask_address", lambda address, **_: None)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    (tmp_path / "runs" / "embeddings").mkdir(parents=True)
    (tmp_path / "runs" / "embeddings" / "blobs.zarr").symlink_to(blob_store)
    # as many rows as the digits: `ab --dataset digits` checks that the artifact scores them all
    publish_curriculum("artifacts", "digits", difficulty=np.linspace(0, 1, 1797))
    publish_updatable(tmp_path / "artifacts", "pets")  # `--refit never` needs a version to update
    workspace = Workspace(tmp_path, image_folder, tiny_weights, "tcp://127.0.0.1:8786")
    commands = documented_commands()
    for argv in commands:
        if argv[0] == "run":
            argv = workspace.run_argv(argv)
        elif argv[0] == "demo":
            argv = [*argv, "--no-progress"]
        result = runner.invoke(cli.app, argv)
        assert result.exit_code == 0, f"cl-curriculum {shlex.join(argv)}:\n{result.output}"
    assert ran.count("run") == sum(argv[0] in ("run", "demo") for argv in commands)
    assert ran.count("ab") == sum(argv[0] == "ab" for argv in commands)


def publish_updatable(root: Path, name: str) -> None:
    """A version of ``name`` published with its samples' file keys (what a run publishes)."""
    from cl_core.cluster import ClusterConfig
    from cl_core.store import FileKeys, create_store
    from cl_core.update import fit_curriculum

    n_rows = 12
    keys = FileKeys(
        root="/data/pets",
        paths=np.array([f"c/{i:02d}.png" for i in range(n_rows)]),
        sizes=np.full(n_rows, 10),
        mtimes_ns=np.arange(n_rows),
    )
    store = create_store(
        root.parent / "keyed.zarr", n_rows, 4, chunk_rows=4, dtype="float32",
        attrs={"dataset_fingerprint": "pets-1"}, file_keys=keys,
    )  # fmt: skip
    features = np.random.default_rng(0).normal(size=(n_rows, 4)).astype(np.float32)
    for shard in range(store.n_shards):
        start, stop = store.shard_range(shard)
        store.write_shard(shard, features[start:stop])
    store.finalize()
    fit_curriculum(store, root, name, cluster_config=ClusterConfig(n_clusters=2))


class _FakeResult:
    """What ``run`` and ``ab`` print from a flow's result."""

    artifact_path = report_path = name = version = model_id = chosen_by = "x"
    table = verdict = results_dir = "x"
    n_samples = dim = n_clusters = 1
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    task_states: tuple[str, ...] = ()
    reuse: dict[str, Any] | None = None  # a run without an earlier store reuses nothing
    lineage: dict[str, Any] | None = None  # a run's clusters: fitted, assigned or refit

    def count(self, state: str) -> int:
        return 0


class _FakeServe:
    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    def main(self, argv: list[str]) -> int:
        self.ran.append("serve")
        return 0


@pytest.mark.slow
def test_every_documented_command_runs(
    prefect_server: None,
    server_env: dict[str, str],
    docs_images: Path,
    tiny_weights: Path,
    dask_address: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "demo_params", tiny_demo_params(tiny_weights))
    workspace = Workspace(tmp_path, docs_images, tiny_weights, dask_address)
    # `ab` is documented as run after `make demo`: it needs a published artifact, so it goes last
    for argv in sorted(documented_commands(), key=lambda argv: argv[0] == "ab"):
        if argv[0] == "serve":
            _serve_until_registered(argv, server_env)
            continue
        if argv[0] == "run":
            argv = workspace.run_argv(argv)
        elif argv[0] == "demo":
            argv = [*argv, "--no-progress"]
        elif argv[0] == "ab":
            argv = [*argv, "--quick"]
            if "mae" in argv:  # an MAE run costs several supervised ones: a smoke-sized one
                argv += ["--seeds", "2", "--steps", "20"]
        elif argv[0] == "deploy":
            monkeypatch.setenv("PREFECT_API_URL", server_env["PREFECT_API_URL"])
        result = runner.invoke(cli.app, argv)
        assert result.exit_code == 0, f"cl-curriculum {shlex.join(argv)}:\n{result.output}"
    assert os.path.exists(tmp_path / "artifacts" / "digits" / "latest")
