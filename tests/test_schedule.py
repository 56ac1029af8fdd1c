"""cl_core.schedule: effective fraction, temperature solver, pacing, schedule table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cl_core.schedule import (
    INTERPOLATION_TOL,
    PACINGS,
    STRATEGIES,
    Schedule,
    ScheduleConfig,
    build_schedule,
    canonical_strategy,
    curriculum_probabilities,
    effective_fraction,
    effective_fraction_at,
    inverse_temperature,
    minimum_fraction,
    pacing_fraction,
    solve_inverse_temperature,
    solve_temperature,
)
from cl_core.schedule.fraction import BinnedFraction, ExactFraction
from cl_core.schedule.solver import bisect_binned, polish_exact

ROOT = Path(__file__).resolve().parents[1]
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def clustered_difficulty(n: int, n_clusters: int, seed: int) -> np.ndarray:
    """Per-cluster min-max normalised gamma distances (each cluster has one 0 and one 1)."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_clusters, n)
    groups[:n_clusters] = np.arange(n_clusters)  # no empty cluster
    raw = rng.gamma(2.0, 1.0, n)
    low = np.full(n_clusters, np.inf)
    high = np.full(n_clusters, -np.inf)
    np.minimum.at(low, groups, raw)
    np.maximum.at(high, groups, raw)
    spread = np.where(high > low, high - low, 1.0)
    return ((raw - low[groups]) / spread[groups]).astype(np.float32)


def direct_fraction(p: np.ndarray) -> float:
    """The design's F(p) written naively (valid for moderate N)."""
    n = p.size
    return float(np.sum(1.0 - (1.0 - p) ** n) / (n * (1.0 - (1.0 - 1.0 / n) ** n)))


# --------------------------------------------------------------------------- effective fraction


@pytest.mark.parametrize("n", [1, 2, 10, 1000, 1_000_000])
def test_uniform_distribution_has_effective_fraction_one(n: int) -> None:
    assert effective_fraction(np.full(n, 1.0 / n)) == pytest.approx(1.0, abs=1e-12)


def test_effective_fraction_matches_design_formula(rng: np.random.Generator) -> None:
    p = rng.dirichlet(np.full(200, 0.3))
    assert effective_fraction(p) == pytest.approx(direct_fraction(p), rel=1e-10)


