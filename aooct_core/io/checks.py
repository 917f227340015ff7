"""Cheap checks every reader shares: the file exists, the samples are real, the shape is 3-D."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aooct_core.io.budget import ReadBudget, check_sparse, default_budget
from aooct_core.io.errors import InputError

__all__ = ["require_file", "check_dtype", "check_shape", "check_finite", "CHUNK_BSCANS"]

# B-scans per chunk when scanning a memory-mapped volume, to bound temporary memory.
CHUNK_BSCANS = 16


def require_file(path: Path, *, budget: ReadBudget | None = None) -> None:
    """Refuse a missing, non-regular, empty or mostly-hole (sparse) file.

    See :func:`aooct_core.io.budget.check_sparse`.
    """
    if not path.exists():
        raise InputError(path, "does not exist — check the path and file name")
    if not path.is_file():
        raise InputError(path, "is not a file — give the path of a volume file")
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes) — the export or copy did not finish; "
                         "export it again")
    check_sparse(path, budget=default_budget() if budget is None else budget)


def check_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype.kind == "c":
        raise InputError(path, f"holds complex samples ({dtype}) — store the intensity "
                         "(np.abs(x) ** 2) as a real array; amplitude (np.abs) or dB are read too "
                         "(case.json \"intensity_scale\")")
    if dtype.kind not in "biuf":
        raise InputError(path, f"holds non-numeric samples ({dtype}) — store a real-valued "
                         "array (float32 recommended)")


def check_shape(shape: tuple[int, ...], path: Path, what: str) -> tuple[int, int, int]:
    if len(shape) == 2:
        raise InputError(path, f"{what} is 2-D {tuple(shape)}, a single image — a volume is "
                         "3-D (bscan, depth, aline) with one page/frame per B-scan; use "
                         "read_enface for en face images")
    if len(shape) != 3:
        raise InputError(path, f"{what} is {len(shape)}-D {tuple(shape)} — a volume must be 3-D "
                         "(bscan, depth, aline); write one file per repeat and drop colour axes")
    if min(shape) == 0:
        raise InputError(path, f"{what} has shape {tuple(shape)} with a zero-length axis, "
                         "so it holds no samples — export the volume again")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def check_finite(array: np.ndarray, path: str | Path, *,
                 axes: tuple[str, ...] = ("B-scan", "depth", "A-line")) -> None:
    """Raise :class:`InputError` if ``array`` holds NaN or ±Inf (scans in chunks along axis 0).

    Parameters
    ----------
    array : ndarray, e.g. shape (n_bscans, n_depth, n_alines)
    path : str or Path
        The file the array came from, for the message.
    axes : tuple of str
        Axis names used to say where the first bad sample is.
    """
    if array.dtype.kind not in "fc":
        return
    for start in range(0, array.shape[0], CHUNK_BSCANS):
        chunk = np.asarray(array[start:start + CHUNK_BSCANS])
        bad = ~np.isfinite(chunk)
        if bad.any():
            index = [int(i) for i in np.argwhere(bad)[0]]
            first = chunk[tuple(index)]
            index[0] += start
            where = ", ".join(f"{name} {i}" for name, i in zip(axes, index))
            raise InputError(path, f"contains non-finite samples (first {first} at {where}) — "
                             "re-export it or replace them (e.g. np.nan_to_num) before analysis")
