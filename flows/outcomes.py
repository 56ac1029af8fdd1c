"""What the stage flows hand each other and the parent returns: frozen pydantic models, no data.

Every outcome carries ``task_states``, the final state name of each task its stage ran
(:class:`TaskLedger`), so callers (the CLI summary, tests) see what was recomputed without
querying the API, whose task-run records are written asynchronously.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

IDENTITY_METHODS = {
    "listing": "full file listing (relative path, size and mtime of every file)",
    "content": "sha256 of every file's content (--verify-content)",
    "explicit": "the given dataset id (--dataset-id)",
    "array": "hash of the array data",
    "sampled": "a hash of the length and ~16 sampled items",
}
SAMPLED_IDENTITY_WARNING = (
    "the dataset identity is a hash of ~16 sampled items: a change elsewhere in the data is "
    "not noticed and a rerun may serve the old embeddings; pass --dataset-id (dataset_id=) "
    "naming the data's version"
)


class _Outcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbeddingOutcome(_Outcome):
    """The embedding store a run clusters: identity and shape, no data."""

    store_path: str
    fingerprint: str
    dataset_fingerprint: str
    n_rows: int
    dim: int
    model_id: str | None
    has_labels: bool
    source: str  # "embedded" or "zarr"
    n_shards: int = 0
    shards_computed: int = 0
    identity_method: str | None = None  # how the dataset identity was computed (embedded only)
    reuse: dict[str, Any] | None = None  # rows copied from an earlier store (cl_core reuse_rows)
    skipped: list[dict[str, Any]] = []  # samples left out (on_bad_sample="skip")
    task_states: list[tuple[str, str]] = []


class ClusterOutcome(_Outcome):
    """The cluster stage's directory (centroids, assignment, distances) and its summary."""

    cluster_id: str
    cluster_dir: str
    n_clusters: int
    chosen_by: str
    sweep: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    warning: str | None = None  # e.g. Davies-Bouldin chose an end of the k range
    # the nightly update: lineage, and previous_path when a previous version was used
    update: dict[str, Any] | None = None
    task_states: list[tuple[str, str]] = []


class CurriculumOutcome(_Outcome):
    """The published version and the ids of the difficulty and schedule it was built from."""

    artifact_path: str
    version: str
    name: str
    report_path: str
    difficulty_id: str
    schedule_id: str
    task_states: list[tuple[str, str]] = []
    files: list[str] = []  # the report files published with the version (plots, report.md)


class PipelineResult(_Outcome):
    """What a run produced; ``stage_runs`` maps stage name to its Prefect flow run id."""

    artifact_path: str
    version: str
    name: str
    report_path: str
    n_samples: int
    dim: int
    model_id: str | None
    n_clusters: int
    chosen_by: str
    stage_runs: dict[str, str]
    task_states: dict[str, list[str]]
    seconds: float
    dataset_identity: str | None = None  # identity method: listing, content, sampled, ...
    warnings: list[str] = []
    skipped: list[dict[str, Any]] = []
    reuse: dict[str, Any] | None = None  # EmbeddingOutcome.reuse
    lineage: dict[str, Any] | None = None  # the published version's lineage (cl_core.update)

    def count(self, state_name: str) -> int:
        """How many task runs ended in ``state_name`` (e.g. ``Cached``)."""
        return sum(states.count(state_name) for states in self.task_states.values())


class TaskLedger:
    """The final state name of every task a stage ran (``Cached``, ``Completed``, ...)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def call(self, prefect_task: Any, **kwargs: Any) -> Any:
        """Run ``prefect_task`` in the flow's thread, record its state, return its result."""
        state = prefect_task(**kwargs, return_state=True)
        self.entries.append((prefect_task.name, str(state.name)))
        return state.result()

    def record(self, task_name: str, futures: list[Any]) -> None:
        """Record the final states of finished futures."""
        for future in futures:
            future.wait()  # sets the future's final state (its API state may still lag)
            self.entries.append((task_name, str(future.state.name)))


def collect_states(*outcomes: Any) -> dict[str, list[str]]:
    """Task name -> the final states of its runs, over the stages' outcomes."""
    states: dict[str, list[str]] = {}
    for outcome in outcomes:
        for task_name, state_name in outcome.task_states:
            states.setdefault(task_name, []).append(state_name)
    return states


def reuse_line(reuse: dict[str, Any]) -> str:
    """One line: "reused R rows from <store>; embedded A+C (added+changed); X removed", or
    "reused 0 rows: <why>"."""
    if not reuse.get("reused"):
        return f"reused 0 rows: {reuse.get('reason', 'no file is unchanged')}"
    parent = str(reuse.get("parent_path", "")).rstrip("/").rsplit("/", 1)[-1]
    parts = [f"reused {reuse['reused']} rows from {parent.removesuffix('.zarr')}"]
    counts, names = [reuse["added"], reuse["changed"]], "added+changed"
    if reuse.get("retried"):
        counts, names = [*counts, reuse["retried"]], names + "+retried"
    parts.append(f"embedded {'+'.join(map(str, counts))} ({names})")
    parts.append(f"{reuse['removed']} removed")
    parts += [f"skipped {rejected}" for rejected in reuse.get("rejected", [])]
    return "; ".join(parts)


def run_warnings(embedded: EmbeddingOutcome, clustered: ClusterOutcome) -> list[str]:
    """What a person should know about this run's choices (shown by the CLI, UI and report)."""
    warnings = []
    if embedded.identity_method == "sampled":
        warnings.append(SAMPLED_IDENTITY_WARNING)
    if clustered.warning:
        warnings.append(clustered.warning)
    if embedded.skipped:
        warnings.append(
            f"{len(embedded.skipped)} sample(s) could not be loaded and were left out of the "
            "curriculum (probability 0): " + _skipped_listing(embedded.skipped)
        )
    return warnings


def _skipped_listing(skipped: list[dict[str, Any]], limit: int = 5) -> str:
    shown = ", ".join(f"{s['index']} ({s.get('path') or 'no path'})" for s in skipped[:limit])
    more = len(skipped) - limit
    return shown + (f" and {more} more (see the run summary)" if more > 0 else "")
