"""``cl-curriculum deploy`` and ``serve``: the nightly deployment of ``deployments/``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.console import EXIT_FAILED, BadInput, bad_input_exits, fail

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
SERVE_SCRIPT = ROOT / "deployments" / "serve.py"


def _require_checkout(path: Path) -> None:
    if not path.is_file():
        raise BadInput(
            f"{path} not found; deploy/serve run from a source checkout of cl-curriculum "
            "(pip install -e .)"
        )


def deploy(
    pool: Annotated[str, typer.Option(help="process work pool (created if missing)")] = (
        "curriculum-pool"
    ),
) -> None:
    """Register the nightly deployment of deployments/prefect.yaml with a Prefect server."""
    with bad_input_exits():
        _require_checkout(PREFECT_YAML)
        if not os.environ.get("PREFECT_API_URL"):
            raise BadInput(
                "deploy needs a Prefect server: run `prefect server start` and "
                "`export PREFECT_API_URL=http://127.0.0.1:4200/api` first"
            )
    prefect_command("work-pool", "create", pool, "--type", "process", "--overwrite")
    prefect_command("--no-prompt", "deploy", "--prefect-file", str(PREFECT_YAML), "--all", cwd=ROOT)
    typer.echo(f"Deployed. Start a worker: prefect worker start --pool {pool}")


def prefect_command(*args: str, cwd: Path | None = None) -> None:
    """``prefect ARGS`` (this interpreter's Prefect CLI); exit 1 with one line if it fails."""
    completed = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=cwd, check=False)
    if completed.returncode != 0:
        fail(f"`prefect {' '.join(args)}` failed (exit {completed.returncode})", EXIT_FAILED)


def serve(
    cron: Annotated[str | None, typer.Option(help="override the nightly cron schedule")] = None,
) -> None:
    """Serve the nightly deployment from this process (no work pool or worker needed)."""
    from flows.prefect_env import configure_environment

    configure_environment()  # before Prefect is first imported
    with bad_input_exits():
        _require_checkout(SERVE_SCRIPT)
        module = load_serve_script()
        if cron is not None:
            from prefect.client.schemas.schedules import CronSchedule

            CronSchedule(cron=cron)  # validates the expression before serving
    module.main(["--cron", cron] if cron else [])


def load_serve_script() -> Any:
    """``deployments/serve.py`` as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cl_curriculum_serve", SERVE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
