"""The A/B harness's MAE objective: the model and its masking, the kNN and probe readings, arms
that share everything but the sampler, and the summary with floors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_core import ab
from cl_core.ab import ABConfig, ArmRun, MAESpec, summarize, train_arm
from cl_core.sampler import Curriculum
from cl_core.schedule import ScheduleConfig

TINY_SPEC = MAESpec(
    image_size=8,
    patch_size=2,
    in_chans=1,
    embed_dim=16,
    depth=1,
    num_heads=2,
    decoder_dim=8,
    decoder_depth=1,
    decoder_heads=2,
)
N = 120
CONFIG = ABConfig(
    objective="mae",
    steps=6,
    batch_size=8,
    eval_every=3,
    knn_shots=2,
    knn_draws=3,
    knn_pool=4,
)


def _tiny_task(n: int = N) -> ab.ABTask:
    """Three classes of 8x8 images (a bright row band per class, plus noise) and a tiny MAE."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    images = rng.normal(0, 0.3, (n, 1, 8, 8))
    for label in range(3):
        images[labels == label, 0, 2 * label : 2 * label + 2, :] += 2.0
    return ab.ABTask(
        name="tiny-mae",
        inputs=torch.tensor(images, dtype=torch.float32),
        labels=labels,
        build_model=lambda: ab.build_mae(TINY_SPEC),
        identity={"task": "tiny-mae", "n": n},
        objective="mae",
    )


def _curriculum(n: int = N) -> Curriculum:
    difficulty = np.random.default_rng(1).random(n).astype(np.float32)
    return Curriculum.from_arrays(difficulty, ScheduleConfig(warmup_iterations=100))


@pytest.fixture(scope="module")
def runs() -> list[ArmRun]:
    task, curriculum = _tiny_task(), _curriculum()
    return [train_arm(task, curriculum, arm, seed, CONFIG) for seed in (0, 1) for arm in ab.ARMS]


# ---- the model ------------------------------------------------------------------------------


def test_mae_shapes() -> None:
    spec = ab.MAE_SPECS["digits"]
    torch.manual_seed(0)
    model = ab.build_mae(spec)
    images = torch.randn(5, 1, 8, 8)
    loss, prediction, mask = model(images, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert prediction.shape == (5, 16, 4)  # 16 patches of 2x2 pixels
    assert mask.shape == (5, 16) and mask.sum(dim=1).tolist() == [12.0] * 5  # 75% masked
    assert model.features(images).shape == (5, 64)
    assert model.patchify(images).shape == (5, 16, 4)
    # patch (row 1, column 2) holds pixels [2:4, 4:6], row-major, as PatchEmbed orders tokens
    patch = model.patchify(images)[0, 1 * 4 + 2]
    assert torch.equal(patch, images[0, 0, 2:4, 4:6].reshape(-1))


def test_vit_small_spec_is_vit_s16() -> None:
    spec = ab.MAE_SPECS["vit_small_patch16"]
    assert (spec.embed_dim, spec.depth, spec.num_heads, spec.patch_size) == (384, 12, 6, 16)
    assert (spec.image_size, spec.mask_ratio) == (224, 0.75)
    assert spec.n_patches == 196 and spec.n_visible == 49
    small = dataclasses.replace(spec, image_size=32)  # same widths, 4 patches: cheap on a CPU
    torch.manual_seed(0)
    model = ab.build_mae(small)
    encoder = sum(
        p.numel()
        for name, p in model.named_parameters()
        if not name.startswith(("decoder", "mask_token"))
    )
    assert 21_000_000 < encoder < 22_000_000  # ViT-S/16's ~21.7M (without a head)
    _, prediction, mask = model(torch.randn(2, 3, 32, 32), torch.Generator().manual_seed(0))
    assert prediction.shape == (2, 4, 16 * 16 * 3) and mask.sum().item() == 2 * 3
    assert model.features(torch.randn(2, 3, 32, 32)).shape == (2, 384)


def test_masking_is_seeded() -> None:
    spec = ab.MAE_SPECS["digits"]
    first = ab.random_masking(32, spec, torch.Generator().manual_seed(7))
    again = ab.random_masking(32, spec, torch.Generator().manual_seed(7))
    other = ab.random_masking(32, spec, torch.Generator().manual_seed(8))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[2], other[2])
    keep, restore, mask = first
    assert keep.shape == (32, 4) and restore.shape == (32, 16)
    for row in range(32):  # the kept patches are exactly the unmasked ones
        assert sorted(keep[row].tolist()) == torch.nonzero(mask[row] == 0).flatten().tolist()


