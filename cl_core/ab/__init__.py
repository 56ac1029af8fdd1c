"""Does the curriculum help? The same model, initial weights, optimiser and step budget trained
under four samplers (arms ``easy``, ``uniform``, ``hard``, ``shuffled``: :mod:`~cl_core.ab.config`)
over seeds, for a supervised or an MAE objective (:mod:`~cl_core.ab.objectives`), and a verdict on
easy minus uniform against the seed-to-seed spread (:func:`summarize`). Importing the package
imports numpy only; it writes no files.
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
