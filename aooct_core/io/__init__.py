"""Reading and writing AO-OCT data: case folders, volumes (TIFF, ``.npy``, DICOM) and en face images.

Every reader returns float32 arrays with documented axes — volumes
``(bscan, depth, aline)``, en face images ``(row, col)`` — and rejects bad
input with :class:`InputError`, whose message names the file, the problem and
the fix. Every reader checks what a file *declares* (shape, sample type, nesting)
against a :class:`ReadBudget` before it allocates: see :mod:`aooct_core.io.budget`
for the limits and the ``AOOCT_MAX_*`` environment variables that raise them.
"""
from aooct_core.io.errors import CaseExistsError, InputError
from aooct_core.io.budget import ReadBudget, default_budget
from aooct_core.io.volume import VolumeInfo, probe_volume, read_volume, write_volume
from aooct_core.io.case import (
    Case,
    case_content_hash,
    commit_case_folder,
    content_hash_of_case,
    load_case,
    write_case,
)
from aooct_core.io.dicom import DicomVolume, deidentify_dicom, read_dicom_volume
from aooct_core.io.enface import EnFaceImage, read_enface

#: Alias kept for docs/ARCHITECTURE.md, which names the error ``VolumeFormatError``.
VolumeFormatError = InputError

__all__ = [
    "InputError",
    "CaseExistsError",
    "ReadBudget",
    "default_budget",
    "VolumeFormatError",
    "VolumeInfo",
    "probe_volume",
    "read_volume",
    "write_volume",
    "Case",
    "load_case",
    "write_case",
    "case_content_hash",
    "content_hash_of_case",
    "commit_case_folder",
    "DicomVolume",
    "read_dicom_volume",
    "deidentify_dicom",
    "EnFaceImage",
    "read_enface",
]
