"""Mutation strategies for the reader fuzzers: generic byte edits and format-aware field edits.

:func:`mutate` picks one to three strategies with a seeded :class:`random.Random`, so an
input is reproduced from ``(seed bytes, rng seed)``. The format-aware ones change the
fields that declare sizes (TIFF IFD entries, the ``.npy`` header dict, DICOM
Rows/Columns/NumberOfFrames/lengths, PNG IHDR with its CRC fixed) so that the readers'
size checks are exercised, not only their parsers' syntax checks.
"""
from __future__ import annotations

import json
import random
import re
import struct
import zlib

__all__ = ["mutate", "INTERESTING"]

INTERESTING = (0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1000, 4095, 4096,
               32767, 32768, 65535, 65536, 1 << 20, 1 << 24, 2**31 - 1, 2**31, 2**32 - 1,
               2**40, 2**63 - 1, 2**64 - 1)


# ----------------------------------------------------------------------------- generic
def _flip_bits(rng: random.Random, b: bytearray) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)


def _set_bytes(rng: random.Random, b: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))


def _set_int(rng: random.Random, b: bytearray) -> None:
    width = rng.choice((2, 4, 8))
    if len(b) <= width:
        return
    i = rng.randrange(len(b) - width)
    value = rng.choice(INTERESTING) % (1 << (8 * width))
    b[i:i + width] = value.to_bytes(width, rng.choice(("little", "big")))


def _truncate(rng: random.Random, b: bytearray) -> None:
    if len(b) > 1:
        del b[rng.randrange(1, len(b)):]


def _delete_chunk(rng: random.Random, b: bytearray) -> None:
    i = rng.randrange(len(b))
    del b[i:i + rng.randint(1, 64)]


def _insert_chunk(rng: random.Random, b: bytearray) -> None:
    i = rng.randrange(len(b) + 1)
    src = rng.randrange(len(b))
    chunk = bytes(b[src:src + rng.randint(1, 64)]) if rng.random() < 0.5 else \
        bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    b[i:i] = chunk


def _splice_tail(rng: random.Random, b: bytearray) -> None:
    """Repeat a block at the end (a second IFD / element / chunk that may be parsed)."""
    i = rng.randrange(len(b))
    b.extend(b[i:i + rng.randint(8, 256)])


GENERIC = (_flip_bits, _set_bytes, _set_int, _truncate, _delete_chunk, _insert_chunk,
           _splice_tail)


# ----------------------------------------------------------------------------- TIFF
def _tiff_entries(b: bytes) -> list[tuple[int, int, str, int]]:
    """(entry offset, tag, byte order, entry size) of every entry in the IFD chain."""
    if len(b) < 16 or b[:2] not in (b"II", b"MM"):
        return []
    bo = "<" if b[:2] == b"II" else ">"
    magic = struct.unpack(bo + "H", b[2:4])[0]
    big = magic == 43
    out: list[tuple[int, int, str, int]] = []
    offset = struct.unpack(bo + ("Q" if big else "I"), b[8:16] if big else b[4:8])[0]
    seen = set()
    while 0 < offset < len(b) - 8 and offset not in seen and len(seen) < 64:
        seen.add(offset)
        n = struct.unpack(bo + ("Q" if big else "H"), b[offset:offset + (8 if big else 2)])[0]
        start = offset + (8 if big else 2)
        size = 20 if big else 12
        if n > 512 or start + n * size + (8 if big else 4) > len(b):
            break
        for k in range(n):
            at = start + k * size
            out.append((at, struct.unpack(bo + "H", b[at:at + 2])[0], bo, size))
        nxt = start + n * size
        offset = struct.unpack(bo + ("Q" if big else "I"), b[nxt:nxt + (8 if big else 4)])[0]
    return out


_TIFF_SIZE_TAGS = (256, 257, 258, 259, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 338,
                   339, 32997, 32998)


def _tiff_field(rng: random.Random, b: bytearray) -> None:
    entries = _tiff_entries(bytes(b))
    if not entries:
        return _set_int(rng, b)
    preferred = [e for e in entries if e[1] in _TIFF_SIZE_TAGS]
    at, _tag, bo, size = rng.choice(preferred if preferred and rng.random() < 0.8 else entries)
    big = size == 20
    what = rng.random()
    if what < 0.5:  # the value (first inline slot)
        value = rng.choice(INTERESTING)
        v_at = at + (12 if big else 8)
        typ = struct.unpack(bo + "H", b[at + 2:at + 4])[0]
        fmt = {3: "H", 4: "I", 16: "Q"}.get(typ, "I")
        value %= 1 << (8 * struct.calcsize(fmt))
        b[v_at:v_at + struct.calcsize(fmt)] = struct.pack(bo + fmt, value)
    elif what < 0.8:  # the count
        c_at = at + 4
        fmt = "Q" if big else "I"
        b[c_at:c_at + struct.calcsize(fmt)] = struct.pack(
            bo + fmt, rng.choice(INTERESTING) % (1 << (8 * struct.calcsize(fmt))))
    else:  # the type
        b[at + 2:at + 4] = struct.pack(bo + "H", rng.choice((0, 1, 2, 3, 4, 5, 7, 11, 12, 13,
                                                             16, 17, 18, 99)))


