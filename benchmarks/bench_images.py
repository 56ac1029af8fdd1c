"""Benchmark of embedding image *files* (issue 10): ours against the usual DataLoader.

Run from the repository root::

    python benchmarks/bench_images.py          # N = 8192 generated JPEGs (CPU: 512)
    python benchmarks/bench_images.py --quick  # N = 1024 (CPU: 256)

It generates N JPEGs of ImageNet-like variety (sides 300 to 500 px, ~8% grayscale, ~2% CMYK,
~3% PNG) into a temporary image folder and reports, side by side in one run and with the same
number of DataLoader workers: the bare model forward on the same images already transformed in
memory; the plain ``DataLoader(ImageFolder + timm eval transform)`` with no model (the ceiling of
the usual way to feed a model); ours (``embed_dataset("imagefolder:...")``) with CPU decoding;
ours with GPU decoding (CUDA only); and the first-batch latency of each loader (from creating the
loader to the first batch, after ``start_worker_server()`` at start-up as the CLI does). Goals:
ours (CPU decoding) >= 1.5x the plain DataLoader and first batch <= 2 s (CPU); on CUDA, ours with
GPU decoding >= 0.5x the bare forward. Model, precision and threads as in ``bench_embed.py``
(CUDA: ViT-S/16 bf16; CPU: MobileNetV3-Small 0.5 @ 96 px, so that decoding is what is compared).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np

from benchmarks.bench_embed import (
    bare_forward,
    make_model,
    setting_fields,
    settings,
    torch_device,
)
from benchmarks.common import arguments, emit, same_threads, table

IMAGES_RATIO_GOAL = 1.5  # ours (CPU decoding) / plain DataLoader, same workers
FIRST_BATCH_GOAL_S = 2.0
GPU_DECODE_GOAL = 0.5  # ours (GPU decoding) / bare forward, on CUDA


def make_image_folder(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """``n`` ImageNet-like files in 8 class folders: 300-500 px sides, smooth content plus grain,
    JPEG quality 85-95; every 12th grayscale, every 50th CMYK, every 33rd a PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    counts = {"jpeg_rgb": 0, "jpeg_gray": 0, "jpeg_cmyk": 0, "png": 0}
    for index in range(n):
        folder = root / f"class{index % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        width, height = (int(v) for v in rng.integers(300, 501, 2))
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        grain = rng.normal(0, 12, (height, width, 3))
        image = Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))
        quality = int(rng.integers(85, 96))
        if index % 33 == 5:
            image.save(folder / f"{index:06d}.png")
            counts["png"] += 1
        elif index % 50 == 7:
            image.convert("CMYK").save(folder / f"{index:06d}.jpg", quality=quality)
            counts["jpeg_cmyk"] += 1
        elif index % 12 == 3:
            image.convert("L").save(folder / f"{index:06d}.jpg", quality=quality)
            counts["jpeg_gray"] += 1
        else:
            image.save(folder / f"{index:06d}.jpg", quality=quality)
            counts["jpeg_rgb"] += 1
    return counts


def image_settings(quick: bool, cuda: bool, workers: int | None) -> dict[str, Any]:
    """CUDA: the design's ViT-S/16 bf16 setting. CPU: a small model (MobileNetV3-Small 0.5 @ 96 px,
    ~200 images/s on one core) so that decoding, not the model, is what is compared. Workers: one
    per core but one (the model needs a core), the same for every contender."""
    setting = settings(quick, cuda)
    cores = os.cpu_count() or 2
    if cuda:
        setting["n"] = 1024 if quick else 8192
        setting["workers"] = workers or min(16, max(1, cores - 1))
    else:
        setting.update(model="mobilenetv3_small_050", model_kwargs={}, image_size=96)
        setting["n"] = 256 if quick else 512
        setting["workers"] = workers or max(1, cores - 1)
    return setting


