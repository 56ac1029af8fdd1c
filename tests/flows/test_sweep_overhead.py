"""The k sweep's runner (plain prefect-dask, nothing patched) and its per-process sample cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from flows import _files, tasks
from flows.params import OutputParams
from flows.pipeline import sweep_runner


def test_sweep_runner_is_prefect_dasks_own_task_runner(tmp_path: Path) -> None:
    from prefect_dask import DaskTaskRunner

    runner = sweep_runner(OutputParams(work_dir=str(tmp_path), sweep_runner="dask"))
    assert type(runner) is DaskTaskRunner  # public class, no subclass reaching into its privates
    assert runner.cluster_kwargs["processes"] is False


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
