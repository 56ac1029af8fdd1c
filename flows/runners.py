"""Where tasks run: the one place a Prefect task runner is chosen. Nothing here is patched.

==============================  ===========================================================
threads                         ``ThreadPoolTaskRunner(max_workers=workers)``
dask, local                     a ``LocalCluster`` of ``workers`` single-threaded workers
                                (threads in one process by default; ``processes=True`` for
                                work that holds the GIL or needs its own memory)
dask, ``address``               an existing cluster's scheduler (``tcp://10.0.0.5:8786``);
                                :func:`check_dask_address` fails fast when it is unreachable
dask, ``gpus`` (``N``/``all``)  a local cluster with one worker process per visible GPU:
                                dask-cuda's ``LocalCUDACluster`` when installed, else a
                                ``SpecCluster`` of ``Nanny`` workers, each started with its own
                                ``CUDA_VISIBLE_DEVICES`` (:func:`per_gpu_cluster`)
==============================  ===========================================================

Prefect, ``prefect_dask`` and ``distributed`` are imported by the functions that build a
runner: :func:`check_dask_address` and :func:`visible_gpus`, which the CLI calls before Prefect
starts, import none of them (``distributed.comm`` only to talk to a reachable address).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from flows.console import BadInput

RUNNERS = ("dask", "threads")
DEFAULT_SCHEDULER_PORT = 8786
REACHABLE_TIMEOUT_S = 5.0
_TCP_SCHEMES = ("tcp", "tls", "ws", "wss")


def task_runner(
    kind: Literal["dask", "threads"] = "dask",
    *,
    workers: int = 2,
    address: str | None = None,
    gpus: int | str | None = None,
    processes: bool = False,
) -> Any:
    """The Prefect task runner for one choice of where tasks run (see the module's table).

    Parameters
    ----------
    kind : {"dask", "threads"}
        Dask (a local or an existing cluster) or a thread pool in this process.
    workers : int
        Threads of the pool, or workers of the local Dask cluster.
    address : str, optional
        Scheduler of an existing Dask cluster; overrides ``workers``, ``gpus`` and ``processes``.
    gpus : int or "all", optional
        One local worker process per GPU (the first ``N`` visible GPUs, or all of them).
    processes : bool
        Local cluster workers as processes instead of threads of this process.

    Returns
    -------
    prefect.task_runners.TaskRunner
        A ``ThreadPoolTaskRunner`` or a ``prefect_dask.DaskTaskRunner``; every flow run enters a
        fresh ``duplicate()`` of it, so one object can serve many runs.

    Raises
    ------
    BadInput
        An unknown ``kind``, ``workers`` < 1, ``gpus`` with ``kind="threads"``, or more GPUs than
        are visible.
    """
    if kind not in RUNNERS:
        raise BadInput(f"unknown task runner {kind!r}; use one of {', '.join(RUNNERS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise BadInput(f"workers must be an integer >= 1, got {workers!r}")
    if kind == "threads":
        if gpus is not None or address:
            raise BadInput("--gpus and --dask-address need the dask runner, not threads")
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    if gpus is not None:
        devices = tuple(visible_gpus(gpus))
        return DaskTaskRunner(cluster_class=per_gpu_cluster, cluster_kwargs={"devices": devices})
    cluster_kwargs: dict[str, Any] = {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": processes,
        "dashboard_address": None,
    }
    if processes:
        return DaskTaskRunner(cluster_class=process_cluster, cluster_kwargs=cluster_kwargs)
    return DaskTaskRunner(cluster_kwargs=cluster_kwargs)


def embed_runner(output: Any) -> Any | None:
    """The task runner of the embedding shards, from the run's ``OutputParams``; None for the
    flow's own (one shard at a time in the flow's process).

    ``dask_address``: that cluster's workers; ``gpus``: a local cluster of one worker process
    per GPU (:func:`per_gpu_cluster`). Each worker embeds whole shards into the shared store.
    """
    if output.dask_address:
        return task_runner("dask", address=output.dask_address)
    if output.gpus is not None:
        return task_runner("dask", gpus=output.gpus)
    return None


def process_cluster(**cluster_kwargs: Any) -> Any:
    """A ``LocalCluster`` of worker processes on 127.0.0.1 whose workers may start processes
    of their own (DataLoader workers): Dask's ``distributed.worker.daemon`` is off for them."""
    import dask
    from distributed import LocalCluster

    cluster_kwargs.setdefault("host", "127.0.0.1")
    with dask.config.set({"distributed.worker.daemon": False}):
        return LocalCluster(**cluster_kwargs)


