"""Prefect overhead of the pipeline as a fixed cost: N pre-embedded rows (``zarr:`` input, float16
store) through the cluster and curriculum stages at two sizes, beside the same cl_core steps called
directly.

    python benchmarks/bench_pipeline.py                  # N = 1 000 000 and 4 000 000, D = 384
    python benchmarks/bench_pipeline.py --quick          # N = 20 000 and 80 000
    python benchmarks/bench_pipeline.py --workdir DIR    # keep the stores in DIR and reuse them

Overhead = flow wall time minus the time during which at least one cl_core step was running
(the union of their intervals: sweep jobs overlap on Dask, so a plain sum would overcount).
The timed steps are the cl_core functions that the flow modules import (found by parsing their
sources, so a new call cannot be forgotten); the benchmark wraps them where the flow modules
bound them. Nothing of Prefect or Dask is patched. Everything that is not cl_core counts as
overhead: Prefect's task and flow bookkeeping (task submission included), the local Dask
cluster's start, the UI artifacts, and the tasks' reading and writing of intermediate files.

Goal (a fixed cost, not a share of the work): overhead <= 2 s at both sizes, and <= 3% of the
flow time at the largest. ``ratio`` = min(2 s / largest overhead, 3% / share at the largest N);
> 1 meets both.

Where the overhead lies is reported, per size, from Prefect's own records of the run's flow and
task runs: outside every task run (flow-run creation and state changes, task submission) or
inside one but outside cl_core (cache lookups, result records, the tasks' file IO), with the
largest gaps named. Beside it, Prefect's cost for the same shape with no work in it (a parent
flow, two stage flows, seven tasks) and for one flow with the same tasks: the part of the
overhead no change to this project's code removes while the stages are flows.

Also reported, at the first size: the embedded (temporary) Prefect server's start, a cached
rerun, and the sweep run as one Prefect task per k (on a Dask cluster given by address, which is
what the flow does for a remote cluster) beside the default of one task per local worker, each
task evaluating a group of ks (``flows.stages.cluster.sweep_groups``).

The stores are written shard by shard (4M x 384 float16 is ~3 GiB on disk, never in memory) into
a temporary directory that is removed at the end (``--workdir`` keeps them).
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import inspect
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arguments, emit, scratch, table, write_store

SIZES = (1_000_000, 4_000_000)
QUICK_SIZES = (20_000, 80_000)
GOAL_OVERHEAD_SECONDS = 2.0  # at every size
GOAL_OVERHEAD_SHARE = 0.03  # at the largest size
CLUSTER_RANGE = (2, 20)
FLOW_MODULES = (
    "flows.pipeline",
    "flows.tasks",
    "flows.stages.cluster",
    "flows.stages.curriculum",
    "flows.done",
    "flows.publication",
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
        self.wrapped: dict[Any, Any] = {}  # each installed wrapper -> the function it times
        self._lock = threading.Lock()
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for flow_module, module_name, name in cl_core_steps():
            for owner in (
                importlib.import_module(flow_module),
                importlib.import_module(module_name),
            ):
                original = getattr(owner, name, None)
                if original is None or original in self.wrapped:
                    continue
                self._originals.append((owner, name, original))
                wrapper = self.timed(original, f"{module_name}.{name}")
                # Pickled by reference (a task shipped to an in-process Dask worker refers to
                # it): the wrapper is what ``owner.name`` now names.
                wrapper.__module__, wrapper.__qualname__ = owner.__name__, name
                self.wrapped[wrapper] = original
                setattr(owner, name, wrapper)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()
        self.wrapped.clear()

    def timed(self, function: Any, label: str) -> Any:
        """``function``, recording the interval of every call under ``label``."""

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
        clipped = [(max(a, start), min(b, stop)) for a, b, _ in self.intervals]
        return sum(b - a for a, b in union(clipped))

    def by_label(self, start: float, stop: float) -> dict[str, float]:
        totals: dict[str, float] = {}
        for a, b, label in self.intervals:
            if a >= start and b <= stop:
                totals[label] = totals.get(label, 0.0) + (b - a)
        return totals


def make_store(path: Path, n_rows: int, dim: int, n_centres: int, seed: int) -> Path:
    """A finalized float16 store of a Gaussian mixture (uneven spreads), written shard by shard
    (reused if a complete one is there)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (n_centres, dim)).astype(np.float32)
    spread = rng.uniform(0.2, 0.6, n_centres).astype(np.float32)

    def shard_rows(shard: int, n: int) -> np.ndarray:
        shard_rng = np.random.default_rng([seed, shard])
        labels = shard_rng.integers(0, n_centres, n)
        rows = shard_rng.standard_normal((n, dim), dtype=np.float32)
        rows *= spread[labels, None]
        rows += centres[labels]
        return rows

    fingerprint = f"bench-{n_rows}-{dim}-{seed}"
    write_store(path, n_rows, dim, shard_rows, fingerprint=fingerprint)
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
    from flows import prefect_env
    from flows.pipeline import curriculum_pipeline

    with prefect_env.embedded_run_settings():  # as `cl-curriculum run` without a server
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

    from flows import prefect_env

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
    with prefect_env.embedded_run_settings():
        for _ in range(repeats):
            for key, run in (("stage_flows", parent), ("one_flow", one_flow)):
                started = time.perf_counter()
                run()
                seconds[key].append(time.perf_counter() - started - 7 * task_seconds)
    return {key: min(values) for key, values in seconds.items()}


