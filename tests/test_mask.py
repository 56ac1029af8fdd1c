"""Skipped samples through the whole chain: cluster -> difficulty -> schedule -> publish -> sampler.

A sample that could not be loaded is excluded by a bool mask (True = usable). It must take no
part in any statistic, get assignment -1 / distance 0 / difficulty 0, be recorded in the artifact,
get probability exactly 0 and never be drawn; and with nothing excluded every result and version
must be what it was before masks existed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_core import CODE_VERSION
from cl_core.artifacts import (
    SAMPLE_MASK_FILE,
    ArtifactIntegrityError,
    array_digest,
    compute_version,
    curriculum_identity,
    publish_artifact,
    publish_curriculum,
    verify_artifact,
)
from cl_core.cluster import (
    ArraySource,
    ClusterConfig,
    choose_k,
    cluster_embeddings,
    edge_of_range_warning,
    evaluate_k,
    plan_sweep,
    sweep_seeds,
)
from cl_core.difficulty import normalize_difficulty
from cl_core.report import render_report, write_report
from cl_core.sampler import Curriculum, CurriculumSampler, load_curriculum
from cl_core.schedule import ScheduleConfig, build_schedule, effective_fraction

N = 240
EXCLUDED = np.array([0, 5, 77, 120, 239])


@pytest.fixture
def mask() -> np.ndarray:
    valid = np.ones(N, dtype=bool)
    valid[EXCLUDED] = False
    return valid


@pytest.fixture
def features(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    centres = rng.normal(0.0, 4.0, size=(3, 6))
    x = (centres[np.arange(N) % 3] + rng.normal(size=(N, 6))).astype(np.float32)
    x[~mask] = np.nan  # whatever an excluded row holds must not matter
    return x


# ---------------------------------------------------------------------------- cluster


def test_cluster_ignores_excluded_rows(features: np.ndarray, mask: np.ndarray) -> None:
    config = ClusterConfig(n_clusters=3)
    result = cluster_embeddings(features, config, valid=mask)
    alone = cluster_embeddings(features[mask], config)

    assert result.assignment.shape == (N,)
    np.testing.assert_array_equal(result.assignment[~mask], -1)
    np.testing.assert_array_equal(result.distances[~mask], 0.0)
    np.testing.assert_array_equal(result.assignment[mask], alone.assignment)
    np.testing.assert_array_equal(result.distances[mask], alone.distances)
    np.testing.assert_array_equal(result.centroids, alone.centroids)
    np.testing.assert_array_equal(result.valid, mask)
    assert result.n_excluded == EXCLUDED.size
    assert result.cluster_sizes().sum() == N - EXCLUDED.size
    assert np.isfinite(result.distances).all()


def test_sweep_ignores_excluded_rows(features: np.ndarray, mask: np.ndarray) -> None:
    config = ClusterConfig(cluster_range=(2, 4), sweep_samples=100)
    result = cluster_embeddings(features, config, valid=mask)
    alone = cluster_embeddings(features[mask], config)
    assert [p.davies_bouldin for p in result.sweep] == [p.davies_bouldin for p in alone.sweep]
    assert result.n_clusters == alone.n_clusters

    # The public plan reproduces the library's own sweep (what the Prefect flow fans out).
    plan = plan_sweep(features, config, valid=mask)
    points = [
        evaluate_k(
            plan.sample, k, plan.sweep_seed, config.sweep_batch_size, n_init=config.sweep_n_init
        )
        for k in plan.ks
    ]
    assert plan.n_rows == N - EXCLUDED.size
    assert sweep_seeds(config) == (plan.sample_seed, plan.sweep_seed)
    with pytest.raises(ValueError, match="per class inside cluster_embeddings"):
        plan_sweep(features, ClusterConfig(use_labels=True), valid=mask)
    assert choose_k(points) == result.n_clusters
    assert [p.davies_bouldin for p in points] == [p.davies_bouldin for p in result.sweep]


def test_supervised_mode_with_a_mask(features: np.ndarray, mask: np.ndarray) -> None:
    labels = np.arange(N) % 3
    config = ClusterConfig(n_clusters=2, use_labels=True)
    result = cluster_embeddings(features, config, labels=labels, valid=mask)
    alone = cluster_embeddings(features[mask], config, labels=labels[mask])
    np.testing.assert_array_equal(result.assignment[~mask], -1)
    np.testing.assert_array_equal(result.assignment[mask], alone.assignment)


def test_store_skips_are_excluded_by_default(
    tmp_path: Path, features: np.ndarray, mask: np.ndarray
) -> None:
    """A store written with skipped samples clusters as if they were masked out."""
    from cl_core.store import create_store

    attrs = {
        "dataset_fingerprint": "mask-test",
        "model_id": "none",
        "weights_sha256": "0" * 64,
        "layer": "head",
        "pooling": "mean",
        "input_transform": "none",
    }
    store = create_store(tmp_path / "e.zarr", N, 6, chunk_rows=32, attrs=attrs, dtype="float32")
    for shard in range(store.n_shards):
        start, stop = store.shard_range(shard)
        skipped = [
            {"index": int(i), "path": f"f{i}.png", "reason": "truncated"}
            for i in EXCLUDED
            if start <= i < stop
        ]
        store.write_shard(shard, np.nan_to_num(features[start:stop]), skipped=skipped)
    store.finalize()
    np.testing.assert_array_equal(store.skipped_indices, EXCLUDED)

    config = ClusterConfig(n_clusters=3)
    by_default = cluster_embeddings(store, config)
    explicit = cluster_embeddings(store, config, valid=mask)
    np.testing.assert_array_equal(by_default.valid, mask)
    np.testing.assert_array_equal(by_default.assignment, explicit.assignment)
    np.testing.assert_array_equal(by_default.assignment[~mask], -1)


def test_all_true_mask_is_no_mask(features: np.ndarray, mask: np.ndarray) -> None:
    clean = np.nan_to_num(features)
    config = ClusterConfig(n_clusters=3)
    plain = cluster_embeddings(clean, config)
    masked = cluster_embeddings(clean, config, valid=np.ones(N, dtype=bool))
    np.testing.assert_array_equal(plain.assignment, masked.assignment)
    assert masked.valid is None


def test_array_source_statistics_skip_excluded_rows(mask: np.ndarray) -> None:
    x = np.arange(N * 2, dtype=np.float64).reshape(N, 2)
    x[~mask] = 1e6
    source = ArraySource(x, valid=mask)
    assert source.feature_mean is not None and source.feature_std is not None
    np.testing.assert_allclose(source.feature_mean, x[mask].mean(axis=0))
    np.testing.assert_allclose(source.feature_std, x[mask].std(axis=0))


@pytest.mark.parametrize(
    ("valid", "error", "message"),
    [
        (np.ones(N - 1, dtype=bool), ValueError, r"valid has shape \(239,\) but there are 240"),
        (np.ones(N, dtype=int), TypeError, "valid must be a boolean array"),
        (np.zeros(N, dtype=bool), ValueError, "valid excludes all 240 samples"),
    ],
)
def test_bad_masks_are_named(
    features: np.ndarray, valid: np.ndarray, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        cluster_embeddings(np.nan_to_num(features), ClusterConfig(n_clusters=2), valid=valid)


def test_nan_in_a_valid_row_is_still_an_error(features: np.ndarray, mask: np.ndarray) -> None:
    features[10, 2] = np.nan
    with pytest.raises(ValueError, match="first at index 10"):
        cluster_embeddings(features, ClusterConfig(n_clusters=2), valid=mask)


# ---------------------------------------------------------------------------- difficulty


@pytest.mark.parametrize("method", ["minmax", "rank", "zscore", "none"])
def test_difficulty_over_valid_rows_only(
    method: str, rng: np.random.Generator, mask: np.ndarray
) -> None:
    distances = rng.random(N)
    groups = np.arange(N) % 4
    distances[~mask] = np.nan
    groups[~mask] = -1
    out = normalize_difficulty(distances, groups, method=method, valid=mask)
    alone = normalize_difficulty(distances[mask], groups[mask], method=method)
    np.testing.assert_array_equal(out[mask], alone)
    np.testing.assert_array_equal(out[~mask], 0.0)
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_difficulty_mask_validation() -> None:
    with pytest.raises(ValueError, match="valid has shape"):
        normalize_difficulty(np.ones(4), valid=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="non-finite"):  # NaN outside the mask is still refused
        normalize_difficulty(np.array([np.nan, 1.0, 2.0]), valid=np.array([True, True, False]))


# ---------------------------------------------------------------------------- schedule


def test_schedule_is_solved_over_the_valid_rows(rng: np.random.Generator, mask: np.ndarray) -> None:
    difficulty = rng.random(N)
    difficulty[~mask] = 0.0  # the excluded rows' placeholder: would be the easiest samples
    config = ScheduleConfig(initial_fraction=0.3, warmup_iterations=100)
    masked = build_schedule(difficulty, config, valid=mask)
    alone = build_schedule(difficulty[mask], config)
    assert masked == alone
    assert masked.n_samples == N - EXCLUDED.size

    cur = Curriculum.from_arrays(difficulty, masked, sample_mask=mask)
    drawable = cur.probabilities(0)[mask]
    assert abs(effective_fraction(drawable) - 0.3) <= 1e-3
    uniform_over_valid = cur.probabilities(100)[mask]
    assert effective_fraction(uniform_over_valid) == pytest.approx(1.0, abs=1e-12)
    assert cur.effective_fraction(100) == pytest.approx(1.0, abs=1e-12)
    assert cur.effective_fraction(0) == effective_fraction(drawable)


# ---------------------------------------------------------------------------- publish


def _masked_inputs(
    rng: np.random.Generator, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    difficulty = rng.random(N).astype(np.float32)
    difficulty[~mask] = 0.0
    assignment = (np.arange(N) % 3).astype(np.int32)
    assignment[~mask] = -1
    return difficulty, assignment, rng.random((3, 4)).astype(np.float32)


def test_publish_records_the_mask(
    tmp_path: Path, rng: np.random.Generator, mask: np.ndarray
) -> None:
    difficulty, assignment, centroids = _masked_inputs(rng, mask)
    path = publish_curriculum(
        tmp_path, "toy", difficulty, assignment, centroids, warmup_iterations=50, sample_mask=mask
    )
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["excluded"] == {"count": EXCLUDED.size, "indices": EXCLUDED.tolist()}
    assert SAMPLE_MASK_FILE in manifest["files"]
    stored = np.load(path / SAMPLE_MASK_FILE, allow_pickle=False)
    assert stored.dtype == np.bool_ and np.array_equal(stored, mask)
    assert array_digest(mask) in manifest["parents"]
    assert manifest["n_samples"] == N
    for name in manifest["files"]:
        if name.endswith(".npy"):
            assert np.isfinite(np.load(path / name, allow_pickle=False)).all(), name
    # The minimum is over drawable samples: the excluded rows' 0.0 placeholders do not count.
    assert manifest["metrics"]["difficulty_min"] == float(difficulty[mask].min())
    verify_artifact(path)

    # The mask is part of the version: the same scores without it are another version.
    unmasked = publish_curriculum(
        tmp_path, "toy", difficulty, np.maximum(assignment, 0), centroids, warmup_iterations=50
    )
    assert unmasked.name != path.name
    assert not (unmasked / SAMPLE_MASK_FILE).exists()
    assert "excluded" not in json.loads((unmasked / "manifest.json").read_text())


def test_all_true_mask_publishes_the_same_version(tmp_path: Path, rng: np.random.Generator) -> None:
    difficulty = rng.random(N)
    plain = publish_curriculum(tmp_path, "toy", difficulty, warmup_iterations=50)
    masked = publish_curriculum(
        tmp_path, "toy", difficulty, warmup_iterations=50, sample_mask=np.ones(N, dtype=bool)
    )
    assert plain == masked
    assert not (plain / SAMPLE_MASK_FILE).exists()


@pytest.mark.skipif(CODE_VERSION != "0.1.0", reason="the pinned id belongs to code version 0.1.0")
def test_unmasked_version_is_unchanged_by_the_mask_feature(tmp_path: Path) -> None:
    """Pinned from the code before masks existed (same inputs, same version id), and the schedule
    written is the one solved without any mask. (The schedule file's hash itself is not pinned:
    its floats come from numpy's exp/log, whose last bits differ between SIMD builds, e.g. AVX-512
    and AVX2 machines.)"""
    difficulty = np.linspace(0, 1, 64).astype(np.float32)
    path = publish_curriculum(
        tmp_path,
        "pin",
        difficulty,
        assignment=(np.arange(64) % 4).astype(np.int32),
        centroids=np.eye(4, 3, dtype=np.float32),
        pacing="cosine",
        warmup_iterations=100,
        parents=["store:abc"],
        config={"k": 4},
        sweep=[{"k": 4}],
    )
    assert path.name == "9874fc82ed5b"
    manifest = json.loads((path / "manifest.json").read_text())
    assert "excluded" not in manifest
    written = json.loads((path / "schedule.json").read_text())
    config = ScheduleConfig(pacing="cosine", warmup_iterations=100)
    assert written == build_schedule(difficulty, config).to_json()


def test_curriculum_identity_includes_the_mask(
    tmp_path: Path, rng: np.random.Generator, mask: np.ndarray
) -> None:
    difficulty, assignment, centroids = _masked_inputs(rng, mask)
    config = ScheduleConfig(warmup_iterations=50)
    arrays = {"difficulty": difficulty, "assignment": assignment, "centroids": centroids}
    parents, full_config = curriculum_identity(arrays, config, {"k": 3}, ["up"], sample_mask=mask)
    path = publish_curriculum(
        tmp_path,
        "toy",
        difficulty,
        assignment,
        centroids,
        warmup_iterations=50,
        config={"k": 3},
        parents=["up"],
        sample_mask=mask,
    )
    assert path.name == compute_version(parents, full_config)


def test_tampered_mask_fails_verification(
    tmp_path: Path, rng: np.random.Generator, mask: np.ndarray
) -> None:
    difficulty, _, _ = _masked_inputs(rng, mask)
    path = publish_curriculum(tmp_path, "toy", difficulty, warmup_iterations=50, sample_mask=mask)
    target = path / SAMPLE_MASK_FILE
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=SAMPLE_MASK_FILE):
        verify_artifact(path)
    with pytest.raises(ArtifactIntegrityError, match=SAMPLE_MASK_FILE):
        load_curriculum(path)


def test_manifest_record_and_mask_file_must_agree(
    tmp_path: Path, rng: np.random.Generator, mask: np.ndarray
) -> None:
    difficulty, _, _ = _masked_inputs(rng, mask)
    path = publish_curriculum(tmp_path, "toy", difficulty, warmup_iterations=50, sample_mask=mask)
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["excluded"] = {"count": 1, "indices": [0]}
    manifest_path.chmod(0o644)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="excluded samples"):
        load_curriculum(path)


def test_publish_mask_validation(tmp_path: Path, mask: np.ndarray) -> None:
    difficulty = np.linspace(0, 1, N)
    with pytest.raises(ValueError, match="sample_mask excludes all"):
        publish_curriculum(tmp_path, "toy", difficulty, sample_mask=np.zeros(N, dtype=bool))
    with pytest.raises(ValueError, match="-1 is allowed only where sample_mask is False"):
        publish_curriculum(tmp_path, "toy", difficulty, assignment=np.full(N, -1))
    with pytest.raises(ValueError, match="sample_mask needs a per-sample array"):
        publish_artifact(
            tmp_path, "gen", arrays={}, json_files={}, config={}, parents=[], sample_mask=mask
        )
    assert not (tmp_path / "toy").exists()


def test_prebuilt_schedule_is_published_as_is(
    tmp_path: Path, rng: np.random.Generator, mask: np.ndarray
) -> None:
    difficulty, assignment, centroids = _masked_inputs(rng, mask)
    config = ScheduleConfig(pacing="cosine", warmup_iterations=50)
    schedule = build_schedule(difficulty, config, valid=mask)
    solved = publish_curriculum(
        tmp_path / "a",
        "toy",
        difficulty,
        assignment,
        centroids,
        pacing="cosine",
        warmup_iterations=50,
        sample_mask=mask,
    )
    prebuilt = publish_curriculum(
        tmp_path / "b",
        "toy",
        difficulty,
        assignment,
        centroids,
        sample_mask=mask,
        schedule=schedule.to_json(),
        json_files={"cluster": {"k": 3}},
    )
    assert prebuilt.name == solved.name
    assert (prebuilt / "schedule.json").read_bytes() == (solved / "schedule.json").read_bytes()
    manifests = [json.loads((path / "manifest.json").read_text()) for path in (solved, prebuilt)]
    for manifest in manifests:
        del manifest["created_at"]
    del manifests[1]["files"]["cluster.json"]
    assert manifests[0] == manifests[1]  # one route, one manifest, whoever solved the schedule
    assert json.loads((prebuilt / "cluster.json").read_text()) == {"k": 3}

    with pytest.raises(ValueError, match="pacing='linear' disagrees with the given schedule"):
        publish_curriculum(tmp_path, "x", difficulty, pacing="linear", schedule=schedule)
    with pytest.raises(ValueError, match="built for 235 samples but there are 240"):
        publish_curriculum(tmp_path, "x", difficulty, schedule=schedule)
    with pytest.raises(ValueError, match="not built from this difficulty"):
        publish_curriculum(tmp_path, "x", np.sqrt(difficulty), sample_mask=mask, schedule=schedule)
    with pytest.raises(TypeError, match="schedule must be a Schedule"):
        publish_curriculum(tmp_path, "x", difficulty, schedule="cosine")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- sampler


def test_loaded_curriculum_never_gives_excluded_samples_mass(
    tmp_path: Path, rng: np.random.Generator, mask: np.ndarray
) -> None:
    difficulty, assignment, centroids = _masked_inputs(rng, mask)
    path = publish_curriculum(
        tmp_path, "toy", difficulty, assignment, centroids, warmup_iterations=50, sample_mask=mask
    )
    cur = load_curriculum(path)
    np.testing.assert_array_equal(cur.sample_mask, mask)
    assert cur.n_valid == N - EXCLUDED.size
    for iteration in (0, 25, 49, 50, 10_000):
        p = cur.probabilities(iteration)
        assert np.all(p[~mask] == 0.0)
        assert p.sum() == pytest.approx(1.0)
        assert np.isfinite(p).all()
    np.testing.assert_allclose(cur.probabilities(50)[mask], 1.0 / cur.n_valid)
    assert np.all(cur.probabilities(temperature=0.1)[~mask] == 0.0)
    sampler = CurriculumSampler(cur, batch_size=16)
    assert len(sampler) == 16 * -(-cur.n_valid // 16)  # an epoch is over the drawable samples
    assert sampler.state_dict()["n_valid"] == cur.n_valid


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 300),
    seed=st.integers(0, 2**31),
    strategy=st.sampled_from(["easy", "hard"]),
    world_size=st.sampled_from([1, 2, 3]),
    refresh_every=st.sampled_from([1, 7, 25]),
)
def test_sampler_never_draws_an_excluded_sample(
    n: int, seed: int, strategy: str, world_size: int, refresh_every: int
) -> None:
    rng = np.random.default_rng(seed)
    valid = rng.random(n) < rng.uniform(0.1, 0.95)
    valid[rng.integers(n)] = True
    difficulty = rng.random(n)
    difficulty[~valid] = 0.0  # excluded placeholders sit at the easy end: the worst case
    # f0 = 0.8 is reachable from 2 drawable samples on (one alone is a constant, uniform, curriculum)
    config = ScheduleConfig(strategy=strategy, initial_fraction=0.8, warmup_iterations=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cur = Curriculum.from_arrays(difficulty, config, sample_mask=valid)
    drawn = np.concatenate(
        [
            CurriculumSampler(
                cur,
                batch_size=8,
                num_samples=400,
                seed=seed % 1000,
                rank=rank,
                world_size=world_size,
                refresh_every=refresh_every,
            ).indices(epoch)
            for rank in range(world_size)
            for epoch in (0, 1)
        ]
    )
    assert valid[drawn].all()
    assert np.all(cur.probabilities(0)[~valid] == 0.0)


def test_masked_draws_follow_the_probabilities(mask: np.ndarray) -> None:
    from scipy import stats

    difficulty = np.random.default_rng(3).random(N)
    cur = Curriculum.from_arrays(
        difficulty, ScheduleConfig(initial_fraction=0.3, warmup_iterations=1000), sample_mask=mask
    )
    sampler = CurriculumSampler(cur, batch_size=1000, num_samples=200_000, refresh_every=10**6)
    counts = np.bincount(sampler.indices(), minlength=N)
    expected = cur.probabilities(0)
    assert counts[~mask].sum() == 0
    assert stats.chisquare(counts[mask], expected[mask] * counts.sum()).pvalue > 1e-3


def test_unmasked_sampler_draws_are_unchanged() -> None:
    """An all-True mask and no mask draw exactly the same indices."""
    difficulty = np.random.default_rng(4).random(100)
    config = ScheduleConfig(warmup_iterations=30)
    plain = CurriculumSampler(Curriculum.from_arrays(difficulty, config), batch_size=10)
    masked = CurriculumSampler(
        Curriculum.from_arrays(difficulty, config, sample_mask=np.ones(100, dtype=bool)),
        batch_size=10,
    )
    for epoch in (0, 3):
        np.testing.assert_array_equal(plain.indices(epoch), masked.indices(epoch))


def test_from_arrays_checks_the_schedule_against_the_drawable_count(mask: np.ndarray) -> None:
    difficulty = np.random.default_rng(5).random(N)
    schedule = build_schedule(difficulty, ScheduleConfig(warmup_iterations=10))
    with pytest.raises(ValueError, match="built for 240 samples but difficulty has 235 drawable"):
        Curriculum.from_arrays(difficulty, schedule, sample_mask=mask)


# ---------------------------------------------------------------------------- report + warnings


def test_edge_of_range_warning() -> None:
    assert edge_of_range_warning(20, (2, 20), "davies_bouldin") == (
        "k = 20 is the top of the swept range 2..20; the Davies-Bouldin curve may keep falling: "
        "try --k-range 2:40"
    )
    low = edge_of_range_warning(5, (5, 12), "davies_bouldin")
    assert low is not None and "bottom of the swept range 5..12" in low and "2:12" in low
    assert "smallest k" in str(edge_of_range_warning(2, (2, 20), "davies_bouldin"))
    assert edge_of_range_warning(7, (2, 20), "davies_bouldin") is None
    assert edge_of_range_warning(20, (2, 20), "explicit") is None
    assert edge_of_range_warning(4, (4, 4), "davies_bouldin") is None
    with pytest.raises(ValueError, match="inverted"):
        edge_of_range_warning(4, (9, 4), "davies_bouldin")
    with pytest.raises(ValueError, match="unknown chosen_by"):
        edge_of_range_warning(4, (2, 9), "magic")


def test_report_lists_warnings_and_skipped_samples(tmp_path: Path, mask: np.ndarray) -> None:
    rng = np.random.default_rng(6)
    difficulty = rng.random(N)
    assignment = np.arange(N) % 3
    assignment[~mask] = -1
    difficulty[~mask] = 0.0
    distances = np.where(mask, rng.random(N), 0.0)
    skipped = [
        {"index": int(i), "path": f"data/cat|{i}.jpg", "reason": "Truncated File\nRead"}
        for i in EXCLUDED
    ]
    warning = edge_of_range_warning(20, (2, 20), "davies_bouldin")
    assert warning is not None
    written = write_report(
        tmp_path,
        summary={"N": N},
        difficulty=difficulty,
        assignment=assignment,
        distances=distances,
        schedule_points=(np.arange(3.0), np.array([0.3, 0.6, 1.0]), np.array([1.0, 2.0, np.inf])),
        warnings=[warning],
        skipped=skipped,
    )
    text = written["report"].read_text()
    assert "## Warnings\n\n- k = 20 is the top of the swept range 2..20" in text
    assert "## Skipped samples\n\n5 sample(s) could not be loaded" in text
    assert "| 77 | data/cat\\|77.jpg | Truncated File Read |" in text
    assert "| -1 |" not in text  # the excluded rows belong to no cluster


def test_report_without_warnings_is_unchanged() -> None:
    plain = render_report({"N": 3}, cluster_rows=[{"cluster": 0, "size": 3}])
    empty = render_report(
        {"N": 3}, cluster_rows=[{"cluster": 0, "size": 3}], warnings=[], skipped=[]
    )
    assert plain == empty
    assert (
        plain == "# Curriculum report\n| field | value |\n|---|---|\n| N | 3 |\n\n## Clusters\n"
        "| cluster | size |\n|---|---|\n| 0 | 3 |\n"
    )
    with pytest.raises(TypeError, match="wrap it in a list"):
        render_report({}, warnings="one sentence")
    with pytest.raises(ValueError, match="skipped-sample record"):
        render_report({}, skipped=[{"path": "x"}])
