"""Opening an untrusted DICOM file with pydicom without letting it allocate what the file claims.

pydicom reads a value with ``read(length)``, which allocates ``length`` bytes before it
learns the file is shorter, and inflates a Deflated Explicit VR data set whole in memory.
:func:`open_deferred` therefore walks the file meta itself, proves a deflated data set
inflates within the budget, parses with values over 1 KiB deferred (left on disk), and
refuses deferred values that run past the end of the file or whose pixel data are far
larger than what the file occupies on disk.
"""
from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import pydicom
from pydicom.tag import Tag

from aooct_core.io.budget import ENV_VARS, ReadBudget, check_expansion, disk_bytes, format_bytes
from aooct_core.io.errors import InputError, decoder_errors

__all__ = ["open_deferred", "dicom_errors", "PIXEL_TAGS", "NATIVE_SYNTAXES", "DEFLATED"]

#: Pixel Data, Float Pixel Data, Double Float Pixel Data.
PIXEL_TAGS = (Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009))
DEFLATED = "1.2.840.10008.1.2.1.99"
#: Transfer syntaxes whose pixel data are stored uncompressed.
NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", DEFLATED}
# File-meta VRs whose length field is 4 bytes (after 2 reserved bytes), PS3.5 7.1.2.
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
_INFLATE_CHUNK = 1 << 20


def dicom_errors(path: Path):
    """pydicom's failures on a malformed file, as InputError naming the cause's type."""
    return decoder_errors(path, ("pydicom",), lambda exc: (
        f"is not a readable DICOM file ({type(exc).__name__}: {str(exc)[:200]}) — it is "
        "corrupt, truncated or not DICOM; export it again"))


def _dataset_offset(path: Path) -> tuple[str, int]:
    """Transfer syntax and the byte offset where the data set starts (after the file meta).

    The file meta (group 0002, always explicit VR little endian, PS3.10 7.1) is walked
    here, refusing an element that runs past the end of the file before pydicom reads it.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(132)
        if head[128:132] != b"DICM":
            return "", 0
        syntax = ""
        while True:
            tag = fh.read(6)
            if len(tag) < 6 or tag[:2] != b"\x02\x00":
                return syntax, fh.tell() - len(tag)
            if not tag[4:6].isalpha():  # non-conformant implicit-VR meta: 4-byte length
                length = int.from_bytes(tag[4:6] + fh.read(2), "little")
            elif tag[4:6] in _LONG_VRS:
                fh.read(2)
                length = int.from_bytes(fh.read(4), "little")
            else:
                length = int.from_bytes(fh.read(2), "little")
            if fh.tell() + length > size:  # pydicom would read(length): allocate it first
                raise InputError(path, f"is truncated or corrupt: file meta element "
                                 f"({int.from_bytes(tag[:2], 'little'):04X},"
                                 f"{int.from_bytes(tag[2:4], 'little'):04X}) declares {length} "
                                 f"bytes but the file has {size} — export it again")
            value = fh.read(length)
            if tag[2:4] == b"\x10\x00":
                syntax = value.rstrip(b"\x00 ").decode("ascii", "replace")


def _check_deflated(path: Path, offset: int, budget: ReadBudget) -> None:
    """Refuse a Deflated Explicit VR file that inflates past the budget (pydicom inflates it
    whole in memory) — inflated once into a bounded buffer that is thrown away."""
    limit = max(budget.expansion_free_bytes, budget.max_expansion * disk_bytes(path))
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        try:
            while (chunk := fh.read(_INFLATE_CHUNK)) and total <= limit:
                total += len(d.decompress(chunk, _INFLATE_CHUNK))
                while d.unconsumed_tail and total <= limit:
                    total += len(d.decompress(d.unconsumed_tail, _INFLATE_CHUNK))
        except zlib.error:
            return  # pydicom reports the broken stream
    if total > limit:
        raise InputError(path, f"is Deflated Explicit VR and inflates to more than "
                         f"{format_bytes(limit)} from {format_bytes(disk_bytes(path))} on disk "
                         f"(over {budget.max_expansion:g}×) — a decompression bomb or a corrupt "
                         f"file; export it uncompressed (or raise {ENV_VARS['max_expansion']})")


class _ClampedReader(io.BufferedReader):
    """A binary file whose ``read(n)`` never asks for more than the bytes left.

    ``FileIO.read(n)`` and ``BufferedReader.read(n)`` allocate ``n`` bytes before reading;
    pydicom calls ``read(length)`` with lengths straight from the file, so a corrupt
    4 GB length in a 2 KB file exhausts memory. Clamping ``n`` changes nothing else: at
    the end of the file a short read is what pydicom gets anyway.
    """

    def __init__(self, path: Path):
        super().__init__(io.FileIO(str(path), "r"))  # str: pydicom re-opens by name
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size >= 0:
            size = min(size, max(self._size - self.tell(), 0))
        return super().read(size)


def open_deferred(path: Path, budget: ReadBudget) -> tuple[pydicom.Dataset, str]:
    """The data set with values over 1 KiB deferred (not read), and its transfer syntax.

    A deflated file is inflated only if it fits the budget; a pixel data element whose
    declared length is far beyond what the file holds on disk (a sparse file) is refused.
    """
    syntax, offset = _dataset_offset(path)
    if syntax == DEFLATED:
        _check_deflated(path, offset, budget)
    with dicom_errors(path):
        # Deferred values are re-read from the file at their offset, which a deflated file
        # does not have (its offsets are in the inflated stream): read those whole.
        with _ClampedReader(path) as fh:
            ds = pydicom.dcmread(fh, defer_size=None if syntax == DEFLATED else 1024)
        meta = getattr(ds, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        _check_deferred(ds, path)
        for tag in PIXEL_TAGS:
            raw = ds._dict.get(tag)
            length = getattr(raw, "length", None)
            if getattr(raw, "value", b"") is None and length not in (None, 0xFFFFFFFF):
                check_expansion(path, int(length), budget=budget,
                                compressed=syntax not in NATIVE_SYNTAXES)
    return ds, syntax


def _check_deferred(ds: pydicom.Dataset, path: Path) -> None:
    """Refuse deferred values that run past the end of the file.

    pydicom reads a deferred value with ``read(length)``, which allocates ``length``
    bytes before it finds the file shorter: a corrupt 4 GB length in a 2 KB file would
    exhaust memory.
    """
    size = path.stat().st_size
    stack = [ds]
    while stack:
        d = stack.pop()
        items = list(d._dict.items())
        # Every value at this level first: converting any element (a sequence, below)
        # makes pydicom read some others (PixelRepresentation) behind our back.
        for tag, raw in items:
            if getattr(raw, "value", b"") is None and hasattr(raw, "value_tell"):
                if raw.length != 0xFFFFFFFF and raw.value_tell + raw.length > size:
                    raise InputError(path, f"is truncated or corrupt: element {tag} declares "
                                     f"{raw.length} bytes from byte {raw.value_tell} but the "
                                     f"file has {size} — copy or export it again")
        for tag, raw in items:
            if getattr(raw, "VR", None) == "SQ":
                stack.extend(d[tag].value)
