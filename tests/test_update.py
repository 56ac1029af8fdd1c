"""Nightly updates of a published curriculum (issue 19): the refit policy, drift figures, the
decision, lineage, bitwise-unchanged difficulty under ``never``, the Python API without Prefect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cl_core.artifacts import load_array, load_manifest, resolve_version
from cl_core.cluster import ClusterConfig
from cl_core.io import content_hash
from cl_core.sampler import load_curriculum
from cl_core.store import FileKeys, create_store
from cl_core.update import (
    DriftFigures,
    RefitPolicy,
    decide,
    drift_figures,
    find_previous,
    fit_curriculum,
    lineage_line,
    lineage_rows,
    load_previous,
    plan_update,
    update_curriculum,
)

DIM = 6
CENTRES = np.eye(3, DIM) * 6.0


def _rows(rng: np.random.Generator, n: int, centres: np.ndarray = CENTRES) -> np.ndarray:
    labels = rng.integers(0, len(centres), n)
    return (centres[labels] + rng.normal(0.0, 0.5, (n, DIM))).astype(np.float32)


class Folder:
    """A listing (path -> (size, mtime, features)) that becomes an embedding store."""

    def __init__(self, features: np.ndarray) -> None:
        self.files = {
            f"c{i % 3}/{i:04d}.jpg": (100 + i, 1_000 + i, features[i]) for i in range(len(features))
        }

    def add(self, features: np.ndarray, prefix: str = "new") -> None:
        start = len(self.files)
        for offset, row in enumerate(features):
            self.files[f"{prefix}/{start + offset:04d}.jpg"] = (7, 2_000 + offset, row)

    def change(self, path: str, row: np.ndarray) -> None:
        size, mtime, _ = self.files[path]
        self.files[path] = (size, mtime + 1, row)

    def store(self, path: Path, skipped: dict[int, str] | None = None) -> object:
        paths = sorted(self.files)
        keys = FileKeys(
            root="/data/images",
            paths=np.array(paths),
            sizes=np.array([self.files[p][0] for p in paths]),
            mtimes_ns=np.array([self.files[p][1] for p in paths]),
        )
        listing = [(p, self.files[p][0], self.files[p][1]) for p in paths]
        attrs = {"dataset_fingerprint": content_hash(listing, 16), "model_id": "tiny"}
        features = np.stack([self.files[p][2] for p in paths])
        store = create_store(
            path, len(paths), DIM, chunk_rows=16, dtype="float32", attrs=attrs, file_keys=keys
        )
        for shard in range(store.n_shards):
            start, stop = store.shard_range(shard)
            block = features[start:stop].copy()
            bad = [
                {"index": i, "path": paths[i], "reason": "truncated file"}
                for i in range(start, stop)
                if skipped and i in skipped
            ]
            for sample in bad:
                block[sample["index"] - start] = 0.0
            store.write_shard(shard, block, skipped=bad or None)
        store.finalize()
        return store


@pytest.fixture
def day1(tmp_path: Path) -> tuple[Folder, Path]:
    folder = Folder(_rows(np.random.default_rng(0), 200))
    version = fit_curriculum(
        folder.store(tmp_path / "day1.zarr"),
        tmp_path / "artifacts",
        "pets",
        cluster_config=ClusterConfig(n_clusters=3),
    )
    return folder, Path(version)


# --------------------------------------------------------------------------------------------
# policy, figures, decision
# --------------------------------------------------------------------------------------------


def test_the_policy_checks_its_fields() -> None:
    assert RefitPolicy() == RefitPolicy("auto", 0.10, 1.25, 32)
    with pytest.raises(ValueError, match="refit"):
        RefitPolicy("sometimes")
    with pytest.raises(ValueError, match="max_changed_share"):
        RefitPolicy(max_changed_share=0.0)
    with pytest.raises(ValueError, match="max_distance_ratio"):
        RefitPolicy(max_distance_ratio=0.9)


def test_drift_figures() -> None:
    figures = drift_figures(30, 200, np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0, 2.0]))
    assert figures.changed_share == 0.15 and figures.new_rows == 3
    assert figures.new_median == 2.0 and figures.old_median == 1.5
    assert figures.distance_ratio == pytest.approx(4 / 3)
    none_new = drift_figures(2, 200, np.zeros(0), np.ones(4))
    assert none_new.distance_ratio is None and none_new.new_median is None


def _figures(share: float, ratio: float | None, new_rows: int = 100) -> DriftFigures:
    return DriftFigures(int(share * 1000), 1000, share, new_rows, ratio, 1.0, ratio)


@pytest.mark.parametrize(
    ("mode", "share", "ratio", "new_rows", "action"),
    [
        ("auto", 0.01, 1.0, 100, "assign"),
        ("auto", 0.10, 1.0, 100, "refit"),  # the share threshold is reached
        ("auto", 0.01, 1.3, 100, "refit"),  # the new rows sit 30% further out
        ("auto", 0.01, 1.3, 5, "assign"),  # too few new rows for the ratio to count
        ("auto", 0.01, None, 0, "assign"),  # only removals
        ("never", 0.90, 3.0, 100, "assign"),
        ("always", 0.0, None, 0, "refit"),
    ],
)
def test_decide(mode: str, share: float, ratio: float | None, new_rows: int, action: str) -> None:
    decision = decide(RefitPolicy(mode), _figures(share, ratio, new_rows))
    assert decision.action == action
    assert (
        decision.reason.startswith(f"{mode}: ") and "changed since the last fit" in decision.reason
    )


def test_thresholds_are_configurable() -> None:
    figures = _figures(0.05, 1.1)
    assert decide(RefitPolicy(max_changed_share=0.05), figures).action == "refit"
    assert decide(RefitPolicy(max_distance_ratio=1.05), figures).action == "refit"
    assert decide(RefitPolicy(), figures).action == "assign"


# --------------------------------------------------------------------------------------------
# the update without Prefect
# --------------------------------------------------------------------------------------------


def test_a_first_version_records_what_an_update_needs(day1: tuple[Folder, Path]) -> None:
    _, version = day1
    manifest = load_manifest(version)
    assert {"distances.npy", "sample_keys.json", "refit_state.json"} <= set(manifest["files"])
    assert manifest["lineage"]["parent"] is None and manifest["lineage"]["decision"] == "fit"
    keys = json.loads((version / "sample_keys.json").read_text())
    assert keys["paths"][0] == "c0/0000.jpg" and len(keys["paths"]) == 200
    previous = load_previous(version.parent / "latest")
    assert previous.fit_version == version.name and previous.fit_rows == 200


@pytest.mark.parametrize("method", ["minmax", "rank", "zscore", "none"])
def test_never_keeps_every_unchanged_samples_difficulty_bitwise(
    tmp_path: Path, method: str
) -> None:
    folder = Folder(_rows(np.random.default_rng(0), 200))
    first = Path(
        fit_curriculum(
            folder.store(tmp_path / "day1.zarr"),
            tmp_path / "artifacts",
            "pets",
            cluster_config=ClusterConfig(n_clusters=3),
            difficulty=method,
        )
    )
    rng = np.random.default_rng(1)
    folder.add(_rows(rng, 4))
    folder.add(np.full((1, DIM), 40.0, dtype=np.float32), prefix="far")  # beyond every cluster
    folder.change("c1/0001.jpg", _rows(rng, 1)[0])
    del folder.files["c2/0002.jpg"]
    store = folder.store(tmp_path / "day2.zarr")
    second = Path(update_curriculum(first.parent / "latest", store, "never"))
    old, new = load_curriculum(first), load_curriculum(second)
    old_paths = json.loads((first / "sample_keys.json").read_text())["paths"]
    new_paths = json.loads((second / "sample_keys.json").read_text())["paths"]
    unchanged = [p for p in old_paths if p in new_paths and p not in ("c1/0001.jpg",)]
    at_old = [old_paths.index(p) for p in unchanged]
    at_new = [new_paths.index(p) for p in unchanged]
    assert len(unchanged) == 198
    assert new.difficulty[at_new].tobytes() == old.difficulty[at_old].tobytes()
    assert np.array_equal(load_array(second, "centroids"), load_array(first, "centroids"))
    assigned = load_array(second, "assignment")
    assert np.array_equal(assigned[at_new], load_array(first, "assignment")[at_old])
    far = new_paths.index("far/0204.jpg")
    if method != "zscore":  # zscore's normal CDF approaches 1 without reaching it
        assert new.difficulty[far] == 1.0  # clipped to the previous scale
    assert new.n_samples == 204 and new.schedule.n_samples == 204  # re-solved for the new N
    lineage = load_manifest(second)["lineage"]
    assert lineage["parent"] == first.name and lineage["centroids_from"] == first.name
    assert (lineage["added"], lineage["changed"], lineage["removed"]) == (5, 1, 1)
    assert lineage["reused"] == 198 and lineage["decision"] == "assign"
    assert lineage["changed_since_fit"] == 7 and lineage["fit_rows"] == 200
    assert lineage["drift"]["changed_share"] == 7 / 200 and lineage["drift"]["new_rows"] == 6
    assert lineage["policy"]["mode"] == "never"


def test_auto_assigns_a_small_change_and_counts_it_since_the_last_fit(
    day1: tuple[Folder, Path], tmp_path: Path
) -> None:
    folder, first = day1
    rng = np.random.default_rng(2)
    folder.add(_rows(rng, 10))
    second = Path(update_curriculum(first.parent / "latest", folder.store(tmp_path / "d2.zarr")))
    lineage = load_manifest(second)["lineage"]
    assert lineage["decision"] == "assign", lineage["reason"]
    assert lineage["reason"].startswith("auto: 5.0% of the rows changed since the last fit")
    assert lineage_line(lineage).startswith(
        f"assigned 10 new rows to the centroids of {first.name}"
    )
    folder.add(_rows(rng, 12))  # 22 of 200 since the fit: over 10%
    third = Path(update_curriculum(second.parent / "latest", folder.store(tmp_path / "d3.zarr")))
    lineage = load_manifest(third)["lineage"]
    assert lineage["decision"] == "refit" and lineage["parent"] == second.name
    assert lineage["drift"]["changed_since_fit"] == 22 and lineage["centroids_from"] is None
    assert lineage["fit_rows"] == 222 and lineage["changed_since_fit"] == 0
    assert lineage_line(lineage).startswith("refit over 222 rows (auto: 11.0% of the rows")


def test_auto_refits_when_new_rows_sit_far_from_the_centroids(
    day1: tuple[Folder, Path], tmp_path: Path
) -> None:
    folder, first = day1
    far_away = np.vstack([CENTRES, np.full((1, DIM), -6.0)])[3:]  # a fourth mode
    folder.add(_rows(np.random.default_rng(3), 16, far_away))  # 8% of the rows: under 10%
    plan = plan_update(first, folder.store(tmp_path / "d2.zarr"), RefitPolicy(min_new_rows=8))
    assert plan.figures.changed_share == 0.08
    assert plan.figures.distance_ratio is not None and plan.figures.distance_ratio > 1.25
    assert plan.decision.action == "refit" and "distance ratio" in plan.decision.reason


def test_always_refits_like_a_fresh_fit(day1: tuple[Folder, Path], tmp_path: Path) -> None:
    folder, first = day1
    folder.add(_rows(np.random.default_rng(4), 2))
    store = folder.store(tmp_path / "d2.zarr")
    second = Path(update_curriculum(first, store, "always"))
    fresh = Path(
        fit_curriculum(
            store, tmp_path / "fresh", "pets", cluster_config=ClusterConfig(n_clusters=3)
        )
    )
    assert np.array_equal(load_array(second, "difficulty"), load_array(fresh, "difficulty"))
    assert np.array_equal(load_array(second, "centroids"), load_array(fresh, "centroids"))
    lineage = load_manifest(second)["lineage"]
    assert lineage["decision"] == "refit" and lineage["reason"].startswith("always: ")
    assert set(lineage_rows(lineage)) >= {"parent version", "centroids from", "decision", "drift"}


def test_a_rerun_over_the_same_files_updates_the_same_parent(
    day1: tuple[Folder, Path], tmp_path: Path
) -> None:
    folder, first = day1
    first_store_fp = load_manifest(first)["dataset_fingerprint"]
    previous, why = find_previous(tmp_path / "artifacts", "pets", first_store_fp)
    assert previous is None and "over the same files" in why  # a rerun of the first fit
    folder.add(_rows(np.random.default_rng(5), 3))
    store = folder.store(tmp_path / "d2.zarr")
    previous, why = find_previous(tmp_path / "artifacts", "pets", store.dataset_fingerprint)
    assert previous is not None and previous.version == first.name and why == "latest"
    second = Path(update_curriculum(previous, store))
    again, why = find_previous(tmp_path / "artifacts", "pets", store.dataset_fingerprint)
    assert again is not None and again.version == first.name and why.startswith("the parent of ")
    assert Path(update_curriculum(again, store)) == second  # the same version again
    assert find_previous(tmp_path / "nowhere", "pets", None) == (None, "no previous version")


def test_skipped_samples_are_recorded_by_path_and_assigned_once_loadable(
    tmp_path: Path,
) -> None:
    folder = Folder(_rows(np.random.default_rng(0), 60))
    bad = {5: sorted(folder.files)[5]}
    first = Path(
        fit_curriculum(
            folder.store(tmp_path / "d1.zarr", skipped=bad),
            tmp_path / "artifacts",
            "pets",
            cluster_config=ClusterConfig(n_clusters=3),
        )
    )
    excluded = load_manifest(first)["excluded"]
    assert excluded == {"count": 1, "indices": [5], "paths": [bad[5]]}
    second = Path(update_curriculum(first, folder.store(tmp_path / "d2.zarr"), "never"))
    lineage = load_manifest(second)["lineage"]
    assert (lineage["retried"], lineage["reused"], lineage["drift"]["new_rows"]) == (1, 59, 1)
    assert "excluded" not in load_manifest(second)
    assert load_array(second, "assignment")[5] >= 0


def test_an_update_needs_the_same_embedding_configuration(
    day1: tuple[Folder, Path], tmp_path: Path
) -> None:
    folder, first = day1
    store = folder.store(tmp_path / "d2.zarr")
    # the same rows and keys under another model id
    other = create_store(
        tmp_path / "other.zarr",
        store.n_rows,
        DIM,
        chunk_rows=16,
        dtype="float32",
        attrs={"dataset_fingerprint": "x", "model_id": "another"},
        file_keys=store.file_records(),
    )
    for shard in range(other.n_shards):
        start, stop = other.shard_range(shard)
        other.write_shard(shard, np.asarray(store.features[start:stop]))
    other.finalize()
    with pytest.raises(ValueError, match=r"embedding configuration differs .*model_id"):
        plan_update(resolve_version(first), other, "never")


def test_the_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    (example,) = [block for block in blocks if "update_curriculum(" in block]
    monkeypatch.chdir(tmp_path)
    folder = Folder(_rows(np.random.default_rng(0), 100))
    store = folder.store(tmp_path / "day1.zarr")
    fit_curriculum(store, "artifacts", "pets", cluster_config=ClusterConfig(n_clusters=3))
    folder.add(_rows(np.random.default_rng(1), 3))
    folder.store(tmp_path / "runs" / "embeddings" / "today.zarr")
    exec(compile(example.replace("<id>", "today"), "README.md", "exec"), {})
    name, n_samples = capsys.readouterr().out.split()
    assert n_samples == "103" and (tmp_path / "artifacts" / "pets" / name).is_dir()
    assert load_manifest(tmp_path / "artifacts" / "pets" / "latest")["lineage"]["added"] == 3


def test_auto_refits_when_the_options_changed(day1: tuple[Folder, Path], tmp_path: Path) -> None:
    folder, first = day1
    folder.add(_rows(np.random.default_rng(7), 2))
    store = folder.store(tmp_path / "d2.zarr")
    same = plan_update(first, store, cluster_config=ClusterConfig(n_clusters=3))
    assert same.decision.action == "assign"
    k4 = plan_update(first, store, cluster_config=ClusterConfig(n_clusters=4))
    assert k4.decision.action == "refit"
    assert k4.decision.reason.startswith("auto: clustering options changed (n_clusters 3 -> 4)")
    rank = plan_update(first, store, difficulty="rank")
    assert rank.decision.reason.startswith("auto: difficulty changed (minmax -> rank)")
    kept = plan_update(first, store, "never", cluster_config=ClusterConfig(n_clusters=4))
    assert kept.decision.action == "assign"


def test_a_previous_version_that_fails_verification_is_not_used(
    day1: tuple[Folder, Path], tmp_path: Path
) -> None:
    folder, first = day1
    distances = first / "distances.npy"
    distances.chmod(0o644)
    distances.write_bytes(distances.read_bytes()[:-4] + b"\x00\x00\x80\x7f")  # one value: inf
    folder.add(_rows(np.random.default_rng(6), 2))
    store = folder.store(tmp_path / "d2.zarr")
    previous, why = find_previous(tmp_path / "artifacts", "pets", store.dataset_fingerprint)
    assert previous is None
    assert why.startswith(f"previous version {first.name} failed verification: ")
    assert "distances.npy" in why
