"""flows.launcher: the console script skips the interpreter's exit-time garbage collections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration  # every test runs the console script in a child Python

# Runs the console-script entry (argv None) on `--help`, then reports from an exit handler
# registered first (so it runs last, after the CLI's own SystemExit has unwound main()).
PROBE = """
import atexit, gc, json, sys
atexit.register(lambda: print(json.dumps({"frozen": gc.get_freeze_count()}), flush=True))
sys.argv = ["cl-curriculum", "--help"]
from flows.launcher import main
main(ARGV)
"""


def _frozen_at_exit(argv: str) -> int:
    env = {**os.environ, "CL_CURRICULUM_ALLOCATOR": "system"}  # no re-exec in this probe
    completed = subprocess.run(
        [sys.executable, "-c", PROBE.replace("ARGV", argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return int(json.loads(completed.stdout.strip().splitlines()[-1])["frozen"])


def test_the_console_script_freezes_the_collector_before_exit() -> None:
    assert _frozen_at_exit("") > 10_000  # every object alive at the end is out of gc's reach


def test_a_call_from_python_leaves_the_collector_alone() -> None:
    assert _frozen_at_exit("['--help']") == 0
