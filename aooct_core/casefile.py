"""The ``case.json`` schema (version 1): validation, parsing and writing.

A case folder holds ``case.json`` plus one or more repeated volumes of one
retinal location. ``case.json`` looks like::

    {
      "schema_version": 1,
      "case_id": "C017_OD_T2",
      "subject_id": "S001",
      "eye": "OD",
      "location_deg": {"horizontal": 2.0, "vertical": 0.0},
      "axial_length_mm": 24.0,
      "scan_field_deg": {"bscan": 1.0, "aline": 1.0},
      "depth_um_per_px": 2.0,
      "um_per_px": {"bscan": 2.2, "aline": 2.2},
      "volumes": ["vol_00.tif", "vol_01.tif", "vol_02.tif"],
      "acquired_at": "2026-01-31",
      "notes": "free text",
      "intensity_scale": "intensity"
    }

``um_per_px`` (an explicit lateral scale that replaces the Bennett eye model),
``acquired_at``, ``notes`` and ``intensity_scale`` (how the volumes are stored:
``intensity``, ``amplitude`` or ``db``; told from the speckle when absent, see
:mod:`aooct_core.preprocessing.scale`) are optional. Location follows the convention of
:mod:`aooct_core.geometry`: positive horizontal = temporal retina, positive
vertical = superior retina, in degrees from the fovea.

Validation collects every problem and raises one :class:`~aooct_core.io.InputError`
whose message names each field, what was wrong and the fix. Unknown fields are
errors (a typo such as ``"axial_lenght_mm"`` must not silently fall back to a
default).
"""
from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from aooct_core.atomicfile import write_atomic
from aooct_core.geometry import Acquisition
from aooct_core.io.budget import ReadBudget
from aooct_core.io.errors import InputError
from aooct_core.io.fields import FieldChecker, short_repr
from aooct_core.io.jsonsafe import load_json_file, loads_bounded

__all__ = ["SCHEMA_VERSION", "VOLUME_SUFFIXES", "CaseSpec", "validate_case_dict",
           "parse_case_json", "parse_case_bytes", "case_json_dict", "write_case_json",
           "LATERAL_UM_PER_PX_RANGE", "DEPTH_UM_PER_PX_RANGE", "MAX_SCAN_FIELD_DEG"]

SCHEMA_VERSION = 1
#: File suffixes a listed volume may have (lower case).
VOLUME_SUFFIXES = (".tif", ".tiff", ".npy", ".dcm")

_REQUIRED = ("schema_version", "case_id", "subject_id", "eye", "location_deg",
             "axial_length_mm", "scan_field_deg", "depth_um_per_px", "volumes")
_OPTIONAL = ("um_per_px", "acquired_at", "notes", "intensity_scale")
INTENSITY_SCALES = ("intensity", "amplitude", "db")
_AXIAL_LENGTH_RANGE_MM = (18.0, 35.0)
_MAX_LOCATION_DEG = 40.0
# Sampling and field limits: what real retinal imagers produce, with margin, so that a
# unit mistake (1000 µm/px is a millimetre given as µm; 0.001 is px/µm) fails here and
# not as gigabytes of resampling in the cone detector. AO-OCT samples 0.5-2 µm/px
# laterally and 1-4 µm/px axially in tissue over fields of a few degrees (Jonnal et al.,
# IOVS 57:OCT51, 2016, the review aooct_core/phantom/family.py draws its ranges from);
# AOSLO reaches ~0.3 µm/px; non-AO OCT and OCTA rasters ~10-15 µm/px laterally and
# ~4-7 µm/px axially over fields up to ~30° (e.g. a 30° Heidelberg Spectralis scan,
# 3.9 µm/px axial). The bounds admit all of these: lateral 0.1-20 µm/px, axial
# 0.1-20 µm/px, field <= 30°.
#: (min, max) lateral µm per pixel (``um_per_px``, and the geometry derived from the field).
LATERAL_UM_PER_PX_RANGE = (0.1, 20.0)
#: (min, max) axial µm per pixel in tissue (``depth_um_per_px``).
DEPTH_UM_PER_PX_RANGE = (0.1, 20.0)
#: Largest scanned field, degrees, on either axis (``scan_field_deg``).
MAX_SCAN_FIELD_DEG = 30.0
# A case holds a handful of repeats; a list longer than this is not a case description.
_MAX_VOLUMES = 1000