def test_the_loss_counts_masked_patches_only() -> None:
    torch.manual_seed(0)
    model = ab.build_mae(TINY_SPEC)
    images = torch.randn(4, 1, 8, 8)
    loss, prediction, mask = model(images, torch.Generator().manual_seed(3))
    target = model.patchify(images)
    per_patch = ((prediction - target) ** 2).mean(dim=-1)
    assert loss.item() == pytest.approx(per_patch[mask == 1].mean().item(), rel=1e-6)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="multiple of patch_size"):
        dataclasses.replace(TINY_SPEC, image_size=9)
    with pytest.raises(ValueError, match="mask_ratio"):
        dataclasses.replace(TINY_SPEC, mask_ratio=1.0)
    with pytest.raises(ValueError, match="embed_dim"):
        dataclasses.replace(TINY_SPEC, embed_dim=18)


# ---- the readings ---------------------------------------------------------------------------


def test_knn_score_of_a_known_toy_embedding_is_exact() -> None:
    features = np.array(
        [
            [1.0, 0.0],  # 0: class 0   bank A
            [-1.0, 0.0],  # 1: class 1  bank A
            [0.0, 1.0],  # 2: class 0   bank B
            [0.0, -1.0],  # 3: class 1  bank B
            [2.0, 0.1],  # 4: class 0   query
            [-3.0, 1.0],  # 5: class 1  query
            [0.5, -5.0],  # 6: class 1  query
            [-0.2, 3.0],  # 7: class 0  query
        ]
    )
    labels = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    banks = np.array([[0, 1], [2, 3]])
    queries = np.arange(4, 8)
    # centre = mean of rows 0..3 = (0, 0); nearest by cosine:
    # bank A: q4 -> 0 (right), q5 -> 1 (right), q6 -> 0 (wrong), q7 -> 1 (wrong)  = 2/4
    # bank B: q4 -> 2 (right), q5 -> 2 (wrong), q6 -> 3 (right), q7 -> 2 (right)  = 3/4
    score = ab.knn_accuracy(features, labels, banks, queries, centre_rows=np.arange(4))
    assert score == 0.625
    # centred cosine: a common offset and a scale change nothing
    assert ab.knn_accuracy(5 * features + 7, labels, banks, queries, centre_rows=np.arange(4)) == (
        0.625
    )
    with pytest.raises(ValueError, match="query row is also in a bank"):
        ab.knn_accuracy(features, labels, np.array([[0, 4]]), queries)


def test_banks_are_drawn_from_a_fixed_pool_of_training_rows() -> None:
    labels = np.arange(200) % 4
    train = np.arange(40, 200)
    drawn = ab.draw_banks(labels, train, shots=3, draws=10, pool_per_class=8, seed=0)
    again = ab.draw_banks(labels, train, shots=3, draws=10, pool_per_class=8, seed=0)
    other = ab.draw_banks(labels, train, shots=3, draws=10, pool_per_class=8, seed=1)
    np.testing.assert_array_equal(drawn.banks, again.banks)
    assert not np.array_equal(drawn.banks, other.banks)
    assert drawn.pool.size == 32 and np.isin(drawn.pool, train).all()
    assert drawn.banks.shape == (10, 12) and np.isin(drawn.banks, drawn.pool).all()
    for bank in drawn.banks:
        assert np.bincount(labels[bank]).tolist() == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="fewer than knn_shots"):
        ab.draw_banks(labels, train[:8], shots=3, draws=1, pool_per_class=3, seed=0)


