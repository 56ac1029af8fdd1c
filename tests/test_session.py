"""The test session cleans up after itself: what ``make test`` leaves in the temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONE_TEST = "tests/flows/test_prefect_env.py::test_an_unreadable_profiles_file_means_no_server"


@pytest.mark.integration
def test_a_session_on_two_workers_leaves_no_prefect_home_behind(tmp_path: Path) -> None:
    # Regression: every session, and each of its xdist workers, made a `cl-curriculum-prefect-*`
    # directory with `tempfile.mkdtemp` and never removed it (250 of them on one machine).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["TMPDIR"] = str(tmp_path)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", ONE_TEST]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert not list(tmp_path.glob("cl-curriculum-prefect-*"))
