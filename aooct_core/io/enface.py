"""2-D en face images (AOSLO, OCTA, en face AO-OCT projections) with their pixel size.

Images come as TIFF, PNG or ``.npy``; 8/16-bit integer or float samples are
returned as float32 ``(row, col)`` without rescaling. The pixel size is
µm per pixel ``(row, col)``: from the ``um_per_px`` argument, else from a JSON
sidecar next to the image (``<stem>.json`` or ``<name>.json``, holding
``{"um_per_px": 0.8}`` or ``{"um_per_px": [0.8, 0.8]}``; other keys are
ignored), else unknown (``None``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aooct_core.io.budget import ReadBudget, check_expansion, check_image_size, default_budget
from aooct_core.io.checks import check_dtype, check_finite, require_file
from aooct_core.io.errors import InputError, decoder_errors
from aooct_core.io.jsonsafe import load_json_file
from aooct_core.io.tiff import TIFF_SUFFIXES, read_tiff_page

__all__ = ["EnFaceImage", "read_enface", "ENFACE_SUFFIXES"]

ENFACE_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Channels of each PNG colour type (PNG spec 11.2.2): gray, RGB, palette, gray+alpha, RGBA.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


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


def _sidecar_um_per_px(path: Path, budget: ReadBudget) -> tuple[float, float] | None:
    for sidecar in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if sidecar.is_file():
            data = load_json_file(sidecar, budget=budget, example='{"um_per_px": 0.8}')
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


def _check_png_header(path: Path, budget: ReadBudget) -> None:
    """Budget checks on the IHDR chunk, and chunk lengths within the file, before Pillow
    sees it: Pillow's own bomb check would answer first naming its limit instead of ours,
    and Pillow reads a chunk with ``read(length)``, which allocates the declared length
    (up to 4 GiB) before finding the file shorter."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(26)
        if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
            return  # not a PNG: Pillow says so
        offset = 8
        while offset + 8 <= size:
            fh.seek(offset)
            chunk = fh.read(8)
            length, kind = int.from_bytes(chunk[:4], "big"), chunk[4:8]
            if offset + 12 + length > size:
                raise InputError(path, f"is truncated or corrupt: chunk {kind!r} at byte "
                                 f"{offset} declares {length} bytes but the file has {size} — "
                                 "export it again")
            offset += 12 + length
            if kind == b"IEND":
                break
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    bits, color_type = head[24], head[25]
    check_image_size(path, (height, width), budget=budget)
    per_pixel = _PNG_CHANNELS.get(color_type, 4) * max(1, math.ceil(bits / 8))
    check_expansion(path, height * width * per_pixel, budget=budget, compressed=True)


def _read_png(path: Path, budget: ReadBudget) -> np.ndarray:
    from PIL import Image

    _check_png_header(path, budget)
    with decoder_errors(path, ("PIL",), lambda exc: (
            f"is not a readable PNG ({type(exc).__name__}: {str(exc)[:200]}) — the file is "
            "corrupt, truncated or not a PNG; export it again")):
        # formats=["PNG"]: a .png must be a PNG; PIL would otherwise sniff and decode any of
        # its ~40 formats. Image.open reads the header only; pixels are decoded by load().
        with Image.open(path, formats=["PNG"]) as img:
            if img.mode in ("P", "PA"):
                raise InputError(path, "is a palette PNG — save it as grayscale (mode L or I;16)")
            img.load()
            return np.asarray(img)


def _read_npy(path: Path, budget: ReadBudget) -> np.ndarray:
    from aooct_core.io.volume import npy_memmap

    return npy_memmap(path, budget=budget, volume=False)


def _read_pixels(path: Path, budget: ReadBudget) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return read_tiff_page(path, budget=budget)
    if suffix == ".png":
        return _read_png(path, budget)
    if suffix == ".npy":
        return _read_npy(path, budget)
    raise InputError(path, f"unknown en face image format {suffix or '(no extension)'!r} — "
                     f"supported: {', '.join(ENFACE_SUFFIXES)}")


def read_enface(path: str | Path, *, um_per_px: float | tuple[float, float] | None = None,
                budget: ReadBudget | None = None) -> EnFaceImage:
    """Read a 2-D en face image as float32 ``(row, col)`` with its µm/px.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff`` (one page), ``.png`` (8/16-bit grayscale) or ``.npy``.
    um_per_px : float or (float, float), optional
        ``(row, col)`` µm per pixel; wins over a sidecar JSON.
    budget : ReadBudget, optional
        Size limits checked on the declared image size before it is decoded
        (default :func:`~aooct_core.io.budget.default_budget`: 256 Mi pixels,
        ``$AOOCT_MAX_IMAGE_PIXELS``).

    Returns
    -------
    EnFaceImage

    Raises
    ------
    InputError
        Missing / empty / truncated / corrupt file, unknown extension, not 2-D,
        colour, non-real samples, NaN/Inf, a bad sidecar, or a declared size over
        the budget or far larger than the file (a decompression bomb).

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
    budget = default_budget() if budget is None else budget
    require_file(path, budget=budget)
    arr = _gray(np.asarray(_read_pixels(path, budget)), path)
    check_dtype(arr.dtype, path)
    if arr.ndim != 2:
        raise InputError(path, f"is {arr.ndim}-D {arr.shape} — an en face image is 2-D (row, col); "
                         "project volumes first (e.g. mean over a depth slab)")
    if arr.size == 0:
        raise InputError(path, f"has shape {arr.shape} with no pixels — export it again")
    image = arr.astype(np.float32)
    check_finite(image, path, axes=("row", "col"))
    scale = (_as_um_pair(um_per_px, path, "um_per_px") if um_per_px is not None
             else _sidecar_um_per_px(path, budget))
    return EnFaceImage(image=image, um_per_px=scale, source=path)
