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
- :func:`cl_core.embed.decoding.load_uint8` is the light CPU path for DataLoader workers: PIL reduced-size JPEG decoding
  (``Image.draft``) when the target is smaller than the image, resize and crop in uint8; the
  conversion to float and the normalisation run on the compute device (:func:`cl_core.embed.decoding.normalize_uint8`).

:class:`EncodedFiles` is a map-style dataset of file bytes with :func:`collate_encoded`, which keeps
the variable-length byte tensors as a list; nothing in this module depends on the folder layout, so
other containers of encoded images (WebDataset tars, parquet columns) can feed :func:`decode_batch`.

torch, torchvision and PIL are imported at module level: this is a torch-heavy module.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchvision.io
import torchvision.transforms.v2.functional as TF
from PIL import Image

from cl_core.embed.config import DECODERS
from cl_core.embed.decoding import (
    as_bytes,
    as_uint8_tensor,
    crop_or_pad,
    load_uint8,
    normalize_uint8,
)
from cl_core.embed.transform import EvalTransform


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
# Batched decode


_PROBE_JPEG: bytes | None = None


def _probe_jpeg() -> bytes:
    global _PROBE_JPEG
    if _PROBE_JPEG is None:
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 100, 50)).save(buffer, format="JPEG")
        _PROBE_JPEG = buffer.getvalue()
    return _PROBE_JPEG


def decode_jpegs(
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


def choose_decoder(decoder: str, device: Any, *, argument: str = "decoder") -> str:
    """The JPEG decoder for images bound for ``device``: ``"gpu"`` or ``"cpu"``.

    ``auto`` -> ``gpu`` when ``device`` is CUDA and torchvision's nvJPEG decoder works there,
    else ``cpu``. ``argument`` names the caller's parameter in the error messages.

    Raises
    ------
    ValueError
        ``decoder`` is not one of ``DECODERS``, or it is ``gpu`` where the GPU decoder cannot run.
    """
    if decoder not in DECODERS:
        raise ValueError(f"{argument}={decoder!r} is not one of {list(DECODERS)}")
    device = torch.device(device)
    if decoder == "gpu":
        if device.type != "cuda":
            raise ValueError(
                f"{argument}='gpu' needs a CUDA device, got device={str(device)!r}; pass "
                f"{argument}='cpu' or 'auto', or put the model on a CUDA device"
            )
        if not gpu_decode_available(str(device)):
            raise ValueError(
                f"{argument}='gpu': torchvision's nvJPEG decoder does not work on {device} "
                f"(torchvision built without CUDA image ops?); pass {argument}='cpu' or 'auto'"
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
            interpolation=transform.tensor_interpolation,
            antialias=True,
        )
    return crop_or_pad(image, transform.size, transform.fill)


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
    chosen = choose_decoder(decoder, device)
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
            view = as_bytes(blob)
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
        decoded = decode_jpegs([as_uint8_tensor(blobs[p]) for p in fast], decode_device)
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