def test_linear_probe_separates_separable_classes() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(90) % 3
    features = rng.normal(0, 0.1, (90, 5)) + np.eye(5)[labels] * 3
    assert ab.linear_probe_accuracy(features, labels, np.arange(60), np.arange(60, 90)) == 1.0


# ---- arms share everything but the sampler --------------------------------------------------


def test_arms_share_initial_weights_masks_and_budgets(runs: list[ArmRun]) -> None:
    for seed in (0, 1):
        same_seed = [r for r in runs if r.seed == seed]
        assert {r.objective for r in same_seed} == {"mae"}
        assert len({r.init_digest for r in same_seed}) == 1
        assert {r.n_draws for r in same_seed} == {CONFIG.steps * CONFIG.batch_size}
        assert {r.eval_steps for r in same_seed} == {(0, 3, 6)}
        assert len({r.order_digest for r in same_seed}) == 4  # only the sampler differs
        assert len({r.accuracy[0] for r in same_seed}) == 1  # same random-init encoder
        assert len({json.dumps(r.floors, sort_keys=True) for r in same_seed}) == 1
        for run in same_seed:
            assert run.probe is not None and 0.0 <= run.probe <= 1.0
            assert run.floors["random init"]["knn"] == run.accuracy[0]
    for arm in ab.ARMS:
        first, second = (next(r for r in runs if r.arm == arm and r.seed == s) for s in (0, 1))
        assert first.init_digest != second.init_digest


def test_the_same_arm_and_seed_repeat_exactly(runs: list[ArmRun]) -> None:
    again = train_arm(_tiny_task(), _curriculum(), "easy", 0, CONFIG)
    before = next(r for r in runs if r.arm == "easy" and r.seed == 0)
    assert again.accuracy == before.accuracy
    assert again.loss[1:] == before.loss[1:]  # the same masks: the same reconstruction losses
    assert again.probe == before.probe


def test_objective_and_task_must_agree() -> None:
    with pytest.raises(ValueError, match="objective='mae' but the task 'digits-cnn'"):
        train_arm(ab.digits_task(), _curriculum(1797), "easy", 0, CONFIG)
    with pytest.raises(ValueError, match="objective='supervised' but the task 'tiny-mae'"):
        train_arm(_tiny_task(), _curriculum(), "easy", 0, ABConfig(steps=4, eval_every=2))


# ---- recipes, optimiser ---------------------------------------------------------------------


def test_recipes_fill_what_the_config_leaves_open() -> None:
    mae = ABConfig(objective="mae")
    assert (mae.steps, mae.batch_size, mae.lr, mae.optimizer, mae.weight_decay) == (
        600,
        64,
        2.4e-3,
        "adamw",
        0.05,
    )
    assert ABConfig(objective="mae", steps=100, eval_every=None).eval_every == 10
    assert ABConfig(steps=100, eval_every=None).eval_every == 5
    supervised = ABConfig()
    assert (supervised.steps, supervised.batch_size, supervised.lr) == (600, 32, 1e-3)
    assert supervised.optimizer == "adam" and supervised.weight_decay == 0.0
    # a supervised config's JSON (and so its content ids) has no objective fields
    assert not {"objective", "knn_shots", "knn_draws", "knn_pool"} & set(supervised.to_json())
    assert mae.to_json()["objective"] == "mae" and mae.to_json()["knn_shots"] == 5
    with pytest.raises(ValueError, match="objective"):
        ABConfig(objective="simclr")
    with pytest.raises(ValueError, match="knn_pool"):
        ABConfig(objective="mae", knn_shots=5, knn_pool=3)


