"""``cl-curriculum ab``: does the curriculum help this model on this data?

Registered in :mod:`flows.cli` with ``app.command(name="ab")(ab)``. Everything checkable before
training (the artifact, the dataset, its length against the artifact's N, the arms, the seeds,
the budget) is checked before Prefect starts: bad input exits with code 2 and one line; a failed
run exits with 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flows import runs
from flows.console import bad_input_exits


def ab(
    artifact: Annotated[
        Path, typer.Argument(help="artifacts/<name>/<version> or artifacts/<name>/latest")
    ],
    dataset: Annotated[
        str,
        typer.Option(
            help="the data the artifact scores: digits | imagefolder:PATH | zarr:PATH (a store)"
        ),
    ] = "digits",
    seeds: Annotated[int, typer.Option(help="seeds per arm (0 .. N-1); >= 3 for a verdict")] = 3,
    steps: Annotated[
        int | None,
        typer.Option(help="optimiser steps per run (default 600; --quick 200, mae 120)"),
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="a short run (200 steps, mae 120), ~2 min on 2 CPU cores")
    ] = False,
    objective: Annotated[
        str,
        typer.Option(
            help="supervised (a classifier, held-out accuracy) or mae (masked-autoencoder "
            "pretraining of a ViT, judged by frozen-feature kNN and a linear probe)"
        ),
    ] = "supervised",
    probe: Annotated[
        bool, typer.Option(help="linear probe on the frozen embeddings of --dataset zarr:PATH")
    ] = False,
    arms: Annotated[str, typer.Option(help="comma-separated arms")] = "easy,uniform,hard,shuffled",
    batch_size: Annotated[
        int | None, typer.Option(help="samples per step (default: supervised 32, mae 64)")
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="steps between evaluations (default steps/20; mae steps/10)")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="(peak) learning rate (default: supervised 1e-3, mae 2.4e-3)"),
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(
            help="adam, sgd or adamw (MAE's schedule) (default: supervised adam, mae adamw)"
        ),
    ] = None,
    warmup_fraction: Annotated[
        float,
        typer.Option(help="curriculum warmup as a fraction of the steps; 0: the artifact's own"),
    ] = 0.5,
    holdout: Annotated[float, typer.Option(help="held-out fraction (stratified)")] = 0.2,
    model: Annotated[
        str | None,
        typer.Option(help="timm model (image datasets; default: small CNN on digits, else Lite0)"),
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="local weights file for --model")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto)")] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="results root (<output>/<version>/<config id>)")
    ] = Path("runs/ab"),
    verbose: Annotated[bool, typer.Option(help="also log every task run")] = False,
) -> None:
    """Train the same model under the curriculum (easy), uniform, hard and shuffled; print the
    per-arm table and the verdict."""
    with bad_input_exits():
        params = ab_params(
            artifact=artifact,
            dataset=dataset,
            seeds=seeds,
            steps=steps if steps is not None else default_steps(objective, quick),
            probe=probe,
            arms=arms,
            batch_size=batch_size,
            eval_every=eval_every,
            lr=lr,
            optimizer=optimizer,
            warmup_fraction=warmup_fraction,
            holdout=holdout,
            model=model,
            weights=weights,
            device=device,
            output=output,
            objective=objective,
        )
    execute_ab(params, verbose=verbose)


def default_steps(objective: str, quick: bool) -> int:
    """The objective's step budget (``--quick``: its short one)."""
    from cl_core.ab import OBJECTIVES, RECIPES
    from cl_core.validation import check_choice

    recipe = RECIPES[check_choice("objective", objective, OBJECTIVES)]
    return recipe.quick_steps if quick else recipe.steps


def ab_params(
    *,
    artifact: Path,
    dataset: str,
    seeds: int,
    steps: int,
    probe: bool,
    arms: str,
    batch_size: int | None,
    eval_every: int | None,
    lr: float | None,
    optimizer: str | None,
    warmup_fraction: float,
    holdout: float,
    model: str | None,
    weights: Path | None,
    device: str | None,
    output: Path,
    objective: str = "supervised",
) -> dict[str, Any]:
    """Validate everything before Prefect starts; return the flow's parameters.

    Raises ValueError / TypeError / FileNotFoundError with a one-line message (exit code 2).
    """
    from cl_core.ab import check_arms, check_artifact_matches, check_seeds
    from flows.ab import ab_config, build_task, load_artifact

    check_seeds(seeds)
    arm_names = check_arms(arms)
    if warmup_fraction < 0:
        raise ValueError(
            f"--warmup-fraction must be >= 0 (0: the artifact's), got {warmup_fraction}"
        )
    if weights is not None and not weights.is_file():
        raise FileNotFoundError(f"--weights {str(weights)!r} is not a file")
    params: dict[str, Any] = {
        "artifact": str(artifact),
        "dataset": dataset,
        "seeds": seeds,
        "arms": arm_names,
        "steps": steps,
        "batch_size": batch_size,
        "eval_every": eval_every,
        "lr": lr,
        "optimizer": optimizer,
        "warmup_fraction": warmup_fraction or None,
        "holdout_fraction": holdout,
        "probe": probe,
        "model": model,
        "weights": str(weights) if weights else None,
        "device": device,
        "output": str(output),
        "objective": objective,
    }
    ab_config(
        arms=arm_names,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        lr=lr,
        optimizer=optimizer,
        warmup_fraction=params["warmup_fraction"],
        holdout_fraction=holdout,
        split_seed=0,
        objective=objective,
    )
    curriculum = load_artifact(str(artifact))
    ab_task = build_task(dataset, probe, model, params["weights"], device, None, objective)
    check_artifact_matches(curriculum, ab_task)
    return params


def execute_ab(params: dict[str, Any], *, verbose: bool = False) -> Any:
    """Run ``curriculum-ab`` (exit 1 on failure) and print the table, the verdict and the paths."""
    outcome, seconds = runs.run_flow("flows.ab:curriculum_ab", params, verbose=verbose)
    typer.echo(outcome.table)
    typer.echo("")
    typer.echo(f"verdict: {outcome.verdict}")
    for note in outcome.notes:
        typer.echo(f"  {note}")
    typer.echo("")
    typer.echo(f"results: {outcome.results_dir}  (results.json, table.md, curves.png)")
    typer.echo(
        f"{len(outcome.task_states)} runs: {outcome.count('Completed')} computed, "
        f"{outcome.count('Cached')} cached; {seconds:.1f} s"
    )
    return outcome
