"""De-identification of DICOM bytes at the door: what the platform stores instead of the file received.

Every path into the platform (the drop sensor's ingest, ``aooct process``, uploads, the DICOM
receiver) passes a DICOM volume through :func:`deidentify_dicom_bytes` or
:func:`deidentify_dicom_file` before anything is written to the object store; the original is
never kept (its drop copy is replaced by the de-identified bytes when the drop is retired).
The profile:

* every attribute named in :data:`aooct_core.io.dicom.PHI_KEYWORDS` (the patient, people,
  places, visit identifiers and dates: the subset of PS3.15 Annex E's Basic Application
  Level Confidentiality Profile that occurs in ophthalmic exports) removed, at every
  nesting depth, and every private tag;
* the instance, series, study and frame-of-reference UIDs (and the file meta's copy)
  replaced by UIDs derived with a keyed HMAC-SHA256 from the original, so the same
  original UID always maps to the same new one within an installation (references stay
  consistent) but cannot be reversed or recomputed without the key;
* ``PatientIdentityRemoved = YES``, ``DeidentificationMethod`` naming this profile;
* pixel data, sampling (PixelSpacing, SliceThickness …) and laterality kept — the
  pipeline needs them;
* an image whose ``BurnedInAnnotation`` is ``YES`` is refused (text in the pixels cannot
  be removed by editing attributes).

The result says which attribute keywords were removed, so the platform can record them.

The case's ``subject_id`` (often a clinic number) is replaced at the same door by
:func:`pseudonymize_subject`: a keyed HMAC of it, the same for every case of that subject
within an installation (so per-subject statistics and splits still work); the platform keeps
the original only in its Admin-only subject map.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pydicom

from aooct_core.io.dicom import PHI_KEYWORDS
from aooct_core.io.errors import InputError
from aooct_core.io.phi import Identifier, identifiers_of_dicom

__all__ = ["DEID_PROFILE", "DeidentifiedDicom", "deidentify_dicom_bytes", "deidentify_dicom_file",
           "strip_identifiers", "dicom_identifiers",
           "looks_like_dicom", "pseudonymize_subject", "is_subject_pseudonym"]

DEID_PROFILE = ("aooct-basic-1: PS3.15 E.1 basic profile subset (PHI_KEYWORDS removed), private "
                "tags removed, UIDs replaced by keyed HMAC-SHA256")
_UID_KEYWORDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID",
                 "ReferencedSOPInstanceUID", "MediaStorageSOPInstanceUID")
_PSEUDONYM = re.compile(r"P-[0-9a-f]{16}")
#: "2.25." + a UUID-sized integer is the PS3.5 B.2 form of a UID derived without an org root.
_UID_ROOT = "2.25."


@dataclass(frozen=True)
class DeidentifiedDicom:
    """What :func:`deidentify_dicom_bytes` produced.

    Attributes
    ----------
    data : bytes
        The de-identified DICOM file (Part 10, with a rebuilt file meta).
    removed : tuple of str
        Attribute keywords removed (sorted), plus ``"<private tags>"`` when there were any.
    replaced_uids : tuple of str
        Keywords of the UIDs that were replaced.
    profile : str
        :data:`DEID_PROFILE`.
    patient_id : str or None
        The ``PatientID`` as received, for the caller's subject map (pseudonymize it with
        :func:`pseudonymize_subject`; never store it anywhere else).
    identifiers : tuple of Identifier
        The patient's names, IDs and birth date as received
        (:func:`aooct_core.io.phi.identifiers_of_dicom`), for screening the case's own
        names and notes (:mod:`aooct_core.io.phi`); held in memory only.
    """

    data: bytes
    removed: tuple[str, ...]
    replaced_uids: tuple[str, ...]
    profile: str = DEID_PROFILE
    patient_id: str | None = None
    identifiers: tuple[Identifier, ...] = ()

    def __repr__(self) -> str:   # never the bytes or the identifiers
        return (f"DeidentifiedDicom({len(self.data)} bytes, removed={self.removed!r}, "
                f"replaced_uids={self.replaced_uids!r})")


def looks_like_dicom(name: str, head: bytes) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a Part 10 preamble (``DICM`` at byte 128)."""
    return name.lower().endswith((".dcm", ".dicom")) or head[128:132] == b"DICM"


