"""Feature extractors (reference API) and the lazy view of the clustered features.

A :class:`FeatureExtractor` turns a dataset into an embedding store
(:class:`cl_core.store.EmbeddingStore`); :class:`PretrainedModelExtractor` streams a model's
batches into it with :func:`cl_core.embed.embed_dataset`, a user subclass returns an array from
:meth:`FeatureExtractor.extract_features`. torch, timm and zarr load on first use.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from cl_core.store import EmbeddingStore, StoreMismatchError, open_store, store_from_array
from curriculum_learning.data import device_name, ordered_loader, to_numpy

__all__ = ["FeatureExtractor", "FeatureView", "PrecomputedDifficulty", "PretrainedModelExtractor"]


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
        loader = ordered_loader(dataset, batch_size)
        features = to_numpy(self.extract_features(loader, device))
        if features.ndim != 2 or features.shape[0] != len(loader.dataset):
            raise ValueError(
                f"{type(self).__name__}.extract_features returned shape {features.shape}; it "
                f"must return one feature row per sample, shape ({len(loader.dataset)}, D)"
            )
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
        such as ``"dino_vits16"`` is accepted (see :func:`cl_core.embed.load_model`).
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
            device=device_name(device),
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
