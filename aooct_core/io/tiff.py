"""Multipage TIFF volumes and single-page en face TIFFs, read within a :class:`ReadBudget`.

Before a sample is decoded the declared size (pages × rows × columns) is checked
against the budget and against the bytes the file occupies on disk, and every
deflate- or LZMA-compressed segment is inflated once into a bounded buffer that is
thrown away, to prove it inflates to no more than its declared size: tifffile's
fallback decoders (without imagecodecs) inflate a whole segment at once, so a 60 KB
LZMA strip inside a 64 × 64 page could otherwise take gigabytes. LZMA is counted over
every stream of a concatenation, as the decoder inflates them, and a stream whose header
asks for a dictionary over 256 MiB is refused before it is allocated. That proof costs one
extra inflation of compressed files (uncompressed files, what :func:`write_volume`
writes, pay nothing).

Errors from tifffile and its codecs on malformed files become
:class:`~aooct_core.io.InputError`; anything raised by our own code propagates.
"""
from __future__ import annotations

import lzma
import math
import sys
import zlib
from pathlib import Path

import numpy as np
import tifffile

from aooct_core.io.budget import (
    ReadBudget, check_expansion, check_image_size, check_volume_size, disk_bytes,
)
from aooct_core.io.errors import InputError, decoder_errors

__all__ = ["TIFF_SUFFIXES", "tiff_layout", "read_tiff_volume", "probe_tiff", "read_tiff_page"]

TIFF_SUFFIXES = (".tif", ".tiff")
_DEFLATE = {8, 32946}
_LZMA = {34925}
_INFLATE_CHUNK = 1 << 20


def _tiff_errors(path: Path):
    """tifffile's failures on a malformed file, as InputError naming the cause's type."""
    return decoder_errors(path, ("tifffile",), lambda exc: (
        f"is not a readable TIFF ({type(exc).__name__}: {str(exc)[:200]}) — the file is "
        "truncated, corrupt or not a TIFF; copy or export it again"))


def _segment_bytes(page) -> int:
    """Upper bound on the decoded bytes of one strip or tile of ``page``."""
    samples = int(page.samplesperpixel) if int(page.planarconfig) == 1 else 1
    item = max(1, math.ceil(int(page.bitspersample) / 8))
    if page.is_tiled:
        n = int(page.tilelength) * int(page.tilewidth) * max(1, int(page.tiledepth))
    else:
        rows = min(int(page.rowsperstrip) or int(page.imagelength), int(page.imagelength))
        n = rows * int(page.imagewidth) * max(1, int(page.imagedepth))
    return n * samples * item


_LZMA_MEMLIMIT = 256 << 20   # xz -9 (64 MiB dictionary) decodes in ~65 MiB


class _DecoderMemory(Exception):
    """An LZMA stream whose declared dictionary needs more than ``_LZMA_MEMLIMIT``."""


def _inflated_size(data: bytes, compression: int, limit: int) -> int:
    """Bytes ``data`` inflates to, counting at most ``limit + 1`` (the rest is not decoded)."""
    if compression in _DEFLATE:
        d = zlib.decompressobj()
        total = len(d.decompress(data, _INFLATE_CHUNK))
        while d.unconsumed_tail and total <= limit:
            total += len(d.decompress(d.unconsumed_tail, _INFLATE_CHUNK))
        return total
    # As lzma.decompress (tifffile's decoder) does: every stream of a concatenation, until
    # trailing bytes that are not one (an empty first stream hid a bomb behind it).
    # A stream's header sets the decoder's dictionary: one over the memory limit is refused
    # here, since tifffile's decoder would allocate it unbounded.
    total, first = 0, True
    while data and total <= limit:
        d = lzma.LZMADecompressor(memlimit=_LZMA_MEMLIMIT)
        try:
            total += len(d.decompress(data, _INFLATE_CHUNK))
        except lzma.LZMAError as exc:
            if "memory usage limit" in str(exc).lower():
                raise _DecoderMemory from exc
            if first:
                raise
            break
        while not d.eof and not d.needs_input and total <= limit:
            total += len(d.decompress(b"", _INFLATE_CHUNK))
        if not d.eof:
            break
        data, first = d.unused_data, False
    return total


