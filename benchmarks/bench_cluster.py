"""Benchmark of the clustering stage against a reference-style sequential sweep.

Run from the repository root::

    python benchmarks/bench_cluster.py            # N = 200 000 x 384, RSS at N = 1 000 000
    python benchmarks/bench_cluster.py --quick    # N = 100 000, RSS at 200 000; 1-2 minutes

Data: Gaussian blobs with a known number of clusters (``--true-k``, default 10), generated chunk
by chunk straight into a float16 Zarr embedding store (never the whole matrix in memory).
Both contenders read the same store with the default ``standard`` normalisation and search
``k`` in 2..20.

Compared side by side in this one run:

1. **Time and chosen k.** Ours: :func:`cl_core.cluster.cluster_embeddings` with its defaults
   (seeded subsample, parallel Davies-Bouldin sweep on Dask threads, streamed fit, chunked
   assignment). Baseline, written here the way the reference library does it: load all N rows
   into memory, then for every k sequentially a full-data ``MiniBatchKMeans`` fit and
   ``davies_bouldin_score`` on all N rows, then a final full-data fit and the distances. The
   baseline runs twice: with the libraries' default thread counts (as the reference) and with
   one thread (our discipline). On a busy machine the multi-threaded run stalls and looks far
   slower than the algorithm is, so the headline ratio is against the *faster* of the two.
   Goal: >= 5x faster, same k.
2. **Quality.** Our inertia (all N rows) at the chosen k versus scikit-learn
   ``KMeans(n_init=10)`` on the same normalised data. Goal: within 2 %.
3. **Memory.** Peak RSS of ours and of the baseline, each in a fresh subprocess, at
   N = 1 000 000 x 384 (``VmHWM`` from ``/proc/self/status``, reset after the imports;
   ``resource.getrusage`` where that is unavailable). Ours must stay within a fixed budget
   above the process's import floor (the memory the imports alone take). The baseline child
   runs single-threaded (memory does not depend on it; time on a busy machine does).

Wall time is the headline; CPU seconds (all threads) and the load average are reported too,
because on a shared machine other processes' load stretches wall time.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np

from benchmarks.common import (
    arguments,
    emit,
    peak_rss_mib,
    reset_peak_rss,
    run_children,
    scratch,
    table,
    write_store,
)

SPEED_GOAL = 5.0
INERTIA_GOAL = 0.02  # relative excess over KMeans(n_init=10)
RSS_BUDGET_MIB = 256  # ours: peak above the import floor, whatever N
DIM = 384
K_RANGE = (2, 20)
BLOB_STD = 0.5
SEED = 0


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def make_blob_store(path: Path, n_rows: int, true_k: int, seed: int = SEED) -> Any:
    """``n_rows`` x 384 Gaussian blobs (``true_k`` centres), written shard by shard."""
    centers = np.random.default_rng(seed).normal(size=(true_k, DIM)).astype(np.float32)

    def shard_rows(shard: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([seed, shard])
        labels = rng.integers(0, true_k, size=n)
        rows = rng.standard_normal(size=(n, DIM), dtype=np.float32)
        rows *= BLOB_STD
        rows += centers[labels]
        return rows

    fingerprint = f"bench-blobs-{n_rows}-{true_k}-{seed}"
    return write_store(path, n_rows, DIM, shard_rows, fingerprint=fingerprint)[0]


# --------------------------------------------------------------------------------------------
# The two contenders
# --------------------------------------------------------------------------------------------


def run_ours(store: Any, k_range: tuple[int, int]) -> dict[str, Any]:
    """Our stage end to end from the store: sweep + final fit + assignment."""
    from cl_core.cluster import ClusterConfig, cluster_embeddings

    config = ClusterConfig(cluster_range=k_range, scheduler="threads", random_state=SEED)
    cpu_started, started = time.process_time(), time.perf_counter()
    result = cluster_embeddings(store, config)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "k": result.n_clusters,
        "inertia": result.inertia,
        "sweep_seconds": sum(point.seconds for point in result.sweep),
        "assignment": result.assignment,
    }


def load_all(store: Any) -> np.ndarray:
    """The reference keeps every feature in memory: N x D float32, normalised like ours."""
    out = np.empty((store.n_rows, store.dim), dtype=np.float32)
    for start, block in store.iter_chunks("standard"):
        out[start : start + block.shape[0]] = block
    return out


def run_baseline(
    store: Any, k_range: tuple[int, int], threads: int | None = None
) -> dict[str, Any]:
    """Reference-style: load all, sequential full-data MiniBatchKMeans + DB per k, final fit.

    ``threads=None`` runs with the libraries' default thread counts, as the reference does;
    ``threads=1`` gives it the same single-thread discipline as ours (fairer on a loaded
    machine, where multi-threaded OpenMP/BLAS regions stall).
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import davies_bouldin_score

    with _thread_limit(threads):
        cpu_started, started = time.process_time(), time.perf_counter()
        features = load_all(store)
        scores = {}
        for k in range(k_range[0], k_range[1] + 1):
            model = MiniBatchKMeans(n_clusters=k, random_state=42).fit(features)
            scores[k] = davies_bouldin_score(features, model.labels_)
        best_k = min(scores, key=lambda k: (scores[k], k))
        final = MiniBatchKMeans(n_clusters=best_k, random_state=42).fit(features)
        distances = np.linalg.norm(features - final.cluster_centers_[final.labels_], axis=1)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "k": best_k,
        "inertia": float(np.square(distances, dtype=np.float64).sum()),
        "features": features,
    }


