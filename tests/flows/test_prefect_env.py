"""Embedded-run defaults: which environment a run without a configured server gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.prefect_env import embedded_defaults, profile_api_url

PROFILES = """
active = "remote"

[profiles.remote]
PREFECT_API_URL = "http://prefect.internal:4200/api"

[profiles.local]
PREFECT_LOGGING_LEVEL = "INFO"
"""


def test_no_server_gives_a_project_local_home_and_quiet_server(tmp_path: Path) -> None:
    env = {"PREFECT_HOME": str(tmp_path / "empty-home")}
    defaults = embedded_defaults(cwd=tmp_path, environ=env)
    assert defaults["PREFECT_HOME"] == str(tmp_path / ".prefect")
    assert defaults["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert int(defaults["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) > 20


def test_api_url_in_the_environment_keeps_the_users_home(tmp_path: Path) -> None:
    env = {"PREFECT_API_URL": "http://127.0.0.1:4200/api", "PREFECT_HOME": str(tmp_path)}
    assert "PREFECT_HOME" not in embedded_defaults(cwd=tmp_path, environ=env)


def test_api_url_in_the_active_profile_keeps_the_users_home(tmp_path: Path) -> None:
    # Regression: only the environment variable was checked, so a server set with
    # `prefect config set PREFECT_API_URL=...` was hidden behind the project-local home.
    (tmp_path / "profiles.toml").write_text(PROFILES, encoding="utf-8")
    env = {"PREFECT_HOME": str(tmp_path)}
    assert profile_api_url(env) == "http://prefect.internal:4200/api"
    assert "PREFECT_HOME" not in embedded_defaults(cwd=tmp_path / "project", environ=env)


def test_the_selected_profile_decides(tmp_path: Path) -> None:
    profiles = tmp_path / "elsewhere.toml"
    profiles.write_text(PROFILES, encoding="utf-8")
    env = {"PREFECT_PROFILES_PATH": str(profiles), "PREFECT_PROFILE": "local"}
    assert profile_api_url(env) is None
    assert "PREFECT_HOME" in embedded_defaults(cwd=tmp_path, environ=env)


def test_an_unreadable_profiles_file_means_no_server(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text("active = [unterminated", encoding="utf-8")
    assert profile_api_url({"PREFECT_HOME": str(tmp_path)}) is None


@pytest.mark.integration
def test_importing_flows_changes_nothing(tmp_path: Path) -> None:
    """No import-time side effects: the environment and Prefect's modules stay as they were."""
    import json
    import os
    import subprocess
    import sys

    # scikit-learn sets KMP_DUPLICATE_LIB_OK on import (its own default, not ours): imported
    # first, so that the check does not depend on whether an earlier test imported it.
    script = (
        "import json, os, ssl, sklearn; before = dict(os.environ)\n"
        "import flows, flows.pipeline, flows.cli\n"
        "import prefect.client.orchestration as o\n"
        "print(json.dumps({'env_same': dict(os.environ) == before, 'ssl_real': o.ssl is ssl}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {
        "env_same": True,
        "ssl_real": True,
    }


def test_configure_environment_applies_defaults_without_overriding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.prefect_env import configure_environment

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "mine"))
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    configure_environment()
    import os

    assert os.environ["PREFECT_HOME"] == str(tmp_path / "mine")  # the user's setting wins
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