def _check_segments(fh, page, index: int, path: Path) -> None:
    """Refuse a page whose compressed segments inflate past their declared size."""
    if page.compression not in _DEFLATE | _LZMA:
        return
    limit = 2 * _segment_bytes(page) + 65536  # slack for writers that pad segments
    for k, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
        if not count:
            continue
        fh.seek(offset)
        try:
            size = _inflated_size(fh.read(count), int(page.compression), limit)
        except _DecoderMemory:
            raise InputError(path, f"page {index} segment {k}: its LZMA stream needs more than "
                             f"{_LZMA_MEMLIMIT >> 20} MiB of decoder memory — a corrupt file or a "
                             "memory bomb; export it again (xz presets up to -9 decode in 65 MiB)"
                             ) from None
        except (zlib.error, lzma.LZMAError, EOFError):
            continue  # malformed stream: tifffile's decoder reports it when it gets there
        if size > limit:
            raise InputError(path, f"page {index} segment {k}: {count} compressed bytes "
                             f"inflate to more than {limit} bytes, far more than the segment's "
                             "declared size — a decompression bomb or a corrupt file; export it "
                             "again")


_INT_FIELDS = ("imagewidth", "imagelength", "imagedepth", "rowsperstrip", "bitspersample",
               "samplesperpixel", "planarconfig", "tilewidth", "tilelength", "tiledepth",
               "compression")


def _check_page_fields(page, i: int, path: Path) -> None:
    """tifffile passes tags of the wrong type or count through (a size as a tuple, strip
    offsets as text): refuse them before any arithmetic uses them."""
    bad = [name for name in _INT_FIELDS if not isinstance(getattr(page, name, 0), int)]
    bad += [name for name in ("dataoffsets", "databytecounts")
            if not all(isinstance(v, int) and v >= 0 for v in getattr(page, name))]
    if bad or not all(isinstance(n, int) and n >= 0 for n in page.shape):
        raise InputError(path, f"page {i} has malformed size tags ({', '.join(bad) or 'shape'} "
                         "not a single whole number) — the file is corrupt; export it again")


def _pages(tf: tifffile.TiffFile, path: Path) -> list:
    size = path.stat().st_size
    pages = list(tf.pages)
    if not pages:
        raise InputError(path, "holds no image pages — export the volume again")
    for i, page in enumerate(pages):
        _check_page_fields(page, i, path)
        offsets, counts = page.dataoffsets, page.databytecounts
        if len(offsets) != len(counts):
            raise InputError(path, f"page {i} lists {len(offsets)} strip offsets but "
                             f"{len(counts)} byte counts — the file is corrupt; export it again")
        if any(o + c > size for o, c in zip(offsets, counts)):
            raise InputError(path, f"is truncated: page {i} needs data up to byte "
                             f"{max(o + c for o, c in zip(offsets, counts))} but the file has "
                             f"{size} bytes — copy or export it again")
        if getattr(page, "samplesperpixel", 1) > 1:
            raise InputError(path, f"page {i} has {page.samplesperpixel} samples per pixel "
                             "(colour) — OCT volumes are single-channel; export grayscale "
                             "(tifffile stores a (3, depth, aline) array as RGB planes unless "
                             "given photometric='minisblack')")
    return pages


def _check_budget(tf, pages, path: Path, shape, dtype: np.dtype, budget: ReadBudget,
                  *, volume: bool) -> None:
    if volume:
        check_volume_size(path, shape, dtype.itemsize, budget=budget)
    else:
        check_image_size(path, shape, budget=budget)
    compressed = any(int(p.compression) != 1 for p in pages)
    check_expansion(path, math.prod(shape) * dtype.itemsize, budget=budget,
                    on_disk=disk_bytes(path), compressed=compressed)
    for i, page in enumerate(pages):
        _check_segments(tf.filehandle, page, i, path)


