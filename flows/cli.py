"""``cl-curriculum``: the app, ``run`` and ``demo``; the other commands live in ``cli_*.py``.

Exit codes: 0 success; 2 bad input found before the run starts (one line on stderr saying what and
how to fix); 1 a run that failed, for whatever reason (one line naming what failed, how to fix it
where known, and the flow run; the traceback is in the run's log, ``--verbose`` prints it).
Everything checkable from the parameters and the dataset's length (ranges, k against N, the
device, the model name, the weights file) is checked before Prefect starts, so a typo costs a
second, not a server start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from flows import runs
from flows.checks import check_model, check_parameters
from flows.cli_ab import ab
from flows.cli_artifacts import inspect, preview
from flows.cli_deploy import deploy, serve
from flows.console import BadInput, bad_input_exits
from flows.outcomes import reuse_line
from flows.params import (
    DEMO_MODEL,
    ClusterParams,
    CurriculumParams,
    DatasetParams,
    EmbedParams,
    OutputParams,
)

app = typer.Typer(
    name="cl-curriculum",
    help="Curriculum-learning preprocessing: embed, cluster, score, schedule, publish.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _parse_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(low), int(high)
    except ValueError:
        raise BadInput(f"--k-range {text!r} is not LOW:HIGH; e.g. --k-range 2:20") from None


def execute(params: dict[str, Any], *, show_progress: bool = True, verbose: bool = False) -> Any:
    """Validate (exit 2), run ``curriculum-pipeline`` (exit 1 on failure), print the results."""
    with bad_input_exits():
        check_parameters(params)  # the checks that need no model: before anything starts

    def while_the_server_starts() -> None:
        check_model(params)  # a rejected model leaves no server database behind
        if params["dataset"].kind != "zarr":
            from cl_core.embed import start_worker_server

            start_worker_server()  # loader workers' imports overlap the Prefect server's start

    result, seconds = runs.run_flow(
        "flows.pipeline:curriculum_pipeline",
        params,
        checks=while_the_server_starts,
        show_progress=show_progress,
        verbose=verbose,
    )
    _print_result(result, seconds)
    return result


def _print_result(result: Any, seconds: float) -> None:
    typer.echo(f"artifact: {result.artifact_path}")
    typer.echo(f"report:   {result.report_path}")
    typer.echo(
        f"{result.name} version {result.version}: N={result.n_samples}, D={result.dim}, "
        f"k={result.n_clusters} ({result.chosen_by}); {seconds:.1f} s; "
        f"tasks: {result.count('Cached')} cached, {result.count('Completed')} computed"
    )
    if result.reuse:
        typer.echo(f"embeddings: {reuse_line(result.reuse)}")
    if getattr(result, "lineage", None):
        from cl_core.update import lineage_line  # the clustering stack: imported on use

        typer.echo(f"clusters: {lineage_line(result.lineage)}")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}")


# --------------------------------------------------------------------------------------------
# run / demo
# --------------------------------------------------------------------------------------------


# Options shared by `run` and `demo` (typer reads the Annotated metadata of each parameter).
OutputOption = Annotated[
    str, typer.Option("--output", "-o", help="artifact root: a folder or s3://bucket/prefix")
]
WorkDirOption = Annotated[
    str, typer.Option(help="intermediate results and task cache: a folder or s3://bucket/prefix")
]
SweepRunnerOption = Annotated[str, typer.Option(help="dask or threads")]
PrecisionOption = Annotated[
    str,
    typer.Option(help="auto (bf16 on CUDA and bf16-capable CPUs, else fp32), fp32, bf16, fp16"),
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress")]
VerboseOption = Annotated[
    bool, typer.Option(help="log every task run and print tracebacks of a failed run")
]


@app.command()
def run(
    dataset: Annotated[
        str, typer.Argument(help="digits | imagefolder:PATH | zarr:PATH (an embedding store)")
    ],
    model: Annotated[
        str, typer.Option(help="timm model id or alias (dino_vits16 ...)")
    ] = DEMO_MODEL,
    weights: Annotated[
        Path | None, typer.Option(help="local weights file for the model (offline use)")
    ] = None,
    k: Annotated[int | None, typer.Option("--k", "-k", help="explicit number of clusters")] = None,
    k_range: Annotated[str, typer.Option(help="LOW:HIGH swept when --k is not given")] = "2:20",
    supervised: Annotated[bool, typer.Option(help="score within each class (labels)")] = False,
    refit: Annotated[
        str,
        typer.Option(
            help="with a previous version: auto (refit when the data drifted), always, or never "
            "(assign new samples to its clusters)"
        ),
    ] = "auto",
    refit_share: Annotated[
        float, typer.Option(help="auto refits once this share of rows changed since the last fit")
    ] = ClusterParams.model_fields["refit_share"].default,
    refit_distance_ratio: Annotated[
        float,
        typer.Option(
            help="auto refits when new samples sit this much further from their centroids"
        ),
    ] = ClusterParams.model_fields["refit_distance_ratio"].default,
    strategy: Annotated[str, typer.Option(help="easy (prototypes first) or hard")] = "easy",
    pacing: Annotated[str, typer.Option(help="linear, cosine, root or step")] = "linear",
    f0: Annotated[float, typer.Option("--f0", help="initial effective fraction")] = 0.3,
    warmup: Annotated[int, typer.Option(help="iterations until uniform sampling")] = 1000,
    output: OutputOption = "artifacts",
    work_dir: WorkDirOption = "runs",
    name: Annotated[str | None, typer.Option(help="artifact name (default from dataset)")] = None,
    dataset_id: Annotated[
        str | None,
        typer.Option(help="name the dataset's version explicitly (instead of computing it)"),
    ] = None,
    verify_content: Annotated[
        bool,
        typer.Option(help="identify an image folder by its files' sha256, not path/size/mtime"),
    ] = False,
    on_bad_sample: Annotated[
        str, typer.Option(help="a sample that cannot be loaded: error (fail) or skip it")
    ] = "error",
    decode: Annotated[
        str, typer.Option(help="where images are decoded: auto, cpu or gpu")
    ] = "auto",
    precision: PrecisionOption = "auto",
    dask_address: Annotated[
        str | None,
        typer.Option(help="run embedding shards, the k sweep and the fit on this Dask scheduler"),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(help="N or all: embed on a local Dask cluster, one worker per GPU"),
    ] = None,
    sweep_runner: SweepRunnerOption = "dask",
    batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto)")] = None,
    image_size: Annotated[int | None, typer.Option(help="input size (default: model's)")] = None,
    random_weights: Annotated[
        bool, typer.Option(help="random init instead of pretrained weights (testing)")
    ] = False,
    progress_bars: ProgressOption = True,
    verbose: VerboseOption = False,
) -> None:
    """Build and publish a curriculum for a dataset."""
    with bad_input_exits():
        params = {
            "dataset": DatasetParams(
                spec=dataset, name=name, dataset_id=dataset_id, verify_content=verify_content
            ),
            "embedding": EmbedParams(
                model=model,
                weights=str(weights) if weights else None,
                pretrained=not random_weights,
                batch_size=batch_size,
                device=device,
                image_size=image_size,
                on_bad_sample=on_bad_sample,  # type: ignore[arg-type]
                decode=decode,  # type: ignore[arg-type]
                precision=precision,  # type: ignore[arg-type]
            ),
            "clustering": ClusterParams(
                n_clusters=k,
                cluster_range=_parse_range(k_range),
                use_labels=supervised,
                refit=refit,  # type: ignore[arg-type]
                refit_share=refit_share,
                refit_distance_ratio=refit_distance_ratio,
            ),
            "curriculum": CurriculumParams(
                strategy=strategy, pacing=pacing, initial_fraction=f0, warmup_iterations=warmup
            ),
            "output": OutputParams(
                output_dir=str(output),
                work_dir=str(work_dir),
                sweep_runner=sweep_runner,  # type: ignore[arg-type]
                dask_address=dask_address,
                gpus=gpus,
            ),
        }
    execute(params, show_progress=progress_bars, verbose=verbose)


def demo_params(
    output: str, work_dir: str, sweep_runner: str = "dask", precision: str = "auto"
) -> dict[str, Any]:
    """``run`` on the bundled digits with the bundled EfficientNet-Lite0 and automatic k."""
    return {
        "dataset": DatasetParams(spec="digits"),
        # 256-row shards: 8 embedding tasks, so the progress bar and a resumed run mean something
        "embedding": EmbedParams(
            model=DEMO_MODEL,
            chunk_rows=256,
            shard_rows=256,
            precision=precision,  # type: ignore[arg-type]
        ),
        "clustering": ClusterParams(cluster_range=(2, 20)),
        "curriculum": CurriculumParams(),
        "output": OutputParams(
            output_dir=str(output),
            work_dir=str(work_dir),
            sweep_runner=sweep_runner,  # type: ignore[arg-type]
        ),
    }


@app.command()
def demo(
    output: OutputOption = "artifacts",
    work_dir: WorkDirOption = "runs",
    sweep_runner: SweepRunnerOption = "dask",
    precision: PrecisionOption = "auto",
    progress_bars: ProgressOption = True,
    verbose: VerboseOption = False,
) -> None:
    """Digits (1,797 images) + EfficientNet-Lite0 (bundled weights), k by Davies-Bouldin."""
    with bad_input_exits():
        params = demo_params(output, work_dir, sweep_runner, precision)
    execute(params, show_progress=progress_bars, verbose=verbose)


app.command()(inspect)
app.command()(preview)
app.command()(deploy)
app.command()(serve)
app.command(name="ab")(ab)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``cl-curriculum`` console script."""
    command: Callable[..., Any] = typer.main.get_command(app)
    return command(args=argv, prog_name="cl-curriculum")


if __name__ == "__main__":
    main()
