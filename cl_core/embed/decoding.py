"""Image decoding for the embedding stage: bytes in the workers, decode + eval transform on a device.

Two paths reproduce a model's timm eval transform (shorter side to ``size / crop_pct``, centre crop,
mean/std; ``crop_mode`` ``squash`` and ``border`` too):

- :func:`decode_batch` takes a batch of *encoded* files (JPEG bytes as 1-D uint8 tensors or ``bytes``)
  and decodes them batched with ``torchvision.io.decode_jpeg`` on the compute device (nvJPEG on CUDA,
  libjpeg-turbo on CPU), resizes with antialiasing, crops and normalises there. A file the fast
  decoder cannot take (PNG and other formats, CMYK / grayscale / progressive / 12-bit JPEG, an
  uncommon chroma sampling, a missing end-of-image marker, a decode error) is decoded per file by
  PIL instead (its position is listed in ``fallback``); a file nothing can decode is listed in
  ``failed`` with the reason and its row is zeros. One bad file never fails the batch.
- :func:`load_uint8` is the light CPU path for DataLoader workers: PIL reduced-size JPEG decoding
  (``Image.draft``) when the target is smaller than the image, resize and crop in uint8; the
  conversion to float and the normalisation run on the compute device (:func:`normalize_uint8`).

:class:`EncodedFiles` is a map-style dataset of file bytes with :func:`collate_encoded`, which keeps
the variable-length byte tensors as a list; nothing in this module depends on the folder layout, so
other containers of encoded images (WebDataset tars, parquet columns) can feed :func:`decode_batch`.

torch, torchvision and PIL are imported at module level: this is a torch-heavy module.
"""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchvision.io
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

__all__ = [
    "DECODERS",
    "INTERPOLATIONS",
    "DecodedBatch",
    "EncodedFiles",
    "EvalTransform",
    "collate_encoded",
    "decode_batch",
    "gpu_decode_available",
    "jpeg_fast_path_reason",
    "load_uint8",
    "normalize_uint8",
]

DECODERS = ("auto", "cpu", "gpu")
"""Values of ``decoder``: ``gpu`` = nvJPEG on the CUDA device, ``cpu`` = libjpeg-turbo on the CPU."""

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


@dataclass(frozen=True)
class DecodedBatch:
    """Result of :func:`decode_batch`.

    Attributes
    ----------
    images : torch.Tensor
        (B, 3, H, W) normalised images on the requested device and dtype; rows of failed positions
        are zeros.
    failed : dict of int to str
        Position -> reason for files nothing could decode.
    fallback : list of int
        Positions decoded on the CPU by PIL (the fast decoder could not take them).
    decoder : str
        The fast decoder used: ``"gpu"`` (nvJPEG) or ``"cpu"`` (libjpeg-turbo via torchvision).
    """

    images: torch.Tensor
    failed: dict[int, str] = field(default_factory=dict)
    fallback: list[int] = field(default_factory=list)
    decoder: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4:
            raise ValueError("images must be a (B, 3, H, W) tensor")
        if self.decoder not in ("cpu", "gpu"):
            raise ValueError(f"decoder={self.decoder!r} must be 'cpu' or 'gpu'")


# ---------------------------------------------------------------------------------------------
# JPEG header screening: which files the fast decoder takes


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# Luma sampling factors (h, v) with chroma 1x1: 4:4:4, 4:2:2, 4:4:0, 4:2:0, 4:1:1 (horizontal).
_FAST_SAMPLING = {(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)}


