"""Reading and writing one OCT volume: multipage TIFF, ``.npy`` and (via :mod:`.dicom`) DICOM.

A volume is a 3-D array with axes ``(bscan, depth, aline)``: in a multipage
TIFF each page is one B-scan whose rows are depth and whose columns are
A-lines; a single page holding a 3-D stack is accepted too.

Large volumes are not copied when they need not be: float32 ``.npy`` files and
contiguous, uncompressed float32 TIFFs (what :func:`write_volume` produces) come
back as read-only ``numpy.memmap``; other files are converted to float32 page by
page so memory holds only the float32 result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from aooct_core.io import tiff as _tiff
from aooct_core.io.budget import (
    ReadBudget, check_expansion, check_image_size, check_volume_size, default_budget,
)
from aooct_core.io.checks import CHUNK_BSCANS as _CHUNK_BSCANS
from aooct_core.io.checks import check_dtype as _check_dtype
from aooct_core.io.checks import check_finite
from aooct_core.io.checks import check_shape as _check_shape
from aooct_core.io.checks import require_file as _require_file
from aooct_core.io.errors import InputError, decoder_errors

__all__ = [
    "TIFF_SUFFIXES",
    "VolumeInfo",
    "volume_format",
    "probe_volume",
    "read_volume",
    "write_volume",
    "check_finite",
]

TIFF_SUFFIXES = _tiff.TIFF_SUFFIXES
# NumPy's default ``max_header_size`` for read_array_header_*.
_MAX_NPY_HEADER = 10_000
_SUPPORTED = ".tif/.tiff (one page per B-scan), .npy, .dcm (DICOM Ophthalmic Tomography)"


@dataclass(frozen=True)
class VolumeInfo:
    """What a volume file holds, read from its header without loading the data.

    Attributes
    ----------
    path : Path
    format : {"tiff", "npy", "dicom"}
    shape : tuple of int
        ``(n_bscans, n_depth, n_alines)``.
    dtype : numpy.dtype
        Stored sample type (the readers return float32).
    dropped_phi : tuple of str
        DICOM attribute keywords that identify the patient and were not read.
    spacing_um : dict
        Sampling found in the file, µm/px, keys among ``"bscan"``, ``"depth"``, ``"aline"``.
    """

    path: Path
    format: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    dropped_phi: tuple[str, ...] = ()
    spacing_um: dict = field(default_factory=dict)


def volume_format(path: str | Path) -> str:
    """``"tiff"``, ``"npy"`` or ``"dicom"`` from the file name (or the DICOM preamble).

    Raises
    ------
    InputError
        For an unknown extension.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix == ".npy":
        return "npy"
    if suffix in (".dcm", ".dicom"):
        return "dicom"
    if suffix == "" and path.is_file():
        # DICOM files often come without an extension; they carry "DICM" after a 128-byte preamble.
        with path.open("rb") as fh:
            head = fh.read(132)
        if head[128:132] == b"DICM":
            return "dicom"
    raise InputError(path, f"unknown volume format {suffix or '(no extension)'!r} — "
                     f"supported: {_SUPPORTED}")


