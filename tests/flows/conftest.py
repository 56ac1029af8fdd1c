"""Shared fixtures of the flow tests: one Prefect test server, tiny generated data, tiny model.

Everything here is session-scoped and deterministic: the images come from a seeded generator and
the encoder is timm's 100k-parameter ``test_efficientnet`` with seeded random weights saved to a
file (so its weights sha256, and with it every content id, is the same in every session).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """72 generated PNGs in 3 class folders (torchvision ImageFolder layout)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for label in range(N_CLASSES):
        folder = root / f"class{label}"
        folder.mkdir()
        for index in range(IMAGES_PER_CLASS):
            Image.fromarray(_blob_image(rng, label)).save(folder / f"{index:03d}.png")
    return root


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
