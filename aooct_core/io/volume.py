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

import struct
import sys
import tokenize
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from aooct_core.io.errors import InputError

__all__ = [
    "TIFF_SUFFIXES",
    "VolumeInfo",
    "volume_format",
    "probe_volume",
    "read_volume",
    "write_volume",
    "check_finite",
]

TIFF_SUFFIXES = (".tif", ".tiff")
_SUPPORTED = ".tif/.tiff (one page per B-scan), .npy, .dcm (DICOM Ophthalmic Tomography)"
# Errors the TIFF/NumPy decoders raise on malformed files; anything else is a bug and propagates.
_DECODE_ERRORS = (tifffile.TiffFileError, ValueError, OSError, EOFError, struct.error,
                  zlib.error, IndexError, KeyError, TypeError, SyntaxError, tokenize.TokenError)
# B-scans per chunk when scanning a memory-mapped volume, to bound temporary memory.
_CHUNK_BSCANS = 16


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


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "does not exist — check the path and file name")
    if not path.is_file():
        raise InputError(path, "is not a file — give the path of a volume file")
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes) — the export or copy did not finish; "
                         "export it again")


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


def _check_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype.kind == "c":
        raise InputError(path, f"holds complex samples ({dtype}) — store the magnitude "
                         "(np.abs) as a real array")
    if dtype.kind not in "biuf":
        raise InputError(path, f"holds non-numeric samples ({dtype}) — store a real-valued "
                         "array (float32 recommended)")


def _check_shape(shape: tuple[int, ...], path: Path, what: str) -> tuple[int, int, int]:
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
    for start in range(0, array.shape[0], _CHUNK_BSCANS):
        chunk = np.asarray(array[start:start + _CHUNK_BSCANS])
        bad = ~np.isfinite(chunk)
        if bad.any():
            index = [int(i) for i in np.argwhere(bad)[0]]
            first = chunk[tuple(index)]
            index[0] += start
            where = ", ".join(f"{name} {i}" for name, i in zip(axes, index))
            raise InputError(path, f"contains non-finite samples (first {first} at {where}) — "
                             "re-export it or replace them (e.g. np.nan_to_num) before analysis")


# ----------------------------------------------------------------------------- TIFF
def _tiff_layout(tf: tifffile.TiffFile, path: Path) -> tuple[tuple[int, int, int], np.dtype, str]:
    """Shape, dtype and layout ("series" or "pages") of a TIFF volume, after integrity checks."""
    size = path.stat().st_size
    pages = list(tf.pages)
    if not pages:
        raise InputError(path, "holds no image pages — export the volume again")
    for i, page in enumerate(pages):
        offsets, counts = page.dataoffsets, page.databytecounts
        if any(o + c > size for o, c in zip(offsets, counts)):
            raise InputError(path, f"is truncated: page {i} needs data up to byte "
                             f"{max(o + c for o, c in zip(offsets, counts))} but the file has "
                             f"{size} bytes — copy or export it again")
        if getattr(page, "samplesperpixel", 1) > 1:
            raise InputError(path, f"page {i} has {page.samplesperpixel} samples per pixel "
                             "(colour) — OCT volumes are single-channel; export grayscale "
                             "(tifffile stores a (3, depth, aline) array as RGB planes unless "
                             "given photometric='minisblack')")
    series = tf.series
    if len(series) == 1:
        s = series[0]
        shape = tuple(s.shape)
        if len(shape) > 3:  # drop singleton axes that some writers add (e.g. ImageJ T/C)
            shape = tuple(n for n in shape if n != 1) or shape
        shape3 = _check_shape(shape, path, "the image")
        # tifffile only logs a broken IFD chain and then sees fewer pages than the metadata
        # promise; a contiguous series must also fit in the file.
        page_size = int(np.prod(pages[0].shape))
        n_expected = int(np.prod(shape3)) // max(page_size, 1)
        fits = s.dataoffset is None or s.dataoffset + s.nbytes <= size
        if len(s.pages) < n_expected or not fits:
            raise InputError(path, f"is truncated or corrupt: the metadata promise shape {shape3} "
                             f"but only {len(s.pages)} of {n_expected} pages are readable within "
                             f"{size} bytes — copy or export it again")
        return shape3, np.dtype(s.dtype), "series"
    page_shape = tuple(pages[0].shape)
    for i, page in enumerate(pages[1:], start=1):
        if tuple(page.shape) != page_shape:
            raise InputError(path, f"page {i} has shape {tuple(page.shape)} but page 0 has "
                             f"{page_shape} — every B-scan (page) must have the same "
                             "(depth, aline) size")
        if page.dtype != pages[0].dtype:
            raise InputError(path, f"page {i} has dtype {page.dtype} but page 0 has "
                             f"{pages[0].dtype} — export all B-scans with one sample type")
    shape3 = _check_shape((len(pages),) + page_shape, path, "the page stack")
    return shape3, np.dtype(pages[0].dtype), "pages"


