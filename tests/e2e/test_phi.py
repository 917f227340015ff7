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

import pydicom
import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster._core.test_utils import instance_for_test

_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:
    sys.path.insert(0, _REPO)

from aooct_assets.sensors import make_drop_sensor  # noqa: E402
from aooct_assets.testing import make_test_resources, materialized, run_case, weights_for_tests  # noqa: E402
from phi_planted import PLANTED, WRITTEN, db_hits, dicom_case, file_hits, free_port, spelled_hits  # noqa: E402


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
    case = dicom_case(tmp_path / "incoming")
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
    assert [round(float(v) * 1000, 3) for v in stored.PixelSpacing] == [2.0, 6.035]  # depth, aline µm
    # the three volumes keep one study (consistent UID mapping) and their own instances
    uids = [pydicom.dcmread(store.local_path(f"cases/PHI1/raw/vol_0{i}.dcm")) for i in range(3)]
    assert len({u.StudyInstanceUID for u in uids}) == 1 and len({u.SOPInstanceUID for u in uids}) == 3
    assert not res["drop_store"].list_keys("scanner-push/")
    assert res["drop_store"].list_keys("_processed/")
    db = res["metadata_db"]
    assert file_hits(home, db_file=db.engine.url.database) == {}, "planted identifiers found"
    assert db_hits(db) == {}, "planted identifiers found in the metadata DB"
    pseudonym = db.get_case("PHI1")["subject_id"]
    assert pseudonym.startswith("P-") and db.subject_for(pseudonym) == PLANTED["PatientID"]
    assert json.loads(store.get_bytes("cases/PHI1/raw/case.json"))["subject_id"] == pseudonym


def test_burned_in_annotation_is_refused_and_nothing_is_stored(platform, tmp_path):
    home, res, instance = platform
    case = dicom_case(tmp_path / "incoming", burned_in=True, case_id="PHI2")
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
    # The refused drop is kept for the lab, without the patient's identifiers: the burned-in
    # file deleted (listed by sha256), the others de-identified, the subject pseudonymized.
    assert "vol_01.dcm: deleted" in reason and "sha256" in reason
    assert "vol_00.dcm: de-identified in place" in reason and "subject_id replaced" in reason
    assert not res["drop_store"].exists("_quarantine/burned/vol_01.dcm")
    assert file_hits(home, db_file=res["metadata_db"].engine.url.database) == {}, "planted identifiers found"


def test_dicom_drop_quarantined_by_the_sensor_keeps_no_planted_identifier(platform, tmp_path):
    home, res, instance = platform
    case = dicom_case(tmp_path / "incoming", case_id="PHI3")
    spec = json.loads((case / "case.json").read_text())
    del spec["eye"]                                    # invalid: the sensor refuses the drop
    (case / "case.json").write_text(json.dumps(spec))
    for f in case.iterdir():
        res["drop_store"].put_file(f"no-eye/{f.name}", f)
    assert _sensor_run(res, instance) == []
    drop = res["drop_store"]
    reason = drop.get_bytes("_quarantine/no-eye/REASON.txt").decode()
    assert "case.json is invalid" in reason and "vol_02.dcm: de-identified in place" in reason
    kept = pydicom.dcmread(drop.local_path("_quarantine/no-eye/vol_02.dcm"))
    assert kept.PatientIdentityRemoved == "YES" and "PatientName" not in kept
    assert json.loads(drop.get_bytes("_quarantine/no-eye/case.json"))["subject_id"].startswith("P-")
    assert file_hits(home, db_file=res["metadata_db"].engine.url.database) == {}, "planted identifiers found"