def _thread_limit(threads: int | None) -> Any:
    import sklearn.cluster  # load every native library first, so the limit covers them all
    import sklearn.metrics  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def kmeans_reference_inertia(features: np.ndarray, k: int) -> tuple[float, float]:
    """Inertia of scikit-learn KMeans(n_init=10) on the in-memory data, and its seconds.

    Single-threaded: only its result matters here, and one thread cannot stall on a busy machine.
    """
    from sklearn.cluster import KMeans

    with _thread_limit(1):
        started = time.perf_counter()
        model = KMeans(n_clusters=k, n_init=10, random_state=SEED).fit(features)
        distances = np.linalg.norm(features - model.cluster_centers_[model.labels_], axis=1)
    return float(np.square(distances, dtype=np.float64).sum()), time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Peak-RSS children
# --------------------------------------------------------------------------------------------


def child_main(mode: str, store_path: str, k_range: tuple[int, int]) -> None:
    """Run one contender in this (fresh) process and print its peak RSS as JSON."""
    from cl_core.store import open_store

    warm_up()  # the same imports in both children, so their floors compare

    store = open_store(store_path, read_only=True)
    reset_peak_rss()
    floor = peak_rss_mib()  # right after the reset, the peak mark is the current RSS
    outcome = run_ours(store, k_range) if mode == "ours" else run_baseline(store, k_range, 1)
    emit(
        {
            "mode": mode,
            "floor_rss_mib": floor,
            "peak_rss_mib": peak_rss_mib(),
            "seconds": outcome["seconds"],
            "k": outcome["k"],
        }
    )


