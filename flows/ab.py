"""``curriculum-ab``: does the curriculum help? Four arms x seeds, cached per arm and seed.

The flow trains :mod:`cl_core.ab`'s arms (easy, uniform, hard, shuffled) for every seed, one
Prefect task per (arm, seed) whose cache key is the content id of everything that determines its
curve: the artifact version, the task identity (data + model), the A/B config without the arm list
and the seed count, the arm and the seed. A rerun with one more seed therefore computes only that
seed's runs; everything else is a ``Cached`` state (and the run file on disk is the truth: a cache
record whose file is gone recomputes).

Results go to ``<output>/<artifact version>/<config id>/`` (``runs/ab/...`` by default):

- ``runs/<arm>-seed<seed>.json``: each logged curve;
- ``results.json``: the config, the artifact, the task, every run, the summary and the verdict;
- ``table.md``: the per-arm table and the accuracy per step; ``curves.png``: the plot.

The published artifact directory is only read. In the Prefect UI the run shows a table artifact
(per arm), a table of accuracy per step, and the plot with the verdict (a markdown artifact with
the PNG embedded, see :func:`flows.ui.publish_png`).
"""

from __future__ import annotations

import functools
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from cl_core.io import atomic_write_bytes
from flows import files
from flows.ids import WorkDir, content_id
from flows.tasks import CONTENT_ID, configured
from flows.ui import publish_png, ui_artifacts

RUNS_DIR = "runs"
RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
PLOT_FILE = "curves.png"
DATASETS = ("digits", "imagefolder:PATH", "zarr:PATH")


# --------------------------------------------------------------------------------------------
# Inputs: the artifact, the task (data + model), the config
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def load_artifact(path: str) -> Any:
    """The artifact's curriculum (verified), memoised per process."""
    from cl_core.sampler import load_curriculum

    return load_curriculum(path)


@functools.lru_cache(maxsize=4)
def build_task(
    dataset: str,
    probe: bool = False,
    model: str | None = None,
    weights: str | None = None,
    device: str | None = None,
    image_size: int | None = None,
    objective: str = "supervised",
) -> Any:
    """The :class:`cl_core.ab.ABTask` for a dataset spec, memoised per process.

    ``digits`` (no model): the small CNN on the 8x8 digits; ``zarr:PATH`` or ``probe``: a linear
    probe on the store's frozen embeddings; ``imagefolder:PATH`` or ``digits`` with a model: that
    timm model (default the bundled EfficientNet-Lite0) with a new linear head, GPU when present.
    ``objective="mae"``: a masked autoencoder from random initialisation (digits: a small ViT;
    an image folder: ViT-S/16, GPU when present).
    """
    from cl_core import ab

    kind, _, location = dataset.partition(":")
    if kind not in ("digits", "imagefolder", "zarr") or (kind != "digits" and not location):
        raise ValueError(
            f"--dataset {dataset!r} is not one of {', '.join(DATASETS)}; e.g. --dataset digits"
        )
    if objective == "mae":
        return _mae_task(kind, location, dataset, probe, model, weights, device, image_size)
    if probe or kind == "zarr":
        if kind != "zarr":
            raise ValueError(
                f"--probe trains a linear probe on stored embeddings: pass --dataset zarr:PATH "
                f"(an embedding store, e.g. runs/embeddings/<id>.zarr), not {dataset!r}"
            )
        if not Path(location).expanduser().exists():
            raise FileNotFoundError(
                f"--dataset {dataset!r}: no embedding store at {location!r}; pass zarr:PATH of a "
                "store written by a pipeline run (runs/embeddings/*.zarr)"
            )
        return ab.probe_task(str(Path(location).expanduser()), device=device or "cpu")
    if kind == "digits" and model is None:
        return ab.digits_task(device=device or "cpu")
    from flows.params import DEMO_MODEL

    if kind == "imagefolder" and not Path(location).expanduser().is_dir():
        raise FileNotFoundError(
            f"--dataset {dataset!r}: {location!r} is not a directory; pass imagefolder:PATH with "
            "PATH/<class>/<image files>"
        )
    return ab.image_task(
        dataset,
        model or DEMO_MODEL,
        weights=weights,
        image_size=image_size,
        device=device,
    )


def _mae_task(
    kind: str,
    location: str,
    dataset: str,
    probe: bool,
    model: str | None,
    weights: str | None,
    device: str | None,
    image_size: int | None,
) -> Any:
    from cl_core import ab

    if probe or kind == "zarr":
        raise ValueError(
            f"--objective mae pretrains on images: pass --dataset digits or imagefolder:PATH, "
            f"not {dataset!r}{' with --probe' if probe else ''}"
        )
    if model is not None or weights is not None:
        raise ValueError(
            "--objective mae trains its own ViT from random initialisation (digits: 64 wide x 4 "
            "blocks; an image folder: ViT-S/16); drop --model/--weights"
        )
    if kind == "digits":
        return ab.mae_digits_task(device=device or "cpu")
    if not Path(location).expanduser().is_dir():
        raise FileNotFoundError(
            f"--dataset {dataset!r}: {location!r} is not a directory; pass imagefolder:PATH with "
            "PATH/<class>/<image files>"
        )
    return ab.mae_image_task(dataset, image_size=image_size, device=device)


