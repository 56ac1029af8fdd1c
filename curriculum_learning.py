"""Drop-in replacement for the reference ``curriculum_learning`` library.

A thin shim with the reference library's API (both of its READMEs); every computation runs in
:mod:`cl_core` through the same functions as the Prefect flows::

    dataset --cl_core.embed--> Zarr embedding store (in memory, or ``cache_dir``)
            --cl_core.cluster.cluster_embeddings--> centroids, assignment, distances
            --cl_core.difficulty.normalize_difficulty--> difficulty in [0, 1] (``weights_``)
            --cl_core.schedule.build_schedule--> temperature table, solved once
            --cl_core.sampler.Curriculum--> ``get_curriculum_weights(current_iteration=t)``

Migrating from the reference needs no code change. Behaviour that differs (bugs fixed) is listed
in the README section "Differences from the reference library" (``docs/differences.md``).

Imports are light: torch, timm, zarr and scikit-learn load on first use.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core._validation import (
    check_choice,
    check_finite,
    check_fraction,
    check_non_negative_int,
)

if TYPE_CHECKING:
    from cl_core.sampler import Curriculum
    from cl_core.schedule import Schedule, ScheduleConfig
    from cl_core.store import EmbeddingStore

__all__ = [
    "WEIGHTS_DIR_ENV",
    "CurriculumLearning",
    "CurriculumWarning",
    "FeatureExtractor",
    "FeatureView",
    "PrecomputedDifficulty",
    "PretrainedModelExtractor",
    "create_curriculum_learning",
    "create_curriculum_learning_with_dino",
    "dataset_labels",
    "find_local_weights",
]

WEIGHTS_DIR_ENV = "CL_CURRICULUM_WEIGHTS_DIR"
"""Environment variable naming a directory of local encoder weights for
:func:`create_curriculum_learning_with_dino` (file names: see :func:`find_local_weights`)."""

SAVE_FORMAT = "cl-curriculum/compat-weights"
SAVE_FORMAT_VERSION = 1
DIFFICULTY_NORMALIZATIONS = ("minmax", "rank", "zscore", "none")
FEATURE_DTYPES = ("float16", "float32")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# File names of the original DINO / DINOv2 releases (what torch.hub caches), per reference alias.
_OFFICIAL_CHECKPOINTS = {
    "dino_vits16": "dino_deitsmall16_pretrain",
    "dino_vits8": "dino_deitsmall8_pretrain",
    "dino_vitb16": "dino_vitbase16_pretrain",
    "dino_vitb8": "dino_vitbase8_pretrain",
    "dinov2_vits14": "dinov2_vits14_pretrain",
    "dinov2_vitb14": "dinov2_vitb14_pretrain",
    "dinov2_vitl14": "dinov2_vitl14_pretrain",
    "dinov2_vitg14": "dinov2_vitg14_pretrain",
}


class CurriculumWarning(UserWarning):
    """A request was adjusted to what the data allows (e.g. an unreachable initial fraction)."""


# --------------------------------------------------------------------------------------------
# Feature extractors
# --------------------------------------------------------------------------------------------


class FeatureExtractor(ABC):
    """Turns a dataset into per-sample feature vectors (reference API).

    Subclass it and implement :meth:`extract_features` to bring your own features; the result is
    written to the embedding store and clustered by :mod:`cl_core` like any model's output.
    :class:`PretrainedModelExtractor` overrides :meth:`embed` to stream batches straight into
    the store through :func:`cl_core.embed.embed_dataset`.

    Attributes
    ----------
    normalization : {"standard", "l2", "none"}
        How :mod:`cl_core` normalises the stored features before clustering; ``"none"`` (the
        features are used exactly as :meth:`extract_features` returns them).
    """

    normalization: str = "none"

    @abstractmethod
    def extract_features(self, data_loader: Any, device: Any) -> Any:
        """Return the features of every sample, in the loader's (index) order.

        Parameters
        ----------
        data_loader : torch.utils.data.DataLoader
            Iterates the dataset in index order (never shuffled).
        device : str or torch.device

        Returns
        -------
        ndarray or torch.Tensor of shape (N, D)
        """

    def embed(
        self,
        dataset: Any,
        path: Any,
        *,
        device: Any = "cpu",
        batch_size: int = 256,
        dtype: str = "float16",
    ) -> EmbeddingStore:
        """Write the features of ``dataset`` to a finalized embedding store at ``path``.

        The default runs :meth:`extract_features` over an index-ordered DataLoader and stores
        the result with :func:`cl_core.store.store_from_array`.

        Parameters
        ----------
        dataset : Dataset or non-shuffling DataLoader
        path : str, os.PathLike or zarr Store
        device : str or torch.device
        batch_size : int
            Batch size of the DataLoader built for a Dataset.
        dtype : {"float16", "float32"}
            Storage dtype of the features.

        Returns
        -------
        cl_core.store.EmbeddingStore
        """
        from cl_core.store import store_from_array

        loader = _ordered_loader(dataset, batch_size)
        features = _to_numpy(self.extract_features(loader, device))
        if features.ndim != 2 or features.shape[0] != len(loader.dataset):
            raise ValueError(
                f"{type(self).__name__}.extract_features returned shape {features.shape}; it "
                f"must return one feature row per sample, shape ({len(loader.dataset)}, D)"
            )
        from cl_core.store import StoreMismatchError

        attrs = {"model_id": f"extractor:{type(self).__qualname__}"}
        try:
            return store_from_array(path, features, dtype=dtype, attrs=attrs)
        except StoreMismatchError:
            # A cache_dir store left by other data: it is a cache, replace it.
            return store_from_array(path, features, dtype=dtype, attrs=attrs, overwrite=True)


class PretrainedModelExtractor(FeatureExtractor):
    """Features of a pretrained PyTorch model, optionally from an intermediate layer.

    Parameters
    ----------
    model : nn.Module, str or callable
        The encoder. Besides a module (as the reference), a timm name or a reference alias
        such as ``"dino_vits16"`` is accepted (see :func:`cl_core.models.load_model`).
    feature_layer : str, optional
        Name of a module in ``model.named_modules()`` whose output is the feature (a forward
        hook; the rest of the network is skipped). None: the model output.
    normalize_features : bool
        True: dataset-wide per-dimension standardisation then L2 (the reference's
        normalisation, store normalisation ``"standard"``); False: raw features.
    weights : path, optional
        Local weights file for a timm name (``.safetensors`` or a torch state dict).
    pooling : {"auto", "cls", "mean", "none"}
        How model outputs are pooled to (N, D): 4-D maps by mean over H, W; token sequences
        by the CLS token (``auto``) or mean over tokens.
    num_workers : int, optional
        DataLoader workers for embedding (default: chosen by :mod:`cl_core.embed`).
    """

    def __init__(
        self,
        model: Any,
        feature_layer: str | None = None,
        normalize_features: bool = True,
        *,
        weights: str | os.PathLike[str] | None = None,
        pooling: str = "auto",
        num_workers: int | None = None,
    ) -> None:
        if model is None:
            raise TypeError(
                "model must be an nn.Module, a timm model name or a callable, got None; e.g. "
                "PretrainedModelExtractor(torchvision.models.resnet50(weights='DEFAULT'))"
            )
        if feature_layer is not None and not isinstance(feature_layer, str):
            raise TypeError(
                f"feature_layer must be a module name (str) or None, got {feature_layer!r}; "
                f"see dict(model.named_modules()) for the names"
            )
        self.model = model
        self.feature_layer = feature_layer
        self.normalize_features = bool(normalize_features)
        self.weights = weights
        self.pooling = pooling
        self.num_workers = num_workers

    @property
    def normalization(self) -> str:  # type: ignore[override]
        return "standard" if self.normalize_features else "none"

    def embed_config(
        self, *, device: Any = "cpu", batch_size: int = 256, dtype: str = "float16"
    ) -> Any:
        """The :class:`cl_core.embed.EmbedConfig` this extractor embeds with."""
        from cl_core.embed import EmbedConfig

        return EmbedConfig(
            model=self.model,
            weights=self.weights,
            layer=self.feature_layer,
            pooling=self.pooling,
            batch_size=batch_size,
            num_workers=self.num_workers,
            device=_device_name(device),
            dtype=dtype,
            normalize=self.normalization,
        )

    def embed(
        self,
        dataset: Any,
        path: Any,
        *,
        device: Any = "cpu",
        batch_size: int = 256,
        dtype: str = "float16",
    ) -> EmbeddingStore:
        """Embed ``dataset`` with :func:`cl_core.embed.embed_dataset` (see the base class)."""
        from cl_core.embed import embed_dataset
        from cl_core.store import StoreMismatchError

        config = self.embed_config(device=device, batch_size=batch_size, dtype=dtype)
        try:
            return embed_dataset(dataset, path, config)
        except StoreMismatchError:
            # A cache_dir store left by another dataset or model: it is a cache, replace it.
            return embed_dataset(dataset, path, config, overwrite=True)

    def extract_features(self, data_loader: Any, device: Any) -> Any:
        """Features of every sample as a float32 tensor (N, D), normalised as configured.

        Runs the same embedding path as :meth:`embed` into an in-memory store.
        """
        import torch
        import zarr

        store = self.embed(
            data_loader,
            zarr.storage.MemoryStore(),
            device=device,
            batch_size=data_loader.batch_size or 256,
            dtype="float32",
        )
        return torch.from_numpy(FeatureView(store, self.normalization)[:])


class PrecomputedDifficulty(FeatureExtractor):
    """Placeholder extractor of a curriculum made by :meth:`CurriculumLearning.from_difficulty`."""

    def extract_features(self, data_loader: Any, device: Any) -> Any:
        raise TypeError(
            "this CurriculumLearning was built from precomputed difficulty "
            "(CurriculumLearning.from_difficulty) and has no feature extractor; to fit it on a "
            "dataset, create it with CurriculumLearning(PretrainedModelExtractor(model), ...)"
        )


class FeatureView:
    """Read-only, lazy (N, D) view of the clustered features (``CurriculumLearning.features_``).

    Rows are read from the embedding store on indexing, normalised as they were for clustering,
    so the features of a large dataset never need to fit in memory.
    ``np.asarray(view)`` reads everything. A store on disk (``cache_dir``) that a later fit
    replaced with other embeddings is detected: reading then raises instead of returning
    another dataset's rows.

    Parameters
    ----------
    store : cl_core.store.EmbeddingStore
    normalization : {"standard", "l2", "none"}
    """

    def __init__(self, store: EmbeddingStore, normalization: str) -> None:
        self._store = store
        self.normalization = normalization
        self.fingerprint = store.fingerprint

    @property
    def store(self) -> EmbeddingStore:
        """The store, checked to still hold the embeddings this view was made for."""
        if isinstance(self._store.path, (str, os.PathLike)):
            from cl_core.store import open_store

            current = open_store(self._store.path, read_only=True)
            if current.fingerprint != self.fingerprint:
                raise RuntimeError(
                    f"features_ are no longer available: the embedding store at "
                    f"{str(self._store.path)!r} was replaced by a later fit on other data or "
                    f"another model; refit, or give each curriculum its own cache_dir"
                )
            self._store = current
        return self._store

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self._store.n_rows), int(self._store.dim))

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return int(self._store.n_rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        if isinstance(rows, (int, np.integer)):
            return self.store.read_rows(np.array([self._row(rows)]), self.normalization)[0, columns]
        indices = np.arange(len(self))[rows]
        return self.store.read_rows(indices, self.normalization)[:, columns]

    def _row(self, row: Any) -> int:
        n_rows = len(self)
        if not -n_rows <= row < n_rows:
            raise IndexError(f"row {row} is out of range for {n_rows} samples")
        return int(row) % n_rows

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def __repr__(self) -> str:
        return f"FeatureView(shape={self.shape}, normalization={self.normalization!r})"


# --------------------------------------------------------------------------------------------
# Small helpers (datasets, labels, devices)
# --------------------------------------------------------------------------------------------


def _device_name(device: Any) -> str:
    """``torch.device('cuda', 0)`` -> ``'cuda:0'``; strings pass through."""
    if device is None:
        return "auto"
    return str(device)


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        return np.asarray(values.detach().cpu().numpy())
    return np.asarray(values)


def _ordered_loader(dataset: Any, batch_size: int) -> Any:
    """A DataLoader over ``dataset`` in index order (a shuffling DataLoader is refused)."""
    from torch.utils.data import DataLoader

    from cl_core.datasets import resolve_dataset

    spec = resolve_dataset(dataset)  # refuses shuffled loaders and iterable datasets
    if isinstance(dataset, DataLoader):
        return dataset
    return DataLoader(spec.dataset, batch_size=batch_size, shuffle=False)


def _base_dataset(dataset: Any) -> tuple[Any, np.ndarray | None]:
    """The dataset behind DataLoaders and Subsets, and the index map into it (None: identity)."""
    from torch.utils.data import DataLoader, Subset

    indices: np.ndarray | None = None
    while True:
        if isinstance(dataset, DataLoader):
            dataset = dataset.dataset
        elif isinstance(dataset, Subset):
            subset = np.asarray(dataset.indices, dtype=np.int64)
            indices = subset if indices is None else subset[indices]
            dataset = dataset.dataset
        else:
            return dataset, indices


def dataset_labels(dataset: Any) -> np.ndarray | None:
    """Class labels from ``.targets`` or ``.labels`` (as the reference), also through
    ``Subset`` and ``DataLoader``; None when the dataset has neither.

    Returns
    -------
    ndarray of shape (N,) or None
    """
    from torch.utils.data import DataLoader

    if not isinstance(dataset, DataLoader):
        own = _labels_attribute(dataset)
        if own is not None:
            return own
    base, indices = _base_dataset(dataset)
    labels = _labels_attribute(base)
    if labels is None or indices is None:
        return labels
    return labels[indices]


def _labels_attribute(dataset: Any) -> np.ndarray | None:
    for attribute in ("targets", "labels"):
        values = getattr(dataset, attribute, None)
        if _is_label_sequence(values):
            return _as_labels(values, f"dataset.{attribute}")
    return None


def _is_label_sequence(values: Any) -> bool:
    return values is not None and not callable(values) and hasattr(values, "__len__")


def _as_labels(values: Any, name: str) -> np.ndarray:
    labels = _to_numpy(values)
    if labels.ndim != 1:
        raise ValueError(
            f"{name} must hold one class label per sample (1-D), got shape {labels.shape}"
        )
    if labels.dtype.kind == "O":
        labels = labels.astype(str)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(
                f"{name} must hold integer class ids (or strings), got non-integer floats such "
                f"as {labels[np.flatnonzero(labels != np.round(labels))[:1]].tolist()}"
            )
        labels = labels.astype(np.int64)
    return labels


# --------------------------------------------------------------------------------------------
# Local weights for the DINO helper
# --------------------------------------------------------------------------------------------


def find_local_weights(model: str, directories: list[Path] | None = None) -> Path | None:
    """Look for a local weights file of ``model`` (timm name or reference alias).

    Searched, in order: the directory in ``$CL_CURRICULUM_WEIGHTS_DIR``, then torch.hub's
    checkpoint cache (``torch.hub.get_dir()/checkpoints``, where the reference's hub downloads
    land). File names tried, each with ``.safetensors``, ``.pth``, ``.pt``, ``.bin``: the timm
    name with tag (``vit_small_patch16_224.dino``), the reference alias (``dino_vits16``) and the
    original release's name (``dino_deitsmall16_pretrain``).

    Returns
    -------
    Path or None
    """
    from cl_core.models import MODEL_ALIASES, canonical_model_name

    canonical = canonical_model_name(model)
    aliases = [alias for alias, name in MODEL_ALIASES.items() if name == canonical]
    stems = [
        canonical,
        *aliases,
        *(_OFFICIAL_CHECKPOINTS[a] for a in aliases if a in _OFFICIAL_CHECKPOINTS),
    ]
    if directories is None:
        directories = _weight_directories()
    for directory in directories:
        for stem in stems:
            for suffix in _WEIGHT_SUFFIXES:
                candidate = directory / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def _weight_directories() -> list[Path]:
    directories = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        directories.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    import torch.hub

    directories.append(Path(torch.hub.get_dir()) / "checkpoints")
    return directories


# --------------------------------------------------------------------------------------------
# CurriculumLearning
# --------------------------------------------------------------------------------------------


class CurriculumLearning:
    """Cluster pretrained features, score difficulty and serve curriculum sampling weights.

    Parameters
    ----------
    feature_extractor : FeatureExtractor
        Usually ``PretrainedModelExtractor(model)``.
    n_clusters : int, optional
        Number of clusters (per class when ``use_labels``); always honoured when given. None:
        chosen by the Davies-Bouldin index over ``cluster_range`` (per class when
        ``use_labels``).
    auto_select_clusters : bool
        Kept for compatibility: k is chosen automatically exactly when ``n_clusters`` is None.
    cluster_range : (int, int)
        Inclusive range of k for the automatic choice.
    use_labels : bool
        Cluster within each class; labels come from ``fit(labels=...)``, ``dataset.targets`` /
        ``dataset.labels`` (also through ``Subset``) or the dataset's ``(x, y)`` samples.
    normalize_weights : bool
        Min-max normalise distances within each cluster (each class with ``use_labels``) to
        [0, 1] (True), or divide raw distances by the largest one (False).
    batch_size : int
        Samples per forward pass of the feature extractor.
    use_minibatch_kmeans : bool
        True: k-means++ on a 20 000-row subsample refined by streamed ``MiniBatchKMeans`` over
        all rows (bounded memory). False: full ``KMeans`` on all rows in memory.
    initial_effective_percentage : float in (0, 1]
        Effective fraction of the dataset sampled at iteration 0.
    warmup_iterations : int >= 0
        Iterations over which the effective fraction grows to 1; uniform afterwards.
    random_state : int or None
        Seed of every random choice (subsamples, k-means).
    strategy : str
        Default strategy of :meth:`get_curriculum_weights`: ``"difficulty"`` (= ``"hard"``, the
        reference's default, favours hard samples) or ``"easy"`` (= ``"prototypes"``, the
        paper's prototypes-first curriculum).
    pacing : {"linear", "cosine", "root", "step"}
        Growth of the effective fraction over warmup: ``linear`` (reference), ``cosine``
        (paper), ``root``, ``step``.
    power : float
        Root order of the ``root`` pacing.
    n_steps : int
        Plateaus of the ``step`` pacing.
    difficulty_normalization : {"minmax", "rank", "zscore", "none"}, optional
        Overrides ``normalize_weights`` with any :mod:`cl_core.difficulty` method.
    cache_dir : path, optional
        Keep the embedding store (Zarr) in ``cache_dir/embeddings.zarr``; a later fit on the
        same data and model reuses it. None: an in-memory store.
    feature_dtype : {"float16", "float32"}
        Storage dtype of the embeddings.

    Attributes
    ----------
    weights_ : ndarray of shape (N,), float32
        Difficulty of every sample (higher = harder, in [0, 1] with normalisation).
    features_ : FeatureView of shape (N, D) or None
        Lazy view of the clustered (normalised) features; None after :meth:`load_weights`.
    labels_ : ndarray of shape (N,) or None
        Class labels found for the dataset.
    optimal_clusters_ : int
        Total number of clusters.
    clusters_per_class_ : dict or None
        ``{class: k}`` with ``use_labels``.
    centroids_ : ndarray of shape (optimal_clusters_, D), float32
    assignment_ : ndarray of shape (N,), int32
    distances_ : ndarray of shape (N,), float32
        Distance of each sample to its centroid (before normalisation).
    cluster_result_ : cl_core.cluster.ClusterResult or None
    store_ : cl_core.store.EmbeddingStore or None
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractor,
        n_clusters: int | None = None,
        auto_select_clusters: bool = True,
        cluster_range: tuple[int, int] = (2, 20),
        use_labels: bool = False,
        normalize_weights: bool = True,
        batch_size: int = 256,
        use_minibatch_kmeans: bool = True,
        initial_effective_percentage: float = 0.3,
        warmup_iterations: int = 1000,
        random_state: int | None = 42,
        *,
        strategy: str = "difficulty",
        pacing: str = "linear",
        power: float = 2.0,
        n_steps: int = 4,
        difficulty_normalization: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        feature_dtype: str = "float16",
    ) -> None:
        self.feature_extractor = feature_extractor
        self.n_clusters = n_clusters
        self.auto_select_clusters = auto_select_clusters
        self.cluster_range = cluster_range
        self.use_labels = use_labels
        self.normalize_weights = normalize_weights
        self.batch_size = batch_size
        self.use_minibatch_kmeans = use_minibatch_kmeans
        self.initial_effective_percentage = initial_effective_percentage
        self.warmup_iterations = warmup_iterations
        self.random_state = random_state
        self.strategy = strategy
        self.pacing = pacing
        self.power = power
        self.n_steps = n_steps
        self.difficulty_normalization = difficulty_normalization
        self.cache_dir = cache_dir
        self.feature_dtype = feature_dtype
        self._check_params()
        self._reset_fitted_state()

    # -- parameters -----------------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters by name (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> CurriculumLearning:
        """Set constructor parameters (validated); fitted results are kept."""
        valid = self._param_names()
        for name, value in params.items():
            check_choice("parameter", name, valid)
            setattr(self, name, value)
        self._check_params()
        self._curricula.clear()
        return self

    def _check_params(self) -> None:
        """Fail fast on bad settings (names the argument, the value and the fix)."""
        if not isinstance(self.feature_extractor, FeatureExtractor):
            raise TypeError(
                f"feature_extractor must be a FeatureExtractor, got "
                f"{type(self.feature_extractor).__name__}; wrap a model as "
                f"PretrainedModelExtractor(model)"
            )
        check_fraction("initial_effective_percentage", self.initial_effective_percentage)
        check_non_negative_int("warmup_iterations", self.warmup_iterations)
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive integer, got {self.batch_size!r}; e.g. 256"
            )
        if self.difficulty_normalization is not None:
            check_choice(
                "difficulty_normalization", self.difficulty_normalization, DIFFICULTY_NORMALIZATIONS
            )
        check_choice("feature_dtype", self.feature_dtype, FEATURE_DTYPES)
        self._cluster_config(n_rows=None)  # the dataclasses validate in __post_init__
        self._schedule_config(self.strategy)

    def _cluster_config(self, n_rows: int | None) -> Any:
        from cl_core.cluster import DEFAULT_SWEEP_SAMPLES, ClusterConfig

        sweep_samples = DEFAULT_SWEEP_SAMPLES
        if not self.use_minibatch_kmeans and n_rows is not None:
            sweep_samples = max(DEFAULT_SWEEP_SAMPLES, n_rows)  # the fit then sees every row
        return ClusterConfig(
            n_clusters=self.n_clusters,
            cluster_range=tuple(self.cluster_range),  # type: ignore[arg-type]
            use_labels=bool(self.use_labels),
            sweep_samples=sweep_samples,
            normalize=self.feature_extractor.normalization,
            random_state=self.random_state,
        )

    def _schedule_config(
        self, strategy: str, initial_fraction: float | None = None
    ) -> ScheduleConfig:
        from cl_core.schedule import ScheduleConfig

        return ScheduleConfig(
            strategy=strategy,
            pacing=self.pacing,
            initial_fraction=(
                self.initial_effective_percentage if initial_fraction is None else initial_fraction
            ),
            warmup_iterations=self.warmup_iterations,
            power=self.power,
            n_steps=self.n_steps,
        )

    @property
    def difficulty_method(self) -> str:
        """The :func:`cl_core.difficulty.normalize_difficulty` method in use."""
        if self.difficulty_normalization is not None:
            return str(self.difficulty_normalization)
        return "minmax" if self.normalize_weights else "none"

    def _reset_fitted_state(self) -> None:
        self.weights_: np.ndarray | None = None
        self.features_: FeatureView | None = None
        self.labels_: np.ndarray | None = None
        self.optimal_clusters_: int | None = None
        self.clusters_per_class_: dict[Any, int] | None = None
        self.centroids_: np.ndarray | None = None
        self.assignment_: np.ndarray | None = None
        self.distances_: np.ndarray | None = None
        self.cluster_result_: Any = None
        self.store_: EmbeddingStore | None = None
        self._cluster_class: np.ndarray | None = None
        self._curricula: dict[tuple[str, int], Curriculum] = {}

    # -- fit ------------------------------------------------------------------------------

    def fit(self, dataset: Any, labels: Any = None, device: Any = "cpu") -> CurriculumLearning:
        """Embed, cluster and score every sample; precompute the sampling schedule.

        Parameters
        ----------
        dataset : Dataset or DataLoader
            Map-style dataset, or a DataLoader that does not shuffle (row i must be sample i).
        labels : array-like of shape (N,), optional
            Class labels (list, ndarray or tensor); default ``dataset.targets`` /
            ``dataset.labels`` (also through ``Subset``), else the dataset's ``(x, y)`` samples.
        device : str or torch.device
            Where the feature extractor runs (``"cpu"``, ``"cuda"``, ``"auto"``).

        Returns
        -------
        self
        """
        self._check_params()
        self._reset_fitted_state()
        class_labels = (
            _as_labels(labels, "labels") if labels is not None else dataset_labels(dataset)
        )
        store = self.feature_extractor.embed(
            dataset,
            self._store_location(),
            device=device,
            batch_size=int(self.batch_size),
            dtype=self.feature_dtype,
        )
        if class_labels is None:
            class_labels = store.labels()
        if class_labels is not None and class_labels.shape[0] != store.n_rows:
            raise ValueError(
                f"labels has {class_labels.shape[0]} entries but the dataset has "
                f"{store.n_rows} samples; pass one label per sample"
            )
        result = self._cluster(store, class_labels)
        difficulty = self._difficulty(result, class_labels)
        self.store_ = store
        self.features_ = FeatureView(store, self.feature_extractor.normalization)
        self.labels_ = class_labels
        self._set_cluster_state(result)
        self.weights_ = difficulty
        self.curriculum(self.strategy)  # solve the default strategy's table once, now
        return self

    def _store_location(self) -> Any:
        if self.cache_dir is None:
            import zarr

            return zarr.storage.MemoryStore()
        directory = Path(self.cache_dir).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        return str(directory / "embeddings.zarr")

    def _cluster(self, store: EmbeddingStore, class_labels: np.ndarray | None) -> Any:
        from cl_core.cluster import cluster_embeddings

        if self.use_labels and class_labels is None:
            raise ValueError(
                "use_labels=True needs class labels, but none were found: pass "
                "fit(dataset, labels=...) or a dataset with .targets/.labels or (x, y) "
                "samples; or set use_labels=False"
            )
        config = self._cluster_config(n_rows=store.n_rows)
        return cluster_embeddings(store, config, labels=class_labels if self.use_labels else None)

    def _difficulty(self, result: Any, class_labels: np.ndarray | None) -> np.ndarray:
        """Distances normalised within each cluster, or each class with ``use_labels``
        (as the flows' difficulty task)."""
        from cl_core.difficulty import normalize_difficulty

        groups = class_labels if self.use_labels else result.assignment
        difficulty = normalize_difficulty(result.distances, groups, method=self.difficulty_method)
        return np.asarray(difficulty, dtype=np.float32)

    def _set_cluster_state(self, result: Any) -> None:
        self.cluster_result_ = result
        self.optimal_clusters_ = int(result.n_clusters)
        self.centroids_ = np.asarray(result.centroids, dtype=np.float32)
        self.assignment_ = np.asarray(result.assignment, dtype=np.int32)
        self.distances_ = np.asarray(result.distances, dtype=np.float32)
        self._cluster_class = result.cluster_class
        self.clusters_per_class_ = _clusters_per_class(result.cluster_class)

    @classmethod
    def from_difficulty(
        cls, difficulty: Any, *, assignment: Any = None, **params: Any
    ) -> CurriculumLearning:
        """A fitted curriculum from your own per-sample scores (no embedding, no clustering).

        Any score (a loss, a margin, an external ranking) then gets the same schedule,
        weights, persistence and publishing as a fitted one.

        Parameters
        ----------
        difficulty : array-like of shape (N,)
            Finite scores, higher = harder (stored as float32).
        assignment : array-like of shape (N,), optional
            Cluster id per sample, kept with the weights.
        **params
            :class:`CurriculumLearning` parameters (strategy, pacing, initial fraction...).

        Returns
        -------
        CurriculumLearning
        """
        instance = cls(PrecomputedDifficulty(), **params)
        scores = _as_scores(difficulty)
        instance.weights_ = scores
        if assignment is not None:
            ids = _to_numpy(assignment)
            if ids.shape != scores.shape or ids.dtype.kind not in "iu":
                raise ValueError(
                    f"assignment must hold one integer cluster id per sample, shape "
                    f"{scores.shape}; got dtype {ids.dtype} shape {ids.shape}"
                )
            instance.assignment_ = ids.astype(np.int32)
            instance.optimal_clusters_ = int(np.unique(ids).size)
        instance.curriculum(instance.strategy)
        return instance

    # -- weights --------------------------------------------------------------------------

    def _require_fitted(self) -> np.ndarray:
        if self.weights_ is None:
            # scikit-learn's NotFittedError is a ValueError, which the reference raised here
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                "this CurriculumLearning is not fitted yet; call fit(dataset) or "
                "load_weights(path) first"
            )
        return self.weights_

    def get_difficulty_weights(self) -> np.ndarray:
        """A copy of the per-sample difficulty ``weights_`` (float32, shape (N,))."""
        return self._require_fitted().copy()

    def curriculum(
        self, strategy: str | None = None, warmup_iterations: int | None = None
    ) -> Curriculum:
        """The in-memory :class:`cl_core.sampler.Curriculum` of a strategy (built once, cached).

        Its schedule table is solved once per strategy; a different ``warmup_iterations`` reuses
        that table (the table is over target fractions, independent of the pacing length).
        """
        from cl_core.sampler import Curriculum
        from cl_core.schedule import build_schedule, canonical_strategy

        difficulty = self._require_fitted()
        resolved = canonical_strategy(self.strategy if strategy is None else strategy)
        warmup = self.warmup_iterations if warmup_iterations is None else warmup_iterations
        warmup = check_non_negative_int("warmup_iterations", warmup)
        key = (resolved, warmup)
        if key not in self._curricula:
            base_key = (resolved, int(self.warmup_iterations))
            if base_key not in self._curricula:
                config = self._schedule_config(
                    resolved, self._reachable_start(difficulty, resolved)
                )
                schedule = build_schedule(difficulty, config)
                self._curricula[base_key] = Curriculum.from_arrays(
                    difficulty, schedule, self.assignment_
                )
            if key != base_key:
                self._curricula[key] = Curriculum.from_arrays(
                    difficulty,
                    _with_warmup(self._curricula[base_key].schedule, warmup),
                    self.assignment_,
                )
        return self._curricula[key]

    def _reachable_start(self, difficulty: np.ndarray, strategy: str) -> float:
        """``initial_effective_percentage``, raised just above the lowest reachable fraction.

        With all mass on the samples tied at the favoured extreme (one per cluster after
        min-max), the effective fraction cannot go below ``minimum_fraction``; a smaller target
        (small datasets with many clusters) starts there instead, with a warning.
        """
        from cl_core.schedule import minimum_fraction

        wanted = float(self.initial_effective_percentage)
        floor = minimum_fraction(difficulty, strategy)
        if wanted > floor or floor >= 1.0:
            return wanted
        start = floor + 0.01 * (1.0 - floor)
        warnings.warn(
            f"initial_effective_percentage={wanted!r} is below the smallest effective fraction "
            f"this difficulty can reach with strategy {strategy!r}, {floor:.4g} (T -> 0 puts all "
            f"mass on the samples tied at the {'lowest' if strategy == 'easy' else 'highest'} "
            f"difficulty: one per cluster after min-max); starting from {start:.4g} instead. "
            f"Use fewer clusters or more samples to start lower",
            CurriculumWarning,
            stacklevel=3,
        )
        return start

    def get_curriculum_weights(
        self,
        *args: Any,
        temperature: float | None = None,
        strategy: str | None = None,
        current_iteration: int | None = None,
        warmup_iterations: int | None = None,
    ) -> np.ndarray:
        """Sampling probabilities for ``WeightedRandomSampler`` (float64 (N,), sums to 1).

        Two call styles, as the reference's two versions:

        * ``get_curriculum_weights(temperature=0.5, strategy='difficulty')``: a fixed
          temperature, ``p ∝ exp(+d / T)`` (``difficulty``/``hard``) or ``exp(-d / T)``
          (``easy``); ``temperature=inf`` is uniform.
        * ``get_curriculum_weights(strategy='easy', current_iteration=t, warmup_iterations=W)``:
          the schedule. The temperature is read from the table precomputed at fit time so that
          the effective fraction equals the pacing target f(t) (within 1e-3); uniform from
          ``W`` on. Identical to ``self.curriculum(strategy).probabilities(t)``.

        With neither ``temperature`` nor ``current_iteration``: iteration 0 of the schedule.
        Positional arguments follow the style of the first one: a number is a temperature
        (``(temperature, strategy)``), a string a strategy (``(strategy, current_iteration,
        warmup_iterations)``).

        Returns
        -------
        ndarray of shape (N,), float64
        """
        temperature, strategy, current_iteration, warmup_iterations = _positional_style(
            args, temperature, strategy, current_iteration, warmup_iterations
        )
        difficulty = self._require_fitted()
        chosen = self.strategy if strategy is None else strategy
        if temperature is not None:
            if current_iteration is not None or warmup_iterations is not None:
                raise ValueError(
                    f"pass either temperature={temperature!r} (fixed temperature) or "
                    f"current_iteration={current_iteration!r} (the schedule), not both"
                )
            from cl_core.schedule import curriculum_probabilities, inverse_temperature

            return curriculum_probabilities(difficulty, inverse_temperature(temperature), chosen)
        iteration = 0 if current_iteration is None else current_iteration
        iteration = check_non_negative_int("current_iteration", iteration)
        return self.curriculum(chosen, warmup_iterations).probabilities(iteration)

    def target_fraction(
        self,
        current_iteration: int,
        strategy: str | None = None,
        warmup_iterations: int | None = None,
    ) -> float:
        """Pacing target of the effective fraction at ``current_iteration``."""
        return self.curriculum(strategy, warmup_iterations).target_fraction(current_iteration)

    # -- persistence ----------------------------------------------------------------------

    def save_weights(self, filepath: str | os.PathLike[str]) -> Path:
        """Save the fitted state to exactly ``filepath`` (no suffix added), without pickle.

        The file is a NumPy ``.npz`` archive (whatever its suffix) holding ``weights``,
        ``assignment``, ``centroids``, ``distances``, ``labels`` (when known) and a JSON
        document with the parameters, the random seed, the cluster choice and the default
        strategy's schedule table. Features are not saved (they live in the embedding store).

        Returns
        -------
        Path
            ``filepath``.
        """
        weights = self._require_fitted()
        path = Path(filepath)
        optional = {
            "assignment": self.assignment_,
            "centroids": self.centroids_,
            "distances": self.distances_,
            "labels": self.labels_,
            "cluster_class": self._cluster_class,
        }
        arrays: dict[str, Any] = {"weights": weights}
        arrays.update(
            {name: np.asarray(value) for name, value in optional.items() if value is not None}
        )
        arrays["meta"] = np.array(
            json.dumps(self._metadata(), sort_keys=True, default=_json_default)
        )
        # Write through a handle (np.savez would append ".npz" to a name) into a temporary
        # file, then rename: an interrupted save never leaves a truncated file at `path`.
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)
        os.replace(partial, path)
        return path

    def _metadata(self) -> dict[str, Any]:
        params = {
            name: value
            for name, value in self.get_params().items()
            if name not in ("feature_extractor", "cache_dir")
        }
        params["cluster_range"] = list(params["cluster_range"])
        default = self.curriculum(self.strategy)
        return {
            "format": SAVE_FORMAT,
            "format_version": SAVE_FORMAT_VERSION,
            "params": params,
            "random_state": self.random_state,
            "feature_extractor": type(self.feature_extractor).__qualname__,
            "optimal_clusters": self.optimal_clusters_,
            "chosen_by": None if self.cluster_result_ is None else self.cluster_result_.chosen_by,
            "store_fingerprint": None if self.store_ is None else self.store_.fingerprint,
            "schedule": default.schedule.to_json(),
        }

    def load_weights(self, filepath: str | os.PathLike[str]) -> CurriculumLearning:
        """Restore a state written by :meth:`save_weights` (read with ``allow_pickle=False``).

        The saved parameters (strategy, pacing, initial fraction, warmup, clustering settings)
        replace this instance's, and the saved schedule table is reused as is, so
        :meth:`get_curriculum_weights` returns exactly what it returned before saving.
        ``features_`` is None afterwards.
        """
        path = Path(filepath)
        if not path.is_file():
            raise FileNotFoundError(
                f"filepath={str(filepath)!r} is not a file; pass the path given to save_weights"
            )
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (ValueError, OSError) as error:
            raise ValueError(
                f"filepath={str(filepath)!r} is not a weights file written by save_weights "
                f"({error}); files of the reference library hold pickled objects and are not "
                f"loaded (no pickle): refit and save again"
            ) from error
        meta = _check_saved(arrays, path)
        from cl_core.sampler import Curriculum
        from cl_core.schedule import Schedule

        unknown = sorted(set(meta["params"]) - set(self._param_names()))
        if unknown:
            raise ValueError(
                f"{str(path)!r} holds parameters {unknown} that this version does not know; "
                f"it was written by a newer version: upgrade, or refit and save again"
            )
        for name, value in meta["params"].items():
            setattr(self, name, tuple(value) if name == "cluster_range" else value)
        self._check_params()
        self._reset_fitted_state()
        self.weights_ = arrays["weights"].astype(np.float32)
        self.assignment_ = _optional(arrays, "assignment", np.int32)
        self.centroids_ = _optional(arrays, "centroids", np.float32)
        self.distances_ = _optional(arrays, "distances", np.float32)
        self.labels_ = arrays.get("labels")
        self.optimal_clusters_ = meta["optimal_clusters"]
        self._cluster_class = arrays.get("cluster_class")
        self.clusters_per_class_ = _clusters_per_class(self._cluster_class)
        schedule = Schedule.from_json(meta["schedule"])
        key = (schedule.config.strategy, int(self.warmup_iterations))
        self._curricula[key] = Curriculum.from_arrays(self.weights_, schedule, self.assignment_)
        return self

    def publish(
        self, root: str | os.PathLike[str], name: str, *, strategy: str | None = None
    ) -> Path:
        """Publish the fitted curriculum as a versioned artifact for the training-time sampler.

        ``cl_core.sampler.load_curriculum(path).probabilities(t)`` then equals
        ``get_curriculum_weights(strategy=strategy, current_iteration=t)``.

        Returns
        -------
        Path
            The artifact's version directory.
        """
        from cl_core.artifacts import publish_curriculum

        curriculum = self.curriculum(strategy)
        config = curriculum.schedule.config
        sweep = None
        if self.cluster_result_ is not None:
            sweep = self.cluster_result_.sweep_records()
        return publish_curriculum(
            root,
            name,
            curriculum.difficulty,
            assignment=self.assignment_,
            centroids=self.centroids_,
            strategy=config.strategy,
            pacing=config.pacing,
            initial_fraction=config.initial_fraction,
            warmup_iterations=config.warmup_iterations,
            power=config.power,
            n_steps=config.n_steps,
            sweep=sweep,
            parents=[] if self.store_ is None else [self.store_.fingerprint],
            config={"source": "curriculum_learning", "difficulty": self.difficulty_method},
        )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if name != "feature_extractor"
        )
        return f"CurriculumLearning({type(self.feature_extractor).__name__}(...), {shown})"


