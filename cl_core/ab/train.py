"""Training one arm with one seed: the loop (the objective's loss and reading, from
:mod:`cl_core.ab.objectives`) and the logged :class:`ArmRun`."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.ab.arms import arm_curriculum, arm_indices, check_artifact_matches, split_rows
from cl_core.ab.config import ARMS, ABConfig
from cl_core.ab.data import batches
from cl_core.ab.objectives import build_optimizer, make_objective
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
        The objective's reading at each evaluation step: held-out accuracy (``supervised``) or
        the frozen encoder's held-out kNN accuracy (``mae``).
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
    objective : str
    probe : float or None
        ``mae``: held-out accuracy of a linear probe on the final frozen features.
    floors : dict or None
        ``mae``: ``{"raw pixels": {"knn": .., "probe": ..}, "random init": {...}}``, the same
        readings of the raw inputs and of the initial (random) encoder.
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
    objective: str = "supervised"
    probe: float | None = None
    floors: dict[str, dict[str, float]] | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain values; a supervised run leaves out the fields it does not have."""
        document = dataclasses.asdict(self)
        document["loss"] = [None if math.isnan(x) else x for x in self.loss]
        document["eval_steps"], document["accuracy"] = list(self.eval_steps), list(self.accuracy)
        if self.objective == "supervised":
            for name in ("objective", "probe", "floors"):
                if document[name] in (None, "supervised"):
                    document.pop(name)
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


def train_arm(
    task: ABTask,
    curriculum: Any,
    arm: str,
    seed: int,
    config: ABConfig,
    *,
    threads: int | None = 1,
) -> ArmRun:
    """Train ``task``'s model under one arm with one seed; log the objective's reading.

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
    objective = make_objective(task, train_rows, held_rows, config, seed)
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
        optimizer, schedule = build_optimizer(model, config)
        accuracy, losses, running = [objective.start(model, init_digest)], [math.nan], []
        for step, (inputs, targets) in enumerate(
            batches(task, rows.reshape(-1), config.batch_size), start=1
        ):
            optimizer.zero_grad(set_to_none=True)
            loss = objective.loss(model, inputs, targets)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            running.append(float(loss.detach()))
            if step in eval_at:
                accuracy.append(objective.score(model))
                losses.append(float(np.mean(running)))
                running = []
        extra = objective.finish(model, accuracy[0])
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
        objective=config.objective,
        **extra,
    )


def _split_for(task: ABTask, curriculum: Any, config: ABConfig) -> tuple[np.ndarray, np.ndarray]:
    mask = getattr(curriculum, "sample_mask", None)  # rows the artifact excludes
    return split_rows(task.labels, config.holdout_fraction, config.split_seed, mask)
