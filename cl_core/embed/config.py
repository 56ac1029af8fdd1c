"""How to embed a dataset: :class:`EmbedConfig`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cl_core.embed.features import POOLINGS
from cl_core.embed.models import DEFAULT_MODEL
from cl_core.embed.plan import BAD_SAMPLE_POLICIES, PRECISIONS
from cl_core.store import DTYPES as STORE_DTYPES
from cl_core.store.moments import NORMALIZATIONS as READER_NORMALIZATIONS
from cl_core.validation import check_choice

DECODERS = ("auto", "cpu", "gpu")
"""Values of ``decode`` / ``decoder``: ``gpu`` = nvJPEG on the CUDA device, ``cpu`` =
libjpeg-turbo on the CPU, ``auto`` = ``gpu`` where it works, else ``cpu``."""


@dataclass(frozen=True)
class EmbedConfig:
    """How to embed a dataset.

    Parameters
    ----------
    model : str, nn.Module or callable
        See :func:`cl_core.embed.models.load_model`; default the paper's DINO ViT-S/16.
    weights : path, optional
        Local weights file for a timm model id (safetensors or torch state dict).
    pretrained : bool
        Without ``weights``: hub weights (True) or random initialisation (False).
    layer : str, optional
        Name of a module (``model.named_modules()``) whose output is the feature.
    pooling : {"auto", "cls", "mean", "none"}
        ``auto``: CLS token for (B, T, C), mean over H, W for (B, C, H, W).
    output_key : str, optional
        Key of dict / ModelOutput results; default the first of :data:`OUTPUT_KEYS` present.
    batch_size : int
        Samples per forward pass.
    num_workers : int, optional
        DataLoader workers; default up to 8 with CUDA, none with CPU inference on < 8 cores
        (workers would take cores from the model), for text and for in-memory TensorDatasets
        (sliced, not collated).
    device : str
        ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:1`` ...
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast dtype; ``auto`` = bf16 on CUDA (fp16 without bf16 support) and on CPUs with
        native bf16 matrix units (AMX-BF16 or AVX512-BF16: Intel Sapphire Rapids and later,
        Cooper Lake, AMD Zen 4; :func:`cl_core.embed.plan.cpu_has_native_bf16`), fp32 on other
        CPUs. On such a CPU bf16 is 2-4x faster than fp32 (2 Sapphire Rapids cores, batch 64,
        224 px: tf_efficientnet_lite0 53 -> 116 img/s with channels-last, DINO ViT-S/16
        18 -> 70, resnet50 17 -> 47) with features within cosine 0.9999 of fp32's. The resolved
        precision is recorded in the store and is part of its identity (a bf16 store is never
        reused for an fp32 run); pass ``"fp32"`` for CPU results that match other machines.
    dtype : {"float16", "float32"}
        Storage dtype; values beyond float16's range raise.
    chunk_rows, shard_rows : int
        Store layout (rows per chunk; rows per shard, a multiple of ``chunk_rows``).
    normalize : {"standard", "l2", "none"}
        Normalisation for the readers downstream (the pipeline passes it on to clustering);
        never applied before writing and not part of the store's identity.
    image_size : int, optional
        Input size for the built-in image datasets (default: the model's).
    channels_last : bool, optional
        Channels-last memory format for 4-D inputs and the model; default on CUDA, and on CPU
        in bf16 for convolutional models (two or more ``Conv2d``; not a ViT, whose patch
        embedding is its only convolution and which runs slower channels-last; see
        :func:`cl_core.embed.plan.prefers_channels_last`). Speed only: not part of the store's
        identity.
    writer_queue : int
        Complete shards that may wait for the background writer before compute pauses.
    on_bad_sample : {"error", "skip"}
        A sample that cannot be loaded or decoded: ``error`` stops with :class:`BadSampleError`
        (index and path; not worth retrying); ``skip`` embeds everything else and records it in
        the store (``store.skipped_samples``; its row holds zeros, outside the statistics).
    decode : {"auto", "cpu", "gpu"}
        Where image files are decoded: ``gpu`` = workers only read bytes, decoding, resize, crop
        and normalisation run batched on the model's CUDA device (files the GPU decoder cannot
        take fall back to the CPU one by one); ``cpu`` = workers decode (reduced-size JPEG
        decoding) to uint8, normalisation on the compute device; ``auto`` = ``gpu`` when the
        model runs on CUDA and the decoder is available, else ``cpu``. Only for image folders;
        the choice is recorded in the store.
    n_threads : int, optional
        torch intra-op threads of the forward pass on a CPU device. fp32 CPU features depend on
        the thread count in their last bits (torch and oneDNN pick kernels and split reductions
        by it; see :func:`cl_core.embed.plan.resolve_cpu_threads`), so it is one setting per
        store: resolved when the store is created (default: the physical cores this process may
        run on, :func:`cl_core.embed.plan.default_cpu_threads`), recorded in its attrs as
        ``cpu_threads``, and used by every process that embeds one of its shards, whatever its
        own torch setting (a Dask worker starts with ``OMP_NUM_THREADS=1``). A store is then
        bitwise the same whichever process (on one kind of CPU) computed which shard. Not part
        of the store's identity: a store planned with another count is resumed with its own.
        Ignored on CUDA.
    """

    model: Any = DEFAULT_MODEL
    weights: str | os.PathLike[str] | None = None
    pretrained: bool = True
    layer: str | None = None
    pooling: str = "auto"
    output_key: str | None = None
    batch_size: int = 256
    num_workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    dtype: str = "float16"
    chunk_rows: int = 4096
    shard_rows: int | None = None
    normalize: str = "standard"
    image_size: int | None = None
    channels_last: bool | None = None
    writer_queue: int = 2
    on_bad_sample: str = "error"
    decode: str = "auto"
    n_threads: int | None = None

    def __post_init__(self) -> None:
        check_choice("on_bad_sample", self.on_bad_sample, BAD_SAMPLE_POLICIES)
        check_choice("decode", self.decode, DECODERS)
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("dtype", self.dtype, STORE_DTYPES)
        check_choice("normalize", self.normalize, READER_NORMALIZATIONS)
        for name in ("batch_size", "chunk_rows", "writer_queue"):
            _check_positive(name, getattr(self, name))
        for name in ("shard_rows", "image_size", "n_threads"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.num_workers is not None and (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            raise ValueError(
                f"num_workers must be None or an integer >= 0, got {self.num_workers!r}"
            )
        if not isinstance(self.device, str):
            raise TypeError(
                f"device must be a string such as 'auto' or 'cuda:0', got {self.device!r}"
            )


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
