"""``cl-curriculum``: run the pipeline, inspect and preview artifacts, deploy and serve.

Exit codes: 0 success; 2 bad input found before the run starts (one line on stderr saying what and
how to fix); 1 a run that failed, for whatever reason (one line naming what failed, how to fix it
where known, and the flow run; the traceback is in the run's log, ``--verbose`` prints it).
Everything checkable from the parameters and the dataset's length (ranges, k against N, the
device, the model name, the weights file) is checked before Prefect starts, so a typo costs a
second, not a server start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.console import (
    EXIT_FAILED,
    BadInput,
    bad_input_exits,
    console_logs,
    fail,
    one_line,
)
from flows.params import (
    DEMO_MODEL,
    ClusterParams,
    CurriculumParams,
    DatasetParams,
    EmbedParams,
    OutputParams,
)

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
SERVE_SCRIPT = ROOT / "deployments" / "serve.py"

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


def preflight(params: dict[str, Any]) -> None:
    """Check everything a run needs before it starts; raise :class:`BadInput` (or the library's
    ValueError/TypeError) naming the argument, the value and the fix.

    :func:`check_parameters` (cheap: configs, where the run goes, files, k against the
    dataset's length), then :func:`check_model` (the device; the model is loaded and the dataset
    opened, both memoised per process so the run that follows reuses them). ``execute`` starts
    the temporary Prefect server between the two, so its start overlaps the model's imports.
    """
    check_parameters(params)
    check_model(params)


def check_parameters(params: dict[str, Any]) -> None:
    """Everything that needs no model (and no torch): configs, destinations, files, k vs N."""
    dataset: DatasetParams = params["dataset"]
    clustering: ClusterParams = params["clustering"]
    clustering.to_config()
    params["curriculum"].schedule_config()
    check_destinations(params["output"])
    if dataset.kind == "zarr":
        check_clusters_fit(clustering, _store_rows(dataset), dataset.spec)
        return
    _check_files(dataset, params["embedding"])
    from cl_core.embed import count_samples

    # k against N needs only the dataset's length: checked before the model is loaded
    check_clusters_fit(clustering, count_samples(dataset.spec), dataset.spec)


def check_model(params: dict[str, Any]) -> None:
    """The device, the model and the dataset (imports torch and timm; memoised per process)."""
    if params["dataset"].kind != "zarr":
        _check_model_and_dataset(params["dataset"], params["embedding"])


def check_destinations(output: OutputParams) -> None:
    """Where the run goes must answer before any work, and nothing is created here: the Dask
    scheduler (within ~5 s), the GPUs of ``--gpus``, and the work dir and the output root (on
    object storage a probe object written and deleted, naming a missing bucket, denied access
    or a missing ``s3fs``; a local folder must exist and be writable, or be creatable in its
    nearest existing parent). Prefect is not imported here.
    """
    if output.dask_address:
        from flows.runners import check_dask_address

        check_dask_address(output.dask_address)
    if output.gpus is not None:
        from flows.runners import visible_gpus

        visible_gpus(output.gpus)
    for option, root in (("--work-dir", output.work_dir), ("--output", output.output_dir)):
        _check_writable(option, root)


def _check_writable(option: str, root: str) -> None:
    from cl_core.artifacts.location import ObjectPath, as_location
    from flows import files

    location = as_location(root)
    if isinstance(location, ObjectPath):
        files.check_writable(location)
        return
    folder = location.expanduser().absolute()
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a folder" if not existing.is_dir() else "is not writable"
        raise BadInput(f"{option} {root}: {existing} {what}; pass a folder you can write to")


def _store_rows(dataset: DatasetParams) -> int:
    from cl_core.artifacts.location import ObjectPath, as_location
    from flows import inputs

    location = as_location(dataset.location)
    if not isinstance(location, ObjectPath):
        location = location.expanduser()
    if not location.exists():
        raise BadInput(
            f"dataset {dataset.spec!r}: no embedding store at {dataset.location!r}; "
            "pass zarr:PATH of a store written by a previous run (runs/embeddings/*.zarr)"
        )
    return int(inputs.open_complete_store(dataset)["n_rows"])


def _check_files(dataset: DatasetParams, embedding: EmbedParams) -> None:
    if embedding.weights and not Path(embedding.weights).expanduser().is_file():
        raise BadInput(
            f"--weights {embedding.weights!r}: no such file; pass the path of a local "
            ".safetensors file or torch state dict"
        )
    if dataset.kind == "imagefolder" and not Path(dataset.location).expanduser().is_dir():
        raise BadInput(
            f"dataset {dataset.spec!r}: {dataset.location!r} is not a directory; pass "
            "imagefolder:PATH with PATH/<class>/<image files>"
        )


def _check_model_and_dataset(dataset: DatasetParams, embedding: EmbedParams) -> None:
    """Device, model name, weights and dataset; the model and dataset are memoised per process,
    so the run that follows reuses them."""
    from flows import inputs

    embedding.to_config()  # imports torch: after the checks that need nothing
    if embedding.device is not None:
        from cl_core.embed import resolve_device

        resolve_device(embedding.device)  # --device cuda without CUDA fails here
    inputs.resolve_inputs(dataset, embedding)


def check_clusters_fit(clustering: ClusterParams, n_samples: int, spec: str) -> None:
    """k (or the low end of the k range) must not exceed the number of samples."""
    if clustering.n_clusters is not None and not clustering.use_labels:
        if clustering.n_clusters > n_samples:
            raise BadInput(
                f"--k {clustering.n_clusters} is more than the {n_samples:,} samples of "
                f"{spec!r}; pass --k {n_samples} or less"
            )
        return
    low, high = clustering.cluster_range
    if clustering.n_clusters is None and not clustering.use_labels and low > n_samples:
        raise BadInput(
            f"--k-range {low}:{high} starts above the {n_samples:,} samples of {spec!r}; "
            f"pass a range within 2:{n_samples}"
        )


def execute(params: dict[str, Any], *, show_progress: bool = True, verbose: bool = False) -> Any:
    """Validate (exit 2), run ``curriculum-pipeline`` (exit 1 on failure), print the results."""
    with bad_input_exits():
        check_parameters(params)  # the checks that need no model: before anything starts
    from flows import prefect_env

    prefect_env.configure_environment()  # before Prefect is first imported
    from flows import _embedded_server

    with (
        _embedded_server.one_embedded_server_at_a_time(_note),
        _embedded_server.embedded_server() as server,  # starts now: it overlaps the checks
    ):
        with bad_input_exits():
            check_model(params)  # a rejected model leaves no server database behind
        if params["dataset"].kind != "zarr":
            from cl_core.embed import start_worker_server

            start_worker_server()  # loader workers' imports overlap the Prefect server's start
        started = time.perf_counter()
        result = _run_pipeline(params, server, show_progress=show_progress, verbose=verbose)
    _print_result(result, time.perf_counter() - started)
    return result


def _note(message: str) -> None:
    typer.echo(message, err=True)


def _run_pipeline(
    params: dict[str, Any], server: Any, *, show_progress: bool, verbose: bool
) -> Any:
    """The pipeline's result; any failure inside the run exits 1 with one line."""
    from flows import progress
    from flows.pipeline import curriculum_pipeline
    from flows.prefect_env import embedded_run_settings

    try:
        server.wait_until_ready()  # this run's temporary Prefect server, if it has one
        with (
            console_logs(verbose),
            embedded_run_settings(),
            progress.terminal_progress(show_progress),
        ):
            state = curriculum_pipeline(**params, return_state=True)
    except Exception as error:  # the run could not start (server, API): no flow run to name
        fail(f"the run failed: {_error_line(error)}", EXIT_FAILED)
    if not state.is_completed():
        from prefect.states import get_state_exception

        where = _flow_run_label(state.state_details.flow_run_id)
        error_line = _error_line(get_state_exception(state))
        hint = "" if verbose else "; --verbose prints the traceback"
        fail(f"the run failed: {error_line} ({where}{hint})", EXIT_FAILED)
    return state.result()