def sweep_runner(output: Any) -> Any:
    """The task runner of the k sweep, from the run's ``OutputParams``.

    ``sweep_runner`` "threads" (``dask_workers`` threads; ``dask_address`` is ignored) or "dask":
    the cluster at ``dask_address``, else a local cluster of ``dask_workers`` single-threaded workers in this
    process (the sweep is numpy/BLAS work that releases the GIL).
    """
    address = output.dask_address if output.sweep_runner == "dask" else None
    return task_runner(output.sweep_runner, workers=output.dask_workers, address=address)


def visible_gpus(gpus: int | str) -> list[str]:
    """The device ids (as ``CUDA_VISIBLE_DEVICES`` entries) of ``gpus``: ``N`` or ``"all"``.

    The visible GPUs are those listed in ``CUDA_VISIBLE_DEVICES`` when it is set, else
    ``0 .. torch.cuda.device_count() - 1``.

    Raises
    ------
    BadInput
        ``gpus`` is neither a positive integer nor "all", no GPU is visible, or fewer than ``N``.
    """
    wanted = _gpu_count(gpus)
    devices = _visible_devices()
    if not devices:
        raise BadInput(
            f"--gpus {gpus}: no CUDA GPU is visible (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); drop --gpus to run on the CPU"
        )
    if wanted is None:
        return devices
    if wanted > len(devices):
        raise BadInput(
            f"--gpus {wanted}: only {len(devices)} GPU(s) are visible ({','.join(devices)}); "
            f"use --gpus {len(devices)} or --gpus all"
        )
    return devices[:wanted]


def _gpu_count(gpus: int | str) -> int | None:
    """``N`` as an int, or None for "all"."""
    text = str(gpus).strip().lower()
    if text == "all":
        return None
    if isinstance(gpus, bool) or not text.isdigit() or int(text) < 1:
        raise BadInput(f"--gpus must be a number >= 1 or 'all', got {gpus!r}")
    return int(text)


def _visible_devices() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = [entry.strip() for entry in listed.split(",") if entry.strip()]
        return [] if devices[:1] == ["-1"] else devices
    import torch  # only for --gpus without CUDA_VISIBLE_DEVICES

    return [str(index) for index in range(torch.cuda.device_count())]


def per_gpu_cluster(
    devices: Sequence[str] | None = None,
    *,
    threads_per_worker: int = 1,
    host: str = "127.0.0.1",
) -> Any:
    """A local Dask cluster with one worker process per device in ``devices``.

    dask-cuda's ``LocalCUDACluster`` when it is installed; otherwise a ``SpecCluster`` of one
    ``Nanny`` per device, each started with ``CUDA_VISIBLE_DEVICES`` set to its device (the
    variable is set in the worker process before anything in it touches CUDA).

    Parameters
    ----------
    devices : sequence of str, optional
        ``CUDA_VISIBLE_DEVICES`` entries (indices or GPU UUIDs), e.g. from :func:`visible_gpus`;
        default every visible GPU.
    threads_per_worker : int
        Threads of each worker (1: one task per GPU at a time).
    host : str
        Interface the scheduler and workers listen on.

    Returns
    -------
    distributed.deploy.Cluster
        Started; close it (or use it as a context manager) when done.
    """
    devices = visible_gpus("all") if devices is None else list(devices)
    if not devices:
        raise BadInput("per_gpu_cluster needs at least one device")
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        LocalCUDACluster = None
    import dask

    with dask.config.set({"distributed.worker.daemon": False}):  # DataLoader workers
        return _start_per_gpu_cluster(LocalCUDACluster, devices, threads_per_worker, host)


