"""Prefect overhead of the pipeline: N pre-embedded rows (``zarr:`` input) through cluster +
curriculum, with the same work done directly (no Prefect) side by side.

    python benchmarks/bench_pipeline.py            # N = 100 000, D = 384, k swept over 2..20
    python benchmarks/bench_pipeline.py --quick    # N = 10 000

Overhead = flow wall time minus the time during which at least one cl_core call was running
(the union of their intervals: sweep jobs overlap on Dask, so a plain sum would overcount).
The timed calls are every cl_core function that ``flows/`` imports (found by parsing its
sources, so a new call cannot be forgotten).
Everything that is not cl_core counts as overhead: Prefect's task and flow bookkeeping, the
local Dask cluster's start, the UI artifacts, and the tasks' reading and writing of
intermediate files. The ephemeral server's start (once per process) is reported separately.
Goal: overhead <= 10% of the flow time; ``ratio`` = 10% / measured share (> 1 meets it).

The headline is the embedded mode (what ``cl-curriculum run`` does without a server: flow
heartbeats off); the same pipeline with heartbeats on, as a worker runs it against a server,
is measured in the same process on a fresh work directory and reported beside it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_OVERHEAD_SHARE = 0.10
FLOW_SOURCES = ("flows/pipeline.py", "flows/tasks.py")


def cl_core_calls() -> dict[str, list[str]]:
    """Module -> names of the cl_core functions the flows import (classes and constants skipped)."""
    import ast
    import importlib
    import inspect

    found: dict[str, set[str]] = {}
    for source in FLOW_SOURCES:
        for node in ast.walk(ast.parse((ROOT / source).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cl_core."):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if inspect.isfunction(getattr(module, alias.name, None)):
                        found.setdefault(node.module, set()).add(alias.name)
    return {module: sorted(names) for module, names in sorted(found.items())}


class CallTimer:
    """Wraps cl_core functions (module attributes) and records every call's interval."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        import importlib

        for module_name, names in cl_core_calls().items():
            module = importlib.import_module(module_name)
            for name in names:
                original = getattr(module, name)
                self._originals.append((module, name, original))
                setattr(module, name, self._timed(original, f"{module_name}.{name}"))

    def uninstall(self) -> None:
        for module, name, original in self._originals:
            setattr(module, name, original)
        self._originals.clear()

    def _timed(self, function: Any, label: str) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.intervals.append((started, time.perf_counter(), label))

        return wrapper

    def busy_seconds(self, start: float, stop: float) -> float:
        """Length of the union of recorded intervals clipped to [start, stop]."""
        spans = sorted((max(a, start), min(b, stop)) for a, b, _ in self.intervals)
        total, current_start, current_stop = 0.0, None, None
        for a, b in spans:
            if b <= a:
                continue
            if current_stop is None or a > current_stop:
                if current_stop is not None:
                    total += current_stop - current_start
                current_start, current_stop = a, b
            else:
                current_stop = max(current_stop, b)
        if current_stop is not None:
            total += current_stop - current_start
        return total

    def by_label(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for a, b, label in self.intervals:
            totals[label] = totals.get(label, 0.0) + (b - a)
        return totals


def make_store(path: Path, n_rows: int, dim: int, n_centres: int, seed: int) -> Path:
    """A finalized float16 store of a Gaussian mixture (well separated, uneven spreads)."""
    import numpy as np

    from cl_core.store import store_from_array

    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (n_centres, dim)).astype(np.float32)
    labels = rng.integers(0, n_centres, n_rows)
    spread = rng.uniform(0.2, 0.6, n_centres).astype(np.float32)
    features = (
        centres[labels]
        + rng.normal(0.0, 1.0, (n_rows, dim)).astype(np.float32) * spread[labels, None]
    )
    store_from_array(path, features, attrs={"dataset_fingerprint": f"bench-{n_rows}-{dim}-{seed}"})
    return path


