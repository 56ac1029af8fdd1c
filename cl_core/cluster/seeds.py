"""Seeds: every random choice of the stage derives from ``random_state`` and a fixed key.

Each use (subsample, each k of the sweep, initial centres, streamed order per epoch, each class,
the torch fit's own draws) gets its own stream through :class:`numpy.random.SeedSequence`, so
results do not depend on scheduling, on the Dask backend or on the number of cores. All keys live
here, so that no two uses can share one.
"""

from __future__ import annotations

import numpy as np

from cl_core.cluster.config import ClusterConfig, check_config
from cl_core.validation import check_random_state

# Keys that separate the random streams of the different uses of one random_state.
KEY_SAMPLE = 1
KEY_SWEEP = 2
KEY_INIT = 3
KEY_STREAM = 4
KEY_ORDER = 5
KEY_FIT_SAMPLE = 6
KEY_CLASS = 7
# The torch fit (cl_core.cluster.kmeans_torch): its init subsample, k-means++ draws, mini-batch order.
KEY_TORCH_INIT_SAMPLE = 11
KEY_TORCH_INIT = 12
KEY_TORCH_ORDER = 13
# The k sweep's half-sample replicates (cl_core.cluster.replicates): their rows, their init rows.
KEY_HALF = 21
KEY_HALF_INIT = 22


def root_entropy(random_state: int | None) -> int:
    """The root entropy: ``random_state`` itself, or fresh entropy for ``None``."""
    checked = check_random_state(random_state)
    return int(np.random.SeedSequence().entropy) if checked is None else checked  # type: ignore[arg-type]


def derive_seed(entropy: int, *keys: int) -> int:
    """A 32-bit seed for one use (keys), independent of every other use of ``entropy``."""
    sequence = np.random.SeedSequence(entropy, spawn_key=tuple(int(key) for key in keys))
    return int(sequence.generate_state(1)[0])


def sweep_seeds(config: ClusterConfig) -> tuple[int, int]:
    """``(sample_seed, sweep_seed)`` as :func:`cluster_embeddings` derives them from the config.

    With ``random_state=None`` each call draws fresh entropy; use one :func:`plan_sweep` for a
    whole unseeded sweep.
    """
    entropy = root_entropy(check_config(config).random_state)
    return derive_seed(entropy, KEY_SAMPLE), derive_seed(entropy, KEY_SWEEP)
