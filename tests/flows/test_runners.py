"""The task-runner choice (flows.runners): threads, local Dask, an address, one worker per GPU.

The per-GPU logic runs for real on this CPU machine: a fake GPU list (``CUDA_VISIBLE_DEVICES``)
starts one worker process per "GPU" on 127.0.0.1, and each worker must see only its own device.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.console import BadInput
from flows.params import OutputParams
from flows.runners import (
    check_dask_address,
    per_gpu_cluster,
    sweep_runner,
    task_runner,
    visible_gpus,
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_three_at_once = threading.Barrier(3, timeout=60)
_running: list[int] = []
_most_at_once: list[int] = [0]


@task
def _meet_two_others(index: int) -> int:
    _running.append(index)
    _most_at_once[0] = max(_most_at_once[0], len(_running))
    _three_at_once.wait()  # passes only when three tasks run at the same time
    time.sleep(0.2)  # a fourth thread, if there were one, would join the three now
    _running.remove(index)
    return index


@flow
def _fan_out(n: int) -> list[int]:
    return [future.result() for future in _meet_two_others.map(range(n))]


def test_the_threads_sweep_runner_runs_dask_workers_tasks_at_once(prefect_server: None) -> None:
    threads = sweep_runner(OutputParams(sweep_runner="threads", dask_workers=3))
    assert isinstance(threads, ThreadPoolTaskRunner)
    assert _fan_out.with_options(task_runner=threads)(6) == list(range(6))
    assert _most_at_once == [3]


def test_sweep_runner_keeps_the_pipelines_choices() -> None:
    address = "tcp://10.0.0.5:8786"
    remote = sweep_runner(OutputParams(dask_address=address))
    assert isinstance(remote, DaskTaskRunner) and remote.address == address
    ignored = sweep_runner(OutputParams(sweep_runner="threads", dask_address=address))
    assert isinstance(ignored, ThreadPoolTaskRunner)
    local = sweep_runner(OutputParams(dask_workers=2))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": False,
        "dashboard_address": None,
    }
    assert task_runner(processes=True).cluster_kwargs["processes"] is True


@pytest.mark.parametrize(
    ("gpus", "visible", "expected"),
    [("all", "3,5", ["3", "5"]), (1, "3,5", ["3"]), ("2", "GPU-a, GPU-b", ["GPU-a", "GPU-b"])],
)
def test_visible_gpus_follow_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch, gpus: object, visible: str, expected: list[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpus(gpus) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gpus", "visible", "message"),
    [
        (3, "0,1", r"only 2 GPU\(s\) are visible \(0,1\)"),
        ("all", "", "no CUDA GPU is visible"),
        ("all", "-1", "no CUDA GPU is visible"),
        ("two", "0", "a number >= 1 or 'all'"),
        (0, "0", "a number >= 1 or 'all'"),
    ],
)
def test_bad_gpu_requests_are_bad_input(
    monkeypatch: pytest.MonkeyPatch, gpus: object, visible: str, message: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with pytest.raises(BadInput, match=message):
        visible_gpus(gpus)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="need the dask runner"):
        task_runner("threads", gpus=1)


def _device_of_this_worker() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


@pytest.mark.integration
def test_per_gpu_cluster_gives_each_worker_process_its_own_device() -> None:
    from distributed import Client

    with per_gpu_cluster(["3", "5"]) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        seen = client.run(_device_of_this_worker)
        pids = client.run(os.getpid)
        assert all(address.startswith("tcp://127.0.0.1:") for address in seen)
    assert sorted(seen.values()) == ["3", "5"]
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != "3"  # this process is untouched


@task
def _device_task(index: int) -> tuple[int, str]:
    time.sleep(0.5)  # both workers get a task
    return os.getpid(), _device_of_this_worker()


@flow
def _devices_flow(n: int) -> list[tuple[int, str]]:
    return [future.result() for future in _device_task.map(range(n))]


def test_gpus_all_runs_prefect_tasks_on_one_worker_per_device(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    runner = task_runner(gpus="all")
    assert runner.cluster_kwargs == {"devices": ("3", "5")}
    results = _devices_flow.with_options(task_runner=runner)(4)
    assert {device for _, device in results} == {"3", "5"}
    assert os.getpid() not in {pid for pid, _ in results}


def test_an_unreachable_address_fails_fast_naming_it() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(
        BadInput, match=rf"cannot reach the Dask scheduler at --dask-address {address}"
    ):
        check_dask_address(address)
    assert time.monotonic() - started < 10


def test_an_open_port_without_a_scheduler_fails_within_the_timeout() -> None:
    with socket.socket() as silent:  # listens (the kernel accepts), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(BadInput, match=rf"{address} \(no Dask scheduler answered within 1 s"):
            check_dask_address(address, timeout_s=1.0)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("address", ["", "tcp://", "tcp://host:notaport"])
def test_malformed_addresses_are_bad_input(address: str) -> None:
    with pytest.raises(BadInput, match="dask-address"):
        check_dask_address(address)


@pytest.mark.integration
def test_a_live_scheduler_passes_the_check() -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        check_dask_address(cluster.scheduler_address)
        check_dask_address(cluster.scheduler_address.removeprefix("tcp://"))
