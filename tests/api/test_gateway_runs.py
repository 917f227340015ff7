"""Runs through a real dagster-webserver: the gateway launches a case's run over GraphQL, a
retried launch with the same Idempotency-Key returns the same run, the status comes from
Dagster, and a key reused for another case is refused."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.gateway import create_app
from api.local_tokens import LocalTokens, Verifiers
from api.runs import DagsterRuns
from resources.metadata_db import make_test_metadata_db

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "telemetry:\n  enabled: false\n")
    dagster = pytest.importorskip("dagster")
    instance = dagster.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("cases", ["CASE-R1", "CASE-R2"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DAGSTER_HOME": str(home), "AOOCT_HOME": str(tmp_path_factory.mktemp("aooct-home"))}
    log = open(home / "webserver.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    query = '{"query": "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus } } } }"}'
    while True:
        try:
            r = httpx.post(url + "/graphql", content=query, headers={"Content-Type": "application/json"}, timeout=5)
            entries = r.json()["data"]["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                break
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        assert proc.poll() is None, (home / "webserver.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "dagster-webserver did not load the code location in 180 s"
        time.sleep(1)
    yield url, instance
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_a_case_run_is_launched_once_per_idempotency_key(webserver, tmp_path):
    url, instance = webserver
    db = make_test_metadata_db(tmp_path)
    for case in ("CASE-R1", "CASE-R2"):
        db.upsert_case(case_id=case, status="ingested", subject_id="SUBJ-9")
    db.create_user("tess", name="Tess", email="t@lab.example", password_hash="$2b$04$" + "x" * 53, role="Tech")
    tokens = LocalTokens(tmp_path / "key.pem", db=db)
    client = TestClient(create_app(db=db, verifier=Verifiers(tokens), tokens=tokens, runs=DagsterRuns(url)))
    h = {"Authorization": f"Bearer {tokens.issue('tess', 'Tech')}"}
    first = client.post("/cases/CASE-R1/runs", headers={**h, "Idempotency-Key": "retry-me"})
    assert first.status_code == 202, first.text
    again = client.post("/cases/CASE-R1/runs", headers={**h, "Idempotency-Key": "retry-me"})
    assert again.json()["run_id"] == first.json()["run_id"] and again.json()["created"] is False
    assert first.json()["created"] is True
    run = instance.get_run_by_id(first.json()["run_id"])
    assert run is not None and run.tags["dagster/partition"] == "CASE-R1"     # Dagster has it, tagged
    status = client.get(f"/runs/{first.json()['run_id']}", headers=h).json()
    assert status["case_id"] == "CASE-R1" and status["status"] in ("QUEUED", "NOT_STARTED", "STARTING")
    other = client.post("/cases/CASE-R2/runs", headers={**h, "Idempotency-Key": "retry-me"})
    assert other.status_code == 409
    assert client.get("/runs/not-a-run", headers=h).status_code == 404
    assert len(db.list_audit(action="launch_run")) == 1


def test_an_unreachable_orchestrator_is_a_502_problem(tmp_path):
    db = make_test_metadata_db(tmp_path)
    db.upsert_case(case_id="CASE-R1", status="ingested", subject_id="SUBJ-9")
    db.create_user("tess", name="Tess", email="t@lab.example", password_hash="$2b$04$" + "x" * 53, role="Tech")
    tokens = LocalTokens(tmp_path / "key.pem", db=db)
    client = TestClient(create_app(db=db, verifier=Verifiers(tokens), tokens=tokens,
                                   runs=DagsterRuns("http://127.0.0.1:9", timeout_s=2)))
    r = client.post("/cases/CASE-R1/runs", headers={"Authorization": f"Bearer {tokens.issue('tess', 'Tech')}",
                                                    "Idempotency-Key": "k"})
    assert r.status_code == 502 and r.json()["type"].endswith("/orchestrator-error")


def test_the_orchestrator_says_whether_its_sensor_daemon_runs(webserver):
    """No dagster-daemon beside this webserver: uploads are then not reported as queued."""
    url, _instance = webserver
    assert DagsterRuns(url).sensor_daemon_running() is False
