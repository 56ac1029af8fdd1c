"""Every Python code block of the reference library's two READMEs runs against ``curriculum_learning``.

The blocks are read from ``tests/data/seeds/seed-readme-v*.md``, verbatim copies of
``../shared/seeds`` (override the directory with ``CL_CURRICULUM_SEEDS_DIR``), and executed as written, with only these documented changes:

1. **Textual substitutions** (``BlockCase.substitutions``; each must match exactly once, so a
   changed README fails loudly instead of silently running something else):
   hub downloads become tiny random-weight models (``resnet50(pretrained=True)`` ->
   ``resnet18(weights=None)``; ``vit_base_patch16_224`` pretrained -> ``vit_tiny_patch16_224``
   random at 32 px), and CIFAR-10 / ImageNet become :class:`GeneratedImages`, a small
   generated dataset with ``.targets`` (a list, as torchvision's).
2. **The DINO download** is served by a local weights file: a random-init timm
   ``vit_small_patch16_224`` saved as ``vit_small_patch16_224.dino.safetensors`` in a directory
   named by ``$CL_CURRICULUM_WEIGHTS_DIR``, which ``curriculum_learning`` searches. The README
   code itself is unchanged.
3. **Names the READMEs assume** (``your_model``, ``dataset``, ``num_epochs``, ``train_step``...)
   are pre-populated (:func:`readme_names`); loops are bounded by them (``num_epochs = 2``, a
   ``train_loader`` of 2 batches).
4. **Names imported by an earlier block** of the same README (``BlockCase.earlier_imports``,
   e.g. Example 3 uses ``CurriculumLearning`` imported by Example 2) are bound as a reader's
   session would have them.
5. **Fragments** run with a documented minimal context (``BlockCase.context``): the API listings
   of README v2 get a ``feature_extractor``, ``kwargs`` and, for the bare method listing, the
   methods of a fresh ``CurriculumLearning`` bound to their names; Example 4 and the
   "Automatic Sampling" snippet get the fitted ``curriculum`` their README section refers to.
   A trailing bare expression's value is kept as ``_`` (as in an interactive session) so the
   checks can inspect it.

Each block is then checked by assertions on what it produced, so a block "passes" only when the
API did what the README says, not merely when nothing raised. The ``bash`` (pip) and ``bibtex``
blocks are not Python and are only counted.
"""

from __future__ import annotations

import ast
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import torchvision

import curriculum_learning as cl
from cl_core.schedule import effective_fraction

ROOT = Path(__file__).resolve().parents[1]
SEEDS_DIR = Path(os.environ.get("CL_CURRICULUM_SEEDS_DIR", ROOT / "tests" / "data" / "seeds"))
SEED_FILES = ("seed-readme-v1.md", "seed-readme-v2.md")
NON_PYTHON_LANGUAGES = {"bash", "bibtex"}
NUM_CLASSES = 3
NUM_EPOCHS = 2
DINO_FILE = "vit_small_patch16_224.dino.safetensors"

pytestmark = pytest.mark.skipif(
    not all((SEEDS_DIR / name).is_file() for name in SEED_FILES),
    reason=f"seed READMEs not found in {SEEDS_DIR} (set CL_CURRICULUM_SEEDS_DIR)",
)


# --------------------------------------------------------------------------------------------
# Extracting code blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a README."""

    readme: str
    line: int
    heading: str
    language: str
    source: str

    @property
    def key(self) -> str:
        """``v1:basic-usage``: README version and the slug of the nearest heading."""
        version = re.search(r"v\d+", self.readme)
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{version.group(0) if version else self.readme}:{slug}"


_FENCE = re.compile(r"^```(?P<language>[\w+-]*)[ \t]*\n(?P<source>.*?)^```[ \t]*$", re.S | re.M)
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$", re.M)


