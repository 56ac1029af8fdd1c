"""The ``embed`` stage flow: every sample into a sharded Zarr store (resumable), or an existing
``zarr:`` store opened as is.

The flow plans (content id, which shards are done on disk), maps one task per shard and reports
progress; :mod:`flows.tasks` calls ``cl_core.embed.plan_store`` / ``embed_shards``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows import inputs, progress, tasks
from flows.done import (
    copied_shards,
    missing_shards,
    partly_copied_shards,
    shard_rows,
    store_complete,
    store_planned,
)
from flows.ids import WorkDir, content_id
from flows.outcomes import SAMPLED_IDENTITY_WARNING, EmbeddingOutcome, TaskLedger, reuse_line
from flows.params import DatasetParams, EmbedParams, OutputParams
from flows.runners import embed_runner
from flows.ui import artifact_key

SHARD_RETRY_DELAYS = [2, 10]  # seconds; a transient failure (OOM, I/O) usually clears quickly
# Options that change how fast, not what, is computed: left out of the content ids so that e.g.
# another batch size or Dask backend reuses earlier results. (precision enters resolved below;
# n_threads, the CPU thread count, is one per store, recorded in the store and left out of its
# fingerprint too: cl_core.store.NON_IDENTITY_KEYS.)
EMBED_RUNTIME_FIELDS = frozenset(
    {
        "batch_size",
        "device",
        "num_workers",
        "writer_queue",
        "channels_last",
        "precision",
        "n_threads",
    }
)


def embed_identity(dataset_fingerprint: str, loaded: Any, embedding: EmbedParams, spec: Any) -> str:
    """Content id of an embedding: dataset, model identity and every value-affecting option.

    ``auto`` options that resolve differently by machine (precision: bf16 on a GPU, fp32 on a
    CPU; decode: the GPU or the CPU decoder) enter the id resolved, as ``spec`` (the resolved
    dataset) and the device make them: different stored values never share an id.
    """
    from cl_core.devices import resolve_device
    from cl_core.embed import resolve_decode, resolve_precision  # torch-heavy

    config = embedding.to_config()
    device = resolve_device(config.device)
    values = {k: v for k, v in dataclasses.asdict(config).items() if k not in EMBED_RUNTIME_FIELDS}
    values["decode"] = resolve_decode(config.decode, spec, loaded, device)
    return content_id(
        "embed",
        {
            "dataset": dataset_fingerprint,
            "model": loaded.model_id,
            "weights_sha256": loaded.weights_sha256,
            "precision": resolve_precision(config.precision, device),
            "config": values,
        },
    )


def existing_store(dataset: DatasetParams) -> EmbeddingOutcome:
    """The outcome for a ``zarr:PATH`` dataset: a finished store, nothing to embed."""
    return EmbeddingOutcome(**inputs.open_complete_store(dataset), source="zarr")


@flow(name="embed", task_runner=ThreadPoolTaskRunner(max_workers=1))  # type: ignore[arg-type]
def embed_flow(
    dataset: DatasetParams, embedding: EmbedParams, output: OutputParams
) -> EmbeddingOutcome:
    """Embed every sample into a sharded Zarr store (resumable), or open a ``zarr:`` store."""
    logger = get_run_logger()
    if dataset.kind == "zarr":
        outcome = existing_store(dataset)
        logger.info(
            "Using embedding store %s (%d x %d)", dataset.location, outcome.n_rows, outcome.dim
        )
        return outcome

    from cl_core.embed import dataset_identity  # torch-heavy

    work = WorkDir.at(output.work_dir)
    loaded, resolved = inputs.resolve_inputs(dataset, embedding)
    identity = dataset_identity(resolved, dataset.dataset_id, verify_content=dataset.verify_content)
    logger.info("Dataset identity: %s", identity.detail)
    if identity.method == "sampled":
        logger.warning(SAMPLED_IDENTITY_WARNING)
    embed_id = embed_identity(identity.fingerprint, loaded, embedding, resolved)
    plan = tasks.EmbedPlan(
        embed_id=embed_id,
        store_path=str(work.store(embed_id)),
        dataset=dataset,
        embedding=embedding,
        identity=dataclasses.asdict(identity),
    )
    ledger = TaskLedger()
    layout = ledger.call(
        tasks.configured(tasks.create_store_task, work, done=store_planned(plan.store_path)),
        content_id=f"{embed_id}-store",
        plan=plan,
    )
    computed = _embed_shards(
        plan, work, output, int(layout["n_shards"]), dataset.artifact_name(), ledger
    )
    described = ledger.call(
        tasks.configured(tasks.finalize_store_task, work, done=store_complete(plan.store_path)),
        content_id=f"{embed_id}-final",
        store_path=plan.store_path,
    )
    if layout.get("reuse") is not None:
        logger.info("Embeddings: %s", reuse_line(layout["reuse"]))
    logger.info(
        "Embedded %d samples with %s (D = %d): %d of %d shards computed now, the rest cached",
        described["n_rows"],
        loaded.model_id,
        described["dim"],
        computed,
        layout["n_shards"],
    )
    return EmbeddingOutcome(
        **described,
        source="embedded",
        n_shards=int(layout["n_shards"]),
        shards_computed=computed,
        identity_method=identity.method,
        reuse=layout.get("reuse"),
        task_states=ledger.entries,
    )


@functools.lru_cache(maxsize=8)
def embed_flow_on(address: str | None, gpus: str | None) -> Any:
    """``embed_flow`` whose shard tasks run on a Dask cluster: the one at ``address``, or a
    local one with a worker process per GPU (``gpus``: ``"N"`` or ``"all"``); ``embed_flow``
    itself when neither is given. Each worker embeds whole shards and writes them into the
    shared store (one writer per shard: the store's shard locks and done markers); tasks return
    the shard's index, so nothing large passes through the scheduler or Prefect.
    """
    runner = embed_runner(OutputParams(dask_address=address, gpus=gpus))
    return embed_flow if runner is None else embed_flow.with_options(task_runner=runner)


def shard_groups(
    n_shards: int, copied: set[int], partly: dict[int, int], max_rows: int
) -> list[list[int]]:
    """The shards of each embedding task: one task per shard to embed, except that shards partly
    copied from an earlier store (``partly``: shard -> rows still to embed) share tasks, in
    order, up to ``max_rows`` rows to embed per task (a shard's rows). A night's few new files spread over
    many shards then cost one task and one loader, not one per shard. Shards copied whole
    (``copied``) are no task. Derived from the store's record of copied rows only, so a rerun
    finds the same tasks (and their cached results)."""
    groups: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for shard in range(n_shards):
        if shard in copied:
            continue
        if shard not in partly:
            groups.append([shard])
            continue
        if current and rows + partly[shard] > max_rows:
            groups.append(current)
            current, rows = [], 0
        current.append(shard)
        rows += partly[shard]
    if current:
        groups.append(current)
    return sorted(groups)


def _shards_id(embed_id: str, shards: list[int]) -> str:
    """A task's content id: ``<embed id>-shard-<i>`` for one shard (as before grouping), else
    the group's first and last shard and its size (groups are fixed per store)."""
    if len(shards) == 1:
        return f"{embed_id}-shard-{shards[0]}"
    return f"{embed_id}-shards-{shards[0]}-{shards[-1]}-{len(shards)}"


def _embed_shards(
    plan: tasks.EmbedPlan,
    work: WorkDir,
    output: OutputParams,
    n_shards: int,
    name: str,
    ledger: TaskLedger,
) -> int:
    """Map one task per shard group (:func:`shard_groups`); groups missing on disk recompute,
    done ones come from the cache.

    Shards copied whole from an earlier store are no task at all (on a Dask cluster, only the
    shards holding added or changed files are sent to the workers).
    """
    missing = set(missing_shards(plan.store_path))
    groups = shard_groups(
        n_shards,
        copied_shards(plan.store_path),
        partly_copied_shards(plan.store_path),
        shard_rows(plan.store_path),
    )
    retry = {"retries": output.shard_retries, "retry_delay_seconds": SHARD_RETRY_DELAYS}
    futures = []
    for on_disk in (True, False):
        chosen = [group for group in groups if missing.isdisjoint(group) == on_disk]
        if chosen:
            futures += tasks.configured(tasks.embed_shard_task, work, done=on_disk, **retry).map(
                content_id=[_shards_id(plan.embed_id, group) for group in chosen],
                plan=unmapped(plan),
                shards=chosen,
            )
    bar = progress.track("embedding shards", total=len(futures))
    artifact_id = create_progress_artifact(
        0.0, key=artifact_key(name, "embedding"), description=f"Embedding {n_shards} shards"
    )
    failures = []
    for finished, future in enumerate(as_completed(futures), start=1):
        future.wait()
        if future.state.is_failed():
            failures.append(future)
        bar.advance()
        update_progress_artifact(artifact_id, 100.0 * finished / max(len(futures), 1))  # type: ignore[arg-type]
    bar.close()
    ledger.record(tasks.embed_shard_task.name, futures)
    if failures:
        failures[0].result()  # re-raises the first shard's error; done shards stay done on disk
    return len(missing)
