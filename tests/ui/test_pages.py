"""AppTest of every page against a seeded SQLite DB: renders, actions, role denials, audit."""
from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from ui_helpers import APP, open_page
from ui.seed import DEMO_PASSWORD

ALLOWED = {"cases": "Labeler", "review": "Researcher", "labeling": "Labeler", "upload": "Tech",
           "dashboards": "Researcher", "models": "ML Engineer", "admin": "Admin"}
DENIED = {"upload": "Researcher", "labeling": "Tech", "dashboards": "Labeler", "models": "Researcher",
          "admin": "ML Engineer"}


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _images(at):
    return [e for e in _walk(at.main) if type(e).__name__ == "Image"]


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def _texts(at):
    return " ".join(str(e.value) for kind in ("error", "success", "warning", "info", "caption", "markdown")
                    for e in getattr(at, kind))


def test_sign_in_with_password_and_wrong_password(ui_env):
    db = ui_env[0]
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input[0].input("tech")
    at.text_input[1].input("wrong")
    _button(at, "Login").click().run()
    assert "incorrect" in _texts(at)
    failed = db.list_audit(actor="tech", action="sign_in_failed")
    assert len(failed) == 1 and not failed[0]["allowed"]
    assert failed[0]["detail"]["reason"] == "wrong_password"
    at.text_input[0].input("tech")
    at.text_input[1].input(DEMO_PASSWORD)
    _button(at, "Login").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Cases"]
    assert "Tech" in " ".join(m.value for m in at.sidebar.markdown)
    assert db.list_audit(actor="tech", action="sign_in")[0]["allowed"]  # newest first


def test_users_from_config_file(ui_env, tmp_path, monkeypatch):
    from ui.auth import hash_password

    users = tmp_path / "users.yaml"
    users.write_text(json.dumps({"credentials": {"usernames": {"zoe": {
        "name": "Zoe", "email": "zoe@example.org", "password": hash_password("pw-zoe-1", rounds=4),
        "roles": ["Researcher"]}}}}))
    monkeypatch.setenv("AOOCT_USERS_FILE", str(users))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input[0].input("zoe")
    at.text_input[1].input("pw-zoe-1")
    _button(at, "Login").click().run()
    assert "Researcher" in " ".join(m.value for m in at.sidebar.markdown)


def test_not_signed_in_sees_only_the_login_form(ui_env):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert not at.dataframe


# models is covered (with a registered model) by test_models_page_lists_registered_versions
@pytest.mark.parametrize("page, role", sorted((p, r) for p, r in ALLOWED.items() if p != "models"))
def test_every_page_renders_for_its_role(ui_env, page, role):
    at = open_page(page, role)
    assert not at.exception, at.exception
    assert not [e.value for e in at.error if "Access denied" in str(e.value)]
    assert at.title


@pytest.mark.parametrize("page, role", sorted(DENIED.items()))
def test_every_page_denies_and_audits_other_roles(ui_env, page, role):
    db = ui_env[0]
    at = open_page(page, role)
    assert not at.exception
    assert any("Access denied" in str(e.value) for e in at.error)
    row = db.list_audit(action=f"open_{page}")[0]
    assert row["allowed"] is False or row["allowed"] == 0
    assert row["actor"] == role.lower().replace(" ", "_") and row["detail"]["role"] == role


def test_cases_filters_and_open_review(ui_env):
    at = open_page("cases", "Researcher")
    assert "6 case(s) match" in _texts(at)
    at.selectbox(key="f_eye").set_value("OS").run()
    assert "3 case(s) match" in _texts(at)
    at.selectbox(key="f_eye").set_value("any").run()
    at.selectbox(key="f_qc").set_value("fail").run()
    assert "1 case(s) match" in _texts(at)
    at.selectbox(key="f_qc").set_value("any").run()
    at.selectbox(key="cases_pick").set_value(ui_env[2][1]).run()
    _button(at, "Open case review").click().run()
    assert [t.value for t in at.title] == ["Case review"]
    assert at.selectbox(key="review_case").value == ui_env[2][1]


