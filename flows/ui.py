"""What a run shows in the Prefect UI besides its logs: artifacts created off a flow's critical
path (tables, summaries, links, plots), their keys, and the stages' keyed tables."""

from __future__ import annotations

import base64
import contextlib
import contextvars
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cl_core.cluster import choice_from_records


class UIArtifacts:
    """Creates Prefect UI artifacts on background threads, off the flow's critical path.

    Each artifact is an API round trip (15-40 ms against a busy ephemeral server on a small
    machine) whose answer the flow does not need, so it runs beside the flow's next step. Leaving
    the ``with`` block waits for every artifact and re-raises the first error, so all of them
    exist when the flow returns. Calls run in a copy of the caller's context: they attach to the
    caller's flow run and share its API client.
    """

    def __init__(self, max_workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="ui-artifacts")
        self._pending: list[Future[Any]] = []

    def create(self, function: Any, *args: Any, **kwargs: Any) -> None:
        """Call ``function(*args, **kwargs)`` (an artifact creator) in the background."""
        context = contextvars.copy_context()
        self._pending.append(self._pool.submit(context.run, function, *args, **kwargs))

    def __enter__(self) -> UIArtifacts:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        try:
            for future in self._pending:
                error = future.exception()
                if error is not None and exc_type is None:
                    raise error  # the flow's own exception, if any, takes precedence
        finally:
            self._pool.shutdown(wait=True)


_ui_scope: contextvars.ContextVar[UIArtifacts | None] = contextvars.ContextVar(
    "cl_ui_artifacts", default=None
)


@contextlib.contextmanager
def ui_artifacts() -> Iterator[UIArtifacts]:
    """The UI-artifact queue of the outermost flow in this call stack.

    Stage flows run as subflows share the parent's queue, so a stage's last artifact overlaps
    the next stage's start and the parent waits for all of them before it returns; a stage flow
    run on its own waits for its artifacts itself. (The API client the artifacts use is the
    outermost flow's, open until it returns.)
    """
    current = _ui_scope.get()
    if current is not None:
        yield current
        return
    with UIArtifacts() as ui:
        token = _ui_scope.set(ui)
        try:
            yield ui
        finally:
            _ui_scope.reset(token)


# --------------------------------------------------------------------------------------------
# Plots in the Prefect UI
# --------------------------------------------------------------------------------------------

#: Largest PNG embedded in a markdown artifact. The API stores artifact data in its database
#: and every artifacts page load ships it to the browser; plots of a few hundred KB are fine.
MAX_EMBEDDED_PNG_BYTES = 2_000_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_markdown(png: bytes | str | Path, alt: str = "plot") -> str:
    """Markdown that shows a PNG inline: ``![alt](data:image/png;base64,...)``.

    Both Prefect UIs render it: the Vue UI (the default of Prefect 3.8) turns markdown images into
    ``<img src=...>`` without rewriting the URL, and the React UI (the default from 3.9) keeps
    ``data:image/`` sources on purpose (its markdown renderer whitelists them). An *image*
    artifact (``create_image_artifact``) would need a URL the browser can fetch (a ``file://``
    path on the flow's machine is not one) and prints the URL under the image.

    Parameters
    ----------
    png : bytes or path
        PNG file contents, or the path of a PNG file.
    alt : str
        Alternative text (brackets are removed).
    """
    data = Path(png).read_bytes() if isinstance(png, (str, Path)) else bytes(png)
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{alt!r}: not a PNG (the data does not start with the PNG signature)")
    if len(data) > MAX_EMBEDDED_PNG_BYTES:
        raise ValueError(
            f"{alt!r}: the PNG has {len(data)} bytes, more than {MAX_EMBEDDED_PNG_BYTES} embeddable "
            "in a UI artifact; save it with a lower dpi or size"
        )
    text = alt.replace("[", "").replace("]", "")
    return f"![{text}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"


