"""Service tokens: an Admin makes a scoped token, a script uses it for exactly its scopes,
its use is stamped, only its hash is stored, and revoking it ends it at once."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.local_tokens import LocalTokens, Verifiers
from api.gateway import create_app
from api.service_tokens import ServiceTokens
from api.sessions import hash_password
from resources.metadata_db import make_test_metadata_db


@pytest.fixture()
def gateway(tmp_path):
    db = make_test_metadata_db(tmp_path)
    db.create_user("ada", name="Ada", email="ada@lab.example", password_hash=hash_password("pw-ada-1", rounds=4),
                   role="Admin")
    db.upsert_case(case_id="CASE-1", status="processed", subject_id="SUBJ-1")
    tokens, service = LocalTokens(tmp_path / "key.pem", db=db), ServiceTokens(db)
    client = TestClient(create_app(db=db, verifier=Verifiers(tokens, None, service), tokens=tokens,
                                   service_tokens=service))
    admin = client.post("/auth/token", json={"username": "ada", "password": "pw-ada-1"}).json()["access_token"]
    return client, db, {"Authorization": f"Bearer {admin}"}, tmp_path


def test_a_scoped_token_is_allowed_its_scopes_only_and_revocation_ends_it(gateway):
    client, db, admin, tmp = gateway
    made = client.post("/service-tokens", headers=admin, json={"name": "dashboard", "scopes": ["view_cases"]})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("aooct_st_")
    h = {"Authorization": f"Bearer {token}"}
    assert client.get("/cases", headers=h).status_code == 200
    me = client.get("/me", headers=h).json()
    assert me["subject"] == "service:dashboard" and me["permissions"] == ["view_cases"]
    denied = client.get("/cases/CASE-1", headers=h)         # view_case is not in its scopes
    assert denied.status_code == 403 and "service token" in denied.json()["detail"]
    listed = client.get("/service-tokens", headers=admin).json()
    assert listed[0]["name"] == "dashboard" and listed[0]["last_used_at"] and "token_hash" not in listed[0]
    engine = create_engine(f"sqlite:///{tmp / 'aooct-test.db'}")
    with engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(text("SELECT * FROM service_tokens")) for v in row)
        audit = " ".join(str(v) for row in conn.execute(text("SELECT * FROM audit_log")) for v in row)
    engine.dispose()
    assert token not in stored and token not in audit and token[len("aooct_st_"):] not in stored
    assert client.delete(f"/service-tokens/{made.json()['id']}", headers=admin).json()["revoked"]
    r = client.get("/cases", headers=h)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert client.delete(f"/service-tokens/{made.json()['id']}", headers=admin).status_code == 404
    actions = {row["action"] for row in db.list_audit(actor="ada")}
    assert {"create_service_token", "revoke_service_token"} <= actions


def test_bad_scopes_and_made_up_tokens_are_refused(gateway):
    client, _, admin, _ = gateway
    r = client.post("/service-tokens", headers=admin, json={"name": "x", "scopes": ["root"]})
    assert r.status_code == 400 and "permission names" in r.json()["detail"]
    r = client.get("/cases", headers={"Authorization": "Bearer aooct_st_made-up"})
    assert r.status_code == 401 and r.json()["detail"] == "unknown service token"
