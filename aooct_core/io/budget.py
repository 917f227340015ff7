"""Resource budgets: how much memory a file may make the readers allocate.

A file says how big it is — TIFF tags, the ``.npy`` header, DICOM Rows × Columns ×
NumberOfFrames, the PNG header, ``case.json`` nesting — and a reader that believes it
allocates what it is told. Every reader therefore checks the *declared* size against a
:class:`ReadBudget` before it allocates or decodes anything:

* the decoded result must fit ``max_volume_bytes`` (volumes, as float32) or
  ``max_image_pixels`` (en face images);
* the decoded samples may be at most ``max_expansion`` times the bytes the file really
  occupies on disk (``st_blocks``, so a sparse file counts only its written blocks). A
  compression bomb — kilobytes of deflate that inflate to gigabytes of zeros — and a
  sparse file that declares gigabytes in a hole are both refused here. Results smaller
  than ``expansion_free_bytes`` are not ratio-checked: tiny all-zero test images
  compress 1000:1 and cost nothing;
* ``case.json`` and sidecars are parsed within ``max_json_bytes``, ``max_json_depth``
  and ``max_json_number_chars`` (see :mod:`aooct_core.io.jsonsafe`).

The defaults come from the data: the largest AO-OCT volumes we know of are
1000 × 1000 × 1500 uint16 samples, 5.6 GiB as float32, so one volume may take 6 GiB —
room for one such volume and the pipeline's working copies on a 24 GB machine. En face
images (AOSLO montages, projections) stay far below 128 Mi pixels (512 MiB as float32;
Pillow itself refuses PNGs over 179 M pixels). Speckled OCT samples compress 1.5-3×
(deflate, RLE); even a volume padded with zeros after registration stays under 10×, so
50× expansion is generous while a deflate bomb (~1000×) or a sparse file is refused. A
deployment with more (or less) memory sets the environment variables below; values
are bytes or counts, with an optional ``KiB``/``MiB``/``GiB`` (or ``K``/``M``/``G``)
suffix, e.g. ``AOOCT_MAX_VOLUME_BYTES=16GiB``.

=================================  ==============================  ==============
environment variable               field                           default
=================================  ==============================  ==============
``AOOCT_MAX_VOLUME_BYTES``         ``max_volume_bytes``            6 GiB
``AOOCT_MAX_IMAGE_PIXELS``         ``max_image_pixels``            128 Mi (11585²)
``AOOCT_MAX_EXPANSION``            ``max_expansion``               50
``AOOCT_MAX_JSON_BYTES``           ``max_json_bytes``              1 MiB
``AOOCT_MAX_RESAMPLE_PIXELS``      ``max_resample_pixels``         128 Mi
=================================  ==============================  ==============
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from aooct_core.io.errors import InputError

__all__ = ["ReadBudget", "default_budget", "ENV_VARS", "disk_bytes", "check_volume_size",
           "check_image_size", "check_expansion", "check_sparse", "check_resample",
           "format_bytes"]

_KIB, _MIB, _GIB = 1 << 10, 1 << 20, 1 << 30

#: Environment variable for each configurable :class:`ReadBudget` field.
ENV_VARS = {
    "max_volume_bytes": "AOOCT_MAX_VOLUME_BYTES",
    "max_image_pixels": "AOOCT_MAX_IMAGE_PIXELS",
    "max_expansion": "AOOCT_MAX_EXPANSION",
    "max_json_bytes": "AOOCT_MAX_JSON_BYTES",
    "max_resample_pixels": "AOOCT_MAX_RESAMPLE_PIXELS",
}


@dataclass(frozen=True)
class ReadBudget:
    """Limits on what one file may make a reader allocate.

    Attributes
    ----------
    max_volume_bytes : int
        Decoded size of one volume as float32 (what :func:`~aooct_core.io.read_volume`
        returns), bytes.
    max_image_pixels : int
        Pixels (rows × columns) of one en face image.
    max_expansion : float
        Largest ratio of decoded sample bytes to bytes allocated on disk.
    expansion_free_bytes : int
        Decoded sample bytes below which the expansion is not checked.
    max_json_bytes : int
        Size of a ``case.json`` or sidecar file.
    max_json_depth : int
        Nesting of JSON arrays and objects (``case.json`` needs 2).
    max_json_number_chars : int
        Characters in one JSON number (a float64 needs at most 24).
    max_resample_pixels : int
        Pixels of an image after the resampling done before inference
        (:func:`ml.inference.detect_cells`, :func:`ml.inference.segment_vessels`).
    """

    max_volume_bytes: int = 6 * _GIB
    max_image_pixels: int = 128 * _MIB
    max_expansion: float = 50.0
    expansion_free_bytes: int = 64 * _MIB
    max_json_bytes: int = 1 * _MIB
    max_json_depth: int = 32
    max_json_number_chars: int = 100
    max_resample_pixels: int = 128 * _MIB

    @classmethod
    def from_env(cls, environ=None) -> "ReadBudget":
        """Defaults, overridden by the variables of :data:`ENV_VARS` that are set.

        Raises
        ------
        InputError
            When a variable is set to something that is not a positive size.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = ENV_VARS.get(f.name)
            if name and environ.get(name, "").strip():
                values[f.name] = _parse_size(name, environ[name], integer=f.type != "float")
        return cls(**values)


