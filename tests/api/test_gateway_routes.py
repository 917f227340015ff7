"""The gateway's routes × roles, generated from the app's own routes: each role gets what the
policy grants and a 403 problem otherwise, every denial is audited, and the answers carry
the data of the metadata DB."""
from __future__ import annotations

import io
import shutil
import tempfile

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.auth import OIDCSettings, TokenVerifier
from api.gateway import AUTHENTICATED, PUBLIC, ROUTE_PERMISSIONS, create_app
from api.policy import ROLES, has_permission
from jwks_server import AUDIENCE, ISSUER, JWKSServer, SigningKey  # tests/api
from resources.metadata_db import make_test_metadata_db
from resources.object_store import InMemoryObjectStore

CASE = "CASE-0001"


@pytest.fixture(scope="module")
def gateway():
    key = SigningKey("k1")
    server = JWKSServer([key])
    db = make_test_metadata_db()
    db.upsert_case(case_id=CASE, status="processed", subject_id="SUBJ-7f3a", eye="OD")
    db.upsert_case(case_id="CASE-0002", status="failed", subject_id="SUBJ-11aa", eye="OS")
    db.upsert_case(case_id="CASE-0003", status="processing", subject_id="SUBJ-11aa", eye="OD")
    db.record_run("run-ok", CASE, status="success")
    db.record_run("run-failed", "CASE-0002", status="failure")
    db.record_run("run-going", "CASE-0003", status="running")
    db.record_metrics(CASE, [{"structure": "cones", "metric": "density_cells_per_mm2", "value": 24372.0,
                              "unit": "cells/mm²", "ci_low": 23923.0, "ci_high": 24794.0}])
    db.record_qc(CASE, [{"check_name": "cone_mosaic", "passed": True, "severity": None, "value": 9.1}])
    verifier = TokenVerifier(OIDCSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=server.url))
    drop = tempfile.mkdtemp(prefix="aooct-matrix-drop-")
    store = InMemoryObjectStore()
    buf = io.BytesIO()
    np.save(buf, np.arange(600 * 700, dtype=np.float32).reshape(600, 700))
    store.put_bytes(f"cases/{CASE}/enface/isos_cost.npy", buf.getvalue())
    store.put_bytes(f"cases/{CASE}/report/report.html", b"<html><body>report</body></html>")
    store.put_bytes(f"cases/{CASE}/masks/cones/points_rc.npy", buf.getvalue())
    app = create_app(db=db, verifier=verifier, drop=drop, store=store, export_store=InMemoryObjectStore())
    yield TestClient(app), app, db, key
    server.close()
    shutil.rmtree(drop, ignore_errors=True)


@pytest.fixture(scope="module")
def verifier_and_key():
    key = SigningKey("k1")
    server = JWKSServer([key])
    yield TokenVerifier(OIDCSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=server.url)), key
    server.close()


def _concrete(path: str) -> str:
    return (path.replace("{case_id}", CASE).replace("{token_id}", "999999").replace("{slab}", "isos_cost")
            .replace("{run_id}", "no-such-run").replace("{username}", "nobody").replace("{pseudonym}", "P-none"))


def _routes(app):
    return [(m, r.path) for r in app.routes if isinstance(r, APIRoute)
            for m in sorted(r.methods - {"HEAD", "OPTIONS"}) if (m, r.path) in ROUTE_PERMISSIONS]


def test_every_route_of_the_app_has_a_policy_entry(gateway):
    _, app, _, _ = gateway
    api_routes = {(m, r.path) for r in app.routes if isinstance(r, APIRoute)
                  for m in r.methods - {"HEAD", "OPTIONS"}} - {("GET", p) for p in
                                                               ("/openapi.json", "/docs", "/redoc",
                                                                "/docs/oauth2-redirect")}
    assert api_routes == set(ROUTE_PERMISSIONS)
    schema = app.openapi()
    for method, path in ROUTE_PERMISSIONS:
        assert schema["paths"][path][method.lower()]["x-permission"] == ROUTE_PERMISSIONS[(method, path)]