def test_quarantined_case_json_that_is_not_json_keeps_no_identifier(platform, tmp_path):
    """A half-written case.json (a trailing comma) naming the subject and, in its notes, the
    patient: kept for the lab to fix, with the pseudonym and ``[removed]`` in their place."""
    home, res, instance = platform
    case = dicom_case(tmp_path / "incoming", case_id="PHI5", notes=WRITTEN["notes"])
    text = (case / "case.json").read_text().rstrip().rstrip("}").rstrip() + ",\n}\n"
    (case / "case.json").write_text(text)
    for f in case.iterdir():
        res["drop_store"].put_file(f"broken/{f.name}", f)
    assert _sensor_run(res, instance) == []
    drop = res["drop_store"]
    reason = drop.get_bytes("_quarantine/broken/REASON.txt").decode()
    assert "case.json is invalid" in reason and "case.json: not valid JSON, kept for you to fix" in reason
    kept = drop.get_bytes("_quarantine/broken/case.json").decode()
    assert '"subject_id": "P-' in kept and "[removed]" in kept and "blinked a lot" in kept
    assert spelled_hits(home, db_file=res["metadata_db"].engine.url.database) == {}, "identifiers as written found"
    assert file_hits(home, db_file=res["metadata_db"].engine.url.database) == {}, "planted identifiers found"


def test_identifiers_in_the_folder_name_and_notes_are_kept_nowhere(platform, tmp_path):
    """Issue 17: the drop folder named after the patient, notes naming them: the folder is
    renamed to its token before the run, the notes redacted; neither spelling survives in the
    store, the drop, the Dagster instance or the metadata DB (the subject map aside)."""
    home, res, instance = platform
    case = dicom_case(tmp_path / "incoming", case_id="PHI4", notes=WRITTEN["notes"])
    for f in case.iterdir():
        res["drop_store"].put_file(f"{WRITTEN['folder']}/{f.name}", f)
    (req,) = _sensor_run(res, instance)
    renamed = req.run_config["ops"]["raw_volume"]["config"]["drop_prefix"]
    assert renamed.startswith("drop-")
    result = run_case(req.partition_key, res, drop_prefix=renamed, instance=instance)
    assert "metrics" in set(materialized(result))
    store, db = res["object_store"], res["metadata_db"]
    stored = json.loads(store.get_bytes("cases/PHI4/raw/case.json"))
    assert stored["notes"] == "[removed], born [removed]: blinked a lot"
    manifest = json.loads(store.get_bytes("cases/PHI4/raw/manifest.json"))
    # subject_id is the MRN in these headers, so it is named as well
    assert manifest["notes_redacted"] == ["PatientBirthDate", "PatientID", "PatientName", "subject_id"]
    assert res["drop_store"].list_keys(f"_processed/{renamed}-")
    assert spelled_hits(home, db_file=db.engine.url.database) == {}, "identifiers as written found"
    assert file_hits(home, db_file=db.engine.url.database) == {}, "planted identifiers found"
    assert db_hits(db) == {}, "planted identifiers found in the metadata DB"


def test_case_id_holding_the_patients_name_is_quarantined_and_nothing_stored(platform, tmp_path):
    """Only the DICOM headers tell that ``JANE-DOE-OD`` is the patient's name."""
    home, res, instance = platform
    case = dicom_case(tmp_path / "incoming", case_id="JANE-DOE-OD")
    for f in case.iterdir():
        res["drop_store"].put_file(f"{WRITTEN['folder']}/{f.name}", f)
    assert _sensor_run(res, instance) == []
    assert instance.get_dynamic_partitions("cases") == []
    drop = res["drop_store"]
    (reason_key,) = [k for k in drop.list_keys("_quarantine/") if k.endswith("REASON.txt")]
    reason = drop.get_bytes(reason_key).decode()
    assert "case_id holds the patient's PatientName" in reason
    assert not res["object_store"].list_keys("cases/")
    assert spelled_hits(home, db_file=res["metadata_db"].engine.url.database) == {}, "identifiers as written found"
    assert file_hits(home, db_file=res["metadata_db"].engine.url.database) == {}, "planted identifiers found"


