"""Hand-made hostile inputs: compression bombs, sparse files and deep or huge JSON.

Each builder returns ``(name, suffix, bytes, extend_to)``: ``extend_to`` (or None) is the
size the file is extended to after writing ``bytes`` — a hole, so it costs no disk — which
is how a sparse file declares gigabytes in a few kilobytes.
"""
from __future__ import annotations

import functools
import io
import json
import lzma
import struct
import zlib

import numpy as np

__all__ = ["tiff_bytes", "deflate_zeros", "png_bytes", "all_bombs", "tiff_deflate_bomb",
           "npy_sparse", "deep_json", "long_number_json"]

_ZEROS = bytes(1 << 22)


@functools.lru_cache(maxsize=16)
def deflate_zeros(n_bytes: int, *, raw: bool = False) -> bytes:
    """zlib (or raw deflate) stream of ``n_bytes`` zeros, made in 4 MiB pieces."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15 if raw else 15)
    out = [z.compress(_ZEROS) for _ in range(n_bytes // len(_ZEROS))]
    out.append(z.compress(bytes(n_bytes % len(_ZEROS))))
    out.append(z.flush())
    return b"".join(out)


@functools.lru_cache(maxsize=4)
def lzma_zeros(n_bytes: int) -> bytes:
    c = lzma.LZMACompressor(preset=0)
    out = [c.compress(_ZEROS) for _ in range(n_bytes // len(_ZEROS))]
    out.append(c.compress(bytes(n_bytes % len(_ZEROS))))
    out.append(c.flush())
    return b"".join(out)


def tiff_bytes(pages: list[dict], blobs: list[bytes], *, sample_format: int = 1) -> bytes:
    """A classic little-endian TIFF whose IFDs say what ``pages`` say, whatever the data hold.

    Parameters
    ----------
    pages : list of dict
        ``width``, ``height``, ``bits`` (8/16/32), ``compression`` (1, 8 deflate,
        34925 LZMA), ``rowsperstrip``, ``strips`` (indices into ``blobs``; pages may share one).
    blobs : list of bytes
        Strip data, stored once each after the header.
    """
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    where = []
    for blob in blobs:
        where.append(len(out))
        out += blob
        out += b"\x00" * (len(out) % 2)
    ifd_offsets = []
    for page in pages:
        offs = [where[i] for i in page["strips"]]
        counts = [len(blobs[i]) for i in page["strips"]]
        arrays = {}
        for tag, values in ((273, offs), (279, counts)):
            if len(values) > 1:
                arrays[tag] = len(out)
                out += struct.pack(f"<{len(values)}I", *values)
        entries = [(256, 4, 1, page["width"]), (257, 4, 1, page["height"]),
                   (258, 3, 1, page.get("bits", 8)), (259, 3, 1, page.get("compression", 1)),
                   (262, 3, 1, 1),
                   (273, 4, len(offs), arrays.get(273, offs[0] if offs else 0)),
                   (277, 3, 1, 1), (278, 4, 1, page.get("rowsperstrip", page["height"])),
                   (279, 4, len(counts), arrays.get(279, counts[0] if counts else 0)),
                   (339, 3, 1, sample_format)]
        ifd_offsets.append(len(out))
        out += struct.pack("<H", len(entries))
        for tag, typ, count, value in entries:
            packed = struct.pack("<H", value) + b"\x00\x00" if typ == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, typ, count) + packed
        out += b"\x00\x00\x00\x00"  # next IFD, patched below
    struct.pack_into("<I", out, 4, ifd_offsets[0])
    for a, b in zip(ifd_offsets, ifd_offsets[1:]):
        n = struct.unpack_from("<H", out, a)[0]
        struct.pack_into("<I", out, a + 2 + 12 * n, b)
    return bytes(out)


def tiff_deflate_bomb(n_pages: int = 100, side: int = 2000) -> bytes:
    """``n_pages`` × ``side``² uint8 zeros, each page its own deflate strip (~4 KB per 4 MB)."""
    strip = deflate_zeros(side * side)
    pages = [{"width": side, "height": side, "compression": 8, "strips": [i]}
             for i in range(n_pages)]
    return tiff_bytes(pages, [strip] * n_pages)


def tiff_shared_strip_bomb(n_pages: int = 1000, side: int = 2000) -> bytes:
    """Every page points at the same deflate strip: a few KB declaring gigabytes."""
    pages = [{"width": side, "height": side, "compression": 8, "strips": [0]}
             for _ in range(n_pages)]
    return tiff_bytes(pages, [deflate_zeros(side * side)])


def tiff_strip_bomb(compression: int = 34925, inflated: int = 400 << 20) -> bytes:
    """Small pages (64 × 64) whose strip inflates to ``inflated`` bytes."""
    blob = lzma_zeros(inflated) if compression == 34925 else deflate_zeros(inflated)
    pages = [{"width": 64, "height": 64, "compression": compression, "strips": [0]}
             for _ in range(3)]
    return tiff_bytes(pages, [blob])


def tiff_sparse(n_pages: int = 500, side: int = 2000) -> tuple[bytes, int]:
    """Uncompressed uint16 pages whose strips lie in a hole past the written bytes."""
    head = 4096 + n_pages * 200
    page_bytes = side * side * 2
    pages = []
    out = None
    for i in range(n_pages):
        pages.append({"width": side, "height": side, "bits": 16, "strips": [0]})
    out = bytearray(tiff_bytes(pages, [b"\x00" * 16]))
    # repoint each page's strip into the hole, with its real byte count
    n = len(out)
    offset = struct.unpack_from("<I", out, 4)[0]
    i = 0
    while offset and offset < n:
        count = struct.unpack_from("<H", out, offset)[0]
        for k in range(count):
            at = offset + 2 + 12 * k
            tag = struct.unpack_from("<H", out, at)[0]
            if tag == 273:
                struct.pack_into("<I", out, at + 8, head + i * page_bytes)
            elif tag == 279:
                struct.pack_into("<I", out, at + 8, page_bytes)
        offset = struct.unpack_from("<I", out, offset + 2 + 12 * count)[0]
        i += 1
    return bytes(out), head + n_pages * page_bytes


def npy_sparse(shape=(1000, 1000, 1500), dtype="<u2") -> tuple[bytes, int]:
    """A ``.npy`` header for ``shape`` and no data: the file is extended with a hole."""
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    head = buf.getvalue()
    return head, len(head) + int(np.prod(shape)) * np.dtype(dtype).itemsize


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width: int, height: int, *, bit_depth: int = 8, color_type: int = 0,
              idat: bytes | None = None) -> bytes:
    """A PNG with the given IHDR; ``idat`` defaults to all-zero rows (filter 0)."""
    if idat is None:
        row = (width * bit_depth + 7) // 8 + 1
        idat = deflate_zeros(row * height)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def deep_json(depth: int = 10_000) -> bytes:
    return ('{"schema_version": 1, "notes": ' + "[" * depth + "]" * depth + "}").encode()


def long_number_json(digits: int = 5000) -> bytes:
    from fuzz_seeds import CASE_DICT

    text = json.dumps(CASE_DICT)
    return text.replace('"axial_length_mm": 24.0', '"axial_length_mm": ' + "2" * digits).encode()


def _dicom_bomb(kind: str) -> tuple[bytes, int | None]:
    import pydicom
    from pydicom import uid

    from fuzz_seeds import _dicom_dataset

    small = np.zeros((2, 4, 4), np.uint16)
    if kind == "sparse":
        ds = _dicom_dataset(small, syntax=uid.ExplicitVRLittleEndian)
        ds.NumberOfFrames, ds.Rows, ds.Columns = 1000, 1000, 1000
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        data = bytearray(buf.getvalue())
        tag = bytes.fromhex("e07f1000") + b"OW\x00\x00"
        at = data.rindex(tag) + len(tag)
        struct.pack_into("<I", data, at, 2_000_000_000)
        del data[at + 4:]
        return bytes(data), at + 4 + 2_000_000_000
    if kind == "deflated":
        def saved(syntax):
            buf = io.BytesIO()
            _dicom_dataset(small, syntax=syntax).save_as(buf, enforce_file_format=True)
            data = buf.getvalue()
            meta_len = struct.unpack_from("<I", data, 132 + 8)[0]
            return data[:132 + 12 + meta_len], data[132 + 12 + meta_len:]

        head, _ = saved(uid.DeflatedExplicitVRLittleEndian)
        _, body = saved(uid.ExplicitVRLittleEndian)
        n = 1_500_000_000  # a private OB of zeros, after PixelData: 1.5 GB in ~1.5 MB
        elem = struct.pack("<HH2sHI", 0x7FE1, 0x0010, b"OB", 0, n)
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts = [z.compress(body), z.compress(elem)]
        parts += [z.compress(_ZEROS) for _ in range(n // len(_ZEROS))]
        parts += [z.compress(bytes(n % len(_ZEROS))), z.flush()]
        return head + b"".join(parts), None
    if kind == "rle":  # 64 frames of 2048 x 2048 uint16 zeros: 512 MiB from ~8 MB of RLE
        one = _dicom_dataset(np.zeros((1, 2048, 2048), np.uint16),
                             syntax=uid.ExplicitVRLittleEndian)
        one.compress(uid.RLELossless, np.zeros((2048, 2048), np.uint16),
                     encoding_plugin="pydicom")
        frame = next(pydicom.encaps.generate_frames(one.PixelData, number_of_frames=1))
        ds = _dicom_dataset(np.zeros((1, 8, 8), np.uint16), syntax=uid.ExplicitVRLittleEndian)
        ds.file_meta.TransferSyntaxUID = uid.RLELossless
        ds.NumberOfFrames, ds.Rows, ds.Columns = 64, 2048, 2048
        ds.PixelData = pydicom.encaps.encapsulate([frame] * 64)
        ds["PixelData"].VR = "OB"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue(), None
    raise ValueError(kind)


@functools.lru_cache(maxsize=1)
def all_bombs() -> tuple[tuple[str, str, bytes, int | None], ...]:
    """Every hostile input (some take seconds to build; cached per process)."""
    out = [
        ("tiff_deflate_bomb", ".tif", tiff_deflate_bomb(), None),
        ("tiff_shared_strip_bomb", ".tif", tiff_shared_strip_bomb(), None),
        ("tiff_lzma_strip_bomb", ".tif", tiff_strip_bomb(34925), None),
        ("tiff_deflate_strip_bomb", ".tif", tiff_strip_bomb(8, 300 << 20), None),
        ("tiff_deflate_bomb_2d", ".tif", tiff_bytes(
            [{"width": 20000, "height": 20000, "compression": 8, "strips": [0]}],
            [deflate_zeros(20000 * 20000)]), None),
        ("tiff_sparse", ".tif", *tiff_sparse()),
        ("npy_sparse", ".npy", *npy_sparse()),
        ("npy_sparse_f32", ".npy", *npy_sparse(dtype="<f4")),
        ("npy_sparse_2d", ".npy", *npy_sparse(shape=(60000, 60000), dtype="|u1")),
        ("png_bomb", ".png", png_bytes(20000, 20000), None),
        ("png_bomb_16bit", ".png", png_bytes(12000, 12000, bit_depth=16), None),
        ("png_huge_header", ".png", png_bytes(2**31 - 1, 2**31 - 1, idat=b"x\x9c\x03\x00\x00\x00\x00\x01"), None),
        ("dcm_sparse", ".dcm", *_dicom_bomb("sparse")),
        ("dcm_rle_bomb", ".dcm", *_dicom_bomb("rle")),
        ("dcm_deflated_bomb", ".dcm", *_dicom_bomb("deflated")),
        ("case_deep", ".json", deep_json(), None),
        ("case_long_int", ".json", long_number_json(), None),
        ("case_long_float", ".json", long_number_json(5000).replace(b"22222", b"2.222", 1), None),
        ("case_big", ".json", b'{"notes": "' + b"x" * (50 << 20) + b'"}', None),
    ]
    return tuple(out)
