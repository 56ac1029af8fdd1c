"""Drop-in replacement for the reference ``curriculum_learning`` library, over public ``cl_core``.

``fit`` runs the same steps as the flows (embed, cluster, normalise, schedule); weights come from
:class:`cl_core.sampler.Curriculum`. Migrating needs no code change; behaviour that differs (bugs
fixed) is listed in ``docs/differences.md``. Imports are light: torch, timm, zarr and scikit-learn
load on first use.
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
