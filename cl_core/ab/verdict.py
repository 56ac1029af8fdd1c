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

Each arm runs once per seed; held-out accuracy is logged at fixed steps. :func:`summarize` turns
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
permutation from ``seed``. This module writes no files: :func:`plot_curves` returns a figure and
the caller saves it. torch, matplotlib and scipy are imported where they are used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cl_core.validation import check_choice

__all__ = [
    "ARMS",
    "ABConfig",
    "ABSummary",
    "ABTask",
    "ArmRun",
    "ArmSummary",
    "Comparison",
    "arm_curriculum",
    "arm_indices",
    "check_artifact_matches",
    "digits_task",
    "format_table",
    "image_task",
    "plot_curves",
    "probe_task",
    "run_ab",
    "split_rows",
    "summarize",
    "train_arm",
]

ARMS = ("easy", "uniform", "hard", "shuffled")
OPTIMIZERS = ("adam", "sgd")
_UNIFORM_STREAM = 0x756E6966  # SeedSequence spawn keys: the uniform arm's draws ...
_SHUFFLE_STREAM = 0x73687566  # ... and the shuffled arm's permutation, independent of the seed's
_SPLIT_STREAM = 0x73706C74  # ... and the held-out split
ARM_COLOURS = {
    "easy": "tab:green",
    "uniform": "tab:blue",
    "hard": "tab:red",
    "shuffled": "tab:gray",
}


def _check_int(name: str, value: object, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}; {fix}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}; {fix}")
    return int(value)


def check_arms(arms: object) -> tuple[str, ...]:
    """The arms as a tuple of known, distinct names (in the order given)."""
    if isinstance(arms, str):
        arms = tuple(part.strip() for part in arms.split(",") if part.strip())
    if not isinstance(arms, (tuple, list)) or not arms:
        raise ValueError(f"arms must be a non-empty list of {', '.join(ARMS)}; got {arms!r}")
    for arm in arms:
        check_choice("arm", arm, ARMS)
    if len(set(arms)) != len(arms):
        raise ValueError(f"arms must be distinct, got {list(arms)}; e.g. {','.join(ARMS)}")
    return tuple(str(arm) for arm in arms)