def jpeg_fast_path_reason(blob: bytes | bytearray | memoryview) -> str | None:
    """Why the fast (nvJPEG / libjpeg-turbo) path should not take ``blob``; None if it can.

    Reads the JPEG markers up to the frame header: the fast path takes 8-bit baseline or extended
    sequential, 3-component YCbCr JPEGs with a common chroma sampling and an end-of-image marker
    near the end of the file. Everything else (other formats, progressive, grayscale, CMYK / Adobe
    RGB, 12-bit, arithmetic coding, a truncated file) goes to PIL.
    """
    data = memoryview(blob)
    n = len(data)
    if n == 0:
        return "empty file (0 bytes)"
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return "not a JPEG"
    tail = bytes(data[max(0, n - 4096) :])
    if b"\xff\xd9" not in tail:
        return "no JPEG end-of-image marker (truncated?)"
    pos = 2
    adobe_transform: int | None = None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return "malformed JPEG marker stream"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > n:
            return "malformed JPEG segment length"
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xEE and bytes(segment[:5]) == b"Adobe" and len(segment) >= 12:
            adobe_transform = segment[11]
        if marker in _SOF_MARKERS:
            if marker == 0xC2 or marker == 0xC6 or marker == 0xCA or marker == 0xCE:
                return "progressive JPEG"
            if marker not in (0xC0, 0xC1):
                return "lossless, hierarchical or arithmetic-coded JPEG"
            if len(segment) < 6:
                return "malformed JPEG frame header"
            precision, components = segment[0], segment[5]
            if precision != 8:
                return f"{precision}-bit JPEG"
            if components == 1:
                return "grayscale JPEG"
            if components == 4:
                return "CMYK/YCCK JPEG"
            if components != 3 or len(segment) < 6 + 3 * components:
                return f"JPEG with {components} components"
            if adobe_transform == 0:
                return "RGB-coded (Adobe transform 0) JPEG"
            factors = [
                (segment[6 + 3 * c + 1] >> 4, segment[6 + 3 * c + 1] & 0x0F)
                for c in range(components)
            ]
            if factors[1] != (1, 1) or factors[2] != (1, 1) or factors[0] not in _FAST_SAMPLING:
                return f"uncommon chroma sampling {factors}"
            return None
        if marker == 0xDA:  # start of scan before a frame header
            return "malformed JPEG (scan before frame header)"
        pos += 2 + length
    return "no JPEG frame header"


# ---------------------------------------------------------------------------------------------
# CPU / PIL path


def _as_bytes(blob: Any) -> bytes | bytearray | memoryview:
    if isinstance(blob, torch.Tensor):
        if blob.dtype != torch.uint8 or blob.dim() != 1:
            raise ValueError(
                f"an encoded file must be a 1-D uint8 tensor, got dtype {blob.dtype} and shape "
                f"{tuple(blob.shape)}; read it with EncodedFiles or torch.frombuffer(data, "
                f"dtype=torch.uint8)"
            )
        return blob.contiguous().numpy().data
    if isinstance(blob, np.ndarray):
        return np.ascontiguousarray(blob, dtype=np.uint8).reshape(-1).data
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return blob
    raise TypeError(
        f"an encoded file must be bytes or a 1-D uint8 tensor, got {type(blob).__name__}"
    )


def _as_uint8_tensor(blob: Any) -> torch.Tensor:
    if isinstance(blob, torch.Tensor):
        return blob
    data = np.frombuffer(_as_bytes(blob), dtype=np.uint8)
    return torch.from_numpy(data.copy())


def _crop_or_pad(image: torch.Tensor, size: tuple[int, int], fill: Sequence[int]) -> torch.Tensor:
    """torchvision / timm centre crop (padding with ``fill`` where the image is smaller)."""
    crop_h, crop_w = size
    height, width = image.shape[-2:]
    if crop_w > width or crop_h > height:
        pad_l = (crop_w - width) // 2 if crop_w > width else 0
        pad_t = (crop_h - height) // 2 if crop_h > height else 0
        pad_r = (crop_w - width + 1) // 2 if crop_w > width else 0
        pad_b = (crop_h - height + 1) // 2 if crop_h > height else 0
        canvas = torch.empty(
            (image.shape[0], height + pad_t + pad_b, width + pad_l + pad_r),
            dtype=image.dtype,
            device=image.device,
        )
        canvas[:] = torch.tensor(list(fill), dtype=image.dtype, device=image.device).view(-1, 1, 1)
        canvas[:, pad_t : pad_t + height, pad_l : pad_l + width] = image
        image = canvas
        height, width = image.shape[-2:]
    top = round((height - crop_h) / 2.0)
    left = round((width - crop_w) / 2.0)
    return image[:, top : top + crop_h, left : left + crop_w]