def test_cases_pagination(ui_env):
    db = ui_env[0]
    for i in range(30):
        db.upsert_case(case_id=f"Z{i:03d}", subject_id="Z", eye="OD", eccentricity_deg=3.0, status="new")
    at = open_page("cases", "Tech")
    assert "36 case(s) match" in _texts(at) and len(at.dataframe[0].value) == 25
    assert "of 2" in at.number_input(key="page_no").label
    at.number_input(key="page_no").set_value(2).run()
    assert len(at.dataframe[0].value) == 11
    at.selectbox(key="f_status").set_value("new").run()
    assert "30 case(s) match" in _texts(at)


def test_review_overlays_bscan_and_decision(ui_env):
    db, _, ids, _ = ui_env
    at = open_page("review", "Tech", case_id=ids[0])
    assert not at.exception
    assert len(_images(at)) == 2  # en face + B-scan
    for key in ("tog_cones", "tog_rpe", "tog_capillaries", "tog_nfl"):
        at.toggle(key=key).set_value(True).run()
    at.selectbox(key="heat").set_value("cones").run()
    at.slider(key="contrast").set_value((5.0, 95.0)).run()
    at.selectbox(key="slab").set_value("svp").run()
    at.slider(key="bscan_index").set_value(3).run()
    assert not at.exception and len(_images(at)) == 2
    # rejecting needs a comment
    at.radio(key="decision").set_value("reject")
    _button(at, "Submit decision").click().run()
    assert "Say why" in _texts(at)
    at.radio(key="decision").set_value("approve")
    at.text_area(key="review_comment").input("motion fine, mosaic clear")
    _button(at, "Submit decision").click().run()
    assert not at.exception
    reviews = db.get_reviews(ids[0])
    assert [(r["reviewer"], r["decision"]) for r in reviews] == [("tech", "approve")]
    assert db.get_case(ids[0])["status"] == "approved"
    assert db.list_audit(actor="tech", action="review_approve")[0]["case_id"] == ids[0]


def test_review_refused_while_processing_and_rejection_spelled(ui_env):
    """Issue 22 bugs 1 and 3: no decision on a run still going (the run's end would have
    overwritten it), and "rejected", not "rejectd"."""
    db, _, ids, _ = ui_env
    from datetime import datetime, timezone

    db.record_run("run-again", ids[1], status="running", started_at=datetime.now(timezone.utc))
    db.set_case_status(ids[1], "processing")
    at = open_page("review", "Tech", case_id=ids[1])
    at.text_area(key="review_comment").input("looks fine")
    _button(at, "Submit decision").click().run()
    assert "still processing" in _texts(at) and db.get_reviews(ids[1]) == []
    assert db.get_case(ids[1])["status"] == "processing"
    at = open_page("review", "Tech", case_id=ids[0])
    at.radio(key="decision").set_value("reject")
    at.text_area(key="review_comment").input("blink in repeat 2")
    _button(at, "Submit decision").click().run()
    assert f"Case {ids[0]} rejected." in _texts(at), _texts(at)
    assert db.get_reviews(ids[0])[0]["run_id"] == f"seed-{ids[0]}"


def test_review_decision_denied_for_labeler(ui_env):
    db, _, ids, _ = ui_env
    at = open_page("review", "Labeler", case_id=ids[0])
    at.text_area(key="review_comment").input("looks good")
    _button(at, "Submit decision").click().run()
    assert any("may not review case" in str(e.value) for e in at.error)
    assert db.get_reviews(ids[0]) == []
    denied = db.list_audit(actor="labeler", action="review_case")[0]
    assert not denied["allowed"]