@pytest.mark.parametrize("role", ROLES + ("no role",))
def test_route_role_matrix(gateway, role):
    client, app, db, key = gateway
    token = key.token(roles=[] if role == "no role" else [role], email=f"{role.replace(' ', '-')}@lab.example")
    for method, path in _routes(app):
        perm = ROUTE_PERMISSIONS[(method, path)]
        allowed = perm in (AUTHENTICATED, PUBLIC) or (role in ROLES and has_permission(role, perm))
        before = len(db.list_audit(action=f"denied:{perm}", limit=500)) if perm not in (AUTHENTICATED, PUBLIC) \
            else 0
        r = client.request(method, _concrete(path), headers={"Authorization": f"Bearer {token}"})
        if allowed:   # GETs answer; a POST without its body is invalid, a DELETE of nothing not found;
            # the run and model routes have no orchestrator / registry here (their own tests do)
            expected = {"GET": 200, "POST": 422, "PATCH": 422, "DELETE": 404}[method]
            if path in ("/runs/{run_id}", "/cases/{case_id}/runs", "/subjects/{pseudonym}", "/models"):
                expected = 422 if method == "POST" else 404
            assert r.status_code == expected, (role, method, path, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, method, path, r.status_code, r.text)
            body = r.json()
            assert body["type"].endswith("/forbidden") and perm in body["detail"]
            denials = db.list_audit(action=f"denied:{perm}", limit=500)
            assert len(denials) == before + 1
            assert denials[0]["allowed"] is False or denials[0]["allowed"] == 0
            assert denials[0]["actor"] == f"{role.replace(' ', '-')}@lab.example"


def test_cases_are_listed_filtered_and_paged(gateway):
    client, _, _, key = gateway
    h = {"Authorization": f"Bearer {key.token(roles=['Researcher'])}"}
    page = client.get("/cases", headers=h, params={"limit": 1}).json()
    assert page["total"] == 3 and len(page["items"]) == 1 and page["items"][0]["case_id"] == CASE
    failed = client.get("/cases", headers=h, params={"status": "failed"}).json()
    assert [c["case_id"] for c in failed["items"]] == ["CASE-0002"]
    bad = client.get("/cases", headers=h, params={"status": "lost", "limit": 0})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert "status" in bad.json()["detail"] and "limit" in bad.json()["detail"]


