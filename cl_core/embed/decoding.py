"""The light CPU decode path of image files: uint8 in the DataLoader workers, float on the device.

:func:`load_uint8` decodes in the workers with PIL (reduced-size JPEG decoding, ``Image.draft``, when the
target is smaller than the image), resizes and crops in uint8; :func:`normalize_uint8` converts and
normalises on the compute device. The batched (GPU) path is :mod:`cl_core.embed.batch_decoding`.

torch, torchvision and PIL are imported at module level: this is a torch-heavy module.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from cl_core.embed.transform import EvalTransform

# ---------------------------------------------------------------------------------------------
# CPU / PIL path


def as_bytes(blob: Any) -> bytes | bytearray | memoryview:
    """The bytes of an encoded file given as bytes, a uint8 array or a 1-D uint8 tensor."""
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


def as_uint8_tensor(blob: Any) -> torch.Tensor:
    """An encoded file as a 1-D uint8 tensor (what torchvision's decoders take)."""
    if isinstance(blob, torch.Tensor):
        return blob
    data = np.frombuffer(as_bytes(blob), dtype=np.uint8)
    return torch.from_numpy(data.copy())


def crop_or_pad(image: torch.Tensor, size: tuple[int, int], fill: Sequence[int]) -> torch.Tensor:
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
    return Image.open(io.BytesIO(bytes(as_bytes(source))))


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
        rgb = rgb.resize((new_w, new_h), transform.pil_interpolation)
    array = np.asarray(rgb, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
    return crop_or_pad(tensor, transform.size, transform.fill).contiguous()


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