def measure_size(
    n_rows: int, args: argparse.Namespace, stores: Path, root: Path, timer: StepTimer
) -> dict[str, Any]:
    """Write (or reuse) the N-row store, run the cl_core steps directly, then the flow."""
    made = time.perf_counter()
    store = make_store(stores / f"store-{n_rows}x{args.dim}.zarr", n_rows, args.dim, 12, seed=0)
    store_seconds = time.perf_counter() - made
    direct = root / f"direct-{n_rows}"
    direct_seconds = run_direct(store, direct, pipeline_params(store, direct, CLUSTER_RANGE))
    params = pipeline_params(
        store, root / f"flow-{n_rows}", CLUSTER_RANGE, sweep_runner=args.sweep_runner
    )
    run = timed_flow(params, timer)
    breakdown = overhead_breakdown(run, timer)
    figures = {  # the JSON record's entry for this size
        "n": n_rows,
        "flow_seconds": round(run["flow_seconds"], 3),
        "cl_core_seconds": round(run["busy_seconds"], 3),
        "overhead_seconds": round(run["overhead_seconds"], 3),
        "overhead_share": round(run["share"], 4),
        "overhead_outside_task_runs_seconds": breakdown["outside_task_runs_seconds"],
        "overhead_inside_task_runs_seconds": breakdown["inside_task_runs_seconds"],
        "flow_runs": breakdown["flow_runs"],
        "task_runs": breakdown["task_runs"],
        "direct_seconds": round(direct_seconds, 3),
        "n_clusters": run["result"].n_clusters,
        "sweep_tasks": len(run["result"].task_states.get("evaluate-ks", [])),
        "store_seconds": round(store_seconds, 3),
    }
    return {
        "figures": figures,
        "store": store,
        "params": params,
        "gaps": breakdown["largest_gaps"],
        "steps": run["steps"],
    }