def _as_scores(difficulty: Any) -> np.ndarray:
    """Per-sample scores as float32 (N,), finite (first bad index named)."""
    values = _to_numpy(difficulty)
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "fiu":
        raise ValueError(
            f"difficulty must be a non-empty 1-D array of numbers (one score per sample), got "
            f"dtype {values.dtype} shape {values.shape}"
        )
    check_finite("difficulty", values)
    scores = values.astype(np.float32)
    check_finite("difficulty (as float32)", scores)
    return scores


def _optional(arrays: Mapping[str, np.ndarray], name: str, dtype: Any) -> np.ndarray | None:
    return arrays[name].astype(dtype) if name in arrays else None


def _clusters_per_class(cluster_class: Any) -> dict[Any, int] | None:
    if cluster_class is None:
        return None
    classes, counts = np.unique(np.asarray(cluster_class), return_counts=True)
    return {_plain(c): int(n) for c, n in zip(classes, counts, strict=True)}


def _plain(value: Any) -> Any:
    """NumPy scalars as Python scalars; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _json_default(value: Any) -> Any:
    """JSON fallback for parameter values: NumPy scalars, tuples, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _with_warmup(schedule: Schedule, warmup: int) -> Schedule:
    """The same temperature table paced over ``warmup`` iterations (no re-solve)."""
    config = dataclasses.replace(schedule.config, warmup_iterations=warmup)
    return dataclasses.replace(schedule, config=config)