def test_upload_whose_case_id_holds_an_identifier_is_refused_without_repeating_it(tmp_path):
    from api.uploads import validate_case_folder
    from aooct_core.io import InputError

    case = dicom_case(tmp_path / "incoming", case_id="MRN-5550123-OD")
    with pytest.raises(InputError) as err:
        validate_case_folder(case)
    assert "case_id holds the patient's PatientID, subject_id" in str(err.value)
    assert "5550123" not in str(err.value)


def test_dicom_upload_keeps_no_planted_identifier_anywhere(platform, tmp_path):
    """The review app's upload path: zip → validated in the worker → drop → sensor → job."""
    import zipfile

    from api.uploads import drop_for_ingest
    from api.upload_worker import validate_in_worker

    home, res, instance = platform
    case = dicom_case(tmp_path / "incoming", case_id="PHI3")
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
    assert file_hits(home, db_file=db.engine.url.database) == {}, "planted identifiers found"
    assert db_hits(db) == {}, "planted identifiers found in the metadata DB"
    assert db.subject_for(db.get_case("PHI3")["subject_id"]) == PLANTED["PatientID"]


def test_dicom_pushed_by_storescu_keeps_no_planted_identifier_anywhere(platform, tmp_path, caplog):
    """The DICOM receiver's path: dcmtk's storescu → receiver → drop → sensor → job; logs too."""
    import logging
    import shutil
    import subprocess
    import time

    from api.dicom_cases import SeriesAssembler
    from api.dicom_scp import ReceiverConfig, serve
    from resources.config import deid_uid_key

    if shutil.which("storescu") is None:
        pytest.skip("dcmtk's storescu is not installed (apt-get install dcmtk)")
    home, res, instance = platform
    case = dicom_case(tmp_path / "incoming", case_id="PHI4")
    db, drop = res["metadata_db"], res["drop_store"]
    cfg = ReceiverConfig(port=free_port(), peers=(("SCANNER", "127.0.0.1"),), idle_s=0.5)
    assembler = SeriesAssembler(
        home / "dicom-staging", drop, uid_key=deid_uid_key(), idle_s=cfg.idle_s,
        map_subject=lambda subject, pseudonym: db.map_subject(subject, pseudonym=pseudonym),
        defaults={"location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0},
        max_instance_bytes=1 << 30)
    caplog.set_level(logging.DEBUG)
    server, stop = serve(cfg, assembler, block=False)
    try:
        sent = subprocess.run(["storescu", "-aet", "SCANNER", "-aec", "AOOCT", "127.0.0.1", str(cfg.port),
                               *sorted(str(p) for p in case.glob("*.dcm"))],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 30
        while not [k for k in drop.list_keys("") if k.endswith("/case.json")] and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        server.shutdown()
    (key,) = [k for k in drop.list_keys("") if k.endswith("/case.json")]
    name = key.split("/")[0]
    spec = json.loads(drop.get_bytes(key))
    assert spec["eye"] == "OD" and spec["depth_um_per_px"] == 2.0 and len(spec["volumes"]) == 3
    assert spec["um_per_px"] == pytest.approx({"bscan": 9.0522, "aline": 6.0348}, abs=1e-3)
    assert not list((home / "dicom-staging").iterdir())
    (req,) = _sensor_run(res, instance)
    result = run_case(req.partition_key, res, drop_prefix=name, instance=instance)
    assert "metrics" in set(materialized(result))
    assert file_hits(home, db_file=db.engine.url.database) == {}, "planted identifiers found"
    assert db_hits(db) == {}, "planted identifiers found in the metadata DB"
    assert not [n for n in PLANTED.values() if n in caplog.text], "planted identifiers logged"
    assert db.subject_for(db.get_case(spec["case_id"])["subject_id"]) == PLANTED["PatientID"]
    manifest = json.loads(res["object_store"].get_bytes(f"cases/{spec['case_id']}/raw/manifest.json"))
    removed = manifest["deidentification"]["files"]["vol_00.dcm"]["removed"]
    assert {"PatientName", "PatientID", "InstitutionName", "<private tags>"} <= set(removed)
    assert manifest["deidentification"]["before_drop"]["where"] == "DICOM receiver"