def test_labeling_points_are_versioned_per_annotator(ui_env):
    db, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    n_model = len(db.get_labels(ids[0]))
    assert n_model == 0
    at.number_input(key="lab_row").set_value(10.0)
    at.number_input(key="lab_col").set_value(12.0)
    at.button(key="add_point").click().run()
    _button(at, "Save new version").click().run()
    assert "version 1" in _texts(at)
    at.button(key="remove_point").click().run()  # removes the point at (10, 12)
    at.button(key="save_label").click().run()
    v = db.get_labels(ids[0], structure="cones", annotator="labeler")
    assert [r["version"] for r in v] == [1, 2]
    assert len(v[1]["payload"]["points_rc"]) == len(v[0]["payload"]["points_rc"]) - 1
    assert [10.0, 12.0] in v[0]["payload"]["points_rc"] and [10.0, 12.0] not in v[1]["payload"]["points_rc"]
    # a second annotator gets their own version 1; the first annotator's versions stay
    at2 = open_page("labeling", "Admin", case_id=ids[0])
    at2.button(key="move_point").click().run()
    at2.button(key="save_label").click().run()
    latest = db.get_labels(ids[0], structure="cones", latest_only=True)
    assert sorted((r["annotator"], r["version"]) for r in latest) == [("admin", 1), ("labeler", 2)]
    assert len(db.list_audit(action="save_label")) == 3


def test_labeling_mask_paint_and_erase(ui_env):
    db, _, ids, _ = ui_env
    at = open_page("labeling", "Labeler", case_id=ids[0])
    at.selectbox(key="label_structure").set_value("capillaries").run()
    at.number_input(key="lab_row").set_value(100.0)
    at.number_input(key="lab_col").set_value(5.0)
    at.button(key="paint").click().run()
    at.button(key="save_label").click().run()
    assert not at.exception
    from ui.labeling import payload_mask

    label = db.get_labels(ids[0], structure="capillaries")[0]
    mask = payload_mask(label["payload"])
    assert mask.shape == (128, 128) and mask[100, 5]
    assert label["payload"]["edits"][0]["op"] == "paint"


def test_dashboards_export_and_denied_export(ui_env):
    db, _, ids, tmp_path = ui_env
    db.set_case_status(ids[1], "rejected")
    at = open_page("dashboards", "Researcher")
    assert not at.exception
    at.radio(key="d_fmt").set_value("parquet")
    at.button(key="export_metrics").click().run()
    files = list((tmp_path / "exports").rglob("metrics.parquet"))
    # issue 22 bug 8: right below the export location the page names, not exports/exports/
    assert len(files) == 1 and files[0].parent.parent == tmp_path / "exports", files
    import polars as pl

    df = pl.read_parquet(files[0])
    assert {"case_id", "metric", "value", "ci_low", "ci_high", "subject_id", "qc"} <= set(df.columns)
    assert ids[1] not in df["case_id"].to_list() and ids[0] in df["case_id"].to_list()   # bug 8
    assert at.get("download_button"), "no browser download of the table"
    at.selectbox(key="d_eye").set_value("OD").run()
    at.radio(key="d_fmt").set_value("csv")
    at.button(key="export_metrics").click().run()
    csv = list((tmp_path / "exports").rglob("metrics.csv"))
    assert len(csv) == 1 and set(pl.read_csv(csv[0])["eye"].to_list()) == {"OD"}
    at.multiselect(key="d_reports").set_value([df["case_id"][0]]).run()
    at.button(key="export_reports").click().run()
    assert list((tmp_path / "exports").rglob("*_report.html"))
    assert len(db.list_audit(actor="researcher", action="export_metrics")) == 2

    at2 = open_page("dashboards", "ML Engineer")
    at2.button(key="export_metrics").click().run()
    assert any("may not export metrics" in str(e.value) for e in at2.error)
    assert not db.list_audit(actor="ml_engineer", action="export_metrics")[0]["allowed"]


