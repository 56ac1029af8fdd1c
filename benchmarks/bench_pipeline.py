"""Prefect overhead of the pipeline: N pre-embedded rows (``zarr:`` input, float16 store) through
the cluster and curriculum stages, beside the same cl_core steps called directly.

    python benchmarks/bench_pipeline.py              # N = 1 000 000, D = 384, k swept over 2..20
    python benchmarks/bench_pipeline.py --quick      # N = 20 000
    python benchmarks/bench_pipeline.py --store S    # reuse (or create once) the store at S

Overhead = flow wall time minus the time during which at least one cl_core step was running
(the union of their intervals: sweep jobs overlap on Dask, so a plain sum would overcount).
The timed steps are the cl_core functions that the flow modules import (found by parsing their
sources, so a new call cannot be forgotten); the benchmark wraps them where the flow modules
bound them. Nothing of Prefect or Dask is patched. Everything that is not cl_core counts as
overhead: Prefect's task and flow bookkeeping (task submission included), the local Dask
cluster's start, the UI artifacts, and the tasks' reading and writing of intermediate files.
Goal: overhead <= 5% of the flow time; ``ratio`` = 5% / measured share (> 1 meets it).

Where the overhead lies is reported from Prefect's own records of the run's flow and task runs:
outside every task run (flow-run creation and state changes, task submission) or inside one but
outside cl_core (cache lookups, result records, the tasks' file IO), with the largest gaps named.
Beside it, Prefect's cost for the same shape with no work in it (a parent flow, two stage flows,
seven tasks) and for one flow with the same tasks: the part of the overhead no change to this
project's code removes while the stages are flows.

Also reported: the embedded (temporary) Prefect server's start, a cached rerun, and the sweep
run as one Prefect task per k (on a Dask cluster given by address, which is what the flow does
for a remote cluster) beside the default of one task per local worker, each task evaluating
a group of ks (``flows.stages.cluster.sweep_groups``).
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import inspect
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_OVERHEAD_SHARE = 0.05
FLOW_MODULES = (
    "flows.pipeline",
    "flows.tasks",
    "flows.stages.cluster",
    "flows.stages.curriculum",
    "flows.stages.done",
    "flows.stages.publication",
)


def cl_core_steps() -> list[tuple[str, str, str]]:
    """(flow module, cl_core module, name) of every cl_core function a flow module imports."""
    found = []
    for flow_module in FLOW_MODULES:
        source = inspect.getsource(importlib.import_module(flow_module))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cl_core"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if inspect.isfunction(getattr(module, alias.name, None)):
                        found.append((flow_module, node.module, alias.name))
    return found


class StepTimer:
    """Wraps the cl_core steps where the flows bound them; records every call's interval."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for flow_module, module_name, name in cl_core_steps():
            for owner in (
                importlib.import_module(flow_module),
                importlib.import_module(module_name),
            ):
                original = getattr(owner, name, None)
                if original is None or getattr(original, "_bench_timed", False):
                    continue
                self._originals.append((owner, name, original))
                wrapper = self._timed(original, f"{module_name}.{name}")
                # Pickled by reference (a task shipped to an in-process Dask worker refers to
                # it): the wrapper is what ``owner.name`` now names.
                wrapper.__module__, wrapper.__qualname__ = owner.__name__, name
                setattr(owner, name, wrapper)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
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

        wrapper._bench_timed = True  # type: ignore[attr-defined]
        return wrapper

    def busy_seconds(self, start: float, stop: float) -> float:
        """Length of the union of recorded intervals clipped to [start, stop]."""
        clipped = [(max(a, start), min(b, stop)) for a, b, _ in self.intervals]
        return sum(b - a for a, b in union(clipped))

    def by_label(self, start: float, stop: float) -> dict[str, float]:
        totals: dict[str, float] = {}
        for a, b, label in self.intervals:
            if a >= start and b <= stop:
                totals[label] = totals.get(label, 0.0) + (b - a)
        return totals


def make_store(path: Path, n_rows: int, dim: int, n_centres: int, seed: int) -> Path:
    """A finalized float16 store of a Gaussian mixture (uneven spreads), built in blocks."""
    import numpy as np

    from cl_core.store import open_store, store_from_array

    if path.exists():
        store = open_store(path, read_only=True)
        if store.is_complete and store.shape == (n_rows, dim):
            return path
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (n_centres, dim)).astype(np.float32)
    spread = rng.uniform(0.2, 0.6, n_centres).astype(np.float32)
    features = np.empty((n_rows, dim), dtype=np.float16)
    for start in range(0, n_rows, 100_000):
        stop = min(start + 100_000, n_rows)
        labels = rng.integers(0, n_centres, stop - start)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        features[start:stop] = centres[labels] + noise * spread[labels, None]
    store_from_array(
        path,
        features,
        attrs={"dataset_fingerprint": f"bench-{n_rows}-{dim}-{seed}"},
        dtype="float16",
        overwrite=True,
    )
    return path


