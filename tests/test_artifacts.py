"""Versioned artifacts: content ids, atomic publish, ``latest``, verification, no pickle."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import cl_core.artifacts as artifacts
import cl_core.artifacts.publish as publishing
from cl_core import CODE_VERSION
from cl_core.artifacts import (
    SCHEMA_VERSION,
    ArtifactIntegrityError,
    array_digest,
    compute_version,
    curriculum_identity,
    latest_version,
    list_versions,
    load_array,
    load_manifest,
    publish_artifact,
    publish_curriculum,
    resolve_version,
    verify_artifact,
)
from cl_core.sampler import load_curriculum

WARMUP = 50
OLD_TIME_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09: any rewrite would change it


@pytest.fixture
def scores(rng: np.random.Generator) -> np.ndarray:
    return rng.random(300)


def _publish(root: Path, scores: np.ndarray, **kwargs: object) -> Path:
    options: dict[str, object] = {"warmup_iterations": WARMUP, **kwargs}
    return publish_curriculum(root, "toy", scores, **options)  # type: ignore[arg-type]


def _published_dirs(root: Path, name: str = "toy") -> list[str]:
    return sorted(path.name for path in (root / name).iterdir() if path.is_dir())


def _freeze_mtimes(directory: Path) -> dict[str, int]:
    for path in directory.iterdir():
        os.utime(path, ns=(OLD_TIME_NS, OLD_TIME_NS))
    return {path.name: path.stat().st_mtime_ns for path in directory.iterdir()}


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------- layout + manifest


def test_publish_curriculum_writes_the_documented_layout(
    tmp_path: Path, scores: np.ndarray
) -> None:
    assignment = (np.arange(300) % 4).astype(np.int64)
    centroids = np.ones((4, 7))
    version_dir = _publish(
        tmp_path, scores, assignment=assignment, centroids=centroids, sweep=[{"k": 4, "db": 0.5}]
    )

    assert version_dir.parent == tmp_path / "toy"
    assert re.fullmatch(r"[0-9a-f]{12}", version_dir.name)
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "assignment.npy",
        "centroids.npy",
        "difficulty.npy",
        "manifest.json",
        "schedule.json",
        "sweep.json",
    ]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["name"] == "toy"
    assert manifest["version"] == version_dir.name
    assert manifest["code_version"] == CODE_VERSION
    assert manifest["created_at"].endswith("+00:00")
    assert (manifest["n_samples"], manifest["dim"], manifest["n_clusters"]) == (300, 7, 4)
    assert manifest["config"]["schedule"]["warmup_iterations"] == WARMUP
    assert manifest["config"]["schedule"]["grid_size"] > 0  # defaults are part of the config
    assert array_digest(scores.astype(np.float32)) in manifest["parents"]
    assert manifest["version"] == compute_version(manifest["parents"], manifest["config"])

    files = manifest["files"]
    assert files["difficulty.npy"]["shape"] == [300]
    assert files["difficulty.npy"]["dtype"] == "float32"
    assert files["assignment.npy"]["dtype"] == "int32"
    assert files["centroids.npy"]["shape"] == [4, 7]
    assert files["schedule.json"]["shape"] is None and files["schedule.json"]["dtype"] is None
    assert set(files) == {p.name for p in version_dir.iterdir()} - {"manifest.json"}
    np.testing.assert_array_equal(load_array(version_dir, "difficulty"), scores.astype(np.float32))
    assert load_array(version_dir, "assignment.npy").dtype == np.int32


def test_every_path_form_resolves_to_the_same_version(tmp_path: Path, scores: np.ndarray) -> None:
    version_dir = _publish(tmp_path, scores)
    forms = [
        version_dir,
        version_dir / "manifest.json",
        tmp_path / "toy" / "latest",
        tmp_path / "toy",
        str(tmp_path / "toy"),
    ]
    assert {resolve_version(form) for form in forms} == {version_dir}
    for form in (tmp_path / "toy" / "latest", tmp_path / "toy", version_dir):
        cur = load_curriculum(form)
        assert cur.path == version_dir and cur.version == version_dir.name
        np.testing.assert_array_equal(cur.difficulty, scores.astype(np.float32))
    assert latest_version(tmp_path, "toy") == version_dir


def test_loaded_curriculum_carries_the_artifact(tmp_path: Path, scores: np.ndarray) -> None:
    assignment = np.arange(300) % 3
    cur = load_curriculum(
        _publish(tmp_path, scores, assignment=assignment, strategy="difficulty", pacing="cosine")
    )
    assert cur.n_samples == 300
    assert cur.difficulty.dtype == np.float32
    assert cur.strategy == "hard"  # the reference's alias is stored canonically
    assert cur.pacing == "cosine"
    assert (cur.initial_fraction, cur.warmup_iterations) == (0.3, WARMUP)
    np.testing.assert_array_equal(cur.assignment, assignment)
    assert cur.manifest is not None and cur.manifest["n_samples"] == 300
    assert cur.target_fraction(0) == pytest.approx(0.3)


# ---------------------------------------------------------------------------- content ids


def test_same_content_twice_gives_same_version_and_rewrites_nothing(
    tmp_path: Path, scores: np.ndarray
) -> None:
    first = _publish(tmp_path, scores)
    before = _freeze_mtimes(first)

    second = _publish(tmp_path, scores.copy())

    assert second == first
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == before
    assert _published_dirs(tmp_path) == [first.name]
    assert not [p for p in (tmp_path / "toy").iterdir() if p.name.startswith(".")]


def test_different_scores_or_settings_get_different_versions(
    tmp_path: Path, scores: np.ndarray
) -> None:
    base = _publish(tmp_path, scores)
    changed = scores.copy()
    changed[0] += 0.01
    versions = {
        base,
        _publish(tmp_path, changed),
        _publish(tmp_path, scores, pacing="cosine"),
        _publish(tmp_path, scores, assignment=np.zeros(300, dtype=int)),
        _publish(tmp_path, scores, parents=("store:abc",)),
        _publish(tmp_path, scores, config={"model": "dino"}),
    }
    assert len(versions) == 6
    assert len(list_versions(tmp_path, "toy")) == 6


def test_latest_follows_the_newest_publish(tmp_path: Path, scores: np.ndarray) -> None:
    first = _publish(tmp_path, scores)
    second = _publish(tmp_path, scores[::-1].copy())
    assert latest_version(tmp_path, "toy") == second
    assert (tmp_path / "toy" / "latest").read_text().strip() == second.name

    again = _publish(tmp_path, scores)  # republishing existing content moves the pointer back

    assert again == first
    assert latest_version(tmp_path, "toy") == first
    assert load_curriculum(tmp_path / "toy").version == first.name


def test_compute_version_is_canonical() -> None:
    version = compute_version(["a", "b"], {"x": 1, "y": {"z": [1, 2]}})
    assert version == compute_version(["a", "b"], {"y": {"z": [1, 2]}, "x": 1})
    assert version != compute_version(["b", "a"], {"x": 1, "y": {"z": [1, 2]}})
    assert version != compute_version(["a", "b"], {"x": 2, "y": {"z": [1, 2]}})
    assert re.fullmatch(r"[0-9a-f]{12}", version)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        compute_version([], {"x": float("nan")})


def test_array_digest_depends_on_values_dtype_and_shape() -> None:
    values = np.arange(6, dtype=np.float32)
    assert array_digest(values) == array_digest(values.copy())
    assert array_digest(values) != array_digest(values.reshape(2, 3))
    assert array_digest(values) != array_digest(values.astype(np.float64))
    assert array_digest(values) != array_digest(values[::-1])


# ---------------------------------------------------------------------------- atomicity


def test_failed_publish_leaves_nothing_and_keeps_the_previous_version(
    tmp_path: Path, scores: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = _publish(tmp_path, scores)
    before = _freeze_mtimes(previous)
    real_write = publishing.write_file
    calls = []

    def write_then_crash(directory: Path, item: object) -> dict[str, object]:
        calls.append(item)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_write(directory, item)  # type: ignore[arg-type]

    monkeypatch.setattr(publishing, "write_file", write_then_crash)
    with pytest.raises(OSError, match="simulated"):
        _publish(tmp_path, scores * 0.5)

    assert len(calls) == 2  # the crash really happened mid-way
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == [previous.name, "latest"]
    assert {p.name: p.stat().st_mtime_ns for p in previous.iterdir()} == before
    assert latest_version(tmp_path, "toy") == previous
    verify_artifact(previous)


def test_metrics_that_are_not_json_fail_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metrics"):
        publish_artifact(
            tmp_path,
            "generic",
            arrays={"a": np.zeros(3)},
            json_files={},
            config={},
            parents=[],
            metrics={"bad": float("nan")},
        )
    assert not (tmp_path / "generic").exists() or not any((tmp_path / "generic").iterdir())


def test_a_version_without_manifest_does_not_exist(tmp_path: Path, scores: np.ndarray) -> None:
    version_dir = _publish(tmp_path, scores)
    (version_dir / "manifest.json").unlink()

    for form in (version_dir, tmp_path / "toy", tmp_path / "toy" / "latest"):
        with pytest.raises(FileNotFoundError, match=r"does not exist|no manifest\.json"):
            load_curriculum(form)
    assert list_versions(tmp_path, "toy") == []

    republished = _publish(tmp_path, scores)  # the stale directory is replaced, not merged

    assert republished == version_dir
    verify_artifact(republished)
    assert not [p for p in (tmp_path / "toy").iterdir() if p.name.startswith(".")]


def test_missing_paths_say_what_exists(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_version(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no artifact named 'toy'"):
        latest_version(tmp_path, "toy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        resolve_version(tmp_path / "empty")


# ---------------------------------------------------------------------------- verification


@pytest.mark.parametrize("filename", ["difficulty.npy", "schedule.json"])
def test_tampered_byte_fails_loading_and_names_the_file(
    tmp_path: Path, scores: np.ndarray, filename: str
) -> None:
    version_dir = _publish(tmp_path, scores)
    _flip_byte(version_dir / filename)

    with pytest.raises(ArtifactIntegrityError, match=re.escape(filename)) as caught:
        load_curriculum(version_dir)
    assert caught.value.path == version_dir / filename
    assert "sha256" in str(caught.value)
    with pytest.raises(ArtifactIntegrityError, match=re.escape(filename)):
        verify_artifact(tmp_path / "toy")


def test_tampered_unloaded_file_is_still_caught(tmp_path: Path, scores: np.ndarray) -> None:
    version_dir = _publish(tmp_path, scores, centroids=np.ones((2, 3)))
    _flip_byte(version_dir / "centroids.npy")
    with pytest.raises(ArtifactIntegrityError, match=r"centroids\.npy"):
        load_curriculum(version_dir)


def test_manifest_shape_mismatch_is_reported(tmp_path: Path, scores: np.ndarray) -> None:
    version_dir = _publish(tmp_path, scores)
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["difficulty.npy"]["shape"] = [299]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match=r"difficulty.npy has shape \(300,\)"):
        load_array(version_dir, "difficulty")


def test_missing_listed_file_is_reported(tmp_path: Path, scores: np.ndarray) -> None:
    version_dir = _publish(tmp_path, scores)
    (version_dir / "schedule.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"schedule\.json is missing"):
        load_curriculum(version_dir)


def test_republishing_over_a_tampered_version_refuses(tmp_path: Path, scores: np.ndarray) -> None:
    version_dir = _publish(tmp_path, scores)
    _flip_byte(version_dir / "difficulty.npy")
    with pytest.raises(ArtifactIntegrityError, match="delete"):
        _publish(tmp_path, scores)


def test_object_dtype_npy_is_refused_on_load(tmp_path: Path, scores: np.ndarray) -> None:
    version_dir = _publish(tmp_path, scores)
    evil = version_dir / "difficulty.npy"
    np.save(evil, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["difficulty.npy"] = {
        "sha256": artifacts.sha256_file(evil),  # a consistent manifest: only the dtype is bad
        "shape": [2],
        "dtype": "object",
    }
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(ArtifactIntegrityError, match=r"difficulty.npy holds an object-dtype"):
        load_curriculum(version_dir)
    with pytest.raises(ArtifactIntegrityError, match="object-dtype"):
        load_array(version_dir, "difficulty")


def test_object_dtype_is_refused_on_publish(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"arrays\['meta'\] has dtype object"):
        publish_artifact(
            tmp_path,
            "generic",
            arrays={"meta": np.array([{"a": 1}], dtype=object)},
            json_files={},
            config={},
            parents=[],
        )


# ---------------------------------------------------------------------------- generic publish


def test_publish_artifact_lists_every_file(tmp_path: Path) -> None:
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"\x89PNG fake image bytes")
    version_dir = publish_artifact(
        tmp_path / "artifacts",
        "generic",
        arrays={"centroids": np.eye(3, dtype=np.float32), "assignment.npy": np.arange(5)},
        json_files={"sweep": {"k": [2, 3]}},
        config={"n_clusters": 3},
        parents=["store:123"],
        metrics={"inertia": 1.5},
        extra_files={"plot.png": plot},
        dataset_fingerprint="fp-1",
    )
    manifest = verify_artifact(version_dir)
    assert set(manifest["files"]) == {"centroids.npy", "assignment.npy", "sweep.json", "plot.png"}
    assert manifest["files"]["plot.png"]["sha256"] == artifacts.sha256_file(plot)
    assert manifest["files"]["plot.png"]["shape"] is None
    assert (manifest["n_clusters"], manifest["dim"], manifest["n_samples"]) == (3, 3, 5)
    assert manifest["metrics"] == {"inertia": 1.5}
    assert manifest["dataset_fingerprint"] == "fp-1"
    assert load_manifest(tmp_path / "artifacts" / "generic") == manifest
    assert (version_dir / "plot.png").read_bytes() == plot.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arrays": {"a/b": np.zeros(2)}}, "not a plain file name"),
        ({"arrays": {"x": np.zeros(2)}, "extra_files": {"x.npy": __file__}}, "more than once"),
        ({"json_files": {"manifest": {}}}, "reserved"),
        ({"json_files": {"bad": {"v": float("inf")}}}, "finite"),
        ({"extra_files": {"p.png": "/nonexistent/p.png"}}, "is not a file"),
    ],
)
def test_publish_artifact_rejects_bad_files(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    options: dict[str, object] = {"arrays": {}, "json_files": {}, "config": {}, "parents": []}
    options.update(kwargs)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        publish_artifact(tmp_path, "generic", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "generic" / "latest").exists()


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad_name", ["a/b", "latest", ".hidden", ""])
def test_bad_artifact_names(tmp_path: Path, scores: np.ndarray, bad_name: str) -> None:
    with pytest.raises(ValueError, match="not a valid artifact name"):
        publish_curriculum(tmp_path, bad_name, scores)


def test_non_finite_difficulty_names_count_and_first_index(tmp_path: Path) -> None:
    scores = np.linspace(0, 1, 20)
    scores[[7, 11]] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"difficulty has 2 non-finite .* first at index 7"):
        publish_curriculum(tmp_path, "toy", scores)
    with pytest.raises(ValueError, match=r"beyond the float32 range.*first at index 0"):
        publish_curriculum(tmp_path, "toy", np.array([1e300, 0.5]))  # overflows float32
    assert not (tmp_path / "toy").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"difficulty": np.array([])}, ValueError, "empty"),
        ({"difficulty": np.ones((3, 2))}, ValueError, "1-D"),
        ({"difficulty": np.array(["a", "b"])}, TypeError, "real-valued"),
        ({"initial_fraction": 0.0}, ValueError, r"initial_fraction must lie in \(0, 1\]"),
        ({"initial_fraction": 1.5}, ValueError, r"initial_fraction must lie in \(0, 1\]"),
        ({"warmup_iterations": -1}, ValueError, "warmup_iterations must be >= 0"),
        ({"strategy": "medium"}, ValueError, "unknown strategy 'medium'; valid: easy, hard"),
        ({"pacing": "exp"}, ValueError, "unknown pacing 'exp'; valid: linear, cosine, root, step"),
        ({"power2": 3}, TypeError, r"unknown schedule option\(s\) \['power2'\]; valid: .*power"),
        ({"assignment": np.zeros(5, dtype=int)}, ValueError, "one cluster id per sample"),
        ({"assignment": np.zeros(10)}, TypeError, "integer cluster ids"),
        (
            {"assignment": np.arange(10), "centroids": np.ones((3, 2))},
            ValueError,
            "refers to cluster 9 but centroids has only 3 rows",
        ),
    ],
)
def test_publish_curriculum_bad_input(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    options: dict[str, object] = {"difficulty": np.linspace(0, 1, 10)}
    options.update(kwargs)
    with pytest.raises(error, match=message):
        publish_curriculum(tmp_path, "toy", **options)  # type: ignore[arg-type]
    assert not (tmp_path / "toy").exists()


def test_pointer_with_path_traversal_is_refused(tmp_path: Path, scores: np.ndarray) -> None:
    _publish(tmp_path, scores)
    (tmp_path / "toy" / "latest").write_text("../../etc\n")
    with pytest.raises(ArtifactIntegrityError, match="not a version name"):
        load_curriculum(tmp_path / "toy")


def test_curriculum_identity_is_what_publish_curriculum_hashes(tmp_path: Path) -> None:
    from cl_core.schedule import ScheduleConfig

    rng = np.random.default_rng(3)
    difficulty = rng.random(50).astype(np.float32)
    assignment = (np.arange(50) % 4).astype(np.int32)
    path = publish_curriculum(
        tmp_path,
        "ident",
        difficulty,
        assignment=assignment,
        pacing="cosine",
        initial_fraction=0.5,
        warmup_iterations=10,
        parents=["up"],
        config={"k": 4},
    )
    arrays = {"difficulty": difficulty, "assignment": assignment}
    config = ScheduleConfig(pacing="cosine", initial_fraction=0.5, warmup_iterations=10)
    parents, full_config = curriculum_identity(arrays, config, {"k": 4}, ["up"])
    manifest = load_manifest(path)
    assert manifest["parents"] == parents
    assert manifest["config"] == full_config
    assert path.name == compute_version(parents, full_config)
