"""Uploads through the gateway: a case zip streamed in, validated in the limited worker, queued
in the drop whole or not at all; refusals name the file inside the zip; every outcome audited."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.gateway import create_app
from api.local_tokens import LocalTokens, Verifiers
from api.uploads import UploadLimits
from resources.metadata_db import make_test_metadata_db


def _case_zip(*, bad=None, case_id="C1") -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        names = []
        for i in range(2):
            vol = rng.random((8, 16, 8)).astype(np.float32)
            if bad == "nan" and i == 1:
                vol[0, 0, 0] = np.nan
            b = io.BytesIO()
            np.save(b, vol)
            zf.writestr(f"{case_id}/vol_{i:02d}.npy", b.getvalue())
            names.append(f"vol_{i:02d}.npy")
        zf.writestr(f"{case_id}/case.json", json.dumps({
            "schema_version": 1, "case_id": case_id, "subject_id": "S1", "eye": "OD",
            "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
            "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0, "volumes": names}))
    return buf.getvalue()


@pytest.fixture()
def gateway(tmp_path):
    db = make_test_metadata_db(tmp_path)
    tokens = LocalTokens(tmp_path / "key.pem", db=db)
    for user, role in (("tess", "Tech"), ("lara", "Labeler")):
        db.create_user(user, name=user, email=f"{user}@lab.example", password_hash="$2b$04$" + "x" * 53, role=role)
    app = create_app(db=db, verifier=Verifiers(tokens), tokens=tokens, drop=str(tmp_path / "drop"),
                     work_root=tmp_path / "work", upload_limits=UploadLimits(max_total_bytes=10 * 1024**2))
    client = TestClient(app)

    def headers(user):
        role = db.get_user(user)["role"]
        return {"Authorization": f"Bearer {tokens.issue(user, role)}", "Content-Type": "application/zip"}
    return client, db, headers, tmp_path


def test_a_valid_case_zip_is_queued_whole_and_audited(gateway):
    client, db, headers, tmp = gateway
    r = client.post("/uploads", params={"name": "c1.zip"}, content=_case_zip(), headers=headers("tess"))
    assert r.status_code == 201, r.text
    assert r.json()["case_id"] == "C1" and r.json()["volume_shape_px"] == [8, 16, 8]
    assert sorted(p.name for p in (tmp / "drop" / "C1").iterdir()) == ["case.json", "vol_00.npy", "vol_01.npy"]
    assert not list((tmp / "work").iterdir())                     # the staging folder is gone
    assert db.list_audit(action="upload")[0]["case_id"] == "C1"
    # issue 22: no orchestrator known here, so the answer does not claim the case is queued
    assert r.json()["queued"] is False and "AOOCT_DAGSTER_URL" in r.json()["waiting"]
    again = client.post("/uploads", content=_case_zip(), headers=headers("tess"))
    assert again.status_code == 422 and "already in the drop" in again.json()["detail"]


def test_an_invalid_case_is_refused_naming_the_file_inside_the_zip(gateway):
    client, db, headers, tmp = gateway
    r = client.post("/uploads", params={"name": "bad.zip"}, content=_case_zip(bad="nan"), headers=headers("tess"))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("bad.zip:C1/vol_01.npy") and "non-finite" in detail, detail
    assert str(tmp) not in r.text                                  # no server paths
    assert not (tmp / "drop").exists() or not list((tmp / "drop").iterdir())
    assert db.list_audit(action="upload_rejected")


def test_not_a_zip_and_a_zip_slip_are_refused(gateway):
    client, _, headers, tmp = gateway
    r = client.post("/uploads", content=b"not a zip at all", headers=headers("tess"))
    assert r.status_code == 422
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    r = client.post("/uploads", content=buf.getvalue(), headers=headers("tess"))
    assert r.status_code == 422 and "zip-slip" in r.json()["detail"]
    assert not (tmp / "evil.txt").exists()


def test_upload_needs_the_permission_before_a_byte_is_read(gateway):
    client, db, headers, _ = gateway
    r = client.post("/uploads", content=_case_zip(), headers=headers("lara"))
    assert r.status_code == 403 and db.list_audit(action="denied:upload_case")


def test_bodies_over_the_upload_budget_are_refused_before_reading(gateway):
    client, _, headers, _ = gateway
    h = {**headers("tess"), "Content-Length": str(11 * 1024**2)}
    r = client.post("/uploads", content=b"x" * (11 * 1024**2), headers=h)
    assert r.status_code == 413 and str(10 * 1024**2) in r.json()["detail"]


def test_staging_left_by_a_dead_gateway_is_swept_at_start(tmp_path):
    import os
    import time

    from api.uploads import STALE_UPLOAD_S

    stale, fresh = tmp_path / "work" / "upload-old", tmp_path / "work" / "upload-new"
    for d in (stale, fresh):
        d.mkdir(parents=True)
        (d / "upload.zip").write_bytes(b"partial")
    old = time.time() - STALE_UPLOAD_S - 60
    os.utime(stale, (old, old))
    db = make_test_metadata_db(tmp_path)
    create_app(db=db, verifier=Verifiers(LocalTokens(tmp_path / "key.pem", db=db)), drop=str(tmp_path / "drop"),
               work_root=tmp_path / "work")
    assert not stale.exists() and fresh.exists()
