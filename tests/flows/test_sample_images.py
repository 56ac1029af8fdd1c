"""The report's sample images are the rows' own files: read through the embedding store's file
keys, not by listing the folder again (which costs a listing per publication, and shows the wrong
files once the folder has changed since the embedding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cl_core.store import FileKeys
from flows.params import DatasetParams
from flows.publication import sample_images


def _write(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def _keys(root: Path, paths: list[str]) -> FileKeys:
    n = len(paths)
    return FileKeys(
        root=str(root),
        paths=np.asarray(paths),
        sizes=np.ones(n, dtype=np.int64),
        mtimes_ns=np.ones(n, dtype=np.int64),
    )


def test_sample_images_come_from_the_rows_files(tmp_path: Path) -> None:
    for name, value in (("a/0.png", 10), ("a/1.png", 20), ("b/2.png", 30)):
        _write(tmp_path / name, value)
    dataset = DatasetParams(spec=f"imagefolder:{tmp_path}")
    keys = _keys(tmp_path, ["a/0.png", "a/1.png", "b/2.png"])
    _write(tmp_path / "a" / "00.png", 99)  # added after the embedding: listing row 1 is now it
    picked = {0: np.asarray([1, 2]), 1: np.asarray([0])}
    images = sample_images(dataset, picked, keys=keys)
    assert images is not None
    assert [int(image[0, 0, 0]) for image in images[0]] == [20, 30]
    assert [int(image[0, 0, 0]) for image in images[1]] == [10]
    listed = sample_images(dataset, picked)  # without keys: the folder as it is now
    assert listed is not None and [int(image[0, 0, 0]) for image in listed[0]] == [99, 20]
