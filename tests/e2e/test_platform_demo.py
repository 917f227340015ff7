"""`aooct demo` on a fresh AOOCT_HOME (small phantoms, one case) and the real daemon (slow)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:  # tests/ml (no __init__.py) would shadow the `ml` package
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("ml"), "__file__", "") is None:
    del sys.modules["ml"]

from aooct_assets.testing import copy_case_files, weights_for_tests  # noqa: E402


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AOOCT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for var in ("AOOCT_DB_URL", "AOOCT_OBJECT_STORE", "AOOCT_DROP", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AOOCT_WEIGHTS_DIR", str(weights_for_tests(tmp_path / "weights")))
    return tmp_path / "home"


def test_demo_generates_drops_runs_and_reports_on_a_fresh_home(fresh_home):
    from aooct.commands.demo import run_demo
    from resources.metadata_db import SqlMetadataDB

    lines: list[str] = []
    summary = run_demo(1, seed=7, shape_px=(48, 256, 64), log=lines.append)
    text = "\n".join(lines)
    assert "sensor: 1 new run(s) requested" in text
    assert "dagster-webserver -w workspace.yaml" in text and "dagster-daemon run" in text
    assert "aooct ui" in text
    assert (fresh_home / "dagster" / "dagster.yaml").exists()
    db = SqlMetadataDB(f"sqlite:///{fresh_home / 'aooct.db'}")
    case = db.get_case("DEMO-007")
    # processed with trained weights; stand-in (untrained) weights are stopped by QC, as they should be
    assert case["status"] in ("processed", "qc_failed")
    assert (case["status"] == "processed") == ("DEMO-007" in summary["reports"])
    assert db.get_qc("DEMO-007")
    lines.clear()
    again = run_demo(1, seed=7, shape_px=(48, 256, 64), log=lines.append)
    text = "\n".join(lines)
    assert "already ingested" in text and "sensor: 0 new run(s) requested" in text
    assert again["failed"] == []


@pytest.mark.slow
def test_daemon_sensor_launches_a_partitioned_run_whose_checks_execute(fresh_home, tmp_path):
    """dagster-daemon (a separate process) ticks the drop sensor and runs the job with the
    multiprocess executor; the partitioned checks execute in that daemon-launched run."""
    from dagster import AssetCheckKey, AssetKey, DagsterInstance

    from aooct_assets.local_runs import prepare_environment as _prepare_environment
    from aooct_core.phantom import make_phantom, write_phantom
    from resources.object_store import LocalObjectStore

    _prepare_environment()
    env = {**os.environ, "DAGSTER_HOME": str(fresh_home / "dagster"), "AOOCT_SENSOR_INTERVAL_S": "3"}
    case = tmp_path / "DAEMON1"
    write_phantom(case, make_phantom(seed=31, shape_px=(32, 256, 48), case_id="DAEMON1"))
    daemon = subprocess.Popen([str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w",
                               str(Path(_REPO) / "workspace.yaml")], cwd=_REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        copy_case_files(case, LocalObjectStore(fresh_home / "drop"), "from-scanner")
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        instance = DagsterInstance.get()
        deadline = time.monotonic() + 300
        run = None
        while time.monotonic() < deadline:
            runs = instance.get_runs(limit=1)
            if runs and runs[0].is_finished:
                run = runs[0]
                break
            time.sleep(2)
        assert run is not None, "the daemon did not launch and finish a run in 300 s"
        assert run.tags["dagster/partition"] == "DAEMON1" and run.job_name == "case_pipeline"
        snr = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [AssetCheckKey(AssetKey("corrected_volume"), "snr")])
        assert snr, "partitioned checks did not execute in the daemon-launched run"
        assert LocalObjectStore(fresh_home / "drop").list_keys("_processed/")
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