def _error_line(error: BaseException) -> str:
    """One line for a run failure: the error's own message (with its type if it is a bug)."""
    from cl_core.embed import BadSampleError

    text = one_line(error)
    if isinstance(error, (BadSampleError, BadInput)):
        return text
    return f"{type(error).__name__}: {text}"


def _flow_run_label(flow_run_id: Any) -> str:
    """``flow run 'name' <link or id>``: where the run's log and traceback are."""
    name = None
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            name = client.read_flow_run(flow_run_id).name
    except Exception:  # the label is a courtesy; the error line is what matters
        pass
    from prefect.settings import get_current_settings

    ui_url = get_current_settings().ui_url
    where = f"{ui_url}/runs/flow-run/{flow_run_id}" if ui_url else f"id {flow_run_id}"
    return f"flow run {name!r}, {where}" if name else f"flow run {where}"


def _print_result(result: Any, seconds: float) -> None:
    typer.echo(f"artifact: {result.artifact_path}")
    typer.echo(f"report:   {result.report_path}")
    typer.echo(
        f"{result.name} version {result.version}: N={result.n_samples}, D={result.dim}, "
        f"k={result.n_clusters} ({result.chosen_by}); {seconds:.1f} s; "
        f"tasks: {result.count('Cached')} cached, {result.count('Completed')} computed"
    )
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
    precision: Annotated[
        str,
        typer.Option(help="auto (bf16 on CUDA and bf16-capable CPUs, else fp32), fp32, bf16, fp16"),
    ] = "auto",
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
                n_clusters=k, cluster_range=_parse_range(k_range), use_labels=supervised
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


