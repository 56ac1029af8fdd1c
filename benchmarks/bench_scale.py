"""Scale-out benchmark: the cluster stage at 5 M rows, Dask worker scaling, GPU k-means.

Run from the repository root::

    python benchmarks/bench_scale.py            # 5 000 000 x 384 float16 store, k = 1 000
    python benchmarks/bench_scale.py --quick    # 300 000 x 384, k = 200; a few minutes

Data: Gaussian blobs (as many centres as clusters asked for), written chunk by chunk through
the store API (``create_store`` / ``write_shard`` / ``finalize``) into a float16 Zarr store in a
temporary directory (5 M x 384 is ~3.8 GB on disk; never the whole matrix in memory).

Measured side by side in this one run:

(a) **The cluster stage at scale.** Fit at k with :func:`cl_core.cluster.fit_kmeans` as the stage
    runs it (``fit_device="auto"``: torch Lloyd on CUDA when present, else the streamed
    ``MiniBatchKMeans`` CPU path) in this process, then the assignment as Dask tasks
    (:func:`cl_core.cluster.assign_dask.assign_chunks`)
    on ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``. Reports rows per
    second of fit + assignment and the peak RSS (``VmHWM``) of *every* process: this one, each
    worker and each nanny. Goal: <= 2 GiB everywhere.
(b) **Worker scaling.** The same assignment on a one-worker cluster; ratio = one-worker wall
    time / two-worker wall time. Goal: >= 1.6 on this 2-core machine. Other jobs share the
    cores, so the load average and, per worker, CPU seconds and busy seconds inside the tasks
    are reported too (CPU/busy < 1 means the worker waited for a core).
(c) **GPU k-means** (CUDA only): ours (Lloyd) vs scikit-learn ``MiniBatchKMeans`` (batch 4096,
    all cores) at 1 280 000 x 384, k = 1 000, from the same k-means++ centres, the same number
    of passes over the data. Goal: >= 10x faster, inertia within 1 %. Without CUDA the JSON
    says ``"pending: no CUDA"`` and the same harness runs once on CPU at toy size (a smoke
    check of the code path, not a measurement of the goal).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np

from benchmarks.common import (
    arguments,
    blob_centres,
    blob_rows,
    emit,
    peak_rss_mib,
    scratch,
    table,
    write_store,
)
from cl_core.cluster.assign_dask import assign_chunks, peak_rss_bytes

DIM = 384
SEED = 0
BLOB_STD = 0.35
RSS_LIMIT_MIB = 2048.0
SCALING_GOAL = 1.6
GPU_GOAL = 10.0
GPU_INERTIA_TOL = 0.01
SIZES = {
    "full": {"n_rows": 5_000_000, "k": 1000, "gpu_rows": 1_280_000, "gpu_k": 1000},
    "quick": {"n_rows": 300_000, "k": 200, "gpu_rows": 200_000, "gpu_k": 200},
}
GPU_PASSES = 5
SMOKE = {"gpu_rows": 20_000, "gpu_k": 50, "passes": 2}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def make_store(path: Path, n_rows: int, true_k: int) -> tuple[Any, bool]:
    """Write a blob store shard by shard; ``(store, reused)`` (a complete one is reopened)."""
    centres = blob_centres(true_k, DIM, SEED)
    return write_store(
        path,
        n_rows,
        DIM,
        lambda shard, n: blob_rows(centres, n, [SEED, 2, shard], BLOB_STD),
        fingerprint=f"bench-scale-blobs-{n_rows}-{true_k}-{SEED}",
    )


# --------------------------------------------------------------------------------------------
# Dask clusters and the assignment
# --------------------------------------------------------------------------------------------


def _warm() -> int:
    import threadpoolctl  # noqa: F401
    import zarr  # noqa: F401

    import cl_core.cluster.assign_dask
    import cl_core.store  # noqa: F401

    return os.getpid()


def _cpu_seconds() -> float:
    return time.process_time()


def run_assignment(
    store_path: str, centroids: np.ndarray, n_workers: int, task_rows: int
) -> dict[str, Any]:
    """Assign every row on a fresh ``LocalCluster`` of ``n_workers`` single-thread processes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(_warm)  # imports outside the timed region, in every worker
        nanny_pids = client.run(os.getpid, nanny=True)
        cpu_before = client.run(_cpu_seconds)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        result = assign_chunks(store_path, centroids, chunk_rows=task_rows, scheduler=client)
        seconds = time.perf_counter() - started
        load_after = os.getloadavg()[0]
        cpu_after = client.run(_cpu_seconds)
        worker_peaks = client.run(peak_rss_bytes)
        nanny_peaks = client.run(peak_rss_bytes, nanny=True)
    per_process = result.per_process()
    workers = []
    for address, pid in sorted(pids.items(), key=lambda item: item[1]):
        tasks = per_process.get(pid, {})
        cpu = cpu_after[address] - cpu_before[address]
        workers.append(
            {
                "pid": pid,
                "tasks": int(tasks.get("tasks", 0)),
                "rows": int(tasks.get("rows", 0)),
                "process_cpu_seconds": round(cpu, 2),
                "task_busy_seconds": round(tasks.get("busy_seconds", 0.0), 2),
                "cpu_per_wall": round(cpu / seconds, 3),
                "peak_rss_mib": round(worker_peaks[address] / 2**20, 1),
            }
        )
    # LocalCluster's nannies live in this process (their pid is ours): counted as "main".
    separate_nannies = [
        nanny_peaks[address] / 2**20 for address, pid in nanny_pids.items() if pid != os.getpid()
    ]
    total_cpu = sum(worker["process_cpu_seconds"] for worker in workers)
    return {
        "n_workers": n_workers,
        "task_rows": task_rows,
        "n_tasks": len(result.tasks),
        "seconds": seconds,
        "rows_per_second": len(result.assignment) / seconds,
        "worker_cpu_seconds": round(total_cpu, 2),
        "cores_used": round(total_cpu / seconds, 3),
        "rows_per_worker_cpu_second": round(len(result.assignment) / max(total_cpu, 1e-9), 1),
        "load_before_after": [round(load_before, 2), round(load_after, 2)],
        "workers": workers,
        "worker_peak_rss_mib": max(worker["peak_rss_mib"] for worker in workers),
        "nanny_peak_rss_mib": round(max(separate_nannies), 1) if separate_nannies else None,
        "inertia": result.inertia,
        "assignment_head": result.assignment[:1000].copy(),
        "distances_head": result.distances[:1000].copy(),
    }


