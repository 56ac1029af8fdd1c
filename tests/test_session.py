"""The test session's own machinery: what a session leaves in the temporary directory, and the
search for per-process caches that every test starts and ends with (``tests/process_caches.py``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from process_caches import process_caches

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


def test_finding_the_caches_survives_a_finalizer_that_changes_sys_modules() -> None:
    # Regression (a clean-clone CI run failed a teardown with "dictionary changed size during
    # iteration"): the search listed sys.modules item by item, an item's tuple started the
    # garbage collector, and a finalizer (aiohttp's "Unclosed client session" log) changed
    # sys.modules meanwhile. Here every collection runs a finalizer that adds a module.
    added: list[str] = []

    class AddsAModuleWhenCollected:
        budget = 1000

        def __del__(self) -> None:
            if AddsAModuleWhenCollected.budget > 0:
                AddsAModuleWhenCollected.budget -= 1
                name = f"cl_test_collected_{len(added)}"
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
                garbage_cycle()  # the next collection finds another one

    def garbage_cycle() -> None:
        item = AddsAModuleWhenCollected()
        item.cycle = item  # type: ignore[attr-defined]

    import flows.sweep_sample  # noqa: F401  (a project module with a cache to find)

    thresholds = gc.get_threshold()
    try:
        garbage_cycle()
        gc.set_threshold(1)  # a collection at every allocation of a tracked object
        caches = process_caches()
    finally:
        gc.set_threshold(*thresholds)
        AddsAModuleWhenCollected.budget = 0
        gc.collect()
        for name in added:
            del sys.modules[name]
    assert added  # finalizers ran while the caches were searched
    assert caches == process_caches()  # and the search found what it finds without them