def test_point_mass_effective_fraction() -> None:
    n = 500
    p = np.zeros(n)
    p[7] = 1.0
    expected = 1.0 / (n * (1.0 - (1.0 - 1.0 / n) ** n))
    assert effective_fraction(p) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("p", "match"),
    [
        (np.array([0.5, 0.6]), "sum to 1"),
        (np.array([1.5, -0.5]), "negative"),
        (np.array([0.5, np.nan]), "non-finite"),
        (np.array([]), "empty"),
    ],
)
def test_effective_fraction_rejects_non_distributions(p: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        effective_fraction(p)


# --------------------------------------------------------------------------- probabilities


def test_probabilities_are_softmax_of_scaled_difficulty(rng: np.random.Generator) -> None:
    d = rng.random(100)
    beta = 3.7
    easy = np.exp(-beta * d) / np.exp(-beta * d).sum()
    hard = np.exp(beta * d) / np.exp(beta * d).sum()
    np.testing.assert_allclose(curriculum_probabilities(d, beta, "easy"), easy, rtol=1e-12)
    np.testing.assert_allclose(curriculum_probabilities(d, beta, "hard"), hard, rtol=1e-12)
    np.testing.assert_allclose(curriculum_probabilities(d, beta, "difficulty"), hard, rtol=1e-12)


def test_beta_zero_is_exactly_uniform(rng: np.random.Generator) -> None:
    p = curriculum_probabilities(rng.random(37), 0.0, "easy")
    assert p.dtype == np.float64
    assert np.all(p == 1.0 / 37)


def test_huge_beta_does_not_overflow_and_infinite_beta_is_the_limit() -> None:
    d = np.array([0.0, 0.0, 0.5, 1.0])
    for strategy, favoured in (("easy", [0.5, 0.5, 0, 0]), ("hard", [0, 0, 0, 1.0])):
        big = curriculum_probabilities(d, 1e6, strategy)
        assert np.all(np.isfinite(big))
        np.testing.assert_allclose(big, favoured, atol=1e-300)
        np.testing.assert_array_equal(curriculum_probabilities(d, math.inf, strategy), favoured)
    assert effective_fraction_at(d, math.inf, "easy") == pytest.approx(minimum_fraction(d, "easy"))


def test_explicit_temperature_mode_via_inverse_temperature(rng: np.random.Generator) -> None:
    d = rng.random(50)
    np.testing.assert_allclose(
        curriculum_probabilities(d, inverse_temperature(0.5), "easy"),
        curriculum_probabilities(d, 2.0, "easy"),
    )
    assert inverse_temperature(math.inf) == 0.0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        inverse_temperature(0.0)


@pytest.mark.parametrize("beta", [-1.0, math.nan])
def test_probabilities_reject_bad_beta(beta: float) -> None:
    with pytest.raises(ValueError, match="beta must be >= 0"):
        curriculum_probabilities(np.arange(3.0), beta, "easy")


# --------------------------------------------------------------------------- minimum fraction


def test_minimum_fraction_counts_ties_at_the_favoured_end() -> None:
    d = np.array([0.0, 0.0, 0.0, 0.4, 1.0, 1.0])
    n = d.size
    norm = n * (1.0 - (1.0 - 1.0 / n) ** n)
    assert minimum_fraction(d, "easy") == pytest.approx(3 * (1 - (2 / 3) ** n) / norm)
    assert minimum_fraction(d, "hard") == pytest.approx(2 * (1 - (1 / 2) ** n) / norm)
    assert minimum_fraction(np.full(4, 0.3), "easy") == 1.0


# --------------------------------------------------------------------------- solver


def _targets_above(floor: float, count: int) -> np.ndarray:
    """Targets spread over (floor, 1]: a logit-like spacing that reaches close to both ends."""
    u = np.linspace(0.0, 1.0, count + 1)[1:]
    return floor + (1.0 - floor) * u**2


@pytest.mark.parametrize("n", [10, 1000, 1_000_000])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_solved_temperature_hits_target(n: int, strategy: str) -> None:
    d = clustered_difficulty(n, max(1, n // 1000), seed=n)
    floor = minimum_fraction(d, strategy)
    targets = _targets_above(floor, 3 if n >= 1_000_000 else 8)
    for target in targets:
        beta = solve_inverse_temperature(d, target, strategy)
        achieved = effective_fraction_at(d, beta, strategy)
        assert abs(achieved - target) <= 1e-4, (n, strategy, target, beta, achieved)
    assert solve_inverse_temperature(d, 1.0, strategy) == 0.0
    assert solve_temperature(d, 1.0, strategy) == math.inf


def test_solve_temperature_is_reciprocal_of_beta(rng: np.random.Generator) -> None:
    d = rng.random(300)
    beta = solve_inverse_temperature(d, 0.4, "easy")
    assert solve_temperature(d, 0.4, "easy") == pytest.approx(1.0 / beta)
    assert beta > 0


def test_target_just_above_minimum_is_reached() -> None:
    d = clustered_difficulty(5000, 20, seed=3)
    floor = minimum_fraction(d, "easy")
    target = floor * 1.01 + 1e-4
    beta = solve_inverse_temperature(d, target, "easy")
    assert abs(effective_fraction_at(d, beta, "easy") - target) <= 1e-4


def test_exact_polish_recovers_from_a_poor_guess() -> None:
    d = clustered_difficulty(2000, 4, seed=9).astype(np.float64)
    offsets = d - d.min()
    model = ExactFraction(offsets)
    for guess in (1e-6, 1e6):
        beta, achieved = polish_exact(model, 0.2, guess, 1e-6)
        assert abs(model.value(beta) - 0.2) <= 1e-6
        assert achieved == pytest.approx(model.value(beta))


def test_binned_model_agrees_with_exact_fraction() -> None:
    d = clustered_difficulty(50_000, 50, seed=4).astype(np.float64)
    offsets = d.max() - d
    betas = np.geomspace(1e-3, 1e4, 30)
    approx = BinnedFraction(offsets).values(betas)
    exact = np.array([ExactFraction(offsets).value(b) for b in betas])
    np.testing.assert_allclose(approx, exact, atol=1e-8)


def test_exact_slope_matches_finite_difference() -> None:
    d = clustered_difficulty(3000, 3, seed=5).astype(np.float64)
    model = ExactFraction(d - d.min())
    beta, h = 7.0, 1e-5
    _, slope = model.value_and_slope(beta)
    numeric = (model.value(beta * math.exp(h)) - model.value(beta * math.exp(-h))) / (2 * h)
    assert slope == pytest.approx(numeric, rel=1e-5)


difficulty_arrays = arrays(
    np.float64,
    st.integers(2, 60),
    elements=st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False, width=32),
)


@PROPERTY
@given(d=difficulty_arrays, u=st.floats(0.0, 1.0), strategy=st.sampled_from(STRATEGIES))
def test_property_solver_reaches_any_target_above_minimum(
    d: np.ndarray, u: float, strategy: str
) -> None:
    floor = minimum_fraction(d, strategy)
    target = min(1.0, floor + (1.0 - floor) * u + 1e-6)
    if floor >= 1.0:  # constant difficulty: uniform whatever the target
        assert solve_inverse_temperature(d, target, strategy) == 0.0
        return
    beta = solve_inverse_temperature(d, target, strategy)
    assert beta >= 0.0
    assert abs(effective_fraction_at(d, beta, strategy) - target) <= 1e-4


@PROPERTY
@given(
    d=difficulty_arrays,
    betas=st.lists(st.floats(0.0, 1e4), min_size=2, max_size=8),
    strategy=st.sampled_from(STRATEGIES),
)
def test_property_effective_fraction_is_monotone_in_temperature(
    d: np.ndarray, betas: list[float], strategy: str
) -> None:
    ordered = sorted(betas)  # ascending beta = descending temperature
    values = [effective_fraction_at(d, b, strategy) for b in ordered]
    assert all(0.0 < v <= 1.0 + 1e-12 for v in values)
    assert np.all(np.diff(values) <= 1e-12)


@PROPERTY
@given(d=difficulty_arrays, beta=st.floats(1e-3, 1e3))
@example(d=np.array([0.0] + [0.5] * 14), beta=1.0)  # both low-half sums are 1 up to rounding
def test_property_easy_favours_low_difficulty_more_than_hard(d: np.ndarray, beta: float) -> None:
    easy_mean = float(curriculum_probabilities(d, beta, "easy") @ d)
    hard_mean = float(curriculum_probabilities(d, beta, "hard") @ d)
    assert easy_mean <= d.mean() + 1e-9 <= hard_mean + 2e-9
    if d.max() > d.min():
        assert easy_mean < hard_mean
        low = d <= np.median(d)
        easy_low = curriculum_probabilities(d, beta, "easy")[low].sum()
        hard_low = curriculum_probabilities(d, beta, "hard")[low].sum()
        assert easy_low >= hard_low - 1e-12  # both sums can be 1 up to rounding


# --------------------------------------------------------------------------- bad input


def test_nan_difficulty_names_count_and_first_index() -> None:
    d = np.linspace(0, 1, 10)
    d[3] = np.nan
    d[7] = np.inf
    for call in (
        lambda: solve_inverse_temperature(d, 0.5),
        lambda: build_schedule(d),
        lambda: curriculum_probabilities(d, 1.0),
        lambda: minimum_fraction(d),
    ):
        with pytest.raises(ValueError, match=r"difficulty has 2 non-finite .*first at index 3"):
            call()


@pytest.mark.parametrize("empty", [np.array([]), []])
def test_empty_difficulty_is_rejected(empty: object) -> None:
    with pytest.raises(ValueError, match="difficulty is empty"):
        build_schedule(empty)
    with pytest.raises(ValueError, match="difficulty is empty"):
        solve_inverse_temperature(empty, 0.5)


def test_two_dimensional_difficulty_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be 1-D"):
        build_schedule(np.zeros((3, 2)))


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5, math.nan])
def test_target_outside_unit_interval_is_rejected(target: float) -> None:
    with pytest.raises(ValueError, match=r"target must lie in \(0, 1\]"):
        solve_inverse_temperature(np.linspace(0, 1, 20), target)