def default_budget() -> ReadBudget:
    """The budget in force: :class:`ReadBudget` defaults with environment overrides."""
    return ReadBudget.from_env()


_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([KMG]i?B?|B)?\s*$", re.I)


def _parse_size(name: str, text: str, *, integer: bool) -> int | float:
    m = _SIZE_RE.match(text)
    value = float(m.group(1)) if m else math.nan
    unit = (m.group(2) or "").upper()[:1] if m else ""
    value *= {"K": _KIB, "M": _MIB, "G": _GIB}.get(unit, 1)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"${name}", f"is {text!r}, not a positive size — give a number, "
                         "optionally with KiB/MiB/GiB, e.g. 8GiB, or unset it for the default")
    return int(value) if integer else value


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style text for messages."""
    for unit, size in (("GiB", _GIB), ("MiB", _MIB), ("KiB", _KIB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def disk_bytes(path: str | Path) -> int:
    """Bytes ``path`` really occupies: allocated blocks, so holes in sparse files count 0.

    Where the platform has no ``st_blocks`` (Windows), or reports 0 blocks for a
    non-empty file (some network and inline-data file systems), the apparent size.
    """
    st = os.stat(path)
    blocks = getattr(st, "st_blocks", None)
    return st.st_size if not blocks else min(st.st_size, blocks * 512)


def _shape_text(shape) -> str:
    return " × ".join(str(int(n)) for n in shape)


def check_volume_size(path: str | Path, shape, itemsize: int, *, budget: ReadBudget,
                      what: str = "volume") -> None:
    """Refuse a declared volume whose float32 result would exceed ``budget.max_volume_bytes``.

    Parameters
    ----------
    path : str or Path
        The file, for the message.
    shape : sequence of int
        Declared ``(bscan, depth, aline)`` shape (any length).
    itemsize : int
        Bytes per stored sample (for the message only).
    budget : ReadBudget
    what : str
        What is declared, for the message.

    Raises
    ------
    InputError
    """
    n = math.prod(int(s) for s in shape)
    if n * 4 > budget.max_volume_bytes:
        raise InputError(path, f"declares a {_shape_text(shape)} {what} ({itemsize}-byte "
                         f"samples), {format_bytes(n * 4)} as float32, more than the read budget "
                         f"of {format_bytes(budget.max_volume_bytes)} — if the file is genuine "
                         f"and this machine has the memory, raise the budget with "
                         f"{ENV_VARS['max_volume_bytes']} (e.g. "
                         f"{ENV_VARS['max_volume_bytes']}={-(-n * 4 * 2 // _GIB)}GiB)")


def check_image_size(path: str | Path, shape, *, budget: ReadBudget) -> None:
    """Refuse a declared en face image with more than ``budget.max_image_pixels`` pixels.

    Raises
    ------
    InputError
    """
    n = math.prod(int(s) for s in shape)
    if n > budget.max_image_pixels:
        raise InputError(path, f"declares a {_shape_text(shape)} image ({n} pixels), more than "
                         f"the read budget of {budget.max_image_pixels} pixels — if the image "
                         f"is genuine, raise {ENV_VARS['max_image_pixels']}")


def check_expansion(path: str | Path, decoded_bytes: int, *, budget: ReadBudget,
                    on_disk: int | None = None, compressed: bool = False) -> None:
    """Refuse a file whose declared samples are far larger than what it holds on disk.

    Parameters
    ----------
    path : str or Path
    decoded_bytes : int
        Declared sample bytes (shape × stored item size).
    budget : ReadBudget
    on_disk : int, optional
        Bytes that hold the samples; default :func:`disk_bytes` of ``path``.
    compressed : bool
        Whether the format compresses (only changes the message).

    Raises
    ------
    InputError
        Naming the expansion, its limit, and :data:`ENV_VARS` ``max_expansion``.
    """
    if decoded_bytes <= budget.expansion_free_bytes:
        return
    on_disk = disk_bytes(path) if on_disk is None else on_disk
    if decoded_bytes <= budget.max_expansion * max(on_disk, 1):
        return
    ratio = decoded_bytes / max(on_disk, 1)
    why = ("a decompression bomb (or a truncated file)" if compressed else
           "a sparse file (its data are holes, never written) or a truncated copy")
    raise InputError(path, f"declares {format_bytes(decoded_bytes)} of samples but occupies "
                     f"only {format_bytes(on_disk)} on disk ({ratio:.0f}× expansion; the limit "
                     f"is {budget.max_expansion:g}×) — {why}; real AO-OCT data compress far "
                     f"less. Copy or export the file again, or, if it is genuine, raise "
                     f"{ENV_VARS['max_expansion']}")


def check_sparse(path: str | Path, *, budget: ReadBudget) -> None:
    """Refuse a file whose apparent size is mostly holes (a sparse file).

    The readers parse every byte they are given and a hole reads as zeros, so a few
    kilobytes on disk can present gigabytes to parse (in DICOM, millions of empty
    elements). Files under ``budget.expansion_free_bytes`` are not checked.

    Raises
    ------
    InputError
    """
    size = os.stat(path).st_size
    on_disk = disk_bytes(path)
    if size > budget.expansion_free_bytes and size > budget.max_expansion * max(on_disk, 1):
        raise InputError(path, f"is {format_bytes(size)} long but occupies only "
                         f"{format_bytes(on_disk)} on disk: a sparse file, mostly holes that "
                         "were never written (an interrupted or pre-allocated copy) — copy or "
                         f"export it again (or raise {ENV_VARS['max_expansion']} if the "
                         "file system compresses and the file is genuine)")


def check_resample(shape, zoom, *, budget: ReadBudget | None = None,
                   what: str = "image") -> tuple[int, ...]:
    """Output shape of ``scipy.ndimage.zoom(image, zoom)``, refused if over budget.

    Parameters
    ----------
    shape : sequence of int
        Input shape, e.g. ``(row, col)``.
    zoom : sequence of float
        Per-axis zoom factors.
    budget : ReadBudget, optional
        Default :func:`default_budget`.
    what : str
        For the message.

    Returns
    -------
    tuple of int
        The shape ``ndimage.zoom`` will produce.

    Raises
    ------
    ValueError
        When the output would have more than ``budget.max_resample_pixels`` pixels.
    """
    budget = default_budget() if budget is None else budget
    zoom = tuple(float(z) for z in zoom)
    if not all(math.isfinite(z) and z > 0 for z in zoom):
        raise ValueError(f"cannot resample the {what}: zoom factors {zoom} must be positive "
                         "and finite — check um_per_px")
    out = tuple(max(1, round(int(n) * z)) for n, z in zip(shape, zoom))
    n = math.prod(out)
    if n > budget.max_resample_pixels:
        raise ValueError(f"resampling the {_shape_text(shape)} {what} by {zoom} would make "
                         f"{_shape_text(out)} pixels ({format_bytes(4 * n)} per float32 map), "
                         f"more than the budget of {budget.max_resample_pixels} pixels — the "
                         "pixel size (um_per_px) is probably wrong (mm or px/µm given as µm/px); "
                         f"fix it, or raise {ENV_VARS['max_resample_pixels']} if it is right")
    return out