# --------------------------------------------------------------------------------------------
# (a) the stage
# --------------------------------------------------------------------------------------------


def fit_stage(store_path: str, k: int) -> dict[str, Any]:
    """Fit k centroids on the store exactly as the stage does on this machine."""
    from cl_core.cluster import ClusterConfig, fit_kmeans, resolve_fit_device

    config = ClusterConfig(n_clusters=k, random_state=SEED)
    device = resolve_fit_device(config)
    started = time.perf_counter()
    cpu_started = time.process_time()
    centroids = fit_kmeans(store_path, k, config)
    how = (
        f"torch Lloyd on CUDA (<= {config.gpu_max_iter} passes)"
        if device == "cuda"
        else "streamed MiniBatchKMeans on the CPU (1 epoch, 1 thread)"
    )
    return {
        "centroids": centroids,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "how": f"cl_core.cluster.fit_kmeans, fit_device auto -> {device}: {how}",
    }


# --------------------------------------------------------------------------------------------
# (c) GPU k-means vs scikit-learn
# --------------------------------------------------------------------------------------------


def _inertia_torch(rows: np.ndarray, centroids: np.ndarray, device: str) -> float:
    import torch

    from cl_core.cluster.kmeans_torch import nearest_centroids

    centers = torch.from_numpy(np.array(centroids, dtype=np.float32)).to(device)
    total = 0.0
    with torch.no_grad():
        for start in range(0, rows.shape[0], 65_536):
            batch = torch.from_numpy(rows[start : start + 65_536]).to(device)
            total += float(nearest_centroids(batch, centers)[1].double().sum())
    return total


