"""Training time: load a published curriculum and feed curriculum indices to a DataLoader.

Imports only numpy, the standard library and ``cl_core``'s numpy-only parts, so a training job
pays nothing for Prefect, Dask, scikit-learn, Zarr or torch::

    cur = load_curriculum("artifacts/digits/latest")
    sampler = CurriculumSampler(cur, batch_size=256, seed=0, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, sampler=sampler)
"""

from __future__ import annotations

from cl_core.sampler.curriculum import Curriculum, load_curriculum
from cl_core.sampler.draws import GroupedDraws
from cl_core.sampler.sampler import DEFAULT_REFRESH_EVERY, CurriculumSampler

__all__ = [
    "DEFAULT_REFRESH_EVERY",
    "Curriculum",
    "CurriculumSampler",
    "GroupedDraws",
    "load_curriculum",
]
