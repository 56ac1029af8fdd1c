"""The ``cluster`` stage flow: k-means on the store with k explicit, per class, or chosen by
``cl_core.cluster``'s Davies-Bouldin sweep fanned out over the sweep's task runner.

The sweep is the library's: :func:`cl_core.cluster.plan_sweep` draws the subsample and the grid
of ks (sample task), :func:`cl_core.cluster.evaluate_k` scores each k over half-sample
replicates (sweep tasks), a second round scores :func:`cl_core.cluster.refine_ks` around the
best, :func:`cl_core.cluster.choose_k` applies the standard-error rule (one SE, three on a flat
curve), and
:func:`cl_core.cluster.cluster_embeddings` fits and assigns with that k. The ks of each round are
split into as many sweep tasks as the runner runs at once (:func:`sweep_groups`), not one task
per k: each Prefect ``submit`` costs about 0.2 s of the
flow's time (it serialises Prefect's settings context), which for a 19-k sweep was more than the
sweep itself on small data. Every k still has its own result file, read back by a rerun.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from threadpoolctl import threadpool_limits

from cl_core.cluster import (
    EXECUTION_FIELDS,
    KChoice,
    SweepPoint,
    best_k,
    choice_from_records,
    edge_of_range_warning,
    refine_ks,
    rule_parameters,
)
from cl_core.threads import torch_threads
from cl_core.update import first_lineage, lineage_line, previous_version
from flows import progress, tasks
from flows.done import cluster_outputs_verified, files_verified, update_planned
from flows.ids import WorkDir, content_id
from flows.outcomes import ClusterOutcome, EmbeddingOutcome, TaskLedger
from flows.params import ClusterParams, OutputParams
from flows.runners import sweep_runner
from flows.ui import publish_clusters_table, publish_sweep_table, ui_artifacts


@functools.lru_cache(maxsize=8)
def cluster_flow_on(runner: str, workers: int, address: str | None) -> Any:
    """``cluster_flow`` on the sweep's task runner, built once per runner configuration.

    ``Flow.with_options`` regenerates the flow's parameter schema (~10 ms); the flow object is
    reusable because every run enters a fresh ``duplicate()`` of its task runner.
    """
    output = OutputParams(
        sweep_runner=runner,  # type: ignore[arg-type]
        dask_workers=workers,
        dask_address=address,
    )
    return cluster_flow.with_options(task_runner=sweep_runner(output))


def sweep_tasks(output: OutputParams, n_ks: int) -> int:
    """How many sweep tasks: one per parallel slot of a local runner; one per k on a remote
    Dask cluster (``dask_address``), whose size the flow does not know."""
    remote = output.sweep_runner == "dask" and output.dask_address
    return n_ks if remote else max(1, min(n_ks, output.dask_workers))


def sweep_groups(ks: list[int], n_groups: int) -> list[list[int]]:
    """Split ``ks`` into ``n_groups`` groups of about equal cost (a fit costs about k).

    Largest k first onto the group with the least cost so far; each group sorted.
    """
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    for k in sorted(ks, reverse=True):
        min(groups, key=lambda group: (sum(group), len(group))).append(k)
    return [sorted(group) for group in groups if group]


def cluster_identity(features: str, clustering: ClusterParams) -> str:
    """Content id of the clustering: the store's fingerprint and every value-affecting option,
    and, when the sweep chooses k, the rule it chooses by (a new rule must not be answered from
    the cache of the old one)."""
    config = dataclasses.asdict(clustering.to_config())
    payload: dict[str, Any] = {
        "features": features,
        # where the sweep runs, never what it yields
        "config": {k: v for k, v in config.items() if k not in EXECUTION_FIELDS},
    }
    if config["n_clusters"] is None:
        payload["k_rule"] = rule_parameters()
    return content_id("cluster", payload)


@flow(name="cluster")
def cluster_flow(
    embedded: EmbeddingOutcome,
    clustering: ClusterParams,
    output: OutputParams,
    name: str,
    difficulty: str = "minmax",
) -> ClusterOutcome:
    """k-means on the store: explicit k, per class, or k by Davies-Bouldin over a Dask sweep;
    with a previous version of ``name``, first the update's plan (assign to its clusters, or
    refit; ``difficulty``: today's method, a change of which makes ``auto`` refit)."""
    logger = get_run_logger()
    work = WorkDir.at(output.work_dir)
    cluster_id = cluster_identity(embedded.fingerprint, clustering)
    out_dir = work.cluster(cluster_id)
    if clustering.use_labels and not embedded.has_labels:
        raise ValueError(
            "clustering.use_labels=True needs labels, but the embedding store has none; "
            "use a labelled dataset (digits, imagefolder:PATH) or use_labels=False"
        )
    ledger = TaskLedger()
    sweep: list[dict[str, Any]] | None = None
    sample_path: str | None = None
    n_clusters = clustering.n_clusters
    with ui_artifacts() as ui:
        update = plan_update(embedded, clustering, output, name, ledger, difficulty)
        if update["action"] == "assign":
            outcome = ClusterOutcome(
                cluster_id=update["plan_id"],
                **update["cluster"],
                update=update,
                task_states=ledger.entries,
            )
            logger.info("clusters: %s", lineage_line(update["lineage"]))
            ui.create(publish_clusters_table, outcome.clusters, name)
            return outcome
        if n_clusters is None and not clustering.use_labels:
            sweep, sample_path = _sweep(embedded, clustering, output, work, ledger)
            choice = choice_from_records(sweep)
            n_clusters = choice.k
            ui.create(publish_sweep_table, sweep, n_clusters, name)  # beside the final fit
            logger.info("%s over k = %d..%d", choice.summary(), sweep[0]["k"], sweep[-1]["k"])
        summary = _fit(
            tasks.configured(tasks.cluster_task, work, done=cluster_outputs_verified(out_dir)),
            ledger,
            on_cluster=bool(output.dask_address) and output.sweep_runner == "dask",
            content_id=cluster_id,
            store_path=embedded.store_path,
            clustering=clustering,
            out_dir=str(out_dir),
            n_clusters=n_clusters,
            sweep=sweep,
            sample_path=sample_path,
        )
        warning = edge_of_range_warning(
            summary["n_clusters"], clustering.cluster_range, summary["chosen_by"]
        )
        flat = flat_note(summary.get("k_choice"))
        outcome = ClusterOutcome(
            cluster_id=cluster_id,
            **summary,
            warning=warning,
            update=update,
            k_note=flat,
            task_states=ledger.entries,
        )
        for note in (outcome.warning, outcome.k_note):
            if note:
                logger.warning(note)
        if sweep is None and outcome.sweep:
            ui.create(publish_sweep_table, outcome.sweep, outcome.n_clusters, name)
        ui.create(publish_clusters_table, outcome.clusters, name)
    return outcome


