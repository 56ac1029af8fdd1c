"""Training-time sampler: exact distribution, refresh, determinism, DDP shares, resume, torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import cl_core.sampler.draws as draws_module
import cl_core.sampler.sampler as sampler_module
from cl_core.artifacts import publish_curriculum
from cl_core.sampler import (
    DEFAULT_REFRESH_EVERY,
    Curriculum,
    CurriculumSampler,
    GroupedDraws,
    load_curriculum,
)
from cl_core.schedule import Schedule, ScheduleConfig, curriculum_probabilities

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 1e-3  # chi-square acceptance level (draws are seeded, so results are deterministic)


def _curriculum(n: int = 400, *, seed: int = 0, warmup: int = 1000, **config: object) -> Curriculum:
    difficulty = np.random.default_rng(seed).random(n)
    options: dict[str, object] = {"initial_fraction": 0.4, "warmup_iterations": warmup, **config}
    return Curriculum.from_arrays(difficulty, ScheduleConfig(**options))  # type: ignore[arg-type]


def _fixed_beta_curriculum(difficulty: np.ndarray, beta: float, warmup: int = 10) -> Curriculum:
    """A curriculum sampling at one inverse temperature before ``warmup`` (no table solve)."""
    config = ScheduleConfig(temperature=1.0 / beta, warmup_iterations=warmup)
    schedule = Schedule(
        config,
        targets=np.array([0.5, 1.0]),
        betas=np.array([beta, 0.0]),
        achieved=np.array([0.5, 1.0]),
    )
    return Curriculum.from_arrays(difficulty, schedule)


def _chi_square_p(counts: np.ndarray, probabilities: np.ndarray) -> float:
    expected = probabilities * counts.sum()
    return float(stats.chisquare(counts, expected).pvalue)


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(indices, minlength=n)


# ---------------------------------------------------------------------------- import hygiene


@pytest.mark.integration
def test_import_pulls_in_no_heavy_package() -> None:
    code = "import sys, cl_core.sampler; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.split()
    )
    heavy = {"torch", "prefect", "dask", "sklearn", "zarr", "timm", "scipy", "matplotlib"}
    assert "numpy" in loaded and "cl_core.sampler" in loaded
    assert not heavy & loaded, f"cl_core.sampler imported {sorted(heavy & loaded)}"


# ---------------------------------------------------------------------------- Curriculum maths


def test_probabilities_follow_the_schedule() -> None:
    cur = _curriculum(warmup=100)
    start = cur.probabilities(0)
    assert start.dtype == np.float64 and start.shape == (400,)
    assert start.sum() == pytest.approx(1.0)
    assert cur.target_fraction(0) == pytest.approx(0.4)
    assert cur.target_fraction(50) == pytest.approx(0.7)
    assert cur.target_fraction(100) == 1.0
    # easy strategy: the easiest sample is the most likely one
    assert np.argmax(start) == np.argmin(cur.difficulty)
    np.testing.assert_array_equal(cur.probabilities(100), np.full(400, 1 / 400))
    assert cur.temperature(100) == np.inf and cur.inverse_temperature(100) == 0.0
    assert cur.temperature(0) < cur.temperature(50) < np.inf


def test_explicit_temperature_bypasses_pacing() -> None:
    cur = _curriculum(warmup=100)
    d = cur.difficulty.astype(np.float64)
    expected = np.exp(-(d - d.min()) / 0.25)
    expected /= expected.sum()
    np.testing.assert_allclose(cur.probabilities(temperature=0.25), expected, rtol=1e-12)
    np.testing.assert_allclose(cur.probabilities(99, temperature=0.25), expected, rtol=1e-12)
    np.testing.assert_array_equal(cur.probabilities(temperature=np.inf), np.full(400, 1 / 400))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            cur.probabilities(temperature=bad)
    with pytest.raises(TypeError, match="temperature must be a positive number"):
        cur.probabilities(temperature="hot")  # type: ignore[arg-type]


def test_hard_strategy_favours_hard_samples() -> None:
    cur = _curriculum(strategy="hard")
    assert np.argmax(cur.probabilities(0)) == np.argmax(cur.difficulty)


def test_from_arrays_validates_input() -> None:
    config = ScheduleConfig()
    with pytest.raises(ValueError, match=r"difficulty has 1 non-finite .* first at index 2"):
        Curriculum.from_arrays(np.array([0.1, 0.2, np.nan]), config)
    with pytest.raises(ValueError, match="empty"):
        Curriculum.from_arrays(np.array([]), config)
    with pytest.raises(TypeError, match="Schedule or ScheduleConfig"):
        Curriculum.from_arrays(np.array([0.1, 0.2]), {"pacing": "linear"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one cluster id per sample"):
        Curriculum.from_arrays(np.array([0.1, 0.2]), config, assignment=np.array([0]))
    with pytest.raises(ValueError, match="schedule was built for 400 samples"):
        Curriculum.from_arrays(np.array([0.1, 0.2]), _curriculum().schedule)
    with pytest.raises(ValueError, match="iteration must be >= 0"):
        _curriculum().probabilities(-1)


# ---------------------------------------------------------------------------- exact draws


@pytest.mark.parametrize(("strategy", "iteration"), [("easy", 0), ("hard", 400), ("easy", 999)])
def test_empirical_frequencies_match_probabilities(strategy: str, iteration: int) -> None:
    """Chi-square over every index; a few thousand samples per group exercise the rejection step."""
    cur = _curriculum(n=3000, strategy=strategy)
    sampler = CurriculumSampler(
        cur, batch_size=1000, num_samples=600_000, start_iteration=iteration, refresh_every=10**6
    )
    counts = _counts(sampler.indices(), cur.n_samples)
    expected = cur.probabilities(iteration)

    assert counts.sum() == 600_000
    assert sampler.draw_table().n_groups < cur.n_samples // 10  # real groups, not singletons
    assert _chi_square_p(counts, expected) > ALPHA
    # The test has power: the probabilities of a different iteration are rejected.
    other = cur.probabilities(iteration + 600 if iteration < 400 else 0)
    assert _chi_square_p(counts, other) < 1e-12


def test_uniform_after_warmup() -> None:
    cur = _curriculum(n=500, warmup=10)
    sampler = CurriculumSampler(cur, batch_size=500, num_samples=250_000, start_iteration=10)
    counts = _counts(sampler.indices(), 500)
    assert _chi_square_p(counts, np.full(500, 1 / 500)) > ALPHA
    assert _chi_square_p(counts, _curriculum(n=500).probabilities(0)) < 1e-12


def test_draws_stay_exact_beyond_the_tables_design_temperature() -> None:
    """Groups sized for beta=1 at beta=5: lower acceptance, several rounds, same distribution."""
    difficulty = np.random.default_rng(3).random(500).astype(np.float32)
    table = GroupedDraws(difficulty, max_beta=1.0)
    indices = table.draw(np.random.default_rng(7), 5.0, 400_000)
    expected = curriculum_probabilities(difficulty, 5.0, "easy")
    assert table.n_groups == 20
    assert indices.dtype == np.int64 and indices.shape == (400_000,)
    assert _chi_square_p(_counts(indices, 500), expected) > ALPHA


def _reference_draw(
    table: GroupedDraws, rng: np.random.Generator, beta: float, size: int
) -> np.ndarray:
    """The grouped draw without shortcuts: binary search per proposal, every key read."""
    envelope = table.counts * np.exp(-beta * (table.group_min - table.key_min))
    cdf = np.cumsum(envelope)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    kept: list[np.ndarray] = []
    filled, proposals = 0, size + size // 16 + 16
    while filled < size:
        group = np.searchsorted(cdf, rng.random(proposals), side="right")
        position = table.starts[group] + (rng.random(proposals) * table.counts[group]).astype(
            np.int64
        )
        excess = beta * (table.sorted_key[position].astype(np.float64) - table.group_min[group])
        accepted = position[rng.standard_exponential(proposals) >= excess]
        kept.append(accepted[: size - filled])
        filled += kept[-1].shape[0]
        rate = max(accepted.shape[0] / proposals, 1e-3)
        proposals = min(int((size - filled) / rate * 1.1) + 16, 1 << 22)
    positions = np.concatenate(kept)
    return positions if table.order is None else table.order[positions].astype(np.int64)


@pytest.mark.parametrize("use_guide", [True, False])
@pytest.mark.parametrize(("beta", "size"), [(0.3, 50), (1.0, 5000), (5.0, 20_000), (60.0, 3000)])
def test_draw_shortcuts_do_not_change_the_draw(
    monkeypatch: pytest.MonkeyPatch, use_guide: bool, beta: float, size: int
) -> None:
    """Guide lookups and accepting without reading the key give the plain algorithm's indices."""
    difficulty = np.random.default_rng(4).gamma(2.0, 1.0, 5000).astype(np.float32)
    table = GroupedDraws(difficulty, max_beta=1.0)
    monkeypatch.setattr(draws_module, "GUIDE_PAYBACK", 1 << 30 if use_guide else 0)
    drawn = table.draw(np.random.default_rng(11), beta, size)
    expected = _reference_draw(table, np.random.default_rng(11), beta, size)
    np.testing.assert_array_equal(drawn, expected)