def ab_config(
    *,
    arms: tuple[str, ...] | list[str] | str,
    steps: int | None,
    batch_size: int | None,
    eval_every: int | None,
    lr: float | None,
    optimizer: str | None,
    warmup_fraction: float | None,
    holdout_fraction: float,
    split_seed: int,
    objective: str = "supervised",
) -> Any:
    """The :class:`cl_core.ab.ABConfig` (None: the objective's recipe, e.g. ``eval_every``
    steps // 20, mae steps // 10)."""
    from cl_core.ab import ABConfig

    return ABConfig(
        arms=arms,  # type: ignore[arg-type]
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        lr=lr,
        optimizer=optimizer,
        warmup_fraction=warmup_fraction,
        holdout_fraction=holdout_fraction,
        split_seed=split_seed,
        objective=objective,
    )


def config_payload(curriculum: Any, ab_task: Any, config: Any) -> dict[str, Any]:
    """What determines every arm's curve except the arm and the seed."""
    document = config.to_json()
    document.pop("arms")  # a new arm or seed adds runs to the same results directory
    return {"artifact": curriculum.version, "task": ab_task.identity, "config": document}


def results_dir(output: str | Path, version: str, config_id: str) -> Path:
    return Path(output).expanduser().absolute() / version / config_id


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """What one (arm, seed) task needs to rebuild its inputs in any process."""

    artifact: str
    dataset: str
    probe: bool
    model: str | None
    weights: str | None
    device: str | None
    image_size: int | None
    config: Any  # cl_core.ab.ABConfig (a frozen dataclass of plain values)


def _run_file(directory: Path, arm: str, seed: int) -> Path:
    return directory / RUNS_DIR / f"{arm}-seed{seed}.json"


@task(
    name="ab-arm",
    cache_policy=CONTENT_ID,
    persist_result=True,
    result_serializer="json",
    task_run_name="ab-{arm}-seed{seed}",
)
def ab_arm_task(content_id: str, spec: RunSpec, arm: str, seed: int, run_file: str) -> dict:
    """Train one arm with one seed; write and return its logged curve (idempotent)."""
    from cl_core.ab import ArmRun, train_arm

    path = Path(run_file)
    if path.is_file():
        return ArmRun.from_json(files.load_json(path)).to_json()
    curriculum = load_artifact(spec.artifact)
    ab_task = build_task(
        spec.dataset,
        spec.probe,
        spec.model,
        spec.weights,
        spec.device,
        spec.image_size,
        spec.config.objective,
    )
    run = train_arm(ab_task, curriculum, arm, seed, spec.config)
    document = run.to_json() | {"content_id": content_id}
    files.save_json(path, document)
    return document


# --------------------------------------------------------------------------------------------
# The flow
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ABOutcome:
    """What ``curriculum-ab`` returns: where the results are and what was recomputed."""

    results_dir: str
    results_path: str
    table_path: str
    plot_path: str
    config_id: str
    artifact_version: str
    verdict: str
    outcome: str
    notes: tuple[str, ...]
    table: str
    task_states: tuple[tuple[str, int, str], ...]  # (arm, seed, Cached | Completed | ...)
    seconds: float

    def count(self, state_name: str) -> int:
        return sum(state == state_name for _, _, state in self.task_states)


