"""``cl-curriculum inspect`` and ``preview``: read a published artifact (nothing of Prefect)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flows.console import BadInput, bad_input_exits


def _console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False)


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
    lineage = manifest.get("lineage")
    if lineage:
        from cl_core.update import lineage_rows  # the clustering stack: imported on use

        table = Table(title="lineage", show_header=False)
        for key, value in lineage_rows(lineage).items():
            table.add_row(key, value)
        console.print(table)
    excluded = manifest.get("excluded")
    if excluded:
        table = Table(title=f"excluded samples ({excluded.get('count')})")
        table.add_column("index", justify="right")
        table.add_column("path")
        paths = excluded.get("paths") or [None] * len(excluded.get("indices", []))
        for index, sample_path in zip(excluded.get("indices", []), paths, strict=False):
            table.add_row(str(index), sample_path or "")
        console.print(table)
    console.print(files)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


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