def test_target_at_or_below_minimum_fraction_is_rejected() -> None:
    d = np.linspace(0, 1, 20)
    floor = minimum_fraction(d)
    with pytest.raises(ValueError, match=r"target=.* is not above the minimum effective fraction"):
        solve_inverse_temperature(d, floor)


def test_negative_warmup_is_rejected() -> None:
    with pytest.raises(ValueError, match="warmup_iterations must be >= 0"):
        ScheduleConfig(warmup_iterations=-1)
    with pytest.raises(ValueError, match="warmup_iterations must be >= 0"):
        pacing_fraction(0, pacing="linear", initial_fraction=0.3, warmup_iterations=-5)


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(
        ValueError, match="unknown strategy 'medium'; valid: easy, hard, difficulty"
    ):
        canonical_strategy("medium")
    with pytest.raises(ValueError, match="unknown strategy"):
        ScheduleConfig(strategy="medium")
    with pytest.raises(ValueError, match="unknown strategy"):
        solve_inverse_temperature(np.arange(4.0), 0.5, "medium")


def test_unknown_pacing_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown pacing 'exp'; valid: linear, cosine, root, step"):
        ScheduleConfig(pacing="exp")
    with pytest.raises(ValueError, match="unknown pacing"):
        pacing_fraction(0, pacing="exp", initial_fraction=0.3, warmup_iterations=10)


