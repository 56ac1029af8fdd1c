"""The inference plan: device, precision (bf16 on CPUs with native bf16), channels-last, workers,
CPU threads."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import (
    TensorDataset,
)

from cl_core.embed.datasets import DatasetSpec
from cl_core.embed.files import ImageFiles
from cl_core.embed.models import LoadedModel
from cl_core.validation import check_choice

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BAD_SAMPLE_POLICIES = ("error", "skip")
DECODE_PATHS = ("dataset", "cpu", "gpu")
"""Where image files are decoded: by the dataset's own ``__getitem__`` (PIL + its transform), by
the workers to uint8 (``cpu``), or batched on the CUDA device from bytes (``gpu``)."""
MAX_GPU_DECODE_WORKERS = 8  # workers that only read bytes for the GPU decoder
MAX_GPU_FEED_WORKERS = 32
"""Cap of the default worker count when CPU workers feed a CUDA model (one per core below it)."""
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU feature flags (Linux ``/proc/cpuinfo``) of native bf16 matrix instructions: AMX-BF16 (Intel
Sapphire Rapids and later), AVX512-BF16 (Cooper Lake, AMD Zen 4 and later). With either,
``precision="auto"`` runs CPU inference in bf16 (2-4x faster than fp32, e.g. tf_efficientnet_lite0
53 -> 116 img/s, DINO ViT-S/16 18 -> 70 img/s on 2 Sapphire Rapids cores); without, bf16 is
emulated and slower than fp32."""


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the Linux kernel lists them (``/proc/cpuinfo``), read once.

    Empty where there is no ``/proc/cpuinfo`` (macOS, Windows): such CPUs count as without native
    bf16. (torch has no public query for AMX / AVX512-BF16: ``torch.backends.cpu.
    get_cpu_capability()`` stops at "AVX512".)
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 matrix instructions (any of :data:`CPU_BF16_FLAGS`)."""
    return not cpu_flags().isdisjoint(CPU_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA (fp16 without bf16 support) and on CPUs with native bf16
    (:func:`cpu_has_native_bf16`), fp32 elsewhere; other values as given."""
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def prefers_channels_last(module: Any) -> bool:
    """Whether ``module`` is convolutional beyond a patch embedding (two or more ``Conv2d``).

    Channels-last inputs speed such models up in bf16 on CPU (2 Sapphire Rapids cores, batch 64,
    224 px: tf_efficientnet_lite0 58 -> 116 img/s, resnet50 bf16 + channels-last 47 img/s against
    17 in fp32); a ViT, whose one convolution is its patch embedding, got slower (bf16 70 -> 63
    img/s). In fp32 on CPU the gain was small (lite0 53 -> 59) or a loss (resnet50), so the CPU
    default uses it with bf16 only.
    """
    if not isinstance(module, nn.Module):
        return False
    convolutions = (m for m in module.modules() if isinstance(m, nn.Conv2d))
    return next(convolutions, None) is not None and next(convolutions, None) is not None


@dataclass(frozen=True, eq=False)
class InferencePlan:
    """Everything one inference run needs (built by :func:`cl_core.embed.stage.prepare_job`)."""

    loaded: LoadedModel
    spec: DatasetSpec
    device: torch.device
    precision: str = "fp32"
    batch_size: int = 256
    num_workers: int | None = None
    layer: str | None = None
    pooling: str = "auto"
    output_key: str | None = None
    channels_last: bool | None = None
    writer_queue: int = 2
    on_bad_sample: str = "error"
    decode: str = "dataset"
    eval_transform: Any = None
    cpu_threads: int | None = None
    """torch intra-op threads of the forward pass on a CPU device (None: torch's setting as it
    is); see :func:`resolve_cpu_threads`."""

    def __post_init__(self) -> None:
        check_choice("on_bad_sample", self.on_bad_sample, BAD_SAMPLE_POLICIES)
        check_choice("decode", self.decode, DECODE_PATHS)
        if self.decode != "dataset" and not isinstance(self.spec.dataset, ImageFiles):
            raise ValueError(
                f"decode={self.decode!r} needs an image folder (imagefolder:PATH), got "
                f"{type(self.spec.dataset).__name__}; use decode='dataset'"
            )
        if self.decode != "dataset" and self.eval_transform is None:
            raise ValueError(f"decode={self.decode!r} needs eval_transform (an EvalTransform)")

    @property
    def use_channels_last(self) -> bool:
        """Channels-last memory format for 4-D inputs and the model: as given; by default on
        CUDA, and on CPU in bf16 for convolutional models (:func:`prefers_channels_last`)."""
        if self.channels_last is not None:
            return bool(self.channels_last)
        if self.device.type == "cuda":
            return True
        return self.precision == "bf16" and prefers_channels_last(self.loaded.module)

    @property
    def workers(self) -> int:
        """DataLoader workers: as given; else with CUDA one per core but one (up to
        :data:`MAX_GPU_FEED_WORKERS`: decoding on the CPU is what limits a GPU model); on CPU only
        with >= 8 cores (workers would take cores from the model); none for text and in-memory
        tensors."""
        if self.num_workers is not None:
            return self.num_workers
        cpus = usable_cpus()
        if self.spec.kind == "text" or isinstance(self.spec.dataset, TensorDataset):
            return 0  # nothing to gain: text tokenises fast, tensors are sliced in memory
        if self.decode == "gpu":
            return min(MAX_GPU_DECODE_WORKERS, max(1, cpus - 1))
        if self.device.type == "cuda":
            return min(MAX_GPU_FEED_WORKERS, max(1, cpus - 1))
        return 0 if cpus < 8 else min(4, cpus // 8)


def resolve_cpu_threads(n_threads: int | None, device: torch.device) -> int | None:
    """The intra-op thread count of CPU inference: ``n_threads``, else :func:`default_cpu_threads`;
    None on an accelerator (its kernels do not use them).

    A fixed count, not the process's current torch setting, because fp32 CPU features depend on
    the thread count in their last bits: torch runs a 1x1 convolution on fewer than 16 samples
    with its own im2col + GEMM kernel when single-threaded and with oneDNN otherwise, and oneDNN
    splits some reductions by thread (measured on an AVX2 EPYC: ``test_efficientnet`` features
    of an 8-sample batch differ by up to 5e-9 between 1 and 2 threads; a 32-sample batch between
    2 and 3). A Dask worker process starts with ``OMP_NUM_THREADS=1`` (Dask's default), the
    pipeline's own process with one thread per core, so without one setting the same shard
    embedded in each gives other bits, and with them another artifact version.
    """
    if device.type != "cpu":
        return None
    if n_threads is None:
        return default_cpu_threads()
    return int(n_threads)


def default_cpu_threads() -> int:
    """Threads for CPU inference when none are given: the physical cores among those this
    process may run on (:func:`usable_cpus`; hyper-threads add no speed to the forward, as
    torch's own default has it). A property of the machine and the affinity mask, not of the
    process's environment (``OMP_NUM_THREADS``), so every process on one machine resolves the
    same count."""
    cpus = _affinity()
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with (
                open(f"{topology}/physical_package_id", encoding="ascii") as package,
                open(f"{topology}/core_id", encoding="ascii") as core,
            ):
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:  # no sysfs (macOS, Windows, some sandboxes): count logical CPUs
            return max(1, len(cpus))
    return max(1, len(cores))


def _affinity() -> list[int]:
    """The CPU ids this process may run on (all CPUs where there is no affinity mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's share)."""
    return len(_affinity())
