"""Pretrain a masked autoencoder on the digits, fed by the published curriculum.

    cl-curriculum demo                      # publishes artifacts/digits/<version>
    python examples/pretrain_mae.py         # or --artifact artifacts/digits/<version>

This is the paper's setting (MAE pretraining, prototypes first) written as an ordinary PyTorch
loop: a ``TensorDataset`` of the images, a ``DataLoader`` whose ``sampler`` is
``cl_core.sampler.CurriculumSampler``, AdamW and the model's reconstruction loss. The sampler
draws with replacement from the artifact's schedule: the early batches come from the most
prototypical digits of every cluster, and the drawn set widens until it is uniform at the end of
the warmup; ``set_epoch`` moves it through the epochs (the schedule counts global steps).

Pretraining needs no labels, so every row of the artifact is trained on and the sampler is the
plain ``CurriculumSampler(curriculum, batch_size=..., seed=...)``; only the warmup is set to
half of this short run (the artifact's 1,000 iterations would outlast it). The model is
``cl_core.ab``'s small MAE (a 64-wide, 4-block ViT from timm's blocks, 75% of the 2x2 patches
masked); swap in your own. At the end the frozen encoder's mean-pooled features are read by a
linear probe on a labelled 80/20 split of the digits (the held-out images were seen, unlabelled,
during pretraining, as in transductive evaluation). Runs in about a minute on one CPU core.
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

from cl_core.ab import (  # noqa: E402
    MAE_SPECS,
    build_mae,
    encoder_features,
    linear_probe_accuracy,
    mae_digits_task,
)
from cl_core.sampler import Curriculum, CurriculumSampler, load_curriculum  # noqa: E402

DEFAULT_ARTIFACT = ROOT / "artifacts" / "digits" / "latest"


def pretrain(
    curriculum: Curriculum, images: object, args: argparse.Namespace
) -> tuple[object, list[float]]:
    """MAE pretraining for ``args.steps`` steps with indices from ``CurriculumSampler``.

    Returns the model and the mean reconstruction loss of every tenth of the run.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(args.seed)
    model = build_mae(MAE_SPECS["digits"])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05
    )
    warmup = max(1, args.steps // 20)  # MAE's schedule: linear warmup (5%), then cosine decay
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + np.cos(np.pi * min(1.0, (s - warmup) / max(1, args.steps - warmup))))
        ),
    )
    sampler = CurriculumSampler(curriculum, batch_size=args.batch_size, seed=args.seed)
    loader = DataLoader(TensorDataset(images), batch_size=args.batch_size, sampler=sampler)
    masks = torch.Generator().manual_seed(args.seed)  # the random masks, seeded too
    step, epoch, losses, window = 0, 0, [], []
    report_every = max(1, args.steps // 10)
    while step < args.steps:
        sampler.set_epoch(epoch)
        for (batch,) in loader:
            loss = model(batch, masks)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            window.append(loss.item())
            if step % report_every == 0 or step == args.steps:
                losses.append(float(np.mean(window)))
                window = []
                print(
                    f"step {step:>5}  loss {losses[-1]:.4f}  curriculum target fraction "
                    f"{curriculum.target_fraction(step - 1):.2f}"
                )
            if step == args.steps:
                break
        epoch += 1
    return model, losses


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2.4e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        artifact = load_curriculum(args.artifact)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}\nPublish the digits curriculum first: cl-curriculum demo")
        raise SystemExit(2) from error
    import torch

    torch.set_num_threads(1)  # a 0.2M-parameter model gains nothing from threads
    task = mae_digits_task()  # the digits in the artifact's row order, standardised pixels
    if artifact.n_samples != task.n_samples:
        print(
            f"error: {args.artifact} scores {artifact.n_samples} samples, the digits are "
            f"{task.n_samples}; pass the artifact published for the digits (cl-curriculum demo)"
        )
        raise SystemExit(2)
    # The artifact's own schedule (strategy, pacing, initial fraction), warmup fitted to the run.
    config = dataclasses.replace(
        artifact.schedule.config, warmup_iterations=max(1, args.steps // 2)
    )
    curriculum = Curriculum.from_arrays(artifact.difficulty, config)
    print(
        f"artifact {args.artifact} (version {artifact.version}): strategy {curriculum.strategy}, "
        f"pacing {curriculum.pacing}, f0 {curriculum.initial_fraction}, warmup "
        f"{curriculum.warmup_iterations} of {args.steps} steps"
    )
    started = time.perf_counter()
    model, losses = pretrain(curriculum, task.inputs, args)
    order = np.random.default_rng(0).permutation(task.n_samples)
    held, train = np.sort(order[: task.n_samples // 5]), np.sort(order[task.n_samples // 5 :])
    features = encoder_features(model, task, np.arange(task.n_samples))
    probe = linear_probe_accuracy(features, task.labels, train, held)
    print(f"\nlinear probe on the frozen encoder: {probe:.4f} held-out accuracy")
    print(f"pretrained {args.steps} steps in {time.perf_counter() - started:.1f} s")
    return {"losses": losses, "probe": probe, "steps": args.steps}


if __name__ == "__main__":
    main()
