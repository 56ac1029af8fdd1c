"""Benchmark the curriculum schedule and sampler against a per-call, reference-style baseline.

Run from the repository root: ``python benchmarks/bench_schedule.py`` (``--quick`` for a small
run). Everything runs on one core (BLAS/OpenMP threads are pinned to 1 before numpy loads).

Workload (the issue's): N = 1 281 167 samples (ImageNet-1k), batch 256, linear pacing from
``f0 = 0.15`` over a warmup of 5 000 iterations (the reference README's ImageNet example), the
``easy`` strategy, and the schedule advancing every iteration. Difficulty is synthetic and
seeded: gamma(2, 1) distances in 1 000 clusters, normalised per cluster with ``minmax`` by
:func:`cl_core.difficulty.normalize_difficulty`.

Measured, side by side in this process:

1. the time to build the schedule table (:func:`cl_core.schedule.build_schedule`);
2. one epoch of indices (N draws) from :class:`cl_core.sampler.CurriculumSampler` with
   ``refresh_every=1`` (probabilities follow the schedule every iteration, like the baseline;
   the headline) and with the sampler's default refresh interval; a fresh curriculum each time,
   so the sampler's one-off draw-table build is included;
3. the baseline, which does what the reference library does on every iteration: for the
   iteration's target ``f(t)`` it bisects over ``log T`` from scratch on all N samples
   (tolerance 1e-4 on the exact effective fraction), takes the softmax, and makes a fresh
   weighted draw with ``np.random.choice(N, batch, p=p)``. It is far too slow to run for a whole
   epoch, so a sample of iterations spread over the epoch is timed and the epoch is
   extrapolated (mean time per iteration x iterations per epoch); the output says so;
4. sampler throughput at N = 10 M while the curriculum is active (indices/s; goal 10 M/s);
5. a draw at N = 2**25 (beyond float32's exact integers): indices in range, odd indices above
   2**24 present, and the share above 2**24 matching the probabilities;
6. the achieved effective fraction versus the target at 10 points along the schedule.

The last line printed is one JSON object (``name``, ``ratio``, ``goal``, ``goal_met`` and the raw
figures); ``ratio`` is baseline epoch time / our epoch time.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arguments, emit, one_core, table, timed

one_core()  # before numpy loads
import numpy as np  # noqa: E402

from cl_core.difficulty import normalize_difficulty  # noqa: E402
from cl_core.sampler import Curriculum, CurriculumSampler  # noqa: E402
from cl_core.schedule import (  # noqa: E402
    ScheduleConfig,
    build_schedule,
    effective_fraction_at,
)

IMAGENET_N = 1_281_167
BATCH = 256
WARMUP = 5_000
INITIAL_FRACTION = 0.15
N_CLUSTERS = 1_000
RATIO_GOAL = 1_000.0
THROUGHPUT_GOAL = 10_000_000.0
FRACTION_ERROR_GOAL = 1e-3
TOL = 1e-4


def synthetic_difficulty(n: int, seed: int = 0) -> np.ndarray:
    """Per-cluster min-max normalised gamma distances, float32 (N,)."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, N_CLUSTERS, n)
    distances = rng.gamma(2.0, 1.0, n)
    return normalize_difficulty(distances, clusters, "minmax")


# --------------------------------------------------------------------------- the baseline


def baseline_effective_fraction(p: np.ndarray) -> float:
    n = p.size
    with np.errstate(divide="ignore"):
        distinct = -np.expm1(n * np.log1p(-p)).sum()
    return float(distinct / (-n * math.expm1(n * math.log1p(-1.0 / n))))


def baseline_softmax(difficulty: np.ndarray, temperature: float) -> np.ndarray:
    logits = -difficulty / temperature
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def baseline_probabilities(difficulty: np.ndarray, target: float) -> tuple[np.ndarray, int]:
    """Bisection over log T from scratch (F grows with T), as the reference does per call."""
    if target >= 1.0:
        return np.full(difficulty.size, 1.0 / difficulty.size), 0
    low, high = math.log(1e-4), math.log(1e4)
    evaluations = 0
    while baseline_effective_fraction(baseline_softmax(difficulty, math.exp(high))) < target:
        high += math.log(10.0)  # bracket expansion
        evaluations += 1
    p = baseline_softmax(difficulty, math.exp(low))
    for _ in range(200):
        middle = 0.5 * (low + high)
        p = baseline_softmax(difficulty, math.exp(middle))
        value = baseline_effective_fraction(p)
        evaluations += 1
        if abs(value - target) <= TOL:
            break
        if value < target:
            low = middle
        else:
            high = middle
    return p, evaluations


