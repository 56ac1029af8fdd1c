"""Nightly, end to end, on a production-shaped Prefect server: the README's lines, run as written.

The README's PostgreSQL block is read from README.md and run line by line, with these
substitutions to keep it small and isolated: free ports instead of 5433 and 4200, a temporary
data directory instead of ``/tmp/cl-pg`` (owned by ``postgres`` and the PostgreSQL commands run
as that user when the test runs as root: ``initdb`` refuses root), a generated image folder
instead of ``data/images``, and the run parameters of the tiny test encoder and temporary output
directories added to ``prefect deployment run``. Lines ending in ``&`` run in the background
until the test ends; the database is stopped by the block's last line.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
PG_COMMANDS = ("initdb", "pg_ctl", "createdb")
#: What the block must do, in order (the first word(s) of each command line).
STEPS = (
    "initdb",
    "pg_ctl",
    "createdb",
    "export PREFECT_API_DATABASE_CONNECTION_URL",
    "prefect server start",
    "export PREFECT_API_URL",
    "cl-curriculum deploy",
    "prefect worker start",
    "prefect deployment run",
    "prefect deployment run",
    "pg_ctl",
)


def nightly_block(text: str) -> list[str]:
    """The command lines of the README's PostgreSQL block (comments and blank lines dropped)."""
    blocks = [body for body in FENCE.findall(text) if "initdb " in body]
    assert len(blocks) == 1, "README.md needs exactly one bash block with the initdb line"
    lines = []
    for line in blocks[0].replace("\\\n", " ").splitlines():
        command = line.split("  #", 1)[0].strip()
        if command and not command.startswith("#"):
            lines.append(command)
    return lines


def test_the_readme_shows_every_step_of_a_nightly_on_postgres() -> None:
    lines = nightly_block(README.read_text(encoding="utf-8"))
    assert len(lines) == len(STEPS)
    for line, step in zip(lines, STEPS, strict=True):
        assert line.startswith(step), (line, step)
    assert lines[4].endswith("&") and lines[7].endswith("&")  # server and worker: background
    assert "--watch" in lines[8] and "start" in lines[1] and "stop" in lines[-1]


# --------------------------------------------------------------------------------------------
# Running the block
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else in the newest /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=_major_version)
    if candidates:
        return str(candidates[-1])
    pytest.fail(
        f"{name} not found: install PostgreSQL (apt-get install -y postgresql; .ci/run does)"
    )


def _major_version(path: Path) -> int:
    version = path.parents[1].name
    return int(version) if version.isdigit() else 0


@dataclass
class Shell:
    """Runs README lines: ``export`` into ``env``, ``&`` into the background, the rest to the end."""

    env: dict[str, str]
    substitute: Callable[[str], str]
    extra_args: Callable[[list[str]], list[str]]
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cl-nightly-logs-")))

    def run(self, line: str, timeout: float = 300) -> str:
        line = self.substitute(line)
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            self.env[name] = value  # the block's values name no other variable
            return ""
        background = line.endswith("&")
        argv = self.argv(shlex.split(line.rstrip("&"), comments=True))
        if background:
            log = self.logs / f"{len(self.background)}-{' '.join(argv[2:4])}.log"
            with log.open("w") as out:  # the child keeps its own copy of the file descriptor
                self.background.append(
                    subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out, stderr=out)
                )
            return ""
        done = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}\n{self.tails()}"
        return done.stdout

    def argv(self, words: list[str]) -> list[str]:
        program, args = words[0], words[1:]
        if program in PG_COMMANDS:
            prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            return [*prefix, postgres_bin(program), *args]
        if program == "prefect":
            return [sys.executable, "-m", "prefect", *self.extra_args(args)]
        if program == "cl-curriculum":
            return [sys.executable, "-m", "flows.cli", *args]
        raise AssertionError(f"unexpected program in the README block: {program}")

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs.glob("*.log"))

    def stop_background(self) -> None:
        for process in reversed(self.background):  # the worker before the server
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _data_dir() -> Path:
    """A fresh directory PostgreSQL's user owns (``postgres`` when this test runs as root)."""
    path = Path(tempfile.mkdtemp(prefix="cl-pg-"))
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres")
    return path