def pipeline_params(store: Path, root: Path, cluster_range: tuple[int, int]) -> dict[str, Any]:
    from flows.params import ClusterParams, CurriculumParams, DatasetParams, OutputParams

    return {
        "dataset": DatasetParams(spec=f"zarr:{store}", name="bench"),
        "clustering": ClusterParams(cluster_range=cluster_range),
        "curriculum": CurriculumParams(),
        "output": OutputParams(
            output_dir=str(root / "artifacts"), work_dir=str(root / "runs"), sweep_runner="dask"
        ),
    }


def timed_run(pipeline: Any, params: dict[str, Any], timer: CallTimer) -> tuple[Any, float, float]:
    """(result, flow wall seconds, seconds in which some cl_core call was running)."""
    started = time.perf_counter()
    result = pipeline(**params)
    stopped = time.perf_counter()
    return result, stopped - started, timer.busy_seconds(started, stopped)


def _median_run(runs: list[tuple[Any, float, float]]) -> tuple[float, float, float, float]:
    """Median flow seconds, busy seconds, overhead seconds and overhead share over runs."""
    flows_s = [flow for _, flow, _ in runs]
    busy_s = [busy for _, _, busy in runs]
    overhead_s = [flow - busy for _, flow, busy in runs]
    shares = [(flow - busy) / flow for _, flow, busy in runs]
    return (
        statistics.median(flows_s),
        statistics.median(busy_s),
        statistics.median(overhead_s),
        statistics.median(shares),
    )