def per_k_flow(store: Path, root: Path, timer: StepTimer) -> dict[str, Any]:
    """The flow with one sweep task per k, on a Dask cluster given by address (as for a remote
    cluster; the local one here runs 2 single-thread workers in this process)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        return timed_flow(
            pipeline_params(store, root / "per-k", CLUSTER_RANGE, dask_address=address), timer
        )


def run_benchmark(
    args: argparse.Namespace, sizes: tuple[int, ...], stores: Path, root: Path
) -> dict[str, Any]:
    """Every run against one temporary Prefect server; prints the tables; the JSON record."""
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect-home"))
    from flows import prefect_env

    prefect_env.configure_environment()  # as the CLI does, before Prefect is imported
    from prefect.testing.utilities import prefect_test_harness

    timer = StepTimer()
    timer.install()
    try:
        server_started = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=120):
            server_seconds = time.perf_counter() - server_started
            # One-time process costs (imports, first calls, first flow run, first Dask cluster)
            # are paid once, on a small store, before anything is timed.
            warm_store = make_store(root / "warm.zarr", 2_000, args.dim, n_centres=4, seed=1)
            warm_params = pipeline_params(warm_store, root / "warm", (2, 4))
            run_direct(warm_store, root / "warm-direct", warm_params)
            warm = timed_flow(warm_params, timer)

            first = measure_size(sizes[0], args, stores, root, timer)
            cached = timed_flow(first["params"], timer)  # at the first size only, as the per-k run
            per_k = None if args.no_per_k else per_k_flow(first["store"], root, timer)
            measured = [first, *(measure_size(n, args, stores, root, timer) for n in sizes[1:])]
            floor = prefect_floor()
    finally:
        timer.uninstall()

    sizes_figures = [size["figures"] for size in measured]
    print_tables(args, measured, per_k, floor, server_seconds, cached, warm)

    largest = dict(sizes_figures[-1])  # the top-level figures, named as before the two sizes
    n_rows, busy = largest.pop("n"), largest.pop("cl_core_seconds")
    del largest["store_seconds"]
    worst_overhead = max(size["overhead_seconds"] for size in sizes_figures)
    share = largest["overhead_share"]
    ratio = min(
        GOAL_OVERHEAD_SECONDS / max(worst_overhead, 1e-9),
        GOAL_OVERHEAD_SHARE / max(share, 1e-9),
    )
    return {
        "name": "pipeline_prefect_overhead",
        "ratio": round(ratio, 3),
        "goal": 1.0,
        "goal_met": bool(worst_overhead <= GOAL_OVERHEAD_SECONDS and share <= GOAL_OVERHEAD_SHARE),
        "goal_text": (
            f"Prefect overhead <= {GOAL_OVERHEAD_SECONDS:g} s at every N and <= "
            f"{100 * GOAL_OVERHEAD_SHARE:g}% of the flow time at the largest N (ratio = min(2 s "
            "/ largest overhead, 0.03 / share at the largest N)); the top-level figures are the "
            "largest N's"
        ),
        "goal_overhead_seconds": GOAL_OVERHEAD_SECONDS,
        "goal_overhead_share": GOAL_OVERHEAD_SHARE,
        "sizes": sizes_figures,
        "n_rows": n_rows,
        "dim": args.dim,
        "cl_core_busy_seconds": busy,
        **largest,
        "sweep_runner": args.sweep_runner,
        "per_k_n_rows": sizes[0],
        "per_k_flow_seconds": round(per_k["flow_seconds"], 3) if per_k else None,
        "per_k_overhead_seconds": round(per_k["overhead_seconds"], 3) if per_k else None,
        "per_k_overhead_share": round(per_k["share"], 4) if per_k else None,
        "prefect_floor_stage_flows_seconds": round(floor["stage_flows"], 3),
        "prefect_floor_one_flow_seconds": round(floor["one_flow"], 3),
        "server_start_seconds": round(server_seconds, 3),
        "cached_rerun_n_rows": sizes[0],
        "cached_rerun_seconds": round(cached["flow_seconds"], 3),
        "warmup_run_seconds": round(warm["flow_seconds"], 3),
        "quick": sizes != SIZES,
    }


def print_tables(
    args: argparse.Namespace,
    measured: list[dict[str, Any]],
    per_k: dict[str, Any] | None,
    floor: dict[str, float],
    server_seconds: float,
    cached: dict[str, Any],
    warm: dict[str, Any],
) -> None:
    def per_size(label: str, value: Any) -> tuple[str, ...]:
        return (label, *(value(size["figures"]) for size in measured))

    print(table([
        ("measure", *(f"N = {size['figures']['n']:,} x {args.dim}" for size in measured)),
        per_size("k chosen (Davies-Bouldin, 2..20)", lambda f: f["n_clusters"]),
        per_size("direct cl_core (no Prefect) s", lambda f: f"{f['direct_seconds']:.2f}"),
        per_size(f"pipeline flow s (sweep on {args.sweep_runner})",
                 lambda f: f"{f['flow_seconds']:.2f} ({f['sweep_tasks']} sweep tasks)"),
        per_size("  of which cl_core busy s", lambda f: f"{f['cl_core_seconds']:.2f}"),
        per_size(f"  Prefect/IO overhead s (goal <= {GOAL_OVERHEAD_SECONDS:g} s)",
                 lambda f: f"{f['overhead_seconds']:.2f} ({100 * f['overhead_share']:.1f}%)"),
        per_size("    outside task runs s (flow runs, submits)", lambda f:
                 f"{f['overhead_outside_task_runs_seconds']:.2f} ({f['flow_runs']} flow runs)"),
        per_size("    inside task runs, not cl_core s (cache, IO)", lambda f:
                 f"{f['overhead_inside_task_runs_seconds']:.2f} ({f['task_runs']} task runs)"),
        per_size("store written s (not part of the flow)", lambda f: f"{f['store_seconds']:.2f}"),
    ], numeric=True))  # fmt: skip
    first = f"N = {measured[0]['figures']['n']:,}"
    rows = [("measure", "value")]
    if per_k is not None:
        rows += [
            (f"pipeline flow s, one sweep task per k, {first}", f"{per_k['flow_seconds']:.2f}"),
            ("  Prefect/IO overhead s", f"{per_k['overhead_seconds']:.2f} "
             f"({100 * per_k['share']:.1f}%)"),
        ]  # fmt: skip
    rows += [
        ("Prefect alone: parent + 2 stage flows, 7 tasks s",
         f"{floor['stage_flows']:.2f} (one flow, same tasks: {floor['one_flow']:.2f})"),
        ("embedded Prefect server start s (once)", f"{server_seconds:.2f}"),
        (f"cached rerun s, {first}", f"{cached['flow_seconds']:.2f} "
         f"({cached['result'].count('Cached')} tasks cached)"),
        ("first pipeline run, 2 000 rows s (warm-up)", f"{warm['flow_seconds']:.2f}"),
    ]  # fmt: skip
    print()
    print(table(rows))
    for size in measured:
        n = size["figures"]["n"]
        print(f"\nlargest overhead gaps in the measured flow run, N = {n:,}:")
        for gap in size["gaps"]:
            during = f" (during: {', '.join(gap['during'])})" if gap["during"] else ""
            print(f"  {gap['seconds']:6.3f} s  {gap['after']} -> {gap['before']}{during}")
        print(f"cl_core time by step in the measured flow run, N = {n:,}:")
        for label, seconds in sorted(size["steps"].items(), key=lambda item: -item[1]):
            print(f"  {label:<45} {seconds:8.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, "N = 20 000 and 80 000")
    parser.add_argument("--rows", type=int, nargs="+", help="override the sizes N")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--workdir", help="keep the stores here and reuse them (default: a temp dir, deleted)"
    )
    parser.add_argument("--no-per-k", action="store_true", help="skip the one-task-per-k run")
    parser.add_argument(
        "--sweep-runner", choices=("dask", "threads"), default="dask", help="the measured runs'"
    )
    args = parser.parse_args(argv)
    sizes = tuple(sorted(args.rows)) if args.rows else QUICK_SIZES if args.quick else SIZES
    # The runs' files always go to a fresh directory (a kept one would make every task cached);
    # the stores too, unless --workdir keeps them.
    with (
        scratch(None, "bench-pipeline-") as root,
        scratch(args.workdir or root / "stores", "") as stores,
    ):
        record = run_benchmark(args, sizes, stores, root)
    emit(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
