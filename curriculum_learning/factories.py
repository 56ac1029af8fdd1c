"""One-call helpers of the reference API and the local-weights lookup of the DINO helper.

:func:`create_curriculum_learning` wraps a model in a :class:`PretrainedModelExtractor` and fits
a :class:`CurriculumLearning`; :func:`create_curriculum_learning_with_dino` does the same with a
DINO encoder named as the reference does (``dino_vits16``...), loading its weights from a local
file when one is found (:func:`find_local_weights`), else from the hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from curriculum_learning.estimator import CurriculumLearning
from curriculum_learning.extractors import PretrainedModelExtractor

__all__ = [
    "WEIGHTS_DIR_ENV",
    "create_curriculum_learning",
    "create_curriculum_learning_with_dino",
    "find_local_weights",
]

WEIGHTS_DIR_ENV = "CL_CURRICULUM_WEIGHTS_DIR"
"""Environment variable naming a directory of local encoder weights for
:func:`create_curriculum_learning_with_dino` (file names: see :func:`find_local_weights`)."""

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# File names of the original DINO / DINOv2 releases (what torch.hub caches), per reference alias.
_OFFICIAL_CHECKPOINTS = {
    "dino_vits16": "dino_deitsmall16_pretrain",
    "dino_vits8": "dino_deitsmall8_pretrain",
    "dino_vitb16": "dino_vitbase16_pretrain",
    "dino_vitb8": "dino_vitbase8_pretrain",
    "dinov2_vits14": "dinov2_vits14_pretrain",
    "dinov2_vitb14": "dinov2_vitb14_pretrain",
    "dinov2_vitl14": "dinov2_vitl14_pretrain",
    "dinov2_vitg14": "dinov2_vitg14_pretrain",
}


def find_local_weights(model: str, directories: list[Path] | None = None) -> Path | None:
    """Look for a local weights file of ``model`` (timm name or reference alias).

    Searched, in order: the directory in ``$CL_CURRICULUM_WEIGHTS_DIR``, then torch.hub's
    checkpoint cache (``torch.hub.get_dir()/checkpoints``, where the reference's hub downloads
    land). File names tried, each with ``.safetensors``, ``.pth``, ``.pt``, ``.bin``: the timm
    name with tag (``vit_small_patch16_224.dino``), the reference alias (``dino_vits16``) and the
    original release's name (``dino_deitsmall16_pretrain``).

    Returns
    -------
    Path or None
    """
    from cl_core.embed import MODEL_ALIASES, canonical_model_name  # imports torch

    canonical = canonical_model_name(model)
    aliases = [alias for alias, name in MODEL_ALIASES.items() if name == canonical]
    stems = [
        canonical,
        *aliases,
        *(_OFFICIAL_CHECKPOINTS[a] for a in aliases if a in _OFFICIAL_CHECKPOINTS),
    ]
    if directories is None:
        directories = weight_directories()
    for directory in directories:
        for stem in stems:
            for suffix in _WEIGHT_SUFFIXES:
                candidate = directory / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def weight_directories() -> list[Path]:
    """Where local weights are looked for: ``$CL_CURRICULUM_WEIGHTS_DIR``, then torch hub's
    ``checkpoints``."""
    directories = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        directories.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    import torch.hub

    directories.append(Path(torch.hub.get_dir()) / "checkpoints")
    return directories


def create_curriculum_learning(
    model: Any,
    dataset: Any,
    n_clusters: int | None = None,
    use_labels: bool = False,
    device: Any = "cpu",
    initial_effective_percentage: float = 0.3,
    warmup_iterations: int = 1000,
    **kwargs: Any,
) -> tuple[np.ndarray, CurriculumLearning]:
    """Fit a curriculum on ``model``'s features of ``dataset`` in one call.

    Parameters
    ----------
    model : nn.Module, str or callable
        Feature model (see :class:`PretrainedModelExtractor`).
    dataset : Dataset or non-shuffling DataLoader
    n_clusters, use_labels, initial_effective_percentage, warmup_iterations
        See :class:`CurriculumLearning`.
    device : str or torch.device
    **kwargs
        Further :class:`CurriculumLearning` parameters, plus ``feature_layer``,
        ``normalize_features`` and ``weights`` for the extractor.

    Returns
    -------
    difficulty_weights : ndarray of shape (N,), float32
    curriculum : CurriculumLearning
        Fitted.
    """
    extractor_options = {
        key: kwargs.pop(key)
        for key in ("feature_layer", "normalize_features", "weights", "pooling")
        if key in kwargs
    }
    extractor = PretrainedModelExtractor(model, **extractor_options)
    curriculum = CurriculumLearning(
        feature_extractor=extractor,
        n_clusters=n_clusters,
        use_labels=use_labels,
        initial_effective_percentage=initial_effective_percentage,
        warmup_iterations=warmup_iterations,
        **kwargs,
    )
    curriculum.fit(dataset, device=device)
    return curriculum.get_difficulty_weights(), curriculum


def create_curriculum_learning_with_dino(
    dataset: Any,
    device: Any = "cpu",
    dino_model: str = "dino_vits16",
    initial_effective_percentage: float = 0.3,
    warmup_iterations: int = 1000,
    *,
    n_clusters: int | None = None,
    use_labels: bool = False,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, CurriculumLearning]:
    """:func:`create_curriculum_learning` with a DINO encoder (the paper's features).

    The signature is the reference README's, ``(dataset, device, dino_model, ...)``;
    ``n_clusters`` and ``use_labels`` are keywords.

    Parameters
    ----------
    dataset : Dataset or non-shuffling DataLoader
    device : str or torch.device
    dino_model : str
        A reference name (``dino_vits16``, ``dino_vits8``, ``dino_vitb16``, ``dino_vitb8``,
        ``dinov2_vits14``, ...) or a timm name (``vit_small_patch16_224.dino``).
    initial_effective_percentage, warmup_iterations, n_clusters, use_labels
        See :class:`CurriculumLearning`.
    weights : path, optional
        Local weights file. Default: a file found by :func:`find_local_weights`
        (``$CL_CURRICULUM_WEIGHTS_DIR`` or torch.hub's cache), else the hub download; offline
        without a file the error says how to provide one.
    **kwargs
        As :func:`create_curriculum_learning`.

    Returns
    -------
    difficulty_weights : ndarray of shape (N,), float32
    curriculum : CurriculumLearning
    """
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        raise TypeError(
            f"device={device!r}: the second positional argument is the device, as in the "
            f"README signature create_curriculum_learning_with_dino(dataset, device, ...); "
            f"pass n_clusters={device!r} by keyword"
        )
    from cl_core.embed import canonical_model_name  # imports torch

    if not isinstance(dino_model, str):
        raise TypeError(
            f"dino_model must be a model name such as 'dino_vits16', got {dino_model!r}"
        )
    local = weights if weights is not None else find_local_weights(dino_model)
    try:
        return create_curriculum_learning(
            canonical_model_name(dino_model),
            dataset,
            n_clusters=n_clusters,
            use_labels=use_labels,
            device=device,
            initial_effective_percentage=initial_effective_percentage,
            warmup_iterations=warmup_iterations,
            weights=local,
            **kwargs,
        )
    except RuntimeError as error:
        if local is not None or "could not download" not in str(error):
            raise
        raise RuntimeError(
            f"{error}\nWith curriculum_learning you can also pass weights=PATH to "
            f"create_curriculum_learning_with_dino, or put the file in the directory named by "
            f"${WEIGHTS_DIR_ENV} as {canonical_model_name(dino_model)}.safetensors (or "
            f"{dino_model}.pth)."
        ) from error