def _new_uid(uid: str, key: bytes) -> str:
    digest = hmac.new(key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
    return _UID_ROOT + str(int.from_bytes(digest[:16], "big"))


def strip_identifiers(ds: pydicom.Dataset, *, uid_key: bytes | None = None
                      ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Remove PHI attributes (every depth) and private tags from ``ds`` in place.

    Parameters
    ----------
    ds : pydicom.Dataset
    uid_key : bytes, optional
        When given, the study/series/instance/frame-of-reference UIDs (and the file meta's
        copy) are replaced by keyed-HMAC UIDs; None leaves UIDs as they are.

    Returns
    -------
    removed, replaced_uids : tuple of str
        Keywords removed (plus ``"<private tags>"``) and UID keywords replaced, sorted.
    """
    removed: set[str] = set()
    replaced: set[str] = set()
    stack = [ds]
    while stack:
        d = stack.pop()
        for elem in list(d):
            if elem.tag.is_private:
                continue  # removed below, in one pass
            if elem.keyword in PHI_KEYWORDS:
                removed.add(elem.keyword)
                del d[elem.tag]
            elif uid_key is not None and elem.keyword in _UID_KEYWORDS and elem.value:
                elem.value = _new_uid(str(elem.value), uid_key)
                replaced.add(elem.keyword)
            elif elem.VR == "SQ":
                stack.extend(elem.value)
    if any(e.tag.is_private for e in ds.iterall()):
        removed.add("<private tags>")
    ds.remove_private_tags()
    meta = getattr(ds, "file_meta", None)
    if uid_key is not None and meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = _new_uid(str(meta.MediaStorageSOPInstanceUID), uid_key)
        replaced.add("MediaStorageSOPInstanceUID")
    return tuple(sorted(removed)), tuple(sorted(replaced))


def deidentify_dicom_bytes(data: bytes, *, uid_key: bytes, source: str = "<dicom>") -> DeidentifiedDicom:
    """De-identify one DICOM file held in memory (:func:`deidentify_dicom_file` on a
    private temporary copy).

    Parameters
    ----------
    data : bytes
        The file as received.
    uid_key : bytes
        Secret key of the UID mapping (at least 16 bytes; one per installation).
    source : str
        Name used in error messages.

    Returns
    -------
    DeidentifiedDicom

    Raises
    ------
    InputError
        When the bytes are not DICOM within the read budget, or the image has burned-in
        annotation.
    """
    with tempfile.TemporaryDirectory(prefix="aooct-deid-") as tmp:
        path = Path(tmp) / "in.dcm"
        path.write_bytes(data)
        return deidentify_dicom_file(path, uid_key=uid_key, source=source)


def deidentify_dicom_file(path: str | Path, *, uid_key: bytes, source: str | None = None
                          ) -> DeidentifiedDicom:
    """De-identify the DICOM file at ``path`` (left as it is); the result is in memory.

    The file is parsed through the readers' bounded opener
    (:func:`aooct_core.io.dicom_open.open_deferred`: lengths, deflate and pixel sizes are
    checked against the read budget before anything is allocated); pixel data is read from
    the file only while the de-identified copy is written.

    Parameters
    ----------
    path : path-like
        The file as received (e.g. the DICOM receiver's streamed copy).
    uid_key : bytes
        Secret key of the UID mapping (at least 16 bytes; one per installation).
    source : str, optional
        Name used in error messages instead of ``path``.

    Returns
    -------
    DeidentifiedDicom

    Raises
    ------
    InputError
        When the file is not DICOM within the read budget, or the image has burned-in
        annotation.
    """
    from aooct_core.io.budget import default_budget
    from aooct_core.io.dicom_open import dicom_errors, open_deferred

    if len(uid_key) < 16:
        raise ValueError("uid_key must be at least 16 bytes (one secret per installation)")
    path = Path(path)
    name = source or path
    try:
        ds, _ = open_deferred(path, default_budget())
        with dicom_errors(path):
            burned = str(ds.get("BurnedInAnnotation", "")).strip().upper()
            if burned == "YES":
                raise InputError(name, "has BurnedInAnnotation = YES: its pixels carry text "
                                 "(often the patient's name) that cannot be removed by editing "
                                 "attributes — export the scan without annotations")
            patient_id = str(ds.get("PatientID", "") or "").strip() or None
            identifiers = tuple(identifiers_of_dicom(ds))
            removed, replaced = strip_identifiers(ds, uid_key=uid_key)
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = DEID_PROFILE[:64]
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)  # deferred values read from ``path``
    except InputError as exc:
        if source is not None and exc.path == path:  # name the file as the caller knows it
            raise InputError(source, exc.problem, problems=exc.problems) from exc
        raise
    return DeidentifiedDicom(out.getvalue(), removed, replaced, patient_id=patient_id,
                             identifiers=identifiers)


def dicom_identifiers(path: str | Path, *, source: str | None = None) -> list[Identifier]:
    """The patient's names, IDs and birth date in the DICOM file at ``path``
    (:func:`aooct_core.io.phi.identifiers_of_dicom`), read through the bounded opener
    without reading pixel data.

    Raises
    ------
    InputError
        When the file is not DICOM within the read budget.
    """
    from aooct_core.io.budget import default_budget
    from aooct_core.io.dicom_open import dicom_errors, open_deferred

    path = Path(path)
    try:
        ds, _ = open_deferred(path, default_budget())
        with dicom_errors(path):
            return identifiers_of_dicom(ds)
    except InputError as exc:
        if source is not None and exc.path == path:
            raise InputError(source, exc.problem, problems=exc.problems) from exc
        raise


def pseudonymize_subject(subject_id: str, *, key: bytes) -> str:
    """The installation's pseudonym of a study subject: ``"P-"`` + 16 hex digits.

    Parameters
    ----------
    subject_id : str
        The subject identifier as received (case.json's ``subject_id``).
    key : bytes
        The installation's secret (at least 16 bytes, :func:`resources.config.deid_uid_key`).

    Returns
    -------
    str
        A keyed HMAC-SHA256 of ``subject_id`` (64 bits): the same subject always gets the
        same pseudonym with the same key, and it cannot be reversed or recomputed without
        the key. A ``subject_id`` that already is a pseudonym is returned unchanged, so a
        de-identified case dropped again keeps its subject.

    Examples
    --------
    >>> p = pseudonymize_subject("MRN-5550123", key=bytes(16))
    >>> p.startswith("P-") and len(p) == 18 and "5550123" not in p
    True
    >>> pseudonymize_subject(p, key=bytes(16)) == p
    True
    """
    if len(key) < 16:
        raise ValueError("key must be at least 16 bytes (one secret per installation)")
    if is_subject_pseudonym(subject_id):
        return subject_id
    digest = hmac.new(key, b"aooct-subject\x00" + subject_id.encode("utf-8"), hashlib.sha256)
    return "P-" + digest.hexdigest()[:16]


def is_subject_pseudonym(subject_id: str) -> bool:
    """True when ``subject_id`` has the form :func:`pseudonymize_subject` gives."""
    return _PSEUDONYM.fullmatch(subject_id) is not None