@dataclass(frozen=True)
class CaseSpec:
    """The validated content of a ``case.json`` (sampling comes from the volumes).

    Attributes
    ----------
    case_id, subject_id : str
    eye : {"OD", "OS"}
    location_deg : tuple of float
        ``(horizontal, vertical)`` degrees; positive = temporal / superior retina.
    axial_length_mm : float
    scan_field_deg : tuple of float
        ``(bscan, aline)`` degrees.
    depth_um_per_px : float
    um_per_px_override : tuple of float or None
        ``(bscan, aline)`` µm/px that replaces the eye model.
    volume_files : tuple of str
        Volume file names relative to the case folder, in repeat order.
    acquired_at, notes : str or None
    intensity_scale : {"intensity", "amplitude", "db"} or None
        How the volumes are stored; None: told from the speckle statistics.
    """

    case_id: str
    subject_id: str
    eye: str
    location_deg: tuple[float, float]
    axial_length_mm: float
    scan_field_deg: tuple[float, float]
    depth_um_per_px: float
    volume_files: tuple[str, ...]
    um_per_px_override: tuple[float, float] | None = None
    acquired_at: str | None = None
    notes: str | None = None
    intensity_scale: str | None = None

    def acquisition(self, sampling_px: tuple[int, int, int]) -> Acquisition:
        """Build the :class:`~aooct_core.geometry.Acquisition` once the volume shape is known.

        Parameters
        ----------
        sampling_px : tuple of int
            ``(n_bscans, n_depth, n_alines)`` of each volume.
        """
        extra = {k: v for k, v in (("acquired_at", self.acquired_at), ("notes", self.notes),
                                   ("intensity_scale", self.intensity_scale)) if v is not None}
        return Acquisition(
            case_id=self.case_id, subject_id=self.subject_id, eye=self.eye,  # type: ignore[arg-type]
            location_deg=self.location_deg, axial_length_mm=self.axial_length_mm,
            scan_field_deg=self.scan_field_deg,
            sampling_px=tuple(int(n) for n in sampling_px),  # type: ignore[arg-type]
            depth_um_per_px=self.depth_um_per_px, um_per_px_override=self.um_per_px_override,
            extra=extra)


def _check_volume_name(name: Any, checker: FieldChecker, index: int) -> str | None:
    field = f"volumes[{index}]"
    if not isinstance(name, str) or not name:
        checker.fail(field, f"must be a file name string; got {short_repr(name)}")
        return None
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name:
        checker.fail(field, f"must be a path relative to the case folder without '..'; got "
                     f"{short_repr(name)} — copy the file into the case folder")
        return None
    if pure.suffix.lower() not in VOLUME_SUFFIXES:
        checker.fail(field, f"has unsupported extension {short_repr(pure.suffix)} in "
                     f"{short_repr(name)} — use one of {', '.join(VOLUME_SUFFIXES)}")
        return None
    return name


def _check_date(value: Any, checker: FieldChecker) -> str | None:
    if not isinstance(value, str):
        checker.fail("acquired_at", f"must be an ISO date string like \"2026-01-31\"; got "
                     f"{short_repr(value)}")
        return None
    try:
        datetime.fromisoformat(value)  # Python >= 3.11 also takes plain dates
    except ValueError:
        checker.fail("acquired_at", f"must be an ISO 8601 date or date-time like "
                     f"\"2026-01-31\" or \"2026-01-31T09:30:00\"; got {short_repr(value)}")
        return None
    return value


