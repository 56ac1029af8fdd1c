"""A model's timm eval transform as data: resize, crop and normalisation parameters.

:class:`EvalTransform` is what both decode paths (:mod:`cl_core.embed.decoding`,
:mod:`cl_core.embed.batch_decoding`) reproduce on tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from torchvision.transforms import InterpolationMode

CROP_MODES = ("center", "squash", "border")

_PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
# Tensors resize with nearest / bilinear / bicubic only; the PIL-only filters map to the nearest
# antialiased tensor filter (features stay within the 0.99 cosine contract; exact on the PIL path).
_TENSOR_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "box": InterpolationMode.BILINEAR,
    "hamming": InterpolationMode.BILINEAR,
    "lanczos": InterpolationMode.BICUBIC,
}
INTERPOLATIONS = tuple(_PIL_INTERPOLATION)
"""Interpolation names accepted (timm's names)."""

_DEFAULT_CROP_PCT = 0.875


def _pair(value: Any, name: str) -> tuple[int, int]:
    """(H, W) from an int, an (H, W) pair or timm's (C, H, W) ``input_size``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 3):
        height, width = value[-2], value[-1]
        if all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (height, width)
        ):
            return int(height), int(width)
    raise ValueError(
        f"{name}={value!r} is not an image size; pass an int, (height, width) or timm's "
        f"(channels, height, width) input_size"
    )


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    """Three finite floats (per-channel mean or std); a single float is broadcast."""
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        value = (value, value, value)
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}={value!r} must be three finite numbers (one per RGB channel)")
    return (values[0], values[1], values[2])


@dataclass(frozen=True)
class EvalTransform:
    """A model's eval preprocessing (timm's ``transforms_imagenet_eval``) as plain numbers.

    Parameters
    ----------
    size : tuple of int
        Output (height, width) after the crop.
    crop_pct : float
        Fraction of the resized image kept by the crop: the image is first resized so that its
        shorter side is ``size / crop_pct`` (``center``), in (0, 2].
    crop_mode : {"center", "squash", "border"}
        timm's crop modes: ``center`` keeps the aspect ratio and crops the centre, ``squash`` resizes
        both sides to ``size / crop_pct`` then crops, ``border`` fits the longer side and pads with
        the mean colour.
    interpolation : str
        One of :data:`INTERPOLATIONS` (timm's names).
    mean, std : tuple of float
        Per-channel normalisation of the [0, 1] pixel values; std must be positive.
    """

    size: tuple[int, int] = (224, 224)
    crop_pct: float = _DEFAULT_CROP_PCT
    crop_mode: str = "center"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        size = _pair(self.size, "size")
        if min(size) < 1:
            raise ValueError(f"size={self.size!r} must be positive; pass e.g. (224, 224)")
        object.__setattr__(self, "size", size)
        crop_pct = self.crop_pct
        if (
            isinstance(crop_pct, bool)
            or not isinstance(crop_pct, (int, float, np.floating))
            or not 0 < float(crop_pct) <= 2
        ):
            raise ValueError(
                f"crop_pct={crop_pct!r} must be a number in (0, 2]; timm's default is "
                f"{_DEFAULT_CROP_PCT}"
            )
        object.__setattr__(self, "crop_pct", float(crop_pct))
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode={self.crop_mode!r} is not one of {list(CROP_MODES)}")
        if self.interpolation not in _PIL_INTERPOLATION:
            raise ValueError(
                f"interpolation={self.interpolation!r} is not one of {list(INTERPOLATIONS)}"
            )
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        std = _triple(self.std, "std")
        if min(std) <= 0:
            raise ValueError(f"std={self.std!r} must be positive per channel")
        object.__setattr__(self, "std", std)

    @classmethod
    def from_data_config(cls, data_config: Mapping[str, Any]) -> EvalTransform:
        """The transform of a timm data config (``timm.data.resolve_data_config`` output).

        Parameters
        ----------
        data_config : mapping
            Keys ``input_size`` (C, H, W), ``crop_pct``, ``crop_mode``, ``interpolation``, ``mean``,
            ``std``; missing keys take timm's defaults (``crop_pct`` 0.875, ``center``,
            ``bilinear``, ImageNet mean/std). ``interpolation="random"`` (a train-time setting)
            becomes ``bilinear``.
        """
        if not isinstance(data_config, Mapping):
            raise TypeError(
                f"data_config={data_config!r} must be a mapping such as "
                f"timm.data.resolve_data_config(model=model)"
            )
        if "input_size" not in data_config:
            raise ValueError(
                f"data_config has no 'input_size' (keys: {sorted(data_config)}); pass "
                f"timm.data.resolve_data_config(model=model)"
            )
        interpolation = data_config.get("interpolation") or "bilinear"
        if interpolation == "random":
            interpolation = "bilinear"
        return cls(
            size=_pair(data_config["input_size"], "data_config['input_size']"),
            crop_pct=data_config.get("crop_pct") or _DEFAULT_CROP_PCT,
            crop_mode=data_config.get("crop_mode") or "center",
            interpolation=interpolation,
            mean=data_config.get("mean", (0.485, 0.456, 0.406)),
            std=data_config.get("std", (0.229, 0.224, 0.225)),
        )

    @property
    def scale_size(self) -> tuple[int, int]:
        """(H, W) the image is resized towards before cropping: ``floor(size / crop_pct)``."""
        return (
            math.floor(self.size[0] / self.crop_pct),
            math.floor(self.size[1] / self.crop_pct),
        )

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """Size (H, W) of an image of ``height`` x ``width`` after the resize step (before the crop).

        Exactly torchvision's ``Resize(int)`` (square targets) or timm's ``ResizeKeepRatio``.
        """
        scale_h, scale_w = self.scale_size
        if self.crop_mode == "squash":
            return scale_h, scale_w
        if self.crop_mode == "center" and scale_h == scale_w:
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = scale_h, int(scale_h * long / short)
            return (new_long, new_short) if width <= height else (new_short, new_long)
        ratio_h, ratio_w = height / scale_h, width / scale_w
        longest = 1.0 if self.crop_mode == "border" else 0.0
        ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
        return round(height / ratio), round(width / ratio)

    @property
    def pil_interpolation(self) -> Image.Resampling:
        """PIL's resampling filter for :attr:`interpolation`."""
        return _PIL_INTERPOLATION[self.interpolation]

    @property
    def tensor_interpolation(self) -> InterpolationMode:
        """torchvision's tensor filter for :attr:`interpolation` (nearest antialiased one for the
        PIL-only filters)."""
        return _TENSOR_INTERPOLATION[self.interpolation]

    @property
    def fill(self) -> tuple[int, int, int]:
        """Padding colour (uint8): black, or the mean colour in ``border`` mode (as timm)."""
        if self.crop_mode == "border":
            return tuple(round(255 * m) for m in self.mean)  # type: ignore[return-value]
        return (0, 0, 0)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (for provenance)."""
        return {
            "size": list(self.size),
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }
