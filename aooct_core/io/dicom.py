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

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

from aooct_core.io.errors import InputError
from aooct_core.io.volume import VolumeInfo, _check_shape, _require_file

__all__ = ["PHI_KEYWORDS", "OPT_SOP_CLASS_UID", "DicomVolume", "read_dicom_volume",
           "probe_dicom", "phi_present", "deidentify_dicom"]

OPT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
_PIXEL_DATA = Tag(0x7FE0, 0x0010)

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

# Decoder / file errors pydicom raises on malformed input; anything else propagates.
_DICOM_ERRORS = (InvalidDicomError, ValueError, OSError, EOFError, KeyError, IndexError,
                 TypeError, AttributeError, NotImplementedError, RuntimeError)


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

    def _walk(d: pydicom.Dataset) -> None:
        for tag in list(d.keys()):
            if tag.group == 0x7FE0:  # pixel data: never needed here, and may be deferred
                continue
            elem = d[tag]
            if elem.keyword in PHI_KEYWORDS:
                found.add(elem.keyword)
            if elem.VR == "SQ":
                for item in elem.value:
                    _walk(item)

    _walk(ds)
    return tuple(sorted(found))


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
        ps = src.get("PixelSpacing")
        if ps is not None and len(ps) == 2 and "depth" not in out:
            # PixelSpacing = (between rows, between columns) in mm; rows are depth.
            out["depth"], out["aline"] = float(ps[0]) * 1000.0, float(ps[1]) * 1000.0
        for key in ("SpacingBetweenSlices", "SliceThickness"):
            value = src.get(key)
            if value is not None and "bscan" not in out and float(value) > 0:
                out["bscan"] = float(value) * 1000.0
    return {k: v for k, v in out.items() if np.isfinite(v) and v > 0}


def _read(path: Path, *, pixels: bool) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except _DICOM_ERRORS as exc:
        raise InputError(path, f"is not a readable DICOM file ({type(exc).__name__}: {exc}) — "
                         "it is corrupt, truncated or not DICOM; export it again") from exc


def _header_shape(ds: pydicom.Dataset, path: Path) -> tuple[int, int, int]:
    missing = [k for k in ("Rows", "Columns") if k not in ds]
    if missing:
        raise InputError(path, f"has no image ({', '.join(missing)} missing) — export the "
                         "OCT volume, not a report or structured document")
    spp = int(ds.get("SamplesPerPixel", 1))
    if spp != 1:
        raise InputError(path, f"has {spp} samples per pixel (colour) — OCT volumes are "
                         "single-channel; export the grayscale tomogram")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames < 2 and "NumberOfFrames" not in ds:
        shape: tuple[int, ...] = (int(ds.Rows), int(ds.Columns))
    else:
        shape = (n_frames, int(ds.Rows), int(ds.Columns))
    return _check_shape(shape, path, "the pixel data")


def probe_dicom(path: str | Path) -> VolumeInfo:
    """Shape, dtype, dropped PHI keywords and spacing of a DICOM volume, without its pixels.

    Raises
    ------
    InputError
        Not DICOM, no image, colour, not multi-frame, or pixel data shorter than
        the header says (truncated).
    """
    path = Path(path)
    _require_file(path)
    try:
        # Pixel data larger than 1 KiB is deferred: we get its declared length and offset only.
        ds = pydicom.dcmread(path, defer_size=1024)
    except _DICOM_ERRORS as exc:
        raise InputError(path, f"is not a readable DICOM file ({type(exc).__name__}: {exc}) — "
                         "it is corrupt, truncated or not DICOM; export it again") from exc
    shape = _header_shape(ds, path)
    bits = int(ds.get("BitsAllocated", 16))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{max(bits // 8, 1)}") if bits in (8, 16, 32) \
        else np.dtype("float32")
    if _PIXEL_DATA not in ds:
        raise InputError(path, "has no pixel data — export the OCT volume with its images")
    # Look at the element without decoding it: a deferred RawDataElement carries the declared
    # length and file offset (Dataset.get_item would read the whole pixel data).
    raw = ds._dict[_PIXEL_DATA]
    size = path.stat().st_size
    if getattr(raw, "value", None) is None and hasattr(raw, "value_tell"):
        length, end = raw.length, raw.value_tell + raw.length
    else:
        length, end = len(ds.PixelData), 0
    if length != 0xFFFFFFFF and end > size:
        raise InputError(path, f"is truncated: the pixel data need bytes up to {end} "
                         f"but the file has {size} — copy or export it again")
    needed = int(np.prod(shape)) * bits // 8
    if length is not None and length != 0xFFFFFFFF and length < needed:
        raise InputError(path, f"holds {length} bytes of pixel data but {shape} {bits}-bit "
                         f"samples need {needed} — the file is corrupt; export it again")
    return VolumeInfo(path=path, format="dicom", shape=shape, dtype=dtype,
                      dropped_phi=phi_present(ds), spacing_um=_spacing_um(ds))


def read_dicom_volume(path: str | Path) -> DicomVolume:
    """Read a multi-frame DICOM (Ophthalmic Tomography) volume without its PHI.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    DicomVolume
        ``volume`` float32 (n_bscans, n_depth, n_alines), ``dropped_phi``,
        ``spacing_um``.

    Raises
    ------
    InputError
        Corrupt / truncated / non-DICOM file, compressed pixel data without a
        decoder, colour or single-frame images, NaN/Inf samples.
    """
    path = Path(path)
    _require_file(path)
    ds = _read(path, pixels=True)
    shape = _header_shape(ds, path)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise InputError(path, "has no pixel data — export the OCT volume with its images")
    try:
        pixels = ds.pixel_array
    except _DICOM_ERRORS as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise InputError(path, f"pixel data could not be decoded ({type(exc).__name__}: {exc}; "
                         f"transfer syntax {syntax}) — the file is truncated or corrupt, or it is "
                         "compressed: install pylibjpeg/pylibjpeg-libjpeg or export "
                         "uncompressed") from exc
    pixels = np.asarray(pixels).reshape(shape)
    volume = pixels.astype(np.float32)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None or intercept is not None:
        volume = volume * np.float32(slope if slope is not None else 1.0) \
            + np.float32(intercept if intercept is not None else 0.0)
    from aooct_core.io.volume import check_finite

    check_finite(volume, path)
    return DicomVolume(volume=volume, dropped_phi=phi_present(ds), spacing_um=_spacing_um(ds),
                       sop_class_uid=str(ds.get("SOPClassUID")) if "SOPClassUID" in ds else None)


def deidentify_dicom(src: str | Path, dst: str | Path) -> tuple[str, ...]:
    """Write a copy of ``src`` without PHI attributes or private tags (atomic rename).

    Parameters
    ----------
    src, dst : str or Path

    Returns
    -------
    tuple of str
        The PHI keywords that were removed.
    """
    src, dst = Path(src), Path(dst)
    _require_file(src)
    ds = _read(src, pixels=True)
    removed = phi_present(ds)

    def _strip(d: pydicom.Dataset) -> None:
        for elem in list(d):
            if elem.keyword in PHI_KEYWORDS:
                del d[elem.tag]
            elif elem.VR == "SQ":
                for item in elem.value:
                    _strip(item)

    _strip(ds)
    ds.remove_private_tags()
    ds.PatientIdentityRemoved = "YES"
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        ds.save_as(tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return removed
