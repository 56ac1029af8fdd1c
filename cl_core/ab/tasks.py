"""A/B tasks: a dataset in the artifact's row order plus the model trained on it.

:func:`digits_task` (sklearn digits, small CNN), :func:`probe_task` (linear probe on a store's
frozen embeddings), :func:`image_task` (timm encoder + linear head on an image folder), or any
:class:`ABTask` of your own. torch, scikit-learn and timm are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class ABTask:
    """A dataset in the artifact's index order plus the model trained on it.

    Attributes
    ----------
    name : str
        e.g. ``digits-cnn``, ``probe``, ``timm:resnet18``.
    inputs : torch.Tensor or map-style Dataset
        A tensor ``(N, ...)`` held in memory (indexed directly), or a Dataset whose item ``i`` is
        ``(input, label)`` for row ``i`` (read through a DataLoader).
    labels : ndarray of shape (N,), int64
        Class per row, ``0 .. n_classes-1``.
    build_model : callable
        ``build_model() -> torch.nn.Module`` mapping a batch of inputs to class logits; called
        under ``torch.manual_seed(seed)``, so its random initialisation is the seed's.
    identity : dict
        Plain values that determine the results (content ids are computed from it).
    device : str
        ``cpu`` or ``cuda[:i]``.
    num_workers : int
        DataLoader workers for Dataset inputs.
    description : str
    objective : str
        What ``build_model``'s module is trained for: ``supervised`` (it maps inputs to class
        logits) or ``mae`` (a masked autoencoder, :mod:`cl_core.ab.mae`).
    """

    name: str
    inputs: Any
    labels: np.ndarray
    build_model: Callable[[], Any]
    identity: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    num_workers: int = 0
    description: str = ""
    objective: str = "supervised"

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"labels must be a non-empty 1-D integer array, got shape {labels.shape} dtype "
                f"{labels.dtype}; pass one class id per sample"
            )
        if len(self.inputs) != labels.shape[0]:
            raise ValueError(
                f"inputs hold {len(self.inputs)} samples but labels {labels.shape[0]}; pass one "
                f"label per sample"
            )
        if labels.min() < 0:
            raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
        object.__setattr__(self, "labels", labels.astype(np.int64))

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.labels.max()) + 1

    @property
    def in_memory(self) -> bool:
        return hasattr(self.inputs, "index_select")


def _small_cnn(n_classes: int) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, n_classes),
    )


def digits_task(device: str = "cpu") -> ABTask:
    """scikit-learn's 1,797 digits (8x8, scaled to [0, 1]) and a small CNN (~10k parameters).

    Row ``i`` is ``load_digits()`` row ``i``: the order the pipeline's ``digits`` artifact has.
    """
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    n_classes = int(digits.target.max()) + 1
    return ABTask(
        name="digits-cnn",
        inputs=images,
        labels=digits.target.astype(np.int64),
        build_model=lambda: _small_cnn(n_classes),
        identity={"task": "digits-cnn", "n": len(images), "model": "cnn-16-32"},
        device=device,
        description="sklearn digits (1,797 8x8 images), small CNN",
    )


def probe_task(store: Any, device: str = "cpu") -> ABTask:
    """A linear probe (one ``nn.Linear``) on the frozen, standardised embeddings of a store.

    Parameters
    ----------
    store : EmbeddingStore or path
        A finished embedding store with labels (``cl_core.store.open_store``).
    """
    import torch
    from torch import nn

    from cl_core.store import open_store

    opened = open_store(store) if not hasattr(store, "read_rows") else store
    labels = opened.labels()
    if labels is None:
        raise ValueError(
            f"the embedding store {getattr(opened, 'path', store)!s} has no labels; a linear probe "
            "needs one class label per row (embed a labelled dataset, e.g. digits or an image folder)"
        )
    features = opened.read_rows(np.arange(opened.n_rows), normalize="standard")
    dim, n_classes = int(features.shape[1]), int(labels.max()) + 1
    return ABTask(
        name="probe",
        inputs=torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
        labels=labels,
        build_model=lambda: nn.Linear(dim, n_classes),
        identity={"task": "probe", "store": opened.fingerprint, "n": opened.n_rows, "dim": dim},
        device=device,
        description=f"linear probe on {opened.n_rows} x {dim} frozen embeddings",
    )


def image_task(
    folder: str,
    model: str,
    *,
    weights: str | None = None,
    pretrained: bool = True,
    image_size: int | None = None,
    device: str | None = None,
    num_workers: int = 2,
) -> ABTask:
    """A timm model (encoder + new linear head) fine-tuned on an image folder.

    The dataset is the pipeline's ``imagefolder:PATH`` (same row order, the model's eval
    preprocessing). Every arm starts from the same encoder weights (``weights`` file, hub
    weights, or one random initialisation) and a head initialised from the seed. GPU when present.
    """
    import copy

    import torch
    from torch import nn

    from cl_core.embed import load_model, resolve_dataset

    loaded = load_model(model, weights, pretrained=pretrained)
    spec = resolve_dataset(
        f"imagefolder:{folder}", image_size=image_size, data_config=loaded.data_config
    )
    dataset = spec.dataset
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise ValueError(f"dataset imagefolder:{folder} exposes no class targets")
    labels = np.asarray(targets, dtype=np.int64)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = loaded.module
    with torch.no_grad():
        sample = dataset[0][0].unsqueeze(0)
        dim = int(encoder(sample).reshape(1, -1).shape[1])
    n_classes = int(labels.max()) + 1

    def build() -> Any:
        return nn.Sequential(
            copy.deepcopy(encoder).train(), nn.Flatten(), nn.Linear(dim, n_classes)
        )

    return ABTask(
        name=f"timm:{loaded.model_id}",
        inputs=dataset,
        labels=labels,
        build_model=build,
        identity={
            "task": "image",
            "model": loaded.model_id,
            "weights": loaded.weights_sha256,
            "folder": spec.description,
            "n": len(labels),
            "image_size": image_size,
        },
        device=device,
        num_workers=num_workers,
        description=f"{loaded.model_id} + linear head on {spec.description}",
    )
