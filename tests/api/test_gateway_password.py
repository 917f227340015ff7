"""Password sign-in on the embedded default: the gateway's own ES256 tokens, the shared
lockout, and a user's row re-read on every request."""
from __future__ import annotations

import os
import stat

import pytest
from fastapi.testclient import TestClient

from api.local_tokens import LocalTokens, Verifiers
from api.gateway import MAX_BODY_BYTES, create_app
from api.sessions import hash_password
from resources.metadata_db import make_test_metadata_db


@pytest.fixture()
def gateway(tmp_path):
    db = make_test_metadata_db(tmp_path)
    db.create_user("tess", name="Tess", email="tess@lab.example", password_hash=hash_password("pw-tess-1", rounds=4),
                   role="Tech")
    tokens = LocalTokens(tmp_path / "api" / "token_key.pem", db=db)
    return TestClient(create_app(db=db, verifier=Verifiers(tokens), tokens=tokens)), db, tokens, tmp_path


def _sign_in(client, username="tess", password="pw-tess-1"):
    return client.post("/auth/token", json={"username": username, "password": password})


def test_sign_in_gives_a_short_lived_token_that_carries_the_role(gateway):
    client, db, tokens, tmp = gateway
    r = _sign_in(client)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "bearer" and r.json()["expires_in"] == 900
    me = client.get("/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()
    assert me["subject"] == "tess" and me["roles"] == ["Tech"] and me["via"] == "password"
    assert stat.S_IMODE(os.stat(tmp / "api" / "token_key.pem").st_mode) == 0o600
    assert db.list_audit(actor="tess", action="sign_in")


def test_wrong_password_and_unknown_user_look_alike(gateway):
    client, db, _, _ = gateway
    wrong, unknown = _sign_in(client, password="nope"), _sign_in(client, username="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    reasons = {row["detail"]["reason"] for row in db.list_audit(action="sign_in_failed")}
    assert reasons == {"wrong_password", "unknown_user"}


def test_repeated_failures_lock_the_username_even_for_the_right_password(gateway):
    client, _, _, _ = gateway
    for _ in range(5):
        assert _sign_in(client, password="guess").status_code == 401
    locked = _sign_in(client)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert locked.json()["type"].endswith("/sign-in-locked")


def test_a_deactivated_user_or_a_changed_role_takes_effect_at_once(gateway):
    client, db, _, _ = gateway
    h = {"Authorization": f"Bearer {_sign_in(client).json()['access_token']}"}
    assert client.get("/cases", headers=h).status_code == 200
    db.set_role("tess", "Labeler")
    assert client.get("/me", headers=h).json()["roles"] == ["Labeler"]
    db.set_active("tess", False)
    r = client.get("/cases", headers=h)
    assert r.status_code == 401 and "no longer active" in r.json()["detail"]


def test_a_token_of_another_gateway_key_is_refused(gateway, tmp_path_factory):
    client, db, _, _ = gateway
    other = LocalTokens(tmp_path_factory.mktemp("other") / "key.pem", db=db)
    r = client.get("/me", headers={"Authorization": f"Bearer {other.issue('tess', 'Admin')}"})
    assert r.status_code == 401


def test_the_signing_key_survives_a_restart(gateway):
    _, db, tokens, tmp = gateway
    again = LocalTokens(tmp / "api" / "token_key.pem", db=db)
    assert again.kid == tokens.kid and again.verify(tokens.issue("tess", "Tech")).subject == "tess"


def test_bodies_over_the_limit_are_refused_before_they_are_read(gateway):
    client, _, _, _ = gateway
    r = client.post("/auth/token", content=b"x" * (MAX_BODY_BYTES + 1),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["type"].endswith("/payload-too-large")
