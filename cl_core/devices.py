"""Where torch work runs: the one device rule of embedding and clustering.

A leaf module: torch is imported inside the functions, so importing this costs nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device of those"
"""What :func:`resolve_device` accepts, as its error messages name it."""


def resolve_device(device: Any = "auto", *, name: str = "device") -> torch.device:
    """The torch device for ``device``: ``"auto"`` is CUDA when torch sees one, else the CPU.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, "cuda:N" or torch.device
        Only CPU and CUDA devices are supported.
    name : str
        The argument's name in error messages (``"device"``, ``"fit_device"``...).

    Returns
    -------
    torch.device

    Raises
    ------
    TypeError
        ``device`` is neither a string nor a torch.device.
    ValueError
        An unknown or unsupported device (e.g. ``"mps"``), or CUDA asked for where torch sees
        none (the message names torch's version: a CPU-only build is the usual cause).
    """
    import torch

    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"{name}={device!r} is not a torch device; use {DEVICE_CHOICES}"
            ) from None
    else:
        raise TypeError(f"{name} must be {DEVICE_CHOICES}, got {device!r}")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}={device!r} is not supported; use {DEVICE_CHOICES}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{name}={device!r} asks for a CUDA GPU, but torch sees no CUDA device "
            f"(torch {torch.__version__}); use {name}='auto' or 'cpu'"
        )
    return resolved


def cuda_may_be_present() -> bool:
    """False only when this machine certainly has no NVIDIA GPU (no torch import needed then).

    Importing torch costs seconds and hundreds of MiB; on a Linux machine without the NVIDIA
    driver's device files, or on macOS, CUDA cannot be there, so ``"auto"`` can resolve to the
    CPU without it. Elsewhere torch has to be asked.
    """
    if "torch" in sys.modules:
        return True  # already paid for: let torch answer
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()
    return True