def test_pacing_is_a_name_to_curve_table_and_an_unknown_name_raises() -> None:
    """Past the config's own check (a hand-altered config), an unknown pacing is an error naming
    the argument, the value and the valid names; it used to fall through to the step curve."""
    assert list(PACINGS) == ["linear", "cosine", "root", "step"]
    assert all(callable(curve) for curve in PACINGS.values())
    schedule = build_schedule(
        np.linspace(0.0, 1.0, 50), ScheduleConfig(initial_fraction=0.5, warmup_iterations=10)
    )
    object.__setattr__(schedule.config, "pacing", "exp")
    for iteration in (3, np.arange(5)):
        with pytest.raises(ValueError, match="unknown pacing 'exp'; valid: linear, cosine"):
            schedule.target_fraction(iteration)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"initial_fraction": 0.0}, ValueError, "initial_fraction must lie in"),
        ({"initial_fraction": 1.2}, ValueError, "initial_fraction must lie in"),
        ({"power": 0.0}, ValueError, "power must be a finite number > 0"),
        ({"n_steps": 0}, ValueError, "n_steps must be >= 1"),
        ({"grid_size": 1}, ValueError, "grid_size must be >= 2"),
        ({"grid_size": 40, "max_grid_size": 20}, ValueError, "max_grid_size must be >= 40"),
        ({"tol": 0.0}, ValueError, "tol must lie in"),
        ({"temperature": -1.0}, ValueError, "temperature must be > 0"),
        ({"warmup_iterations": 1.5}, TypeError, "warmup_iterations must be a non-negative integer"),
    ],
)
def test_schedule_config_validates(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ScheduleConfig(**kwargs)


def test_strategy_aliases_are_canonicalised() -> None:
    assert canonical_strategy("difficulty") == "hard"
    assert canonical_strategy("prototypes") == "easy"
    assert ScheduleConfig(strategy="difficulty").strategy == "hard"


# --------------------------------------------------------------------------- pacing


@pytest.mark.parametrize("pacing", PACINGS)
@pytest.mark.parametrize("f0", [0.05, 0.3, 0.9])
def test_pacing_endpoints_and_monotonicity(pacing: str, f0: float) -> None:
    warmup = 1000
    t = np.arange(0, 2 * warmup + 1)
    f = pacing_fraction(t, pacing=pacing, initial_fraction=f0, warmup_iterations=warmup, n_steps=5)
    assert isinstance(f, np.ndarray)
    assert f[0] == f0
    assert np.all(f[warmup:] == 1.0)
    assert np.all(f[:warmup] < 1.0)
    assert np.all(np.diff(f) >= 0)
    assert (
        pacing_fraction(10**9, pacing=pacing, initial_fraction=f0, warmup_iterations=warmup) == 1.0
    )


def test_pacing_shapes_match_their_formulas() -> None:
    common = {"initial_fraction": 0.2, "warmup_iterations": 100}
    assert pacing_fraction(25, pacing="linear", **common) == pytest.approx(0.2 + 0.8 * 0.25)
    assert pacing_fraction(50, pacing="cosine", **common) == pytest.approx(0.6)
    assert pacing_fraction(25, pacing="root", power=2.0, **common) == pytest.approx(0.2 + 0.8 * 0.5)
    steps = pacing_fraction(np.arange(100), pacing="step", n_steps=4, **common)
    assert sorted(set(np.round(steps, 12))) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert steps[24] == pytest.approx(0.2)
    assert steps[25] == pytest.approx(0.4)


def test_zero_warmup_is_always_uniform() -> None:
    f = pacing_fraction(np.arange(5), pacing="cosine", initial_fraction=0.1, warmup_iterations=0)
    assert np.all(f == 1.0)
    s = build_schedule(np.linspace(0, 1, 50), ScheduleConfig(warmup_iterations=0))
    assert s.beta_at(0) == 0.0


def test_negative_iteration_is_rejected() -> None:
    with pytest.raises(ValueError, match="iteration must be a non-negative integer"):
        pacing_fraction(-1, pacing="linear", initial_fraction=0.3, warmup_iterations=10)


# --------------------------------------------------------------------------- schedule table


@pytest.fixture(scope="module")
def clustered() -> np.ndarray:
    return clustered_difficulty(20_000, 40, seed=11)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("f0", [0.3, 0.05, "near-minimum"])
def test_interpolated_table_stays_within_bound(
    clustered: np.ndarray, strategy: str, f0: float | str
) -> None:
    floor = minimum_fraction(clustered, strategy)
    initial = 1.5 * floor if f0 == "near-minimum" else float(f0)
    schedule = build_schedule(
        clustered, ScheduleConfig(strategy=strategy, initial_fraction=initial)
    )
    fractions = np.random.default_rng(7).uniform(initial, 1.0, 150)
    fractions = np.concatenate([fractions, [initial, 1.0 - 1e-5, 1.0 - 3e-4, 1.0]])
    betas = schedule.beta_for_fraction(fractions)
    errors = [
        abs(effective_fraction_at(clustered, b, strategy) - f)
        for f, b in zip(fractions, betas, strict=True)
    ]
    assert max(errors) <= INTERPOLATION_TOL


def test_interpolation_near_uniform_follows_square_root_law(clustered: np.ndarray) -> None:
    # Above the last node F ≈ 1 - a beta², so the relative gap 1 - F tracks 1 - f closely.
    schedule = build_schedule(clustered, ScheduleConfig(initial_fraction=0.3))
    for gap in (2e-4, 1e-4, 1e-6):
        achieved = effective_fraction_at(clustered, schedule.beta_for_fraction(1.0 - gap))
        assert (1.0 - achieved) / gap == pytest.approx(1.0, abs=0.05)


def test_table_shape_and_node_accuracy(clustered: np.ndarray) -> None:
    cfg = ScheduleConfig(initial_fraction=0.2, tol=1e-4)
    schedule = build_schedule(clustered, cfg)
    assert schedule.targets[0] == 0.2
    assert schedule.targets[-1] == 1.0 and schedule.betas[-1] == 0.0
    assert np.all(np.diff(schedule.targets) > 0)
    assert np.all(np.diff(schedule.betas) < 0)
    assert np.all(np.abs(schedule.achieved - schedule.targets) <= cfg.tol)
    assert cfg.grid_size + 1 <= schedule.targets.size <= cfg.max_grid_size + 1
    recomputed = [effective_fraction_at(clustered, b) for b in schedule.betas[:5]]
    np.testing.assert_allclose(schedule.achieved[:5], recomputed, atol=1e-12)
    assert not schedule.targets.flags.writeable


def test_schedule_over_iterations(clustered: np.ndarray) -> None:
    cfg = ScheduleConfig(pacing="cosine", initial_fraction=0.3, warmup_iterations=500)
    schedule = build_schedule(clustered, cfg)
    t = np.arange(0, 600, 7)
    betas = schedule.beta_at(t)
    assert np.all(np.diff(betas) <= 0)
    assert schedule.beta_at(0) == pytest.approx(schedule.betas[0])
    assert schedule.beta_at(500) == 0.0
    assert schedule.temperature_at(500) == math.inf
    assert schedule.temperature_at(0) == pytest.approx(1.0 / schedule.betas[0])
    for step in (0, 123, 499):
        target = schedule.target_fraction(step)
        achieved = effective_fraction_at(clustered, schedule.beta_at(step))
        assert abs(achieved - target) <= INTERPOLATION_TOL


def test_beta_for_fraction_rejects_out_of_range(clustered: np.ndarray) -> None:
    schedule = build_schedule(clustered, ScheduleConfig(initial_fraction=0.3))
    for bad in (0.1, 1.01):
        with pytest.raises(ValueError, match=r"fraction must lie in \[0.3, 1\]"):
            schedule.beta_for_fraction(bad)


def test_initial_fraction_below_minimum_fraction_is_a_clear_error() -> None:
    d = np.zeros(100)
    d[50:] = 1.0  # 50 samples tied at the easy end
    floor = minimum_fraction(d, "easy")
    with pytest.raises(
        ValueError, match=r"initial_fraction=0.1 is not above the minimum effective fraction"
    ):
        build_schedule(d, ScheduleConfig(initial_fraction=0.1))
    assert floor > 0.1


def test_constant_difficulty_is_uniform_at_every_target() -> None:
    d = np.full(64, 0.25, dtype=np.float32)
    with pytest.warns(UserWarning, match="difficulty is constant"):
        schedule = build_schedule(d, ScheduleConfig(initial_fraction=0.1, warmup_iterations=10))
    assert schedule.is_uniform
    assert schedule.beta_at(0) == 0.0
    assert schedule.beta_for_fraction(0.1) == 0.0
    assert schedule.temperature_at(3) == math.inf
    assert schedule.target_fraction(0) == pytest.approx(0.1)
    for target in (0.01, 0.5, 1.0):
        assert solve_inverse_temperature(d, target) == 0.0
    p = curriculum_probabilities(d, 10.0, "easy")
    assert np.all(np.isfinite(p)) and np.allclose(p, 1 / 64)
    assert effective_fraction_at(d, 10.0) == pytest.approx(1.0)


def test_initial_fraction_one_is_uniform(clustered: np.ndarray) -> None:
    schedule = build_schedule(clustered, ScheduleConfig(initial_fraction=1.0))
    assert schedule.is_uniform and schedule.beta_at(0) == 0.0


def test_explicit_temperature_mode(clustered: np.ndarray) -> None:
    cfg = ScheduleConfig(temperature=0.25, warmup_iterations=100, initial_fraction=0.3)
    schedule = build_schedule(clustered, cfg)
    assert schedule.beta_at(0) == 4.0
    assert schedule.beta_at(99) == 4.0
    assert schedule.beta_at(100) == 0.0
    expected = effective_fraction_at(clustered, 4.0)
    assert schedule.target_fraction(50) == pytest.approx(expected, abs=1e-12)
    assert schedule.beta_for_fraction(schedule.target_fraction(50)) == pytest.approx(4.0)
    uniform = build_schedule(clustered, ScheduleConfig(temperature=math.inf))
    assert uniform.beta_at(0) == 0.0


@pytest.mark.parametrize(
    "cfg",
    [
        ScheduleConfig(strategy="difficulty", pacing="step", initial_fraction=0.2, n_steps=3),
        ScheduleConfig(pacing="root", power=3.0, initial_fraction=0.4, warmup_iterations=77),
        ScheduleConfig(temperature=math.inf),
        ScheduleConfig(temperature=0.5),
    ],
)
def test_schedule_json_round_trip(clustered: np.ndarray, cfg: ScheduleConfig) -> None:
    schedule = build_schedule(clustered, cfg)
    text = json.dumps(schedule.to_json(), allow_nan=False)
    restored = Schedule.from_json(json.loads(text))
    assert restored == schedule
    assert restored.config == cfg
    t = np.arange(0, cfg.warmup_iterations + 3, 5)
    np.testing.assert_array_equal(restored.beta_at(t), schedule.beta_at(t))


def test_schedule_equality_detects_differences(clustered: np.ndarray) -> None:
    a = build_schedule(clustered, ScheduleConfig(initial_fraction=0.3))
    b = build_schedule(clustered, ScheduleConfig(initial_fraction=0.31))
    assert a != b
    assert a == Schedule.from_json(a.to_json())


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format="other"), "not a schedule"),
        (lambda d: d.update(format_version=99), "format_version 99 is not supported"),
        (lambda d: d.pop("betas"), "missing keys"),
        (lambda d: d["config"].update(colour="red"), "unknown keys"),
        (lambda d: d.update(targets=d["targets"][::-1]), "strictly ascending"),
        (lambda d: d.update(betas=d["betas"][:-1]), "equal lengths"),
    ],
)
def test_schedule_from_json_rejects_bad_documents(clustered: np.ndarray, mutate, match) -> None:
    document = json.loads(json.dumps(build_schedule(clustered).to_json()))
    mutate(document)
    with pytest.raises(ValueError, match=match):
        Schedule.from_json(document)