def test_upload_valid_and_bad_folder(ui_env, tmp_path, monkeypatch):
    db = ui_env[0]
    monkeypatch.setenv("AOOCT_UPLOAD_ROOT", str(tmp_path))
    folder = tmp_path / "newcase"
    folder.mkdir()
    np.save(folder / "vol_00.npy", np.random.default_rng(0).random((8, 16, 8)).astype(np.float32))
    (folder / "case.json").write_text(json.dumps({
        "schema_version": 1, "case_id": "UP1", "subject_id": "S9", "eye": "OS",
        "location_deg": {"horizontal": 1.0, "vertical": 0.0}, "axial_length_mm": 24.0,
        "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0,
        "volumes": ["vol_00.npy"]}))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "no-daemon-here"))
    at = open_page("upload", "Tech")
    at.text_input(key="upload_folder").input("newcase")
    at.button(key="upload_folder_go").click().run()
    # issue 22: no daemon runs the drop sensor here, so the page does not say "queued"
    assert "will not be processed yet" in _texts(at) and "queued for ingest" not in _texts(at)
    assert "aooct process" in _texts(at)
    assert (tmp_path / "drop" / "UP1" / "case.json").is_file()
    assert db.list_audit(actor="tech", action="upload")[0]["case_id"] == "UP1"
    at.text_input(key="upload_folder").input("nope")
    at.button(key="upload_folder_go").click().run()
    assert any("Rejected" in str(e.value) for e in at.error)
    at.text_input(key="upload_folder").input("../../etc")
    at.button(key="upload_folder_go").click().run()
    assert any("outside" in str(e.value) for e in at.error)
    assert len(db.list_audit(actor="tech", action="upload_rejected")) == 2


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_upload_zip_valid_and_zip_slip(ui_env, tmp_path, monkeypatch):
    """The page's zip path: a valid zip is queued; a zip-slip zip is refused, audited, nothing dropped."""
    import io
    import time

    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster._daemon.types import DaemonHeartbeat

    home = tmp_path / "dagster"        # a daemon that beats: the upload is really queued
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "SENSOR", "d1"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    db = ui_env[0]
    vol = io.BytesIO()
    np.save(vol, np.random.default_rng(0).random((8, 16, 8)).astype(np.float32))
    case_json = json.dumps({
        "schema_version": 1, "case_id": "ZIP1", "subject_id": "S8", "eye": "OD",
        "location_deg": {"horizontal": 3.0, "vertical": 0.0}, "axial_length_mm": 24.0,
        "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0,
        "volumes": ["vol_00.npy"]}).encode()
    at = open_page("upload", "Tech")
    at.file_uploader(key="upload_zip").set_value(
        ("bad.zip", _zip_bytes({"ZIP1/case.json": case_json, "../escape.txt": b"x"}), "application/zip")).run()
    at.button(key="upload_zip_go").click().run()
    assert any("zip-slip" in str(e.value) for e in at.error)
    assert not (tmp_path / "drop").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert db.list_audit(actor="tech", action="upload_rejected")[0]["detail"]["source"] == "bad.zip"
    at.file_uploader(key="upload_zip").set_value(
        ("good.zip", _zip_bytes({"ZIP1/case.json": case_json, "ZIP1/vol_00.npy": vol.getvalue()}),
         "application/zip")).run()
    at.button(key="upload_zip_go").click().run()
    assert "queued for ingest" in _texts(at)
    assert (tmp_path / "drop" / "ZIP1" / "vol_00.npy").is_file()


def test_models_page_lists_registered_versions(ui_env, tmp_path):
    from ui import data

    weights = tmp_path / "cones.pt"
    weights.write_bytes(b"not really torch weights")
    data.get_registry().register_from_file("cones", weights, "# Cones model card\nTrained on phantoms.",
                                           {"f1": 0.91})
    at = open_page("models", "ML Engineer")
    assert not at.exception
    assert [s.value for s in at.subheader] == ["cones"]
    assert "Cones model card" in " ".join(m.value for m in at.markdown)


def test_admin_users_roles_and_audit_filters(ui_env):
    db = ui_env[0]
    open_page("admin", "Labeler")  # a denial to find in the log
    at = open_page("admin", "Admin")
    at.text_input(key="new_username").input("newbie")
    at.text_input(key="new_name").input("New Bie")
    at.text_input(key="new_email").input("newbie@example.org")
    at.text_input(key="new_password").input("long-enough-pw")
    at.selectbox(key="new_role").set_value("Labeler")
    _button(at, "Create user").click().run()
    assert db.get_user("newbie")["role"] == "Labeler"
    at.selectbox(key="role_user").set_value("newbie")
    at.selectbox(key="role_new").set_value("Researcher")
    _button(at, "Set role").click().run()
    assert db.get_user("newbie")["role"] == "Researcher"
    actions = [r["action"] for r in db.list_audit(actor="admin")]
    assert "create_user" in actions and "set_role" in actions
    at.checkbox(key="audit_denied").check().run()
    rows = at.dataframe[-1].value
    assert len(rows) >= 1 and not rows["allowed"].any()
    at.text_input(key="audit_actor").input("labeler").run()
    assert set(at.dataframe[-1].value["actor"]) == {"labeler"}