def extract_code_blocks(path: Path) -> list[CodeBlock]:
    """Every fenced code block of a Markdown file, with its language and nearest heading."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        headings = _HEADING.findall(before)
        blocks.append(
            CodeBlock(
                readme=path.name,
                line=before.count("\n") + 1,
                heading=headings[-1] if headings else "",
                language=match.group("language").lower(),
                source=match.group("source"),
            )
        )
    return blocks


def all_blocks() -> list[CodeBlock]:
    if not all((SEEDS_DIR / name).is_file() for name in SEED_FILES):
        return []
    return [block for name in SEED_FILES for block in extract_code_blocks(SEEDS_DIR / name)]


def python_blocks() -> list[CodeBlock]:
    return [block for block in all_blocks() if block.language == "python"]


def substitute(source: str, substitutions: tuple[tuple[str, str], ...], key: str) -> str:
    """Apply each (old, new) replacement; each ``old`` must occur exactly once."""
    for old, new in substitutions:
        count = source.count(old)
        assert count == 1, (
            f"block {key}: substitution target {old!r} occurs {count} times (expected once); "
            f"the README changed, update BlockCase.substitutions"
        )
        source = source.replace(old, new)
    return source


def run_block(source: str, namespace: dict[str, Any], filename: str) -> dict[str, Any]:
    """Execute a block; the value of a trailing bare expression is stored as ``_``."""
    tree = ast.parse(source, filename=filename)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.Assign(targets=[ast.Name("_", ast.Store())], value=last.value)
        ast.copy_location(tree.body[-1], last)
        ast.fix_missing_locations(tree)
    exec(compile(tree, filename, "exec"), namespace)
    return namespace


# --------------------------------------------------------------------------------------------
# Generated stand-ins for what the READMEs download
# --------------------------------------------------------------------------------------------


class GeneratedImages(torch.utils.data.Dataset):
    """A CIFAR-like dataset of generated RGB images: PIL images through ``transform``.

    Class ``c`` images are a class colour plus a few bright squares and per-sample noise, so
    the classes form clusters with spread. ``targets`` is a list, as in torchvision.

    Parameters
    ----------
    n_samples : int
    image_size : int
    transform : callable, optional
        PIL image -> tensor; default ``ToTensor()``.
    num_classes : int
    seed : int
    """

    def __init__(
        self,
        n_samples: int = 96,
        image_size: int = 32,
        transform: Callable[[Any], Any] | None = None,
        num_classes: int = NUM_CLASSES,
        seed: int = 0,
    ) -> None:
        self.targets = [i % num_classes for i in range(n_samples)]
        self.classes = [f"class{c}" for c in range(num_classes)]
        self.image_size = image_size
        self.transform = transform or torchvision.transforms.ToTensor()
        self.seed = seed

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        label = self.targets[index]
        size = self.image_size
        base = np.array([80 + 60 * label, 200 - 50 * label, 40 + 70 * (label % 2)], dtype=float)
        pixels = base + rng.normal(0, 25, size=(size, size, 3))
        for _ in range(3):
            side = max(2, size // 6)
            top, left = rng.integers(0, size - side, size=2)
            pixels[top : top + side, left : left + side] += rng.uniform(40, 120)
        return np.clip(pixels, 0, 255).astype(np.uint8)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.image(index))), self.targets[index]


class Spectrograms(torch.utils.data.Dataset):
    """Generated 3-channel "log-mel spectrograms" (smooth bands + noise), for the audio example."""

    def __init__(self, n_samples: int = 8, size: int = 224, num_classes: int = NUM_CLASSES) -> None:
        rng = np.random.default_rng(7)
        self.labels = [i % num_classes for i in range(n_samples)]
        freqs = np.linspace(0, 1, size)[:, None]
        data = []
        for label in self.labels:
            band = np.exp(-(((freqs - 0.2 - 0.25 * label) / 0.08) ** 2))
            spectrum = band * rng.uniform(0.5, 1.5, size=(1, size)) + rng.normal(
                0, 0.1, (size, size)
            )
            data.append(np.repeat(spectrum[None], 3, axis=0))
        self.data = torch.tensor(np.stack(data), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.data[index], self.labels[index]


class TokenDataset(torch.utils.data.Dataset):
    """Generated token-id sequences (class-specific vocabulary ranges), for the text example."""

    def __init__(self, n_samples: int = 480, length: int = 12, vocab: int = 64) -> None:
        rng = np.random.default_rng(11)
        self.targets = [i % NUM_CLASSES for i in range(n_samples)]
        width = vocab // NUM_CLASSES
        self.tokens = torch.tensor(
            np.stack([rng.integers(c * width, (c + 1) * width, size=length) for c in self.targets])
        )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.tokens[index], self.targets[index]


class TinyTextEncoder(torch.nn.Module):
    """Embedding bag over token ids: (B, T) int -> (B, 16)."""

    def __init__(self, vocab: int = 64, dim: int = 16) -> None:
        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(vocab, dim, mode="mean")
        self.project = torch.nn.Linear(dim, dim)

    def forward(self, tokens: Any) -> Any:
        return self.project(self.embedding(tokens))


def tiny_resnet() -> Any:
    """A random-weight ResNet-18 (it has ``layer3``) returning 512-d pooled features."""
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Identity()
    return model.eval()


class TrainStepRecorder:
    """Stand-in for the user's ``train_step``: counts calls and checks the batch."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, inputs: Any, targets: Any) -> None:
        assert inputs.shape[0] == targets.shape[0]
        self.calls += 1


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dino_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local "DINO ViT-S/16" weights file (random init) where the shim looks for it."""
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    save_file(model.state_dict(), str(directory / DINO_FILE))
    return directory


@pytest.fixture(scope="module")
def fitted_curriculum() -> tuple[Any, Any]:
    """The fitted ``curriculum`` (and its ``dataset``) that README fragments refer to."""
    torch.manual_seed(0)
    dataset = GeneratedImages(n_samples=96)
    curriculum = cl.CurriculumLearning(cl.PretrainedModelExtractor(tiny_resnet()), n_clusters=4)
    curriculum.fit(dataset, device="cpu")
    return curriculum, dataset


@pytest.fixture
def readme_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dino_weights_dir: Path
) -> dict[str, Any]:
    """The names the READMEs use without defining them, bound to small stand-ins.

    The working directory is a temporary one (``./data``, saved weights land there) and
    ``$CL_CURRICULUM_WEIGHTS_DIR`` points at the local DINO weights.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cl.WEIGHTS_DIR_ENV, str(dino_weights_dir))
    torch.manual_seed(0)
    model = tiny_resnet()
    loader_data = torch.utils.data.TensorDataset(torch.rand(8, 3, 32, 32), torch.arange(8) % 3)
    return {
        "__name__": "readme_block",
        "np": np,
        "torch": torch,
        "DataLoader": torch.utils.data.DataLoader,
        "GeneratedImages": GeneratedImages,
        "device": torch.device("cpu"),
        "transforms": torchvision.transforms.ToTensor(),  # v1 passes `transform=transforms`
        "num_classes": NUM_CLASSES,
        "num_epochs": NUM_EPOCHS,
        "train_loader": torch.utils.data.DataLoader(loader_data, batch_size=4),
        "train_step": TrainStepRecorder(),
        "dataset": GeneratedImages(n_samples=60),
        "your_dataset": GeneratedImages(n_samples=48, seed=1),
        "your_model": model,
        "model": model,
        "resnet_model": model,
        "audio_dataset": Spectrograms(),
        "text_encoder": TinyTextEncoder(),
        "text_dataset": TokenDataset(),
    }