def _open_image(source: Any) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        return Image.open(source)
    return Image.open(io.BytesIO(bytes(_as_bytes(source))))


def load_uint8(path_or_bytes: Any, transform: EvalTransform) -> torch.Tensor:
    """Decode, resize and crop one image on the CPU with PIL: the light worker path.

    JPEGs larger than the resize target are decoded at reduced size (``Image.draft``: the DCT
    scales 1/2, 1/4, 1/8, never below the target), then converted to RGB, resized with the
    transform's filter and centre-cropped, all in uint8 (4x less to move than float).

    Parameters
    ----------
    path_or_bytes : str, os.PathLike, bytes or 1-D uint8 tensor
        The image file or its contents.
    transform : EvalTransform
        The model's eval transform.

    Returns
    -------
    torch.Tensor
        uint8 (3, H, W) with (H, W) = ``transform.size``; normalise with :func:`normalize_uint8`.

    Raises
    ------
    OSError, ValueError, PIL.UnidentifiedImageError
        When the file cannot be read or decoded (a truncated or non-image file).
    """
    if not isinstance(transform, EvalTransform):
        raise TypeError(
            f"transform={transform!r} must be an EvalTransform; build one with "
            f"EvalTransform.from_data_config(timm.data.resolve_data_config(model=model))"
        )
    with _open_image(path_or_bytes) as image:
        width, height = image.size
        new_h, new_w = transform.resized_size(height, width)
        if image.format == "JPEG" and new_w < width and new_h < height:
            image.draft(None, (new_w, new_h))
        rgb = image.convert("RGB")
    if rgb.size != (new_w, new_h):
        rgb = rgb.resize((new_w, new_h), _PIL_INTERPOLATION[transform.interpolation])
    array = np.asarray(rgb, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
    return _crop_or_pad(tensor, transform.size, transform.fill).contiguous()


def normalize_uint8(
    batch: torch.Tensor,
    transform: EvalTransform,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 images -> normalised float images on ``device``: ``(x / 255 - mean) / std``.

    Parameters
    ----------
    batch : torch.Tensor
        uint8 (B, 3, H, W) or (3, H, W); moved to ``device`` first (non-blocking when pinned).
    transform : EvalTransform
        Gives mean and std.
    device : torch.device or str
        Where the float images live (the model's device).
    dtype : torch.dtype
        Floating output dtype (float32, float16, bfloat16); the arithmetic runs in float32.
    """
    if (
        not isinstance(batch, torch.Tensor)
        or batch.dtype != torch.uint8
        or batch.dim()
        not in (
            3,
            4,
        )
    ):
        got = (
            f"{batch.dtype} {tuple(batch.shape)}"
            if isinstance(batch, torch.Tensor)
            else type(batch).__name__
        )
        raise ValueError(
            f"batch must be a uint8 tensor (B, 3, H, W) or (3, H, W), got {got}; "
            f"build it with load_uint8"
        )
    if batch.shape[-3] != 3:
        raise ValueError(f"batch has {batch.shape[-3]} channels, expected 3 (RGB)")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype!r} must be a floating torch dtype such as torch.float32")
    device = torch.device(device)
    x = batch.to(device, non_blocking=True).to(torch.float32)
    std = torch.tensor(transform.std, dtype=torch.float32, device=device).view(-1, 1, 1)
    mean = torch.tensor(transform.mean, dtype=torch.float32, device=device).view(-1, 1, 1)
    x = x.mul_(1.0 / (255.0 * std)).sub_(mean / std)
    return x.to(dtype)


# ---------------------------------------------------------------------------------------------
# Batched decode


_PROBE_JPEG: bytes | None = None


def _probe_jpeg() -> bytes:
    global _PROBE_JPEG
    if _PROBE_JPEG is None:
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 100, 50)).save(buffer, format="JPEG")
        _PROBE_JPEG = buffer.getvalue()
    return _PROBE_JPEG


def _decode_jpegs(
    tensors: list[torch.Tensor], device: torch.device
) -> list[torch.Tensor | BaseException]:
    """torchvision's decode_jpeg in RGB on ``device``: batched, one retry per file on error."""
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its decoders in favour of torchcodec; the API is unchanged.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # libjpeg warnings on slightly corrupt data
        if device.type == "cuda":
            try:
                return list(
                    torchvision.io.decode_jpeg(
                        tensors, mode=torchvision.io.ImageReadMode.RGB, device=device
                    )
                )
            except Exception:  # one bad file fails the whole nvJPEG batch: retry per file
                pass
        results: list[torch.Tensor | BaseException] = []
        for tensor in tensors:
            try:
                results.append(
                    torchvision.io.decode_jpeg(
                        tensor, mode=torchvision.io.ImageReadMode.RGB, device=device
                    )
                )
            except Exception as error:
                results.append(error)
        return results


@functools.lru_cache(maxsize=8)
def gpu_decode_available(device: str = "cuda") -> bool:
    """Whether torchvision's nvJPEG decoder works on ``device`` (decodes a 16x16 probe JPEG)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        return False
    if dev.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            out = torchvision.io.decode_jpeg(
                [torch.frombuffer(bytearray(_probe_jpeg()), dtype=torch.uint8)],
                mode=torchvision.io.ImageReadMode.RGB,
                device=dev,
            )
        return bool(out[0].shape == (3, 16, 16) and out[0].device.type == "cuda")
    except Exception:
        return False


def _resolve_decoder(decoder: str, device: torch.device) -> str:
    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r} is not one of {list(DECODERS)}")
    if decoder == "gpu":
        if device.type != "cuda":
            raise ValueError(
                f"decoder='gpu' needs a CUDA device, got device={str(device)!r}; pass "
                f"decoder='cpu' or 'auto', or device='cuda'"
            )
        if not gpu_decode_available(str(device)):
            raise ValueError(
                f"decoder='gpu': torchvision's nvJPEG decoder does not work on {device} (torchvision "
                f"built without CUDA image ops?); pass decoder='cpu' or 'auto'"
            )
        return "gpu"
    if decoder == "auto" and device.type == "cuda" and gpu_decode_available(str(device)):
        return "gpu"
    return "cpu"


def _resize_crop(image: torch.Tensor, transform: EvalTransform) -> torch.Tensor:
    """uint8 (3, h, w) -> uint8 (3, H, W): the transform's resize (antialiased) and crop."""
    height, width = image.shape[-2:]
    new_h, new_w = transform.resized_size(height, width)
    if (new_h, new_w) != (height, width):
        image = TF.resize(
            image,
            [new_h, new_w],
            interpolation=_TENSOR_INTERPOLATION[transform.interpolation],
            antialias=True,
        )
    return _crop_or_pad(image, transform.size, transform.fill)


def decode_batch(
    blobs: Sequence[Any],
    transform: EvalTransform,
    device: torch.device | str = "cpu",
    decoder: str = "auto",
    *,
    dtype: torch.dtype = torch.float32,
) -> DecodedBatch:
    """Decode a batch of encoded image files and apply the eval transform on ``device``.

    Parameters
    ----------
    blobs : sequence of bytes or 1-D uint8 tensors
        Encoded files (any format PIL reads; JPEGs take the fast path).
    transform : EvalTransform
        The model's eval transform.
    device : torch.device or str
        Where the output lives and the resize / crop / normalisation run.
    decoder : {"auto", "cpu", "gpu"}
        ``gpu``: nvJPEG on ``device`` (must be CUDA); ``cpu``: torchvision's libjpeg-turbo decoder
        on the CPU, the uint8 images then moved to ``device``; ``auto``: ``gpu`` when ``device`` is
        CUDA and the decoder works there, else ``cpu``.
    dtype : torch.dtype
        Floating dtype of ``images``; ``torch.uint8`` returns the resized and cropped pixels
        without normalisation (for DataLoader workers: 4x less to move, normalise later on the
        compute device with :func:`normalize_uint8`).

    Returns
    -------
    DecodedBatch
        ``images`` (B, 3, H, W) in ``dtype``; ``failed`` position -> reason (zero rows); ``fallback`` positions
        decoded by PIL; ``decoder`` the fast decoder used.
    """
    if not isinstance(transform, EvalTransform):
        raise TypeError(
            f"transform={transform!r} must be an EvalTransform; build one with "
            f"EvalTransform.from_data_config(timm.data.resolve_data_config(model=model))"
        )
    if isinstance(blobs, (bytes, bytearray, torch.Tensor)):
        raise TypeError("blobs must be a list of encoded files, not one file; wrap it in a list")
    if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point or dtype == torch.uint8):
        raise ValueError(
            f"dtype={dtype!r} must be a floating torch dtype (torch.float32, torch.bfloat16, ...) "
            f"or torch.uint8 for un-normalised pixels"
        )
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    chosen = _resolve_decoder(decoder, device)
    decode_device = device if chosen == "gpu" else torch.device("cpu")

    count = len(blobs)
    height, width = transform.size
    out = torch.zeros((count, 3, height, width), dtype=torch.uint8, device=device)
    failed: dict[int, str] = {}
    fallback: list[int] = []
    fast: list[int] = []
    views: list[bytes | bytearray | memoryview] = []
    for position, blob in enumerate(blobs):
        try:
            view = _as_bytes(blob)
        except (TypeError, ValueError) as error:
            views.append(b"")
            failed[position] = str(error)
            continue
        views.append(view)
        if len(view) == 0:
            failed[position] = "empty file (0 bytes)"
        elif jpeg_fast_path_reason(view) is None:
            fast.append(position)
        else:
            fallback.append(position)

    if fast:
        decoded = _decode_jpegs([_as_uint8_tensor(blobs[p]) for p in fast], decode_device)
        for position, image in zip(fast, decoded, strict=True):
            if isinstance(image, BaseException) or image.dim() != 3 or image.shape[0] != 3:
                fallback.append(position)
                continue
            out[position] = _resize_crop(image.to(device, non_blocking=True), transform)

    for position in sorted(fallback):
        try:
            image = load_uint8(views[position], transform)
        except Image.UnidentifiedImageError:
            failed[position] = "not an image file (PIL cannot identify its format)"
            continue
        except Exception as error:
            failed[position] = f"{type(error).__name__}: {error}"
            continue
        out[position] = image.to(device, non_blocking=True)
    fallback = sorted(p for p in set(fallback) if p not in failed)

    if dtype == torch.uint8:
        images = out  # failed rows are already zeros
    else:
        images = normalize_uint8(out, transform, device, dtype)
        if failed:
            images[sorted(failed)] = 0
    return DecodedBatch(images=images, failed=failed, fallback=fallback, decoder=chosen)


# ---------------------------------------------------------------------------------------------
# Encoded-file dataset


class EncodedFiles(torch.utils.data.Dataset):
    """Map-style dataset of encoded files: item ``i`` is (uint8 1-D tensor of the bytes, label).

    Workers only read bytes; :func:`decode_batch` decodes a collated batch on the compute device.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The files, in dataset order.
    labels : sequence of int, optional
        One label per path; -1 for every sample when None.
    """

    def __init__(
        self, paths: Sequence[str | os.PathLike[str]], labels: Sequence[int] | None = None
    ):
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError("paths must be a sequence of file paths, not one path")
        self.paths = [os.fspath(p) for p in paths]
        if labels is None:
            self.labels = [-1] * len(self.paths)
        else:
            self.labels = [int(label) for label in labels]
            if len(self.labels) != len(self.paths):
                raise ValueError(
                    f"labels has {len(self.labels)} entries for {len(self.paths)} paths; pass one "
                    f"label per path or labels=None"
                )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        data = np.fromfile(path, dtype=np.uint8)
        return torch.from_numpy(data), self.labels[index]


def collate_encoded(
    batch: Sequence[tuple[torch.Tensor, int]],
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """DataLoader ``collate_fn`` for :class:`EncodedFiles`: (list of byte tensors, int64 labels)."""
    blobs = [item[0] for item in batch]
    labels = torch.tensor([int(item[1]) for item in batch], dtype=torch.int64)
    return blobs, labels
