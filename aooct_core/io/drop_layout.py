"""Names in the drop, the folder (or ``s3://`` prefix) where cases arrive.

One place for them: the drop sensor (``aooct_assets/sensors.py``), ``raw_volume`` and the
DICOM receiver (``api/dicom_cases.py``) all read and write these folders.

* a case folder at the top: ``<name>/case.json`` + its volumes;
* :data:`QUARANTINE` ``/<name>/`` — refused, with ``REASON.txt`` saying why and what to fix;
* :data:`DUPLICATES` ``/<name>-<hash>/REASON.txt`` — content already requested (files listed);
* :data:`PROCESSED` ``/<name>-<hash>/`` — ingested, holding only de-identified copies;
* :data:`DEID_RECORD` inside a case folder — per volume, the attribute names removed before
  the folder was written (by the DICOM receiver): ``{"profile", "where", "files": {name:
  {"removed": [...], "replaced_uids": [...]}}}``; the platform adds them to the manifest.
"""

__all__ = ["QUARANTINE", "DUPLICATES", "PROCESSED", "DEID_RECORD", "RESERVED_PREFIXES"]

QUARANTINE = "_quarantine"
DUPLICATES = "_duplicates"
PROCESSED = "_processed"
DEID_RECORD = "deidentification.json"
#: Top-level names starting with these are the platform's own, never a case.
RESERVED_PREFIXES = ("_", ".")
