"""The gateway against a real OIDC provider process (oidc-provider-mock): discovery, the
provider's JWKS, an ID token from a full authorization-code flow, roles from its claim."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from api.auth import OIDCSettings, TokenVerifier
from api.gateway import create_app
from resources.metadata_db import make_test_metadata_db

httpx = pytest.importorskip("httpx")
pytest.importorskip("oidc_provider_mock", reason="pip install oidc-provider-mock==0.3.4 for the SSO test")

CLIENT, SECRET, REDIRECT = "aooct-gateway", "gateway-secret", "http://127.0.0.1:9/callback"


@pytest.fixture(scope="module")
def provider():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/.well-known/openid-configuration", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "oidc-provider-mock did not start"
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def _id_token(base: str, sub: str, claims: dict) -> str:
    assert httpx.put(f"{base}/users/{sub}", json=claims, timeout=5).status_code == 204
    auth = httpx.post(f"{base}/oauth2/authorize", data={"sub": sub},
                      params={"client_id": CLIENT, "redirect_uri": REDIRECT, "response_type": "code",
                              "scope": "openid email", "state": "s1"}, timeout=5)
    assert auth.status_code == 302, auth.text
    code = parse_qs(urlparse(auth.headers["location"]).query)["code"][0]
    tok = httpx.post(f"{base}/oauth2/token", auth=(CLIENT, SECRET), timeout=5,
                     data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT})
    assert tok.status_code == 200, tok.text
    return tok.json()["id_token"]


def test_an_id_token_of_the_provider_is_accepted_with_the_roles_of_its_claim(provider):
    verifier = TokenVerifier(OIDCSettings(issuer=provider, audience=CLIENT, roles_claim="groups",
                                          role_map={"lab-techs": "Tech"}))
    client = TestClient(create_app(db=make_test_metadata_db(), verifier=verifier))
    token = _id_token(provider, "tech@lab.example", {"email": "tech@lab.example", "groups": ["lab-techs", "x"]})
    me = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["subject"] == "tech@lab.example" and me.json()["roles"] == ["Tech"]
    # The same token for another audience (a different client id) is refused.
    other = TestClient(create_app(db=make_test_metadata_db(), verifier=TokenVerifier(
        OIDCSettings(issuer=provider, audience="someone-else", roles_claim="groups"))))
    r = other.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "aud" in r.json()["detail"]