def _positional_style(
    args: tuple[Any, ...],
    temperature: Any,
    strategy: Any,
    current_iteration: Any,
    warmup_iterations: Any,
) -> tuple[Any, Any, Any, Any]:
    """Map positional arguments of either reference version onto the keywords."""
    if not args:
        return temperature, strategy, current_iteration, warmup_iterations
    names: tuple[str, ...]
    if isinstance(args[0], str):
        names = ("strategy", "current_iteration", "warmup_iterations")
    else:
        names = ("temperature", "strategy")
    if len(args) > len(names):
        raise TypeError(
            f"get_curriculum_weights takes at most {len(names)} positional arguments in this "
            f"style ({', '.join(names)}), got {len(args)}; pass keywords instead"
        )
    given = dict(
        temperature=temperature,
        strategy=strategy,
        current_iteration=current_iteration,
        warmup_iterations=warmup_iterations,
    )
    for name, value in zip(names, args, strict=False):
        if given[name] is not None:
            raise TypeError(f"get_curriculum_weights got {name} both by position and by keyword")
        given[name] = value
    return (
        given["temperature"],
        given["strategy"],
        given["current_iteration"],
        given["warmup_iterations"],
    )


def _check_saved(arrays: Mapping[str, np.ndarray], path: Path) -> dict[str, Any]:
    missing = [name for name in ("meta", "weights") if name not in arrays]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks {missing}; it was not written by save_weights (refit and save)"
        )
    meta = json.loads(str(arrays["meta"]))
    if meta.get("format") != SAVE_FORMAT:
        raise ValueError(
            f"{str(path)!r} has format {meta.get('format')!r}, expected {SAVE_FORMAT!r}"
        )
    if meta.get("format_version") != SAVE_FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {meta.get('format_version')!r}; this version reads "
            f"{SAVE_FORMAT_VERSION}: refit and save again"
        )
    n_samples = arrays["weights"].shape[0]
    for name in ("assignment", "distances", "labels"):
        if name in arrays and arrays[name].shape != (n_samples,):
            raise ValueError(
                f"{str(path)!r} is inconsistent: {name} has shape {arrays[name].shape}, expected "
                f"({n_samples},); the file is damaged, refit and save again"
            )
    return meta