@flow(name="curriculum-ab")
def curriculum_ab(
    artifact: str,
    dataset: str = "digits",
    seeds: int = 3,
    arms: tuple[str, ...] = ("easy", "uniform", "hard", "shuffled"),
    steps: int | None = None,
    batch_size: int | None = None,
    eval_every: int | None = None,
    lr: float | None = None,
    optimizer: str | None = None,
    warmup_fraction: float | None = 0.5,
    holdout_fraction: float = 0.2,
    split_seed: int = 0,
    probe: bool = False,
    model: str | None = None,
    weights: str | None = None,
    device: str | None = None,
    image_size: int | None = None,
    output: str = "runs/ab",
    objective: str = "supervised",
) -> ABOutcome:
    """Train every arm with seeds ``0 .. seeds-1``; write results, table and plot; publish them
    to the UI. See the module docstring and :mod:`cl_core.ab` for the definitions. None for
    ``steps``, ``batch_size``, ``lr`` or ``optimizer``: the objective's recipe
    (``cl_core.ab.RECIPES``)."""
    from cl_core.ab import check_artifact_matches, check_seeds, summarize

    logger = get_run_logger()
    started = time.perf_counter()
    seed_values = check_seeds(seeds)
    config = ab_config(
        arms=arms,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        lr=lr,
        optimizer=optimizer,
        warmup_fraction=warmup_fraction,
        holdout_fraction=holdout_fraction,
        split_seed=split_seed,
        objective=objective,
    )
    curriculum = load_artifact(str(artifact))
    ab_task = build_task(dataset, probe, model, weights, device, image_size, objective)
    check_artifact_matches(curriculum, ab_task)
    payload = config_payload(curriculum, ab_task, config)
    config_id = content_id("ab", payload)
    directory = results_dir(output, str(curriculum.version), config_id)
    # The version directory, not `latest`: every task trains on the version the ids name.
    version_dir = str(curriculum.path)
    spec = RunSpec(version_dir, dataset, probe, model, weights, device, image_size, config)
    work = WorkDir.at(output)
    documents, states = [], []
    for seed in seed_values:
        for arm in config.arms:
            run_id = content_id("ab-run", {**payload, "arm": arm, "seed": seed})
            run_file = _run_file(directory, arm, seed)
            runner = configured(ab_arm_task, work, done=run_file.is_file())
            state = runner(
                content_id=run_id,
                spec=spec,
                arm=arm,
                seed=seed,
                run_file=str(run_file),
                return_state=True,
            )
            documents.append(state.result())
            states.append((arm, seed, str(state.name)))
            logger.info("%s seed %d: %s", arm, seed, state.name)
    summary = summarize(documents)
    outcome = _write_results(directory, curriculum, ab_task, config, payload, documents, summary)
    _publish_ui(directory, curriculum, summary, config_id)
    logger.info(summary.verdict)
    return ABOutcome(
        results_dir=str(directory),
        results_path=str(directory / RESULTS_FILE),
        table_path=str(directory / TABLE_FILE),
        plot_path=str(directory / PLOT_FILE),
        config_id=config_id,
        artifact_version=str(curriculum.version),
        verdict=summary.verdict,
        outcome=summary.outcome,
        notes=summary.notes,
        table=outcome,
        task_states=tuple(states),
        seconds=round(time.perf_counter() - started, 3),
    )


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    text = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _write_results(
    directory: Path,
    curriculum: Any,
    ab_task: Any,
    config: Any,
    payload: dict[str, Any],
    documents: list[dict],
    summary: Any,
) -> str:
    """results.json, table.md and curves.png (atomic writes); returns the table text."""
    from cl_core.ab import format_table, plot_curves

    table = format_table(summary)
    title = f"{curriculum.manifest.get('name', '')} @ {curriculum.version}: {summary.outcome}"
    warmup = config.warmup_iterations(curriculum.warmup_iterations)
    png = _png(plot_curves(summary, title=title, warmup=warmup))
    atomic_write_bytes(directory / PLOT_FILE, png)
    text = f"{table}\n\n{summary.verdict}\n" + "".join(f"\n{note}\n" for note in summary.notes)
    atomic_write_bytes(directory / TABLE_FILE, text.encode("utf-8"))
    files.save_json(
        directory / RESULTS_FILE,
        {
            "artifact": {
                "path": str(curriculum.path),
                "version": curriculum.version,
                "name": curriculum.manifest.get("name"),
                "schedule": curriculum.schedule.config.to_json(),
            },
            "task": {"name": ab_task.name, "description": ab_task.description, **payload["task"]},
            "config": config.to_json(),
            "seeds": sorted({d["seed"] for d in documents}),
            "runs": [{k: v for k, v in d.items() if k != "content_id"} for d in documents],
            "summary": summary.to_json(),
        },
    )
    return table


def _publish_ui(directory: Path, curriculum: Any, summary: Any, config_id: str) -> None:
    name = str(curriculum.manifest.get("name") or "curriculum")
    if summary.objective != "supervised":  # each objective keeps its own latest artifacts
        name = f"{name}-{summary.objective}"
    with ui_artifacts() as ui:
        ui.create(
            create_table_artifact,
            summary.table_rows(),
            key=artifact_key(name, "ab-summary"),
            description=f"A/B per arm ({directory}): {summary.verdict}",
        )
        ui.create(
            create_table_artifact,
            summary.curve_rows(),
            key=artifact_key(name, "ab-accuracy-per-step"),
            description=f"{summary.metric} (mean ± std over seeds) at each evaluation step",
        )
        notes = "".join(f"\n\n{note}" for note in summary.notes)
        ui.create(
            publish_png,
            directory / PLOT_FILE,
            key=artifact_key(name, "ab-plot"),
            title=f"A/B: {summary.metric} vs steps ({curriculum.version}/{config_id})",
            text=f"**{summary.verdict}**{notes}\n\nFiles: `{directory}`",
            description="Accuracy vs steps per arm (mean ± 1 std over seeds) and the verdict",
        )
