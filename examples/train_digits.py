"""Train a small CNN on the digits with the published curriculum versus uniform sampling.

    cl-curriculum demo                      # publishes artifacts/digits/<version>
    python examples/train_digits.py         # or --artifact artifacts/digits/<version>

Both runs use the same seed, the same initial weights, the same number of steps and the same
batch size; only the sampler differs. The curriculum arm feeds indices from
``cl_core.sampler.CurriculumSampler`` to a ``torch.utils.data.DataLoader``: early batches come
from the most prototypical digits of every cluster, and the sampled set widens until it is
uniform after the warmup.

A fifth of the digits is held out for the accuracy printed per epoch, so the training curriculum
is the artifact's difficulty restricted to the training rows (``Curriculum.from_arrays``) with the
artifact's strategy, pacing and initial fraction; its warmup is set to 60% of this short run
(the artifact's 1,000 iterations would outlast the whole example). For a job that trains on
every row of the artifact, ``CurriculumSampler(load_curriculum(path), ...)`` is all it takes.
Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cl_core.sampler import Curriculum, CurriculumSampler, load_curriculum  # noqa: E402

DEFAULT_ARTIFACT = ROOT / "artifacts" / "digits" / "latest"


def digits_tensors() -> tuple[object, object]:
    """Images (N, 1, 8, 8) scaled to [0, 1] and labels (N,), in the artifact's index order."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, torch.tensor(digits.target, dtype=torch.long)


def small_cnn() -> object:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def split(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n_samples)
    n_test = n_samples // 5
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def train_curriculum(artifact: Curriculum, train: np.ndarray, total_steps: int) -> Curriculum:
    """The artifact's curriculum restricted to the training rows, warmup fitted to this run."""
    config = dataclasses.replace(
        artifact.schedule.config, warmup_iterations=max(1, int(0.6 * total_steps))
    )
    return Curriculum.from_arrays(artifact.difficulty[train], config)


def accuracy(model: object, images: object, labels: object) -> float:
    import torch

    with torch.no_grad():
        predictions = model(images).argmax(dim=1)
    return float((predictions == labels).float().mean())


def train(sampler: object, data: tuple, test: tuple, args: argparse.Namespace) -> list[float]:
    """Train a fresh CNN (same initial weights for every arm) and return test accuracy per epoch."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(args.seed)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = DataLoader(TensorDataset(*data), batch_size=args.batch_size, sampler=sampler)
    history = []
    for epoch in range(args.epochs):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        history.append(accuracy(model, *test))
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        artifact = load_curriculum(args.artifact)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}\nPublish the digits curriculum first: cl-curriculum demo")
        return 2
    import torch
    from torch.utils.data import RandomSampler

    torch.set_num_threads(1)  # a tiny CNN gains nothing from threads; avoids oversubscription
    images, labels = digits_tensors()
    if artifact.n_samples != len(labels):
        print(
            f"error: {args.artifact} has {artifact.n_samples} samples, the digits have "
            f"{len(labels)}; pass the artifact published for the digits (cl-curriculum demo)"
        )
        return 2
    train_rows, test_rows = split(len(labels), args.seed)
    data = (images[train_rows], labels[train_rows])
    test = (images[test_rows], labels[test_rows])
    steps_per_epoch = -(-len(train_rows) // args.batch_size)
    curriculum = train_curriculum(artifact, train_rows, steps_per_epoch * args.epochs)
    samplers = {
        "curriculum": CurriculumSampler(curriculum, batch_size=args.batch_size, seed=args.seed),
        "uniform": RandomSampler(
            range(len(train_rows)),
            replacement=True,
            num_samples=steps_per_epoch * args.batch_size,
            generator=torch.Generator().manual_seed(args.seed),
        ),
    }
    print(
        f"artifact {args.artifact} (version {artifact.version}): strategy {curriculum.strategy}, "
        f"pacing {curriculum.pacing}, f0 {curriculum.initial_fraction}, warmup "
        f"{curriculum.warmup_iterations} of {steps_per_epoch * args.epochs} steps; "
        f"{len(train_rows)} train / {len(test_rows)} test digits"
    )
    started = time.perf_counter()
    results = {name: train(sampler, data, test, args) for name, sampler in samplers.items()}
    print(f"\n{'epoch':>5} | {'curriculum acc':>14} | {'uniform acc':>11}")
    print(f"{'-' * 5}-|-{'-' * 14}-|-{'-' * 11}")
    for epoch in range(args.epochs):
        first_steps = (epoch + 1) * steps_per_epoch
        print(
            f"{epoch + 1:>5} | {results['curriculum'][epoch]:>14.4f} | "
            f"{results['uniform'][epoch]:>11.4f}   (after {first_steps} steps, target fraction "
            f"{curriculum.target_fraction(first_steps - 1):.2f})"
        )
    print(f"\ntrained both arms in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
