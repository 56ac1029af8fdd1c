"""Where the torch k-means runs: the device named by ``"auto"``, ``"cpu"``, ``"cuda[:N]"``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def resolve_device(device: Any = "auto") -> torch.device:
    """The torch device for ``device``: ``"auto"`` is CUDA when available, else CPU.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, "cuda:N" or torch.device

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        An unknown device name, or CUDA asked for but not available.
    """
    import torch

    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str) and device == "auto":
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from None
    else:
        raise TypeError(f"device must be a string or torch.device, got {device!r}")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: only 'cpu' and 'cuda' are supported")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for CUDA, but torch sees no CUDA device "
            f"(torch {torch.__version__}); use device='auto' or 'cpu'"
        )
    return resolved
