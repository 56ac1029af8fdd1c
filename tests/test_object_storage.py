"""Artifacts on object storage: publish, point, verify and load at ``s3://`` URLs.

Every test talks to a real S3-compatible server (moto in server mode, its own process on
127.0.0.1) through the real s3fs client: nothing of the client is mocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import s3fs
from s3_server import start_moto_server, stop_server, use_s3_endpoint
from upath import UPath

from cl_core.artifacts import (
    MANIFEST_FILE,
    ArtifactIntegrityError,
    latest_version,
    list_versions,
    point_latest,
    publish_artifact,
    publish_curriculum,
    remove_stale_temporaries,
    verify_artifact,
)
from cl_core.sampler import load_curriculum

ROOT = Path(__file__).resolve().parents[1]
N = 300

pytestmark = pytest.mark.integration  # each test talks to an S3 server or runs a child Python


@pytest.fixture
def bucket(s3_bucket: str) -> str:
    """A fresh, empty bucket on the session's moto server (conftest's ``s3_bucket``)."""
    return s3_bucket


@pytest.fixture
def scores() -> np.ndarray:
    return np.random.default_rng(0).gamma(2.0, 1.0, N).astype(np.float32)


def _options() -> dict[str, Any]:
    return {"pacing": "linear", "initial_fraction": 0.3, "warmup_iterations": 20}


def test_publish_and_load_curriculum_at_an_s3_url(
    bucket: str, tmp_path: Path, scores: np.ndarray
) -> None:
    assignment = (np.arange(N) % 7).astype(np.int32)
    local = publish_curriculum(tmp_path, "digits", scores, assignment=assignment, **_options())
    root = f"s3://{bucket}/artifacts"
    remote = publish_curriculum(root, "digits", scores, assignment=assignment, **_options())

    assert isinstance(local, Path)
    assert isinstance(remote, UPath)
    assert str(remote) == f"{root}/digits/{local.name}"  # same content, same version id
    manifest = verify_artifact(remote)
    assert manifest["version"] == local.name
    assert set(manifest["files"]) == {p.name for p in local.iterdir()} - {MANIFEST_FILE}

    loaded = load_curriculum(f"{root}/digits/latest")
    reference = load_curriculum(local)
    assert loaded.version == reference.version
    assert loaded.path == remote
    for iteration in (0, 10, 25):
        np.testing.assert_array_equal(
            loaded.probabilities(iteration), reference.probabilities(iteration)
        )
    np.testing.assert_array_equal(loaded.assignment, assignment)
    assert load_curriculum(f"{root}/digits").version == local.name  # the name means latest
    assert latest_version(root, "digits") == remote
    assert list_versions(root, "digits") == [remote]
    assert remove_stale_temporaries(root, "digits") == []  # nothing temporary on object storage


def test_mask_and_extra_files_on_s3(bucket: str, tmp_path: Path, scores: np.ndarray) -> None:
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"\x89PNG not really")
    mask = np.ones(N, dtype=bool)
    mask[[3, 50]] = False
    root = f"s3://{bucket}/a"
    path = publish_curriculum(
        root, "masked", scores, sample_mask=mask, extra_files={"plot.png": plot}, **_options()
    )
    manifest = verify_artifact(path)
    assert manifest["excluded"] == {"count": 2, "indices": [3, 50]}
    loaded = load_curriculum(path)
    assert loaded.probabilities(0)[[3, 50]].tolist() == [0.0, 0.0]
    assert (path / "plot.png").read_bytes() == plot.read_bytes()


def test_point_latest_moves_between_published_versions(bucket: str, scores: np.ndarray) -> None:
    root = f"s3://{bucket}/artifacts"
    first = publish_curriculum(root, "toy", scores, **_options())
    second = publish_curriculum(root, "toy", scores[::-1].copy(), **_options())
    assert load_curriculum(f"{root}/toy/latest").version == second.name
    assert point_latest(root, "toy", first.name) == first
    assert load_curriculum(f"{root}/toy/latest").version == first.name
    assert {path.name for path in list_versions(root, "toy")} == {first.name, second.name}
    with pytest.raises(FileNotFoundError, match=r"has no manifest\.json"):
        point_latest(root, "toy", "0123456789ab")
    assert load_curriculum(f"{root}/toy/latest").version == first.name  # unchanged


def test_readers_never_see_a_version_without_its_manifest(bucket: str, scores: np.ndarray) -> None:
    """Watch the bucket while publishing: files first, manifest next, ``latest`` last."""
    root = f"s3://{bucket}/artifacts"
    version_prefix: list[str] = []
    snapshots: list[set[str]] = []
    done = threading.Event()
    watcher_fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)

    def watch() -> None:
        while not done.is_set():
            try:
                keys = set(watcher_fs.find(f"{bucket}/artifacts/big"))
            except FileNotFoundError:
                keys = set()
            snapshots.append({key.rsplit("/", 1)[-1] for key in keys})

    json_files = {f"part{index:02d}": {"rows": list(range(200))} for index in range(25)}
    thread = threading.Thread(target=watch)
    thread.start()
    try:
        path = publish_artifact(
            root,
            "big",
            arrays={"difficulty": scores},
            json_files=json_files,
            config={"what": "ordering"},
            parents=[],
        )
        version_prefix.append(path.name)
    finally:
        done.set()
        thread.join()
    files = {f"{name}.json" for name in json_files} | {"difficulty.npy"}
    assert len(snapshots) > 3, "the watcher saw too little of the publish"
    assert any(snap and MANIFEST_FILE not in snap for snap in snapshots), "saw no partial state"
    for snap in snapshots:
        if MANIFEST_FILE in snap:
            assert files <= snap, f"manifest visible before {sorted(files - snap)}"
        if "latest" in snap:
            assert MANIFEST_FILE in snap, "latest visible before the manifest"
    verify_artifact(f"{root}/big/latest")


def test_an_interrupted_upload_is_invisible_and_republishing_completes_it(
    bucket: str, scores: np.ndarray
) -> None:
    root = f"s3://{bucket}/artifacts"
    path = publish_curriculum(root, "toy", scores, **_options())
    (path / MANIFEST_FILE).unlink()  # as if the publisher died after the files, before this
    (path.parent / "latest").unlink()
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        load_curriculum(path)
    with pytest.raises(FileNotFoundError, match="no artifact named 'toy'"):
        latest_version(root, "toy")
    assert list_versions(root, "toy") == []
    again = publish_curriculum(root, "toy", scores, **_options())
    assert again == path
    verify_artifact(again)


def test_a_damaged_version_is_refused_then_replaced(bucket: str, scores: np.ndarray) -> None:
    root = f"s3://{bucket}/artifacts"
    path = publish_curriculum(root, "toy", scores, **_options())
    (path / "difficulty.npy").write_bytes((path / "schedule.json").read_bytes())
    with pytest.raises(ArtifactIntegrityError, match=r"difficulty\.npy has sha256"):
        verify_artifact(path)
    with pytest.raises(ArtifactIntegrityError, match="replace_damaged=True"):
        publish_curriculum(root, "toy", scores, **_options())
    again = publish_curriculum(root, "toy", scores, replace_damaged=True, **_options())
    assert again == path
    verify_artifact(again)
    np.testing.assert_array_equal(load_curriculum(again).difficulty, scores)


def test_a_missing_bucket_is_named_with_the_failed_operation(
    bucket: str, scores: np.ndarray
) -> None:
    missing = f"{bucket}-missing"
    with pytest.raises(FileNotFoundError, match=rf"bucket '{missing}' does not exist: cannot"):
        publish_curriculum(f"s3://{missing}/artifacts", "toy", scores, **_options())
    with pytest.raises(
        FileNotFoundError, match=rf"bucket '{missing}' does not exist: cannot look up"
    ):
        load_curriculum(f"s3://{missing}/artifacts/toy/latest")
    assert not fsspec.filesystem("s3").exists(f"s3://{missing}")  # and none was created


def test_denied_access_names_the_bucket_and_the_operation(
    monkeypatch: pytest.MonkeyPatch, scores: np.ndarray
) -> None:
    import boto3

    # Authorisation is enforced after the first 4 requests (the setup below, as admin).
    process, endpoint = start_moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    try:
        admin = {
            "endpoint_url": endpoint,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        }
        boto3.client("s3", **admin).create_bucket(Bucket="locked")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="reader")
        read_only = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
            ],
        }
        iam.put_user_policy(
            UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(read_only)
        )
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        use_s3_endpoint(monkeypatch, endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        # Which request the client makes first (a lookup or the write) is its own business: the
        # error must name the bucket and whichever operation was refused.
        refused = r"access denied to bucket 'locked': cannot (look up|list|read|write|delete) s3://"
        with pytest.raises(PermissionError, match=refused):
            publish_curriculum("s3://locked/artifacts", "toy", scores, **_options())
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        stop_server(process)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_an_s3_url_without_s3fs_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['s3fs'] = None  # as if s3fs were not installed\n"
        "from cl_core.sampler import load_curriculum\n"
        "try:\n"
        "    load_curriculum('s3://bucket/artifacts/digits/latest')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = _run(code)
    assert "need the s3fs package: pip install s3fs" in result.stdout, result.stderr
    assert "s3://bucket/artifacts/digits/latest" in result.stdout


def test_sampler_imports_fsspec_only_for_urls(tmp_path: Path, scores: np.ndarray) -> None:
    path = publish_curriculum(tmp_path, "toy", scores, **_options())
    code = (
        "import sys\n"
        "from cl_core.sampler import load_curriculum\n"
        "before = 'fsspec' in sys.modules\n"
        f"load_curriculum({str(path)!r}).probabilities(0)\n"
        "print(before, 'fsspec' in sys.modules)\n"
    )
    result = _run(code)
    assert result.stdout.split() == ["False", "False"], result.stderr


# -- the flows' work dir on object storage (intermediates, digest records, cache records) ----------


def test_work_dir_intermediates_round_trip_and_verify_on_s3(bucket: str) -> None:
    from flows import files as work_files
    from flows.ids import WorkDir

    work = WorkDir.at(f"s3://{bucket}/runs")
    assert (
        work.is_remote and str(work.difficulty("abc")) == f"s3://{bucket}/runs/difficulty/abc.npy"
    )
    assert str(work.store("e1")) == f"s3://{bucket}/runs/embeddings/e1.zarr"
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = work_files.save_npy(work.cluster("c1") / "centroids.npy", values)
    summary = work_files.save_json(str(work.schedule("s1")), {"k": 3, "score": np.float64(0.5)})

    np.testing.assert_array_equal(work_files.load_npy(str(path)), values)
    assert work_files.load_json(summary) == {"k": 3, "score": 0.5}
    assert work_files.all_verified(path, summary)
    fs = fsspec.filesystem("s3")
    assert fs.exists(f"s3://{bucket}/runs/clusters/c1/centroids.npy.sha256.json")

    fs.pipe_file(str(path), b"tampered")  # another writer, a partial upload...
    assert not work_files.verified(path)
    assert not work_files.verified(work.cluster("c1") / "missing.npy")


def test_a_missing_work_dir_bucket_fails_before_any_work_naming_bucket_and_operation(
    bucket: str,
) -> None:
    from flows import files as work_files
    from flows.ids import WorkDir

    missing = f"{bucket}-missing"
    work = WorkDir.at(f"s3://{missing}/runs")
    with pytest.raises(
        FileNotFoundError, match=rf"bucket '{missing}' does not exist: cannot write"
    ):
        work.check_writable()
    with pytest.raises(FileNotFoundError, match=rf"bucket '{missing}' does not exist"):
        work_files.verified(work.difficulty("abc"))  # not a plain cache miss
    WorkDir.at(f"s3://{bucket}/runs").check_writable()  # an existing bucket passes, leaves nothing
    assert fsspec.filesystem("s3").ls(f"s3://{bucket}") == []


def test_the_embedding_store_of_an_s3_work_dir_is_written_and_read_there(bucket: str) -> None:
    from cl_core.store import open_store, store_from_array
    from flows.ids import WorkDir

    location = str(WorkDir.at(f"s3://{bucket}/runs").store("e1"))
    features = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    store_from_array(location, features, chunk_rows=8, dataset_id="toy")
    reopened = open_store(location, read_only=True)
    assert reopened.is_complete and reopened.shape == (40, 6)
    rows = np.concatenate([block for _, block in reopened.iter_chunks("none")])
    np.testing.assert_array_equal(rows, features.astype(np.float16))
    assert fsspec.filesystem("s3").exists(f"s3://{bucket}/runs/embeddings/e1.zarr/zarr.json")


def test_work_dir_cache_records_go_to_object_storage(bucket: str) -> None:
    from prefect.filesystems import RemoteFileSystem

    from flows.ids import WorkDir

    storage = WorkDir.at(f"s3://{bucket}/runs").result_storage
    assert isinstance(storage, RemoteFileSystem)
    storage.write_path("embed-123", b"record")
    assert fsspec.filesystem("s3").cat_file(f"s3://{bucket}/runs/cache/embed-123") == b"record"
    assert storage.read_path("embed-123") == b"record"
    local = WorkDir.at("runs")
    assert local.result_storage == local.cache == Path("runs").absolute() / "cache"


def test_a_work_dir_url_without_s3fs_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['s3fs'] = None  # as if s3fs were not installed\n"
        "from flows.ids import WorkDir\n"
        "try:\n"
        "    WorkDir.at('s3://bucket/runs').check_writable()\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = _run(code)
    assert "need the s3fs package: pip install s3fs" in result.stdout, result.stderr