def plan_update(
    embedded: EmbeddingOutcome,
    clustering: ClusterParams,
    output: OutputParams,
    name: str,
    ledger: TaskLedger,
    difficulty: str = "minmax",
) -> dict[str, Any]:
    """The nightly update's plan: ``{"action": "assign" | "refit" | "fit", "lineage": ...}``.

    ``fit`` (no task) without a previous version of ``name`` that can be updated (none, one
    without sample keys, supervised clustering); else the plan task matches, assigns and decides
    (``cl_core.update.plan_update``), cached by the store, the previous version and the policy.
    """
    policy = clustering.refit_policy()
    previous, why = None, "supervised: clusters are fitted within each class"
    if not clustering.use_labels:
        previous, why = previous_version(output.output_dir, name, embedded.dataset_fingerprint)
    n_valid = embedded.n_rows - len(embedded.skipped)
    if previous is None:
        if policy.mode == "never" and "over the same files" not in why:
            raise ValueError(f"--refit never needs a previous version to assign to: {why}")
        return {"action": "fit", "lineage": first_lineage(policy, embedded.n_rows, n_valid, why)}
    work = WorkDir.at(output.work_dir)
    config = dataclasses.asdict(clustering.to_config())
    plan_id = content_id(
        "update-plan",
        {
            "features": embedded.fingerprint,
            "previous": previous.name,
            "policy": policy.to_json(),
            "clustering": {k: v for k, v in config.items() if k not in EXECUTION_FIELDS},
            "difficulty": difficulty,
        },
    )
    out_dir = work.update(plan_id)
    document = ledger.call(
        tasks.configured(tasks.plan_update_task, work, done=update_planned(out_dir)),
        content_id=plan_id,
        store_path=embedded.store_path,
        previous_path=str(previous),
        clustering=clustering,
        difficulty=difficulty,
        out_dir=str(out_dir),
    )
    return {**document, "plan_id": plan_id}