def test_admin_looks_up_a_subject_pseudonym_and_the_lookup_is_audited(ui_env):
    db = ui_env[0]
    db.map_subject("MRN-5550123", pseudonym="P-0123456789abcdef")
    at = open_page("admin", "Admin")
    at.text_input(key="subject_pseudonym").input("P-0123456789abcdef")
    _button(at, "Look up").click().run()
    assert not at.exception
    assert "MRN-5550123" in " ".join(s.value for s in at.success)
    (row,) = db.list_audit(actor="admin", action="look_up_subject")
    assert row["allowed"] and row["detail"] == {"pseudonym": "P-0123456789abcdef", "found": True}
    # nobody else reaches the page, let alone the lookup
    denied = open_page("admin", "Researcher")
    assert not denied.text_input and "Access denied" in " ".join(e.value for e in denied.error)


def test_case_list_shows_each_runs_state_and_refreshes_while_one_runs(ui_env):
    """Issue 22 live status: the latest run (running, or failed with its step and error) and
    the decision beside the pipeline status; a table with a run in flight refreshes itself."""
    from datetime import datetime, timezone

    db, _, ids, _ = ui_env
    now = datetime.now(timezone.utc)
    db.record_run("run-live", ids[0], status="running", started_at=now)
    db.set_case_status(ids[0], "processing")
    db.record_run("run-bad", ids[1], status="failure", started_at=now,
                  reason="preprocess_case: InputError: vol_01.tif: is truncated")
    db.set_case_status(ids[1], "failed")
    at = open_page("cases", "Tech")
    assert not at.exception
    rows = {r["case_id"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows[ids[0]]["last_run"] == "running" and rows[ids[0]]["status"] == "processing"
    assert rows[ids[1]]["last_run"] == "failure: preprocess_case: InputError: vol_01.tif: is truncated"
    assert "refreshes every 5 s" in _texts(at)


def test_review_page_shows_the_latest_run_and_runs_it_again_through_the_orchestrator(ui_env, monkeypatch):
    """Issue 22: the run's state and reason, a link to it in Dagster, and a re-run button for
    the roles with run_case, through the gateway's launch_run (here the orchestrator is down:
    the page says so, as the gateway's 502 would)."""
    db, _, ids, _ = ui_env
    db.record_run("seed-" + ids[0], ids[0], status="failure", dagster_run_id="abc123",
                  reason="preprocess_case: InputError: vol_01.tif: is truncated")
    at = open_page("review", "Labeler", case_id=ids[0])
    assert "failure" in _texts(at) and "vol_01.tif: is truncated" in _texts(at)
    assert not [b for b in at.button if b.key == "rerun_case"]          # Labeler: no run_case
    at = open_page("review", "Tech", case_id=ids[0])
    assert "Set AOOCT_DAGSTER_URL" in _texts(at)
    monkeypatch.setenv("AOOCT_DAGSTER_URL", "http://127.0.0.1:9")     # nothing listens there
    at = open_page("review", "Tech", case_id=ids[0])
    assert "http://127.0.0.1:9/runs/abc123" in _texts(at)
    at.button(key="rerun_case").click().run()
    assert any("Cannot reach the orchestrator" in str(e.value) for e in at.error), (at.exception, _texts(at)[-600:])
    # a running case asks Dagster for its current step; unreachable, the page says so
    db.record_run("seed-" + ids[0], ids[0], status="running", dagster_run_id="abc123")
    at = open_page("review", "Tech", case_id=ids[0])
    assert not at.exception and any("Cannot reach the orchestrator" in str(e.value) for e in at.error)