def test_a_case_its_metrics_as_json_and_csv_and_a_missing_case(gateway):
    client, _, _, key = gateway
    h = {"Authorization": f"Bearer {key.token(roles=['Researcher'])}"}
    case = client.get(f"/cases/{CASE}", headers=h).json()
    assert case["case"]["subject_id"] == "SUBJ-7f3a" and case["qc"][0]["check_name"] == "cone_mosaic"
    rows = client.get(f"/cases/{CASE}/metrics", headers=h).json()
    assert rows[0]["value"] == 24372.0 and rows[0]["ci_low"] == 23923.0
    csv = client.get(f"/cases/{CASE}/metrics", headers=h, params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and "density_cells_per_mm2" in csv.text
    missing = client.get("/cases/NOPE", headers=h)
    assert missing.status_code == 404 and missing.json()["instance"] == "/cases/NOPE"
    assert "GET /cases" in missing.json()["detail"]


def test_users_are_listed_without_password_hashes(gateway):
    client, _, db, key = gateway
    db.create_user("bob", name="Bob", email="bob@lab.example", password_hash="$2b$12$" + "x" * 53, role="Tech")
    users = client.get("/users", headers={"Authorization": f"Bearer {key.token(roles=['Admin'])}"}).json()
    assert users[0]["username"] == "bob" and all("password_hash" not in u for u in users)


def test_an_unexpected_error_is_a_500_problem_without_internals(verifier_and_key):
    verifier, key = verifier_and_key

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError("secret internal state")

    client = TestClient(create_app(db=Broken(), verifier=verifier), raise_server_exceptions=False)
    r = client.get("/cases", headers={"Authorization": f"Bearer {key.token(roles=['Researcher'])}"})
    assert r.status_code == 500 and "secret" not in r.text and r.json()["type"].endswith("/internal-error")


def test_cohort_metrics_are_paged_in_the_db(gateway):
    client, _, db, key = gateway
    db.record_metrics("CASE-0002", [{"structure": "rpe", "metric": f"m{i}", "value": float(i)} for i in range(5)])
    h = {"Authorization": f"Bearer {key.token(roles=['Researcher'])}"}
    page = client.get("/metrics", headers=h, params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 6 and len(page["items"]) == 2
    assert [r["metric"] for r in page["items"]] == ["m0", "m1"]      # CASE-0001's one row comes first


def test_artifacts_are_listed_and_slabs_served_as_tiles_and_arrays(gateway):
    client, _, _, key = gateway
    h = {"Authorization": f"Bearer {key.token(roles=['Researcher'])}"}
    listed = client.get(f"/cases/{CASE}/artifacts", headers=h).json()
    assert {(a["kind"], a["name"]) for a in listed} == {("enface", "isos_cost"), ("report", "report"),
                                                        ("points", "cones")}
    from PIL import Image

    tile = client.get(f"/cases/{CASE}/slabs/isos_cost", headers=h, params={"row": 100, "col": 600, "size": 512})
    assert tile.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(tile.content)).size == (100, 500)       # clipped at the slab's edges
    whole = client.get(f"/cases/{CASE}/slabs/isos_cost", headers=h, params={"format": "npy"})
    assert np.load(io.BytesIO(whole.content)).shape == (600, 700)
    assert client.get(f"/cases/{CASE}/slabs/nope", headers=h).status_code == 404
    assert client.get(f"/cases/{CASE}/slabs/..%2Fsecret", headers=h).status_code in (400, 404)
    outside = client.get(f"/cases/{CASE}/slabs/isos_cost", headers=h, params={"row": 900})
    assert outside.status_code == 400 and "outside" in outside.json()["detail"]
    rep = client.get(f"/cases/{CASE}/report", headers=h)
    assert rep.headers["content-security-policy"] == "sandbox" and "attachment" in rep.headers["content-disposition"]
    assert client.get("/cases/NOPE/artifacts", headers=h).status_code == 404


def test_reviews_and_label_versions(gateway):
    client, _, db, key = gateway
    researcher = {"Authorization": f"Bearer {key.token(roles=['Researcher'], email='res@lab.example')}"}
    labeler = {"Authorization": f"Bearer {key.token(roles=['Labeler'], email='lab@lab.example')}"}
    r = client.post("/cases/CASE-0002/reviews", headers=researcher, json={"decision": "reject", "comment": "blink"})
    assert r.status_code == 201 and db.get_case("CASE-0002")["status"] == "rejected"
    assert client.get("/cases/CASE-0002/reviews", headers=labeler).json()[0]["decision"] == "reject"
    assert client.post("/cases/CASE-0002/reviews", headers=labeler, json={"decision": "approve"}).status_code == 403
    # issue 22 bug 1: no decision on a run that has not finished, none approving a failed run
    r = client.post("/cases/CASE-0003/reviews", headers=researcher, json={"decision": "approve"})
    assert r.status_code == 409 and "still processing" in r.json()["detail"]
    r = client.post("/cases/CASE-0002/reviews", headers=researcher, json={"decision": "approve"})
    assert r.status_code == 409 and "'failure'" in r.json()["detail"]
    assert db.get_case("CASE-0003")["status"] == "processing" and db.get_reviews("CASE-0003") == []
    pts = {"structure": "cones", "payload": {"kind": "points", "points_rc": [[1.5, 2.0], [3, 4]]}}
    v1 = client.post("/cases/CASE-0002/labels", headers=labeler, json=pts).json()
    v2 = client.post("/cases/CASE-0002/labels", headers=labeler, json=pts).json()
    assert (v1["version"], v2["version"]) == (1, 2)
    mask = {"structure": "capillaries", "payload": {"kind": "mask", "shape": [4, 4], "rle": [0, 3, 5, 2]}}
    assert client.post("/cases/CASE-0002/labels", headers=labeler, json=mask).status_code == 201
    bad = {"structure": "capillaries", "payload": {"kind": "mask", "shape": [4, 4], "rle": [0, 20]}}
    assert client.post("/cases/CASE-0002/labels", headers=labeler, json=bad).status_code == 422
    latest = client.get("/cases/CASE-0002/labels", headers=researcher, params={"latest_only": True}).json()
    assert sorted((x["structure"], x["version"]) for x in latest) == [("capillaries", 1), ("cones", 2)]
    assert client.post("/cases/CASE-0002/labels", headers=researcher, json=pts).status_code == 403
    assert {"review", "save_label"} <= {row["action"] for row in db.list_audit(limit=500)}


def test_admins_create_and_change_users_and_look_up_subjects(gateway):
    client, _, db, key = gateway
    admin = {"Authorization": f"Bearer {key.token(roles=['Admin'], email='boss@lab.example')}"}
    made = client.post("/users", headers=admin, json={"username": "newtech", "password": "long-enough-1",
                                                      "email": "newtech@lab.example", "role": "Tech"})
    assert made.status_code == 201 and db.get_user("newtech")["password_hash"].startswith("$2")
    # issue 22 bug 9: single sign-on matches by e-mail, so each user has a distinct, real one
    for email, status in (("", 400), ("newtech", 400), ("NEWTECH@lab.example", 409)):
        r = client.post("/users", headers=admin, json={"username": "other", "password": "long-enough-1",
                                                       "email": email, "role": "Tech"})
        assert r.status_code == status, (email, r.json())
    assert db.get_user("other") is None
    # issue 22 bug 2: the last active Admin is neither demoted nor deactivated
    assert client.post("/users", headers=admin, json={"username": "solo", "password": "long-enough-1",
                                                      "email": "solo@lab.example", "role": "Admin"}
                       ).status_code == 201
    for change in ({"role": "Researcher"}, {"active": False}):
        r = client.patch("/users/solo", headers=admin, json=change)
        assert r.status_code == 409 and "last active Admin" in r.json()["detail"]
    assert db.get_user("solo")["role"] == "Admin"
    assert client.post("/users", headers=admin, json={"username": "x", "password": "short", "role": "Tech"}
                       ).status_code == 400
    assert client.post("/users", headers=admin, json={"username": "newtech", "password": "long-enough-1",
                                                      "email": "n2@lab.example", "role": "Tech"}).status_code == 409
    changed = client.patch("/users/newtech", headers=admin, json={"role": "Labeler", "active": False}).json()
    assert changed == {"username": "newtech", "role": "Labeler", "active": False}
    assert client.patch("/users/ghost", headers=admin, json={"active": False}).status_code == 404
    db.map_subject("MRN-12345", pseudonym="P-abc")
    found = client.get("/subjects/P-abc", headers=admin).json()
    assert found["subject_id"] == "MRN-12345"
    researcher = {"Authorization": f"Bearer {key.token(roles=['Researcher'])}"}
    assert client.get("/subjects/P-abc", headers=researcher).status_code == 403
    looks = db.list_audit(action="look_up_subject")
    assert looks and "MRN-12345" not in str(looks)              # the audit names the pseudonym only


def test_metrics_are_exported_as_csv_and_parquet_to_new_prefixes(gateway):
    client, _, db, key = gateway
    h = {"Authorization": f"Bearer {key.token(roles=['Researcher'], email='exp@lab.example')}"}
    a = client.post("/exports", headers=h, json={"format": "csv"}).json()
    b = client.post("/exports", headers=h, json={"format": "parquet", "case_id": CASE}).json()
    assert a["uri"] != b["uri"] and a["rows"] >= 1 and b["rows"] == 1
    assert client.post("/exports", headers=h, json={"case_id": "NOPE"}).status_code == 404
    assert db.list_audit(action="export", actor="exp@lab.example")
    # issue 22 bug 8: a rejected case's numbers are left out unless asked for
    db.record_metrics("CASE-0002", [{"structure": "cones", "metric": "density_cells_per_mm2", "value": 1.0,
                                     "unit": "cells/mm²"}])
    db.set_case_status("CASE-0002", "rejected")
    c = client.post("/exports", headers=h, json={"format": "csv"}).json()
    assert c["cases_left_out"] == ["CASE-0002"] and c["rows"] == a["rows"]
    d = client.post("/exports", headers=h, json={"format": "csv", "include_rejected": True}).json()
    assert d["cases_left_out"] == [] and d["rows"] == a["rows"] + 1
    labeler = {"Authorization": f"Bearer {key.token(roles=['Labeler'])}"}
    assert client.post("/exports", headers=labeler, json={}).status_code == 403


def test_tiles_of_one_slab_are_cut_from_one_load(gateway):
    from api import artifacts

    client, app, _, key = gateway
    h = {"Authorization": f"Bearer {key.token(roles=['Researcher'])}"}
    artifacts._cache.clear()
    store, loads = app.state.store, []
    original = store.get_bytes
    store.get_bytes = lambda k: (loads.append(k), original(k))[1]
    try:
        for row in (0, 256, 512):
            assert client.get(f"/cases/{CASE}/slabs/isos_cost", headers=h, params={"row": row}).status_code == 200
    finally:
        del store.get_bytes
    assert loads == [f"cases/{CASE}/enface/isos_cost.npy"]
