"""The k sweep's runner (plain prefect-dask, nothing patched), its grouping of ks into a few
tasks, the per-k result files and the per-process sample cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from flows import files, tasks
from flows.params import OutputParams
from flows.runners import sweep_runner
from flows.stages.cluster import sweep_groups, sweep_tasks
from flows.sweep_sample import remember_sample, sweep_sample


def test_sweep_runner_is_prefect_dasks_own_task_runner(tmp_path: Path) -> None:
    from prefect_dask import DaskTaskRunner

    runner = sweep_runner(OutputParams(work_dir=str(tmp_path), sweep_runner="dask"))
    assert type(runner) is DaskTaskRunner  # public class, no subclass reaching into its privates
    assert runner.cluster_kwargs["processes"] is False


def test_sweep_sample_is_read_once_and_reread_after_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "sample.npy"
    files.save_npy(path, np.arange(6, dtype=np.float32).reshape(3, 2))
    first = sweep_sample(str(path))
    assert sweep_sample(str(path)) is first
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0] = 1.0

    files.save_npy(path, np.ones((4, 2), dtype=np.float32))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # coarse clocks
    again = sweep_sample(str(path))
    np.testing.assert_array_equal(again, np.ones((4, 2), dtype=np.float32))


def test_sample_task_hands_its_sample_to_in_process_jobs(tmp_path: Path) -> None:
    path = files.save_npy(tmp_path / "sample.npy", np.zeros((3, 2), dtype=np.float32))
    in_memory = np.zeros((3, 2), dtype=np.float32)
    remember_sample(path, in_memory)
    assert sweep_sample(str(path)) is in_memory  # no read back from disk
    assert not in_memory.flags.writeable


def test_sweep_groups_cover_every_k_once_with_balanced_cost() -> None:
    ks = list(range(2, 21))
    groups = sweep_groups(ks, 2)
    assert sorted(k for group in groups for k in group) == ks
    costs = [sum(group) for group in groups]
    assert max(costs) - min(costs) <= max(ks)  # largest-first: within one job of each other
    assert sweep_groups([2, 3], 5) == [[3], [2]]  # never an empty group
    assert sweep_groups(ks, 1) == [ks]


def test_sweep_tasks_one_per_local_slot_one_per_k_on_a_remote_cluster(tmp_path: Path) -> None:
    local = OutputParams(work_dir=str(tmp_path), dask_workers=2)
    assert sweep_tasks(local, 19) == 2
    assert sweep_tasks(local, 1) == 1
    remote = OutputParams(work_dir=str(tmp_path), dask_address="tcp://127.0.0.1:8786")
    assert sweep_tasks(remote, 19) == 19


def test_a_group_reads_back_the_ks_already_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-k results stay per k: a group whose k was evaluated before (another grouping, a
    killed run) fits only the missing ones."""
    from flows.params import ClusterParams

    rng = np.random.default_rng(0)
    sample = files.save_npy(tmp_path / "sample.npy", rng.normal(size=(60, 4)).astype(np.float32))
    saved = {"k": 2, "davies_bouldin": 0.5, "inertia": 1.0}
    files.save_json(tmp_path / "k-2.json", saved)
    fitted: list[int] = []
    real = tasks.evaluate_k

    def counting(sample: np.ndarray, k: int, *args: object, **kwargs: object) -> object:
        fitted.append(k)
        return real(sample, k, *args, **kwargs)

    monkeypatch.setattr(tasks, "evaluate_k", counting)
    records = tasks.evaluate_ks_task.fn(
        content_id="x",
        sample_path=str(sample),
        ks=[2, 3],
        sweep_seed=0,
        clustering=ClusterParams(),
        out_paths=[str(tmp_path / "k-2.json"), str(tmp_path / "k-3.json")],
    )
    assert fitted == [3]
    assert records[0] == saved and records[1]["k"] == 3
