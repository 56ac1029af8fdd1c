"""Embedded-run defaults: which environment a run without a configured server gets."""

from __future__ import annotations

from pathlib import Path

from flows._prefect_env import embedded_defaults, profile_api_url

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