def tiff_layout(tf: tifffile.TiffFile, path: Path, check_shape, budget: ReadBudget
                ) -> tuple[tuple[int, int, int], np.dtype, str]:
    """Shape, dtype and layout ("series" or "pages") of a TIFF volume, after integrity checks.

    ``check_shape(shape, path, what)`` validates a 3-D shape (from :mod:`.volume`).
    """
    pages = _pages(tf, path)
    size = path.stat().st_size
    page_shape = tuple(pages[0].shape)
    for i, page in enumerate(pages[1:], start=1):  # each page is decoded with its own tags
        if tuple(page.shape) != page_shape:
            raise InputError(path, f"page {i} has shape {tuple(page.shape)} but page 0 has "
                             f"{page_shape} — every B-scan (page) must have the same "
                             "(depth, aline) size")
        if page.dtype != pages[0].dtype:
            raise InputError(path, f"page {i} has dtype {page.dtype} but page 0 has "
                             f"{pages[0].dtype} — export all B-scans with one sample type")
    series = tf.series
    if len(series) == 1:
        s = series[0]
        shape = tuple(s.shape)
        if len(shape) > 3:  # drop singleton axes that some writers add (e.g. ImageJ T/C)
            shape = tuple(n for n in shape if n != 1) or shape
        shape3 = check_shape(shape, path, "the image")
        # tifffile only logs a broken IFD chain and then sees fewer pages than the metadata
        # promise; a contiguous series must also fit in the file.
        page_size = math.prod(pages[0].shape)
        n_expected = math.prod(shape3) // max(page_size, 1)
        fits = s.dataoffset is None or s.dataoffset + s.nbytes <= size
        if len(s.pages) < n_expected or not fits:
            raise InputError(path, f"is truncated or corrupt: the metadata promise shape {shape3} "
                             f"but only {len(s.pages)} of {n_expected} pages are readable within "
                             f"{size} bytes — copy or export it again")
        dtype, layout = np.dtype(s.dtype), "series"
    else:
        shape3 = check_shape((len(pages),) + page_shape, path, "the page stack")
        dtype, layout = np.dtype(pages[0].dtype), "pages"
    _check_budget(tf, pages, path, shape3, dtype, budget, volume=True)
    return shape3, dtype, layout


def _decoded(data: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> np.ndarray:
    """``data`` in ``shape``; tifffile returns an empty array for a segment it could not read."""
    if data.size != math.prod(shape):
        raise InputError(path, f"{what} decodes to {data.size} samples but its tags declare "
                         f"{shape} — the file is corrupt or truncated; export it again")
    return data.reshape(shape)


def read_tiff_volume(path: Path, *, mmap: bool, check_shape, check_dtype,
                     budget: ReadBudget) -> np.ndarray:
    """float32 ``(bscan, depth, aline)`` from a TIFF (a read-only memmap where possible)."""
    with _tiff_errors(path), tifffile.TiffFile(path) as tf:
        shape, dtype, layout = tiff_layout(tf, path, check_shape, budget)
        check_dtype(dtype, path)
        s = tf.series[0]
        native = tf.byteorder == ("<" if sys.byteorder == "little" else ">")
        if (mmap and layout == "series" and native and dtype == np.dtype("float32")
                and s.dataoffset is not None):
            return tifffile.memmap(path, mode="r", series=0).reshape(shape)
        out = np.empty(shape, dtype=np.float32)
        pages = list(tf.pages)
        if len(pages) == shape[0]:
            for i, page in enumerate(pages):  # page by page: never two copies in memory
                out[i] = _decoded(page.asarray(), shape[1:], path, f"page {i}")
        else:
            out[...] = _decoded(s.asarray(), shape, path, "the image")
        return out


def probe_tiff(path: Path, *, check_shape, budget: ReadBudget
               ) -> tuple[tuple[int, int, int], np.dtype]:
    """Shape and stored dtype of a TIFF volume, checked like :func:`read_tiff_volume`."""
    with _tiff_errors(path), tifffile.TiffFile(path) as tf:
        shape, dtype, _ = tiff_layout(tf, path, check_shape, budget)
    return shape, dtype


def read_tiff_page(path: Path, *, budget: ReadBudget) -> np.ndarray:
    """The one page of an en face TIFF, in its stored dtype."""
    with _tiff_errors(path), tifffile.TiffFile(path) as tf:
        pages = _pages(tf, path)
        if len(pages) != 1:
            raise InputError(path, f"has {len(pages)} pages — an en face image is a single "
                             "2-D page; read volumes with read_volume")
        page = pages[0]
        _check_budget(tf, pages, path, tuple(page.shape), np.dtype(page.dtype), budget,
                      volume=False)
        return _decoded(page.asarray(), tuple(page.shape), path, "the page")