# ----------------------------------------------------------------------------- NPY
_NPY_DESCRS = ("'<f4'", "'<f8'", "'|u1'", "'<u2'", "'>i8'", "'|b1'", "'<c8'", "'|O'", "'|V4'",
               "'<U3'", "'<M8[s]'", "'<f2'", "[('a', '<f4')]", "('<f4', (2,))", "'<i4'")


def _npy_header(rng: random.Random, b: bytearray) -> None:
    text = bytes(b[:512]).decode("latin-1")
    what = rng.random()
    if what < 0.45:
        dims = [rng.choice((0, 1, 2, 3, 1000, 65536, 2**31, 2**40, 2**62, -1))
                for _ in range(rng.choice((0, 1, 2, 3, 3, 4, 40)))]
        shape = "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"
        text = re.sub(r"\(\d*(?:, ?\d+)*,?\)", shape, text, count=1)
    elif what < 0.75:
        text = re.sub(r"'descr': [^,]*(?:\([^)]*\))?[^,]*,", f"'descr': {rng.choice(_NPY_DESCRS)},",
                      text, count=1)
    elif what < 0.85:
        text = text.replace("False", "True") if "False" in text else text.replace("True", "False")
    elif what < 0.95:  # header length field
        if len(b) > 10:
            b[8:10] = struct.pack("<H", rng.choice(INTERESTING) % 65536)
        return
    else:  # version
        if len(b) > 7:
            b[6], b[7] = rng.choice(((1, 0), (2, 0), (3, 0), (0, 0), (9, 9)))
        return
    new = text.encode("latin-1")
    b[:512] = new


# ----------------------------------------------------------------------------- DICOM
_DICOM_TAGS = {  # (group, element) -> kind of value
    (0x0028, 0x0008): "IS", (0x0028, 0x0010): "US", (0x0028, 0x0011): "US",
    (0x0028, 0x0100): "US", (0x0028, 0x0101): "US", (0x0028, 0x0102): "US",
    (0x0028, 0x0103): "US", (0x0028, 0x0002): "US", (0x0028, 0x0004): "CS",
    (0x0028, 0x0030): "DS", (0x0028, 0x1053): "DS", (0x0028, 0x1052): "DS",
    (0x0018, 0x0050): "DS", (0x7FE0, 0x0010): "PX", (0x0002, 0x0010): "UI",
}
_TEXT_VALUES = (b"999999999", b"-1", b"0", b"abc", b"1e9", b"nan", b"inf", b"1\\2\\3", b"",
                b"65536", b"3.5", b"  ", b"\x00\x00")
