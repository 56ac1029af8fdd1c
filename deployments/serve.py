"""Serve the nightly curriculum deployment from this process (no work pool or worker needed).

    python deployments/serve.py            # registers the deployment and waits for its schedule
    python deployments/serve.py --cron "*/30 * * * *"

The deployment's name, parameters, tags and cron schedule are read from ``deployments/prefect.yaml``
so that ``prefect deploy`` (work pool + worker) and ``serve`` (this process) schedule the same runs.
Needs a Prefect API: ``prefect server start`` and ``PREFECT_API_URL=http://127.0.0.1:4200/api``
(with no API URL, serve starts a temporary local server that lives as long as this process).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments`` entries of ``prefect.yaml`` as plain dicts."""
    import yaml

    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    specs = document.get("deployments") or []
    if not specs:
        raise ValueError(f"{path} defines no deployments; add one under 'deployments:'")
    return specs


def build_deployments(cron: str | None = None, path: Path = PREFECT_YAML) -> list[Any]:
    """``RunnerDeployment`` objects for every deployment in ``prefect.yaml``.

    Parameters
    ----------
    cron : str, optional
        Replaces the file's cron schedule (e.g. for a quick test every minute).
    """
    from flows.pipeline import curriculum_pipeline

    deployments = []
    for spec in specs_for_pipeline(load_deployment_specs(path)):
        schedule = (spec.get("schedules") or [{}])[0]
        deployments.append(
            curriculum_pipeline.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or {},
                cron=cron or schedule.get("cron"),
                entrypoint_type=_module_entrypoint(),
            )
        )
    return deployments


def specs_for_pipeline(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The specs whose entrypoint is the curriculum pipeline flow."""
    return [s for s in specs if str(s.get("entrypoint", "")).endswith(":curriculum_pipeline")]


def _module_entrypoint() -> Any:
    from prefect.types.entrypoint import EntrypointType

    # Served runs import the flow as `flows.pipeline` (a module of the installed package), which
    # works from any working directory; the file path would only work from the repository root.
    return EntrypointType.MODULE_PATH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cron", help="override the cron schedule from prefect.yaml")
    args = parser.parse_args(argv)
    from flows.prefect_env import configure_environment

    configure_environment()  # the run defaults, before Prefect is first imported
    from prefect import serve

    serve(*build_deployments(cron=args.cron))
    return 0


if __name__ == "__main__":
    sys.exit(main())