@pytest.mark.parametrize("beta", [0.0, 0.5, 4.0, 80.0, 1e6])
def test_guide_is_the_searchsorted_of_its_slots(beta: float) -> None:
    """Including flat CDF tails (underflowed masses) and boundaries exactly on a slot edge."""
    difficulty = np.random.default_rng(5).random(3000).astype(np.float32)
    table = GroupedDraws(difficulty, max_beta=4.0)
    cdf = table.cdf(beta)
    slots = np.arange(table.guide_size) / table.guide_size
    np.testing.assert_array_equal(table.guide(cdf), np.searchsorted(cdf, slots, side="right"))

    on_edges = table.cdf(beta)
    on_edges[: table.n_groups // 2] = np.round(on_edges[: table.n_groups // 2] * 64) / 64
    on_edges.sort()
    u = np.concatenate([slots, on_edges, np.random.default_rng(6).random(10_000)])
    u = u[u < 1.0]  # as from Generator.random
    np.testing.assert_array_equal(
        table.group_of(u, on_edges, table.guide(on_edges)),
        np.searchsorted(on_edges, u, side="right"),
    )


def test_probabilities_refresh_once_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    cur = _curriculum(n=200, warmup=40)
    sampler = CurriculumSampler(cur, batch_size=5, num_samples=500, refresh_every=7)
    asked: list[int] = []
    real = Curriculum.inverse_temperature

    def spy(self: Curriculum, iteration: int) -> float:
        asked.append(iteration)
        return real(self, iteration)

    monkeypatch.setattr(Curriculum, "inverse_temperature", spy)
    sampler.set_epoch(2)
    list(sampler)

    assert sampler.steps_per_epoch == 100
    assert asked == [2 * 100 + step for step in range(0, 100, 7)]  # block starts only


def test_curriculum_moves_from_easy_to_uniform_within_an_epoch() -> None:
    cur = _curriculum(n=1000, warmup=200)
    sampler = CurriculumSampler(cur, batch_size=50, num_samples=20_000, refresh_every=20)
    steps = sampler.indices().reshape(sampler.steps_per_epoch, 50)
    mean_difficulty = cur.difficulty[steps].mean(axis=1)
    early, late = mean_difficulty[:20].mean(), mean_difficulty[-20:].mean()
    assert early < 0.35 < late
    assert late == pytest.approx(cur.difficulty.mean(), abs=0.05)


def test_indices_beyond_float32_precision() -> None:
    """N = 2^25 + 1: odd indices above 2^24 only survive without float32 index maths."""
    n = (1 << 25) + 1
    difficulty = np.ones(n, dtype=np.float32)
    difficulty[-1000:] = 0.0  # the easy samples sit at the very end
    beta = 12.0
    cur = _fixed_beta_curriculum(difficulty, beta)
    sampler = CurriculumSampler(cur, batch_size=4096, num_samples=16 * 4096)

    curriculum = sampler.rank_block(0, 0)  # iteration 0: beta = 12
    expected_easy = 1000 / (1000 + (n - 1000) * np.exp(-beta))
    observed_easy = np.mean(curriculum >= n - 1000)
    assert observed_easy == pytest.approx(expected_easy, abs=5 * np.sqrt(0.25 / curriculum.size))
    hard = curriculum[curriculum < n - 1000]
    assert np.any((hard > (1 << 24)) & (hard % 2 == 1))
    assert curriculum.min() >= 0 and curriculum.max() < n

    sampler.set_epoch(1)  # past warmup: uniform over all N
    uniform = sampler.rank_block(1, 0)
    assert np.any((uniform > (1 << 24)) & (uniform % 2 == 1))
    assert uniform.max() < n


# ---------------------------------------------------------------------------- sizes + determinism


def test_length_and_rounding_to_whole_global_steps() -> None:
    cur = _curriculum(n=103)
    single = CurriculumSampler(cur, batch_size=10)
    assert (single.steps_per_epoch, len(single)) == (11, 110)
    ranked = CurriculumSampler(cur, batch_size=10, world_size=4, rank=3, num_samples=81)
    assert (ranked.steps_per_epoch, len(ranked)) == (3, 30)
    assert len(list(ranked)) == 30
    assert single.indices().shape == (110,)


def test_deterministic_per_seed_and_epoch() -> None:
    cur = _curriculum()
    first = CurriculumSampler(cur, batch_size=8, seed=5)
    second = CurriculumSampler(cur, batch_size=8, seed=5)
    np.testing.assert_array_equal(list(first), second.indices(0))
    assert first.epoch == 1  # a finished pass moves to the next epoch
    np.testing.assert_array_equal(list(first), second.indices(1))
    assert not np.array_equal(second.indices(0), second.indices(1))
    assert not np.array_equal(second.indices(0), CurriculumSampler(cur, batch_size=8).indices(0))
    iterated = CurriculumSampler(cur, batch_size=8, seed=5)
    assert all(isinstance(i, int) for i in iterated)


def test_set_epoch_selects_the_epoch() -> None:
    cur = _curriculum()
    sampler = CurriculumSampler(cur, batch_size=16, seed=1)
    sampler.set_epoch(3)
    np.testing.assert_array_equal(list(sampler), sampler.indices(3))
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        sampler.set_epoch(-1)


# ---------------------------------------------------------------------------- DDP


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_one_global_draw(world_size: int) -> None:
    cur = _curriculum(n=500, warmup=30)
    batch = 6
    single = CurriculumSampler(cur, batch_size=batch * world_size, num_samples=1000, seed=9)
    ranks = [
        CurriculumSampler(
            cur, batch_size=batch, num_samples=1000, seed=9, rank=r, world_size=world_size
        )
        for r in range(world_size)
    ]
    global_steps = single.indices().reshape(single.steps_per_epoch, world_size * batch)
    shares = [np.array(list(rank)) for rank in ranks]

    assert all(len(rank) == len(share) for rank, share in zip(ranks, shares, strict=True))
    for r, share in enumerate(shares):
        np.testing.assert_array_equal(
            share.reshape(-1, batch), global_steps[:, r * batch : (r + 1) * batch]
        )
    union = np.concatenate([s.reshape(-1, batch) for s in shares], axis=1).reshape(-1)
    np.testing.assert_array_equal(union, single.indices())


# ---------------------------------------------------------------------------- resume


@pytest.mark.parametrize("consumed", [0, 1, 37, 200, 299, 300])
def test_state_dict_round_trip_mid_epoch(consumed: int) -> None:
    cur = _curriculum(warmup=40)
    options = {"batch_size": 10, "num_samples": 300, "seed": 4, "refresh_every": 3}
    original = CurriculumSampler(cur, **options)  # type: ignore[arg-type]
    original.set_epoch(2)
    full = original.indices(2)
    iterator = iter(original)
    head = [next(iterator) for _ in range(consumed)]
    state = original.state_dict()
    assert (state["epoch"], state["position"]) == (2, consumed)

    resumed = CurriculumSampler(cur, **options)  # type: ignore[arg-type]
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the usual loop calls this; it must not reset the position
    tail = list(resumed)

    assert head + tail == full.tolist()
    assert resumed.epoch == 3 and resumed.position == 0


def test_state_dict_reports_iteration_and_settings() -> None:
    sampler = CurriculumSampler(_curriculum(), batch_size=4, start_iteration=100)
    iterator = iter(sampler)
    for _ in range(9):
        next(iterator)
    state = sampler.state_dict()
    assert state["iteration"] == 102  # 9 indices = 2 full steps + 1
    assert state["refresh_every"] == DEFAULT_REFRESH_EVERY
    assert state["seed"] == 0 and state["n_samples"] == 400


def test_load_state_dict_refuses_a_different_sequence() -> None:
    cur = _curriculum()
    state = CurriculumSampler(cur, batch_size=10, seed=1).state_dict()
    with pytest.raises(ValueError, match=r"state\['seed'\] = 1 but this sampler has seed=2"):
        CurriculumSampler(cur, batch_size=10, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="exceeds the 400 indices per epoch"):
        CurriculumSampler(cur, batch_size=10, seed=1).load_state_dict({**state, "position": 401})
    with pytest.raises(ValueError, match="'epoch' and 'position'"):
        CurriculumSampler(cur, batch_size=10).load_state_dict({"epoch": 0})


# ---------------------------------------------------------------------------- torch


def test_works_as_a_dataloader_sampler() -> None:
    import torch  # a required dependency: a broken install must fail, not skip
    from torch.utils.data import DataLoader, TensorDataset

    cur = _curriculum(n=64)
    dataset = TensorDataset(torch.arange(64))
    sampler = CurriculumSampler(cur, batch_size=8, num_samples=40, seed=3)
    expected = sampler.indices(0).reshape(-1, 8)

    loader = DataLoader(dataset, batch_size=8, sampler=sampler)
    batches = [batch[0].numpy() for batch in loader]

    assert len(loader) == 5
    np.testing.assert_array_equal(np.stack(batches), expected)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(dataset, batch_size=8, sampler=sampler, shuffle=True)


# ---------------------------------------------------------------------------- loading + bad input


def test_load_curriculum_round_trip(tmp_path: Path) -> None:
    difficulty = np.random.default_rng(2).random(256)
    path = publish_curriculum(tmp_path, "toy", difficulty, warmup_iterations=20, pacing="cosine")
    loaded = load_curriculum(tmp_path / "toy" / "latest")
    in_memory = Curriculum.from_arrays(
        difficulty, ScheduleConfig(pacing="cosine", warmup_iterations=20)
    )
    assert loaded.path == path and loaded.version == path.name
    for iteration in (0, 7, 19, 20):
        np.testing.assert_allclose(
            loaded.probabilities(iteration), in_memory.probabilities(iteration), rtol=1e-12
        )
    a = CurriculumSampler(loaded, batch_size=16, seed=1).indices()
    b = CurriculumSampler(in_memory, batch_size=16, seed=1).indices()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
        ({"num_samples": 0}, ValueError, "num_samples must be >= 1"),
        ({"rank": 2, "world_size": 2}, ValueError, r"rank must lie in \[0, world_size\)"),
        ({"world_size": 0}, ValueError, "world_size must be >= 1"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"start_iteration": -5}, ValueError, "start_iteration must be >= 0"),
        ({"refresh_every": 0}, ValueError, "refresh_every must be >= 1"),
    ],
)
def test_sampler_bad_input(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CurriculumSampler(_curriculum(n=20), **kwargs)  # type: ignore[arg-type]


def test_sampler_needs_a_curriculum() -> None:
    with pytest.raises(TypeError, match="load_curriculum"):
        CurriculumSampler(np.ones(5))  # type: ignore[arg-type]


def test_module_documents_the_refresh_interval() -> None:
    doc = sampler_module.__doc__ or ""
    assert f"default {DEFAULT_REFRESH_EVERY}" in doc
    assert DEFAULT_REFRESH_EVERY >= 1