def measure_rss(store_path: Path, k_range: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """Run both contenders in fresh child processes, side by side, and collect their figures.

    Each child is essentially single-threaded and only its own memory is measured, so running
    the two at once on two cores changes neither peak and halves the wall time.
    """
    child = ["--store", str(store_path), "--k-range", str(k_range[0]), str(k_range[1])]
    modes = ("ours", "baseline")
    return run_children(__file__, {mode: ["--child", mode, *child] for mode in modes})


def warm_up() -> None:
    """Import every library either contender uses, so neither pays import time in its figure.

    torch too: our k sweep fits in torch, whose import alone is ~500 MiB of RSS (~230 MiB of it
    code pages). Outside the floor it counted as the sweep's memory at any N.
    """
    import dask.threaded  # noqa: F401
    import sklearn.cluster
    import sklearn.metrics  # noqa: F401
    import torch  # noqa: F401
    import zarr  # noqa: F401

    import cl_core.cluster  # noqa: F401


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments(__doc__, "smaller sizes (1-2 minutes)")
    parser.add_argument("--n-rows", type=int, help="rows of the timing run (default 200 000)")
    parser.add_argument("--rss-rows", type=int, help="rows of the RSS run (default 1 000 000)")
    parser.add_argument("--true-k", type=int, default=10, help="number of blobs")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS comparison")
    parser.add_argument(
        "--workdir", help="keep the stores here (default: a temp dir, deleted at the end)"
    )
    parser.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--k-range", type=int, nargs=2, default=K_RANGE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    k_range = (int(args.k_range[0]), int(args.k_range[1]))
    if args.child:
        child_main(args.child, args.store, k_range)
        return {}

    with scratch(args.workdir, "bench-cluster-") as workdir:  # stores are GBs
        return run_benchmark(args, k_range, workdir)


def run_benchmark(
    args: argparse.Namespace, k_range: tuple[int, int], workdir: Path
) -> dict[str, Any]:
    """Generate the stores under ``workdir``, run every comparison, print table and JSON."""
    n_rows = args.n_rows or (100_000 if args.quick else 200_000)
    rss_rows = args.rss_rows or (200_000 if args.quick else 1_000_000)
    print(f"clustering benchmark: N={n_rows} x {DIM} float16, {args.true_k} blobs, k in {k_range}")
    print(f"cores: {os.cpu_count()}, sweep on Dask threads; stores under {workdir}")

    started = time.perf_counter()
    store = make_blob_store(workdir / f"blobs-{n_rows}.zarr", n_rows, args.true_k)
    generate_seconds = time.perf_counter() - started

    warm_up()
    load_before = os.getloadavg()[0]
    ours = run_ours(store, k_range)
    baseline = run_baseline(store, k_range)
    baseline_1t = run_baseline(store, k_range, threads=1)
    load_after = os.getloadavg()[0]
    baseline_1t.pop("features")
    reference_inertia, reference_seconds = kmeans_reference_inertia(
        baseline.pop("features"), ours["k"]
    )
    # Headline: against the faster of the two baseline runs, so contention cannot flatter us.
    fastest = min(baseline["seconds"], baseline_1t["seconds"])
    speedup = fastest / ours["seconds"]
    inertia_gap = ours["inertia"] / reference_inertia - 1.0

    rss: dict[str, Any] = {}
    if not args.skip_rss:
        rss_store_path = workdir / f"blobs-{rss_rows}.zarr"
        make_blob_store(rss_store_path, rss_rows, args.true_k)
        rss = measure_rss(rss_store_path, k_range)

    rows = [
        ("measure", "ours", "baseline: library threads | 1 thread"),
        (
            "seconds (sweep + fit + assign)",
            f"{ours['seconds']:.2f}",
            f"{baseline['seconds']:.2f} | {baseline_1t['seconds']:.2f}",
        ),
        (
            "CPU seconds (all threads)",
            f"{ours['cpu_seconds']:.2f}",
            f"{baseline['cpu_seconds']:.2f} | {baseline_1t['cpu_seconds']:.2f}",
        ),
        ("chosen k", str(ours["k"]), f"{baseline['k']} | {baseline_1t['k']}"),
        ("speed-up vs faster baseline", f"{speedup:.1f}x", f"goal >= {SPEED_GOAL:.0f}x"),
        (
            "inertia at chosen k",
            f"{ours['inertia']:.1f}",
            f"KMeans(n_init=10): {reference_inertia:.1f} ({reference_seconds:.1f} s)",
        ),
        ("inertia excess", f"{100 * inertia_gap:+.2f} %", f"goal <= {100 * INERTIA_GOAL:.0f} %"),
    ]
    rss_ok = True
    if rss:
        ours_rss, base_rss = rss["ours"], rss["baseline"]
        ours_above = ours_rss["peak_rss_mib"] - ours_rss["floor_rss_mib"]
        base_above = base_rss["peak_rss_mib"] - base_rss["floor_rss_mib"]
        rss_ok = ours_above <= RSS_BUDGET_MIB
        rows += [
            (
                f"peak RSS MiB at N={rss_rows}",
                f"{ours_rss['peak_rss_mib']:.0f}",
                f"{base_rss['peak_rss_mib']:.0f} (1 thread)",
            ),
            (
                "  above import floor",
                f"{ours_above:.0f} (budget {RSS_BUDGET_MIB})",
                f"{base_above:.0f}",
            ),
            (
                f"  seconds / k at N={rss_rows}",
                f"{ours_rss['seconds']:.1f} / {ours_rss['k']}",
                f"{base_rss['seconds']:.1f} / {base_rss['k']}",
            ),
        ]
    print(f"(store generation: {generate_seconds:.1f} s)")
    print(table(rows))

    same_k = ours["k"] == baseline["k"] == baseline_1t["k"]
    record: dict[str, Any] = {
        "name": "cluster",
        "ratio": round(speedup, 3),
        "goal": SPEED_GOAL,
        "goal_met": bool(
            speedup >= SPEED_GOAL and same_k and inertia_gap <= INERTIA_GOAL and rss_ok
        ),
        "quick": bool(args.quick),
        "n_rows": n_rows,
        "dim": DIM,
        "true_k": args.true_k,
        "k_range": list(k_range),
        "sweep_backend": "dask threads (jobs single-threaded)",
        "cores": os.cpu_count(),
        "ours_seconds": round(ours["seconds"], 3),
        "baseline_seconds": round(baseline["seconds"], 3),
        "baseline_1thread_seconds": round(baseline_1t["seconds"], 3),
        "ratio_vs_library_threads_baseline": round(baseline["seconds"] / ours["seconds"], 3),
        "ratio_vs_1thread_baseline": round(baseline_1t["seconds"] / ours["seconds"], 3),
        "ours_cpu_seconds": round(ours["cpu_seconds"], 3),
        "baseline_cpu_seconds": round(baseline["cpu_seconds"], 3),
        "baseline_1thread_cpu_seconds": round(baseline_1t["cpu_seconds"], 3),
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "ours_k": ours["k"],
        "baseline_k": baseline["k"],
        "baseline_1thread_k": baseline_1t["k"],
        "same_k": same_k,
        "ours_inertia": round(ours["inertia"], 3),
        "kmeans_n_init10_inertia": round(reference_inertia, 3),
        "inertia_excess": round(inertia_gap, 5),
        "inertia_goal": INERTIA_GOAL,
        "inertia_goal_met": bool(inertia_gap <= INERTIA_GOAL),
    }
    if rss:
        record.update(
            rss_rows=rss_rows,
            ours_peak_rss_mib=round(rss["ours"]["peak_rss_mib"], 1),
            ours_floor_rss_mib=round(rss["ours"]["floor_rss_mib"], 1),
            baseline_peak_rss_mib=round(rss["baseline"]["peak_rss_mib"], 1),
            baseline_floor_rss_mib=round(rss["baseline"]["floor_rss_mib"], 1),
            rss_ratio=round(
                rss["baseline"]["peak_rss_mib"] / max(rss["ours"]["peak_rss_mib"], 1e-9), 3
            ),
            rss_budget_mib=RSS_BUDGET_MIB,
            rss_goal_met=rss_ok,
            ours_rss_seconds=round(rss["ours"]["seconds"], 3),
            baseline_rss_seconds=round(rss["baseline"]["seconds"], 3),
        )
    if not math.isfinite(speedup):
        record["goal_met"] = False
    return emit(record)


if __name__ == "__main__":
    main()
