"""Settings of the clustering stage: :class:`ClusterConfig`, its vocabularies and defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cl_core.devices import cuda_may_be_present, resolve_device
from cl_core.store.moments import NORMALIZATIONS
from cl_core.validation import check_choice, check_int, check_random_state

SCHEDULERS = ("threads", "processes", "synchronous")
"""Local Dask schedulers for the k sweep (a ``dask.distributed.Client`` overrides them)."""

CHOSEN_BY = ("explicit", "davies_bouldin", "per_class")

FIT_DEVICES = ("auto", "cpu", "cuda")
"""Where the streamed final fit runs (:func:`resolve_fit_device`)."""

EXECUTION_FIELDS = ("scheduler", "n_workers", "n_threads")
""":class:`ClusterConfig` fields that change where the sweep runs, never its results."""

DEFAULT_SWEEP_SAMPLES = 20_000
"""Fewest rows of the subsample on which the sweep fits and scores every k (and the final fit
is initialised); it grows with the largest k (:func:`cl_core.cluster.grid.sweep_sample_size`:
20 rows per cluster at ``k_max``, within 1 GiB). 20 000 x 384 float32 is 30 MiB."""

DEFAULT_BATCH_SIZE = 4096
"""Rows per streamed ``partial_fit`` mini-batch (= the store's default chunk, so a block is one
chunk read)."""

DEFAULT_SWEEP_BATCH_SIZE = 65_536
"""Rows per device batch of the torch Lloyd passes inside each sweep job (speed only)."""

DEFAULT_SWEEP_REPLICATES = 4
"""Half-sample replicates per k: the index's mean and standard error come from them."""