def run_direct(store: Path, root: Path, params: dict[str, Any]) -> float:
    """The same stages without Prefect: cl_core calls in sequence, same outputs."""
    import numpy as np

    from cl_core.artifacts import publish_artifact
    from cl_core.cluster import cluster_embeddings
    from cl_core.difficulty import normalize_difficulty
    from cl_core.report import schedule_curve, write_report
    from cl_core.schedule import build_schedule
    from cl_core.store import open_store

    started = time.perf_counter()
    source = open_store(store, read_only=True)
    result = cluster_embeddings(source, params["clustering"].to_config())
    difficulty = normalize_difficulty(result.distances, result.assignment, method="minmax")
    schedule = build_schedule(difficulty, params["curriculum"].schedule_config())
    plots = write_report(
        root / "direct-report",
        summary={"N": len(difficulty)},
        difficulty=difficulty,
        assignment=result.assignment,
        distances=result.distances,
        schedule_points=schedule_curve(schedule),
        sweep=result.sweep_records(),
        chosen_k=result.n_clusters,
    )
    publish_artifact(
        root / "direct-artifacts",
        "bench",
        arrays={
            "difficulty": difficulty,
            "assignment": result.assignment,
            "centroids": np.asarray(result.centroids),
        },
        json_files={"schedule": schedule.to_json(), "sweep": result.sweep_records()},
        config={"direct": True},
        parents=[source.fingerprint],
        extra_files={path.name: path for path in plots.values()},
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 10 000 instead of 100 000")
    parser.add_argument("--rows", type=int, default=None, help="override N (e.g. 1000000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    args = parser.parse_args(argv)
    n_rows = args.rows or (10_000 if args.quick else 100_000)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    cluster_range = (2, 20)

    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect-home"))
    import flows  # noqa: F401  (embedded Prefect defaults)

    store = make_store(workdir / "store.zarr", n_rows, args.dim, n_centres=12, seed=0)

    from prefect.testing.utilities import prefect_test_harness

    from flows._prefect_env import embedded_run_settings
    from flows.pipeline import curriculum_pipeline

    def params_in(name: str, data: Path = store, ks: tuple[int, int] = cluster_range) -> dict:
        return pipeline_params(data, workdir / name, ks)

    timer = CallTimer()
    timer.install()
    server_started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        server_seconds = time.perf_counter() - server_started
        # One-time process costs (imports, first calls, first flow run, first Dask cluster)
        # are paid once, on a small store, before anything is timed.
        warm_store = make_store(workdir / "warm.zarr", 2_000, args.dim, n_centres=4, seed=1)
        run_direct(warm_store, workdir / "warm-direct", params_in("warm", warm_store, (2, 4)))
        warm_started = time.perf_counter()
        with embedded_run_settings():
            curriculum_pipeline(**params_in("warm", warm_store, (2, 4)))
        warm_seconds = time.perf_counter() - warm_started

        direct, embedded, server_mode = [], [], []
        for rep in range(args.repeats):  # interleaved, each on a fresh work dir (no cache hits)
            direct.append(run_direct(store, workdir / f"direct-{rep}", params_in(f"d{rep}")))
            with embedded_run_settings():  # as `cl-curriculum run` without a server
                embedded.append(timed_run(curriculum_pipeline, params_in(f"e{rep}"), timer))
            # as a worker runs it against a server: flow heartbeats on
            server_mode.append(timed_run(curriculum_pipeline, params_in(f"s{rep}"), timer))
        with embedded_run_settings():
            cached_started = time.perf_counter()
            cached = curriculum_pipeline(**params_in("e0"))
            cached_seconds = time.perf_counter() - cached_started
    timer.uninstall()

    result = embedded[0][0]
    direct_seconds = statistics.median(direct)
    flow_seconds, busy, overhead, share = _median_run(embedded)
    server_flow_seconds, server_busy, server_overhead, server_share = _median_run(server_mode)
    ratio = GOAL_OVERHEAD_SHARE / share if share > 0 else float("inf")

    rows = [
        ("rows x dim", f"{n_rows} x {args.dim}"),
        ("k chosen (Davies-Bouldin, 2..20)", result.n_clusters),
        (f"medians of {args.repeats} interleaved runs", ""),
        ("direct cl_core (no Prefect) s", f"{direct_seconds:.2f}"),
        ("Prefect pipeline flow s (embedded mode)", f"{flow_seconds:.2f}"),
        ("  of which cl_core busy s", f"{busy:.2f}"),
        ("  Prefect/IO overhead s", f"{overhead:.2f} ({100 * share:.1f}%)"),
        ("Prefect pipeline flow s (heartbeats on)", f"{server_flow_seconds:.2f}"),
        ("  of which cl_core busy s", f"{server_busy:.2f}"),
        ("  Prefect/IO overhead s", f"{server_overhead:.2f} ({100 * server_share:.1f}%)"),
        ("ephemeral server start s (once)", f"{server_seconds:.2f}"),
        ("first pipeline run, 2 000 rows s (warm-up)", f"{warm_seconds:.2f}"),
        ("cached rerun s", f"{cached_seconds:.2f} ({cached.count('Cached')} tasks cached)"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|------")
    for label, value in rows:
        print(f"{label:<{width}} | {value}")
    print("\ncl_core time by call (summed over all runs and calls):")
    for label, seconds in sorted(timer.by_label().items(), key=lambda item: -item[1]):
        print(f"  {label:<40} {seconds:8.2f} s")
    record = {
        "name": "pipeline_prefect_overhead",
        "ratio": round(ratio, 3),
        "goal": 1.0,
        "goal_met": bool(share <= GOAL_OVERHEAD_SHARE),
        "goal_text": "Prefect overhead <= 10% of the flow time (ratio = 0.10 / overhead share)",
        "n_rows": n_rows,
        "dim": args.dim,
        "repeats": args.repeats,
        "n_clusters": result.n_clusters,
        "flow_seconds": round(flow_seconds, 3),
        "cl_core_busy_seconds": round(busy, 3),
        "overhead_seconds": round(overhead, 3),
        "overhead_share": round(share, 4),
        "direct_seconds": round(direct_seconds, 3),
        "heartbeats_on_flow_seconds": round(server_flow_seconds, 3),
        "heartbeats_on_overhead_share": round(server_share, 4),
        "server_start_seconds": round(server_seconds, 3),
        "warmup_run_seconds": round(warm_seconds, 3),
        "cached_rerun_seconds": round(cached_seconds, 3),
        "quick": args.quick,
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