def _fit(fit_task: Any, ledger: TaskLedger, *, on_cluster: bool, **kwargs: Any) -> Any:
    """The fit in the flow's thread, or (``on_cluster``: a Dask cluster at ``dask_address``) as
    a task on one of its workers, whose assignment then runs over the cluster."""
    if not on_cluster:
        return ledger.call(fit_task, **kwargs)
    future = fit_task.submit(**kwargs, on_cluster=True)
    ledger.record(fit_task.name, [future])
    return future.result()


def flat_note(k_choice: dict[str, Any] | None) -> str | None:
    """The run's sentence for a flat Davies-Bouldin curve (None when it is not flat)."""
    return KChoice.from_dict(k_choice).flat_note() if k_choice else None


def _sweep(
    embedded: EmbeddingOutcome,
    clustering: ClusterParams,
    output: OutputParams,
    work: WorkDir,
    ledger: TaskLedger,
) -> tuple[list[dict[str, Any]], str]:
    """The library's sweep: sample task, then groups of ks on the flow's (Dask) task runner.

    Returns the swept points by k and the sample's file (the fit starts from that sample).
    """
    config = clustering.to_config()
    sample_id = content_id(
        "sweep-sample",
        {
            "features": embedded.fingerprint,
            "cluster_range": config.cluster_range,
            "sweep_samples": config.sweep_samples,  # the sample's size follows from these
            "normalize": config.normalize,
            "random_state": config.random_state,
        },
    )
    sweep_dir = work.sweep(sample_id)
    sample_path = sweep_dir / "sample.npy"
    sample = ledger.call(
        tasks.configured(tasks.sample_task, work, done=files_verified(sample_path)),
        content_id=sample_id,
        store_path=embedded.store_path,
        clustering=clustering,
        out_path=str(sample_path),
    )
    job_config = {
        "sample": sample_id,
        "batch_size": config.sweep_batch_size,
        "n_init": config.sweep_n_init,
        "replicates": config.sweep_replicates,
        "device": sample["device"],
    }
    job_id = content_id("evaluate-k", job_config)  # names the per-k files of these settings

    def out_path(k: int) -> str:
        return str(sweep_dir / f"k-{k}-{job_id}.json")

    def run_round(ks: list[int], label: str) -> list[dict[str, Any]]:
        groups = sweep_groups(ks, sweep_tasks(output, len(ks)))
        bar = progress.track(label, total=len(ks))
        # Each job limits BLAS and torch to one thread through process-wide switches; with
        # in-process Dask workers, concurrent jobs could restore them out of order. The outer
        # limits restore them last.
        with threadpool_limits(limits=1, user_api="blas"), torch_threads(1):
            futures = [
                tasks.configured(
                    tasks.evaluate_ks_task, work, done=files_verified(*map(out_path, group))
                ).submit(
                    content_id=content_id("evaluate-ks", {**job_config, "ks": group}),
                    sample_path=str(sample_path),
                    ks=group,
                    sweep_seed=sample["sweep_seed"],
                    clustering=clustering,
                    out_paths=[out_path(k) for k in group],
                    device=sample["device"],
                )
                for group in groups
            ]
            for future in as_completed(futures):
                ledger.record(tasks.evaluate_ks_task.name, [future])  # while others still run
                bar.advance(len(future.result()))
        bar.close()
        return [point for future in futures for point in future.result()]

    points = run_round(sample["ks"], "k sweep")
    extra = refine_ks(sample["ks"], best_k([SweepPoint.from_dict(p) for p in points]))
    if extra:
        points += run_round(list(extra), "k refinement")
    return sorted(points, key=lambda point: point["k"]), str(sample_path)
