"""The ``curriculum_learning`` drop-in: agreement with ``cl_core``, persistence, and the reference
library's bugs, each with a test that fails on the reference behaviour.

Features come from :class:`RowFeatures`, a user-style :class:`curriculum_learning.FeatureExtractor`
that returns the rows of a generated ``TensorDataset``; no model runs here (the README tests in
``test_seed_readmes.py`` cover real models).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import curriculum_learning as cl
from cl_core.difficulty import normalize_difficulty
from cl_core.sampler import load_curriculum
from cl_core.schedule import effective_fraction, pacing_fraction


class RowFeatures(cl.FeatureExtractor):
    """Bring-your-own features: the first tensor of every batch is the feature row."""

    def extract_features(self, data_loader: Any, device: Any) -> Any:
        return torch.cat([batch[0] for batch in data_loader])


class LabelledRows(torch.utils.data.Dataset):
    """Feature rows with ``.targets`` as a plain list (as torchvision datasets)."""

    def __init__(self, features: np.ndarray, targets: list[int]) -> None:
        self.features = torch.from_numpy(features)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.features[index], self.targets[index]


def blobs(centres: np.ndarray, per_blob: int, seed: int, spread: float = 1.0) -> np.ndarray:
    """``per_blob`` Gaussian rows around each centre, blob after blob (float32)."""
    rng = np.random.default_rng(seed)
    rows = [
        centre + spread * rng.standard_normal((per_blob, centres.shape[1])) for centre in centres
    ]
    return np.concatenate(rows).astype(np.float32)


def blob_dataset(n_blobs: int = 4, per_blob: int = 60, dim: int = 6, seed: int = 0) -> LabelledRows:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 10.0, size=(n_blobs, dim))
    features = blobs(centres, per_blob, seed + 1)
    return LabelledRows(features, [i // per_blob % 2 for i in range(n_blobs * per_blob)])


def curriculum(**params: Any) -> cl.CurriculumLearning:
    params.setdefault("n_clusters", 4)
    params.setdefault("warmup_iterations", 100)
    return cl.CurriculumLearning(RowFeatures(), **params)


@pytest.fixture(scope="module")
def dataset() -> LabelledRows:
    return blob_dataset()


@pytest.fixture(scope="module")
def fitted(dataset: LabelledRows) -> cl.CurriculumLearning:
    return curriculum(initial_effective_percentage=0.4).fit(dataset)


def reference_like_difficulty(n: int, n_clusters: int = 100, seed: int = 0) -> np.ndarray:
    """Gamma distances min-max normalised per cluster (the reference's difficulty shape)."""
    rng = np.random.default_rng(seed)
    return normalize_difficulty(rng.gamma(2.0, 1.0, n), rng.integers(0, n_clusters, n), "minmax")


# --------------------------------------------------------------------------------------------
# The installed package
# --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_installed_package_imports_light_from_anywhere(tmp_path: Path) -> None:
    # run outside the repository: the package must come from the installation, not the cwd
    code = (
        "import sys, curriculum_learning as cl; "
        "print(cl.__file__); "
        "print(sorted(m for m in ('torch', 'timm', 'zarr', 'sklearn', 'prefect') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    location, heavy = done.stdout.splitlines()
    assert Path(location).parent.name == "curriculum_learning"  # the package, not a module
    assert heavy == "[]"
    for name in cl.__all__:
        assert getattr(cl, name) is not None


# --------------------------------------------------------------------------------------------
# Agreement with cl_core
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["easy", "difficulty"])
def test_weights_agree_with_the_published_artifact(
    fitted: cl.CurriculumLearning, strategy: str, tmp_path: Path
) -> None:
    loaded = load_curriculum(fitted.publish(tmp_path, "compat", strategy=strategy))
    np.testing.assert_array_equal(loaded.difficulty, fitted.get_difficulty_weights())
    for iteration in (0, 1, 37, 99, 100, 1000):
        np.testing.assert_array_equal(
            fitted.get_curriculum_weights(strategy=strategy, current_iteration=iteration),
            loaded.probabilities(iteration),
        )
    np.testing.assert_array_equal(
        fitted.get_curriculum_weights(temperature=0.25, strategy=strategy),
        loaded.probabilities(temperature=0.25),
    )


def test_weights_follow_the_pacing_targets(fitted: cl.CurriculumLearning) -> None:
    for iteration in (0, 25, 50, 75):
        weights = fitted.get_curriculum_weights(strategy="easy", current_iteration=iteration)
        target = pacing_fraction(
            iteration, pacing="linear", initial_fraction=0.4, warmup_iterations=100
        )
        assert fitted.target_fraction(iteration, "easy") == target
        assert abs(effective_fraction(weights) - target) <= 1e-3


def test_fitted_attributes(fitted: cl.CurriculumLearning, dataset: LabelledRows) -> None:
    n = len(dataset)
    assert fitted.weights_.dtype == np.float32 and fitted.weights_.shape == (n,)
    assert fitted.weights_.min() == 0.0 and fitted.weights_.max() == pytest.approx(1.0)
    assert fitted.optimal_clusters_ == 4
    assert fitted.centroids_.shape == (4, 6)
    assert np.bincount(fitted.assignment_).tolist() == [60, 60, 60, 60]
    np.testing.assert_array_equal(fitted.labels_, dataset.targets)
    features = fitted.features_
    assert features.shape == (n, 6) and len(features) == n
    # a custom extractor's features are used as returned (stored as float16)
    expected = dataset.features.numpy().astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(features), expected)
    np.testing.assert_array_equal(features[7], expected[7])
    np.testing.assert_array_equal(features[10:20:3, 2], expected[10:20:3, 2])


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["weights.npy", "weights", "weights.pt"])
def test_save_writes_exactly_the_path_and_round_trips(
    fitted: cl.CurriculumLearning, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    assert fitted.save_weights(path) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing appended or left over
    with np.load(path, allow_pickle=False) as archive:  # no pickle needed to read it
        assert {"weights", "assignment", "centroids", "labels", "meta"} <= set(archive.files)
        assert all(archive[key].dtype.kind != "O" for key in archive.files)

    restored = curriculum(n_clusters=7, initial_effective_percentage=0.9, warmup_iterations=5)
    restored.load_weights(path)
    assert restored.initial_effective_percentage == 0.4
    assert restored.warmup_iterations == 100
    assert restored.n_clusters == 4 and restored.random_state == 42
    assert restored.optimal_clusters_ == fitted.optimal_clusters_
    for attribute in ("weights_", "assignment_", "centroids_", "distances_", "labels_"):
        np.testing.assert_array_equal(getattr(restored, attribute), getattr(fitted, attribute))
    assert restored.features_ is None
    for iteration in (0, 30, 99, 100):
        np.testing.assert_array_equal(
            restored.get_curriculum_weights(current_iteration=iteration),
            fitted.get_curriculum_weights(current_iteration=iteration),
        )
    np.testing.assert_array_equal(
        restored.get_curriculum_weights(temperature=0.5, strategy="easy"),
        fitted.get_curriculum_weights(temperature=0.5, strategy="easy"),
    )


def test_load_refuses_a_pickled_reference_file(tmp_path: Path) -> None:
    path = tmp_path / "reference.npy"
    np.save(path, {"weights": np.zeros(3), "n_clusters": 2}, allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        curriculum().load_weights(path)


def test_load_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.npy"):
        curriculum().load_weights(tmp_path / "nothing.npy")


def test_save_before_fit_says_to_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fit"):  # NotFittedError, a ValueError as before
        curriculum().save_weights(tmp_path / "w.npz")
    assert not any(tmp_path.iterdir())


class CountingLinear(torch.nn.Module):
    """A linear encoder that counts the rows it encodes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(6, 4)
        self.rows = 0

    def forward(self, x: Any) -> Any:
        self.rows += int(x.shape[0])
        return self.linear(x)


def test_cache_dir_reuses_the_embeddings_of_the_same_data_and_model(
    dataset: LabelledRows, tmp_path: Path
) -> None:
    encoder = CountingLinear()
    first = cl.CurriculumLearning(
        cl.PretrainedModelExtractor(encoder), n_clusters=3, cache_dir=tmp_path
    ).fit(dataset)
    rows = encoder.rows
    assert rows >= len(dataset) and (tmp_path / "embeddings.zarr").is_dir()
    second = cl.CurriculumLearning(
        cl.PretrainedModelExtractor(encoder), n_clusters=3, cache_dir=tmp_path
    ).fit(dataset)
    assert encoder.rows <= rows + 1  # only the one-sample shape probe, nothing re-embedded
    np.testing.assert_array_equal(second.weights_, first.weights_)
    other = LabelledRows(dataset.features.numpy()[::-1].copy(), dataset.targets[::-1])
    third = cl.CurriculumLearning(
        cl.PretrainedModelExtractor(encoder), n_clusters=3, cache_dir=tmp_path
    ).fit(other)  # other data: the cache is replaced, not reused
    assert encoder.rows >= rows + len(other)
    assert third.features_.shape == (len(other), 4)
    with pytest.raises(RuntimeError, match="replaced by a later fit"):
        first.features_[0]  # the lazy view notices instead of returning other rows


# --------------------------------------------------------------------------------------------
# Datasets, loaders, labels
# --------------------------------------------------------------------------------------------


def test_a_shuffled_dataloader_is_refused(dataset: LabelledRows) -> None:
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        curriculum().fit(loader)


def test_an_ordered_dataloader_gives_the_datasets_weights(
    fitted: cl.CurriculumLearning, dataset: LabelledRows
) -> None:
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=False)
    from_loader = curriculum(initial_effective_percentage=0.4).fit(loader)
    np.testing.assert_array_equal(from_loader.weights_, fitted.weights_)
    np.testing.assert_array_equal(from_loader.labels_, dataset.targets)


def test_labels_given_as_a_list_are_used(dataset: LabelledRows) -> None:
    unlabelled = torch.utils.data.TensorDataset(dataset.features)
    labels = [int(t) for t in dataset.targets]  # the reference failed on lists
    model = curriculum(n_clusters=2, use_labels=True).fit(unlabelled, labels=labels)
    assert isinstance(model.labels_, np.ndarray)
    np.testing.assert_array_equal(model.labels_, labels)
    assert model.clusters_per_class_ == {0: 2, 1: 2}


def test_labels_come_through_a_subset(dataset: LabelledRows) -> None:
    indices = list(range(0, len(dataset), 2))
    model = curriculum(n_clusters=2).fit(torch.utils.data.Subset(dataset, indices))
    np.testing.assert_array_equal(model.labels_, np.asarray(dataset.targets)[indices])


def test_labels_of_the_wrong_length_are_refused(dataset: LabelledRows) -> None:
    with pytest.raises(ValueError, match=r"labels has 3 entries but the dataset has 240"):
        curriculum().fit(dataset, labels=[0, 1, 0])


def test_use_labels_without_any_labels_says_how_to_give_them(dataset: LabelledRows) -> None:
    unlabelled = torch.utils.data.TensorDataset(dataset.features)
    with pytest.raises(ValueError, match=r"labels=\.\.\."):
        curriculum(use_labels=True).fit(unlabelled)


# --------------------------------------------------------------------------------------------
# Reference bugs, fixed
# --------------------------------------------------------------------------------------------


def test_explicit_n_clusters_is_honoured(dataset: LabelledRows) -> None:
    # the reference re-ran the automatic choice whenever auto_select_clusters was True (default)
    model = cl.CurriculumLearning(RowFeatures(), n_clusters=6).fit(dataset)
    assert model.auto_select_clusters is True
    assert model.optimal_clusters_ == 6
    assert model.cluster_result_.chosen_by == "explicit"


def test_k_is_chosen_per_class() -> None:
    # class 0: 2 well-separated blobs; class 1: 4. The reference chose one k for all classes.
    rng = np.random.default_rng(3)
    class0 = blobs(rng.normal(0, 30, size=(2, 5)), 50, seed=4)
    class1 = blobs(rng.normal(0, 30, size=(4, 5)), 50, seed=5)
    data = LabelledRows(np.concatenate([class0, class1]), [0] * 100 + [1] * 200)
    model = cl.CurriculumLearning(
        RowFeatures(), use_labels=True, cluster_range=(2, 6), warmup_iterations=10
    ).fit(data)
    assert model.clusters_per_class_ == {0: 2, 1: 4}
    assert model.optimal_clusters_ == 4  # k per class (the largest choice), the reference's meaning
    assert model.n_clusters_total_ == 6
    assert model.cluster_class_.tolist() == [0, 0, 1, 1, 1, 1]
    labels = np.asarray(data.targets)
    for label in (0, 1):  # difficulty is normalised within each class
        assert model.weights_[labels == label].min() == 0.0
        assert model.weights_[labels == label].max() == pytest.approx(1.0)


def test_optimal_clusters_is_the_per_class_k_with_labels(
    dataset: LabelledRows, tmp_path: Path
) -> None:
    # README v1 Example 2: n_clusters=5 with use_labels=True is "5 clusters per class"; the
    # reference reported that k, and so does optimal_clusters_ (the total is n_clusters_total_)
    model = curriculum(n_clusters=3, use_labels=True).fit(dataset)
    assert model.clusters_per_class_ == {0: 3, 1: 3}
    assert model.optimal_clusters_ == 3
    assert model.n_clusters_total_ == 6 and model.centroids_.shape == (6, 6)
    assert np.unique(model.assignment_).size == 6
    restored = curriculum().load_weights(model.save_weights(tmp_path / "w.npz"))
    assert (restored.optimal_clusters_, restored.n_clusters_total_) == (3, 6)
    assert restored.clusters_per_class_ == {0: 3, 1: 3}
    unsupervised = curriculum(n_clusters=3).fit(dataset)
    assert unsupervised.optimal_clusters_ == unsupervised.n_clusters_total_ == 3
    assert unsupervised.clusters_per_class_ is None and unsupervised.cluster_class_ is None


def test_a_class_smaller_than_k_keeps_the_requested_per_class_k() -> None:
    rng = np.random.default_rng(8)
    features = rng.normal(size=(43, 4)).astype(np.float32)
    data = LabelledRows(features, [0] * 40 + [1] * 3)
    with pytest.warns(UserWarning):  # the small class's k is capped at its size
        model = curriculum(n_clusters=5, use_labels=True).fit(data)
    assert model.clusters_per_class_[0] == 5 and model.clusters_per_class_[1] <= 3
    assert model.optimal_clusters_ == 5
    assert model.n_clusters_total_ == sum(model.clusters_per_class_.values())


def test_weights_files_from_before_n_clusters_total_load(
    dataset: LabelledRows, tmp_path: Path
) -> None:
    # earlier files stored the total as optimal_clusters and had no n_clusters_total
    import json

    model = curriculum(n_clusters=2, use_labels=True).fit(dataset)
    path = model.save_weights(tmp_path / "w.npz")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["n_clusters_total"]
    meta["optimal_clusters"] = 4
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    restored = curriculum().load_weights(path)
    assert (restored.optimal_clusters_, restored.n_clusters_total_) == (2, 4)


@pytest.mark.parametrize("strategy", ["easy", "difficulty"])
def test_schedule_reaches_its_targets_at_100k(strategy: str) -> None:
    # the reference's temperature search could not go below ~0.9 of the data at this size
    model = cl.CurriculumLearning.from_difficulty(
        reference_like_difficulty(100_000), initial_effective_percentage=0.3, strategy=strategy
    )
    for iteration in (0, 100, 500, 900, 999):
        target = 0.3 + 0.7 * iteration / 1000
        weights = model.get_curriculum_weights(current_iteration=iteration)
        assert abs(effective_fraction(weights) - target) <= 1e-3, iteration


def test_no_probability_floor_leaks_mass_to_excluded_samples() -> None:
    difficulty = reference_like_difficulty(20_000)
    model = cl.CurriculumLearning.from_difficulty(difficulty)
    weights = model.get_curriculum_weights(temperature=0.01, strategy="easy")
    hardest = int(np.argmax(difficulty))
    assert weights[hardest] < 1e-40  # the reference floored every weight at 1e-6 (before norm)
    # exactly the softmax: p_i / p_j = exp(-(d_i - d_j) / T), no truncation, no floor
    easiest = int(np.argmin(difficulty))
    pick = np.random.default_rng(0).choice(difficulty.size, 50)
    d64 = difficulty.astype(np.float64)
    with np.errstate(under="ignore"):
        expected = np.exp(-(d64[pick] - d64[easiest]) / 0.01)
    np.testing.assert_allclose(weights[pick] / weights[easiest], expected, rtol=1e-9, atol=1e-300)


def test_uniform_after_warmup_sums_to_one(fitted: cl.CurriculumLearning) -> None:
    weights = fitted.get_curriculum_weights(current_iteration=fitted.warmup_iterations)
    n = weights.size
    np.testing.assert_array_equal(weights, np.full(n, 1.0 / n))  # the reference returned ones


@pytest.mark.parametrize("fraction", [0.08, 0.12, 0.05, 1.0])
def test_initial_effective_percentage_accepts_any_fraction(fraction: float) -> None:
    # the reference README used 0.08 and 0.12, yet the reference rejected values below 0.1
    model = cl.CurriculumLearning.from_difficulty(
        reference_like_difficulty(20_000), initial_effective_percentage=fraction
    )
    start = model.get_curriculum_weights(current_iteration=0)
    assert abs(effective_fraction(start) - fraction) <= 1e-3


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_initial_effective_percentage_outside_0_1_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"initial_effective_percentage must lie in \(0, 1\]"):
        curriculum(initial_effective_percentage=fraction)


def test_an_unreachable_start_warns_and_starts_at_the_floor() -> None:
    difficulty = np.array([0.0, 0.0, 0.5, 1.0, 0.25, 0.75, 0.1, 0.9])
    with pytest.warns(cl.CurriculumWarning, match=r"initial_effective_percentage=0\.01"):
        model = cl.CurriculumLearning.from_difficulty(
            difficulty, initial_effective_percentage=0.01, strategy="easy"
        )
    start = model.get_curriculum_weights(strategy="easy", current_iteration=0)
    assert effective_fraction(start) > 0.01
    assert model.target_fraction(0, "easy") == pytest.approx(effective_fraction(start), abs=1e-3)


def test_strategy_names_mean_what_the_readme_says(fitted: cl.CurriculumLearning) -> None:
    difficulty = fitted.get_difficulty_weights()
    order = np.argsort(difficulty, kind="stable")
    hard = fitted.get_curriculum_weights(temperature=0.5, strategy="difficulty")
    easy = fitted.get_curriculum_weights(temperature=0.5, strategy="easy")
    assert np.all(np.diff(hard[order]) >= 0) and hard[order[-1]] > hard[order[0]]
    assert np.all(np.diff(easy[order]) <= 0) and easy[order[-1]] < easy[order[0]]
    np.testing.assert_array_equal(
        hard, fitted.get_curriculum_weights(temperature=0.5, strategy="hard")
    )
    np.testing.assert_array_equal(
        easy, fitted.get_curriculum_weights(temperature=0.5, strategy="prototypes")
    )
    assert fitted.get_curriculum_weights(current_iteration=0) is not None  # default: difficulty
    with pytest.raises(ValueError, match="unknown strategy 'medium'; valid: easy, hard"):
        fitted.get_curriculum_weights(temperature=0.5, strategy="medium")


def test_calls_never_re_solve_the_temperature(
    fitted: cl.CurriculumLearning, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted.curriculum("easy")  # solved once (here, or already at fit time)
    import cl_core.schedule as schedule

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("get_curriculum_weights re-solved the temperature")

    import cl_core.schedule.solver as solver

    for name in ("build_schedule", "solve_inverse_temperature"):
        monkeypatch.setattr(schedule, name, forbidden)
    # The solver's own calls resolve names in its module: patch them where they run.
    for name in ("build_schedule", "solve_inverse_temperature", "_solve_fractions"):
        monkeypatch.setattr(solver, name, forbidden)
    monkeypatch.setattr(cl.estimator, "build_schedule", forbidden)  # its imported reference
    for iteration in range(0, 100, 3):
        fitted.get_curriculum_weights(strategy="easy", current_iteration=iteration)
    # a different warmup reuses the table (it is over target fractions, not iterations)
    halfway = fitted.get_curriculum_weights(
        strategy="easy", current_iteration=100, warmup_iterations=200
    )
    assert abs(effective_fraction(halfway) - (0.4 + 0.6 * 0.5)) <= 1e-3


def test_both_call_styles_and_positional_forms(fitted: cl.CurriculumLearning) -> None:
    by_keyword = fitted.get_curriculum_weights(temperature=0.5, strategy="easy")
    np.testing.assert_array_equal(fitted.get_curriculum_weights(0.5, "easy"), by_keyword)
    scheduled = fitted.get_curriculum_weights(strategy="easy", current_iteration=10)
    np.testing.assert_array_equal(fitted.get_curriculum_weights("easy", 10), scheduled)
    np.testing.assert_array_equal(
        fitted.get_curriculum_weights(), fitted.get_curriculum_weights(current_iteration=0)
    )
    with pytest.raises(ValueError, match="not both"):
        fitted.get_curriculum_weights(temperature=0.5, current_iteration=3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        fitted.get_curriculum_weights(temperature=0.0)
    uniform = fitted.get_curriculum_weights(temperature=math.inf)
    np.testing.assert_array_equal(uniform, np.full(uniform.size, 1.0 / uniform.size))


# --------------------------------------------------------------------------------------------
# Construction errors and the DINO helper
# --------------------------------------------------------------------------------------------


def test_bad_constructor_arguments_name_the_fix() -> None:
    with pytest.raises(TypeError, match=r"PretrainedModelExtractor\(model\)"):
        cl.CurriculumLearning(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="abstract"):
        cl.FeatureExtractor()  # type: ignore[abstract]
    with pytest.raises(ValueError, match="inverted"):
        curriculum(cluster_range=(10, 3))
    with pytest.raises(ValueError, match="unknown pacing 'fast'; valid: linear"):
        curriculum(pacing="fast")
    with pytest.raises(ValueError, match="not fitted"):
        curriculum().get_curriculum_weights(current_iteration=0)


def test_local_weights_are_found_under_reference_timm_and_release_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cl.WEIGHTS_DIR_ENV, str(tmp_path))
    assert cl.find_local_weights("dino_vits16", [tmp_path]) is None
    release = tmp_path / "dino_deitsmall16_pretrain.pth"  # what torch.hub downloads
    release.write_bytes(b"")
    assert cl.find_local_weights("dino_vits16", [tmp_path]) == release
    timm_file = tmp_path / "vit_small_patch16_224.dino.safetensors"
    timm_file.write_bytes(b"")
    for name in ("dino_vits16", "vit_small_patch16_224.dino"):
        assert cl.find_local_weights(name, [tmp_path]) == timm_file  # timm name preferred
    assert cl.find_local_weights("dino_vitb8", [tmp_path]) is None


def test_dino_offline_without_a_file_says_how_to_give_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: LabelledRows
) -> None:
    monkeypatch.setenv(cl.WEIGHTS_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(cl.factories, "weight_directories", lambda: [tmp_path])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as raised:
        cl.create_curriculum_learning_with_dino(dataset, "cpu", dino_model="dino_vits8")
    message = str(raised.value)
    assert "weights=PATH" in message and cl.WEIGHTS_DIR_ENV in message
    assert "vit_small_patch8_224.dino" in message


def test_dino_helper_takes_the_readme_signature(dataset: LabelledRows) -> None:
    with pytest.raises(TypeError, match="pass n_clusters=10 by keyword"):
        cl.create_curriculum_learning_with_dino(dataset, 10)
    with pytest.raises(ValueError, match="unknown model 'dino_vits99'"):
        cl.create_curriculum_learning_with_dino(dataset, "cpu", dino_model="dino_vits99")
