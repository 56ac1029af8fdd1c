"""deployments/: prefect.yaml is valid for `prefect deploy`, serve.py builds the same deployment."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
NIGHTLY = "0 2 * * *"


def _serve_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "serve_under_test", ROOT / "deployments" / "serve.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document = yaml.safe_load(PREFECT_YAML.read_text())
    (deployment,) = document["deployments"]
    return deployment


def test_prefect_yaml_names_the_flow_pool_and_schedule(spec: dict) -> None:
    """What `prefect deploy` reads (its own schema check runs in the slow `deploy` test below)."""
    assert spec["entrypoint"] == "flows/pipeline.py:curriculum_pipeline"
    assert spec["work_pool"]["name"] == "curriculum-pool"
    (schedule,) = spec["schedules"]
    assert schedule["cron"] == NIGHTLY


def test_entrypoint_loads_the_pipeline_flow(monkeypatch: pytest.MonkeyPatch, spec: dict) -> None:
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(ROOT)  # `prefect deploy` resolves entrypoints from the project root
    loaded = load_flow_from_entrypoint(spec["entrypoint"])
    assert loaded.name == "curriculum-pipeline"


def test_yaml_parameters_are_valid_flow_parameters(spec: dict) -> None:
    from flows.pipeline import curriculum_pipeline

    validated = curriculum_pipeline.validate_parameters(spec["parameters"])
    assert validated["dataset"].spec == "digits"
    assert validated["clustering"].cluster_range == (2, 20)
    assert validated["output"].sweep_runner == "dask"


def test_yaml_parameter_typos_are_rejected(spec: dict) -> None:
    from flows.pipeline import curriculum_pipeline

    broken = {**spec["parameters"], "clustering": {"cluster_rnage": [2, 20]}}
    with pytest.raises(Exception, match="cluster_rnage"):
        curriculum_pipeline.validate_parameters(broken)


def test_serve_builds_the_scheduled_deployment(spec: dict) -> None:
    (deployment,) = _serve_module().build_deployments()
    assert deployment.name == spec["name"] == "nightly-digits"
    assert deployment.flow_name == "curriculum-pipeline"
    assert deployment.entrypoint == "flows.pipeline.curriculum_pipeline"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == NIGHTLY
    assert deployment.parameters == spec["parameters"]
    assert set(deployment.tags) >= {"curriculum", "nightly"}


def test_serve_cron_override() -> None:
    (deployment,) = _serve_module().build_deployments(cron="*/15 * * * *")
    assert deployment.schedules[0].schedule.cron == "*/15 * * * *"


@pytest.mark.slow
def test_cli_deploy_registers_the_nightly_deployment(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cl-curriculum deploy` against a real (test) server: work pool + scheduled deployment."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    result = CliRunner().invoke(app, ["deploy", "--pool", "curriculum-pool"])
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("curriculum-pipeline/nightly-digits")
        assert client.read_work_pool("curriculum-pool").type == "process"
    assert deployment.work_pool_name == "curriculum-pool"
    assert deployment.schedules[0].schedule.cron == NIGHTLY
    assert deployment.entrypoint == "flows/pipeline.py:curriculum_pipeline"