def validate_case_dict(data: Any, *, source: str | Path = "case.json",
                       folder: str | Path | None = None) -> CaseSpec:
    """Validate a parsed ``case.json`` and return its :class:`CaseSpec`.

    Parameters
    ----------
    data : Any
        The decoded JSON.
    source : str or Path
        File name used in error messages.
    folder : str or Path, optional
        When given, every listed volume must exist as a file in this folder.

    Raises
    ------
    InputError
        Naming every bad field, what was wrong and the fix.
    """
    if not isinstance(data, dict):
        raise InputError(source, f"must hold a JSON object {{...}}; got {type(data).__name__}")
    c = FieldChecker()
    c.unknown(data, _REQUIRED + _OPTIONAL, "")
    for key in _REQUIRED:
        if key not in data:
            c.fail(key, "is missing — add it (see aooct_core/casefile.py for the schema)")
    get = data.get
    version = get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        c.fail("schema_version", f"must be {SCHEMA_VERSION}; got {short_repr(version)} — this "
               f"aooct reads schema_version {SCHEMA_VERSION}")
    case_id = c.ident(get("case_id"), "case_id") if "case_id" in data else None
    subject_id = c.ident(get("subject_id"), "subject_id") if "subject_id" in data else None
    eye = get("eye")
    if "eye" in data and eye not in ("OD", "OS"):
        c.fail("eye", f'must be "OD" or "OS"; got {short_repr(eye)} — use OD for the right eye, '
               "OS for the left")
    loc = c.pair(get("location_deg"), "location_deg", ("horizontal", "vertical"),
                 lo=-_MAX_LOCATION_DEG, hi=_MAX_LOCATION_DEG,
                 hint="give degrees of visual angle from the fovea (within ±40°)"
                 ) if "location_deg" in data else None
    al = c.number(get("axial_length_mm"), "axial_length_mm", lo=_AXIAL_LENGTH_RANGE_MM[0],
                  hi=_AXIAL_LENGTH_RANGE_MM[1],
                  hint="give the adult axial length in mm (typically 22-26)"
                  ) if "axial_length_mm" in data else None
    field_deg = c.pair(get("scan_field_deg"), "scan_field_deg", ("bscan", "aline"), lo=0.0,
                       hi=MAX_SCAN_FIELD_DEG, lo_open=True,
                       hint=f"give the scanned field in degrees (AO-OCT: a few; at most "
                       f"{MAX_SCAN_FIELD_DEG:g})") if "scan_field_deg" in data else None
    depth = c.number(get("depth_um_per_px"), "depth_um_per_px", lo=DEPTH_UM_PER_PX_RANGE[0],
                     hi=DEPTH_UM_PER_PX_RANGE[1],
                     hint="give the axial sampling in tissue in µm per pixel (AO-OCT: 1-4)"
                     ) if "depth_um_per_px" in data else None
    override = None
    if "um_per_px" in data:
        override = c.pair(get("um_per_px"), "um_per_px", ("bscan", "aline"),
                          lo=LATERAL_UM_PER_PX_RANGE[0], hi=LATERAL_UM_PER_PX_RANGE[1],
                          hint="give lateral µm per pixel (AO-OCT: 0.5-2; not mm or px/µm), "
                          "or remove 'um_per_px' to use the eye model")
    volumes: list[str] = []
    if "volumes" in data:
        raw = get("volumes")
        if not isinstance(raw, list) or not raw:
            c.fail("volumes", f'must be a non-empty list of file names like ["vol_00.tif"]; got '
                   f"{short_repr(raw)}")
        elif len(raw) > _MAX_VOLUMES:
            c.fail("volumes", f"lists {len(raw)} files; a case holds its repeats of one "
                   f"location (at most {_MAX_VOLUMES}) — split it into cases")
        else:
            for i, name in enumerate(raw):
                ok = _check_volume_name(name, c, i)
                if ok is not None:
                    volumes.append(ok)
            counts = collections.Counter(volumes)
            dupes = sorted(v for v, n in counts.items() if n > 1)
            if dupes:
                c.fail("volumes", f"lists {dupes} more than once — each repeat is its own file")
            if folder is not None:
                for name in volumes:
                    if not (Path(folder) / name).is_file():
                        c.fail("volumes", f"lists {short_repr(name)} but {Path(folder) / name} does "
                               "not exist — fix the name or copy the file into the case folder")
    acquired_at = _check_date(get("acquired_at"), c) if "acquired_at" in data else None
    intensity_scale = get("intensity_scale")
    if "intensity_scale" in data and intensity_scale not in INTENSITY_SCALES:
        c.fail("intensity_scale", f"must be one of {', '.join(map(repr, INTENSITY_SCALES))}; got "
               f"{short_repr(intensity_scale)} — 'amplitude' for |field| (magnitude), 'db' for "
               "10·log10 intensity, or remove the field to have it told from the speckle")
    notes = get("notes")
    if "notes" in data and not isinstance(notes, str):
        c.fail("notes", f"must be a string; got {short_repr(notes)}")
    if c.problems:
        problems = c.problems + ([f"and {c.more} more problems"] if c.more else [])
        raise InputError(source, "; ".join(problems), problems=problems)
    return CaseSpec(
        case_id=case_id, subject_id=subject_id, eye=eye, location_deg=loc,  # type: ignore[arg-type]
        axial_length_mm=al, scan_field_deg=field_deg, depth_um_per_px=depth,  # type: ignore[arg-type]
        volume_files=tuple(volumes), um_per_px_override=override,
        acquired_at=acquired_at, notes=notes, intensity_scale=intensity_scale,
    )


