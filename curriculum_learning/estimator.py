"""``CurriculumLearning``: the reference estimator, run by ``cl_core``'s stage steps.

``fit`` embeds (:meth:`FeatureExtractor.embed`), clusters
(:func:`cl_core.cluster.cluster_embeddings`), scores
(:func:`cl_core.difficulty.normalize_difficulty`) and solves the default strategy's schedule
once (:func:`cl_core.schedule.build_schedule`); weights are then served by
:class:`cl_core.sampler.Curriculum`, the class the training-time sampler uses.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.artifacts import publish_curriculum
from cl_core.cluster import ClusterResult, cluster_embeddings
from cl_core.difficulty import normalize_difficulty
from cl_core.sampler import Curriculum
from cl_core.schedule import (
    build_schedule,
    canonical_strategy,
    curriculum_probabilities,
    inverse_temperature,
)
from cl_core.store import EmbeddingStore
from cl_core.validation import check_choice, check_non_negative_int
from curriculum_learning import params as param_checks
from curriculum_learning import persistence
from curriculum_learning.data import as_labels, as_scores, dataset_labels, to_numpy
from curriculum_learning.extractors import FeatureExtractor, FeatureView, PrecomputedDifficulty
from curriculum_learning.sampling import positional_style, reachable_start, with_warmup

__all__ = ["CurriculumLearning"]


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
        The number of clusters in the reference's meaning: with ``use_labels``, k per class
        (``n_clusters`` when given, else the largest per-class choice); otherwise the total.
    n_clusters_total_ : int
        Total number of clusters (rows of ``centroids_``); the sum of ``clusters_per_class_``.
    clusters_per_class_ : dict or None
        ``{class: k}`` with ``use_labels`` (a class smaller than k gets k capped at its size).
    cluster_class_ : ndarray of shape (n_clusters_total_,) or None
        The class of each centroid row with ``use_labels``.
    centroids_ : ndarray of shape (n_clusters_total_, D), float32
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
        param_checks.check_params(self)
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
        param_checks.check_params(self)
        self._curricula.clear()
        return self

    @property
    def difficulty_method(self) -> str:
        """The :func:`cl_core.difficulty.normalize_difficulty` method in use."""
        return param_checks.difficulty_method(self)

    def _reset_fitted_state(self) -> None:
        self.weights_: np.ndarray | None = None
        self.features_: FeatureView | None = None
        self.labels_: np.ndarray | None = None
        self.optimal_clusters_: int | None = None
        self.n_clusters_total_: int | None = None
        self.clusters_per_class_: dict[Any, int] | None = None
        self.centroids_: np.ndarray | None = None
        self.assignment_: np.ndarray | None = None
        self.distances_: np.ndarray | None = None
        self.cluster_result_: ClusterResult | None = None
        self.store_: EmbeddingStore | None = None
        self.cluster_class_: np.ndarray | None = None
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
        param_checks.check_params(self)
        self._reset_fitted_state()
        class_labels = (
            as_labels(labels, "labels") if labels is not None else dataset_labels(dataset)
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
        if self.use_labels and class_labels is None:
            raise ValueError(
                "use_labels=True needs class labels, but none were found: pass "
                "fit(dataset, labels=...) or a dataset with .targets/.labels or (x, y) "
                "samples; or set use_labels=False"
            )
        config = param_checks.cluster_config(self, n_rows=store.n_rows)
        result = cluster_embeddings(store, config, labels=class_labels if self.use_labels else None)
        # distances normalised within each cluster, or each class with use_labels (as the flows)
        groups = class_labels if self.use_labels else result.assignment
        difficulty = normalize_difficulty(result.distances, groups, method=self.difficulty_method)
        self.store_ = store
        self.features_ = FeatureView(store, self.feature_extractor.normalization)
        self.labels_ = class_labels
        self.cluster_result_ = result
        self.centroids_ = np.asarray(result.centroids, dtype=np.float32)
        self.assignment_ = np.asarray(result.assignment, dtype=np.int32)
        self.distances_ = np.asarray(result.distances, dtype=np.float32)
        _set_cluster_counts(self, int(result.n_clusters), result.cluster_class)
        self.weights_ = np.asarray(difficulty, dtype=np.float32)
        self.curriculum(self.strategy)  # solve the default strategy's table once, now
        return self

    def _store_location(self) -> Any:
        if self.cache_dir is None:
            import zarr

            return zarr.storage.MemoryStore()
        directory = Path(self.cache_dir).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        return str(directory / "embeddings.zarr")

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
        scores = as_scores(difficulty)
        instance.weights_ = scores
        if assignment is not None:
            ids = to_numpy(assignment)
            if ids.shape != scores.shape or ids.dtype.kind not in "iu":
                raise ValueError(
                    f"assignment must hold one integer cluster id per sample, shape "
                    f"{scores.shape}; got dtype {ids.dtype} shape {ids.shape}"
                )
            instance.assignment_ = ids.astype(np.int32)
            _set_cluster_counts(instance, int(np.unique(ids).size), None)
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
        difficulty = self._require_fitted()
        resolved = canonical_strategy(self.strategy if strategy is None else strategy)
        warmup = self.warmup_iterations if warmup_iterations is None else warmup_iterations
        warmup = check_non_negative_int("warmup_iterations", warmup)
        key = (resolved, warmup)
        if key not in self._curricula:
            base_key = (resolved, int(self.warmup_iterations))
            if base_key not in self._curricula:
                start = reachable_start(
                    difficulty, float(self.initial_effective_percentage), resolved
                )
                schedule = build_schedule(
                    difficulty, param_checks.schedule_config(self, resolved, start)
                )
                self._curricula[base_key] = Curriculum.from_arrays(
                    difficulty, schedule, self.assignment_
                )
            if key != base_key:
                base = self._curricula[base_key].schedule
                self._curricula[key] = Curriculum.from_arrays(
                    difficulty, with_warmup(base, warmup), self.assignment_
                )
        return self._curricula[key]

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
        temperature, strategy, current_iteration, warmup_iterations = positional_style(
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

    # -- persistence and publishing -------------------------------------------------------

    def save_weights(self, filepath: str | os.PathLike[str]) -> Path:
        """Save the fitted state to exactly ``filepath`` (no suffix added), without pickle.

        The file is a NumPy ``.npz`` archive (whatever its suffix) holding ``weights``,
        ``assignment``, ``centroids``, ``distances``, ``labels`` (when known) and a JSON
        document with the parameters, the random seed, the cluster choice and the default
        strategy's schedule table (layout: :mod:`curriculum_learning.persistence`). Features are
        not saved (they live in the embedding store).

        Returns
        -------
        Path
            ``filepath``.
        """
        weights = self.get_difficulty_weights()  # NotFittedError before fit
        params = self.get_params()
        del params["feature_extractor"], params["cache_dir"]
        params["cluster_range"] = list(params["cluster_range"])
        arrays = {
            "weights": weights,
            "assignment": self.assignment_,
            "centroids": self.centroids_,
            "distances": self.distances_,
            "labels": self.labels_,
            "cluster_class": self.cluster_class_,
        }
        result = self.cluster_result_
        meta = {
            "params": params,
            "random_state": self.random_state,
            "feature_extractor": type(self.feature_extractor).__qualname__,
            "optimal_clusters": self.optimal_clusters_,
            "n_clusters_total": self.n_clusters_total_,
            "chosen_by": None if result is None else result.chosen_by,
            "store_fingerprint": None if self.store_ is None else self.store_.fingerprint,
            "schedule": self.curriculum(self.strategy).schedule.to_json(),
        }
        return persistence.save(filepath, arrays, meta)

    def load_weights(self, filepath: str | os.PathLike[str]) -> CurriculumLearning:
        """Restore a state written by :meth:`save_weights` (read with ``allow_pickle=False``).

        The saved parameters (strategy, pacing, initial fraction, warmup, clustering settings)
        replace this instance's, and the saved schedule table is reused as is, so
        :meth:`get_curriculum_weights` returns exactly what it returned before saving.
        ``features_`` is None afterwards.

        Returns
        -------
        self
        """
        state = persistence.load(filepath, known_params=self._param_names())
        self.set_params(**state.params)
        self._reset_fitted_state()
        self.weights_ = state.weights
        self.assignment_ = state.assignment
        self.centroids_ = state.centroids
        self.distances_ = state.distances
        self.labels_ = state.labels
        _set_cluster_counts(self, state.n_clusters_total, state.cluster_class)
        key = (state.schedule.config.strategy, int(self.warmup_iterations))
        self._curricula[key] = Curriculum.from_arrays(
            self.weights_, state.schedule, self.assignment_
        )
        return self

    def publish(
        self, root: str | os.PathLike[str], name: str, *, strategy: str | None = None
    ) -> Any:
        """Publish the fitted curriculum as a versioned artifact for the training-time sampler.

        ``cl_core.sampler.load_curriculum(path).probabilities(t)`` then equals
        ``get_curriculum_weights(strategy=strategy, current_iteration=t)``.

        Returns
        -------
        Path
            The artifact's version directory (what
            :func:`cl_core.artifacts.publish_curriculum` returns for ``root``).
        """
        curriculum = self.curriculum(strategy)
        config = curriculum.schedule.config
        sweep = None if self.cluster_result_ is None else self.cluster_result_.sweep_records()
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


def _set_cluster_counts(
    estimator: CurriculumLearning, total: int | None, cluster_class: Any
) -> None:
    """Set the fitted cluster counts of ``estimator`` (``optimal_clusters_`` as the reference)."""
    estimator.cluster_class_ = None if cluster_class is None else np.asarray(cluster_class)
    estimator.clusters_per_class_ = param_checks.clusters_per_class(estimator.cluster_class_)
    estimator.n_clusters_total_ = total
    estimator.optimal_clusters_ = param_checks.reference_k(
        estimator.n_clusters, estimator.clusters_per_class_, total
    )