@dataclass
class Nightly:
    shell: Shell
    lines: list[str]
    images: Path
    root: Path
    api_url: str

    def api(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.post(f"{self.api_url}/{path}", json=body or {}, timeout=30)
        response.raise_for_status()
        return response.json()


def _wait_healthy(api_url: str, shell: Shell, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the Prefect server did not start in {timeout} s\n{shell.tails()}")


def _run_params(images: Path, weights: Path, root: Path) -> Callable[[list[str]], list[str]]:
    """The tiny test encoder and temporary outputs, added to ``prefect deployment run``."""
    import json

    params = {
        "embedding": {
            "model": "test_efficientnet",
            "weights": str(weights),
            "image_size": 32,
            "device": "cpu",
            "dtype": "float32",
            "chunk_rows": 16,
            "shard_rows": 16,
        },
        "clustering": {"cluster_range": [2, 5]},
        "curriculum": {"warmup_iterations": 100},
        "output": {
            "output_dir": str(root / "artifacts"),
            "work_dir": str(root / "runs"),
            "sweep_runner": "threads",
        },
    }
    added = [
        arg for key, value in params.items() for arg in ("--param", f"{key}={json.dumps(value)}")
    ]

    def extra(args: list[str]) -> list[str]:
        return [*args, *added] if args[:2] == ["deployment", "run"] else args

    return extra


@pytest.fixture
def nightly(
    tmp_path: Path, image_folder_writer: Callable[..., Path], tiny_weights: Path
) -> Iterator[Nightly]:
    """PostgreSQL, ``prefect server start`` on it, the deployment and a worker, as the README
    starts them; everything stopped (and the database with the README's last line) at the end."""
    lines = nightly_block(README.read_text(encoding="utf-8"))
    data, pg_port, api_port = _data_dir(), _free_port(), _free_port()
    images = image_folder_writer(tmp_path / "images", 12, 5)  # 36 images in 3 classes
    replacements = {
        "/tmp/cl-pg": str(data),
        "5433": str(pg_port),
        "4200": str(api_port),
        "imagefolder:data/images": f"imagefolder:{images}",
    }

    def substitute(line: str) -> str:
        for old, new in replacements.items():
            line = line.replace(old, new)
        return line

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",  # pick the run up quickly (default 10 s)
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
    )
    shell = Shell(env, substitute, _run_params(images, tiny_weights, tmp_path))
    api_url = f"http://127.0.0.1:{api_port}/api"
    started_db = False
    try:
        for index, line in enumerate(lines[:8]):  # up to the worker
            shell.run(line)
            started_db = started_db or index == 1
            if line.startswith("prefect server start"):
                _wait_healthy(api_url, shell)
        yield Nightly(shell, lines, images, tmp_path, api_url)
    finally:
        shell.stop_background()
        if started_db:
            shell.run(lines[-1])
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(shell.logs, ignore_errors=True)


def _add_images(folder: Path, writer: Callable[..., Path], scratch: Path) -> int:
    """A generated image added to every class folder under a new name; returns how many."""
    more = writer(scratch, 1, 99)
    added = 0
    for path in sorted(more.glob("*/*.png")):
        path.rename(folder / path.parent.name / f"new-{path.name}")
        added += 1
    return added


def _run_id(output: str) -> str:
    """The flow run id ``prefect deployment run`` prints (``UUID: ...``)."""
    found = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


@pytest.mark.integration
@pytest.mark.timeout(900)  # two server starts and two deployment runs: 2-5 min, more under load
def test_nightly_deployment_on_postgres_publishes_an_incremental_version(
    nightly: Nightly, image_folder_writer: Callable[..., Path], tmp_path: Path
) -> None:
    from cl_core.artifacts import latest_version, list_versions, load_manifest, verify_artifact
    from cl_core.store import open_store

    run_ids = [_run_id(nightly.shell.run(nightly.lines[8], timeout=600))]  # --watch: until done
    first = latest_version(nightly.root / "artifacts", "images")
    assert load_manifest(first)["n_samples"] == 36

    added = _add_images(nightly.images, image_folder_writer, tmp_path / "more")
    run_ids.append(_run_id(nightly.shell.run(nightly.lines[9], timeout=600)))
    second = latest_version(nightly.root / "artifacts", "images")
    manifest = verify_artifact(second)
    assert second.name != first.name and manifest["n_samples"] == 36 + added
    versions = list_versions(nightly.root / "artifacts", "images")
    assert sorted(v.name for v in versions) == sorted([first.name, second.name])

    # Incremental: the lineage names the first version as the parent; its 36 rows were copied,
    # the 3 new ones embedded, and (3 of 39 rows changed: under auto's 10%, same distribution)
    # assigned to the first version's centroids.
    lineage = manifest["lineage"]
    assert load_manifest(first)["lineage"]["decision"] == "fit"
    assert lineage["parent"] == first.name and lineage["policy"]["mode"] == "auto"
    counts = (lineage["added"], lineage["changed"], lineage["removed"], lineage["reused"])
    assert counts == (added, 0, 0, 36), lineage
    assert (lineage["decision"], lineage["centroids_from"]) == ("assign", first.name), lineage
    stores = [
        open_store(path, read_only=True)
        for path in (nightly.root / "runs" / "embeddings").glob("*.zarr")
    ]
    reuses = [store.reuse for store in stores if store.reuse and store.reuse.get("reused")]
    assert len(stores) == 2 and len(reuses) == 1, [store.reuse for store in stores]
    assert (reuses[0]["reused"], reuses[0]["added"]) == (36, added)

    # The server's API: both deployment runs and their stage flow runs are Completed (the
    # others are the cron schedule's next nights); the second run's summary names the reuse and
    # the assignment; each run shows its plots (the assigning run swept no k: no sweep plot).
    runs = nightly.api("flow_runs/filter")
    ran = [run for run in runs if run["state_type"] != "SCHEDULED"]
    states = [(run["name"], run["state_name"], run["deployment_id"]) for run in runs]
    assert {run["id"] for run in ran if run["deployment_id"]} == set(run_ids), states
    assert len(ran) == 2 * 4, states  # curriculum-pipeline + its embed, cluster, curriculum flows
    assert {run["state_type"] for run in ran} == {"COMPLETED"}, states
    assert all(run["deployment_id"] for run in runs if run["state_type"] == "SCHEDULED")
    summaries = nightly.api(
        "artifacts/filter",
        {"artifacts": {"key": {"any_": ["images-summary"]}}, "sort": "CREATED_DESC"},
    )
    summary = summaries[0]["data"]
    assert "reused 36 rows" in summary and second.name in summary
    assert f"assigned {added} new rows to the centroids of {first.name}" in summary
    plots = nightly.api("artifacts/filter", {"artifacts": {"key": {"like_": "images-plot-"}}})
    assert all("](data:image/png;base64," in plot["data"] for plot in plots)
    keys = {run: sorted(p["key"] for p in plots if p["flow_run_id"] == run) for run in run_ids}
    assert keys[run_ids[0]] == [
        f"images-plot-{n}" for n in ("difficulty", "k-sweep", "samples", "schedule")
    ]
    assert keys[run_ids[1]] == [f"images-plot-{n}" for n in ("difficulty", "samples", "schedule")]
