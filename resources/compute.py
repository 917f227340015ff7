"""Compute device selection: ``"cpu"`` or ``"cuda[:N]"``, chosen once and passed to pure functions.

torch is imported only when a CUDA device is asked for, so CPU-only deployments do not
pay for it. Asking for CUDA where none is available is an error, never a silent CPU
fallback: a GPU deployment that quietly runs on CPU would be 10-100x slower and its
timings would mislead.
"""
from __future__ import annotations

__all__ = ["resolve_device", "cuda_available"]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """Validate ``device`` and return it in canonical form (``"cpu"``, ``"cuda"``, ``"cuda:1"``)."""
    if not isinstance(device, str):
        raise ValueError(f"device must be a string 'cpu' or 'cuda[:N]'; got {device!r}")
    device = device.strip().lower()
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return "cpu"
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]'; got {device!r} "
                         "(set AOOCT_DEVICE or the compute resource's 'device')")
    if not cuda_available():
        raise ValueError(f"device {device!r} was requested but torch sees no CUDA GPU on this "
                         "machine; set AOOCT_DEVICE=cpu or run the step on a GPU node")
    return device