def pipeline_params(store: Path, root: Path, cluster_range: tuple[int, int], **output: Any) -> dict:
    from flows.params import ClusterParams, CurriculumParams, DatasetParams, OutputParams

    return {
        "dataset": DatasetParams(spec=f"zarr:{store}", name="bench"),
        "clustering": ClusterParams(cluster_range=cluster_range),
        "curriculum": CurriculumParams(),
        "output": OutputParams(
            output_dir=str(root / "artifacts"), work_dir=str(root / "runs"), **output
        ),
    }


def run_direct(store: Path, root: Path, params: dict[str, Any]) -> float:
    """The same steps without Prefect: cl_core calls in sequence, the same kind of outputs."""
    from cl_core.artifacts import publish_curriculum
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
    publish_curriculum(
        root / "direct-artifacts",
        "bench",
        difficulty,
        result.assignment,
        result.centroids,
        parents=[source.fingerprint],
        sweep=result.sweep_records(),
        extra_files={path.name: path for path in plots.values()},
        schedule=schedule,
    )
    return time.perf_counter() - started


def timed_flow(params: dict[str, Any], timer: StepTimer) -> dict[str, Any]:
    """One embedded-mode pipeline run: wall, cl_core busy and overhead seconds."""
    from flows._prefect_env import embedded_run_settings
    from flows.pipeline import curriculum_pipeline

    with embedded_run_settings():  # as `cl-curriculum run` without a server
        started = time.perf_counter()
        result = curriculum_pipeline(**params)
        stopped = time.perf_counter()
    busy = timer.busy_seconds(started, stopped)
    return {
        "result": result,
        "started": started,
        "stopped": stopped,
        "flow_seconds": stopped - started,
        "busy_seconds": busy,
        "overhead_seconds": stopped - started - busy,
        "share": (stopped - started - busy) / (stopped - started),
        "steps": timer.by_label(started, stopped),
    }