def baseline_step(
    difficulty: np.ndarray, iteration: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    target = (
        INITIAL_FRACTION + (1.0 - INITIAL_FRACTION) * iteration / WARMUP
        if iteration < WARMUP
        else 1.0
    )
    p, evaluations = baseline_probabilities(difficulty, target)
    return rng.choice(difficulty.size, BATCH, p=p), evaluations


def time_baseline(
    difficulty: np.ndarray, steps_per_epoch: int, n_timed: int
) -> dict[str, float | int]:
    d64 = difficulty.astype(np.float64)
    rng = np.random.default_rng(0)
    curriculum_steps = min(steps_per_epoch, WARMUP)
    sampled = np.unique(np.linspace(0, curriculum_steps - 1, n_timed).round().astype(int))
    seconds, evaluations = [], []
    for iteration in sampled:
        (_, count), elapsed = timed(baseline_step, d64, int(iteration), rng)
        seconds.append(elapsed)
        evaluations.append(count)
    (_, _), uniform_seconds = timed(baseline_step, d64, WARMUP, rng)
    per_iteration = float(np.mean(seconds))
    epoch = per_iteration * curriculum_steps + uniform_seconds * (
        steps_per_epoch - curriculum_steps
    )
    return {
        "seconds_per_iteration": per_iteration,
        "uniform_seconds_per_iteration": uniform_seconds,
        "iterations_timed": len(sampled),
        "mean_bisection_evaluations": float(np.mean(evaluations)),
        "epoch_seconds_extrapolated": epoch,
    }


# --------------------------------------------------------------------------- ours


def time_our_epoch(difficulty: np.ndarray, schedule, refresh_every: int | None) -> float:
    """One epoch of indices from a fresh curriculum (includes the one-off draw-table build)."""
    curriculum = Curriculum.from_arrays(difficulty, schedule)
    options = {} if refresh_every is None else {"refresh_every": refresh_every}
    sampler = CurriculumSampler(curriculum, batch_size=BATCH, seed=0, **options)
    indices, seconds = timed(sampler.indices, 0)
    assert indices.shape == (len(sampler),)
    return seconds


def fraction_errors(difficulty: np.ndarray, schedule) -> list[tuple[int, float, float]]:
    rows = []
    for iteration in np.linspace(0, WARMUP - 1, 10).round().astype(int):
        target = float(schedule.target_fraction(int(iteration)))
        achieved = effective_fraction_at(difficulty, schedule.beta_at(int(iteration)), "easy")
        rows.append((int(iteration), target, achieved))
    return rows


def throughput(n: int, num_samples: int) -> dict[str, float]:
    """Indices/s at N = n while the curriculum is active (warmup spans the whole epoch)."""
    difficulty = synthetic_difficulty(n, seed=1)
    warmup = 10 * num_samples // BATCH + 1
    config = ScheduleConfig(initial_fraction=INITIAL_FRACTION, warmup_iterations=warmup)
    schedule, build_seconds = timed(build_schedule, difficulty, config)
    curriculum = Curriculum.from_arrays(difficulty, schedule)
    result = {"build_seconds": build_seconds}
    for label, options in (("default", {}), ("refresh_every_1", {"refresh_every": 1})):
        sampler = CurriculumSampler(
            curriculum, batch_size=BATCH, num_samples=num_samples, seed=0, **options
        )
        _, cold = timed(sampler.indices, 0)  # first use builds the draw table
        indices, warm = timed(sampler.indices, 0)
        result[f"{label}_cold_seconds"] = cold
        result[f"{label}_indices_per_second"] = indices.size / warm
    return result


def big_draw(n: int, draws: int) -> dict[str, float | bool]:
    """Draw at N = n > 2**24: indices in range, odd ones above 2**24, share matches p."""
    difficulty = synthetic_difficulty(n, seed=2)
    config = ScheduleConfig(initial_fraction=0.5, warmup_iterations=WARMUP)
    schedule, build_seconds = timed(build_schedule, difficulty, config)
    curriculum = Curriculum.from_arrays(difficulty, schedule)
    sampler = CurriculumSampler(curriculum, batch_size=BATCH, num_samples=draws, seed=0)
    indices, seconds = timed(sampler.indices, 0)
    del difficulty
    high = indices >= 1 << 24
    p_high = float(curriculum.probabilities(0)[1 << 24 :].sum())
    share = float(high.mean())
    z = (share - p_high) / math.sqrt(p_high * (1 - p_high) / indices.size)
    ok = (
        bool(indices.min() >= 0 and indices.max() < n)
        and bool(np.any(indices[high] % 2 == 1))
        and abs(z) < 5.0
    )
    return {
        "n": n,
        "draws": int(indices.size),
        "build_seconds": build_seconds,
        "draw_seconds": seconds,
        "max_index": int(indices.max()),
        "share_above_2_24": share,
        "expected_share_above_2_24": p_high,
        "odd_above_2_24": int(np.count_nonzero(indices[high] % 2 == 1)),
        "ok": ok,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = arguments(__doc__, "small sizes (seconds)")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else IMAGENET_N
    n_timed = 3 if args.quick else 8
    throughput_n = 1_000_000 if args.quick else 10_000_000

    difficulty = synthetic_difficulty(n)
    config = ScheduleConfig(
        strategy="easy",
        pacing="linear",
        initial_fraction=INITIAL_FRACTION,
        warmup_iterations=WARMUP,
    )
    builds = [timed(build_schedule, difficulty, config) for _ in range(1 if args.quick else 3)]
    schedule = builds[0][0]
    build_seconds = float(np.median([seconds for _, seconds in builds]))
    steps_per_epoch = -(-n // BATCH)

    ours = time_our_epoch(difficulty, schedule, refresh_every=1)
    ours_default = time_our_epoch(difficulty, schedule, refresh_every=None)
    base = time_baseline(difficulty, steps_per_epoch, n_timed)
    ratio = base["epoch_seconds_extrapolated"] / ours
    ratio_default = base["epoch_seconds_extrapolated"] / ours_default
    errors = fraction_errors(difficulty, schedule)
    max_error = max(abs(achieved - target) for _, target, achieved in errors)
    rate = throughput(throughput_n, throughput_n)
    big = None if args.quick else big_draw(1 << 25, 1 << 21)

    size = f"{throughput_n:,}"
    rows = [
        ("measure", "value"),
        ("schedule table build (median), s", f"{build_seconds:.3f}"),
        ("table nodes", schedule.targets.size),
        ("our epoch, refresh every iteration, s", f"{ours:.3f}"),
        ("our epoch, default refresh interval, s", f"{ours_default:.3f}"),
        (
            f"baseline s/iteration (mean of {base['iterations_timed']} timed)",
            f"{base['seconds_per_iteration']:.3f}",
        ),
        (
            "baseline F evaluations per iteration (mean)",
            f"{base['mean_bisection_evaluations']:.1f}",
        ),
        (
            "baseline epoch, s (EXTRAPOLATED from the timed sample)",
            f"{base['epoch_seconds_extrapolated']:.1f}",
        ),
        (f"speed-up, refresh every iteration (goal {RATIO_GOAL:g})", f"{ratio:.0f}"),
        ("speed-up, default refresh interval", f"{ratio_default:.0f}"),
        (
            f"throughput at N={size}, default refresh, indices/s",
            f"{rate['default_indices_per_second']:,.0f}",
        ),
        (
            f"throughput at N={size}, refresh every step, indices/s",
            f"{rate['refresh_every_1_indices_per_second']:,.0f}",
        ),
        (f"schedule build at N={size}, s", f"{rate['build_seconds']:.2f}"),
    ]
    if big is None:
        rows.append(("draw at N=2**25", "skipped (--quick)"))
    else:
        rows += [
            ("draw at N=2**25 ok (range, odd > 2**24, share)", big["ok"]),
            (
                "  share above 2**24: drawn / expected",
                f"{big['share_above_2_24']:.4f} / {big['expected_share_above_2_24']:.4f}",
            ),
            ("  schedule build at N=2**25, s", f"{big['build_seconds']:.2f}"),
        ]
    print(f"\nschedule benchmark: N={n:,}, batch {BATCH}, warmup {WARMUP}, f0={INITIAL_FRACTION}")
    print(table(rows, numeric=True))
    print("\nachieved effective fraction along the schedule")
    fractions = [("iteration", "target", "achieved", "error")]
    fractions += [
        (iteration, f"{target:.5f}", f"{achieved:.5f}", f"{achieved - target:.2e}")
        for iteration, target, achieved in errors
    ]
    print(table(fractions, numeric=True))

    throughput_value = rate["default_indices_per_second"]
    record = {
        "name": "schedule",
        "ratio": ratio,
        "goal": RATIO_GOAL,
        "goal_met": bool(ratio >= RATIO_GOAL),
        "quick": args.quick,
        "n_samples": n,
        "batch_size": BATCH,
        "warmup_iterations": WARMUP,
        "initial_fraction": INITIAL_FRACTION,
        "steps_per_epoch": steps_per_epoch,
        "build_seconds": build_seconds,
        "table_nodes": int(schedule.targets.size),
        "our_epoch_seconds": ours,
        "our_epoch_seconds_default_refresh": ours_default,
        "ratio_default_refresh": ratio_default,
        "baseline_seconds_per_iteration": base["seconds_per_iteration"],
        "baseline_iterations_timed": base["iterations_timed"],
        "baseline_mean_bisection_evaluations": base["mean_bisection_evaluations"],
        "baseline_epoch_seconds": base["epoch_seconds_extrapolated"],
        "baseline_extrapolated": True,
        "throughput_n": throughput_n,
        "throughput_indices_per_second": throughput_value,
        "throughput_refresh_every_1_indices_per_second": rate["refresh_every_1_indices_per_second"],
        "throughput_goal": THROUGHPUT_GOAL,
        "throughput_goal_met": bool(throughput_value >= THROUGHPUT_GOAL),
        "throughput_build_seconds": rate["build_seconds"],
        "draw_2_25": big,
        "draw_2_25_ok": None if big is None else big["ok"],
        "max_abs_fraction_error": max_error,
        "fraction_error_goal": FRACTION_ERROR_GOAL,
        "fraction_error_goal_met": bool(max_error <= FRACTION_ERROR_GOAL),
    }
    return emit(record)


if __name__ == "__main__":
    main()