def demo_params(output: str, work_dir: str, sweep_runner: str = "dask") -> dict[str, Any]:
    """``run`` on the bundled digits with the bundled EfficientNet-Lite0 and automatic k."""
    return {
        "dataset": DatasetParams(spec="digits"),
        # 256-row shards: 8 embedding tasks, so the progress bar and a resumed run mean something
        "embedding": EmbedParams(model=DEMO_MODEL, chunk_rows=256, shard_rows=256),
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
    progress_bars: ProgressOption = True,
    verbose: VerboseOption = False,
) -> None:
    """Digits (1,797 images) + EfficientNet-Lite0 (bundled weights), k by Davies-Bouldin."""
    with bad_input_exits():
        params = demo_params(output, work_dir, sweep_runner)
    execute(params, show_progress=progress_bars, verbose=verbose)


# --------------------------------------------------------------------------------------------
# inspect / preview
# --------------------------------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False)


@app.command()
def inspect(
    path: Annotated[
        str, typer.Argument(help="artifacts/<name>/<version> or .../<name>/latest (or a URL)")
    ],
) -> None:
    """Summarise a published artifact (manifest, files, checks every sha256)."""
    from rich.table import Table

    from cl_core.artifacts import resolve_version, verify_artifact

    with bad_input_exits():
        version_dir = resolve_version(path)
        manifest = verify_artifact(version_dir)
    schedule = manifest.get("config", {}).get("schedule", {})
    summary = Table(title=f"{manifest['name']} @ {manifest['version']}", show_header=False)
    for key, value in {
        "path": str(version_dir),
        "created": manifest.get("created_at"),
        "N": manifest.get("n_samples"),
        "D": manifest.get("dim"),
        "k": manifest.get("n_clusters"),
        "strategy": schedule.get("strategy"),
        "pacing": schedule.get("pacing"),
        "initial fraction": schedule.get("initial_fraction"),
        "warmup iterations": schedule.get("warmup_iterations"),
        "dataset fingerprint": (manifest.get("dataset_fingerprint") or "")[:16],
        "parents": ", ".join(p[:23] for p in manifest.get("parents", [])),
        "code version": manifest.get("code_version"),
        **{f"metric {k}": v for k, v in (manifest.get("metrics") or {}).items()},
    }.items():
        summary.add_row(str(key), _cell(value))
    files = Table(title="files (verified)")
    for column in ("file", "shape", "dtype", "sha256"):
        files.add_column(column)
    for file_name, entry in sorted(manifest["files"].items()):
        shape = entry.get("shape")
        files.add_row(
            file_name,
            "" if shape is None else "x".join(map(str, shape)),
            entry.get("dtype") or "",
            entry["sha256"][:12],
        )
    console = _console()
    console.print(summary)
    console.print(files)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@app.command()
