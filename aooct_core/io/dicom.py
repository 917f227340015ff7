"""DICOM Ophthalmic Tomography volumes, read without patient-identifying attributes.

A multi-frame OPT object stores one B-scan per frame: rows = depth, columns =
A-lines. We read only the pixel data and the sampling; attributes that identify
the patient, the people or the place (PS 3.15 Annex E basic profile, the subset
that occurs in ophthalmic exports) are never copied into our results, and the
readers report which of them were present so the platform can record that they
were dropped. :func:`deidentify_dicom` writes a copy without them (and without
private tags) for when the file itself must be stored.

References
----------
.. [1] DICOM PS3.3 A.52 "Ophthalmic Tomography Image IOD"; PS3.15 Annex E
       "Attribute Confidentiality Profiles".
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.tag import Tag

from aooct_core.io.budget import ReadBudget, check_expansion, check_volume_size, default_budget
from aooct_core.io.checks import check_finite, check_shape, require_file
from aooct_core.io.dicom_open import (
    DEFLATED, NATIVE_SYNTAXES, PIXEL_TAGS, dicom_errors, open_deferred,
)
from aooct_core.io.errors import InputError, decoder_errors
from aooct_core.io.volume import VolumeInfo

__all__ = ["PHI_KEYWORDS", "OPT_SOP_CLASS_UID", "DicomVolume", "read_dicom_volume",
           "probe_dicom", "phi_present", "deidentify_dicom"]

OPT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"

#: Attribute keywords treated as protected health information.
PHI_KEYWORDS = frozenset({
    # the patient
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
    "PatientAddress", "PatientTelephoneNumbers", "PatientComments", "PatientReligiousPreference",
    "EthnicGroup", "Occupation", "MilitaryRank", "BranchOfService", "MedicalRecordLocator",
    "CountryOfResidence", "RegionOfResidence", "AdditionalPatientHistory", "ResponsiblePerson",
    "PatientInsurancePlanCodeSequence",
    # people and places
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "RequestingPhysician", "StationName", "DeviceSerialNumber",
    # study identifiers and dates that link back to a visit
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime",
    "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime", "AcquisitionDateTime",
    "InstanceCreationDate", "InstanceCreationTime",
})

_FLOAT_BITS = {Tag(0x7FE0, 0x0008): 32, Tag(0x7FE0, 0x0009): 64}


@dataclass(frozen=True)
class DicomVolume:
    """A DICOM volume with everything identifying left behind.

    Attributes
    ----------
    volume : ndarray, float32, shape (n_bscans, n_depth, n_alines)
        Frames = B-scans; modality rescale (slope/intercept) applied when present.
    dropped_phi : tuple of str
        Keywords from :data:`PHI_KEYWORDS` present in the file (at any nesting depth).
    spacing_um : dict
        µm/px from PixelSpacing (depth, aline) and SpacingBetweenSlices or
        SliceThickness (bscan), where present.
    sop_class_uid : str or None
    """

    volume: np.ndarray
    dropped_phi: tuple[str, ...]
    spacing_um: dict = field(default_factory=dict)
    sop_class_uid: str | None = None


def phi_present(ds: pydicom.Dataset) -> tuple[str, ...]:
    """Sorted keywords of :data:`PHI_KEYWORDS` present anywhere in ``ds``."""
    found: set[str] = set()
    stack = [ds]  # iterative: a deeply nested file must not exhaust the Python stack
    while stack:
        d = stack.pop()
        for tag in list(d.keys()):
            if tag.group == 0x7FE0:  # pixel data: never needed here, and may be deferred
                continue
            elem = d[tag]
            if elem.keyword in PHI_KEYWORDS:
                found.add(elem.keyword)
            if elem.VR == "SQ":
                stack.extend(elem.value)
    return tuple(sorted(found))


def _numbers(value) -> list[float]:
    """A DS/IS value (one or several) as finite floats; [] when absent or not numeric."""
    if value is None or isinstance(value, (bytes, str)) and not str(value).strip():
        return []
    values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) \
        else [value]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return []
    return out if all(math.isfinite(v) for v in out) else []


def _spacing_um(ds: pydicom.Dataset) -> dict:
    """Sampling in µm/px from the top level or the shared functional groups."""
    sources = [ds]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            sources.insert(0, measures[0])
    out: dict[str, float] = {}
    for src in sources:
        ps = _numbers(src.get("PixelSpacing"))
        if len(ps) == 2 and "depth" not in out:
            # PixelSpacing = (between rows, between columns) in mm; rows are depth.
            out["depth"], out["aline"] = ps[0] * 1000.0, ps[1] * 1000.0
        for key in ("SpacingBetweenSlices", "SliceThickness"):
            value = _numbers(src.get(key))
            if len(value) == 1 and "bscan" not in out and value[0] > 0:
                out["bscan"] = value[0] * 1000.0
    return {k: v for k, v in out.items() if np.isfinite(v) and v > 0}


def _whole(ds: pydicom.Dataset, keyword: str, path: Path, default: int | None = None
           ) -> int | None:
    """An integer attribute (US or IS), refusing text, fractions and several values."""
    value = ds.get(keyword)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    numbers = _numbers(value)
    if len(numbers) != 1 or numbers[0] != int(numbers[0]) or numbers[0] < 0:
        raise InputError(path, f"{keyword} is {str(value)[:40]!r}, not one whole number — "
                         "the file is corrupt; export it again")
    return int(numbers[0])


def _header(path: Path, budget: ReadBudget) -> tuple[pydicom.Dataset, tuple[int, int, int],
                                                    np.dtype]:
    """The data set with its pixel data deferred, its shape and dtype, after every size check."""
    ds, syntax = open_deferred(path, budget)
    with dicom_errors(path):
        present = [t for t in PIXEL_TAGS if t in ds]
        spp = _whole(ds, "SamplesPerPixel", path, 1)
        rows, cols = _whole(ds, "Rows", path), _whole(ds, "Columns", path)
        frames = _whole(ds, "NumberOfFrames", path)
        bits = _whole(ds, "BitsAllocated", path, 16)
        signed = _whole(ds, "PixelRepresentation", path, 0) == 1
    missing = [k for k, v in (("Rows", rows), ("Columns", cols)) if v is None]
    if missing:
        raise InputError(path, f"has no image ({', '.join(missing)} missing) — export the "
                         "OCT volume, not a report or structured document")
    if spp != 1:
        raise InputError(path, f"has {spp} samples per pixel (colour) — OCT volumes are "
                         "single-channel; export the grayscale tomogram")
    shape = check_shape((rows, cols) if frames is None else (frames or 1, rows, cols),
                        path, "the pixel data")
    if not present:
        raise InputError(path, "has no pixel data — export the OCT volume with its images")
    tag = present[0]
    bits = _FLOAT_BITS.get(tag, bits)
    if bits not in (8, 16, 32, 64):
        raise InputError(path, f"has BitsAllocated {bits}; aooct reads 8-, 16-, 32- or 64-bit "
                         "samples — export the volume with 16-bit samples")
    kind = "f" if tag in _FLOAT_BITS else ("i" if signed else "u")
    dtype = np.dtype(f"{kind}{bits // 8}")
    check_volume_size(path, shape, dtype.itemsize, budget=budget)
    needed = math.prod(shape) * dtype.itemsize
    check_expansion(path, needed, budget=budget, compressed=syntax not in NATIVE_SYNTAXES)
    # Look at the element without decoding it: a deferred RawDataElement carries the declared
    # length and file offset (Dataset.get_item would read the whole pixel data).
    raw = ds._dict[tag]
    size = path.stat().st_size
    deferred = getattr(raw, "value", None) is None and hasattr(raw, "value_tell")
    with dicom_errors(path):
        length = raw.length if deferred else len(ds[tag].value or b"")
    end = raw.value_tell + raw.length if deferred else 0
    if length != 0xFFFFFFFF and end > size and syntax != DEFLATED:
        raise InputError(path, f"is truncated: the pixel data need bytes up to {end} "
                         f"but the file has {size} — copy or export it again")
    if syntax in NATIVE_SYNTAXES and length != 0xFFFFFFFF and length < needed:
        raise InputError(path, f"holds {length} bytes of pixel data but {shape} {bits}-bit "
                         f"samples need {needed} — the file is corrupt; export it again")
    return ds, shape, dtype


def probe_dicom(path: str | Path, *, budget: ReadBudget | None = None) -> VolumeInfo:
    """Shape, dtype, dropped PHI keywords and spacing of a DICOM volume, without its pixels.

    Parameters
    ----------
    path : str or Path
    budget : ReadBudget, optional
        Default :func:`~aooct_core.io.budget.default_budget`.

    Raises
    ------
    InputError
        Not DICOM, no image, colour, not multi-frame, pixel data shorter than
        the header says (truncated), or a declared size over the budget.
    """
    path = Path(path)
    budget = default_budget() if budget is None else budget
    require_file(path, budget=budget)
    ds, shape, dtype = _header(path, budget)
    with dicom_errors(path):
        return VolumeInfo(path=path, format="dicom", shape=shape, dtype=dtype,
                          dropped_phi=phi_present(ds), spacing_um=_spacing_um(ds))


def read_dicom_volume(path: str | Path, *, budget: ReadBudget | None = None) -> DicomVolume:
    """Read a multi-frame DICOM (Ophthalmic Tomography) volume without its PHI.

    Parameters
    ----------
    path : str or Path
    budget : ReadBudget, optional
        Size limits checked on the header before the pixel data are read
        (default :func:`~aooct_core.io.budget.default_budget`).

    Returns
    -------
    DicomVolume
        ``volume`` float32 (n_bscans, n_depth, n_alines), ``dropped_phi``,
        ``spacing_um``.

    Raises
    ------
    InputError
        Corrupt / truncated / non-DICOM file, compressed pixel data without a
        decoder, colour or single-frame images, NaN/Inf samples, or a declared
        size over the budget or far larger than the file.
    """
    path = Path(path)
    budget = default_budget() if budget is None else budget
    require_file(path, budget=budget)
    ds, shape, _ = _header(path, budget)
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
    with decoder_errors(path, ("pydicom",), lambda exc: (
            f"pixel data could not be decoded ({type(exc).__name__}: {str(exc)[:200]}; "
            f"transfer syntax {syntax}) — the file is truncated or corrupt, or it is "
            "compressed: install pylibjpeg/pylibjpeg-libjpeg or export uncompressed")):
        pixels = ds.pixel_array
        slope, intercept = _numbers(ds.get("RescaleSlope")), _numbers(ds.get("RescaleIntercept"))
        dropped, spacing = phi_present(ds), _spacing_um(ds)
        sop = str(ds.get("SOPClassUID")) if "SOPClassUID" in ds else None
    pixels = np.asarray(pixels)
    if pixels.size != math.prod(shape):
        raise InputError(path, f"decodes to {pixels.shape} samples but the header declares "
                         f"{shape} — the file is corrupt; export it again")
    volume = pixels.reshape(shape).astype(np.float32)
    del pixels
    if len(slope) == 1 and slope[0] != 1.0:
        volume *= np.float32(slope[0])  # in place: no second float32 copy
    if len(intercept) == 1 and intercept[0] != 0.0:
        volume += np.float32(intercept[0])
    check_finite(volume, path)
    return DicomVolume(volume=volume, dropped_phi=dropped, spacing_um=spacing, sop_class_uid=sop)


def deidentify_dicom(src: str | Path, dst: str | Path) -> tuple[str, ...]:
    """Write a copy of ``src`` without PHI attributes or private tags (atomic rename).

    Parameters
    ----------
    src, dst : str or Path

    Returns
    -------
    tuple of str
        The PHI keywords that were removed.

    Raises
    ------
    InputError
        ``src`` is not a readable DICOM volume within the read budget.
    """
    src, dst = Path(src), Path(dst)
    budget = default_budget()
    require_file(src, budget=budget)
    ds, _ = open_deferred(src, budget)  # sizes checked before the pixel data are read
    from aooct_core.io.deid import strip_identifiers  # deid imports PHI_KEYWORDS from here

    with dicom_errors(src):
        removed = phi_present(ds)
        strip_identifiers(ds)  # UIDs kept: this copy is for the user, not the store
        ds.PatientIdentityRemoved = "YES"
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with dicom_errors(src):
            ds.save_as(tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return removed
