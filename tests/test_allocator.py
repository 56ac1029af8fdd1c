"""cl_core.allocator + flows.launcher: the malloc set-up reaches the process, once, and can be refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cl_core import allocator
from cl_core.allocator import (
    ALLOCATOR_ENV,
    GLIBC_TUNABLES,
    REEXEC_MARKER,
    AllocatorStatus,
    allocator_status,
    recommended_env,
)

ROOT = Path(__file__).resolve().parents[1]
GLIBC = allocator._is_glibc()
needs_glibc = pytest.mark.skipif(not GLIBC, reason="glibc malloc tunables (Linux/glibc only)")

ALLOCATOR_KEYS = (*GLIBC_TUNABLES, ALLOCATOR_ENV, REEXEC_MARKER, "LD_PRELOAD", "MALLOC_CONF")

# Prints one JSON line per interpreter run, re-executes through the launcher, then reports.
PROBE = textwrap.dedent(
    """
    import json, os, sys
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX",
            "_CL_CURRICULUM_ALLOCATOR_REEXEC")
    print(json.dumps({"start": {k: os.environ.get(k) for k in keys}}), flush=True)
    from flows.launcher import reexec_with_allocator
    reexec_with_allocator()
    from cl_core.allocator import allocator_status
    s = allocator_status()
    print(json.dumps({"status": [s.choice, s.active, s.mechanism, s.reexecuted]}), flush=True)
    """
)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_KEYS}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _run_probe(env: dict[str, str]) -> tuple[list[dict], subprocess.CompletedProcess]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return lines, done


@needs_glibc
@pytest.mark.integration
def test_launcher_reexecs_exactly_once_with_the_tunables() -> None:
    lines, done = _run_probe(_clean_env())
    assert done.returncode == 0, done.stderr
    starts = [line["start"] for line in lines if "start" in line]
    assert len(starts) == 2  # the original run and exactly one re-executed run
    assert starts[0]["MALLOC_MMAP_THRESHOLD_"] is None
    assert starts[1]["MALLOC_MMAP_THRESHOLD_"] == GLIBC_TUNABLES["MALLOC_MMAP_THRESHOLD_"]
    assert starts[1]["MALLOC_TRIM_THRESHOLD_"] == GLIBC_TUNABLES["MALLOC_TRIM_THRESHOLD_"]
    assert starts[1]["MALLOC_ARENA_MAX"] == "1"
    assert starts[1]["_CL_CURRICULUM_ALLOCATOR_REEXEC"] == "1"
    assert lines[-1]["status"] == ["glibc", True, "env", True]


@needs_glibc
@pytest.mark.integration
def test_launcher_does_not_reexec_when_already_set_or_marked() -> None:
    lines, done = _run_probe(_clean_env(**GLIBC_TUNABLES))
    assert done.returncode == 0, done.stderr
    assert len([line for line in lines if "start" in line]) == 1
    assert lines[-1]["status"] == ["glibc", True, "env", False]
    # A wrapper that strips the variables cannot cause a loop: the marker stops a second exec.
    lines, done = _run_probe(_clean_env(**{REEXEC_MARKER: "1"}))
    assert done.returncode == 0, done.stderr
    assert len([line for line in lines if "start" in line]) == 1
    assert lines[-1]["status"] == ["glibc", True, "mallopt", True]


@pytest.mark.integration
def test_opt_out_leaves_the_process_alone() -> None:
    lines, done = _run_probe(_clean_env(**{ALLOCATOR_ENV: "system"}))
    assert done.returncode == 0, done.stderr
    starts = [line["start"] for line in lines if "start" in line]
    assert len(starts) == 1 and starts[0]["MALLOC_MMAP_THRESHOLD_"] is None
    assert lines[-1]["status"] == ["system", True, "none", False]


@pytest.mark.integration
def test_bad_choice_is_one_line_exit_2() -> None:
    _, done = _run_probe(_clean_env(**{ALLOCATOR_ENV: "hoard"}))
    assert done.returncode == 2
    assert "CL_CURRICULUM_ALLOCATOR='hoard' is not one of" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_console_entry_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows.launcher", "--help"],
        env=_clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "cl-curriculum" in done.stdout


def test_pyproject_points_the_script_at_the_launcher() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'cl-curriculum = "flows.launcher:main"' in text


@needs_glibc
def test_recommended_env_respects_user_values_and_opt_out() -> None:
    assert recommended_env(environ={}) == GLIBC_TUNABLES
    user = {"MALLOC_TRIM_THRESHOLD_": "0"}
    assert recommended_env(environ=user) == {
        k: v for k, v in GLIBC_TUNABLES.items() if k != "MALLOC_TRIM_THRESHOLD_"
    }
    assert recommended_env(environ={ALLOCATOR_ENV: "system"}) == {}
    assert recommended_env("system", environ={}) == {}
    with pytest.raises(ValueError, match="choice='tc' is not one of"):
        recommended_env("tc", environ={})


def test_missing_preload_library_names_the_package(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "find_preload_library", lambda name: None)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    with pytest.raises(ValueError, match="apt-get install libtcmalloc-minimal4"):
        recommended_env("tcmalloc", environ={})


def test_preload_env_prepends_the_library(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "find_preload_library", lambda name: f"/lib/lib{name}.so")
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    env = recommended_env("jemalloc", environ={"LD_PRELOAD": "/x/other.so"})
    assert env["LD_PRELOAD"] == "/lib/libjemalloc.so /x/other.so"
    assert "dirty_decay_ms:-1" in env["MALLOC_CONF"]
    assert recommended_env("tcmalloc", environ={"LD_PRELOAD": "/lib/libtcmalloc.so"}) == {}


@needs_glibc
@pytest.mark.integration
def test_apply_mallopt_in_process_and_exports_for_children() -> None:
    code = textwrap.dedent(
        """
        import json, os
        from cl_core.allocator import apply_mallopt, allocator_status
        before = allocator_status()
        ok = apply_mallopt()
        after = allocator_status()
        print(json.dumps([before.active, ok, after.active, after.mechanism,
                          os.environ.get("MALLOC_TRIM_THRESHOLD_")]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    before, ok, after, mechanism, exported = json.loads(done.stdout.strip().splitlines()[-1])
    assert (before, ok, after, mechanism) == (False, True, True, "mallopt")
    assert exported == GLIBC_TUNABLES["MALLOC_TRIM_THRESHOLD_"]


def test_status_is_validated_and_describes_itself() -> None:
    status = allocator_status({ALLOCATOR_ENV: "system"})
    assert status.choice == "system" and "system default" in status.describe()
    with pytest.raises(ValueError, match="choice='x'"):
        AllocatorStatus("x", True, "env")
    assert "glibc" in allocator_status({}).describe()


def test_makefile_exports_the_same_tunables() -> None:
    text = (ROOT / "Makefile").read_text()
    for key, value in GLIBC_TUNABLES.items():
        assert f"export {key} ?= {value}" in text