def publish_png(
    png: bytes | str | Path,
    key: str,
    *,
    title: str | None = None,
    text: str = "",
    description: str | None = None,
) -> Any:
    """Create a markdown artifact showing a PNG in the Prefect UI (see :func:`png_markdown`).

    Parameters
    ----------
    png : bytes or path
        The image (a matplotlib figure saved as PNG).
    key : str
        Artifact key (lowercase letters, digits, dashes); the artifacts page lists it by key.
    title : str, optional
        A heading above the image (also the image's alt text).
    text : str
        Markdown shown below the image (a caption, a verdict, the path of the file on disk).
    description : str, optional
        The artifact's description.

    Returns
    -------
    UUID
        The artifact id. Call it through :meth:`UIArtifacts.create` to keep it off the flow's
        critical path: ``ui.create(publish_png, path, key=..., title=...)``.
    """
    from prefect.artifacts import create_markdown_artifact

    parts = [f"## {title}"] if title else []
    parts.append(png_markdown(png, alt=title or key))
    if text:
        parts.append(text)
    return create_markdown_artifact("\n\n".join(parts), key=key, description=description)


#: The report's plots shown in the UI: PLOT_FILES name -> (artifact key suffix, title).
REPORT_PLOTS = {
    "sweep": ("plot-k-sweep", "Davies-Bouldin index and inertia vs k"),
    "difficulty": ("plot-difficulty", "Difficulty per cluster"),
    "schedule": ("plot-schedule", "Schedule: target effective fraction and temperature"),
    "samples": ("plot-samples", "Samples per cluster, prototypical to hard"),
}


def publish_report_plots(ui: UIArtifacts, version_dir: Any, files: list[str], name: str) -> int:
    """Queue one markdown artifact per plot of a published version (PNG read on the pool).

    Parameters
    ----------
    ui : UIArtifacts
        The queue of the running flow (:func:`ui_artifacts`).
    version_dir : path or URL
        The published version directory (local or object storage).
    files : list of str
        File names in it (the publish receipt's ``files``); plots not among them are skipped
        (no sweep plot for an explicit k, no sample grid for non-image data).
    name : str
        The curriculum's name: artifact keys are ``<name>-plot-...``.

    Returns
    -------
    int
        How many plot artifacts were queued.
    """
    from cl_core.io import as_location
    from cl_core.report import PLOT_FILES

    queued = 0
    for plot, (suffix, title) in REPORT_PLOTS.items():
        if PLOT_FILES[plot] not in files:
            continue
        location = as_location(version_dir) / PLOT_FILES[plot]
        ui.create(_publish_plot_file, location, key=artifact_key(name, suffix), title=title)
        queued += 1
    return queued


def _publish_plot_file(location: Any, *, key: str, title: str) -> Any:
    return publish_png(
        location.read_bytes(),
        key,
        title=title,
        text=f"`{location}`",
        description=f"{title} (the published version's {location.name})",
    )


# --------------------------------------------------------------------------------------------
# Keyed tables of the stages (the UI shows the latest per key)
# --------------------------------------------------------------------------------------------


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    text = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def publish_sweep_table(sweep: list[dict[str, Any]], chosen_k: int, name: str) -> None:
    """Davies-Bouldin index (mean and standard error over the replicates), whether it is in the
    standard-error band, and inertia per k; the chosen k marked, the band in the description."""
    from prefect.artifacts import create_table_artifact

    choice = choice_from_records(sweep)
    create_table_artifact(
        [
            {
                "k": p["k"],
                "davies_bouldin": round(p["davies_bouldin"], 4),
                "se": None
                if p.get("davies_bouldin_se") is None
                else round(p["davies_bouldin_se"], 4),
                "in_band": p["k"] in choice.in_band,
                "inertia": round(p["inertia"], 2),
                "chosen": p["k"] == chosen_k,
            }
            for p in sweep
        ],
        key=artifact_key(name, "k-sweep"),
        description=(
            "Davies-Bouldin index per k (mean ± SE over half-sample replicates; lower is better) "
            f"and inertia. {choice.summary()}" + (f". {choice.flat_note()}" if choice.flat else "")
        ),
    )


def publish_clusters_table(clusters: list[dict[str, Any]], name: str) -> None:
    """Per cluster: size, mean distance to the centroid, medoid."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        clusters,
        key=artifact_key(name, "clusters"),
        description="Per cluster: size, mean distance to the centroid, medoid (sample index)",
    )
