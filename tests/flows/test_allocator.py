"""flows.allocator + flows.launcher: the malloc tunables reach the process, once, and can be refused."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows.allocator import CHOICE_ENV, REEXEC_MARKER, TUNABLES, missing_env

ROOT = Path(__file__).resolve().parents[2]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="glibc malloc tunables (Linux/glibc only)")

# Prints one JSON line per interpreter start, then re-executes through flows.allocator.
PROBE = textwrap.dedent(
    """
    import json, os
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX",
            "_CL_CURRICULUM_ALLOCATOR_REEXEC")
    print(json.dumps({k: os.environ.get(k) for k in keys}), flush=True)
    from flows.allocator import reexec
    reexec()
    """
)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*TUNABLES, CHOICE_ENV, REEXEC_MARKER)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _starts(env: dict[str, str]) -> list[dict[str, str | None]]:
    """The environment each interpreter start of the probe saw (one per line)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@needs_glibc
@pytest.mark.integration
def test_reexec_happens_exactly_once_with_the_tunables() -> None:
    first, second = _starts(_clean_env())  # the original run and exactly one re-executed run
    assert first["MALLOC_MMAP_THRESHOLD_"] is None
    assert {key: second[key] for key in TUNABLES} == TUNABLES
    assert second[REEXEC_MARKER] == "1"


@needs_glibc
@pytest.mark.integration
def test_no_reexec_when_already_set_or_marked() -> None:
    assert len(_starts(_clean_env(**TUNABLES))) == 1
    # A wrapper that strips the variables cannot cause a loop: the marker stops a second exec.
    assert len(_starts(_clean_env(**{REEXEC_MARKER: "1"}))) == 1


@pytest.mark.integration
def test_opt_out_leaves_the_process_alone() -> None:
    (start,) = _starts(_clean_env(**{CHOICE_ENV: "system"}))
    assert start["MALLOC_MMAP_THRESHOLD_"] is None


@needs_glibc
def test_missing_env_respects_user_values_and_opt_out() -> None:
    assert missing_env({}) == TUNABLES
    user = {"MALLOC_TRIM_THRESHOLD_": "0"}
    assert missing_env(user) == {k: v for k, v in TUNABLES.items() if k not in user}
    assert missing_env({CHOICE_ENV: "system"}) == {}
    with pytest.raises(ValueError, match="CL_CURRICULUM_ALLOCATOR='hoard' is not one of"):
        missing_env({CHOICE_ENV: "hoard"})


def _launcher(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.launcher", *args],
        env=_clean_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_console_entry_runs_the_cli() -> None:
    done = _launcher("--help")
    assert done.returncode == 0, done.stderr
    assert "cl-curriculum" in done.stdout


@pytest.mark.integration
def test_bad_choice_is_one_line_exit_2() -> None:
    done = _launcher("--help", **{CHOICE_ENV: "hoard"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "CL_CURRICULUM_ALLOCATOR='hoard' is not one of" in done.stderr


@needs_glibc
@pytest.mark.integration
def test_any_command_runs_with_the_tunables() -> None:
    """``python -m flows.allocator COMMAND``: how make targets (tests, benchmarks) get them."""
    keys = list(TUNABLES)
    printer = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {keys!r}}}))"
    done = subprocess.run(
        [sys.executable, "-m", "flows.allocator", sys.executable, "-c", printer],
        env=_clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == TUNABLES


def test_pyproject_points_the_script_at_the_launcher() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'cl-curriculum = "flows.launcher:main"' in text


def test_the_makefile_repeats_no_other_values() -> None:
    """Where the Makefile still sets a tunable itself, it sets the module's value."""
    text = (ROOT / "Makefile").read_text()
    for key, value in TUNABLES.items():
        for found in re.findall(rf"^\s*export {key}\s*\??=\s*(\S+)", text, re.MULTILINE):
            assert found == value, key
