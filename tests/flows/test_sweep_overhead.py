"""The k sweep's overhead cuts: Dask runner subclass, live settings hand-over, sample cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from flows import _files, tasks
from flows.params import OutputParams
from flows.pipeline import _live_settings, sweep_runner


def test_sweep_runner_is_still_a_prefect_dask_task_runner(tmp_path: Path) -> None:
    from prefect_dask import DaskTaskRunner

    runner = sweep_runner(OutputParams(work_dir=str(tmp_path), sweep_runner="dask"))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.cluster_kwargs["processes"] is False
    assert type(runner.duplicate()) is type(runner)  # what a worker enters per task


def test_live_settings_hydrate_to_the_same_settings_objects() -> None:
    from prefect.context import SettingsContext

    current = SettingsContext.get()
    assert current is not None
    live = _live_settings()
    rebuilt = SettingsContext(**live.serialize())
    assert rebuilt.settings is current.settings
    assert rebuilt.profile == current.profile


def test_sweep_sample_is_read_once_and_reread_after_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "sample.npy"
    _files.save_npy(path, np.arange(6, dtype=np.float32).reshape(3, 2))
    first = tasks._sweep_sample(str(path))
    assert tasks._sweep_sample(str(path)) is first
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0] = 1.0

    _files.save_npy(path, np.ones((4, 2), dtype=np.float32))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # coarse clocks
    again = tasks._sweep_sample(str(path))
    np.testing.assert_array_equal(again, np.ones((4, 2), dtype=np.float32))


def test_sample_task_hands_its_sample_to_in_process_jobs(tmp_path: Path) -> None:
    path = _files.save_npy(tmp_path / "sample.npy", np.zeros((3, 2), dtype=np.float32))
    in_memory = np.zeros((3, 2), dtype=np.float32)
    tasks._remember_sample(path, in_memory)
    assert tasks._sweep_sample(str(path)) is in_memory  # no read back from disk
    assert not in_memory.flags.writeable


def test_prefect_clients_share_one_verified_tls_context() -> None:
    import ssl

    import certifi
    import prefect.client.orchestration as orchestration

    from flows._prefect_env import share_client_tls_context

    assert share_client_tls_context()  # flows.pipeline installed it at import; idempotent
    make = orchestration.ssl.create_default_context
    first = make(cafile=certifi.where())
    assert make(cafile=certifi.where()) is first
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    insecure = make()  # Prefect's skip-verify path mutates its context: never shared
    assert insecure is not make() and insecure is not first
    assert orchestration.ssl.SSLContext is ssl.SSLContext  # the rest is the real module
