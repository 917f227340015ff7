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
    """Validate ``device`` and return it in canonical form (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    The one device contract (:func:`ml.recipe.check_device`), with where to set it here.
    """
    from ml.recipe import check_device

    try:
        return check_device(device)
    except ValueError as exc:
        raise ValueError(f"{exc} (set AOOCT_DEVICE or the compute resource's 'device')") from exc
