"""Pydantic parameter models of the flows (they render as forms in the Prefect UI).

Each model checks what a form can check (ranges, choices) so that a bad value fails before any
work starts, with a message naming the field, the value and the fix; ``to_config()`` converts it
to the frozen ``cl_core`` config, whose own ``__post_init__`` remains the final word.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATASET_KINDS = ("digits", "imagefolder", "zarr")
DEMO_MODEL = "tf_efficientnet_lite0"
REFIT_FIELDS = frozenset({"refit", "refit_share", "refit_distance_ratio"})
"""ClusterParams fields that steer a nightly update; recorded in the lineage, not the config."""
_NAME_PATTERN = re.compile(r"[^a-z0-9._-]+")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(_Params):
    """What to build a curriculum for."""

    spec: str = Field(
        default="digits",
        description=(
            "`digits` (scikit-learn's bundled digits), `imagefolder:PATH` (class sub-folders of "
            "images) or `zarr:PATH` (an existing, complete embedding store: skips embedding)"
        ),
    )
    name: str | None = Field(
        default=None,
        description="Artifact name under the output directory (default: from the spec)",
    )
    dataset_id: str | None = Field(
        default=None,
        description=(
            "Names the dataset's version explicitly (e.g. 'pets-2026-11-26'); used instead of "
            "computing an identity from the data"
        ),
    )
    verify_content: bool = Field(
        default=False,
        description=(
            "Identify an image folder by the sha256 of every file's content instead of its listing "
            "(path, size, mtime): for file systems with unreliable modification times"
        ),
    )

    @field_validator("spec")
    @classmethod
    def _known_kind(cls, spec: str) -> str:
        kind, _, location = spec.partition(":")
        if kind not in DATASET_KINDS:
            raise ValueError(
                f"unknown dataset spec {spec!r}; use 'digits', 'imagefolder:PATH' or 'zarr:PATH'"
            )
        if kind != "digits" and not location:
            raise ValueError(
                f"dataset spec {spec!r} needs a path after the colon, e.g. '{kind}:data'"
            )
        if kind == "digits" and location:
            raise ValueError(f"dataset spec {spec!r}: 'digits' takes no path; use 'digits'")
        return spec

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        if name is not None and (not name or _NAME_PATTERN.search(name)):
            raise ValueError(
                f"artifact name {name!r} may only contain a-z, 0-9, '.', '_' and '-'; "
                "e.g. 'digits-effnet'"
            )
        return name

    @field_validator("dataset_id")
    @classmethod
    def _valid_dataset_id(cls, dataset_id: str | None) -> str | None:
        if dataset_id is not None and not dataset_id.strip():
            raise ValueError(
                "dataset_id must be a non-empty string naming the dataset's version, "
                "e.g. 'pets-2026-11-26'; or leave it unset"
            )
        return dataset_id

    @property
    def kind(self) -> str:
        return self.spec.partition(":")[0]

    @property
    def location(self) -> str:
        return self.spec.partition(":")[2]

    def artifact_name(self) -> str:
        """``name`` or a slug of the dataset (``digits``, the folder name, the store's stem)."""
        if self.name:
            return self.name
        if self.kind == "digits":
            return "digits"
        stem = Path(self.location.rstrip("/")).name.removesuffix(".zarr") or self.kind
        return _NAME_PATTERN.sub("-", stem.lower()).strip("-") or self.kind


class EmbedParams(_Params):
    """How samples become feature vectors (ignored for `zarr:` datasets)."""

    model: str = Field(default=DEMO_MODEL, description="timm model id or alias, e.g. dino_vits16")
    weights: str | None = Field(default=None, description="Local weights file (offline use)")
    pretrained: bool = Field(
        default=True, description="Load pretrained weights (False: random init)"
    )
    layer: str | None = Field(
        default=None, description="Intermediate layer to hook (default: output)"
    )
    pooling: str | None = Field(
        default=None, description="Pooling override (default: per output shape)"
    )
    batch_size: int = Field(default=64, ge=1, description="Images per forward pass")
    device: str | None = Field(
        default=None, description="cpu, cuda, cuda:1 (default: best available)"
    )
    dtype: Literal["float16", "float32"] = Field(
        default="float16", description="Stored feature dtype"
    )
    chunk_rows: int | None = Field(
        default=None, ge=1, description="Rows per Zarr chunk (default 4096)"
    )
    shard_rows: int | None = Field(
        default=None,
        ge=1,
        description="Rows per embedding shard = per Prefect task; a multiple of chunk_rows",
    )
    image_size: int | None = Field(default=None, ge=8, description="Input size (default: model's)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto",
        description=(
            "Autocast dtype: auto = bf16 on CUDA and on CPUs with bf16 matrix units "
            "(AMX-BF16 / AVX512-BF16), fp32 on other CPUs"
        ),
    )
    decode: Literal["auto", "cpu", "gpu"] = Field(
        default="auto",
        description=(
            "Where image files are decoded: gpu (batched on the model's CUDA device), cpu (in "
            "the loader workers), auto (gpu when the model runs on CUDA and the decoder exists)"
        ),
    )
    on_bad_sample: Literal["error", "skip"] = Field(
        default="error",
        description=(
            "A sample that cannot be loaded: fail the run naming it (error), or leave it out of "
            "the curriculum and record it in the store and the manifest (skip)"
        ),
    )

    def to_config(self) -> Any:
        from cl_core.embed import EmbedConfig

        return EmbedConfig(**_config_kwargs(self, EmbedConfig))


class ClusterParams(_Params):
    """k-means: explicit k, or the lowest Davies-Bouldin index over a range."""

    n_clusters: int | None = Field(default=None, ge=1, description="Explicit k (default: auto)")
    cluster_range: tuple[int, int] = Field(
        default=(2, 20), description="Inclusive k range swept when n_clusters is not given"
    )
    use_labels: bool = Field(
        default=False,
        description="Supervised: score each sample within its class instead of a cluster",
    )
    sweep_samples: int | None = Field(
        default=None, ge=2, description="Rows subsampled for the k sweep"
    )
    normalize: Literal["standard", "l2", "none"] = Field(
        default="standard", description="Feature normalisation before k-means"
    )
    random_state: int = Field(default=0, ge=0, description="Seed of sampling and k-means")
    refit: Literal["auto", "always", "never"] = Field(
        default="auto",
        description=(
            "With a previous version of the same name: never = assign new and changed samples "
            "to its centroids and score them on its per-cluster scale; always = sweep and fit "
            "again; auto = refit only when the data drifted (see refit_share, "
            "refit_distance_ratio). Without one, the clusters are fitted"
        ),
    )
    refit_share: float = Field(
        default=0.10,
        gt=0.0,
        le=1.0,
        description="auto refits once this share of rows was added, changed or removed since the last fit",
    )
    refit_distance_ratio: float = Field(
        default=1.25,
        gt=1.0,
        description=(
            "auto refits when the new samples' median distance to their centroids reaches this "
            "multiple of the previous samples' median"
        ),
    )

    @model_validator(mode="after")
    def _ordered_range(self) -> ClusterParams:
        low, high = self.cluster_range
        if low < 2 or high < low:
            raise ValueError(
                f"cluster_range must be (low, high) with 2 <= low <= high, got {self.cluster_range}; "
                "e.g. (2, 20)"
            )
        return self

    def to_config(self) -> Any:
        from cl_core.cluster import ClusterConfig

        return ClusterConfig(**_config_kwargs(self, ClusterConfig))

    def refit_policy(self) -> Any:
        """The ``cl_core.update.RefitPolicy`` of these options."""
        from cl_core.update import RefitPolicy

        return RefitPolicy(
            mode=self.refit,
            max_changed_share=self.refit_share,
            max_distance_ratio=self.refit_distance_ratio,
        )


class CurriculumParams(_Params):
    """Difficulty scoring and the sampling schedule."""

    difficulty: Literal["minmax", "rank", "zscore", "none"] = Field(
        default="minmax", description="Per-cluster normalisation of distances"
    )
    strategy: str = Field(default="easy", description="easy (prototypes first) or hard")
    pacing: str = Field(default="linear", description="linear, cosine, root or step")
    initial_fraction: float = Field(
        default=0.3, gt=0.0, le=1.0, description="f0: starting fraction"
    )
    warmup_iterations: int = Field(
        default=1000, ge=0, description="Iterations until uniform sampling"
    )
    power: float = Field(default=2.0, gt=0.0, description="Root of the `root` pacing")
    n_steps: int = Field(default=4, ge=1, description="Steps of the `step` pacing")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, strategy: str) -> str:
        from cl_core.schedule import canonical_strategy

        return canonical_strategy(strategy)

    @field_validator("pacing")
    @classmethod
    def _known_pacing(cls, pacing: str) -> str:
        from cl_core.schedule import canonical_pacing

        return canonical_pacing(pacing)

    def schedule_config(self) -> Any:
        from cl_core.schedule import ScheduleConfig

        return ScheduleConfig(**_config_kwargs(self, ScheduleConfig))


