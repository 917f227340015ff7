"""2-D en face images (AOSLO, OCTA, en face AO-OCT projections) with their pixel size.

Images come as TIFF, PNG or ``.npy``; 8/16-bit integer or float samples are
returned as float32 ``(row, col)`` without rescaling. The pixel size is
µm per pixel ``(row, col)``: from the ``um_per_px`` argument, else from a JSON
sidecar next to the image (``<stem>.json`` or ``<name>.json``, holding
``{"um_per_px": 0.8}`` or ``{"um_per_px": [0.8, 0.8]}``; other keys are
ignored), else unknown (``None``).
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from aooct_core.io.errors import InputError
from aooct_core.io.volume import TIFF_SUFFIXES, _check_dtype, _require_file, check_finite

__all__ = ["EnFaceImage", "read_enface", "ENFACE_SUFFIXES"]

ENFACE_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
_IMAGE_ERRORS = (tifffile.TiffFileError, OSError, ValueError, SyntaxError, EOFError,
                 struct.error, zlib.error, IndexError, KeyError)


@dataclass(frozen=True)
class EnFaceImage:
    """An en face image and its sampling.

    Attributes
    ----------
    image : ndarray, float32, shape (n_rows, n_cols)
    um_per_px : tuple of float or None
        ``(row, col)`` µm per pixel, or None when unknown.
    source : Path
    """

    image: np.ndarray
    um_per_px: tuple[float, float] | None
    source: Path


def _as_um_pair(value, path: Path, where: str) -> tuple[float, float]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        pair = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        pair = (value, value)
    else:
        raise InputError(path, f"{where} must be a number or [row, col] of µm per pixel; got "
                         f"{value!r}")
    out = []
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InputError(path, f"{where} must be positive finite µm per pixel; got {value!r} "
                             "— give e.g. 0.8 (µm/px), not px/µm or mm")
        out.append(float(v))
    return (out[0], out[1])


def _sidecar_um_per_px(path: Path) -> tuple[float, float] | None:
    for sidecar in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(sidecar, f"is not valid JSON ({exc}) — write "
                                 '{"um_per_px": 0.8}') from exc
            if not isinstance(data, dict) or "um_per_px" not in data:
                raise InputError(sidecar, "has no field 'um_per_px' — add "
                                 '"um_per_px": <µm per pixel> or remove the sidecar')
            return _as_um_pair(data["um_per_px"], sidecar, "field 'um_per_px'")
    return None


def _gray(arr: np.ndarray, path: Path) -> np.ndarray:
    """Collapse grayscale stored as RGB(A)/LA to 2-D; refuse real colour."""
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        color = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        if not all(np.array_equal(color[..., 0], color[..., c]) for c in range(color.shape[-1])):
            raise InputError(path, f"is a colour image {arr.shape} — save the single-channel "
                             "(grayscale) image; aooct does not guess how to mix channels")
        return color[..., 0]
    return arr


def _read_pixels(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tf:
            size = path.stat().st_size
            if len(tf.pages) != 1:
                raise InputError(path, f"has {len(tf.pages)} pages — an en face image is a single "
                                 "2-D page; read volumes with read_volume")
            page = tf.pages[0]
            if any(o + c > size for o, c in zip(page.dataoffsets, page.databytecounts)):
                raise InputError(path, "is truncated: the image data run past the end of the "
                                 "file — copy or export it again")
            return page.asarray()
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                raise InputError(path, "is a palette PNG — save it as grayscale (mode L or I;16)")
            return np.asarray(img)
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    raise InputError(path, f"unknown en face image format {suffix or '(no extension)'!r} — "
                     f"supported: {', '.join(ENFACE_SUFFIXES)}")


def read_enface(path: str | Path, *, um_per_px: float | tuple[float, float] | None = None
                ) -> EnFaceImage:
    """Read a 2-D en face image as float32 ``(row, col)`` with its µm/px.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff`` (one page), ``.png`` (8/16-bit grayscale) or ``.npy``.
    um_per_px : float or (float, float), optional
        ``(row, col)`` µm per pixel; wins over a sidecar JSON.

    Returns
    -------
    EnFaceImage

    Raises
    ------
    InputError
        Missing / empty / truncated / corrupt file, unknown extension, not 2-D,
        colour, non-real samples, NaN/Inf, or a bad sidecar.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "cones.npy"
    >>> np.save(p, np.zeros((4, 5), dtype=np.uint8))
    >>> e = read_enface(p, um_per_px=0.75)
    >>> e.image.shape, e.image.dtype, e.um_per_px
    ((4, 5), dtype('float32'), (0.75, 0.75))
    """
    path = Path(path)
    _require_file(path)
    try:
        arr = _read_pixels(path)
    except InputError:
        raise
    except _IMAGE_ERRORS as exc:
        raise InputError(path, f"is not a readable image ({type(exc).__name__}: {exc}) — the file "
                         "is corrupt, truncated or not this format; export it again") from exc
    arr = _gray(np.asarray(arr), path)
    _check_dtype(arr.dtype, path)
    if arr.ndim != 2:
        raise InputError(path, f"is {arr.ndim}-D {arr.shape} — an en face image is 2-D (row, col); "
                         "project volumes first (e.g. mean over a depth slab)")
    if arr.size == 0:
        raise InputError(path, f"has shape {arr.shape} with no pixels — export it again")
    image = arr.astype(np.float32)
    check_finite(image, path, axes=("row", "col"))
    scale = (_as_um_pair(um_per_px, path, "um_per_px") if um_per_px is not None
             else _sidecar_um_per_px(path))
    return EnFaceImage(image=image, um_per_px=scale, source=path)