def test_schedule_module_imports_only_numpy_and_stdlib() -> None:
    code = "import sys, cl_core.schedule; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    heavy = {"torch", "scipy", "sklearn", "zarr", "dask", "prefect", "matplotlib", "timm"}
    assert not heavy & set(result.stdout.split())


@pytest.mark.parametrize("pacing", PACINGS)
@pytest.mark.parametrize("temperature", [None, 0.5])
def test_scalar_and_array_lookups_agree(
    clustered: np.ndarray, pacing: str, temperature: float | None
) -> None:
    # The sampler calls the scalar (numpy-free) path; tables and tests use arrays.
    cfg = ScheduleConfig(
        pacing=pacing, initial_fraction=0.1, warmup_iterations=300, temperature=temperature
    )
    schedule = build_schedule(clustered, cfg)
    t = np.arange(0, 320, 3)
    np.testing.assert_allclose(
        [schedule.target_fraction(int(i)) for i in t], schedule.target_fraction(t), rtol=1e-14
    )
    np.testing.assert_allclose(
        [schedule.beta_at(np.int64(i)) for i in t], schedule.beta_at(t), rtol=1e-12
    )
    np.testing.assert_allclose(
        [schedule.temperature_at(int(i)) for i in t], schedule.temperature_at(t), rtol=1e-12
    )
    if temperature is None:
        f = np.linspace(0.1, 1.0, 97)
        scalar = [schedule.beta_for_fraction(float(x)) for x in f]
        np.testing.assert_allclose(scalar, schedule.beta_for_fraction(f), rtol=1e-12)


def test_binned_bracket_ignores_huge_beta_artefacts() -> None:
    # Zeros plus tiny positive offsets share the lowest bin; at absurd betas the second-order
    # model breaks down there. The vectorised guesses must still land on the exact solution.
    rng = np.random.default_rng(21)
    d = np.concatenate([np.zeros(50), rng.uniform(0, 1e-9, 50), rng.random(20_000)])
    offsets = d - d.min()
    targets = np.array([0.05, 0.15, 0.5, 0.9])
    guesses = bisect_binned(BinnedFraction(offsets), targets, np.full(4, 1e-4))
    exact = ExactFraction(offsets)
    achieved = np.array([exact.value(beta) for beta in guesses])
    np.testing.assert_allclose(achieved, targets, atol=1e-6)
