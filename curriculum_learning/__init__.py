"""Drop-in replacement for the reference ``curriculum_learning`` library.

The reference library's API (both of its READMEs) on top of :mod:`cl_core`; every computation
runs through the same public ``cl_core`` steps as the Prefect flows::

    dataset --cl_core.embed--> Zarr embedding store (in memory, or ``cache_dir``)
            --cl_core.cluster.cluster_embeddings--> centroids, assignment, distances
            --cl_core.difficulty.normalize_difficulty--> difficulty in [0, 1] (``weights_``)
            --cl_core.schedule.build_schedule--> temperature table, solved once
            --cl_core.sampler.Curriculum--> ``get_curriculum_weights(current_iteration=t)``

Modules:

``extractors``
    ``FeatureExtractor``, ``PretrainedModelExtractor`` (dataset -> embedding store) and
    ``FeatureView`` (the lazy ``features_``).
``estimator``
    ``CurriculumLearning``: fit, weights, save/load, publish.
``params``
    Constructor parameters -> ``ClusterConfig`` / ``ScheduleConfig`` / difficulty method.
``sampling``
    Both reference call styles of ``get_curriculum_weights``; ``CurriculumWarning``.
``persistence``
    The ``save_weights`` file format (``.npz``, no pickle, atomic).
``factories``
    ``create_curriculum_learning``, ``create_curriculum_learning_with_dino`` and the local
    weights lookup.
``data``
    Labels, datasets and devices as the reference accepted them.

Migrating from the reference needs no code change. Behaviour that differs (bugs fixed) is listed
in ``docs/differences.md`` (summarised in the README section "Differences from the reference
library"). Imports are light: torch, timm, zarr and scikit-learn load on first use.
"""

from __future__ import annotations

from curriculum_learning.data import dataset_labels
from curriculum_learning.estimator import CurriculumLearning
from curriculum_learning.extractors import (
    FeatureExtractor,
    FeatureView,
    PrecomputedDifficulty,
    PretrainedModelExtractor,
)
from curriculum_learning.factories import (
    WEIGHTS_DIR_ENV,
    create_curriculum_learning,
    create_curriculum_learning_with_dino,
    find_local_weights,
)
from curriculum_learning.sampling import CurriculumWarning

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
