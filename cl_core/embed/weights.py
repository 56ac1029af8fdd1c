"""Weights files for the embedding stage's encoders: read, convert known layouts, load strictly, hash.

Only tensors are ever deserialised (``safetensors`` or ``torch.load(weights_only=True)``): a
weights file cannot run code. Mismatches name the missing and unexpected keys.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

# The bundled EfficientNet-Lite0 file uses the EfficientNet-PyTorch layout (``_blocks.<i>._*``);
# timm nests blocks per stage and names the layers after their role. Block 0 (depthwise-separable,
# no expansion) and the inverted-residual blocks name their layers differently.
_LITE0_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LITE0_DS_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LITE0_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_CONTAINER_KEYS = ("state_dict", "model", "teacher", "state_dict_ema", "model_ema")
_STRIPPED_PREFIXES = ("module.", "backbone.", "_orig_mod.")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``, no pickle code).

    Wrapping checkpoints (``{"state_dict": ...}``, ``{"model": ...}``, DINO's ``{"teacher": ...}``)
    are unwrapped and ``module.`` / ``backbone.`` prefixes stripped.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        loaded: Any = load_file(str(path), device="cpu")
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(
                f"weights={str(path)!r} could not be read as a torch state dict with "
                f"weights_only=True ({type(error).__name__}: {error}); save only tensors "
                f"(torch.save(model.state_dict(), path)) or convert it to .safetensors"
            ) from error
    while isinstance(loaded, Mapping):
        container = next((k for k in _CONTAINER_KEYS if isinstance(loaded.get(k), Mapping)), None)
        if container is None:
            break
        loaded = loaded[container]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ValueError(
            f"weights={str(path)!r} does not hold a state dict of tensors; save one with "
            f"torch.save(model.state_dict(), path)"
        )
    return {_strip_prefixes(k): v for k, v in loaded.items()}


def _strip_prefixes(key: str) -> str:
    for prefix in _STRIPPED_PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load ``state_dict`` into ``module`` strictly, converting known layouts first.

    The bundled EfficientNet-Lite0 layout is renamed to timm's; timm's own checkpoint filter for
    the architecture (original DINO / DINOv2 layouts, position-embedding resizing) is applied;
    classifier weights are dropped when the module has no classifier. Any other mismatch raises
    with the missing and unexpected keys.
    """
    state = dict(state_dict)
    if "_conv_stem.weight" in state:
        state = convert_efficientnet_lite_keys(state, module)
    filter_fn = getattr(sys.modules.get(type(module).__module__), "checkpoint_filter_fn", None)
    if callable(filter_fn):
        state = filter_fn(state, module)
    expected = module.state_dict()
    head = _classifier_prefix(module)
    if head and not any(k.startswith(head) for k in expected):
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"weights={source!r} do not fit {type(module).__name__}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}, {len(wrong_shape)} shape mismatches {wrong_shape[:5]}; pass the "
            f"weights file saved from the same architecture as model=..."
        )
    module.load_state_dict(state, strict=True)


def _classifier_prefix(module: nn.Module) -> str | None:
    cfg = getattr(module, "pretrained_cfg", None) or {}
    name = cfg.get("classifier") if isinstance(cfg, Mapping) else None
    if isinstance(name, str):
        return name + "."
    return None


def convert_efficientnet_lite_keys(
    state_dict: Mapping[str, torch.Tensor], module: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (``_blocks.<i>``) state dict to timm's per-stage layout.

    Parameters
    ----------
    state_dict : mapping
        Keys such as ``_blocks.3._expand_conv.weight`` (flat block index).
    module : nn.Module
        A timm EfficientNet whose ``blocks`` (stages of blocks) give the flat-to-nested mapping.
    """
    stages: Any = module.blocks
    stage_lengths = [len(stage) for stage in stages]
    flat_to_nested = [(s, j) for s, length in enumerate(stage_lengths) for j in range(length)]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] in _LITE0_TOP_LEVEL:
            renamed[".".join([_LITE0_TOP_LEVEL[parts[0]], *parts[1:]])] = value
            continue
        if parts[0] != "_blocks" or len(parts) < 4:
            renamed[key] = value
            continue
        flat = int(parts[1])
        if flat >= len(flat_to_nested):
            raise ValueError(
                f"state dict key {key!r} names block {flat} but the model has "
                f"{len(flat_to_nested)} blocks; the weights belong to another EfficientNet size"
            )
        stage, index = flat_to_nested[flat]
        table = _LITE0_DS_BLOCK if flat == 0 else _LITE0_IR_BLOCK
        layer = table.get(parts[2], parts[2])
        renamed[".".join(["blocks", str(stage), str(index), layer, *parts[3:]])] = value
    return renamed


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes) in key order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.view(torch.int16)
        digest.update(value.numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()