def preview(
    path: Annotated[
        str, typer.Argument(help="artifacts/<name>/<version> or .../latest (or a URL)")
    ],
    iteration: Annotated[int, typer.Option("--iteration", "-t", help="training iteration")] = 0,
    top: Annotated[int, typer.Option(help="samples listed at each end")] = 5,
) -> None:
    """Target fraction, temperature and the most/least likely samples at one iteration."""
    import numpy as np
    from rich.table import Table

    from cl_core.sampler import load_curriculum

    with bad_input_exits():
        if iteration < 0:
            raise BadInput(f"--iteration must be >= 0, got {iteration}")
        if top < 1:
            raise BadInput(f"--top must be >= 1, got {top}")
        curriculum = load_curriculum(path)
        probabilities = curriculum.probabilities(iteration)
    order = np.argsort(-probabilities, kind="stable")
    if curriculum.sample_mask is not None:  # excluded samples are never drawn: not "least likely"
        order = order[curriculum.sample_mask[order]]
    console = _console()
    temperature = curriculum.temperature(iteration)
    console.print(
        f"iteration {iteration}: target fraction {curriculum.target_fraction(iteration):.4f}, "
        f"effective fraction {curriculum.effective_fraction(iteration):.4f}, temperature "
        + ("inf (uniform)" if not np.isfinite(temperature) else f"{temperature:.4g}")
    )
    uniform = 1.0 / curriculum.n_valid
    for title, indices in (
        (f"top {top} (most likely)", order[:top]),
        (f"bottom {top} (least likely)", order[::-1][:top]),
    ):
        table = Table(title=title)
        for column in ("index", "probability", "x uniform", "difficulty"):
            table.add_column(column, justify="right")
        for index in indices:
            table.add_row(
                str(int(index)),
                f"{probabilities[index]:.3e}",
                f"{probabilities[index] / uniform:.3g}",
                f"{curriculum.difficulty[index]:.4f}",
            )
        console.print(table)


# --------------------------------------------------------------------------------------------
# deploy / serve
# --------------------------------------------------------------------------------------------


def _require_checkout(path: Path) -> None:
    if not path.is_file():
        raise BadInput(
            f"{path} not found; deploy/serve run from a source checkout of cl-curriculum "
            "(pip install -e .)"
        )


@app.command()
def deploy(
    pool: Annotated[str, typer.Option(help="process work pool (created if missing)")] = (
        "curriculum-pool"
    ),
) -> None:
    """Register the nightly deployment of deployments/prefect.yaml with a Prefect server."""
    with bad_input_exits():
        _require_checkout(PREFECT_YAML)
        if not os.environ.get("PREFECT_API_URL"):
            raise BadInput(
                "deploy needs a Prefect server: run `prefect server start` and "
                "`export PREFECT_API_URL=http://127.0.0.1:4200/api` first"
            )
    prefect = [sys.executable, "-m", "prefect"]
    _call([*prefect, "work-pool", "create", pool, "--type", "process", "--overwrite"])
    _call(
        [*prefect, "--no-prompt", "deploy", "--prefect-file", str(PREFECT_YAML), "--all"],
        cwd=ROOT,
    )
    typer.echo(f"Deployed. Start a worker: prefect worker start --pool {pool}")


def _call(command: list[str], cwd: Path | None = None) -> None:
    completed = subprocess.run(command, cwd=cwd, check=False)
    if completed.returncode != 0:
        fail(f"`{' '.join(command[2:])}` failed (exit {completed.returncode})", EXIT_FAILED)


@app.command()
def serve(
    cron: Annotated[str | None, typer.Option(help="override the nightly cron schedule")] = None,
) -> None:
    """Serve the nightly deployment from this process (no work pool or worker needed)."""
    from flows.prefect_env import configure_environment

    configure_environment()  # before Prefect is first imported
    with bad_input_exits():
        _require_checkout(SERVE_SCRIPT)
        module = _load_serve_module()
        if cron is not None:
            from prefect.client.schemas.schedules import CronSchedule

            CronSchedule(cron=cron)  # validates the expression before serving
    module.main(["--cron", cron] if cron else [])


def _load_serve_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("cl_curriculum_serve", SERVE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


from flows.cli_ab import ab  # noqa: E402  (the A/B harness command lives in its own module)

app.command(name="ab")(ab)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``cl-curriculum`` console script."""
    command: Callable[..., Any] = typer.main.get_command(app)
    return command(args=argv, prog_name="cl-curriculum")


if __name__ == "__main__":
    main()
