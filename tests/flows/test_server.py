"""The run's temporary Prefect server (flows.server: Prefect's own `prefect server start`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.prefect_env import EMBEDDED_API_URL, server_configured
from flows.server import (
    ServerError,
    TemporaryServer,
    server_environment,
    take_turns,
    temporary_server,
)

REPO = Path(__file__).resolve().parents[2]


def _clean_env(home: Path) -> dict[str, str]:
    """This environment without any Prefect setting, with ``home`` as the Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop(EMBEDDED_API_URL, None)
    env.update(PREFECT_HOME=str(home), PREFECT_PROFILES_PATH=str(home / "none.toml"))
    return env


def _gone(pid: int) -> bool:
    """The process has exited (no longer listed, or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_runs_own_server_is_not_a_configured_server() -> None:
    url = "http://127.0.0.1:5123/api"
    assert not server_configured({"PREFECT_API_URL": url, EMBEDDED_API_URL: url})
    assert server_configured({"PREFECT_API_URL": "http://other:4200/api", EMBEDDED_API_URL: url})


def test_a_configured_server_starts_nothing_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.internal:4200/api")
    before = dict(os.environ)
    with temporary_server(print) as server:
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
    monkeypatch.delenv("PREFECT_SERVER_UI_ENABLED", raising=False)
    env = server_environment()
    assert not {"PREFECT_API_URL", "PREFECT_UI_URL", EMBEDDED_API_URL} & set(env)
    assert env["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "true"  # the user's value
    assert env["PREFECT_SERVER_UI_ENABLED"] == "false"
    assert env["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] == "false"


@pytest.mark.integration
def test_a_server_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.exit('Port 4200 is already in use.')"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = TemporaryServer("http://127.0.0.1:9/api", process, log_path)  # port 9: refused
    with pytest.raises(ServerError, match=r"exited \(code 1\)") as raised:
        server.wait_until_ready(timeout=30)
    assert str(log_path) in str(raised.value) and "already in use" in str(raised.value)


@pytest.mark.integration
def test_the_server_stops_when_the_run_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed run leaves no server behind (the child gets SIGTERM from the kernel)."""
    parent = (
        "import sys, time; from flows.server import start_child\n"
        f"child = start_child(['sleep', '120'], open({str(tmp_path / 'log')!r}, 'wb'))\n"
        "print(child.pid, flush=True); time.sleep(120)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert process.stdout is not None
    child = int(process.stdout.readline())
    assert os.getsid(child) == child  # its own session: a Ctrl-C for the run does not reach it
    assert not _gone(child)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(child)


@pytest.mark.integration
def test_runs_on_one_prefect_home_take_turns(tmp_path: Path) -> None:
    holder = (
        "import sys; from pathlib import Path; from flows.server import take_turns\n"
        f"lock = take_turns(Path({str(tmp_path)!r}), print)\n"
        "print('held', flush=True); sys.stdin.readline()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        notes: list[str] = []

        def release_holder(message: str) -> None:
            notes.append(message)
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.flush()

        take_turns(tmp_path, release_holder).close()
        assert len(notes) == 1 and "waiting for another run" in notes[0]
    finally:
        process.wait(timeout=30)


TINY_RUN = """
import json, os, sys
from flows import prefect_env
prefect_env.configure_environment()
from flows.server import temporary_server
with temporary_server(print) as server:
    from prefect import flow, get_run_logger, task

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def tiny(x: int) -> int:
        get_run_logger().info("a line for the run's log")
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
def test_a_flow_runs_on_the_temporary_server_and_the_server_stops(tmp_path: Path) -> None:
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
    assert _gone(report["pid"])  # stopped when the run's interpreter exited
    assert (tmp_path / "home" / "prefect.db").exists()  # the run's history stays in its home
