"""DICOM instances received → de-identified at once → grouped by series → cases in the drop.

The receiver (:mod:`api.dicom_scp`) hands every instance it receives to
:meth:`SeriesAssembler.receive`, which de-identifies it before anything is kept
(:func:`aooct_core.io.deid.deidentify_dicom_file`: the same profile as the drop path), maps
the ``PatientID`` to the subject's pseudonym (the original goes only to the Admin-only
subject map) and stages the de-identified file under ``staging/<series>/``. A series that has
received nothing for ``idle_s`` seconds becomes one case: its instances (repeats of one
location) are the volumes, in ``InstanceNumber`` order, and ``case.json`` is written from the
DICOM geometry — ``PixelSpacing`` (rows = depth, columns = A-lines), ``SpacingBetweenSlices``
or ``SliceThickness`` (B-scans), ``AxialLengthOfTheEye``, ``Laterality`` — plus the lab's
defaults for what OPT does not carry (the retinal location). The case is written to the drop
volumes first and ``case.json`` last, where the drop sensor or ``aooct process`` takes it.

A case that lacks a required field (no laterality, no location default, no sampling) goes to
the drop's ``_quarantine/`` with ``REASON.txt`` saying what to add; nothing is invented.
Staged series survive a restart of the receiver and are assembled by the next one.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from aooct_core.atomicfile import write_atomic
from aooct_core.casefile import validate_case_dict
from aooct_core.geometry import retinal_mm_per_deg
from aooct_core.io import InputError
from aooct_core.io.deid import DEID_PROFILE, deidentify_dicom_file, pseudonymize_subject
from aooct_core.io.drop_layout import DEID_RECORD, QUARANTINE
from aooct_core.io.dicom import OPT_SOP_CLASS_UID, probe_dicom

__all__ = ["SeriesAssembler", "ReceivedInstance"]

LOG = logging.getLogger("aooct.dicom")
#: Longest wait between two attempts at assembling a series that failed (doubling from 1 s).
MAX_RETRY_S = 60.0
_EYES = {"R": "OD", "L": "OS"}


@dataclass(frozen=True)
class ReceivedInstance:
    """One staged instance: its series' staging key and its de-identified SOP Instance UID."""

    series: str
    sop_instance_uid: str
    removed: tuple[str, ...]


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SeriesAssembler:
    """Stage de-identified instances per series and write idle series to the drop as cases.

    Parameters
    ----------
    staging : Path
        Private folder for staged (already de-identified) instances.
    drop : resources.object_store.ObjectStore
        The drop the sensor watches.
    uid_key : bytes
        The installation's de-identification key (:func:`resources.config.deid_uid_key`).
    map_subject : callable (subject_id, pseudonym) -> pseudonym
        Records a subject in the Admin-only subject map and returns its pseudonym
        (:meth:`resources.metadata_db.MetadataDB.map_subject`).
    idle_s : float
        Seconds without a new instance after which a series is complete.
    defaults : dict
        case.json fields for what the DICOM lacks (``location_deg``, ``axial_length_mm``).
    max_instance_bytes : int
        Largest instance accepted.
    """

    def __init__(self, staging: Path, drop, *, uid_key: bytes, map_subject: Callable[[str, str], str],
                 idle_s: float, defaults: dict, max_instance_bytes: int):
        self.staging, self.drop, self.uid_key = Path(staging), drop, uid_key
        self.map_subject, self.idle_s, self.defaults = map_subject, float(idle_s), dict(defaults)
        self.max_instance_bytes = int(max_instance_bytes)
        self.staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._retry: dict[str, tuple[float, float]] = {}   # series → (next attempt, next backoff s)

    # receiving ---------------------------------------------------------------------
    def receive(self, path: Path, *, source: str, calling_ae: str = "") -> ReceivedInstance:
        """De-identify and stage the instance in file ``path`` (the receiver's temporary copy).

        Raises
        ------
        InputError
            Too large, not DICOM within the read budget, not Ophthalmic Tomography, burned-in
            annotation, or no series UID: the caller answers the sender with a failure status.
        """
        size = Path(path).stat().st_size
        if size > self.max_instance_bytes:
            raise InputError(source, f"is {size} bytes; this receiver takes instances up to "
                             f"{self.max_instance_bytes} bytes (AOOCT_DICOM_MAX_INSTANCE_BYTES)")
        res = deidentify_dicom_file(path, uid_key=self.uid_key, source=source)
        ds = pydicom.dcmread(io.BytesIO(res.data), stop_before_pixels=True)
        if str(ds.get("SOPClassUID", "")) != OPT_SOP_CLASS_UID:
            raise InputError(source, f"is SOP class {ds.get('SOPClassUID', 'unknown')}; only "
                             f"Ophthalmic Tomography ({OPT_SOP_CLASS_UID}) becomes a case")
        series_uid, sop_uid = str(ds.get("SeriesInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
        if not series_uid or not sop_uid:
            raise InputError(source, "has no SeriesInstanceUID or SOPInstanceUID; the sender must "
                             "set both (they group the repeats of one location into a case)")
        if res.patient_id:
            subject = self.map_subject(res.patient_id, pseudonymize_subject(res.patient_id, key=self.uid_key))
        else:  # no patient id: the study is its own subject (nothing to map back)
            subject = pseudonymize_subject(f"study:{ds.get('StudyInstanceUID', series_uid)}", key=self.uid_key)
        series = _key(series_uid)
        folder = self.staging / series
        name = f"{_key(sop_uid)}.dcm"
        with self._lock:
            folder.mkdir(exist_ok=True, mode=0o700)
            _write_atomic(folder / name, res.data)
            info = _read_json(folder / "series.json") or {"subject_id": subject, "instances": {},
                                                         "calling_ae": calling_ae}
            info["instances"][name] = {**_instance_facts(ds, folder / name),
                                       "removed": list(res.removed), "replaced_uids": list(res.replaced_uids)}
            if info["subject_id"] != subject:
                info.setdefault("problems", []).append(
                    "the series holds instances of more than one patient")
            _write_atomic(folder / "series.json", json.dumps(info, sort_keys=True).encode())
        LOG.info("staged instance %s of series %s (%d bytes, %d attributes removed)",
                 name, series, len(res.data), len(res.removed))
        return ReceivedInstance(series, sop_uid, res.removed)

    # assembling --------------------------------------------------------------------
    def flush(self, *, now: float | None = None, force: bool = False) -> list[str]:
        """Write every series idle for ``idle_s`` (every series with ``force``) to the drop.

        Returns the drop prefixes written (``_quarantine/...`` for refused cases).
        """
        now = time.time() if now is None else now
        written = []
        with self._lock:
            for folder in sorted(p for p in self.staging.iterdir() if p.is_dir()):
                files = list(folder.glob("*.dcm"))
                last = max((f.stat().st_mtime for f in files), default=0.0)
                wait_until, backoff = self._retry.get(folder.name, (0.0, 1.0))
                if not files or not (force or now - last >= self.idle_s) or (now < wait_until and not force):
                    continue
                try:
                    written.append(self._assemble(folder, files))
                    self._retry.pop(folder.name, None)
                except Exception:  # noqa: BLE001 - one series must not hold back the others
                    LOG.exception("assembling series %s failed; it stays staged and is tried again "
                                  "in %g s", folder.name, backoff)
                    self._retry[folder.name] = (now + backoff, min(2 * backoff, MAX_RETRY_S))
        return written

    def _assemble(self, folder: Path, files: list[Path]) -> str:
        info = _read_json(folder / "series.json") or {"instances": {}, "problems": ["series.json lost"]}
        facts = [info["instances"].get(f.name) for f in files]
        problems = list(info.get("problems", []))
        if any(f is None for f in facts):
            problems.append("an instance was staged without its facts")
            facts = [f or {} for f in facts]
        order = sorted(range(len(files)), key=lambda i: (facts[i].get("instance_number", 0), files[i].name))
        case_id = f"DCM-{folder.name[:12]}"
        spec, missing = self._case_json(case_id, info, [facts[i] for i in order])
        problems += missing
        if not problems:
            try:
                validate_case_dict(spec, source=f"{case_id}/case.json")
            except InputError as exc:
                problems.append(exc.problem)
        prefix = f"{QUARANTINE}/{case_id}" if problems else case_id
        if self.drop.exists(f"{prefix}/case.json"):  # the series was sent again later
            prefix = f"{prefix}-{int(time.time())}"
        # else: a folder without case.json is this series' own interrupted write; redone
        if problems:
            self.drop.put_bytes(f"{prefix}/REASON.txt", (
                "received by DICOM, not made a case: " + "; ".join(problems) +
                "\nadd what is missing to case.json and move the folder back into the drop "
                "(or set AOOCT_DICOM_CASE_DEFAULTS for the receiver)\n").encode())
        for n, i in enumerate(order):
            self.drop.put_file(f"{prefix}/{spec['volumes'][n]}", files[i])
        # What was removed at the door (names only), for the case's manifest (raw_volume).
        self.drop.put_bytes(f"{prefix}/{DEID_RECORD}", json.dumps({
            "profile": DEID_PROFILE, "where": "DICOM receiver", "files": {
                spec["volumes"][n]: {k: facts[i].get(k, []) for k in ("removed", "replaced_uids")}
                for n, i in enumerate(order)}}, indent=1).encode())
        self.drop.put_bytes(f"{prefix}/case.json", json.dumps(spec, indent=2).encode())
        for f in files:
            f.unlink()
        (folder / "series.json").unlink(missing_ok=True)
        folder.rmdir()
        LOG.info("series %s: %d instance(s) written to %s", folder.name, len(files), self.drop.uri(prefix))
        return prefix

    def _case_json(self, case_id: str, info: dict, facts: list[dict]) -> tuple[dict, list[str]]:
        missing = []
        spec: dict = {"schema_version": 1, "case_id": case_id, "subject_id": info.get("subject_id")}
        eyes = {f.get("eye") for f in facts}
        if len(eyes) == 1 and None not in eyes:
            spec["eye"] = eyes.pop()
        else:
            missing.append("Laterality is missing or differs between instances (give eye OD/OS)")
        if "location_deg" in self.defaults:
            spec["location_deg"] = self.defaults["location_deg"]
        else:
            missing.append("Ophthalmic Tomography carries no retinal location: add location_deg")
        lengths = {f.get("axial_length_mm") for f in facts} - {None}
        axial = lengths.pop() if len(lengths) == 1 else self.defaults.get("axial_length_mm")
        if axial is None:
            missing.append("no AxialLengthOfTheEye in the DICOM and no default: add axial_length_mm")
        else:
            spec["axial_length_mm"] = axial
        spacing = facts[0].get("spacing_um", {}) if facts else {}
        shape = facts[0].get("shape") if facts else None
        if any(f.get("spacing_um") != spacing or f.get("shape") != shape for f in facts):
            missing.append("the instances differ in shape or sampling; a case's repeats must match")
        if {"depth", "aline", "bscan"} <= set(spacing) and shape:
            spec["depth_um_per_px"] = round(spacing["depth"], 6)
            spec["um_per_px"] = {"bscan": round(spacing["bscan"], 6), "aline": round(spacing["aline"], 6)}
            if axial is not None:
                um_per_deg = 1000.0 * retinal_mm_per_deg(float(axial))
                spec["scan_field_deg"] = {"bscan": round(shape[0] * spacing["bscan"] / um_per_deg, 6),
                                          "aline": round(shape[2] * spacing["aline"] / um_per_deg, 6)}
        else:
            missing.append("PixelSpacing and SpacingBetweenSlices/SliceThickness are needed for the "
                           "sampling (depth_um_per_px, um_per_px)")
        spec["volumes"] = [f"vol_{i:02d}.dcm" for i in range(len(facts))]
        spec["notes"] = f"received by DICOM C-STORE from AE {info.get('calling_ae') or 'unknown'}"
        return spec, missing


def _instance_facts(ds: pydicom.Dataset, path: Path) -> dict:
    """What the case needs from one de-identified instance (no identifiers)."""
    lat = str(ds.get("Laterality", "") or ds.get("ImageLaterality", "")).strip().upper()
    axial = ds.get("AxialLengthOfTheEye")
    try:
        axial_mm = float(axial) if axial not in (None, "") else None
    except (TypeError, ValueError):
        axial_mm = None
    info = probe_dicom(path)
    try:
        number = int(ds.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        number = 0
    return {"eye": _EYES.get(lat), "axial_length_mm": axial_mm, "instance_number": number,
            "spacing_um": info.spacing_um, "shape": list(info.shape)}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