def union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals, as sorted disjoint intervals."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted(span for span in spans if span[1] > span[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def uncovered(
    start: float, stop: float, spans: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The parts of [start, stop] that no interval covers."""
    gaps, cursor = [], start
    for a, b in union([(max(a, start), min(b, stop)) for a, b in spans]):
        if a > cursor:
            gaps.append((cursor, a))
        cursor = max(cursor, b)
    if stop > cursor:
        gaps.append((cursor, stop))
    return gaps


def prefect_spans(run: dict[str, Any]) -> list[tuple[float, float, str]]:
    """Start and end of the run's flow runs and task runs as Prefect recorded them (public
    client API), on this process's ``perf_counter`` clock; a stage flow's placeholder task run
    in its parent is left out (it spans the whole stage flow)."""
    from prefect.client.orchestration import get_client

    offset = time.time() - time.perf_counter()
    since = run["started"] + offset - 1.0
    spans = []
    with get_client(sync_client=True) as client:
        flow_runs = [f for f in client.read_flow_runs(limit=200) if f.start_time and f.end_time]
        flow_runs = [f for f in flow_runs if f.start_time.timestamp() >= since]
        placeholders = {f.parent_task_run_id for f in flow_runs if f.parent_task_run_id}
        names = {flow.id: flow.name for flow in client.read_flows(limit=200)}
        for f in flow_runs:
            spans.append((f.start_time.timestamp() - offset, f.end_time.timestamp() - offset,
                          f"flow {names.get(f.flow_id, f.name)}"))  # fmt: skip
        for t in client.read_task_runs(limit=200):
            recorded = t.start_time and t.end_time and t.id not in placeholders
            if recorded and t.start_time.timestamp() >= since:
                spans.append((t.start_time.timestamp() - offset,
                              t.end_time.timestamp() - offset, f"task {t.name}"))  # fmt: skip
    return spans


def overhead_breakdown(run: dict[str, Any], timer: StepTimer) -> dict[str, Any]:
    """Where the overhead of a measured run lies: outside every task run (flow-run creation
    and state changes, task submission, the Dask cluster) or inside a task run but outside
    cl_core (cache lookups, result records, the tasks' own file reads and writes); and the
    largest gaps, named by the events around them."""
    start, stop = run["started"], run["stopped"]
    core = [(a, b) for a, b, _ in timer.intervals if a >= start and b <= stop]
    prefect = prefect_spans(run)
    tasks = [(a, b) for a, b, label in prefect if label.startswith("task ")]
    outside_tasks = uncovered(start, stop, core + tasks)
    gaps = uncovered(start, stop, core)
    inside_tasks = sum(b - a for a, b in gaps) - sum(b - a for a, b in outside_tasks)
    events = [(a, f"{label} starts") for a, _, label in prefect]
    events += [(b, f"{label} ends") for _, b, label in prefect]
    steps = [  # the steps worth naming (not the id hashing and path parsing in between)
        (a, b, label.rsplit(".", 1)[-1])
        for a, b, label in timer.intervals
        if a >= start and b <= stop and b - a >= 0.005
    ]
    events += [(a, f"{name} starts") for a, _, name in steps]
    events += [(b, f"{name} ends") for _, b, name in steps]
    events += [(start, "pipeline called"), (stop, "pipeline returned")]
    events.sort()
    largest = []
    for a, b in sorted(gaps, key=lambda gap: gap[0] - gap[1])[:6]:
        before = [name for t, name in events if t <= a + 1e-4]
        after = [name for t, name in events if t >= b - 1e-4]
        largest.append(
            {
                "seconds": round(b - a, 3),
                "after": before[-1] if before else "?",
                "during": [name for t, name in events if a + 1e-4 < t < b - 1e-4],
                "before": after[0] if after else "?",
            }
        )
    return {
        "outside_task_runs_seconds": round(sum(b - a for a, b in outside_tasks), 3),
        "inside_task_runs_seconds": round(inside_tasks, 3),
        "flow_runs": sum(1 for _, _, label in prefect if label.startswith("flow ")),
        "task_runs": len(tasks),
        "largest_gaps": largest,
    }


def prefect_floor(repeats: int = 3, task_seconds: float = 0.05) -> dict[str, float]:
    """Prefect's own cost for the pipeline's shape on this machine, with nothing else in it:
    a parent flow calling two stage flows that run 3 and 4 tasks, beside one flow running the
    same 7 tasks (each task sleeps ``task_seconds``; the sleeps are subtracted). The fastest of
    ``repeats`` runs each, in seconds."""
    from prefect import flow, task

    from flows._prefect_env import embedded_run_settings

    @task(persist_result=False)
    def step(index: int) -> int:
        time.sleep(task_seconds)
        return index

    @flow(name="floor-stage")
    def stage(n_tasks: int) -> int:
        return sum(step(index) for index in range(n_tasks))

    @flow(name="floor-parent")
    def parent() -> None:
        stage(3)
        stage(4)

    @flow(name="floor-one-flow")
    def one_flow() -> None:
        for index in range(7):
            step(index)

    seconds: dict[str, list[float]] = {"stage_flows": [], "one_flow": []}
    with embedded_run_settings():
        for _ in range(repeats):
            for key, run in (("stage_flows", parent), ("one_flow", one_flow)):
                started = time.perf_counter()
                run()
                seconds[key].append(time.perf_counter() - started - 7 * task_seconds)
    return {key: min(values) for key, values in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 20 000 instead of 1 000 000")
    parser.add_argument("--rows", type=int, default=None, help="override N")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--store", type=Path, default=None, help="store path (kept, reused)")
    parser.add_argument("--no-per-k", action="store_true", help="skip the one-task-per-k run")
    parser.add_argument(
        "--sweep-runner", choices=("dask", "threads"), default="dask", help="the measured run's"
    )
    args = parser.parse_args(argv)
    n_rows = args.rows or (20_000 if args.quick else 1_000_000)
    cluster_range = (2, 20)

    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect-home"))
    from flows import _prefect_env

    _prefect_env.configure_environment()  # as the CLI does, before Prefect is imported
    made = time.perf_counter()
    store = make_store(args.store or workdir / "store.zarr", n_rows, args.dim, n_centres=12, seed=0)
    store_seconds = time.perf_counter() - made

    from distributed import LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    def params_in(name: str, data: Path = store, ks: tuple[int, int] = cluster_range, **o: Any):
        return pipeline_params(data, workdir / name, ks, **o)

    timer = StepTimer()
    timer.install()
    server_started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        server_seconds = time.perf_counter() - server_started
        # One-time process costs (imports, first calls, first flow run, first Dask cluster)
        # are paid once, on a small store, before anything is timed.
        warm_store = make_store(workdir / "warm.zarr", 2_000, args.dim, n_centres=4, seed=1)
        run_direct(warm_store, workdir / "warm-direct", params_in("warm", warm_store, (2, 4)))
        warm = timed_flow(params_in("warm", warm_store, (2, 4)), timer)

        direct_seconds = run_direct(store, workdir / "direct", params_in("direct"))
        grouped = timed_flow(params_in("flow", sweep_runner=args.sweep_runner), timer)
        breakdown = overhead_breakdown(grouped, timer)
        cached = timed_flow(params_in("flow", sweep_runner=args.sweep_runner), timer)
        floor = prefect_floor()
        per_k = None
        if not args.no_per_k:
            with LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
            ) as cluster:
                per_k = timed_flow(
                    params_in("per-k", dask_address=cluster.scheduler_address), timer
                )
    timer.uninstall()

    result = grouped["result"]
    share = grouped["share"]
    ratio = GOAL_OVERHEAD_SHARE / share if share > 0 else float("inf")
    sweep_tasks = len(result.task_states.get("evaluate-ks", []))
    rows = [
        ("rows x dim (float16 store)", f"{n_rows} x {args.dim}"),
        ("k chosen (Davies-Bouldin, 2..20)", result.n_clusters),
        ("direct cl_core (no Prefect) s", f"{direct_seconds:.2f}"),
        (
            f"pipeline flow s ({sweep_tasks} sweep tasks, {args.sweep_runner})",
            f"{grouped['flow_seconds']:.2f}",
        ),
        ("  of which cl_core busy s", f"{grouped['busy_seconds']:.2f}"),
        ("  Prefect/IO overhead s", f"{grouped['overhead_seconds']:.2f} ({100 * share:.1f}%)"),
        ("    outside task runs s (flow runs, submits)",
         f"{breakdown['outside_task_runs_seconds']:.2f} ({breakdown['flow_runs']} flow runs)"),
        ("    inside task runs, not cl_core s (cache, IO)",
         f"{breakdown['inside_task_runs_seconds']:.2f} ({breakdown['task_runs']} task runs)"),
    ]  # fmt: skip
    if per_k is not None:
        rows += [
            ("pipeline flow s (one sweep task per k)", f"{per_k['flow_seconds']:.2f}"),
            ("  Prefect/IO overhead s", f"{per_k['overhead_seconds']:.2f} "
             f"({100 * per_k['share']:.1f}%)"),
        ]  # fmt: skip
    rows += [
        ("Prefect alone: parent + 2 stage flows, 7 tasks s",
         f"{floor['stage_flows']:.2f} (one flow, same tasks: {floor['one_flow']:.2f})"),
        ("embedded Prefect server start s (once)", f"{server_seconds:.2f}"),
        ("cached rerun s", f"{cached['flow_seconds']:.2f} "
         f"({cached['result'].count('Cached')} tasks cached)"),
        ("first pipeline run, 2 000 rows s (warm-up)", f"{warm['flow_seconds']:.2f}"),
        ("store written s (not part of the flow)", f"{store_seconds:.2f}"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|------")
    for label, value in rows:
        print(f"{label:<{width}} | {value}")
    print("\nlargest overhead gaps in the measured flow run:")
    for gap in breakdown["largest_gaps"]:
        during = f" (during: {', '.join(gap['during'])})" if gap["during"] else ""
        print(f"  {gap['seconds']:6.3f} s  {gap['after']} -> {gap['before']}{during}")
    print("\ncl_core time by step in the measured flow run:")
    for label, seconds in sorted(grouped["steps"].items(), key=lambda item: -item[1]):
        print(f"  {label:<45} {seconds:8.2f} s")
    record = {
        "name": "pipeline_prefect_overhead",
        "ratio": round(ratio, 3),
        "goal": 1.0,
        "goal_met": bool(share <= GOAL_OVERHEAD_SHARE),
        "goal_text": "Prefect overhead <= 5% of the flow time at N = 1M (ratio = 0.05 / share)",
        "n_rows": n_rows,
        "dim": args.dim,
        "n_clusters": result.n_clusters,
        "flow_seconds": round(grouped["flow_seconds"], 3),
        "cl_core_busy_seconds": round(grouped["busy_seconds"], 3),
        "overhead_seconds": round(grouped["overhead_seconds"], 3),
        "overhead_share": round(share, 4),
        "overhead_outside_task_runs_seconds": breakdown["outside_task_runs_seconds"],
        "overhead_inside_task_runs_seconds": breakdown["inside_task_runs_seconds"],
        "flow_runs": breakdown["flow_runs"],
        "task_runs": breakdown["task_runs"],
        "sweep_tasks": sweep_tasks,
        "sweep_runner": args.sweep_runner,
        "per_k_flow_seconds": round(per_k["flow_seconds"], 3) if per_k else None,
        "per_k_overhead_seconds": round(per_k["overhead_seconds"], 3) if per_k else None,
        "per_k_overhead_share": round(per_k["share"], 4) if per_k else None,
        "direct_seconds": round(direct_seconds, 3),
        "prefect_floor_stage_flows_seconds": round(floor["stage_flows"], 3),
        "prefect_floor_one_flow_seconds": round(floor["one_flow"], 3),
        "server_start_seconds": round(server_seconds, 3),
        "cached_rerun_seconds": round(cached["flow_seconds"], 3),
        "warmup_run_seconds": round(warm["flow_seconds"], 3),
        "quick": n_rows < 1_000_000,
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