# --------------------------------------------------------------------------------------------
# Convenience functions
# --------------------------------------------------------------------------------------------


def create_curriculum_learning(
    model: Any,
    dataset: Any,
    n_clusters: int | None = None,
    use_labels: bool = False,
    device: Any = "cpu",
    initial_effective_percentage: float = 0.3,
    warmup_iterations: int = 1000,
    **kwargs: Any,
) -> tuple[np.ndarray, CurriculumLearning]:
    """Fit a curriculum on ``model``'s features of ``dataset`` in one call.

    Parameters
    ----------
    model : nn.Module, str or callable
        Feature model (see :class:`PretrainedModelExtractor`).
    dataset : Dataset or non-shuffling DataLoader
    n_clusters, use_labels, initial_effective_percentage, warmup_iterations
        See :class:`CurriculumLearning`.
    device : str or torch.device
    **kwargs
        Further :class:`CurriculumLearning` parameters, plus ``feature_layer``,
        ``normalize_features`` and ``weights`` for the extractor.

    Returns
    -------
    difficulty_weights : ndarray of shape (N,), float32
    curriculum : CurriculumLearning
        Fitted.
    """
    extractor_options = {
        key: kwargs.pop(key)
        for key in ("feature_layer", "normalize_features", "weights", "pooling")
        if key in kwargs
    }
    extractor = PretrainedModelExtractor(model, **extractor_options)
    curriculum = CurriculumLearning(
        feature_extractor=extractor,
        n_clusters=n_clusters,
        use_labels=use_labels,
        initial_effective_percentage=initial_effective_percentage,
        warmup_iterations=warmup_iterations,
        **kwargs,
    )
    curriculum.fit(dataset, device=device)
    return curriculum.get_difficulty_weights(), curriculum