def gpu_compare(n_rows: int, k: int, passes: int, device: str) -> dict[str, Any]:
    """Ours (torch Lloyd) vs MiniBatchKMeans from the same init, the same passes."""
    import torch
    from sklearn.cluster import MiniBatchKMeans

    from cl_core.cluster import ArraySource
    from cl_core.cluster.kmeans_torch import fit_kmeans_torch, kmeans_plusplus_init

    centres = blob_centres(k, DIM, SEED + 1)
    rows = np.empty((n_rows, DIM), dtype=np.float32)
    for start in range(0, n_rows, 65_536):
        stop = min(start + 65_536, n_rows)
        block = blob_rows(centres, stop - start, [SEED, 3, start], BLOB_STD)
        block /= np.linalg.norm(block, axis=1, keepdims=True)  # unit rows, like embeddings
        rows[start:stop] = block
    pick = np.random.default_rng([SEED, 4]).choice(n_rows, size=min(n_rows, 20_000), replace=False)
    init = kmeans_plusplus_init(rows[np.sort(pick)], k, SEED, n_init=1)
    source = ArraySource(rows, normalize="none", chunk_rows=65_536)

    if device.startswith("cuda"):
        fit_kmeans_torch(source, k, init=init, max_iter=1, tol=0.0, device=device)  # warm-up
        torch.cuda.synchronize()
    started = time.perf_counter()
    ours = fit_kmeans_torch(
        source, k, init=init, max_iter=passes, tol=0.0, device=device, final_pass=False
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    ours_seconds = time.perf_counter() - started

    started = time.perf_counter()
    model = MiniBatchKMeans(
        n_clusters=k,
        init=init,
        n_init=1,
        max_iter=passes,
        batch_size=4096,
        tol=0.0,
        max_no_improvement=None,
        compute_labels=False,
        random_state=SEED,
    ).fit(rows)
    sklearn_seconds = time.perf_counter() - started

    ours_inertia = _inertia_torch(rows, ours.centroids, device)
    sklearn_inertia = _inertia_torch(rows, model.cluster_centers_, device)
    speedup = sklearn_seconds / ours_seconds
    gap = (ours_inertia - sklearn_inertia) / sklearn_inertia
    return {
        "device": device,
        "n_rows": n_rows,
        "k": k,
        "passes": passes,
        "ours_seconds": round(ours_seconds, 4),
        "sklearn_seconds": round(sklearn_seconds, 4),
        "speedup": round(speedup, 3),
        "ours_inertia": round(ours_inertia, 4),
        "sklearn_inertia": round(sklearn_inertia, 4),
        "inertia_rel_diff": round(gap, 6),
        "sklearn_threads": os.cpu_count(),
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments(__doc__, "300 000 rows, k = 200")
    parser.add_argument("--n-rows", type=int, help="rows of the store (default 5 000 000)")
    parser.add_argument("--k", type=int, help="clusters (default 1 000)")
    parser.add_argument(
        "--workdir", help="keep the store here and reuse it (default: a temp dir, deleted)"
    )
    parser.add_argument("--skip-gpu", action="store_true", help="skip part (c)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="(b): alternate this many 2-worker and 1-worker runs, keep each one's fastest",
    )
    args = parser.parse_args(argv)
    with scratch(args.workdir, "bench-scale-") as workdir:
        return run_benchmark(args, workdir)


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from cl_core.cluster import ClusterConfig, resolve_fit_device

    sizes = dict(SIZES["quick" if args.quick else "full"])
    n_rows = int(args.n_rows or sizes["n_rows"])
    k = int(args.k or sizes["k"])
    cuda = resolve_fit_device(ClusterConfig()) == "cuda"  # no torch import without a GPU driver
    store_path = str(workdir / f"blobs-{n_rows}x{DIM}-k{k}.zarr")

    started = time.perf_counter()
    _, reused = make_store(Path(store_path), n_rows, k)
    generate_seconds = time.perf_counter() - started
    disk_bytes = sum(f.stat().st_size for f in Path(store_path).rglob("*") if f.is_file())

    task_rows = 16_384 if args.quick else 32_768
    fit = fit_stage(store_path, k)
    two = run_assignment(store_path, fit["centroids"], 2, task_rows)
    main_peak_mib = peak_rss_mib()
    one = run_assignment(store_path, fit["centroids"], 1, task_rows)
    runs = {1: [one], 2: [two]}
    for _ in range(args.repeats - 1):  # alternate, then keep each one's fastest run
        runs[2].append(run_assignment(store_path, fit["centroids"], 2, task_rows))
        runs[1].append(run_assignment(store_path, fit["centroids"], 1, task_rows))
    all_seconds = {n: [round(run["seconds"], 2) for run in runs[n]] for n in runs}
    one = min(runs[1], key=lambda run: run["seconds"])
    fastest_two = min(runs[2], key=lambda run: run["seconds"])
    same = all(
        np.array_equal(run["assignment_head"], two["assignment_head"])
        and np.array_equal(run["distances_head"], two["distances_head"])
        and run["inertia"] == two["inertia"]
        for run in [*runs[1], *runs[2]]
    )
    stage_seconds = fit["seconds"] + two["seconds"]
    rows_per_second = n_rows / stage_seconds
    peaks = {
        "main (fit, driver, nannies)": main_peak_mib,
        "workers of the 2-worker run": two["worker_peak_rss_mib"],
        "worker of the 1-worker run": one["worker_peak_rss_mib"],
    }
    nannies = [run["nanny_peak_rss_mib"] for run in (one, two) if run["nanny_peak_rss_mib"]]
    if nannies:
        peaks["nanny processes"] = max(nannies)
    rss_ok = all(value <= RSS_LIMIT_MIB for value in peaks.values())
    scaling = one["seconds"] / fastest_two["seconds"]
    scaling_ok = scaling >= SCALING_GOAL

    gpu: dict[str, Any]
    if args.skip_gpu:
        gpu = {"status": "skipped (--skip-gpu)"}
    elif cuda:
        gpu = {
            "status": "measured",
            **gpu_compare(sizes["gpu_rows"], sizes["gpu_k"], GPU_PASSES, "cuda"),
        }
        gpu["goal_met"] = bool(
            gpu["speedup"] >= GPU_GOAL and abs(gpu["inertia_rel_diff"]) <= GPU_INERTIA_TOL
        )
    else:
        gpu = {
            "status": "pending: no CUDA",
            "cpu_smoke": gpu_compare(SMOKE["gpu_rows"], SMOKE["gpu_k"], SMOKE["passes"], "cpu"),
        }
    gpu_ok = gpu.get("goal_met", True)

    written = "reused" if reused else f"written in {generate_seconds:.1f} s"
    print(
        f"(store: {n_rows} x {DIM} float16, {disk_bytes / 2**30:.2f} GiB on disk, {written}; "
        f"fit: {fit['how']}; assignment: {two['n_tasks']} tasks of {task_rows} rows; "
        f"runs 1w/2w seconds: {all_seconds[1]} / {all_seconds[2]})"
    )
    rows: list[tuple[str, ...]] = [
        ("measure", "value", "goal"),
        ("(a) fit seconds", f"{fit['seconds']:.1f}", ""),
        ("(a) assignment seconds, 2 workers", f"{two['seconds']:.1f}", ""),
        ("(a) rows/s, fit + assignment", f"{rows_per_second:,.0f}", ""),
        *[
            (f"(a) peak RSS MiB, {name}", f"{value:.0f}", f"<= {RSS_LIMIT_MIB:.0f}")
            for name, value in peaks.items()
        ],
        ("(b) assignment seconds, 1 worker (fastest)", f"{one['seconds']:.1f}", ""),
        ("(b) assignment seconds, 2 workers (fastest)", f"{fastest_two['seconds']:.1f}", ""),
        ("(b) ratio 1 worker / 2 workers", f"{scaling:.2f}", f">= {SCALING_GOAL}"),
        ("(b) identical results 1 vs 2", str(same), "True"),
    ]
    for run in (fastest_two, one):
        name = f"(b) {run['n_workers']}w"
        rows.append(
            (
                f"{name}: cores used, load before/after",
                f"{run['cores_used']:.2f} of {run['n_workers']}; load {run['load_before_after']}",
                "",
            )
        )
        for worker in run["workers"]:
            rows.append(
                (
                    f"{name} pid {worker['pid']}",
                    f"{worker['tasks']} tasks, {worker['rows']:,} rows, cpu "
                    f"{worker['process_cpu_seconds']:.1f} s / wall {run['seconds']:.1f} s, "
                    f"peak {worker['peak_rss_mib']:.0f} MiB",
                    "",
                )
            )
    if gpu["status"] == "measured":
        rows.append(("(c) GPU vs sklearn speedup", f"{gpu['speedup']:.1f}x", f">= {GPU_GOAL}"))
        rows.append(("(c) inertia rel. diff", f"{gpu['inertia_rel_diff']:+.4%}", "within 1%"))
    else:
        rows.append(("(c) GPU k-means", gpu["status"], f">= {GPU_GOAL}x"))
        if "cpu_smoke" in gpu:
            smoke = gpu["cpu_smoke"]
            rows.append(
                (
                    "(c) harness smoke on CPU (not the goal)",
                    f"{smoke['n_rows']}x{DIM} k={smoke['k']}: ours {smoke['ours_seconds']:.2f} s, "
                    f"sklearn {smoke['sklearn_seconds']:.2f} s, inertia {smoke['inertia_rel_diff']:+.3%}",
                    "",
                )
            )
    print(table(rows))

    for run in [*runs[1], *runs[2]]:
        for key in ("assignment_head", "distances_head", "inertia"):
            run.pop(key, None)
    record: dict[str, Any] = {
        "name": "scale",
        "ratio": round(scaling, 3),
        "goal": SCALING_GOAL,
        "goal_met": bool(rss_ok and scaling_ok and same and gpu_ok),
        "quick": bool(args.quick),
        "headline": "assignment wall time, 1 Dask worker process / 2 worker processes",
        "n_rows": n_rows,
        "dim": DIM,
        "k": k,
        "cores": os.cpu_count(),
        "cuda": cuda,
        "store_gib_on_disk": round(disk_bytes / 2**30, 3),
        "store_write_seconds": None if reused else round(generate_seconds, 1),
        "fit": {
            key: (round(v, 2) if isinstance(v, float) else v)
            for key, v in fit.items()
            if key != "centroids"
        },
        "stage_seconds": round(stage_seconds, 2),
        "stage_rows_per_second": round(rows_per_second, 1),
        "peak_rss_mib": {key: round(value, 1) for key, value in peaks.items()},
        "rss_limit_mib": RSS_LIMIT_MIB,
        "rss_goal_met": rss_ok,
        "scaling_goal_met": scaling_ok,
        "identical_1_vs_2_workers": same,
        "assign_2_workers": {
            **two,
            "seconds": round(two["seconds"], 2),
            "rows_per_second": round(two["rows_per_second"], 1),
        },
        "assign_seconds_all_runs": {f"{n}_workers": all_seconds[n] for n in all_seconds},
        "assign_2_workers_fastest": {
            **fastest_two,
            "seconds": round(fastest_two["seconds"], 2),
            "rows_per_second": round(fastest_two["rows_per_second"], 1),
        },
        "assign_1_worker": {
            **one,
            "seconds": round(one["seconds"], 2),
            "rows_per_second": round(one["rows_per_second"], 1),
        },
        "gpu": gpu,
    }
    return emit(record)


if __name__ == "__main__":
    main()