class ClusterWarning(UserWarning):
    """A clustering request was adjusted (k capped, tiny class merged into one cluster...)."""


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of the clustering stage.

    Parameters
    ----------
    n_clusters : int or None
        Explicit number of clusters (per class when ``use_labels``); always honoured. ``None``
        chooses k by the Davies-Bouldin index over ``cluster_range``.
    cluster_range : (int, int)
        Inclusive ``(low, high)`` candidates for the automatic choice; ``low >= 2`` because the
        Davies-Bouldin index needs two clusters.
    use_labels : bool
        Cluster within each class (supervised mode) instead of over all rows.
    sweep_samples : int
        Fewest rows of the seeded subsample used by the sweep and for the initial centres
        (default :data:`DEFAULT_SWEEP_SAMPLES`; per class in supervised mode); the sample
        grows to 20 rows per cluster at the top of ``cluster_range`` within 1 GiB, capped at N
        (:func:`cl_core.cluster.grid.sweep_sample_size`).
    max_fit_samples : int or None
        If set and N is larger, the streamed refinement runs on a subsample of this many rows
        instead of on all rows (faster, slightly less precise centroids).
    batch_size : int
        Rows per ``MiniBatchKMeans.partial_fit`` step of the streamed refinement.
    normalize : {"standard", "l2", "none"}
        Row normalisation applied while reading (see the module notes).
    random_state : int or None
        Seed of every random choice; ``None`` draws fresh entropy (not reproducible).
    n_init : int
        k-means++ restarts for the initial centres; the lowest-inertia run is kept.
    n_epochs : int
        Passes of the streamed refinement over the data.
    sweep_batch_size : int
        Rows per device batch of the torch Lloyd passes inside each sweep job.
    sweep_n_init : int
        k-means++ draws per replicate fit inside each sweep job.
    sweep_replicates : int
        Half-sample replicates per k (:mod:`cl_core.cluster.choice`: the mean index and its
        standard error; 1 reduces the rule to the lowest index).
    scheduler : {"threads", "processes", "synchronous"}
        Local Dask scheduler of the sweep when no client is given.
    n_workers : int or None
        Parallel sweep jobs for the local scheduler (default: one per core).
    n_threads : int or None
        OpenMP/BLAS threads of the final fit and the assignment; ``None`` leaves the libraries'
        default (all cores). The default 1 is deliberate: each step is small (one mini-batch or
        one chunk), the chunk reader works in a second thread next to it, and multi-threaded
        OpenMP/BLAS regions stall badly when the cores are shared (measured on 2 cores: 5-10x
        slower under load). Raise it for very large k. Sweep jobs always run single-threaded,
        side by side.
    fit_device : {"auto", "cpu", "cuda"}
        Where the k sweep's fits run (torch Lloyd on either device), and where the final fit of
        a data set larger than ``sweep_samples`` runs: ``"cuda"`` is
        full-batch Lloyd in torch over the streamed rows (:mod:`cl_core.cluster.kmeans_torch`), started
        from k-means++ on the same seeded subsample; ``"cpu"`` the streamed scikit-learn
        ``MiniBatchKMeans``; ``"auto"`` CUDA when torch sees a device. Same quality, not
        bitwise the same centroids, so results depend on it (record
        :func:`resolve_fit_device`). Data sets within ``sweep_samples`` rows are always fitted
        exactly on the CPU (scikit-learn ``KMeans``), so small results are identical everywhere.
        Supervised mode refines on the CPU.
    gpu_max_iter : int
        Lloyd passes of the CUDA fit (it stops earlier at a relative shift of 1e-4).
    """

    n_clusters: int | None = None
    cluster_range: tuple[int, int] = (2, 20)
    use_labels: bool = False
    sweep_samples: int = DEFAULT_SWEEP_SAMPLES
    max_fit_samples: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    normalize: str = "standard"
    random_state: int | None = 0
    n_init: int = 3
    n_epochs: int = 1
    sweep_batch_size: int = DEFAULT_SWEEP_BATCH_SIZE
    sweep_n_init: int = 1
    sweep_replicates: int = DEFAULT_SWEEP_REPLICATES
    scheduler: str = "threads"
    n_workers: int | None = None
    n_threads: int | None = 1
    fit_device: str = "auto"
    gpu_max_iter: int = 20

    def __post_init__(self) -> None:
        if self.n_clusters is not None:
            check_int("n_clusters", self.n_clusters, 1, "; use None to choose k over cluster_range")
        object.__setattr__(self, "cluster_range", check_cluster_range(self.cluster_range))
        if not isinstance(self.use_labels, (bool, np.bool_)):
            raise TypeError(f"use_labels must be True or False, got {self.use_labels!r}")
        check_int("sweep_samples", self.sweep_samples, 3, " (the sweep needs k + 1 rows)")
        if self.max_fit_samples is not None:
            check_int("max_fit_samples", self.max_fit_samples, 1, "; or None to stream all rows")
        check_int("batch_size", self.batch_size, 1)
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_random_state(self.random_state)
        check_int("n_init", self.n_init, 1)
        check_int("n_epochs", self.n_epochs, 1)
        check_int("sweep_batch_size", self.sweep_batch_size, 1)
        check_int("sweep_n_init", self.sweep_n_init, 1)
        check_int("sweep_replicates", self.sweep_replicates, 1)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if self.n_workers is not None:
            check_int("n_workers", self.n_workers, 1, "; or None for one per core")
        if self.n_threads is not None:
            check_int("n_threads", self.n_threads, 1, "; or None for the library default")
        check_choice("fit_device", self.fit_device, FIT_DEVICES)
        check_int("gpu_max_iter", self.gpu_max_iter, 1)

    def to_dict(self, *, execution: bool = True) -> dict[str, Any]:
        """JSON-ready dict of the fields (``cluster_range`` as a list).

        With ``execution=False`` the fields that only say *how* to run (:data:`EXECUTION_FIELDS`)
        are left out: results do not depend on them, so cache keys should not either.
        """
        values = asdict(self)
        values["cluster_range"] = list(self.cluster_range)
        if not execution:
            for name in EXECUTION_FIELDS:
                values.pop(name)
        return values


def resolve_fit_device(config: ClusterConfig) -> str:
    """``"cpu"`` or ``"cuda"``: where the streamed final fit runs for ``config`` on this machine.

    ``"auto"`` asks torch for a CUDA device (without importing torch on a Linux or macOS
    machine that has no NVIDIA driver: :func:`cl_core.devices.cuda_may_be_present`); ``"cuda"``
    without one is an error. Cache keys and manifests should record the resolved value.

    Raises
    ------
    ValueError
        ``fit_device="cuda"`` on a machine where torch sees no CUDA device.
    """
    device = check_config(config).fit_device
    if device == "cpu" or (device == "auto" and not cuda_may_be_present()):
        return "cpu"
    return str(resolve_device(device, name="fit_device").type)


def check_cluster_range(value: object) -> tuple[int, int]:
    """``value`` as an inclusive ``(low, high)`` pair of ks with ``2 <= low <= high``; else raise."""
    hint = "; give (low, high) with 2 <= low <= high, e.g. (2, 20)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"cluster_range must be a pair (low, high), got {value!r}{hint}")
    low, high = (check_int("cluster_range", bound, 1, hint) for bound in value)
    if low < 2:
        raise ValueError(
            f"cluster_range={tuple(value)!r} starts below 2; the Davies-Bouldin index needs at "
            f"least 2 clusters{hint}"
        )
    if low > high:
        raise ValueError(f"cluster_range={tuple(value)!r} is inverted (low > high){hint}")
    return (low, high)


def check_config(config: object) -> ClusterConfig:
    """``config`` itself if it is a :class:`ClusterConfig`; else a TypeError with an example."""
    if not isinstance(config, ClusterConfig):
        raise TypeError(
            f"config must be a ClusterConfig, got {type(config).__name__}; e.g. "
            "ClusterConfig(n_clusters=10)"
        )
    return config
