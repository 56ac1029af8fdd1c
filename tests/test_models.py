"""Tests of cl_core.embed.models / weights: model ids, local weights, bundled offline models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from cl_core.embed.datasets import image_transform
from cl_core.embed.models import MODEL_ALIASES, canonical_model_name, clear_model_cache, load_model

DAISY = 985  # ImageNet class of the daisy in scikit-learn's flower.jpg
TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reference_aliases_name_timm_pretrained_weights() -> None:
    pretrained = set(timm.list_pretrained())
    for alias, name in MODEL_ALIASES.items():
        assert canonical_model_name(alias) == name
        assert name in pretrained, f"{alias} -> {name} is not a timm pretrained tag"
    assert canonical_model_name("dino_vits16") == "vit_small_patch16_224.dino"


def test_unknown_model_id_lists_close_matches() -> None:
    with pytest.raises(
        ValueError, match=r"unknown model 'vit_smal_patch16_224'.*vit_small_patch16"
    ):
        load_model("vit_smal_patch16_224")
    with pytest.raises(ValueError, match=r"no pretrained tag 'dinov9'; valid: .*\.dino"):
        load_model("vit_small_patch16_224.dinov9")
    with pytest.raises(TypeError, match="model must be a model id"):
        load_model(42)


def test_local_safetensors_weights_load_into_dino_architecture(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval()
    path = tmp_path / "dino_vits16.safetensors"
    save_file(source.state_dict(), str(path))

    loaded = load_model("dino_vits16", weights=path)

    assert loaded.model_id == "vit_small_patch16_224.dino"
    assert loaded.source == "file"
    assert loaded.weights_sha256 == _sha256(path)
    assert loaded.data_config is not None and loaded.data_config["input_size"] == (3, 224, 224)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), source(x))


def test_wrapped_torch_checkpoint_is_unwrapped_and_classifier_dropped(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT).eval()
    # A DINO-style training checkpoint: nested under "teacher", "backbone." prefixes, a head.
    state = {f"backbone.{key}": value for key, value in source.state_dict().items()}
    path = tmp_path / "checkpoint.pth"
    torch.save({"teacher": state, "epoch": 100}, path)

    loaded = _load_tiny_vit(path)

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(
            loaded.module(x), source.forward_head(source.forward_features(x), pre_logits=True)
        )


def _load_tiny_vit(path: Path):
    return load_model("vit_tiny_patch16_224", weights=path, model_kwargs=TINY_VIT)


def test_weights_of_another_architecture_name_the_mismatch(tmp_path: Path) -> None:
    other = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    path = tmp_path / "resnet.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match=r"do not fit VisionTransformer: \d+ missing keys"):
        _load_tiny_vit(path)


def test_weights_file_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"weight": torch.zeros(1), "config": Path("x")}, path)  # a pickled object
    with pytest.raises(ValueError, match="weights_only=True"):
        load_model("vit_tiny_patch16_224", weights=path)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        load_model("vit_tiny_patch16_224", weights=tmp_path / "missing.safetensors")


def test_offline_without_weights_explains_how_to_supply_a_file(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match=r"hubs are unreachable.*weights=PATH"):
        load_model("vit_tiny_patch16_224")


def test_models_are_cached_per_process() -> None:
    first = load_model("resnet10t", pretrained=False)
    assert load_model("resnet10t", pretrained=False) is first
    clear_model_cache()
    assert load_model("resnet10t", pretrained=False) is not first


def _flower_top5(loaded) -> list[int]:
    from PIL import Image
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image("flower.jpg"))
    x = image_transform(loaded.data_config)(image)[None]
    with torch.inference_mode():
        logits = loaded.module(x)
    return logits[0].topk(5).indices.tolist()


def test_bundled_efficientnet_lite0_recognises_the_daisy() -> None:
    loaded = load_model("tf_efficientnet_lite0", classifier=True)
    assert loaded.source == "bundled"
    assert loaded.data_config["mean"] == (0.5, 0.5, 0.5)  # the model's own preprocessing
    top5 = _flower_top5(loaded)
    assert top5[0] == DAISY, f"top-5 ImageNet classes {top5}; real weights put daisy first"

    torch.manual_seed(0)
    random = load_model("tf_efficientnet_lite0", classifier=True, pretrained=False)
    assert DAISY not in _flower_top5(random)  # the assertion above needs the real weights


def test_bundled_efficientnet_default_is_the_pooled_embedding() -> None:
    loaded = load_model("tf_efficientnet_lite0")
    with torch.inference_mode():
        features = loaded.module(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, 1280)
    assert np.isfinite(features.numpy()).all()


def test_callables_are_accepted_as_models() -> None:
    loaded = load_model(lambda x: x.flatten(1))
    assert loaded.model_id.startswith("callable:")
    assert loaded.weights_sha256 is None