_EXAMPLE = '{"schema_version": 1, "case_id": "C001_OD", ...} (see aooct_core/casefile.py)'


def parse_case_json(path: str | Path, *, check_files: bool = True,
                    budget: ReadBudget | None = None) -> CaseSpec:
    """Read and validate ``case.json``.

    Parameters
    ----------
    path : str or Path
        The ``case.json`` file, or the case folder holding it.
    check_files : bool
        Also check that every listed volume exists next to ``case.json``.
    budget : ReadBudget, optional
        Limits on size (1 MiB), nesting and number length
        (default :func:`~aooct_core.io.budget.default_budget`).

    Returns
    -------
    CaseSpec
        Acquisition fields and volume file names; the sampling (volume shape)
        is filled in by :func:`aooct_core.io.load_case`.

    Raises
    ------
    InputError
        When the file is missing, too large, nested too deeply, holds an overlong
        number, is not JSON, or any field is invalid.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "case.json"
    if not path.is_file():
        raise InputError(path, "case.json not found — a case folder needs a case.json next to "
                         "its volumes (see aooct_core/casefile.py)")
    data = load_json_file(path, budget=budget, example=_EXAMPLE)
    return validate_case_dict(data, source=path, folder=path.parent if check_files else None)


def parse_case_bytes(data: bytes | str, *, source: str | Path = "case.json",
                     budget: ReadBudget | None = None) -> dict:
    """Decode ``case.json`` content (from an object store, an upload) and validate it.

    The bytes are parsed within the same budget as :func:`parse_case_json`; the
    listed volumes are not looked for.

    Parameters
    ----------
    data : bytes or str
        The file's content.
    source : str or Path
        Where it came from, for messages (e.g. an object-store URI).
    budget : ReadBudget, optional

    Returns
    -------
    dict
        The decoded ``case.json``, valid (``validate_case_dict`` passed).

    Raises
    ------
    InputError
    """
    decoded = loads_bounded(data, source=source, budget=budget, example=_EXAMPLE)
    validate_case_dict(decoded, source=source)
    return decoded


def case_json_dict(acquisition: Acquisition, volume_files: list[str] | tuple[str, ...]) -> dict:
    """The ``case.json`` content (schema version 1) for an acquisition.

    ``acquired_at`` and ``notes`` are taken from ``acquisition.extra`` when
    present. The result is validated, so a bad acquisition fails here, not
    when the case is read back.

    Parameters
    ----------
    acquisition : Acquisition
    volume_files : sequence of str
        Volume file names relative to the case folder, in repeat order.

    Returns
    -------
    dict
        JSON-serialisable ``case.json`` content.
    """
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "case_id": acquisition.case_id,
        "subject_id": acquisition.subject_id,
        "eye": acquisition.eye,
        "location_deg": {"horizontal": float(acquisition.location_deg[0]),
                         "vertical": float(acquisition.location_deg[1])},
        "axial_length_mm": float(acquisition.axial_length_mm),
        "scan_field_deg": {"bscan": float(acquisition.scan_field_deg[0]),
                           "aline": float(acquisition.scan_field_deg[1])},
        "depth_um_per_px": float(acquisition.depth_um_per_px),
        "volumes": [str(v) for v in volume_files],
    }
    if acquisition.um_per_px_override is not None:
        out["um_per_px"] = {"bscan": float(acquisition.um_per_px_override[0]),
                            "aline": float(acquisition.um_per_px_override[1])}
    for key in ("acquired_at", "notes", "intensity_scale"):
        if acquisition.extra.get(key) is not None:
            out[key] = acquisition.extra[key]
    validate_case_dict(out, source=f"case.json of case {acquisition.case_id!r}")
    return out


def write_case_json(path: str | Path, data: dict) -> Path:
    """Validate ``data`` and write it to ``path`` atomically (temp file + rename).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    validate_case_dict(data, source=path)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
