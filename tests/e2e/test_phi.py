"""PHI: a DICOM case with planted identifiers leaves none of them anywhere (issue 17 finding 3).

The case goes the platform's way in (drop → sensor → the production job); afterwards every
byte of the object store, the drop (including ``_processed/``) and the Dagster instance (event
logs, run storage), and every row of every metadata DB table but the Admin-only subject map,
is searched for each planted identifier. The case's ``subject_id`` is planted too (a clinic
number, as labs often use): it must survive only in the subject map.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster._core.test_utils import instance_for_test
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:
    sys.path.insert(0, _REPO)

from aooct_assets.sensors import make_drop_sensor  # noqa: E402
from aooct_assets.testing import make_test_resources, materialized, run_case, weights_for_tests  # noqa: E402

OPT = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
PLANTED = {"PatientName": "Doe^Jane", "PatientID": "MRN-5550123", "PatientBirthDate": "19610704",
           "InstitutionName": "Springfield Eye Clinic", "OtherPatientIDs": "OLDMRN-42",
           "ReferringPhysicianName": "Hibbert^Julius", "AccessionNumber": "ACC-777123",
           "StudyInstanceUID": "1.2.826.0.1.3680043.99.111", "SeriesInstanceUID": "1.2.826.0.1.3680043.99.222"}


def _opt(path: Path, volume: np.ndarray, index: int, *, burned_in: bool = False) -> None:
    vol = np.clip(volume / volume.max() * 4000, 0, 65535).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPT
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.99.333.{index}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = OPT, meta.MediaStorageSOPInstanceUID, "OPT"
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
    ds.PixelSpacing, ds.SliceThickness = ["0.0015", "0.001"], "0.001"
    ds.Laterality = "R"
    ds.PixelData = vol.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _dicom_case(folder: Path, *, burned_in: bool = False, case_id: str = "PHI1") -> Path:
    from aooct_core.phantom import make_phantom
    ph = make_phantom(seed=21, shape_px=(32, 256, 48), case_id=case_id)
    folder.mkdir(parents=True)
    names = []
    for i, vol in enumerate(ph.volumes):
        names.append(f"vol_{i:02d}.dcm")
        _opt(folder / names[-1], vol, i, burned_in=burned_in and i == 1)
    spec = {"schema_version": 1, "case_id": case_id, "subject_id": PLANTED["PatientID"], "eye": "OD",
            "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
            "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 1.5, "volumes": names}
    (folder / "case.json").write_text(json.dumps(spec))
    return folder


NEEDLES = [*PLANTED.values(), "Nested^Secret", "PRIVATE-MRN", "1.2.826.0.1.3680043.99"]


def _db_hits(db) -> dict[str, list[str]]:
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


def _hits(root: Path, *, db_file: str = "") -> dict[str, list[str]]:
    """Planted identifiers in any file under ``root`` but the metadata DB file ``db_file`` and
    its journals (searched row by row by :func:`_db_hits`)."""
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


@pytest.fixture
def platform(tmp_path, monkeypatch):
    monkeypatch.setenv("AOOCT_WEIGHTS_DIR", str(weights_for_tests(tmp_path / "weights")))
    monkeypatch.setenv("AOOCT_HOME", str(tmp_path / "home"))
    res = make_test_resources(tmp_path / "home")
    (tmp_path / "home" / "dagster").mkdir(parents=True)
    with instance_for_test(temp_dir=str(tmp_path / "home" / "dagster")) as instance:
        yield tmp_path / "home", res, instance


def _sensor_run(res, instance: DagsterInstance):
    sensor = make_drop_sensor(res["drop_store"], job_name="case_pipeline")
    cursor, reqs = None, []
    for _ in range(2):
        result = sensor(build_sensor_context(instance=instance, cursor=cursor))
        cursor = result.cursor
        reqs += list(result.run_requests or [])
    return reqs


def test_dicom_drop_keeps_no_planted_identifier_anywhere(platform, tmp_path):
    home, res, instance = platform
    case = _dicom_case(tmp_path / "incoming")
    for f in case.iterdir():
        res["drop_store"].put_file(f"scanner-push/{f.name}", f)
    (req,) = _sensor_run(res, instance)
    result = run_case(req.partition_key, res, drop_prefix="scanner-push", instance=instance)
    done = materialized(result)
    assert {"raw_volume", "corrected_volume", "enface_projections", "metrics"} <= set(done), set(done)
    store = res["object_store"]
    manifest = json.loads(store.get_bytes("cases/PHI1/raw/manifest.json"))
    files = manifest["deidentification"]["files"]
    assert set(files) == {"vol_00.dcm", "vol_01.dcm", "vol_02.dcm"}
    removed = set(files["vol_00.dcm"]["removed"])
    assert {"PatientName", "PatientID", "PatientBirthDate", "InstitutionName",
            "<private tags>"} <= removed
    assert {"StudyInstanceUID", "SOPInstanceUID"} <= set(files["vol_00.dcm"]["replaced_uids"])
    stored = pydicom.dcmread(store.local_path("cases/PHI1/raw/vol_00.dcm"))
    assert stored.PatientIdentityRemoved == "YES" and stored.Laterality == "R"
    assert [float(v) for v in stored.PixelSpacing] == [0.0015, 0.001]
    # the three volumes keep one study (consistent UID mapping) and their own instances
    uids = [pydicom.dcmread(store.local_path(f"cases/PHI1/raw/vol_0{i}.dcm")) for i in range(3)]
    assert len({u.StudyInstanceUID for u in uids}) == 1 and len({u.SOPInstanceUID for u in uids}) == 3
    assert not res["drop_store"].list_keys("scanner-push/")
    assert res["drop_store"].list_keys("_processed/")
    db = res["metadata_db"]
    assert _hits(home, db_file=db.engine.url.database) == {}, "planted identifiers found"
    assert _db_hits(db) == {}, "planted identifiers found in the metadata DB"
    pseudonym = db.get_case("PHI1")["subject_id"]
    assert pseudonym.startswith("P-") and db.subject_for(pseudonym) == PLANTED["PatientID"]
    assert json.loads(store.get_bytes("cases/PHI1/raw/case.json"))["subject_id"] == pseudonym


def test_burned_in_annotation_is_refused_and_nothing_is_stored(platform, tmp_path):
    home, res, instance = platform
    case = _dicom_case(tmp_path / "incoming", burned_in=True, case_id="PHI2")
    for f in case.iterdir():
        res["drop_store"].put_file(f"burned/{f.name}", f)
    (req,) = _sensor_run(res, instance)
    result = run_case(req.partition_key, res, drop_prefix="burned", instance=instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "BurnedInAnnotation" in str(failure.event_specific_data.error) or \
        "BurnedInAnnotation" in (failure.message or "")
    assert not res["object_store"].list_keys("cases/PHI2/raw/manifest.json")
    reason = res["drop_store"].get_bytes("_quarantine/burned/REASON.txt").decode()
    assert "BurnedInAnnotation" in reason
    assert not [k for k in res["object_store"].list_keys("cases/PHI2/") if k.endswith("vol_01.dcm")]


def test_dicom_upload_keeps_no_planted_identifier_anywhere(platform, tmp_path):
    """The review app's upload path: zip → validated in the worker → drop → sensor → job."""
    import zipfile

    from ui.upload import drop_for_ingest
    from ui.upload_worker import validate_in_worker

    home, res, instance = platform
    case = _dicom_case(tmp_path / "incoming", case_id="PHI3")
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as zf:
        for f in sorted(case.iterdir()):
            zf.write(f, f"PHI3/{f.name}")
    validated = validate_in_worker(upload, kind="zip", work_dir=tmp_path / "work")
    drop_for_ingest(validated, str(home / "drop"))
    (req,) = _sensor_run(res, instance)
    result = run_case(req.partition_key, res, drop_prefix="PHI3", instance=instance)
    assert "metrics" in set(materialized(result))
    db = res["metadata_db"]
    assert _hits(home, db_file=db.engine.url.database) == {}, "planted identifiers found"
    assert _db_hits(db) == {}, "planted identifiers found in the metadata DB"
    assert db.subject_for(db.get_case("PHI3")["subject_id"]) == PLANTED["PatientID"]