def _start_per_gpu_cluster(
    cuda_cluster: Any, devices: Sequence[str], threads_per_worker: int, host: str
) -> Any:
    if cuda_cluster is not None:
        return cuda_cluster(
            CUDA_VISIBLE_DEVICES=",".join(devices),
            n_workers=len(devices),
            threads_per_worker=threads_per_worker,
            host=host,
            dashboard_address=None,
        )
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {
        f"gpu-{position}": {
            "cls": Nanny,
            "options": {
                "nthreads": threads_per_worker,
                "host": host,
                "env": {"CUDA_VISIBLE_DEVICES": str(device)},
            },
        }
        for position, device in enumerate(devices)
    }
    scheduler = {"cls": Scheduler, "options": {"host": host, "dashboard_address": None}}
    return SpecCluster(
        workers=workers, scheduler=scheduler, silence_logs=logging.ERROR, name="per-gpu"
    )


def check_dask_address(address: str, timeout_s: float = REACHABLE_TIMEOUT_S) -> None:
    """Fail before any work when no Dask scheduler answers at ``address``.

    Connects to the address (a TCP probe first, so a refused port or an unknown host fails at
    once), then asks the peer who it is over Dask's own protocol: the address must reach a
    scheduler, not just an open port. Everything together takes at most about ``timeout_s``
    seconds. Addresses of other transports (``inproc://``, ``ucx://``) are not checked.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` (also ``tls://``, ``ws://``, ``wss://``, or ``host:port``; the port
        defaults to 8786).
    timeout_s : float
        Seconds to wait for the scheduler.

    Raises
    ------
    BadInput
        One line naming the address and why it failed.
    """
    text = str(address).strip()
    scheme, host, port = _split_address(text)
    if scheme not in _TCP_SCHEMES:
        return
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
        left = max(0.5, timeout_s - (time.monotonic() - started))
        kind = asyncio.run(asyncio.wait_for(_peer_type(_with_scheme(text), left + 1), left))
    except (TimeoutError, asyncio.TimeoutError):
        reason = f"no Dask scheduler answered within {timeout_s:g} s"
    except OSError as error:
        reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
    except Exception as error:  # a peer that does not speak Dask's protocol: any parse failure
        reason = f"the peer does not speak Dask's protocol: {type(error).__name__}"
    else:
        if kind == "Scheduler":
            return
        reason = f"it answered as a Dask {kind!r}, not a scheduler"
    raise BadInput(
        f"cannot reach the Dask scheduler at --dask-address {text} ({reason}, after "
        f"{time.monotonic() - started:.1f} s); start it (`dask scheduler`) or fix the address"
    )


def _with_scheme(address: str) -> str:
    return address if "://" in address else f"tcp://{address}"


async def _peer_type(address: str, timeout_s: float) -> str:
    """The ``type`` a Dask server at ``address`` reports (``"Scheduler"`` for a scheduler)."""
    from distributed.comm import connect

    comm = await connect(address, timeout=timeout_s)
    try:
        await comm.write({"op": "identity", "reply": True})
        reply = await comm.read()
    finally:
        await comm.close()
    return str(reply.get("type")) if isinstance(reply, dict) else repr(reply)


def _split_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a Dask address; BadInput when it cannot be parsed."""
    if not address:
        raise BadInput("--dask-address is empty; give the scheduler, e.g. tcp://10.0.0.5:8786")
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port or DEFAULT_SCHEDULER_PORT
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise BadInput(
            f"--dask-address {address!r} is not a scheduler address; use e.g. tcp://10.0.0.5:8786"
        )
    return parts.scheme, parts.hostname, port
