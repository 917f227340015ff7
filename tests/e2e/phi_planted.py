"""Planted identifiers for the PHI tests: a DICOM OPT writer that puts them in every place
they occur in ophthalmic exports, and searches of files and DB rows for them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

__all__ = ["OPT", "PLANTED", "NEEDLES", "WRITTEN", "write_opt", "dicom_case", "db_hits", "file_hits",
           "spelled_hits", "free_port"]

OPT = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
PLANTED = {"PatientName": "Doe^Jane", "PatientID": "MRN-5550123", "PatientBirthDate": "19610704",
           "InstitutionName": "Springfield Eye Clinic", "OtherPatientIDs": "OLDMRN-42",
           "ReferringPhysicianName": "Hibbert^Julius", "AccessionNumber": "ACC-777123",
           "StudyInstanceUID": "1.2.826.0.1.3680043.99.111", "SeriesInstanceUID": "1.2.826.0.1.3680043.99.222"}


def write_opt(path: Path, volume: np.ndarray, index: int, *, burned_in: bool = False,
              spacing_um: tuple[float, float, float] = (1.0, 1.5, 1.0)) -> None:
    """An OPT file of ``volume`` with every planted identifier; ``spacing_um`` is
    (bscan, depth, aline) µm/px, written as SliceThickness and PixelSpacing (mm)."""
    vol = np.clip(volume / volume.max() * 4000, 0, 65535).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPT
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.99.333.{index}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = OPT, meta.MediaStorageSOPInstanceUID, "OPT"
    ds.InstanceNumber = index + 1
    for key, value in PLANTED.items():
        setattr(ds, key, value)
    nested = Dataset()
    nested.PatientName = "Nested^Secret"
    ds.ReferencedPatientSequence = Sequence([nested])
    ds.add_new(0x00091010, "LO", "PRIVATE-MRN-5550123")         # a private tag
    ds.private_block(0x0011, "ACME OCT", create=True).add_new(0x01, "LO", "Doe^Jane")
    if burned_in:
        ds.BurnedInAnnotation = "YES"
    ds.NumberOfFrames = vol.shape[0]
    ds.Rows, ds.Columns = vol.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [f"{spacing_um[1] / 1000:.9g}", f"{spacing_um[2] / 1000:.9g}"]
    ds.SliceThickness = f"{spacing_um[0] / 1000:.9g}"
    ds.Laterality = "R"
    ds.PixelData = vol.tobytes()
    ds.save_as(path, enforce_file_format=True)


def dicom_case(folder: Path, *, burned_in: bool = False, case_id: str = "PHI1", notes: str | None = None) -> Path:
    from aooct_core.phantom import make_phantom
    ph = make_phantom(seed=21, shape_px=(32, 256, 48), case_id=case_id)
    folder.mkdir(parents=True)
    names = []
    for i, vol in enumerate(ph.volumes):
        names.append(f"vol_{i:02d}.dcm")
        g = ph.geometry
        write_opt(folder / names[-1], vol, i, burned_in=burned_in and i == 1,
                  spacing_um=(g.bscan_um_per_px, g.depth_um_per_px, g.aline_um_per_px))
    spec = {"schema_version": 1, "case_id": case_id, "subject_id": PLANTED["PatientID"], "eye": "OD",
            "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
            "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": g.depth_um_per_px,
            "volumes": names}
    if notes is not None:
        spec["notes"] = notes
    (folder / "case.json").write_text(json.dumps(spec))
    return folder


NEEDLES = [*PLANTED.values(), "Nested^Secret", "PRIVATE-MRN", "1.2.826.0.1.3680043.99"]


def db_hits(db) -> dict[str, list[str]]:
    """Planted identifiers in any row of any table except the Admin-only subject map."""
    from sqlalchemy import MetaData, select

    tables = MetaData()
    tables.reflect(db.engine)
    hits: dict[str, list[str]] = {}
    with db.engine.connect() as conn:
        for name, table in tables.tables.items():
            if name == "subject_map":
                continue
            for row in conn.execute(select(table)):
                text = repr(tuple(row))
                for needle in NEEDLES:
                    if needle in text:
                        hits.setdefault(needle, []).append(name)
    return hits


def file_hits(root: Path, *, db_file: str = "") -> dict[str, list[str]]:
    """Planted identifiers in any file under ``root`` but the metadata DB file ``db_file`` and
    its journals (searched row by row by :func:`db_hits`)."""
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if db_file and path.name.startswith(Path(db_file).name):
            continue
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for needle in NEEDLES:
                if needle.encode() in data:
                    hits.setdefault(needle, []).append(str(path.relative_to(root)))
    return hits


#: How a lab's own text spells the planted identifiers (a folder name, notes).
WRITTEN = {"folder": "DOE_JANE_19610704", "notes": "Jane Doe, MRN-5550123, born 1961-07-04: blinked a lot"}


def spelled_hits(root: Path, *, db_file: str = "") -> dict[str, list[str]]:
    """The identifiers as a lab writes them (:data:`WRITTEN`: ``DOE_JANE``, ``Jane Doe``, the
    birth date with dashes) in any path under ``root`` (case-insensitive) or file content."""
    import re

    needles = ["DOE_JANE", "Jane Doe", "1961-07-04", "19610704", "5550123"]
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        if re.search(r"(?i)(^|[^a-z])(doe|jane)([^a-z]|$)|19610704|5550123", rel):
            hits.setdefault("path", []).append(rel)
        if db_file and path.name.startswith(Path(db_file).name):
            continue
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for needle in needles:
                if needle.encode() in data:
                    hits.setdefault(needle, []).append(rel)
    return hits


def free_port() -> int:
    """A free TCP port on the loopback address (for a receiver under test)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
