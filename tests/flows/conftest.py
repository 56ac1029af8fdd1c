"""Shared fixtures of the flow tests: one Prefect test server, tiny generated data, tiny model.

Everything here is session-scoped and deterministic: the images come from a seeded generator and
the encoder is timm's 100k-parameter ``test_efficientnet`` with seeded random weights saved to a
file (so its weights sha256, and with it every content id, is the same in every session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

N_CLASSES = 3
IMAGES_PER_CLASS = 24
IMAGE_SIZE = 32
CHUNK_ROWS = 16  # 72 images -> 5 shards of 16 rows (the last one short)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API (own SQLite database) for the whole session (~15 s once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _blob_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """An RGB image whose colour and blob position depend on the class, plus noise."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    centre = np.array([8 + 8 * label, 24 - 6 * label]) + rng.normal(0, 2.0, 2)
    radius = 5 + rng.uniform(0, 4)
    blob = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) < radius**2
    colour = np.eye(3)[label] * 200 + 30
    image = rng.normal(40, 12, (IMAGE_SIZE, IMAGE_SIZE, 3))
    image[blob] = colour + rng.normal(0, 10, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, per_class: int, seed: int) -> Path:
    """``per_class`` generated PNGs in each of 3 class folders (torchvision ImageFolder layout)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in range(N_CLASSES):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            Image.fromarray(_blob_image(rng, label)).save(folder / f"{index:03d}.png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """72 generated PNGs in 3 class folders (torchvision ImageFolder layout)."""
    return write_image_folder(tmp_path_factory.mktemp("images"), IMAGES_PER_CLASS, seed=7)


@pytest.fixture(scope="session")
def image_folder_writer() -> Callable[[Path, int, int], Path]:
    """:func:`write_image_folder`, for tests that need a folder of another size."""
    return write_image_folder


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded random weights of timm's ``test_efficientnet`` (no classifier) as safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("weights") / "test_efficientnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def pipeline_params(image_folder: Path, tiny_weights: Path) -> dict:
    """Parameters of a tiny pipeline run (output directories are added per test)."""
    from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams

    return {
        "dataset": DatasetParams(spec=f"imagefolder:{image_folder}", name="tiny"),
        "embedding": EmbedParams(
            model="test_efficientnet",
            weights=str(tiny_weights),
            image_size=IMAGE_SIZE,
            batch_size=16,
            device="cpu",
            dtype="float32",
            chunk_rows=CHUNK_ROWS,
            shard_rows=CHUNK_ROWS,
        ),
        "clustering": ClusterParams(cluster_range=(2, 5)),
        "curriculum": CurriculumParams(warmup_iterations=100),
    }


@pytest.fixture(scope="session")
def blob_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished embedding store of 3 well-separated blobs (60 x 8, labels): no model needed.

    Runs on ``zarr:`` of it skip embedding, so they test the cluster and curriculum stages, the
    CLI and the cache in a few seconds.
    """
    from cl_core.store import store_from_array

    rng = np.random.default_rng(3)
    centres = np.eye(3, 8) * 6.0
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + rng.normal(0.0, 0.5, (60, 8))
    path = tmp_path_factory.mktemp("store") / "blobs.zarr"
    store_from_array(path, features.astype(np.float32), labels, chunk_rows=16, dtype="float32")
    return path


@pytest.fixture(scope="session")
def server_env(prefect_server: None) -> dict[str, str]:
    """Environment for a subprocess that reports to the session's test server (no embedded
    server start in the child): PREFECT_API_URL of the harness, telemetry off, offline."""
    import os

    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_HOME=os.environ["PREFECT_HOME"],
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
    )
    return env


@pytest.fixture(scope="session")
def pipeline_local_run(
    prefect_server: None, pipeline_params: dict, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """The tiny pipeline run in one process (threads): what runs spread over a Dask cluster or
    object storage must publish (same version)."""
    from flows.params import OutputParams
    from flows.pipeline import curriculum_pipeline

    root = tmp_path_factory.mktemp("local-run")
    output = OutputParams(
        output_dir=str(root / "artifacts"), work_dir=str(root / "runs"), sweep_runner="threads"
    )
    return curriculum_pipeline(**pipeline_params, output=output)
