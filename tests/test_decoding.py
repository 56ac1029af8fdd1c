"""cl_core.embed decoding: batched decode + eval transform vs timm's PIL transform, fallbacks, failures."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
import timm
import timm.data
import torch
from PIL import Image

from cl_core.embed.batch_decoding import (
    DecodedBatch,
    EncodedFiles,
    collate_encoded,
    decode_batch,
    jpeg_fast_path_reason,
)
from cl_core.embed.decoding import load_uint8, normalize_uint8
from cl_core.embed.transform import EvalTransform


def _image(rng: np.random.Generator, width: int, height: int, kind: str) -> Image.Image:
    """ImageNet-like variety: smooth gradients, blobs of colour with texture, or plain noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "gradient":
        base = np.stack(
            [x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1
        )
    else:
        coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
        base = np.asarray(
            Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
        )
        base = base + rng.normal(0, 12 if kind == "texture" else 40, size=base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def _encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    """A mixed batch: fast-path JPEGs, fallback formats, and two undecodable files."""
    rng = np.random.default_rng(7)
    out: dict[str, bytes] = {}
    sizes = [(500, 375), (375, 500), (300, 300), (480, 320), (333, 444), (420, 360)]
    for i, (w, h) in enumerate(sizes):
        out[f"rgb{i}"] = _encode(
            _image(rng, w, h, ("gradient", "texture", "noise")[i % 3]), quality=90
        )
    out["rgb422"] = _encode(_image(rng, 410, 310, "texture"), quality=90, subsampling=1)
    out["rgb444"] = _encode(_image(rng, 360, 460, "texture"), quality=90, subsampling=0)
    out["gray"] = _encode(_image(rng, 400, 300, "texture").convert("L"), quality=90)
    out["cmyk"] = _encode(_image(rng, 350, 450, "gradient").convert("CMYK"), quality=90)
    out["png"] = _encode(_image(rng, 320, 400, "texture"), fmt="PNG")
    out["progressive"] = _encode(_image(rng, 460, 340, "texture"), quality=90, progressive=True)
    out["large"] = _encode(_image(rng, 1200, 900, "gradient"), quality=90)  # draft path
    full = _encode(_image(rng, 400, 400, "texture"), quality=90)
    out["truncated"] = full[: len(full) // 2]
    out["empty"] = b""
    out["text"] = b"this is not an image\n" * 10
    return out


FALLBACK = {"gray", "cmyk", "png", "progressive"}
FAILED = {"truncated", "empty", "text"}


def _timm_reference(blob: bytes, data_config: dict) -> torch.Tensor:
    transform = timm.data.create_transform(**data_config)
    with Image.open(io.BytesIO(blob)) as image:
        return transform(image.convert("RGB"))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1).double(), b.flatten(1).double())


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet10t", pretrained=False, num_classes=0).eval()


def test_decode_batch_matches_timm_transform_pixels_and_features(files, model) -> None:
    data_config = timm.data.resolve_data_config(model=model)
    transform = EvalTransform.from_data_config(data_config)
    names = list(files)
    result = decode_batch([files[n] for n in names], transform, device="cpu")
    assert isinstance(result, DecodedBatch)
    assert result.decoder == "cpu"
    assert result.images.shape == (len(names), 3, *transform.size)
    assert result.images.dtype == torch.float32

    assert {names[p] for p in result.fallback} == FALLBACK
    assert set(result.failed) == {names.index(n) for n in FAILED}
    assert "empty" in result.failed[names.index("empty")]
    for position in result.failed:
        assert not result.images[position].any()

    good = [i for i, n in enumerate(names) if n not in FAILED]
    reference = torch.stack([_timm_reference(files[names[i]], data_config) for i in good])
    ours = result.images[good]
    pixel_cos = _cosine(ours, reference)
    assert pixel_cos.min() > 0.99, dict(
        zip([names[i] for i in good], pixel_cos.tolist(), strict=True)
    )
    with torch.no_grad():
        feature_cos = _cosine(model(ours), model(reference))
    assert feature_cos.min() > 0.99, dict(
        zip([names[i] for i in good], feature_cos.tolist(), strict=True)
    )


@pytest.mark.parametrize(
    "config",
    [
        {"input_size": (3, 224, 224), "crop_pct": 0.875, "interpolation": "bilinear"},
        {"input_size": (3, 160, 160), "crop_pct": 1.0, "interpolation": "bicubic"},
        {"input_size": (3, 128, 192), "crop_pct": 0.9, "interpolation": "bicubic"},
        {"input_size": (3, 96, 96), "crop_pct": 0.95, "crop_mode": "squash"},
        {
            "input_size": (3, 112, 112),
            "crop_pct": 1.0,
            "crop_mode": "border",
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
        },
    ],
)
def test_transform_variants_match_timm(files, config) -> None:
    data_config = {
        "mean": timm.data.IMAGENET_DEFAULT_MEAN,
        "std": timm.data.IMAGENET_DEFAULT_STD,
        "interpolation": "bicubic",
        "crop_mode": "center",
        **config,
    }
    transform = EvalTransform.from_data_config(data_config)
    names = ["rgb0", "rgb1", "png", "large"]
    result = decode_batch([files[n] for n in names], transform, device="cpu", decoder="cpu")
    reference = torch.stack([_timm_reference(files[n], data_config) for n in names])
    assert result.images.shape == reference.shape
    assert _cosine(result.images, reference).min() > 0.99
    # The light worker path: PIL draft + uint8 on the worker, normalisation on the device.
    uint8 = torch.stack([load_uint8(files[n], transform) for n in names])
    assert uint8.dtype == torch.uint8 and uint8.shape == reference.shape
    light = normalize_uint8(uint8, transform, "cpu", torch.float32)
    assert _cosine(light, reference).min() > 0.99


def test_resized_size_is_timms(files) -> None:
    for size, crop_pct in [(224, 0.875), (224, 0.95), (160, 1.0)]:
        transform = EvalTransform(size=(size, size), crop_pct=crop_pct)
        resize = timm.data.create_transform(input_size=size, crop_pct=crop_pct).transforms[0]
        for w, h in [(500, 375), (375, 500), (333, 333), (1001, 17)]:
            expected = resize(Image.new("RGB", (w, h))).size
            assert transform.resized_size(h, w) == (expected[1], expected[0])


def test_load_uint8_uses_draft_and_paths(files, tmp_path: Path, model) -> None:
    data_config = timm.data.resolve_data_config(model=model)
    transform = EvalTransform.from_data_config(data_config)
    path = tmp_path / "large.jpg"
    path.write_bytes(files["large"])
    from_path = load_uint8(path, transform)
    from_bytes = load_uint8(files["large"], transform)
    from_tensor = load_uint8(
        torch.frombuffer(bytearray(files["large"]), dtype=torch.uint8), transform
    )
    assert torch.equal(from_path, from_bytes) and torch.equal(from_path, from_tensor)
    reference = _timm_reference(files["large"], data_config)
    light = normalize_uint8(from_path.unsqueeze(0), transform, "cpu", torch.bfloat16)
    assert light.dtype == torch.bfloat16
    assert _cosine(light.float(), reference.unsqueeze(0)).item() > 0.99
    with pytest.raises(OSError):
        load_uint8(files["truncated"], transform)


def test_fast_path_screening(files) -> None:
    for name in ("rgb0", "rgb422", "rgb444", "large"):
        assert jpeg_fast_path_reason(files[name]) is None, name
    assert "grayscale" in jpeg_fast_path_reason(files["gray"])
    assert "CMYK" in jpeg_fast_path_reason(files["cmyk"])
    assert "progressive" in jpeg_fast_path_reason(files["progressive"])
    assert jpeg_fast_path_reason(files["png"]) == "not a JPEG"
    assert "end-of-image" in jpeg_fast_path_reason(files["truncated"])
    assert "empty" in jpeg_fast_path_reason(files["empty"])


def test_dtype_and_all_failed_batch(files) -> None:
    transform = EvalTransform(size=(64, 64))
    result = decode_batch([files["empty"], files["text"]], transform, "cpu", dtype=torch.float16)
    assert result.images.dtype == torch.float16 and result.images.shape == (2, 3, 64, 64)
    assert set(result.failed) == {0, 1} and result.fallback == []
    assert "not an image file" in result.failed[1]
    assert not result.images.any()


def test_uint8_output_normalises_to_the_float_output(files) -> None:
    transform = EvalTransform(size=(64, 80), interpolation="bilinear")
    blobs = [files["rgb0"], files["png"], files["empty"]]
    pixels = decode_batch(blobs, transform, "cpu", dtype=torch.uint8)
    assert pixels.images.dtype == torch.uint8 and pixels.images.shape == (3, 3, 64, 80)
    assert pixels.fallback == [1] and set(pixels.failed) == {2}
    assert not pixels.images[2].any()
    floats = decode_batch(blobs, transform, "cpu")
    assert torch.allclose(normalize_uint8(pixels.images[:2], transform), floats.images[:2])
    with pytest.raises(ValueError, match=r"dtype=torch\.int32"):
        decode_batch(blobs, transform, "cpu", dtype=torch.int32)


def test_bad_arguments_name_the_fix(files) -> None:
    transform = EvalTransform(size=(32, 32))
    with pytest.raises(ValueError, match="decoder='gpu' needs a CUDA device"):
        decode_batch([files["rgb0"]], transform, "cpu", decoder="gpu")
    with pytest.raises(ValueError, match="decoder='fast'"):
        decode_batch([files["rgb0"]], transform, "cpu", decoder="fast")
    with pytest.raises(TypeError, match="list of encoded files"):
        decode_batch(files["rgb0"], transform, "cpu")
    with pytest.raises(TypeError, match="EvalTransform"):
        decode_batch([files["rgb0"]], {"input_size": (3, 32, 32)}, "cpu")
    with pytest.raises(ValueError, match="crop_pct=0"):
        EvalTransform(crop_pct=0)
    with pytest.raises(ValueError, match="interpolation='cubic'"):
        EvalTransform(interpolation="cubic")
    with pytest.raises(ValueError, match="std="):
        EvalTransform(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="input_size"):
        EvalTransform.from_data_config({"crop_pct": 0.9})
    with pytest.raises(ValueError, match="uint8"):
        normalize_uint8(torch.zeros(1, 3, 4, 4), transform)
    assert EvalTransform.from_data_config({"input_size": (3, 32, 48)}).size == (32, 48)


def test_decoder_error_falls_back_per_file(files, monkeypatch) -> None:
    """A JPEG the fast decoder rejects is decoded by PIL; a whole-batch error is retried per file."""
    import torchvision.io

    from cl_core.embed import batch_decoding as decoding

    real = torchvision.io.decode_jpeg
    bad = files["rgb1"]

    def flaky(data, mode=torchvision.io.ImageReadMode.RGB, device="cpu"):
        if isinstance(data, list):  # the batched nvJPEG call: one bad file fails all of it
            if any(len(t) == len(bad) for t in data):
                raise RuntimeError("nvjpegDecodeBatched failed")
            return [real(t, mode=mode) for t in data]
        if len(data) == len(bad):
            raise RuntimeError("Error while decoding JPEG")
        return real(data, mode=mode)

    monkeypatch.setattr(decoding.torchvision.io, "decode_jpeg", flaky)
    transform = EvalTransform(size=(64, 64))
    blobs = [files["rgb0"], bad, files["rgb2"]]
    result = decode_batch(blobs, transform, "cpu", decoder="cpu")
    assert result.fallback == [1] and result.failed == {}
    reference = torch.stack([load_uint8(b, transform) for b in blobs])
    assert _cosine(result.images, normalize_uint8(reference, transform)).min() > 0.99
    # The CUDA branch of the batched call (device type only decides the branch here).
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    decoded = decoding.decode_jpegs(tensors, torch.device("cuda"))
    assert isinstance(decoded[1], RuntimeError)
    assert decoded[0].shape[0] == 3 and decoded[2].shape[0] == 3


def test_encoded_files_dataset_and_collate(files, tmp_path: Path) -> None:
    names = ["rgb0", "png", "empty"]
    paths = []
    for name in names:
        path = tmp_path / f"{name}.bin"
        path.write_bytes(files[name])
        paths.append(path)
    dataset = EncodedFiles(paths, labels=[3, 4, 5])
    assert len(dataset) == 3
    data, label = dataset[1]
    assert data.dtype == torch.uint8 and data.dim() == 1 and label == 4
    assert bytes(data.numpy()) == files["png"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate_encoded)
    blobs, labels = next(iter(loader))
    assert [len(b) for b in blobs] == [len(files[n]) for n in names]
    assert labels.tolist() == [3, 4, 5]
    result = decode_batch(blobs, EvalTransform(size=(48, 48)), "cpu")
    assert result.fallback == [1] and set(result.failed) == {2}
    with pytest.raises(ValueError, match="labels has 2 entries for 3 paths"):
        EncodedFiles(paths, labels=[1, 2])
    assert EncodedFiles(paths).labels == [-1, -1, -1]


@pytest.mark.gpu
def test_cuda_decode_matches_cpu_decode(files, model) -> None:
    data_config = timm.data.resolve_data_config(model=model)
    transform = EvalTransform.from_data_config(data_config)
    names = list(files)
    blobs = [files[n] for n in names]
    gpu = decode_batch(blobs, transform, device="cuda", decoder="gpu")
    cpu = decode_batch(blobs, transform, device="cpu", decoder="cpu")
    assert gpu.decoder == "gpu" and gpu.images.device.type == "cuda"
    assert set(gpu.failed) == set(cpu.failed) == {names.index(n) for n in FAILED}
    assert {names[p] for p in gpu.fallback} == FALLBACK
    good = [i for i, n in enumerate(names) if n not in FAILED]
    reference = torch.stack([_timm_reference(files[names[i]], data_config) for i in good])
    assert _cosine(gpu.images[good].cpu(), reference).min() > 0.99
    model = copy.deepcopy(model).cuda()
    with torch.no_grad():
        feature_cos = _cosine(model(gpu.images[good]).cpu(), model(reference.cuda()).cpu())
    assert feature_cos.min() > 0.99
    auto = decode_batch(blobs, transform, device="cuda", dtype=torch.bfloat16)
    assert auto.decoder == "gpu" and auto.images.dtype == torch.bfloat16