_SYNTAXES = (b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.2",
             b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.5", b"1.2.840.10008.1.2.4.50",
             b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.4.201", b"1.2.3.4", b"")


def _dicom_field(rng: random.Random, b: bytearray) -> None:
    (group, elem), kind = rng.choice(list(_DICOM_TAGS.items()))
    hits = [m.start() for m in re.finditer(re.escape(struct.pack("<HH", group, elem)), bytes(b))]
    hits += [m.start() for m in re.finditer(re.escape(struct.pack(">HH", group, elem)), bytes(b))]
    if not hits:
        return _set_int(rng, b)
    at = rng.choice(hits)
    explicit = bytes(b[at + 4:at + 6]).isalpha()
    long_vr = explicit and bytes(b[at + 4:at + 6]) in (b"OB", b"OW", b"OF", b"SQ", b"UN", b"UT")
    len_at = at + (8 if long_vr else 6 if explicit else 4)
    len_size = 4 if (long_vr or not explicit) else 2
    val_at = len_at + len_size
    if rng.random() < 0.3 or kind == "PX":  # the length field
        value = rng.choice(INTERESTING) % (1 << (8 * len_size))
        b[len_at:len_at + len_size] = value.to_bytes(len_size, "little")
    elif kind == "US":
        b[val_at:val_at + 2] = (rng.choice(INTERESTING) % 65536).to_bytes(2, "little")
    elif kind == "UI":
        old = int.from_bytes(b[len_at:len_at + len_size], "little")
        new = rng.choice(_SYNTAXES)
        new += b"\x00" * (len(new) % 2)
        b[val_at:val_at + old] = new
        b[len_at:len_at + len_size] = len(new).to_bytes(len_size, "little")
    else:
        old = int.from_bytes(b[len_at:len_at + len_size], "little")
        new = rng.choice(_TEXT_VALUES)
        new += b" " * (len(new) % 2)
        b[val_at:val_at + old] = new
        b[len_at:len_at + len_size] = len(new).to_bytes(len_size, "little")


# ----------------------------------------------------------------------------- PNG
def _png_field(rng: random.Random, b: bytearray) -> None:
    if bytes(b[:8]) != b"\x89PNG\r\n\x1a\n" or len(b) < 33:
        return _set_int(rng, b)
    what = rng.random()
    if what < 0.6:  # IHDR: width, height, bit depth, colour type — with a valid CRC
        ihdr = bytearray(b[16:29])
        field = rng.choice(("w", "h", "depth", "ctype", "interlace"))
        if field in ("w", "h"):
            off = 0 if field == "w" else 4
            ihdr[off:off + 4] = (rng.choice(INTERESTING) % 2**32).to_bytes(4, "big")
        elif field == "depth":
            ihdr[8] = rng.choice((1, 2, 4, 8, 16, 0, 3, 32))
        elif field == "ctype":
            ihdr[9] = rng.choice((0, 2, 3, 4, 6, 1, 7))
        else:
            ihdr[12] = rng.choice((0, 1, 2))
        b[16:29] = ihdr
        b[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    else:  # a chunk with a lying length, or a large text chunk
        if rng.random() < 0.5:
            body = b"Comment\x00\x00" + zlib.compress(b"A" * rng.choice((10, 10**5, 10**6)))
            chunk = struct.pack(">I", len(body)) + b"zTXt" + body
            chunk += struct.pack(">I", zlib.crc32(b"zTXt" + body))
            b[33:33] = chunk
        else:
            b[33:37] = (rng.choice(INTERESTING) % 2**32).to_bytes(4, "big")


# ----------------------------------------------------------------------------- JSON
def _json_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if r < 0.1:
        n = rng.choice((10, 100, 1000, 20000))
        return json.loads("[" * n + "]" * n) if n < 500 else ["<deep>", n]
    choices = (
        lambda: rng.choice(INTERESTING) * rng.choice((1, -1)),
        lambda: rng.choice((0.0, -0.0, 1e-300, 1e300, 0.5, 1000.0, 1e6)),
        lambda: "x" * rng.choice((0, 1, 200, 10**5)),
        lambda: rng.choice((True, False, None)),
        lambda: [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))] if depth < 3 else [],
        lambda: {"bscan": _json_value(rng, depth + 1), "aline": _json_value(rng, depth + 1)}
        if depth < 3 else {},
        lambda: "../../etc/passwd",
        lambda: "2026-13-45",
    )
    return rng.choice(choices)()


def _dumps_with_markers(value) -> str:
    text = json.dumps(value)
    def deep(m: re.Match) -> str:
        n = int(m.group(1))
        return "[" * n + "]" * n
    return re.sub(r'\["<deep>", (\d+)\]', deep, text)


def _json_field(rng: random.Random, b: bytearray) -> None:
    try:
        data = json.loads(bytes(b))
    except (ValueError, RecursionError):
        return _flip_bits(rng, b)
    if not isinstance(data, dict):
        return _flip_bits(rng, b)
    what = rng.random()
    if what < 0.6 and data:
        key = rng.choice(sorted(data))
        data[key] = _json_value(rng)
    elif what < 0.7:
        data[rng.choice(("extra", "um_per_px", "notes", "volumes"))] = _json_value(rng)
    elif what < 0.8 and data:
        del data[rng.choice(sorted(data))]
    text = _dumps_with_markers(data)
    if what >= 0.8:  # raw-text tricks json.dumps never makes
        trick = rng.choice(("NaN", "Infinity", "-Infinity", "1" * 5000, "1e99999", "0." + "1" * 5000,
                            '"\\ud800"', "1" * 4301, "-" + "9" * 400))
        text = re.sub(r'(?<=: )[0-9.\-]+', lambda m: trick, text, count=1)
    b[:] = text.encode("utf-8", "surrogatepass")


FORMAT_AWARE = {".tif": _tiff_field, ".npy": _npy_header, ".dcm": _dicom_field,
                ".png": _png_field, ".json": _json_field}


def mutate(rng: random.Random, data: bytes, suffix: str) -> bytes:
    """One mutated copy of ``data`` (1-3 strategies; format-aware ones about half the time)."""
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        if not b:
            break
        aware = FORMAT_AWARE.get(suffix)
        op = aware if aware is not None and rng.random() < 0.55 else rng.choice(GENERIC)
        op(rng, b)
    return bytes(b)