def create_curriculum_learning_with_dino(
    dataset: Any,
    device: Any = "cpu",
    dino_model: str = "dino_vits16",
    initial_effective_percentage: float = 0.3,
    warmup_iterations: int = 1000,
    *,
    n_clusters: int | None = None,
    use_labels: bool = False,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, CurriculumLearning]:
    """:func:`create_curriculum_learning` with a DINO encoder (the paper's features).

    The signature is the reference README's, ``(dataset, device, dino_model, ...)``;
    ``n_clusters`` and ``use_labels`` are keywords.

    Parameters
    ----------
    dataset : Dataset or non-shuffling DataLoader
    device : str or torch.device
    dino_model : str
        A reference name (``dino_vits16``, ``dino_vits8``, ``dino_vitb16``, ``dino_vitb8``,
        ``dinov2_vits14``, ...) or a timm name (``vit_small_patch16_224.dino``).
    initial_effective_percentage, warmup_iterations, n_clusters, use_labels
        See :class:`CurriculumLearning`.
    weights : path, optional
        Local weights file. Default: a file found by :func:`find_local_weights`
        (``$CL_CURRICULUM_WEIGHTS_DIR`` or torch.hub's cache), else the hub download; offline
        without a file the error says how to provide one.
    **kwargs
        As :func:`create_curriculum_learning`.

    Returns
    -------
    difficulty_weights : ndarray of shape (N,), float32
    curriculum : CurriculumLearning
    """
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        raise TypeError(
            f"device={device!r}: the second positional argument is the device, as in the "
            f"README signature create_curriculum_learning_with_dino(dataset, device, ...); "
            f"pass n_clusters={device!r} by keyword"
        )
    from cl_core.models import canonical_model_name

    if not isinstance(dino_model, str):
        raise TypeError(
            f"dino_model must be a model name such as 'dino_vits16', got {dino_model!r}"
        )
    local = weights if weights is not None else find_local_weights(dino_model)
    try:
        return create_curriculum_learning(
            canonical_model_name(dino_model),
            dataset,
            n_clusters=n_clusters,
            use_labels=use_labels,
            device=device,
            initial_effective_percentage=initial_effective_percentage,
            warmup_iterations=warmup_iterations,
            weights=local,
            **kwargs,
        )
    except RuntimeError as error:
        if local is not None or "could not download" not in str(error):
            raise
        raise RuntimeError(
            f"{error}\nWith curriculum_learning you can also pass weights=PATH to "
            f"create_curriculum_learning_with_dino, or put the file in the directory named by "
            f"${WEIGHTS_DIR_ENV} as {canonical_model_name(dino_model)}.safetensors (or "
            f"{dino_model}.pth)."
        ) from error