# ----------------------------------------------------------------------------- NPY
def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Shape, dtype, Fortran order and data offset of a ``.npy`` file, checking it is complete.

    Only the header is read (NumPy's own parser, at most 10,000 header bytes).

    Raises
    ------
    InputError
        Not a ``.npy`` file, pickled objects, negative dimensions, or truncated.
    """
    size = path.stat().st_size
    with decoder_errors(path, ("numpy", "ast"), lambda exc: (
            f"is not a valid .npy file ({type(exc).__name__}: {str(exc)[:200]}) — it is "
            "corrupt; save it again with numpy.save")), path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        # NumPy reads the declared header length before checking it (a v2 header may declare
        # 4 GiB): check it against its own 10,000-byte limit and the file size first.
        width = 2 if version == (1, 0) else 4
        header_len = int.from_bytes(fh.read(width), "little")
        if header_len > _MAX_NPY_HEADER or fh.tell() + header_len > size:
            raise InputError(path, f"is not a valid .npy file: its header declares {header_len} "
                             "bytes (too long, or past the end of the file) — it is corrupt; "
                             "save it again with numpy.save")
        fh.seek(fh.tell() - width)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InputError(path, f"is not a valid .npy file (format version {version}) — "
                             "it is corrupt; save it again with numpy.save")
        offset = fh.tell()
    if dtype.hasobject:
        raise InputError(path, "holds Python objects (pickled), which aooct never loads — "
                         "save a numeric array with numpy.save")
    if any(n < 0 for n in shape):
        raise InputError(path, f"header declares negative dimensions {tuple(shape)} — the file "
                         "is corrupt; save it again with numpy.save")
    expected = offset + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(path, f"is truncated: header says shape {tuple(shape)} {dtype} "
                         f"({expected} bytes) but the file has {actual} bytes — copy it again")
    return tuple(int(n) for n in shape), dtype, bool(fortran), offset


def npy_memmap(path: Path, *, budget: ReadBudget, volume: bool = True) -> np.memmap:
    """A read-only memory map of a ``.npy`` file whose header passed the budget checks.

    Parameters
    ----------
    path : Path
    budget : ReadBudget
    volume : bool
        Check the shape as a 3-D volume (True) or as a 2-D en face image (False).
    """
    shape, dtype, fortran, offset = npy_header(path)
    _check_dtype(dtype, path)
    if volume:
        _check_shape(shape, path, "the array")
        check_volume_size(path, shape, dtype.itemsize, budget=budget)
    else:
        check_image_size(path, shape, budget=budget)
    if math.prod(shape) == 0:
        raise InputError(path, f"has shape {shape} with no pixels (samples) — export it again")
    check_expansion(path, math.prod(shape) * dtype.itemsize, budget=budget)
    with decoder_errors(path, ("numpy", "mmap"), lambda exc: (
            f"could not be mapped as .npy ({type(exc).__name__}: {exc}) — save it with "
            "numpy.save")):
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")


def _read_npy(path: Path, *, mmap: bool, budget: ReadBudget) -> np.ndarray:
    arr = npy_memmap(path, budget=budget)
    if mmap and arr.dtype == np.dtype("float32"):
        return arr
    out = np.empty(arr.shape, dtype=np.float32)
    for start in range(0, arr.shape[0], _CHUNK_BSCANS):
        out[start:start + _CHUNK_BSCANS] = arr[start:start + _CHUNK_BSCANS]
    return out


def _probe_npy(path: Path, *, budget: ReadBudget) -> VolumeInfo:
    arr = npy_memmap(path, budget=budget)
    return VolumeInfo(path=path, format="npy", shape=tuple(arr.shape), dtype=arr.dtype)


# ----------------------------------------------------------------------------- public
def probe_volume(path: str | Path, *, budget: ReadBudget | None = None) -> VolumeInfo:
    """Shape, dtype and metadata of a volume file without reading its samples.

    Checks that the file exists, is not empty, is complete (not truncated), is
    3-D and fits the read budget; NaN/Inf are only found by :func:`read_volume`.

    Parameters
    ----------
    path : str or Path
    budget : ReadBudget, optional
        Size limits (default :func:`~aooct_core.io.budget.default_budget`).

    Raises
    ------
    InputError
    """
    path = Path(path)
    budget = default_budget() if budget is None else budget
    _require_file(path, budget=budget)
    fmt = volume_format(path)
    if fmt == "tiff":
        shape, dtype = _tiff.probe_tiff(path, check_shape=_check_shape, budget=budget)
        _check_dtype(dtype, path)
        return VolumeInfo(path=path, format="tiff", shape=shape, dtype=dtype)
    if fmt == "npy":
        return _probe_npy(path, budget=budget)
    from aooct_core.io.dicom import probe_dicom

    return probe_dicom(path, budget=budget)


def read_volume(path: str | Path, *, mmap: bool = True,
                budget: ReadBudget | None = None) -> np.ndarray:
    """Read one volume as float32 ``(bscan, depth, aline)``.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff`` (one page per B-scan, rows = depth, columns = A-lines,
        or one 3-D page), ``.npy``, or ``.dcm`` (DICOM Ophthalmic Tomography,
        frames = B-scans; patient-identifying attributes are never read into
        the result — see :func:`aooct_core.io.dicom.read_dicom_volume`).
    mmap : bool
        Return a read-only memory map when the file stores contiguous float32.
    budget : ReadBudget, optional
        Size limits checked against the file's declared size before anything is
        allocated (default :func:`~aooct_core.io.budget.default_budget`: 6 GiB as
        float32, ``$AOOCT_MAX_VOLUME_BYTES``).

    Returns
    -------
    ndarray, float32, shape (n_bscans, n_depth, n_alines)
        Stored intensity, unscaled. May be a read-only ``numpy.memmap``.

    Raises
    ------
    InputError
        Missing, empty, truncated or corrupt file; unknown format; not 3-D;
        non-real samples; NaN or Inf; a declared size over the budget, or far
        larger than the file (a compression bomb or a sparse file).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> p = Path(tempfile.mkdtemp()) / "v.npy"
    >>> np.save(p, np.ones((2, 3, 4), dtype=np.uint16))
    >>> read_volume(p).dtype, read_volume(p).shape
    (dtype('float32'), (2, 3, 4))
    """
    path = Path(path)
    budget = default_budget() if budget is None else budget
    _require_file(path, budget=budget)
    fmt = volume_format(path)
    if fmt == "tiff":
        volume = _tiff.read_tiff_volume(path, mmap=mmap, check_shape=_check_shape,
                                        check_dtype=_check_dtype, budget=budget)
    elif fmt == "npy":
        volume = _read_npy(path, mmap=mmap, budget=budget)
    else:
        from aooct_core.io.dicom import read_dicom_volume

        volume = read_dicom_volume(path, budget=budget).volume
    check_finite(volume, path)
    return volume


def write_volume(path: str | Path, volume: np.ndarray, *, fmt: str = "tiff") -> Path:
    """Write one float32 volume as a contiguous multipage TIFF or ``.npy``.

    Parameters
    ----------
    path : str or Path
        Destination file (its extension is not changed).
    volume : ndarray, shape (n_bscans, n_depth, n_alines), any real dtype
        Written as float32, one TIFF page per B-scan.
    fmt : {"tiff", "npy"}

    Returns
    -------
    Path
    """
    path = Path(path)
    arr = np.asarray(volume)
    _check_dtype(arr.dtype, path)
    _check_shape(arr.shape, path, "the volume to write")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if fmt == "tiff":
        tifffile.imwrite(path, arr, photometric="minisblack", contiguous=True)
    elif fmt == "npy":
        with path.open("wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    else:
        raise ValueError(f"fmt must be 'tiff' or 'npy'; got {fmt!r}")
    return path
