"""A kill -9 at any point of a nightly (incremental) run, then a rerun: the same version as an
uninterrupted incremental run, and yesterday's store and artifact intact (issue 19).

The child runs the pipeline with one library function wrapped so that, once it has done its
work, it writes a marker file and sleeps; the test waits for the marker and sends SIGKILL, so
each kill lands at a known point: while copying yesterday's rows into today's store, between
embedding shards, after assigning the new rows to yesterday's centroids, and half-way through
writing the new version's files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cl_core.artifacts import point_latest, resolve_version, verify_artifact
from cl_core.store import open_store
from flows.params import ClusterParams, DatasetParams, OutputParams

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

KILLED_RUN = """
import json, sys, time
from pathlib import Path
point, marker = sys.argv[2], Path(sys.argv[3])

def stop_after(owner, name, calls=1):
    real = getattr(owner, name)
    count = [0]
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        count[0] += 1
        if count[0] >= calls:
            marker.write_text(point)
            time.sleep(600)  # killed here
        return result
    setattr(owner, name, wrapped)

if point == "copy":
    from cl_core.store import EmbeddingStore
    stop_after(EmbeddingStore, "write_reused")  # shard 0 copied, shard 1 half copied
elif point == "embedding":
    import cl_core.embed
    stop_after(cl_core.embed, "embed_shards")
elif point == "assignment":
    import cl_core.update.apply
    stop_after(cl_core.update.apply, "assign_to_previous")
elif point == "publish":
    import cl_core.artifacts.publish
    stop_after(cl_core.artifacts.publish, "write_file", calls=3)
from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams, OutputParams
from flows.pipeline import curriculum_pipeline
raw = json.loads(sys.argv[1])
models = dict(dataset=DatasetParams, embedding=EmbedParams, clustering=ClusterParams,
              curriculum=CurriculumParams, output=OutputParams)
curriculum_pipeline(**{key: models[key](**value) for key, value in raw.items()})
"""
POINTS = ("copy", "embedding", "assignment", "publish")


def _params(pipeline_params: dict, images: Path, root: Path) -> dict[str, Any]:
    return {
        **pipeline_params,
        "dataset": DatasetParams(spec=f"imagefolder:{images}", name="tiny"),
        "clustering": ClusterParams(n_clusters=3),
        "output": OutputParams(
            output_dir=str(root / "artifacts"), work_dir=str(root / "runs"), sweep_runner="threads"
        ),
    }


def _run(params: dict[str, Any]) -> Any:
    from flows.pipeline import curriculum_pipeline

    return curriculum_pipeline(**params)


def _killed_at(point: str, params: dict[str, Any], env: dict[str, str], marker: Path) -> None:
    raw = json.dumps({key: value.model_dump(mode="json") for key, value in params.items()})
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, raw, point, str(marker)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"the run never reached {point!r} (exit {process.poll()})"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


def _store_digest(path: Path) -> str:
    """sha256 over every file of a store (its rows, attributes and markers)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".lock" not in p.name):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _add(images: Path, point: str) -> Path:
    """One new image in shard 1 (row 25 of 73): a different file for every kill point."""
    seed = POINTS.index(point)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
    path = images / "class1" / f"000{'abcd'[seed]}.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def yesterday(
    prefect_server: None,
    image_folder: Path,
    pipeline_params: dict,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Yesterday's run, published twice: in the root whose next run is killed, and in a clean
    root whose next run is not."""
    root = tmp_path_factory.mktemp("nightly")
    images = Path(shutil.copytree(image_folder, root / "images"))
    killed = _params(pipeline_params, images, root / "killed")
    clean = _params(pipeline_params, images, root / "clean")
    first = _run(killed)
    assert _run(clean).version == first.version
    (store,) = (root / "killed" / "runs" / "embeddings").glob("*.zarr")
    return {
        "root": root,
        "images": images,
        "killed": killed,
        "clean": clean,
        "result": first,
        "store": store,
        "store_digest": _store_digest(store),
    }


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_during_an_incremental_run_then_a_rerun_gives_the_same_version(
    yesterday: dict[str, Any], server_env: dict[str, str], point: str
) -> None:
    root, first = yesterday["root"], yesterday["result"]
    added = _add(yesterday["images"], point)
    try:
        expected = _run(yesterday["clean"])  # uninterrupted: yesterday's version updated
        assert expected.lineage is not None and expected.lineage["parent"] == first.version
        _killed_at(point, yesterday["killed"], server_env, root / f"reached-{point}")
        latest = resolve_version(root / "killed" / "artifacts" / "tiny" / "latest")
        assert latest.name == first.version
        verify_artifact(first.artifact_path)  # yesterday's artifact is intact
        assert _store_digest(yesterday["store"]) == yesterday["store_digest"]  # and its store
        assert open_store(yesterday["store"], read_only=True).verify_rows() is None
        rerun = _run(yesterday["killed"])
        assert rerun.version == expected.version
        assert rerun.lineage == expected.lineage
    finally:  # back to yesterday's listing and version for the next point
        added.unlink()
        for name in ("killed", "clean"):
            point_latest(root / name / "artifacts", "tiny", first.version)
