"""The run's own temporary Prefect server (flows._embedded_server.embedded_server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows._embedded_server import (
    EmbeddedServer,
    EmbeddedServerError,
    _server_environment,
    embedded_server,
    stop_server,
)
from flows._prefect_env import EMBEDDED_API_URL, server_configured

REPO = Path(__file__).resolve().parents[2]


def _clean_env(home: Path) -> dict[str, str]:
    """This environment without any Prefect setting, with ``home`` as the Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop(EMBEDDED_API_URL, None)
    env.update(PREFECT_HOME=str(home), PREFECT_PROFILES_PATH=str(home / "none.toml"))
    return env


def test_the_runs_own_server_is_not_a_configured_server() -> None:
    url = "http://127.0.0.1:5123/api"
    assert not server_configured({"PREFECT_API_URL": url, EMBEDDED_API_URL: url})
    assert server_configured({"PREFECT_API_URL": "http://other:4200/api", EMBEDDED_API_URL: url})


def test_a_configured_server_starts_nothing_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.internal:4200/api")
    before = dict(os.environ)
    with embedded_server() as server:
        assert server.api_url is None and server.process is None
        assert dict(os.environ) == before
        server.wait_until_ready()  # returns at once
    assert dict(os.environ) == before


def test_the_server_gets_no_api_url_and_the_users_settings_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:5123/api")
    monkeypatch.setenv(EMBEDDED_API_URL, "http://127.0.0.1:5123/api")
    monkeypatch.setenv("PREFECT_UI_URL", "")
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")
    monkeypatch.delenv("PREFECT_API_BLOCKS_REGISTER_ON_START", raising=False)
    env = _server_environment()
    assert not {"PREFECT_API_URL", "PREFECT_UI_URL", EMBEDDED_API_URL} & set(env)
    assert env["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "true"  # the user's value
    assert env["PREFECT_API_BLOCKS_REGISTER_ON_START"] == "false"


@pytest.mark.integration
def test_a_server_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.exit('no database here')"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = EmbeddedServer("http://127.0.0.1:9/api", process, log_path)  # port 9: refused
    with pytest.raises(EmbeddedServerError, match=r"exited \(code 1\)") as raised:
        server.wait_until_ready(timeout=30)
    assert str(log_path) in str(raised.value) and "no database here" in str(raised.value)


@pytest.mark.integration
def test_stop_server_kills_a_server_that_ignores_sigterm() -> None:
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + (
        "print('ready', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", ignores], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    started = time.monotonic()
    stop_server(process, timeout=0.5)
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


@pytest.mark.integration
def test_the_server_process_stops_when_its_parent_is_gone() -> None:
    """Closing the server's stdin (what the OS does when the run dies) stops it with SIGTERM."""
    watcher = (
        "import threading, time; from flows._embedded_server import _stop_when_stdin_closes\n"
        "threading.Thread(target=_stop_when_stdin_closes, daemon=True).start()\n"
        "print('watching', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", watcher], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO
    )
    assert process.stdout is not None and process.stdout.readline() == b"watching\n"
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == -signal.SIGTERM


TINY_RUN = """
import json, os, sys
from flows import _prefect_env
_prefect_env.configure_environment()
from flows import _embedded_server as served
with served.one_embedded_server_at_a_time(print), served.embedded_server() as server:
    from prefect import flow, task

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def tiny(x: int) -> int:
        return double(x)

    server.wait_until_ready()
    inside = os.environ["PREFECT_API_URL"]
    result = tiny(21)
    pid = server.process.pid
    own_session = os.getsid(pid) != os.getsid(0)
print(json.dumps({"result": result, "url": server.api_url, "inside": inside, "pid": pid,
                  "own_session": own_session,
                  "after": os.environ.get("PREFECT_API_URL"),
                  "server_module": "prefect.server.api.server" in sys.modules}))
"""


@pytest.mark.integration
def test_a_flow_runs_on_the_embedded_server_and_the_server_stops(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", TINY_RUN],
        capture_output=True,
        text=True,
        env=_clean_env(tmp_path / "home"),
        cwd=REPO,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["result"] == 42
    assert report["inside"] == report["url"] and report["url"].startswith("http://127.0.0.1:")
    assert report["after"] is None  # the run's environment is restored
    assert report["own_session"]  # a Ctrl-C for the run does not stop the server under it
    assert report["server_module"] is False  # the run itself never imports the server
    assert "Error logging to API" not in completed.stderr  # logs were sent before the stop
    assert "Starting temporary server" not in completed.stderr  # Prefect started none itself
    assert not Path(f"/proc/{report['pid']}").exists()  # stopped and reaped
    assert (tmp_path / "home" / "prefect.db").exists()  # the run's history stays in its home
