"""Does the curriculum help? A four-arm A/B harness over seeds, with a verdict.

The harness trains the same model, from the same initial weights, with the same optimiser, step
budget, batch size and data-order seed, under four samplers (*arms*):

``easy``
    The artifact's difficulty and schedule with ``strategy="easy"`` (prototypes first), drawn by
    :class:`cl_core.sampler.CurriculumSampler`.
``uniform``
    Uniform sampling with replacement, the same number of draws.
``hard``
    The same difficulty and schedule with ``strategy="hard"``.
``shuffled``
    The same schedule over a seeded random permutation of the difficulty: it keeps the narrow
    early data but not the ordering information, so ``easy`` minus ``shuffled`` is what the
    ordering itself contributes.

Each arm runs once per seed; the objective's reading is logged at fixed steps.

Objectives (:mod:`~cl_core.ab.objectives`)
------------------------------------------
``supervised`` (default) trains a classifier with cross-entropy and reads held-out accuracy.
``mae`` pretrains a masked autoencoder from random initialisation (:mod:`~cl_core.ab.mae`: a ViT
from timm's blocks, 75% of the patches masked, a light decoder, loss on the masked patches) and
reads the frozen encoder's few-shot kNN accuracy on the held-out rows, plus a linear probe at
the end, beside two floors: raw pixels and the random-initialised encoder
(:mod:`~cl_core.ab.probe`). That is the paper's own setting (MAE pretraining, judged by frozen
features); the supervised objective is the common question "does it help my classifier?". :func:`summarize` turns
the logged curves into per-arm statistics (mean and std at each evaluation step, final accuracy,
area under the accuracy-vs-steps curve, steps to reach uniform's final accuracy) and a verdict that
states the easy-minus-uniform difference and whether it exceeds the seed-to-seed spread.

Held-out split
--------------
A published artifact scores *every* sample of the dataset (N rows). The harness holds out a
deterministic, class-stratified fraction of the rows (``holdout_fraction``, ``split_seed``) for
evaluation and trains on the rest: each arm's curriculum is rebuilt over the training rows only
(``Curriculum.from_arrays(difficulty[train_rows], config)``), i.e. the held-out rows'
probabilities are dropped and the rest renormalised, with the temperature table re-solved for the
training subset so that the effective-fraction targets keep their meaning. Rows the artifact
masks (``Curriculum.sample_mask``) are neither trained on nor evaluated.

The schedule keeps the artifact's strategy-independent settings (pacing, initial fraction,
temperature mode); its warmup is ``warmup_fraction`` of the step budget by default, because a
short A/B run would otherwise end before a warmup sized for full training (``None`` keeps the
artifact's warmup).

Everything random is seeded: model initialisation from ``seed`` (the same for every arm), the
index stream from ``seed`` (the sampler's seed, the uniform arm's generator), the shuffled arm's
permutation from ``seed``. This package writes no files: :func:`plot_curves` returns a figure and
the caller saves it. torch, matplotlib and scipy are imported where they are used.

Modules: :mod:`~cl_core.ab.config` (:class:`ABConfig`, arms, seeds), :mod:`~cl_core.ab.tasks`
(data + model), :mod:`~cl_core.ab.mae` (the masked autoencoder and its tasks),
:mod:`~cl_core.ab.arms` (split, arm curricula, index streams), :mod:`~cl_core.ab.data` (batches),
:mod:`~cl_core.ab.objectives` (recipes, losses, readings), :mod:`~cl_core.ab.probe` (kNN and
linear probe), :mod:`~cl_core.ab.train` (the training loop), :mod:`~cl_core.ab.verdict`
(statistics, verdict, table, plot), :mod:`~cl_core.ab.run` (:func:`run_ab`). Importing the
package imports numpy only.
"""

from __future__ import annotations

from cl_core.ab.arms import arm_curriculum, arm_indices, check_artifact_matches, split_rows
from cl_core.ab.config import ARMS, OPTIMIZERS, ABConfig, check_arms, check_seeds
from cl_core.ab.data import batches
from cl_core.ab.mae import (
    MAE_SPECS,
    MAESpec,
    build_mae,
    mae_digits_task,
    mae_image_task,
    random_masking,
)
from cl_core.ab.objectives import (
    OBJECTIVES,
    RECIPES,
    Recipe,
    build_optimizer,
    encoder_features,
    make_objective,
    raw_pixels,
)
from cl_core.ab.probe import KNNBanks, draw_banks, knn_accuracy, linear_probe_accuracy
from cl_core.ab.run import run_ab
from cl_core.ab.tasks import ABTask, digits_task, image_task, probe_task
from cl_core.ab.train import ArmRun, train_arm
from cl_core.ab.verdict import (
    ARM_COLOURS,
    ABSummary,
    ArmSummary,
    Comparison,
    format_table,
    plot_curves,
    summarize,
)

__all__ = [
    "ARMS",
    "ARM_COLOURS",
    "MAE_SPECS",
    "OBJECTIVES",
    "OPTIMIZERS",
    "RECIPES",
    "ABConfig",
    "ABSummary",
    "ABTask",
    "ArmRun",
    "ArmSummary",
    "Comparison",
    "KNNBanks",
    "MAESpec",
    "Recipe",
    "arm_curriculum",
    "arm_indices",
    "batches",
    "build_mae",
    "build_optimizer",
    "check_arms",
    "check_artifact_matches",
    "check_seeds",
    "digits_task",
    "draw_banks",
    "encoder_features",
    "format_table",
    "image_task",
    "knn_accuracy",
    "linear_probe_accuracy",
    "mae_digits_task",
    "mae_image_task",
    "make_objective",
    "plot_curves",
    "probe_task",
    "random_masking",
    "raw_pixels",
    "run_ab",
    "split_rows",
    "summarize",
    "train_arm",
]
