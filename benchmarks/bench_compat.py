"""Benchmark ``curriculum_learning.get_curriculum_weights(current_iteration=t)`` per call.

Run from the repository root: ``python benchmarks/bench_compat.py`` (``--quick`` for a small
run). One core (BLAS/OpenMP threads pinned to 1 before numpy loads), as the foundation benchmark.

Workload: N = 1 281 167 (ImageNet-1k), the reference README's ImageNet settings
(``initial_effective_percentage=0.15``, ``warmup_iterations=5000``, linear pacing), and the
foundation benchmark's seeded synthetic difficulty (gamma distances in 1 000 clusters, min-max
per cluster), given to the shim with ``CurriculumLearning.from_difficulty`` so that the figure
measures the per-call path, not the embedding.

Side by side in this process, at the same iterations:

* ours: ``get_curriculum_weights(strategy=s, current_iteration=t)``; the temperature comes from
  the table solved once (its build time is reported separately), then one softmax over N;
* baseline: the foundation benchmark's per-call bisection
  (``benchmarks.bench_schedule.baseline_probabilities``): bisection over ``log T`` from scratch
  on all N samples to ``|F - f(t)| <= 1e-4``, then the softmax, on every call, as the reference
  library did. For the ``difficulty`` (hard) strategy the baseline runs on the mirrored
  difficulty ``max(d) - d``, which gives the same distribution.

Also checked: the achieved effective fraction F of our weights is within 1e-3 of the target
f(t) at every timed iteration. The headline ratio is mean baseline seconds per call / mean
ours, for the reference's default call (strategy ``difficulty``). The last line printed is one
JSON object.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arguments, emit, one_core, table, timed

one_core()  # before numpy loads
import numpy as np  # noqa: E402

from benchmarks.bench_schedule import baseline_probabilities, synthetic_difficulty  # noqa: E402
from cl_core.schedule import effective_fraction  # noqa: E402
from curriculum_learning import CurriculumLearning  # noqa: E402

IMAGENET_N = 1_281_167
INITIAL_FRACTION = 0.15
WARMUP = 5_000
RATIO_GOAL = 50.0
FRACTION_ERROR_GOAL = 1e-3
STRATEGIES = ("difficulty", "easy")  # the reference's default first: the headline


def measure_ours(model: CurriculumLearning, strategy: str, iterations, repeats: int) -> list[dict]:
    rows = []
    for iteration in iterations:
        seconds = []
        for _ in range(repeats):
            weights, elapsed = timed(
                model.get_curriculum_weights, strategy=strategy, current_iteration=int(iteration)
            )
            seconds.append(elapsed)
        target = model.target_fraction(int(iteration), strategy)
        rows.append(
            {
                "iteration": int(iteration),
                "target": target,
                "achieved": effective_fraction(weights),
                "seconds": statistics.median(seconds),
            }
        )
    return rows


def measure_baseline(difficulty: np.ndarray, strategy: str, rows: list[dict]) -> list[dict]:
    d64 = difficulty.astype(np.float64)
    favoured = d64 if strategy == "easy" else d64.max() - d64  # same distribution for "hard"
    measured = []
    for row in rows:
        (_, evaluations), seconds = timed(baseline_probabilities, favoured, row["target"])
        measured.append(
            {"iteration": row["iteration"], "seconds": seconds, "evaluations": evaluations}
        )
    return measured


def print_table(strategy: str, ours: list[dict], base: list[dict]) -> None:
    by_iteration = {row["iteration"]: row for row in base}
    rows = [("iteration", "target f", "achieved F", "|F-f|", "ours ms", "baseline ms", "bisect")]
    for row in ours:
        other = by_iteration.get(row["iteration"])
        rows.append(
            (
                row["iteration"],
                f"{row['target']:.5f}",
                f"{row['achieved']:.5f}",
                f"{abs(row['achieved'] - row['target']):.1e}",
                f"{1e3 * row['seconds']:.2f}",
                f"{1e3 * other['seconds']:.1f}" if other else "-",
                other["evaluations"] if other else "-",
            )
        )
    print(f"\nstrategy={strategy!r}")
    print(table(rows, numeric=True))


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, "N = 100 000, fewer iterations")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else IMAGENET_N
    n_iterations = 6 if args.quick else 10
    repeats = 3 if args.quick else 5

    difficulty = synthetic_difficulty(n)
    iterations = np.linspace(0, WARMUP - 1, n_iterations).round().astype(int)
    results = {}
    for strategy in STRATEGIES:
        model, setup_seconds = timed(
            CurriculumLearning.from_difficulty,
            difficulty,
            initial_effective_percentage=INITIAL_FRACTION,
            warmup_iterations=WARMUP,
            strategy=strategy,
        )  # includes the one-off table solve
        model.get_curriculum_weights(current_iteration=0)  # warm up allocations
        ours = measure_ours(model, strategy, iterations, repeats)
        base = measure_baseline(difficulty, strategy, ours)
        ours_mean = statistics.fmean(row["seconds"] for row in ours)
        base_mean = statistics.fmean(row["seconds"] for row in base)
        results[strategy] = {
            "setup_seconds": setup_seconds,
            "table_nodes": int(model.curriculum(strategy).schedule.targets.size),
            "ours_seconds_per_call": ours_mean,
            "ours_seconds_per_call_max": max(row["seconds"] for row in ours),
            "baseline_seconds_per_call": base_mean,
            "baseline_mean_evaluations": statistics.fmean(row["evaluations"] for row in base),
            "ratio": base_mean / ours_mean,
            "max_abs_fraction_error": max(abs(row["achieved"] - row["target"]) for row in ours),
        }
        print_table(strategy, ours, base)

    print(
        f"\ncompat benchmark: N={n:,}, f0={INITIAL_FRACTION}, warmup {WARMUP}, "
        f"{n_iterations} iterations, one core"
    )
    labels = (
        ("setup: from_difficulty incl. table solve, s", "setup_seconds", "{:.2f}"),
        ("table nodes", "table_nodes", "{:.0f}"),
        ("ours, get_curriculum_weights per call, ms", "ours_seconds_per_call", "{:.2f}"),
        ("baseline, per-call bisection, ms", "baseline_seconds_per_call", "{:.1f}"),
        ("baseline F evaluations per call (mean)", "baseline_mean_evaluations", "{:.1f}"),
        (f"speed-up per call (goal >= {RATIO_GOAL:g})", "ratio", "{:.0f}"),
        (f"max |F - f(t)| (goal <= {FRACTION_ERROR_GOAL:g})", "max_abs_fraction_error", "{:.1e}"),
    )
    rows = [("measure", *STRATEGIES)]
    for label, key, pattern in labels:
        scale = 1e3 if key.endswith("per_call") else 1.0
        rows.append((label, *(pattern.format(results[s][key] * scale) for s in STRATEGIES)))
    print(table(rows, numeric=True))

    headline = results[STRATEGIES[0]]
    max_error = max(result["max_abs_fraction_error"] for result in results.values())
    record = {
        "name": "compat",
        "ratio": headline["ratio"],
        "goal": RATIO_GOAL,
        "goal_met": bool(headline["ratio"] >= RATIO_GOAL and max_error <= FRACTION_ERROR_GOAL),
        "quick": args.quick,
        "n_samples": n,
        "initial_fraction": INITIAL_FRACTION,
        "warmup_iterations": WARMUP,
        "iterations_timed": n_iterations,
        "headline_strategy": STRATEGIES[0],
        "ours_seconds_per_call": headline["ours_seconds_per_call"],
        "baseline_seconds_per_call": headline["baseline_seconds_per_call"],
        "max_abs_fraction_error": max_error,
        "fraction_error_goal": FRACTION_ERROR_GOAL,
        "fraction_error_goal_met": bool(max_error <= FRACTION_ERROR_GOAL),
        "per_strategy": results,
    }
    return emit(record)


if __name__ == "__main__":
    main()