def first_and_rate(loader: Any, n: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s over the whole pass) of iterating ``loader``."""
    start = time.perf_counter()
    first = None
    for _ in loader:
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return float(first or total), n / total


def plain_loader(root: Path, data_config: dict[str, Any], setting: dict[str, Any]) -> Any:
    """torchvision ImageFolder with timm's eval transform: the usual way to feed a model."""
    import timm.data
    import torch
    from torchvision.datasets import ImageFolder

    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    transform = timm.data.create_transform(**{k: data_config[k] for k in keys if k in data_config})
    workers = setting["workers"]
    return torch.utils.data.DataLoader(
        ImageFolder(str(root), transform=transform),
        batch_size=setting["batch_size"],
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def ours_on_files(
    model: Any, root: Path, setting: dict[str, Any], device: Any, decode: str, workdir: Path
) -> dict[str, float]:
    """embed_dataset over the folder: images/s end to end, plus its loader's first-batch latency."""
    from cl_core.embed import EmbedConfig, embed_dataset, make_loader, plan_inference

    config = EmbedConfig(
        model=model,
        batch_size=setting["batch_size"],
        precision=setting["precision"],
        device=device.type,
        chunk_rows=256,
        num_workers=setting["workers"],
        decode=decode,
        image_size=setting["image_size"],
        on_bad_sample="skip",
        n_threads=same_threads(device),
    )
    n = setting["n"]
    # First batch: the loader embed_dataset builds, timed from its creation.
    plan = plan_inference(f"imagefolder:{root}", config)
    batch = setting["batch_size"]
    batches = [range(i, min(i + batch, n)) for i in range(0, n, batch)]
    start = time.perf_counter()
    iterator = iter(make_loader(plan, batches))
    next(iterator)
    first = time.perf_counter() - start
    del iterator
    start = time.perf_counter()
    store = embed_dataset(f"imagefolder:{root}", workdir / f"{decode}.zarr", config)
    seconds = time.perf_counter() - start
    assert store.is_complete and store.shape[0] == n and not store.skipped_samples
    return {"first_batch_s": first, "images_per_s": n / seconds, "decode": store.attrs["decode"]}


def bare_on_files(model: Any, root: Path, setting: dict[str, Any], device: Any) -> float:
    """The model alone on the folder's images, transformed in memory beforehand (images/s)."""
    import torch

    from cl_core.embed import resolve_dataset

    spec = resolve_dataset(
        f"imagefolder:{root}",
        image_size=setting["image_size"],
        data_config=model_data_config(model),
    )
    images = torch.stack([spec.dataset[i][0] for i in range(len(spec.dataset))])
    return len(images) / bare_forward(model, images, setting, device)


def model_data_config(model: Any) -> dict[str, Any]:
    import timm.data

    return dict(timm.data.resolve_model_data_config(model))


def run(quick: bool, threads: int | None, workers: int | None) -> dict[str, Any]:
    from cl_core.embed import resolved_data_config, start_worker_server

    start_worker_server()  # as the CLI does at start-up: the workers' imports overlap the set-up
    device = torch_device(threads)
    load_before = os.getloadavg()[0]
    setting = image_settings(quick, device.type == "cuda", workers)
    model = make_model(setting)
    data_config = resolved_data_config(model_data_config(model), setting["image_size"])
    n = setting["n"]
    on_gpu = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        started = time.perf_counter()
        variety = make_image_folder(root, n)
        generate_s = time.perf_counter() - started
        bare = bare_on_files(model, root, setting, device)
        plain_first, plain_rate = first_and_rate(plain_loader(root, data_config, setting), n)
        cpu = ours_on_files(model, root, setting, device, "cpu", Path(tmp))
        gpu = ours_on_files(model, root, setting, device, "gpu", Path(tmp)) if on_gpu else None
    ratio = cpu["images_per_s"] / plain_rate
    gpu_ratio = gpu["images_per_s"] / bare if gpu else None
    goal_met = ratio >= IMAGES_RATIO_GOAL and cpu["first_batch_s"] <= FIRST_BATCH_GOAL_S
    if gpu is not None:
        goal_met = goal_met and gpu_ratio is not None and gpu_ratio >= GPU_DECODE_GOAL
    return {
        "name": "embed-images",
        "ratio": round(ratio, 3),
        "goal": IMAGES_RATIO_GOAL,
        "goal_met": bool(goal_met),
        **setting_fields(setting, device, load_before),
        "cpu_count": os.cpu_count(),
        "n": n,
        "files": variety,
        "generate_s": round(generate_s, 1),
        "workers": setting["workers"],
        "bare_images_per_s": round(bare, 1),
        "plain_loader_images_per_s": round(plain_rate, 1),
        "plain_loader_first_batch_s": round(plain_first, 2),
        "ours_cpu_images_per_s": round(cpu["images_per_s"], 1),
        "ours_cpu_first_batch_s": round(cpu["first_batch_s"], 2),
        "ours_gpu_images_per_s": round(gpu["images_per_s"], 1) if gpu else None,
        "ours_gpu_first_batch_s": round(gpu["first_batch_s"], 2) if gpu else None,
        "ours_gpu_vs_bare": round(gpu_ratio, 3) if gpu_ratio is not None else None,
        "ours_gpu_vs_bare_goal": GPU_DECODE_GOAL,
        "first_batch_goal_s": FIRST_BATCH_GOAL_S,
        "gpu": "measured" if on_gpu else "pending: no CUDA device in this run (CPU figures only)",
    }


def print_table(result: dict[str, Any]) -> None:
    rows: list[tuple[object, ...]] = [("contender", "images/s", "first batch")]
    for label, speed, first in (
        ("bare forward (transformed in memory)", result["bare_images_per_s"], None),
        (
            "plain DataLoader(ImageFolder + timm), no model",
            result["plain_loader_images_per_s"],
            result["plain_loader_first_batch_s"],
        ),
        ("ours, CPU decoding", result["ours_cpu_images_per_s"], result["ours_cpu_first_batch_s"]),
        ("ours, GPU decoding", result["ours_gpu_images_per_s"], result["ours_gpu_first_batch_s"]),
    ):
        shown = "pending (no CUDA)" if speed is None else f"{speed:.1f}"
        rows.append((label, shown, "" if first is None else f"{first:.2f} s"))
    print(
        f"\nembedding {result['n']} generated image files ({result['files']}), {result['model']} @ "
        f"{result['image_size']} px, batch {result['batch_size']}, {result['precision']} on "
        f"{result['device']}, {result['workers']} workers (load {result['load_average_1min']})\n"
    )
    print(table(rows, numeric=True))
    print(
        f"\nours (CPU decoding) / plain DataLoader = {result['ratio']:.2f} (goal >= "
        f"{IMAGES_RATIO_GOAL}); first batch {result['ours_cpu_first_batch_s']:.2f} s (goal <= "
        f"{FIRST_BATCH_GOAL_S} s); GPU: {result['gpu']}\n"
    )


def main(argv: list[str]) -> int:
    parser = arguments(__doc__, "small sizes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU: 1)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    args = parser.parse_args(argv)
    result = run(args.quick, args.threads, args.workers)
    print_table(result)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