class OutputParams(_Params):
    """Where results go and how the sweep runs."""

    output_dir: str = Field(default="artifacts", description="Root of artifacts/<name>/<version>/")
    work_dir: str = Field(
        default="runs", description="Intermediate results (embeddings, clusters) and the task cache"
    )
    sweep_runner: Literal["dask", "threads"] = Field(
        default="dask", description="dask: DaskTaskRunner (local cluster or dask_address); threads"
    )
    dask_address: str | None = Field(
        default=None, description="Scheduler of an existing Dask cluster, e.g. tcp://10.0.0.5:8786"
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the local Dask cluster")
    gpus: str | None = Field(
        default=None,
        description=(
            "'N' or 'all': embed on a local Dask cluster with one worker process per GPU "
            "(ignored when dask_address is given)"
        ),
    )
    shard_retries: int = Field(default=2, ge=0, description="Retries of a failed embedding shard")

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus_text(cls, gpus: Any) -> str | None:
        if gpus is None:
            return None
        text = str(gpus).strip().lower()
        if text != "all" and not (text.isdigit() and int(text) >= 1):
            raise ValueError(f"gpus must be a number >= 1 or 'all', got {gpus!r}")
        return text

    @property
    def distributed(self) -> bool:
        """Whether the embedding (and the fit) run on a Dask cluster of worker processes."""
        return bool(self.dask_address) or self.gpus is not None


def _config_kwargs(params: BaseModel, config_type: type, exclude: set[str] | None = None) -> dict:
    """Fields of ``params`` that ``config_type`` accepts, leaving out ``None`` (= config default)."""
    import dataclasses

    accepted = {field.name for field in dataclasses.fields(config_type)}
    values = params.model_dump(exclude=exclude or set())
    return {key: value for key, value in values.items() if key in accepted and value is not None}