# --------------------------------------------------------------------------------------------
# Per-block substitutions, context and checks
# --------------------------------------------------------------------------------------------


def _is_distribution(weights: Any, n_samples: int) -> None:
    values = np.asarray(weights, dtype=np.float64)
    assert values.shape == (n_samples,)
    assert np.all(values >= 0)
    assert math.isclose(values.sum(), 1.0, rel_tol=0, abs_tol=1e-9)


def _monotone_in_difficulty(weights: np.ndarray, difficulty: np.ndarray, increasing: bool) -> None:
    """Sampling weight is a monotone function of difficulty (direction of the strategy)."""
    order = np.argsort(difficulty, kind="stable")
    steps = np.diff(np.asarray(weights)[order])
    if increasing:
        assert np.all(steps >= -1e-15), "weights should grow with difficulty"
    else:
        assert np.all(steps <= 1e-15), "weights should shrink with difficulty"
    assert weights[order[-1]] != weights[order[0]]


def check_v1_basic_usage(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    n = len(ns["dataset"])
    assert ns["difficulty_weights"].shape == (n,)
    _is_distribution(ns["curriculum_weights"], n)
    # strategy='difficulty' favours hard samples (the reference README's documented meaning)
    _monotone_in_difficulty(ns["curriculum_weights"], ns["difficulty_weights"], increasing=True)
    assert isinstance(ns["sampler"], torch.utils.data.WeightedRandomSampler)
    assert ns["train_loader"].sampler is ns["sampler"]
    inputs, _targets = next(iter(ns["train_loader"]))
    assert inputs.shape == (32, 3, 32, 32)


def check_v1_advanced_usage(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    curriculum = ns["curriculum"]
    n = len(ns["dataset"])
    assert ns["weights"].shape == (n,)
    # supervised: k chosen per class within cluster_range=(5, 30) (capped at class size - 1)
    per_class = curriculum.clusters_per_class_
    assert set(per_class) == set(range(NUM_CLASSES))
    assert all(5 <= k <= n // NUM_CLASSES - 1 for k in per_class.values())
    # the reference's meaning: k per class (chosen per class here: the largest choice)
    assert curriculum.optimal_clusters_ == max(per_class.values())
    assert curriculum.n_clusters_total_ == sum(per_class.values())
    assert curriculum.centroids_.shape[0] == curriculum.n_clusters_total_
    assert curriculum.features_.shape[1] == 256  # ResNet layer3 has 256 channels
    saved = Path("my_curriculum_weights.npy")
    assert saved.is_file(), "save_weights must write exactly the path given"
    assert not Path("my_curriculum_weights.npy.npy").exists()
    restored = cl.CurriculumLearning(cl.PretrainedModelExtractor(ns["your_model"]))
    np.testing.assert_array_equal(
        restored.load_weights(saved).get_difficulty_weights(), ns["weights"]
    )


def check_v1_example_1(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    curriculum = ns["curriculum"]
    assert 5 <= curriculum.optimal_clusters_ <= 25
    assert curriculum.cluster_result_.chosen_by == "davies_bouldin"
    assert min(p.k for p in curriculum.cluster_result_.sweep) == 5
    assert ns["weights"].shape == (len(ns["your_dataset"]),)


def check_v1_example_2(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    curriculum, weights = ns["curriculum"], ns["weights"]
    assert curriculum.clusters_per_class_ == {c: 5 for c in range(NUM_CLASSES)}
    # "n_clusters=5  # 5 clusters per class": optimal_clusters_ is that per-class k, as in the
    # reference; the total (5 per class x NUM_CLASSES) is n_clusters_total_
    assert curriculum.optimal_clusters_ == 5
    assert curriculum.n_clusters_total_ == 5 * NUM_CLASSES
    assert curriculum.centroids_.shape[0] == 5 * NUM_CLASSES
    labels = np.array(ns["dataset"].targets)
    np.testing.assert_array_equal(curriculum.labels_, labels)
    for class_index in range(NUM_CLASSES):  # min-max normalised within each class
        class_weights = weights[labels == class_index]
        assert class_weights.min() == 0.0 and class_weights.max() == pytest.approx(1.0)


def check_v1_example_3(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    curriculum = ns["curriculum"]
    assert curriculum.auto_select_clusters is True  # the default...
    assert curriculum.optimal_clusters_ == 10  # ...yet the explicit n_clusters is honoured
    assert curriculum.cluster_result_.chosen_by == "explicit"
    assert curriculum.features_.shape == (len(ns["dataset"]), 256)


def check_v1_example_4(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    curriculum = ns["curriculum"]
    difficulty = curriculum.get_difficulty_weights()
    for name in ("easy_weights", "hard_weights", "focused_weights", "uniform_weights"):
        _is_distribution(ns[name], difficulty.size)
    _monotone_in_difficulty(ns["easy_weights"], difficulty, increasing=False)
    _monotone_in_difficulty(ns["hard_weights"], difficulty, increasing=True)
    # lower temperature = more focused sampling (smaller effective fraction)
    assert effective_fraction(ns["focused_weights"]) < effective_fraction(ns["hard_weights"])
    assert effective_fraction(ns["hard_weights"]) < effective_fraction(ns["uniform_weights"])


def check_v2_quick_start(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    curriculum, dataset = ns["curriculum"], ns["dataset"]
    assert ns["difficulty_weights"].shape == (len(dataset),)
    assert curriculum.initial_effective_percentage == 0.15
    assert curriculum.warmup_iterations == 5000
    assert curriculum.batch_size == 256
    # the local weights file served the `dino_vits16` request
    attrs = curriculum.store_.attrs
    assert attrs["model_id"] == "vit_small_patch16_224.dino"
    from cl_core.embed import file_sha256

    assert attrs["weights_sha256"] == file_sha256(ctx["dino_weights_dir"] / DINO_FILE)
    assert curriculum.features_.shape == (len(dataset), 384)
    steps = NUM_EPOCHS * len(ns["train_loader"])
    assert ns["train_step"].calls == steps
    _is_distribution(ns["weights"], len(dataset))
    last = steps - 1
    np.testing.assert_array_equal(
        ns["weights"], curriculum.curriculum("difficulty").probabilities(last)
    )
    assert isinstance(ns["sampler"], torch.utils.data.WeightedRandomSampler)


def context_v2_class_listing(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"feature_extractor": cl.PretrainedModelExtractor(ctx["names"]["model"])}


def check_v2_class_listing(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    instance = ns["_"]
    assert isinstance(instance, cl.CurriculumLearning)
    listed = {
        "n_clusters": None,
        "auto_select_clusters": True,
        "cluster_range": (2, 20),
        "use_labels": False,
        "normalize_weights": True,
        "batch_size": 256,
        "use_minibatch_kmeans": True,
        "initial_effective_percentage": 0.3,
        "warmup_iterations": 1000,
        "random_state": 42,
    }
    params = instance.get_params()
    assert {name: params[name] for name in listed} == listed
    assert params["feature_extractor"] is ns["feature_extractor"]


def context_v2_method_listing(ctx: dict[str, Any]) -> dict[str, Any]:
    """Bare ``fit(...)``, ``get_difficulty_weights()``... name the methods of an instance."""
    instance = cl.CurriculumLearning(
        cl.PretrainedModelExtractor(ctx["names"]["model"]), n_clusters=3
    )
    methods = (
        "fit",
        "get_difficulty_weights",
        "get_curriculum_weights",
        "save_weights",
        "load_weights",
    )
    return {
        "instance": instance,
        "filepath": "weights.npz",
        **{name: getattr(instance, name) for name in methods},
    }


def check_v2_method_listing(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    instance = ns["instance"]
    assert Path("weights.npz").is_file()
    assert ns["_"] is instance  # load_weights returns the instance
    assert instance.optimal_clusters_ == 3
    _is_distribution(instance.get_curriculum_weights(current_iteration=0), len(ns["dataset"]))


def context_v2_dino_listing(ctx: dict[str, Any]) -> dict[str, Any]:
    # DINO ViT-S/16 takes 224 px images
    return {"dataset": GeneratedImages(n_samples=8, image_size=224), "kwargs": {}}


def check_v2_dino_listing(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    weights, curriculum = ns["_"]
    assert weights.shape == (8,)
    assert curriculum.initial_effective_percentage == 0.3
    assert curriculum.warmup_iterations == 1000
    assert curriculum.store_.attrs["model_id"] == "vit_small_patch16_224.dino"


def check_v2_audio_or_text(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    # the reference rejected initial_effective_percentage < 0.1; these values are accepted
    audio = ctx["audio_curriculum"]
    assert audio.initial_effective_percentage == 0.12
    assert audio.get_difficulty_weights().shape == (len(ns["audio_dataset"]),)
    text = ns["curriculum"]
    assert text.initial_effective_percentage == 0.08
    assert text.warmup_iterations == 8000
    n = len(ns["text_dataset"])
    assert ns["weights"].shape == (n,)
    start = text.get_curriculum_weights(current_iteration=0)
    _is_distribution(start, n)
    assert abs(effective_fraction(start) - 0.08) <= 1e-3  # the schedule reaches its start


def context_v2_audio_or_text(ctx: dict[str, Any]) -> dict[str, Any]:
    """The DINO helper as imported by the Quick Start, wrapped to keep the audio result (the
    block rebinds ``curriculum`` to the text one)."""

    def create_curriculum_learning_with_dino(*args: Any, **kwargs: Any) -> Any:
        result = cl.create_curriculum_learning_with_dino(*args, **kwargs)
        ctx["audio_curriculum"] = result[1]
        return result

    return {"create_curriculum_learning_with_dino": create_curriculum_learning_with_dino}


def context_v2_automatic_sampling(ctx: dict[str, Any]) -> dict[str, Any]:
    curriculum, dataset = ctx["fitted"]
    return {"curriculum": curriculum, "dataset": dataset, "current_iter": 7}


def check_v2_automatic_sampling(ns: dict[str, Any], ctx: dict[str, Any]) -> None:
    curriculum = ns["curriculum"]
    _is_distribution(ns["weights"], len(ns["dataset"]))
    np.testing.assert_array_equal(
        ns["weights"], curriculum.get_curriculum_weights(current_iteration=7)
    )
    # and the README's "else" branch agrees with what the library returns after warmup
    after = curriculum.get_curriculum_weights(current_iteration=curriculum.warmup_iterations)
    np.testing.assert_allclose(
        after, [1.0 / len(ns["dataset"])] * len(ns["dataset"]), rtol=0, atol=0
    )


def context_fitted(ctx: dict[str, Any]) -> dict[str, Any]:
    curriculum, dataset = ctx["fitted"]
    return {"curriculum": curriculum, "dataset": dataset}


@dataclass(frozen=True)
class BlockCase:
    """How one README block runs: substitutions, extra context, and what to check after."""

    check: Callable[[dict[str, Any], dict[str, Any]], None]
    substitutions: tuple[tuple[str, str], ...] = ()
    context: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    earlier_imports: tuple[str, ...] = field(default=())
    notes: str = ""


RESNET50 = (
    "torchvision.models.resnet50(pretrained=True)",
    "torchvision.models.resnet18(weights=None)",
)
CIFAR10 = (
    "torchvision.datasets.CIFAR10(root='./data', train=True, transform=transforms)",
    "GeneratedImages(n_samples=96, image_size=32, transform=transforms)",
)
VIT_BASE = (
    "timm.create_model('vit_base_patch16_224', pretrained=True, num_classes=0)",
    "timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=0, img_size=32)",
)
IMAGENET = (
    "datasets.ImageNet(root='./data/imagenet', split='train', transform=transform)",
    "GeneratedImages(n_samples=8, image_size=64, transform=transform)",
)

CASES: dict[str, BlockCase] = {
    "v1:basic-usage": BlockCase(check_v1_basic_usage, substitutions=(RESNET50, CIFAR10)),
    "v1:advanced-usage": BlockCase(check_v1_advanced_usage),
    "v1:example-1-vision-transformer-with-auto-clustering": BlockCase(
        check_v1_example_1, substitutions=(VIT_BASE,)
    ),
    "v1:example-2-supervised-clustering-per-class": BlockCase(check_v1_example_2),
    "v1:example-3-custom-feature-layer": BlockCase(
        check_v1_example_3, earlier_imports=("CurriculumLearning", "PretrainedModelExtractor")
    ),
    "v1:example-4-temperature-and-strategy-effects": BlockCase(
        check_v1_example_4, context=context_fitted, notes="uses the fitted `curriculum`"
    ),
    "v2:quick-start": BlockCase(check_v2_quick_start, substitutions=(IMAGENET,)),
    "v2:curriculumlearning": BlockCase(
        check_v2_class_listing,
        context=context_v2_class_listing,
        earlier_imports=("CurriculumLearning",),
        notes="API listing",
    ),
    "v2:key-methods": BlockCase(
        check_v2_method_listing, context=context_v2_method_listing, notes="method listing"
    ),
    "v2:create-curriculum-learning-with-dino": BlockCase(
        check_v2_dino_listing,
        context=context_v2_dino_listing,
        earlier_imports=("create_curriculum_learning_with_dino",),
        notes="API listing",
    ),
    "v2:example-audio-or-text": BlockCase(
        check_v2_audio_or_text,
        context=context_v2_audio_or_text,
        earlier_imports=("create_curriculum_learning",),
    ),
    "v2:automatic-sampling": BlockCase(
        check_v2_automatic_sampling,
        context=context_v2_automatic_sampling,
        notes="fragment: `curriculum`, `current_iter`",
    ),
}


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_every_python_block_has_a_case() -> None:
    keys = [block.key for block in python_blocks()]
    assert len(keys) == len(set(keys)), f"two blocks share a heading: {keys}"
    assert sorted(keys) == sorted(CASES), (
        f"README blocks without a case: {sorted(set(keys) - set(CASES))}; "
        f"cases without a block: {sorted(set(CASES) - set(keys))}"
    )


def test_other_blocks_are_not_python() -> None:
    others = [block for block in all_blocks() if block.language != "python"]
    assert {block.language for block in others} <= NON_PYTHON_LANGUAGES
    assert all(not block.source.lstrip().startswith(("import ", "from ")) for block in others)
    assert sum(block.language == "bash" for block in others) == 2  # the pip installs


def test_extract_code_blocks_reads_language_heading_and_line(tmp_path: Path) -> None:
    readme = tmp_path / "seed-readme-v9.md"
    readme.write_text("# Top\n\n## Some Section!\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n")
    blocks = extract_code_blocks(readme)
    assert [(b.language, b.key, b.line, b.source) for b in blocks] == [
        ("python", "v9:some-section", 5, "x = 1\n"),
        ("bash", "v9:some-section", 9, "ls\n"),
    ]


def test_substitution_must_match_exactly_once() -> None:
    assert substitute("a(b)", (("a(", "c("),), "k") == "c(b)"
    with pytest.raises(AssertionError, match="occurs 0 times"):
        substitute("a(b)", (("zzz", "y"),), "k")


@pytest.mark.parametrize("block", python_blocks(), ids=lambda block: block.key)
def test_readme_block_runs(
    block: CodeBlock,
    readme_names: dict[str, Any],
    fitted_curriculum: tuple[Any, Any],
    dino_weights_dir: Path,
) -> None:
    case = CASES[block.key]
    ctx: dict[str, Any] = {
        "names": readme_names,
        "fitted": fitted_curriculum,
        "dino_weights_dir": dino_weights_dir,
    }
    namespace = dict(readme_names)
    namespace.update({name: getattr(cl, name) for name in case.earlier_imports})
    if case.context is not None:
        namespace.update(case.context(ctx))
    source = substitute(block.source, case.substitutions, block.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny data: capped k ranges, etc.
        run_block(source, namespace, f"{block.readme}:{block.line}")
    case.check(namespace, ctx)
