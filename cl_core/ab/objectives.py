"""What the arms train for: the objective table (recipes) and each objective's loss and reading.

``supervised``
    The task's model maps inputs to class logits; cross-entropy; the reading is held-out
    accuracy.
``mae``
    The task's model is a masked autoencoder (:mod:`cl_core.ab.mae`); its loss is the
    reconstruction error on the masked patches, with masks from a generator seeded by the run's
    seed (the same masks for every arm of a seed). The reading is the frozen encoder's few-shot
    kNN accuracy on the held-out rows (:mod:`cl_core.ab.probe`), and at the end a linear probe.
    The floors (raw-pixel kNN and probe; the random-initialised encoder's, i.e. the step-0
    reading) are recorded with every run.

:data:`RECIPES` holds each objective's default step budget, batch size and optimiser; an explicit
:class:`~cl_core.ab.config.ABConfig` value overrides it. The ``adamw`` optimiser is MAE's recipe:
AdamW with betas (0.9, 0.95), no weight decay on biases, norms and tokens, a linear learning-rate
warmup over the first 5% of the steps, then a cosine decay to zero.

This module does not import :mod:`cl_core.ab.config` (the config imports the recipes from here);
objects of it are used by their attributes only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.ab.data import batches
from cl_core.ab.probe import draw_banks, knn_accuracy, linear_probe_accuracy
from cl_core.ab.tasks import ABTask

OBJECTIVES = ("supervised", "mae")
LR_WARMUP_FRACTION = 0.05  # MAE: 40 warmup epochs of 800
ADAMW_BETAS = (0.9, 0.95)  # MAE's pretraining betas
RAW_PIXEL_SIZE = 32  # raw-pixel floor: images larger than this are average-pooled to 32x32
_MASK_STREAM = 0x6D61736B  # SeedSequence spawn key of the masking generator


@dataclass(frozen=True)
class Recipe:
    """An objective's defaults (used where :class:`ABConfig` leaves a value as None).

    Attributes
    ----------
    steps, quick_steps : int
        The step budget of a default and of a ``--quick`` run.
    batch_size : int
    lr : float
        Peak learning rate.
    optimizer : str
        ``adam``, ``sgd`` (momentum 0.9) or ``adamw`` (MAE's schedule, see the module doc).
    weight_decay : float
    metric : str
        What the logged curve measures (plot and table labels).
    evaluations : int
        Evaluation intervals per run when ``eval_every`` is not given (``steps // evaluations``).
    """

    steps: int
    quick_steps: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float
    metric: str
    evaluations: int


RECIPES: dict[str, Recipe] = {
    "supervised": Recipe(
        steps=600,
        quick_steps=200,
        batch_size=32,
        lr=1e-3,
        optimizer="adam",
        weight_decay=0.0,
        metric="held-out accuracy",
        evaluations=20,
    ),
    # MAE's recipe (AdamW, betas (0.9, 0.95), weight decay 0.05, 5% linear warmup, cosine
    # decay) scaled to a ~0.2M-parameter ViT and a few CPU seconds per run: batch 64 instead
    # of 4096, 600 steps (~27 epochs of the 1,437 training digits) instead of 800 epochs.
    # The peak learning rate is MAE's own, 1.5e-4 x 4096 / 256 = 2.4e-3, not rescaled to the
    # batch: at the rescaled values (linear rule 3.75e-5, square-root rule 3e-4) a 600-step run
    # stays on the predict-the-mean plateau (checked on the uniform arm alone, seed 100: kNN
    # 0.22 -> 0.24 at 3e-4, 0.25 -> 0.37 at 2.4e-3).
    "mae": Recipe(
        steps=600,
        # --quick checks the wiring in under 2 minutes on 2 cores (3 seeds x 4 arms); its
        # curves end on the plateau, so it says nothing about the curriculum
        quick_steps=120,
        batch_size=64,
        lr=2.4e-3,
        optimizer="adamw",
        weight_decay=0.05,
        metric="held-out kNN accuracy",
        # each reading embeds ~660 digits with the encoder: 10 intervals keep it ~10% of a run
        evaluations=10,
    ),
}


def build_optimizer(model: Any, config: Any) -> tuple[Any, Any]:
    """``(optimizer, scheduler or None)`` for ``config.optimizer`` / ``lr`` / ``weight_decay``."""
    import torch

    if config.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        ), None
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        ), None
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        # MAE (via timm's param_groups_weight_decay): no decay on biases, norms, tokens
        (no_decay if parameter.ndim <= 1 or name.endswith("_token") else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=ADAMW_BETAS,
        fused=True,  # one kernel for all parameters: ~10% of a small model's step on a CPU
    )
    warmup = max(1, round(LR_WARMUP_FRACTION * config.steps))
    total = config.steps

    def factor(step: int) -> float:  # step = optimiser steps taken so far
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class SupervisedObjective:
    """Cross-entropy on the labels; the reading is held-out accuracy."""

    def __init__(self, task: ABTask, held_rows: np.ndarray) -> None:
        self.task = task
        self.held_rows = held_rows

    def loss(self, model: Any, inputs: Any, targets: Any) -> Any:
        import torch

        return torch.nn.functional.cross_entropy(model(inputs), targets)

    def start(self, model: Any, init_digest: str) -> float:
        """The reading of the initial model (step 0)."""
        return self.score(model)

    def score(self, model: Any) -> float:
        import torch

        model.eval()
        correct = 0
        with torch.no_grad():
            for inputs, targets in batches(self.task, self.held_rows, 512):
                correct += int((model(inputs).argmax(dim=1) == targets).sum())
        model.train()
        return correct / self.held_rows.shape[0]

    def finish(self, model: Any, initial_score: float) -> dict[str, Any]:
        return {}


def encoder_features(model: Any, task: ABTask, rows: np.ndarray, batch_size: int = 256) -> Any:
    """Frozen-encoder features ``(len(rows), D)`` as float64 numpy (eval mode, no masking)."""
    import torch

    was_training = model.training
    model.eval()
    parts = []
    with torch.no_grad():
        for inputs, _ in batches(task, rows, batch_size):
            parts.append(model.features(inputs).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(parts).astype(np.float64)


def raw_pixels(task: ABTask, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Raw-pixel features ``(len(rows), C*h*w)``: the inputs flattened, after average pooling to
    at most :data:`RAW_PIXEL_SIZE` pixels a side (a tiny-images baseline for large inputs)."""
    import torch

    parts = []
    for inputs, _ in batches(task, rows, batch_size):
        x = inputs.float()
        if x.ndim == 4 and max(x.shape[-2:]) > RAW_PIXEL_SIZE:
            x = torch.nn.functional.adaptive_avg_pool2d(x, RAW_PIXEL_SIZE)
        parts.append(x.reshape(x.shape[0], -1).cpu().numpy())
    return np.concatenate(parts).astype(np.float64)


def _scatter(n_rows: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A ``(n_rows, D)`` array holding ``values`` at ``rows`` (zeros elsewhere, never read)."""
    full = np.zeros((n_rows, values.shape[1]), dtype=np.float64)
    full[rows] = values
    return full


# Per-process memos of readings every arm (and seed) shares; small (a few floats per key).
_RAW_FLOORS: dict[tuple[Any, ...], dict[str, float]] = {}
_INITIAL: dict[tuple[Any, ...], tuple[float, float]] = {}


class MAEObjective:
    """Masked-patch reconstruction; the reading is the frozen encoder's few-shot kNN accuracy."""

    def __init__(
        self,
        task: ABTask,
        train_rows: np.ndarray,
        held_rows: np.ndarray,
        config: Any,
        seed: int,
    ) -> None:
        import torch

        self.task = task
        self.train_rows = train_rows
        self.held_rows = held_rows
        self.config = config
        self.knn = draw_banks(
            task.labels,
            train_rows,
            shots=config.knn_shots,
            draws=config.knn_draws,
            pool_per_class=config.knn_pool,
            seed=config.split_seed,
        )
        # the rows whose features each kNN reading needs: the labelled pool and the queries
        self.eval_rows = np.union1d(self.knn.pool, held_rows)
        state = np.random.SeedSequence([seed, _MASK_STREAM]).generate_state(2, dtype=np.uint32)
        self.generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        self.initial_probe: float | None = None
        self.eval_key = (
            json.dumps(task.identity, sort_keys=True, default=str),
            config.split_seed,
            config.holdout_fraction,
            config.knn_shots,
            config.knn_draws,
            config.knn_pool,
            int(train_rows.size),
        )

    def loss(self, model: Any, inputs: Any, targets: Any) -> Any:
        return model(inputs, self.generator)[0]

    def _knn(self, features: np.ndarray) -> float:
        full = _scatter(self.task.n_samples, self.eval_rows, features)
        return knn_accuracy(
            full, self.task.labels, self.knn.banks, self.held_rows, centre_rows=self.knn.pool
        )

    def _probe(self, features_of: Any) -> float:
        rows = np.concatenate([self.train_rows, self.held_rows])
        full = _scatter(self.task.n_samples, rows, features_of(rows))
        return linear_probe_accuracy(full, self.task.labels, self.train_rows, self.held_rows)

    def start(self, model: Any, init_digest: str) -> float:
        """The random-initialised encoder's kNN reading (step 0) and linear probe (a floor);
        memoised per process by the initial weights, which every arm of a seed shares."""
        key = (*self.eval_key, init_digest)
        if key not in _INITIAL:
            features = lambda rows: encoder_features(model, self.task, rows)  # noqa: E731
            _INITIAL[key] = (self.score(model), self._probe(features))
        score, self.initial_probe = _INITIAL[key]
        return score

    def score(self, model: Any) -> float:
        return self._knn(encoder_features(model, self.task, self.eval_rows))

    def raw_floor(self) -> dict[str, float]:
        """Raw-pixel kNN and probe (the same for every arm and seed; memoised per process)."""
        key = self.eval_key
        if key not in _RAW_FLOORS:
            pixels = raw_pixels(self.task, self.eval_rows)
            _RAW_FLOORS[key] = {
                "knn": self._knn(pixels),
                "probe": self._probe(lambda rows: raw_pixels(self.task, rows)),
            }
        return dict(_RAW_FLOORS[key])

    def finish(self, model: Any, initial_score: float) -> dict[str, Any]:
        probe = self._probe(lambda rows: encoder_features(model, self.task, rows))
        return {
            "probe": probe,
            "floors": {
                "raw pixels": self.raw_floor(),
                "random init": {"knn": initial_score, "probe": self.initial_probe},
            },
        }


def make_objective(
    task: ABTask, train_rows: np.ndarray, held_rows: np.ndarray, config: Any, seed: int
) -> Any:
    """The objective object ``train_arm`` drives: ``start(model, init_digest) -> float`` (the
    step-0 reading), ``loss(model, inputs, targets)``, ``score(model) -> float`` (the logged
    reading) and ``finish(model, initial_score) -> dict`` (extra results: the final linear
    probe and the floors)."""
    if task.objective != config.objective:
        raise ValueError(
            f"objective={config.objective!r} but the task {task.name!r} trains a "
            f"{task.objective!r} model; build the task for the objective (e.g. "
            f"{'mae_digits_task()' if config.objective == 'mae' else 'digits_task()'})"
        )
    if config.objective == "mae":
        return MAEObjective(task, train_rows, held_rows, config, seed)
    return SupervisedObjective(task, held_rows)
