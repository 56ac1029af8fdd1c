"""Pre-run validation of ``run`` / ``demo``: everything checkable from the parameters and the
dataset's length, before any work starts, raising :class:`flows.console.BadInput` (or the
library's ValueError / TypeError) that names the argument, the value and the fix.

:func:`check_parameters` needs no model and no torch and runs before anything starts;
:func:`check_model` loads the model and opens the dataset (memoised per process, so the run that
follows reuses them) while the run's temporary Prefect server starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flows.console import BadInput
from flows.params import ClusterParams, DatasetParams, EmbedParams, OutputParams


def check_parameters(params: dict[str, Any]) -> None:
    """Everything that needs no model (and no torch): configs, destinations, files, k vs N."""
    dataset: DatasetParams = params["dataset"]
    clustering: ClusterParams = params["clustering"]
    clustering.to_config()
    params["curriculum"].schedule_config()
    check_destinations(params["output"])
    check_refit(clustering, dataset, params["output"])
    if dataset.kind == "zarr":
        check_clusters_fit(clustering, _store_rows(dataset), dataset.spec)
        return
    _check_files(dataset, params["embedding"])
    from cl_core.embed import count_samples

    # k against N needs only the dataset's length: checked before the model is loaded
    check_clusters_fit(clustering, count_samples(dataset.spec), dataset.spec)


def check_model(params: dict[str, Any]) -> None:
    """The device, the model name, its weights and the dataset (imports torch and timm). The
    model and the dataset are memoised per process, so the run that follows reuses them."""
    dataset: DatasetParams = params["dataset"]
    embedding: EmbedParams = params["embedding"]
    if dataset.kind == "zarr":
        return
    from flows import inputs

    embedding.to_config()  # imports torch: after the checks that need nothing
    if embedding.device is not None:
        from cl_core.devices import resolve_device

        resolve_device(embedding.device)  # --device cuda without CUDA fails here
    inputs.resolve_inputs(dataset, embedding)


def check_refit(clustering: ClusterParams, dataset: DatasetParams, output: OutputParams) -> None:
    """``--refit never`` needs a previous version of the same name, published with its samples'
    file keys, to assign the new samples to (and cannot keep clusters within classes)."""
    if clustering.refit != "never":
        return
    if clustering.use_labels:
        raise BadInput(
            "--refit never assigns samples to a previous version's clusters, but --supervised "
            "fits clusters within each class; use --refit always (or auto)"
        )
    from cl_core.update import previous_version

    name = dataset.artifact_name()
    previous, why = previous_version(output.output_dir, name, None)
    if previous is None:
        raise BadInput(
            f"--refit never: {why} of {name!r} under --output {output.output_dir}; run once "
            "with --refit auto (or always) to publish a first version"
        )


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
    from cl_core.io import as_location, is_url
    from flows import files

    if is_url(root):
        files.check_writable(root)
        return
    folder = as_location(root).expanduser().absolute()
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a folder" if not existing.is_dir() else "is not writable"
        raise BadInput(f"{option} {root}: {existing} {what}; pass a folder you can write to")


def _store_rows(dataset: DatasetParams) -> int:
    from cl_core.io import as_location
    from flows import inputs

    if not as_location(dataset.location).expanduser().exists():
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
