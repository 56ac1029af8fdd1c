"""Training one arm with one seed: the loop, held-out accuracy, and the logged :class:`ArmRun`."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.ab.arms import arm_curriculum, arm_indices, check_artifact_matches, split_rows
from cl_core.ab.config import ARMS, ABConfig
from cl_core.ab.tasks import ABTask
from cl_core.validation import check_choice, check_int


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

    from cl_core.threads import torch_threads

    check_choice("arm", arm, ARMS)
    seed = check_int("seed", seed, 0, "; seeds are non-negative integers")
    check_artifact_matches(curriculum, task)
    train_rows, held_rows = _split_for(task, curriculum, config)
    arm_curr = arm_curriculum(arm, curriculum, train_rows, config, seed)
    positions = arm_indices(arm, arm_curr, train_rows.shape[0], config, seed)
    rows = train_rows[positions]
    eval_at = set(config.eval_steps)
    started = time.perf_counter()
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
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
