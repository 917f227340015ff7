"""Device handling for preprocessing: one algorithm, two array modules.

Every preprocessing function is written against an *array module* ``xp`` (NumPy on
``device="cpu"``, CuPy on ``device="cuda"``) plus the matching ``ndimage`` and ``fft``
namespaces, so the CPU and GPU paths run the same code line for line and can only
differ by floating-point rounding. CuPy is imported lazily, only when a CUDA device
is asked for, so ``aooct_core`` imports on machines without it.

Why CuPy and not torch: CuPy mirrors the NumPy/SciPy API (``cupyx.scipy.ndimage``,
``cupy.fft``), which is what lets the two paths share code; torch would need a second
implementation of every step.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["Backend", "get_backend", "to_device", "to_host", "array_device", "synchronize"]

_DEVICES = ("cpu", "cuda")


class Backend:
    """Array namespaces for one device.

    Attributes
    ----------
    device : {"cpu", "cuda"}
    xp : module
        ``numpy`` or ``cupy``.
    ndimage : module
        ``scipy.ndimage`` or ``cupyx.scipy.ndimage``.
    fft : module
        ``scipy.fft`` (multi-threaded, float32-preserving) or ``cupy.fft``.
    """

    def __init__(self, device: str, xp: ModuleType, ndimage: ModuleType, fft: ModuleType, workers: int = -1):
        self.device = device
        self.xp = xp
        self.ndimage = ndimage
        self.fft = fft
        self.workers = workers

    def fft_kwargs(self) -> dict:
        # scipy.fft parallelises batched transforms over B-scans with ``workers``;
        # cupy.fft has no such argument.
        return {"workers": self.workers} if self.device == "cpu" else {}

    def with_workers(self, workers: int) -> "Backend":
        """Same namespaces, scipy.fft limited to ``workers`` threads (CPU; CUDA unchanged).

        Used by code that already runs several tasks in a thread pool, so that the FFTs
        inside each task do not oversubscribe the cores.
        """
        if self.device != "cpu" or workers == self.workers:
            return self
        return Backend(self.device, self.xp, self.ndimage, self.fft, workers)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Backend(device={self.device!r})"


_CACHE: dict[str, Backend] = {}


def get_backend(device: str) -> Backend:
    """Return the :class:`Backend` for ``device`` ("cpu" or "cuda").

    Raises
    ------
    ValueError
        If ``device`` is not "cpu"/"cuda", or "cuda" is asked for but CuPy or a
        CUDA device is missing (the message says how to fix it).
    """
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}; got {device!r}")
    if device in _CACHE:
        return _CACHE[device]
    if device == "cpu":
        import scipy.fft
        import scipy.ndimage

        backend = Backend("cpu", np, scipy.ndimage, scipy.fft)
    else:
        try:
            import cupy
            import cupyx.scipy.ndimage
        except ImportError as exc:
            raise ValueError(
                "device='cuda' needs CuPy: install the 'gpu' extra "
                "(pip install 'cupy-cuda12x>=13') or use device='cpu'"
            ) from exc
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise ValueError("device='cuda' was asked for but no CUDA device is visible; use device='cpu'")
        backend = Backend("cuda", cupy, cupyx.scipy.ndimage, cupy.fft)
    _CACHE[device] = backend
    return backend


def array_device(array: Any) -> str:
    """"cuda" for a CuPy array, "cpu" otherwise (no CuPy import needed)."""
    return "cuda" if type(array).__module__.startswith("cupy") else "cpu"


def to_device(array: Any, device: str, *, dtype: Any = None) -> Any:
    """Move ``array`` to ``device``, optionally casting on arrival.

    Casting *after* the upload keeps transfers small: upload uint16 and convert to
    float32 on the GPU rather than uploading float32.
    """
    backend = get_backend(device)
    if device == "cpu":
        out = to_host(array)
        return out if dtype is None else out.astype(dtype, copy=False)
    out = backend.xp.asarray(array)
    return out if dtype is None else out.astype(dtype, copy=False)


def to_host(array: Any) -> np.ndarray:
    """Return a NumPy array (copies from the GPU when given a CuPy array)."""
    if array_device(array) == "cuda":
        return array.get()
    return np.asarray(array)


def synchronize(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU); use before reading a timer."""
    if device == "cuda":
        get_backend("cuda").xp.cuda.get_current_stream().synchronize()