def check_seeds(seeds: object) -> tuple[int, ...]:
    """``seeds`` as distinct non-negative ints; an int ``n`` means ``0 .. n-1``."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        count = _check_int("seeds", seeds, 1, "run at least 1 seed (3 or more for a verdict)")
        return tuple(range(count))
    if not isinstance(seeds, (tuple, list)) or not seeds:
        raise ValueError(f"seeds must be a count >= 1 or a non-empty list of seeds, got {seeds!r}")
    values = tuple(_check_int("seed", seed, 0, "seeds are non-negative integers") for seed in seeds)
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must be distinct, got {list(values)}")
    return values


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ABConfig:
    """Everything that determines one arm's curve for a given seed (seeds are not part of it).

    Parameters
    ----------
    arms : tuple of str
        Subset of :data:`ARMS`; the verdict needs ``easy`` and ``uniform``.
    steps : int >= 1
        Optimiser steps per run (the same for every arm).
    batch_size : int >= 1
        Samples per step; every arm draws ``steps * batch_size`` indices.
    eval_every : int >= 1
        Held-out accuracy is measured at steps 0, eval_every, 2 eval_every, ... and at ``steps``.
    lr : float > 0
        Learning rate.
    optimizer : {"adam", "sgd"}
        ``sgd`` uses momentum 0.9.
    weight_decay : float >= 0
    warmup_fraction : float in (0, 1] or None
        The curricula's warmup as a fraction of ``steps`` (uniform afterwards); None keeps the
        artifact's ``warmup_iterations``.
    holdout_fraction : float in (0, 0.9]
        Share of the (unmasked) rows held out for evaluation, stratified by class.
    split_seed : int >= 0
        Seed of the held-out split (fixed across arms and seeds).
    refresh_every : int >= 1
        The curriculum samplers' probability refresh interval, in steps.
    """

    arms: tuple[str, ...] = ARMS
    steps: int = 600
    batch_size: int = 32
    eval_every: int = 30
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    warmup_fraction: float | None = 0.5
    holdout_fraction: float = 0.2
    split_seed: int = 0
    refresh_every: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", check_arms(self.arms))
        object.__setattr__(self, "steps", _check_int("steps", self.steps, 1, "e.g. 600"))
        object.__setattr__(
            self, "batch_size", _check_int("batch_size", self.batch_size, 1, "e.g. 32")
        )
        every = _check_int("eval_every", self.eval_every, 1, "e.g. steps // 20")
        if every > self.steps:
            raise ValueError(
                f"eval_every must be <= steps ({self.steps}), got {every}; e.g. {max(1, self.steps // 20)}"
            )
        object.__setattr__(self, "eval_every", every)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name, low in (("lr", 0.0), ("weight_decay", -1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= low or (name == "weight_decay" and value < 0):
                raise ValueError(f"{name} must be {'> 0' if name == 'lr' else '>= 0'}, got {value}")
            object.__setattr__(self, name, float(value))
        if self.warmup_fraction is not None:
            fraction = float(self.warmup_fraction)
            if not 0.0 < fraction <= 1.0:
                raise ValueError(
                    f"warmup_fraction must lie in (0, 1] or be None (the artifact's warmup), got "
                    f"{self.warmup_fraction}; e.g. 0.5"
                )
            object.__setattr__(self, "warmup_fraction", fraction)
        holdout = float(self.holdout_fraction)
        if not 0.0 < holdout <= 0.9:
            raise ValueError(f"holdout_fraction must lie in (0, 0.9], got {self.holdout_fraction}")
        object.__setattr__(self, "holdout_fraction", holdout)
        object.__setattr__(
            self, "split_seed", _check_int("split_seed", self.split_seed, 0, "e.g. 0")
        )
        object.__setattr__(
            self, "refresh_every", _check_int("refresh_every", self.refresh_every, 1, "e.g. 5")
        )

    @property
    def eval_steps(self) -> tuple[int, ...]:
        """The steps at which held-out accuracy is measured (0 and ``steps`` included)."""
        return tuple(sorted({*range(0, self.steps, self.eval_every), self.steps}))

    def warmup_iterations(self, artifact_warmup: int) -> int:
        """The curricula's warmup for this run."""
        if self.warmup_fraction is None:
            return int(artifact_warmup)
        return max(1, round(self.warmup_fraction * self.steps))

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {
            "arms": list(self.arms)
        }


# --------------------------------------------------------------------------------------------
# Tasks: data + model
# --------------------------------------------------------------------------------------------


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
    """

    name: str
    inputs: Any
    labels: np.ndarray
    build_model: Callable[[], Any]
    identity: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    num_workers: int = 0
    description: str = ""

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

    from cl_core.datasets import resolve_dataset
    from cl_core.models import load_model

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


# --------------------------------------------------------------------------------------------
# Split, arms, index streams
# --------------------------------------------------------------------------------------------


def check_artifact_matches(curriculum: Any, task: ABTask) -> None:
    """Raise if the artifact does not score exactly the task's rows."""
    if curriculum.n_samples != task.n_samples:
        where = getattr(curriculum, "path", None) or "the curriculum"
        raise ValueError(
            f"artifact {where} scores {curriculum.n_samples} samples but the dataset "
            f"({task.description or task.name}) has {task.n_samples}; pass the dataset the "
            f"artifact was published for (same rows, same order)"
        )


