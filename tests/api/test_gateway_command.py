"""``aooct api`` on embedded defaults, as a real server process: a DB user signs in over HTTP,
reads the cases, and the OpenAPI document names each route's permission."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from api.sessions import hash_password
from resources.config import load_config
from resources.metadata_db import SqlMetadataDB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url, *, body=None, token=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_aooct_api_serves_sign_in_and_cases_on_embedded_defaults(tmp_path):
    env = {**os.environ, "AOOCT_HOME": str(tmp_path / "home")}
    for k in [k for k in env if k.startswith(("AOOCT_OIDC_", "AOOCT_DB_URL", "AOOCT_API_"))]:
        del env[k]
    cfg = load_config(env)
    db = SqlMetadataDB(cfg.db_url)
    db.create_user("rita", name="Rita", email="rita@lab.example", password_hash=hash_password("pw-rita-1", rounds=4),
                   role="Researcher")
    db.upsert_case(case_id="CASE-9", status="processed", subject_id="SUBJ-1")
    port = _free_port()
    aooct = Path(sys.executable).with_name("aooct")
    proc = subprocess.Popen([str(aooct), "api", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _call(base + "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the gateway did not come up in 60 s"
            time.sleep(0.2)
        status, tok = _call(base + "/auth/token", body={"username": "rita", "password": "pw-rita-1"})
        assert status == 200, tok
        status, cases = _call(base + "/cases", token=tok["access_token"])
        assert status == 200 and [c["case_id"] for c in cases["items"]] == ["CASE-9"]
        status, denied = _call(base + "/audit", token=tok["access_token"])
        assert status == 403 and denied["type"].endswith("/forbidden")
        status, schema = _call(base + "/openapi.json")
        assert schema["paths"]["/audit"]["get"]["x-permission"] == "view_audit"
        assert (tmp_path / "home" / "api" / "token_key.pem").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        db.close()