def _read_tiff(path: Path, *, mmap: bool) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tf:
            shape, dtype, layout = _tiff_layout(tf, path)
            _check_dtype(dtype, path)
            s = tf.series[0]
            native = tf.byteorder == ("<" if sys.byteorder == "little" else ">")
            if (mmap and layout == "series" and native and dtype == np.dtype("float32")
                    and s.dataoffset is not None):
                return tifffile.memmap(path, mode="r", series=0).reshape(shape)
            out = np.empty(shape, dtype=np.float32)
            pages = list(tf.pages)
            if len(pages) == shape[0]:
                for i, page in enumerate(pages):  # page by page: never two copies in memory
                    out[i] = page.asarray().reshape(shape[1:])
            else:
                out[...] = s.asarray().reshape(shape)
            return out
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(path, f"is not a readable TIFF ({type(exc).__name__}: {exc}) — the file "
                         "is truncated, corrupt or not a TIFF; copy or export it again") from exc


def _probe_tiff(path: Path) -> VolumeInfo:
    try:
        with tifffile.TiffFile(path) as tf:
            shape, dtype, _ = _tiff_layout(tf, path)
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(path, f"is not a readable TIFF ({type(exc).__name__}: {exc}) — the file "
                         "is truncated, corrupt or not a TIFF; copy or export it again") from exc
    _check_dtype(dtype, path)
    return VolumeInfo(path=path, format="tiff", shape=shape, dtype=dtype)


# ----------------------------------------------------------------------------- NPY
def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a ``.npy`` file, checking the file is complete."""
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise InputError(path, f"is not a valid .npy file (format version {version}) — "
                                 "it is corrupt; save it again with numpy.save")
            offset = fh.tell()
    except InputError:
        raise
    except _DECODE_ERRORS as exc:
        raise InputError(path, f"is not a valid .npy file ({exc}) — save it with numpy.save") from exc
    if dtype.hasobject:
        raise InputError(path, "holds Python objects (pickled), which aooct never loads — "
                         "save a numeric array with numpy.save")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(path, f"is truncated: header says shape {tuple(shape)} {dtype} "
                         f"({expected} bytes) but the file has {actual} bytes — copy it again")
    return tuple(shape), dtype, offset


def _read_npy(path: Path, *, mmap: bool) -> np.ndarray:
    shape, dtype, _ = _npy_header(path)
    _check_dtype(dtype, path)
    _check_shape(shape, path, "the array")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except _DECODE_ERRORS as exc:
        raise InputError(path, f"could not be read as .npy ({exc}) — save it with numpy.save") from exc
    if mmap and arr.dtype == np.dtype("float32"):
        return arr
    out = np.empty(arr.shape, dtype=np.float32)
    for start in range(0, arr.shape[0], _CHUNK_BSCANS):
        out[start:start + _CHUNK_BSCANS] = arr[start:start + _CHUNK_BSCANS]
    return out


def _probe_npy(path: Path) -> VolumeInfo:
    shape, dtype, _ = _npy_header(path)
    _check_dtype(dtype, path)
    return VolumeInfo(path=path, format="npy", shape=_check_shape(shape, path, "the array"),
                      dtype=dtype)


# ----------------------------------------------------------------------------- public
def probe_volume(path: str | Path) -> VolumeInfo:
    """Shape, dtype and metadata of a volume file without reading its samples.

    Checks that the file exists, is not empty, is complete (not truncated) and is
    3-D; NaN/Inf are only found by :func:`read_volume`.

    Raises
    ------
    InputError
    """
    path = Path(path)
    _require_file(path)
    fmt = volume_format(path)
    if fmt == "tiff":
        return _probe_tiff(path)
    if fmt == "npy":
        return _probe_npy(path)
    from aooct_core.io.dicom import probe_dicom

    return probe_dicom(path)


def read_volume(path: str | Path, *, mmap: bool = True) -> np.ndarray:
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

    Returns
    -------
    ndarray, float32, shape (n_bscans, n_depth, n_alines)
        Stored intensity, unscaled. May be a read-only ``numpy.memmap``.

    Raises
    ------
    InputError
        Missing, empty, truncated or corrupt file; unknown format; not 3-D;
        non-real samples; NaN or Inf.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> p = Path(tempfile.mkdtemp()) / "v.npy"
    >>> np.save(p, np.ones((2, 3, 4), dtype=np.uint16))
    >>> read_volume(p).dtype, read_volume(p).shape
    (dtype('float32'), (2, 3, 4))
    """
    path = Path(path)
    _require_file(path)
    fmt = volume_format(path)
    if fmt == "tiff":
        volume = _read_tiff(path, mmap=mmap)
    elif fmt == "npy":
        volume = _read_npy(path, mmap=mmap)
    else:
        from aooct_core.io.dicom import read_dicom_volume

        volume = read_dicom_volume(path).volume
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