def split_rows(
    labels: np.ndarray, holdout_fraction: float, seed: int, usable: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic class-stratified split of the usable rows into (train, held-out), sorted.

    Each class keeps ``round(holdout_fraction * count)`` rows for evaluation (at least one when
    it has two or more rows).
    """
    labels = np.asarray(labels)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _SPLIT_STREAM])))
    rows = np.arange(labels.shape[0]) if usable is None else np.flatnonzero(usable)
    held: list[np.ndarray] = []
    for label in np.unique(labels[rows]):
        members = rows[labels[rows] == label]
        count = round(holdout_fraction * members.size)
        count = min(max(count, 1), members.size - 1) if members.size >= 2 else 0
        held.append(rng.permutation(members)[:count])
    held_rows = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    train_rows = np.setdiff1d(rows, held_rows)
    if train_rows.size == 0 or held_rows.size == 0:
        raise ValueError(
            f"cannot split {rows.size} usable rows into train and held-out with "
            f"holdout_fraction={holdout_fraction}; the dataset is too small"
        )
    return train_rows.astype(np.int64), held_rows.astype(np.int64)


def arm_curriculum(
    arm: str, curriculum: Any, train_rows: np.ndarray, config: ABConfig, seed: int
) -> Any:
    """The curriculum one arm samples the training rows from (None for ``uniform``).

    Parameters
    ----------
    arm : str
        One of :data:`ARMS`.
    curriculum : cl_core.sampler.Curriculum
        The published artifact (difficulty over all N rows and its schedule).
    train_rows : ndarray of int
        Artifact rows trained on; the result's sample ``j`` is row ``train_rows[j]``.
    config : ABConfig
    seed : int
        Seeds the ``shuffled`` arm's permutation.
    """
    from cl_core.sampler import Curriculum

    check_choice("arm", arm, ARMS)
    if arm == "uniform":
        return None
    base = curriculum.schedule.config
    schedule = dataclasses.replace(
        base,
        strategy="hard" if arm == "hard" else "easy",
        warmup_iterations=config.warmup_iterations(base.warmup_iterations),
    )
    difficulty = np.asarray(curriculum.difficulty, dtype=np.float32)[train_rows]
    if arm == "shuffled":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _SHUFFLE_STREAM])))
        difficulty = difficulty[rng.permutation(difficulty.shape[0])]
    try:
        return Curriculum.from_arrays(difficulty, schedule)
    except ValueError as error:
        raise ValueError(f"cannot build the {arm!r} arm's schedule: {error}") from error


def arm_indices(arm: str, arm_curr: Any, n_train: int, config: ABConfig, seed: int) -> np.ndarray:
    """The arm's whole index stream, shape ``(steps, batch_size)``, positions in ``[0, n_train)``.

    Curriculum arms draw through :class:`~cl_core.sampler.CurriculumSampler` (with replacement,
    seed ``seed``); the uniform arm draws the same number of indices uniformly with replacement
    from a generator seeded by ``seed``.
    """
    from cl_core.sampler import CurriculumSampler

    size = config.steps * config.batch_size
    if arm == "uniform":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _UNIFORM_STREAM])))
        flat = rng.integers(0, n_train, size=size, dtype=np.int64)
    else:
        sampler = CurriculumSampler(
            arm_curr,
            batch_size=config.batch_size,
            num_samples=size,
            seed=seed,
            refresh_every=config.refresh_every,
        )
        flat = sampler.indices(0)[:size]
    return flat.reshape(config.steps, config.batch_size)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmRun:
    """One arm trained with one seed: the logged curve plus what the tests and audits check.

    Attributes
    ----------
    arm : str
    seed : int
    eval_steps : tuple of int
    accuracy : tuple of float
        Held-out accuracy at each evaluation step.
    loss : tuple of float
        Mean training loss over the steps before each evaluation (NaN at step 0).
    init_digest : str
        sha256 of the initial weights (equal across arms for one seed).
    order_digest : str
        sha256 of the index stream.
    n_draws : int
        Indices drawn (``steps * batch_size``).
    distinct_fraction : float
        Share of the training rows drawn at least once.
    seconds : float
    """

    arm: str
    seed: int
    eval_steps: tuple[int, ...]
    accuracy: tuple[float, ...]
    loss: tuple[float, ...]
    init_digest: str
    order_digest: str
    n_draws: int
    distinct_fraction: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["loss"] = [None if math.isnan(x) else x for x in self.loss]
        document["eval_steps"], document["accuracy"] = list(self.eval_steps), list(self.accuracy)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ArmRun:
        """The run from :meth:`to_json`'s document (other keys, e.g. a content id, ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in document.items() if key in names}
        values["eval_steps"] = tuple(int(x) for x in values["eval_steps"])
        values["accuracy"] = tuple(float(x) for x in values["accuracy"])
        values["loss"] = tuple(math.nan if x is None else float(x) for x in values["loss"])
        return cls(**values)


def _state_digest(model: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batches(task: ABTask, rows: np.ndarray, batch_size: int) -> Iterator[tuple[Any, Any]]:
    """(inputs, labels) tensors on the task's device for ``rows`` in order, in batches."""
    import torch

    labels = torch.from_numpy(task.labels)
    if task.in_memory:
        for start in range(0, rows.shape[0], batch_size):
            chunk = torch.from_numpy(rows[start : start + batch_size])
            yield (
                task.inputs.index_select(0, chunk).to(task.device),
                labels.index_select(0, chunk).to(task.device),
            )
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        task.inputs,
        batch_sampler=[rows[i : i + batch_size].tolist() for i in range(0, len(rows), batch_size)],
        num_workers=task.num_workers,
        persistent_workers=False,
    )
    for inputs, targets in loader:
        yield inputs.to(task.device), targets.to(task.device)


def _accuracy(model: Any, task: ABTask, rows: np.ndarray) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for inputs, targets in _batches(task, rows, 512):
            correct += int((model(inputs).argmax(dim=1) == targets).sum())
    model.train()
    return correct / rows.shape[0]


def train_arm(
    task: ABTask,
    curriculum: Any,
    arm: str,
    seed: int,
    config: ABConfig,
    *,
    threads: int | None = 1,
) -> ArmRun:
    """Train ``task``'s model under one arm with one seed; log held-out accuracy.

    Parameters
    ----------
    task : ABTask
    curriculum : cl_core.sampler.Curriculum
        The artifact's curriculum over all of the task's rows.
    arm : str
        One of :data:`ARMS`.
    seed : int >= 0
        Model initialisation and data-order seed (shared by all arms).
    config : ABConfig
    threads : int or None
        torch CPU threads while training (restored afterwards); None leaves torch's setting.

    Returns
    -------
    ArmRun
    """
    import torch

    check_choice("arm", arm, ARMS)
    seed = _check_int("seed", seed, 0, "seeds are non-negative integers")
    check_artifact_matches(curriculum, task)
    train_rows, held_rows = _split_for(task, curriculum, config)
    arm_curr = arm_curriculum(arm, curriculum, train_rows, config, seed)
    positions = arm_indices(arm, arm_curr, train_rows.shape[0], config, seed)
    rows = train_rows[positions]
    eval_at = set(config.eval_steps)
    started = time.perf_counter()
    with _torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = task.build_model()
        init_digest = _state_digest(model)
        model = model.to(task.device).train()
        parameters = model.parameters()
        if config.optimizer == "adam":
            optimizer: Any = torch.optim.Adam(
                parameters, lr=config.lr, weight_decay=config.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
            )
        accuracy, losses, running = [_accuracy(model, task, held_rows)], [math.nan], []
        batches = _batches(task, rows.reshape(-1), config.batch_size)
        for step, (inputs, targets) in enumerate(batches, start=1):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running.append(float(loss.detach()))
            if step in eval_at:
                accuracy.append(_accuracy(model, task, held_rows))
                losses.append(float(np.mean(running)))
                running = []
    return ArmRun(
        arm=arm,
        seed=seed,
        eval_steps=config.eval_steps,
        accuracy=tuple(accuracy),
        loss=tuple(losses),
        init_digest=init_digest,
        order_digest=hashlib.sha256(positions.tobytes()).hexdigest(),
        n_draws=int(positions.size),
        distinct_fraction=float(np.unique(positions).size / train_rows.shape[0]),
        seconds=round(time.perf_counter() - started, 3),
    )


def _split_for(task: ABTask, curriculum: Any, config: ABConfig) -> tuple[np.ndarray, np.ndarray]:
    mask = getattr(curriculum, "sample_mask", None)  # rows the artifact excludes
    return split_rows(task.labels, config.holdout_fraction, config.split_seed, mask)


# --------------------------------------------------------------------------------------------
# Summary and verdict
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmSummary:
    """Per-arm statistics over seeds, all computed from the logged curves.

    ``auc`` is the area under the accuracy-vs-steps curve (trapezoid over the evaluation steps)
    divided by the step budget: the mean held-out accuracy over the run. ``steps_to_target`` is
    the first evaluation step at which the arm's mean curve reaches ``target`` (uniform's mean
    final accuracy), None when it never does.
    """

    arm: str
    seeds: tuple[int, ...]
    eval_steps: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    final_mean: float
    final_std: float
    auc_mean: float
    auc_std: float
    steps_to_target: int | None
    target: float | None


@dataclass(frozen=True)
class Comparison:
    """Paired (same seed) difference of one metric between two arms."""

    metric: str
    arm: str
    baseline: str
    arm_mean: float
    baseline_mean: float
    difference: float
    half_width: float | None  # 95% t interval of the mean paired difference; None for 1 seed
    n_seeds: int

    @property
    def exceeds_spread(self) -> bool:
        """The difference is larger than the seed-to-seed spread (its 95% interval excludes 0)."""
        return self.half_width is not None and abs(self.difference) > self.half_width


@dataclass(frozen=True)
class ABSummary:
    """The A/B result: per-arm statistics, comparisons and the verdict."""

    arms: dict[str, ArmSummary]
    eval_steps: tuple[int, ...]
    comparisons: tuple[Comparison, ...]
    verdict: str
    outcome: str  # helps | hurts | mixed | no clear difference | undetermined
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "arms": {name: dataclasses.asdict(s) for name, s in self.arms.items()},
            "eval_steps": list(self.eval_steps),
            "comparisons": [
                dataclasses.asdict(c) | {"exceeds_spread": c.exceeds_spread}
                for c in self.comparisons
            ],
            "verdict": self.verdict,
            "outcome": self.outcome,
            "notes": list(self.notes),
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per arm (for a Prefect table artifact)."""
        rows = []
        for name, arm in self.arms.items():
            rows.append(
                {
                    "arm": name,
                    "seeds": len(arm.seeds),
                    "final accuracy": f"{arm.final_mean:.4f} ± {arm.final_std:.4f}",
                    "AUC (mean accuracy)": f"{arm.auc_mean:.4f} ± {arm.auc_std:.4f}",
                    "steps to uniform's final": _steps_text(arm),
                }
            )
        return rows

    def curve_rows(self) -> list[dict[str, Any]]:
        """One row per evaluation step: mean ± std of each arm."""
        rows = []
        for position, step in enumerate(self.eval_steps):
            row: dict[str, Any] = {"step": step}
            for name, arm in self.arms.items():
                row[name] = f"{arm.mean[position]:.4f} ± {arm.std[position]:.4f}"
            rows.append(row)
        return rows


def _steps_text(arm: ArmSummary) -> str:
    if arm.target is None:
        return "n/a"
    return "not reached" if arm.steps_to_target is None else str(arm.steps_to_target)


def _t_critical(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def _curves(runs: Sequence[ArmRun], arm: str) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    chosen = sorted((r for r in runs if r.arm == arm), key=lambda r: r.seed)
    steps = {r.eval_steps for r in chosen}
    if len(steps) != 1:
        raise ValueError(f"the {arm!r} runs were evaluated at different steps; rerun them alike")
    return (
        tuple(r.seed for r in chosen),
        np.array([r.accuracy for r in chosen], dtype=np.float64),
        np.array(next(iter(steps)), dtype=np.float64),
    )


def _auc(accuracy: np.ndarray, steps: np.ndarray) -> np.ndarray:
    span = steps[-1] - steps[0]
    if span <= 0:
        return accuracy[..., -1]
    widths = np.diff(steps)
    return ((accuracy[..., 1:] + accuracy[..., :-1]) / 2 * widths).sum(axis=-1) / span


def _std(values: np.ndarray, axis: int = 0) -> np.ndarray:
    return (
        values.std(axis=axis, ddof=1)
        if values.shape[axis] > 1
        else np.zeros_like(values.mean(axis))
    )


def _compare(
    metric: str, arm: str, baseline: str, per_seed: Mapping[str, dict[int, float]]
) -> Comparison | None:
    common = sorted(set(per_seed[arm]) & set(per_seed[baseline]))
    if not common:
        return None
    a = np.array([per_seed[arm][s] for s in common])
    b = np.array([per_seed[baseline][s] for s in common])
    diff = a - b
    n = len(common)
    half = None if n < 2 else _t_critical(n) * float(diff.std(ddof=1)) / math.sqrt(n)
    return Comparison(
        metric, arm, baseline, float(a.mean()), float(b.mean()), float(diff.mean()), half, n
    )


def _pp(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def _clause(c: Comparison) -> str:
    label = {"final": "final accuracy", "auc": "mean accuracy over the run (AUC)"}[c.metric]
    if c.half_width is None:
        spread = "one seed: no spread to compare with"
    else:
        verdict = "exceeds" if c.exceeds_spread else "within"
        spread = f"±{100 * c.half_width:.1f} pp over {c.n_seeds} seeds: {verdict} the seed-to-seed spread"
    return f"{label} {c.arm_mean:.3f} vs {c.baseline_mean:.3f} ({_pp(c.difference)}, {spread})"


def summarize(runs: Sequence[ArmRun | Mapping[str, Any]]) -> ABSummary:
    """Statistics, comparisons and the verdict, computed from the logged curves only.

    Parameters
    ----------
    runs : sequence of ArmRun (or their JSON documents)
        At least one run; every arm evaluated at the same steps.

    Returns
    -------
    ABSummary
        The verdict compares ``easy`` with ``uniform`` on final accuracy and AUC, pairing runs by
        seed: a difference *exceeds the seed-to-seed spread* when its 95% t interval over the
        paired seeds excludes zero. ``outcome`` is ``helps`` / ``hurts`` when at least one metric
        differs beyond the spread in that direction and none in the other, ``mixed`` when they
        disagree, ``no clear difference`` otherwise, ``undetermined`` with fewer than 2 paired
        seeds or without both arms.
    """
    parsed = [r if isinstance(r, ArmRun) else ArmRun.from_json(r) for r in runs]
    if not parsed:
        raise ValueError("runs is empty; train at least one arm with one seed")
    arms = [a for a in ARMS if any(r.arm == a for r in parsed)]
    curves = {arm: _curves(parsed, arm) for arm in arms}
    all_steps = {tuple(int(x) for x in c[2]) for c in curves.values()}
    if len(all_steps) != 1:
        raise ValueError("the arms were evaluated at different steps; run them with one config")
    eval_steps = next(iter(all_steps))
    target = float(curves["uniform"][1][:, -1].mean()) if "uniform" in curves else None
    summaries: dict[str, ArmSummary] = {}
    per_seed: dict[str, dict[str, dict[int, float]]] = {"final": {}, "auc": {}}
    for arm in arms:
        seeds, accuracy, steps = curves[arm]
        mean = accuracy.mean(axis=0)
        auc = _auc(accuracy, steps)
        reached = None
        if target is not None:
            hits = np.flatnonzero(mean >= target - 1e-12)
            reached = int(steps[hits[0]]) if hits.size else None
        summaries[arm] = ArmSummary(
            arm=arm,
            seeds=seeds,
            eval_steps=eval_steps,
            mean=tuple(float(x) for x in mean),
            std=tuple(float(x) for x in _std(accuracy)),
            final_mean=float(mean[-1]),
            final_std=float(_std(accuracy[:, -1])),
            auc_mean=float(auc.mean()),
            auc_std=float(_std(auc)),
            steps_to_target=reached,
            target=target,
        )
        per_seed["final"][arm] = dict(zip(seeds, accuracy[:, -1].tolist(), strict=True))
        per_seed["auc"][arm] = dict(zip(seeds, auc.tolist(), strict=True))
    comparisons = []
    for arm, baseline in (("easy", "uniform"), ("easy", "shuffled"), ("hard", "uniform")):
        if arm in summaries and baseline in summaries:
            for metric in ("final", "auc"):
                found = _compare(metric, arm, baseline, per_seed[metric])
                if found is not None:
                    comparisons.append(found)
    verdict, outcome = _verdict(comparisons)
    notes = tuple(_notes(comparisons))
    return ABSummary(summaries, eval_steps, tuple(comparisons), verdict, outcome, notes)


def _verdict(comparisons: Sequence[Comparison]) -> tuple[str, str]:
    main = [c for c in comparisons if c.arm == "easy" and c.baseline == "uniform"]
    if not main:
        return "no verdict: needs both the easy and the uniform arm", "undetermined"
    n = main[0].n_seeds
    clauses = "; ".join(_clause(c) for c in main)
    if n < 2:
        return (
            f"easy vs uniform (1 seed): {clauses} -> undetermined (run >= 3 seeds)",
            "undetermined",
        )
    up = [c for c in main if c.exceeds_spread and c.difference > 0]
    down = [c for c in main if c.exceeds_spread and c.difference < 0]
    if up and not down:
        outcome = "helps"
        tail = f"the curriculum helps ({_how(up, 'learns faster', 'ends higher')})"
    elif down and not up:
        outcome = "hurts"
        tail = f"the curriculum hurts ({_how(down, 'learns slower', 'ends lower')})"
    elif up and down:
        outcome = "mixed"
        tail = "mixed: faster early but lower at the end" if up[0].metric == "auc" else "mixed"
    else:
        outcome = "no clear difference"
        tail = "no difference beyond the seed-to-seed spread"
    return f"easy vs uniform ({n} seeds): {clauses} -> {tail}", outcome


def _how(significant: Sequence[Comparison], speed: str, level: str) -> str:
    metrics = {c.metric for c in significant}
    return " and ".join(
        text for metric, text in (("auc", speed), ("final", level)) if metric in metrics
    )


def _notes(comparisons: Sequence[Comparison]) -> Iterator[str]:
    for arm, baseline, meaning in (
        ("easy", "shuffled", "ordering information (easy vs shuffled)"),
        ("hard", "uniform", "hard-first vs uniform"),
    ):
        found = [c for c in comparisons if c.arm == arm and c.baseline == baseline]
        if found:
            yield f"{meaning}: " + "; ".join(_clause(c) for c in found)


def format_table(summary: ABSummary, *, curve: bool = True) -> str:
    """Markdown tables: per arm (final, AUC, steps to uniform's final), then accuracy per step."""
    from cl_core.report import markdown_table

    parts = [markdown_table(summary.table_rows())]
    if curve:
        parts.append(markdown_table(summary.curve_rows()))
    return "\n\n".join(parts)


def plot_curves(summary: ABSummary, title: str = "", warmup: int | None = None) -> Any:
    """Held-out accuracy vs steps per arm: mean line, ± 1 std band (matplotlib ``Figure``).

    A dotted horizontal line marks uniform's final accuracy; ``warmup`` (the curricula's last
    non-uniform step) a dashed vertical one.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for name, arm in summary.arms.items():
        steps = np.asarray(arm.eval_steps)
        mean, std = np.asarray(arm.mean), np.asarray(arm.std)
        colour = ARM_COLOURS.get(name)
        axes.plot(steps, mean, label=f"{name} (n={len(arm.seeds)})", color=colour, linewidth=1.8)
        axes.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.18, linewidth=0)
    uniform = summary.arms.get("uniform")
    if uniform is not None:
        axes.axhline(uniform.final_mean, color="tab:blue", linestyle=":", linewidth=1)
    if warmup is not None and 0 < warmup < max(summary.eval_steps):
        axes.axvline(warmup, color="black", linestyle="--", linewidth=0.8, alpha=0.6)
        axes.annotate(
            " uniform from here", (warmup, 0.02), xycoords=("data", "axes fraction"), fontsize=8
        )
    axes.set_xlabel("training step")
    axes.set_ylabel("held-out accuracy")
    low = min(min(np.asarray(a.mean) - np.asarray(a.std)) for a in summary.arms.values())
    axes.set_ylim(max(0.0, low - 0.02), 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(title or f"A/B: {summary.outcome}", fontsize=10)
    return figure


# --------------------------------------------------------------------------------------------
# Everything in one call (no Prefect, no files)
# --------------------------------------------------------------------------------------------


def run_ab(
    curriculum: Any,
    task: ABTask,
    config: ABConfig | None = None,
    seeds: int | Sequence[int] = 3,
    *,
    threads: int | None = 1,
    on_run: Callable[[ArmRun], None] | None = None,
) -> tuple[ABSummary, list[ArmRun]]:
    """Train every arm with every seed and summarise (the Prefect flow ``curriculum-ab`` does the
    same with a cache per arm and seed, and writes the results).

    Parameters
    ----------
    curriculum : cl_core.sampler.Curriculum
        ``load_curriculum(path)`` of the artifact under test.
    task : ABTask
        :func:`digits_task`, :func:`probe_task`, :func:`image_task` or your own.
    config : ABConfig, optional
    seeds : int or sequence of int
        A count ``n`` (seeds ``0 .. n-1``) or explicit seeds.
    on_run : callable, optional
        Called with each finished :class:`ArmRun`.

    Returns
    -------
    (ABSummary, list of ArmRun)
    """
    config = config or ABConfig()
    seed_values = check_seeds(seeds)
    check_artifact_matches(curriculum, task)
    runs = []
    for seed in seed_values:
        for arm in config.arms:
            run = train_arm(task, curriculum, arm, seed, config, threads=threads)
            runs.append(run)
            if on_run is not None:
                on_run(run)
    return summarize(runs), runs
