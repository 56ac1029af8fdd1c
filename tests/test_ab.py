"""The A/B harness (cl_core.ab) on tiny synthetic data: arms, budgets, seeds, table, verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cl_core import ab
from cl_core.ab import ABConfig, ArmRun, arm_curriculum, arm_indices, summarize, train_arm
from cl_core.sampler import Curriculum, CurriculumSampler
from cl_core.schedule import ScheduleConfig

N = 90
CONFIG = ABConfig(steps=12, batch_size=8, eval_every=4, warmup_fraction=0.5)


def _tiny_task(n: int = N) -> ab.ABTask:
    """Three Gaussian classes in 4-D and a linear model."""
    import torch
    from torch import nn

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    features = rng.normal(0, 1, (n, 4)) + np.eye(4)[labels] * 3
    return ab.ABTask(
        name="tiny",
        inputs=torch.tensor(features, dtype=torch.float32),
        labels=labels,
        build_model=lambda: nn.Linear(4, 3),
        identity={"task": "tiny", "n": n},
    )


def _curriculum(n: int = N, warmup: int = 1000) -> Curriculum:
    difficulty = np.random.default_rng(1).random(n).astype(np.float32)
    return Curriculum.from_arrays(difficulty, ScheduleConfig(warmup_iterations=warmup))


@pytest.fixture(scope="module")
def runs() -> list[ArmRun]:
    task, curriculum = _tiny_task(), _curriculum()
    return [train_arm(task, curriculum, arm, seed, CONFIG) for seed in (0, 1) for arm in ab.ARMS]


# ---- arms share everything but the sampler; seeds differ ------------------------------------


def test_arms_share_initial_weights_and_budget(runs: list[ArmRun]) -> None:
    for seed in (0, 1):
        same_seed = [r for r in runs if r.seed == seed]
        assert len({r.init_digest for r in same_seed}) == 1
        assert {r.n_draws for r in same_seed} == {CONFIG.steps * CONFIG.batch_size}
        assert {r.eval_steps for r in same_seed} == {(0, 4, 8, 12)}
        assert len({r.order_digest for r in same_seed}) == 4  # only the sampler differs
        # the same initial weights evaluate identically before the first step
        assert len({r.accuracy[0] for r in same_seed}) == 1


def test_seeds_differ(runs: list[ArmRun]) -> None:
    for arm in ab.ARMS:
        first, second = (next(r for r in runs if r.arm == arm and r.seed == s) for s in (0, 1))
        assert first.init_digest != second.init_digest
        assert first.order_digest != second.order_digest


def test_train_arm_is_deterministic(runs: list[ArmRun]) -> None:
    again = train_arm(_tiny_task(), _curriculum(), "easy", 0, CONFIG)
    before = next(r for r in runs if r.arm == "easy" and r.seed == 0)
    assert again.accuracy == before.accuracy
    assert again.order_digest == before.order_digest


def test_arm_curricula_are_built_from_the_artifact() -> None:
    curriculum = _curriculum()
    train_rows = np.arange(0, N, 2)
    easy = arm_curriculum("easy", curriculum, train_rows, CONFIG, seed=0)
    hard = arm_curriculum("hard", curriculum, train_rows, CONFIG, seed=0)
    shuffled = arm_curriculum("shuffled", curriculum, train_rows, CONFIG, seed=0)
    assert arm_curriculum("uniform", curriculum, train_rows, CONFIG, seed=0) is None
    np.testing.assert_array_equal(easy.difficulty, curriculum.difficulty[train_rows])
    np.testing.assert_array_equal(hard.difficulty, curriculum.difficulty[train_rows])
    assert (easy.strategy, hard.strategy, shuffled.strategy) == ("easy", "hard", "easy")
    np.testing.assert_array_equal(np.sort(shuffled.difficulty), np.sort(easy.difficulty))
    assert not np.array_equal(shuffled.difficulty, easy.difficulty)
    other = arm_curriculum("shuffled", curriculum, train_rows, CONFIG, seed=1)
    assert not np.array_equal(other.difficulty, shuffled.difficulty)
    for arm in (easy, hard, shuffled):  # same pacing and f0, warmup fitted to the run
        assert arm.pacing == curriculum.pacing
        assert arm.initial_fraction == curriculum.initial_fraction
        assert arm.warmup_iterations == CONFIG.steps // 2
    keep = ABConfig(steps=12, batch_size=8, eval_every=4, warmup_fraction=None)
    kept = arm_curriculum("easy", curriculum, train_rows, keep, seed=0)
    assert kept.warmup_iterations == curriculum.warmup_iterations


def test_index_streams_come_from_the_sampler() -> None:
    curriculum = _curriculum(n=400)
    config = ABConfig(steps=40, batch_size=64, eval_every=10, warmup_fraction=1.0)
    train_rows = np.arange(400)
    easy = arm_curriculum("easy", curriculum, train_rows, config, seed=3)
    stream = arm_indices("easy", easy, 400, config, seed=3)
    expected = CurriculumSampler(
        easy, batch_size=64, num_samples=40 * 64, seed=3, refresh_every=config.refresh_every
    ).indices(0)
    np.testing.assert_array_equal(stream.reshape(-1), expected)
    uniform = arm_indices("uniform", None, 400, config, seed=3)
    assert uniform.shape == (40, 64) and uniform.min() >= 0 and uniform.max() < 400
    hard = arm_indices(
        "hard", arm_curriculum("hard", curriculum, train_rows, config, 3), 400, config, 3
    )
    early = {
        name: float(curriculum.difficulty[s[:5].reshape(-1)].mean())
        for name, s in (("easy", stream), ("uniform", uniform), ("hard", hard))
    }
    assert early["easy"] < early["uniform"] < early["hard"]


def test_split_is_deterministic_stratified_and_respects_the_mask() -> None:
    labels = np.arange(100) % 4
    train, held = ab.split_rows(labels, 0.2, seed=0)
    again_train, again_held = ab.split_rows(labels, 0.2, seed=0)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(held, again_held)
    assert np.intersect1d(train, held).size == 0 and train.size + held.size == 100
    assert np.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    mask = np.ones(100, dtype=bool)
    mask[:10] = False
    train, held = ab.split_rows(labels, 0.2, seed=0, usable=mask)
    assert np.concatenate([train, held]).min() >= 10


# ---- the table's numbers come from the logged curves -----------------------------------------


def _run(arm: str, seed: int, accuracy: list[float], steps=(0, 10, 20)) -> dict:
    return ArmRun(
        arm=arm,
        seed=seed,
        eval_steps=tuple(steps),
        accuracy=tuple(accuracy),
        loss=(math.nan,) + (0.5,) * (len(steps) - 1),
        init_digest=f"init{seed}",
        order_digest=f"{arm}{seed}",
        n_draws=80,
        distinct_fraction=0.5,
        seconds=0.1,
    ).to_json()


def test_table_numbers_come_from_the_logged_curves(runs: list[ArmRun]) -> None:
    summary = summarize(runs)
    for arm in ab.ARMS:
        curves = np.array([r.accuracy for r in runs if r.arm == arm])
        steps = np.array(CONFIG.eval_steps, dtype=float)
        stats = summary.arms[arm]
        np.testing.assert_allclose(stats.mean, curves.mean(axis=0))
        np.testing.assert_allclose(stats.std, curves.std(axis=0, ddof=1))
        assert stats.final_mean == pytest.approx(curves[:, -1].mean())
        auc = np.trapezoid(curves, steps, axis=1) / steps[-1]
        assert stats.auc_mean == pytest.approx(auc.mean())
        assert stats.auc_std == pytest.approx(auc.std(ddof=1))
        assert stats.target == pytest.approx(summary.arms["uniform"].final_mean)


def test_summary_by_hand() -> None:
    documents = [
        _run("uniform", 0, [0.1, 0.5, 0.8]),
        _run("uniform", 1, [0.1, 0.7, 0.8]),
        _run("easy", 0, [0.1, 0.8, 0.9]),
        _run("easy", 1, [0.1, 0.8, 0.9]),
    ]
    summary = summarize(documents)
    easy, uniform = summary.arms["easy"], summary.arms["uniform"]
    assert uniform.mean == pytest.approx((0.1, 0.6, 0.8))
    assert uniform.std == pytest.approx((0.0, math.sqrt(0.02), 0.0))
    assert uniform.auc_mean == pytest.approx(((0.1 + 0.6) / 2 + (0.6 + 0.8) / 2) / 2)
    assert easy.steps_to_target == 10  # easy's mean reaches uniform's final 0.8 at step 10
    assert uniform.steps_to_target == 20
    rows = {row["arm"]: row for row in summary.table_rows()}
    assert rows["easy"]["final accuracy"] == "0.9000 ± 0.0000"
    assert rows["easy"]["steps to uniform's final"] == "10"
    assert [row["step"] for row in summary.curve_rows()] == [0, 10, 20]
    assert "| easy |" in ab.format_table(summary)


# ---- verdict -------------------------------------------------------------------------------


def _pair(offsets: list[float], final_offsets: list[float] | None = None) -> list[dict]:
    documents = []
    finals = final_offsets if final_offsets is not None else offsets
    for seed, (early, late) in enumerate(zip(offsets, finals, strict=True)):
        base = 0.6 + 0.01 * seed
        documents.append(_run("uniform", seed, [0.1, base, 0.9 + 0.01 * seed]))
        documents.append(_run("easy", seed, [0.1, base + early, 0.9 + 0.01 * seed + late]))
    return documents


def test_verdict_helps_when_the_gain_exceeds_the_spread() -> None:
    summary = summarize(_pair([0.05, 0.06, 0.05]))
    assert summary.outcome == "helps"
    assert summary.verdict.startswith("easy vs uniform (3 seeds)")
    assert "+5.3 pp" in summary.verdict and "exceeds the seed-to-seed spread" in summary.verdict
    assert "ends higher" in summary.verdict


def test_verdict_learns_faster_but_ends_level() -> None:
    summary = summarize(_pair([0.10, 0.11, 0.10], [0.0, 0.0, 0.0]))
    assert summary.outcome == "helps"
    assert "learns faster" in summary.verdict and "ends higher" not in summary.verdict
    final = next(c for c in summary.comparisons if c.metric == "final" and c.baseline == "uniform")
    assert final.difference == pytest.approx(0.0) and not final.exceeds_spread


def test_verdict_within_the_spread() -> None:
    summary = summarize(_pair([0.05, -0.04, 0.01]))
    assert summary.outcome == "no clear difference"
    assert "within the seed-to-seed spread" in summary.verdict


def test_verdict_hurts_and_mixed() -> None:
    assert summarize(_pair([-0.05, -0.06, -0.05])).outcome == "hurts"
    assert summarize(_pair([0.10, 0.11, 0.10], [-0.03, -0.031, -0.03])).outcome == "mixed"


def test_verdict_undetermined() -> None:
    assert summarize(_pair([0.05])).outcome == "undetermined"
    only_easy = [d for d in _pair([0.05, 0.06, 0.05]) if d["arm"] == "easy"]
    summary = summarize(only_easy)
    assert summary.outcome == "undetermined" and "uniform" in summary.verdict
    assert summary.arms["easy"].steps_to_target is None


def test_spread_is_a_paired_t_interval() -> None:
    summary = summarize(_pair([0.05, -0.04, 0.01], [0.0, 0.0, 0.0]))
    auc = next(c for c in summary.comparisons if c.metric == "auc" and c.baseline == "uniform")
    diffs = np.array([0.05, -0.04, 0.01]) * 0.5  # the mid point carries half the AUC weight
    assert auc.difference == pytest.approx(diffs.mean())
    assert auc.half_width == pytest.approx(4.302653 * diffs.std(ddof=1) / math.sqrt(3), rel=1e-5)


def test_results_round_trip_and_plot(runs: list[ArmRun]) -> None:
    import io
    import json

    summary = summarize([r.to_json() for r in runs])
    assert summary.to_json() == summarize(runs).to_json()
    json.dumps(summary.to_json(), allow_nan=False)
    document = json.loads(json.dumps(runs[0].to_json(), allow_nan=False))
    assert ArmRun.from_json(document).to_json() == runs[0].to_json()
    buffer = io.BytesIO()
    ab.plot_curves(summary).savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_run_ab_runs_every_arm_and_seed() -> None:
    seen: list[tuple[str, int]] = []
    config = ABConfig(arms=("easy", "uniform"), steps=4, batch_size=4, eval_every=2)
    summary, _runs = ab.run_ab(
        _curriculum(), _tiny_task(), config, seeds=2, on_run=lambda r: seen.append((r.arm, r.seed))
    )
    assert seen == [("easy", 0), ("uniform", 0), ("easy", 1), ("uniform", 1)]
    assert set(summary.arms) == {"easy", "uniform"}


# ---- bad input ------------------------------------------------------------------------------


def test_artifact_n_must_match_the_dataset() -> None:
    with pytest.raises(ValueError, match=r"scores 50 samples but the dataset .* has 90"):
        train_arm(_tiny_task(), _curriculum(n=50), "easy", 0, CONFIG)
    with pytest.raises(ValueError, match="scores 50 samples"):
        ab.run_ab(_curriculum(n=50), _tiny_task(), CONFIG, seeds=1)


def test_unknown_arm() -> None:
    with pytest.raises(ValueError, match=r"arm.*'bogus'.*easy"):
        ABConfig(arms=("easy", "bogus"))
    with pytest.raises(ValueError, match="arm"):
        train_arm(_tiny_task(), _curriculum(), "bogus", 0, CONFIG)
    with pytest.raises(ValueError, match="distinct"):
        ABConfig(arms=("easy", "easy"))
    assert ab.check_arms("easy, uniform") == ("easy", "uniform")


def test_seeds_must_be_at_least_one() -> None:
    for bad in (0, -2, []):
        with pytest.raises(ValueError, match="seed"):
            ab.check_seeds(bad)
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        ab.run_ab(_curriculum(), _tiny_task(), CONFIG, seeds=0)
    assert ab.check_seeds(3) == (0, 1, 2)
    assert ab.check_seeds([4, 7]) == (4, 7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be >= 1"),
        ({"steps": 10, "eval_every": 20}, "eval_every must be <= steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"warmup_fraction": 1.5}, "warmup_fraction"),
        ({"holdout_fraction": 0.0}, "holdout_fraction"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        ABConfig(**kwargs)


def test_task_validation() -> None:
    import torch

    with pytest.raises(ValueError, match="labels"):
        ab.ABTask("x", torch.zeros(3, 2), np.array([0, 1]), build_model=lambda: None)
    with pytest.raises(ValueError, match="integer"):
        ab.ABTask("x", torch.zeros(2, 2), np.array([0.5, 1.0]), build_model=lambda: None)


# ---- other tasks: linear probe on a store, timm model on an image folder --------------------


def test_probe_task_trains_a_linear_probe_on_the_store(tmp_path) -> None:
    from cl_core.store import store_from_array

    task = _tiny_task()
    features = task.inputs.numpy()
    store_from_array(tmp_path / "e.zarr", features, task.labels, chunk_rows=32)
    probe = ab.probe_task(tmp_path / "e.zarr")
    assert probe.n_samples == N and probe.n_classes == 3 and probe.identity["dim"] == 4
    config = ABConfig(arms=("uniform",), steps=30, batch_size=16, eval_every=10, lr=0.1)
    run = train_arm(probe, _curriculum(), "uniform", 0, config)
    assert run.accuracy[-1] > 0.8  # separable classes
    store_from_array(tmp_path / "nolabels.zarr", features, chunk_rows=32)
    with pytest.raises(ValueError, match="no labels"):
        ab.probe_task(tmp_path / "nolabels.zarr")


def test_image_task_fine_tunes_a_timm_model(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(2):
        folder = tmp_path / f"class{label}"
        folder.mkdir()
        for index in range(6):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) // (1 + label)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    task = ab.image_task(
        str(tmp_path), "test_efficientnet", pretrained=False, image_size=32, num_workers=0
    )
    assert task.n_samples == 12 and task.n_classes == 2 and not task.in_memory
    config = ABConfig(arms=("easy", "uniform"), steps=2, batch_size=4, eval_every=1)
    runs = [train_arm(task, _curriculum(n=12, warmup=10), arm, 0, config) for arm in config.arms]
    assert runs[0].init_digest == runs[1].init_digest
    assert len(runs[0].accuracy) == 3


def test_verdict_says_how_it_hurts() -> None:
    summary = summarize(_pair([-0.10, -0.11, -0.10], [0.0, 0.0, 0.0]))
    assert summary.outcome == "hurts" and summary.verdict.endswith("(learns slower)")
    both = summarize(_pair([0.05, 0.06, 0.05]))
    assert both.verdict.endswith("the curriculum helps (learns faster and ends higher)")