def test_adamw_is_maes_schedule() -> None:
    torch.manual_seed(0)
    model = ab.build_mae(TINY_SPEC)
    config = ABConfig(objective="mae", steps=100, eval_every=10)
    optimizer, schedule = ab.build_optimizer(model, config)
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(2.4e-3 / 5)  # warmup: 5 steps (5% of 100)
    assert rates[4] == pytest.approx(2.4e-3)
    assert rates[52] == pytest.approx(2.4e-3 * 0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert rates[-1] < 1e-5


# ---- summary, table, plot -------------------------------------------------------------------


def test_summary_has_floors_probe_and_knn_wording(runs: list[ArmRun]) -> None:
    import io

    summary = summarize([r.to_json() for r in runs])
    assert summary.objective == "mae" and summary.metric == "held-out kNN accuracy"
    uniform = [r for r in runs if r.arm == "uniform"]
    assert summary.arms["uniform"].probe_mean == pytest.approx(np.mean([r.probe for r in uniform]))
    assert set(summary.floors) == {"raw pixels", "random init"}
    assert summary.floors["random init"]["knn"][0] == pytest.approx(
        np.mean([r.accuracy[0] for r in uniform])
    )
    assert summary.floors["raw pixels"]["knn"][1] == 0.0  # the same for every seed
    rows = {row["arm"]: row for row in summary.table_rows()}
    assert set(rows) == {*ab.ARMS, "floor: raw pixels", "floor: random init"}
    assert "linear probe" in rows["easy"] and "final kNN accuracy" in rows["easy"]
    assert rows["floor: random init"]["AUC (mean kNN accuracy)"] == "n/a"
    assert "final kNN accuracy" in summary.verdict and "linear probe" in summary.verdict
    metrics = {c.metric for c in summary.comparisons if c.baseline == "uniform"}
    assert metrics == {"final", "auc", "probe"}
    assert "| floor: raw pixels |" in ab.format_table(summary)
    json.dumps(summary.to_json(), allow_nan=False)
    buffer = io.BytesIO()
    ab.plot_curves(summary, warmup=3).savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_runs_round_trip_and_objectives_do_not_mix(runs: list[ArmRun]) -> None:
    document = json.loads(json.dumps(runs[0].to_json(), allow_nan=False))
    assert ArmRun.from_json(document) == runs[0]
    supervised = dataclasses.replace(runs[1], objective="supervised", probe=None, floors=None)
    assert "floors" not in supervised.to_json() and "objective" not in supervised.to_json()
    with pytest.raises(ValueError, match="mix objectives"):
        summarize([runs[0], supervised])


# ---- an image folder: ViT-S/16 widths ------------------------------------------------------


def test_image_folder_task_trains_a_vit_small(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(2):
        folder = tmp_path / f"class{label}"
        folder.mkdir()
        for index in range(6):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) // (1 + label)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    task = ab.mae_image_task(str(tmp_path), image_size=32, device="cpu", num_workers=0)
    assert task.objective == "mae" and task.n_samples == 12 and not task.in_memory
    assert task.identity["mae"]["embed_dim"] == 384 and task.identity["mae"]["image_size"] == 32
    config = ABConfig(
        objective="mae",
        arms=("easy", "uniform"),
        steps=2,
        batch_size=4,
        eval_every=1,
        knn_shots=2,
        knn_draws=2,
        knn_pool=3,
    )
    curriculum = Curriculum.from_arrays(
        np.linspace(0, 1, 12, dtype=np.float32), ScheduleConfig(warmup_iterations=10)
    )
    easy, uniform = (train_arm(task, curriculum, arm, 0, config) for arm in config.arms)
    assert easy.init_digest == uniform.init_digest and len(easy.accuracy) == 3
    assert easy.floors["raw pixels"] == uniform.floors["raw pixels"]


# ---- examples/pretrain_mae.py ---------------------------------------------------------------


def test_pretrain_mae_example_runs_on_a_tiny_budget(tmp_path: Path) -> None:
    import importlib.util

    from cl_core.artifacts import publish_curriculum

    difficulty = np.random.default_rng(0).random(1797).astype(np.float32)
    artifact = publish_curriculum(tmp_path, "digits", difficulty, warmup_iterations=1000)
    path = Path(__file__).resolve().parents[1] / "examples" / "pretrain_mae.py"
    spec = importlib.util.spec_from_file_location("pretrain_mae_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--artifact", str(artifact), "--steps", "6", "--batch-size", "16"])
    assert result["steps"] == 6 and len(result["losses"]) == 6  # one report per tenth (min 1)
    assert all(math.isfinite(x) for x in result["losses"])
    assert 0.0 <= result["probe"] <= 1.0
