"""``aooct process``: a lab's case folders through the platform without a daemon (issue 17).

Also the wedge of finding 2, reproduced for real: ``kill -9`` of a run while its step holds
the ``gpu`` pool's only slot; the next ``aooct process`` must fail the dead run, free the
slot and finish its own case.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aooct_assets.local_runs import INSTANCE_READY

_REPO = Path(__file__).resolve().parents[2]
_AOOCT = str(Path(sys.executable).with_name("aooct"))
SHAPE = "32x256x48"


@pytest.fixture
def home(tmp_path):
    env = {**os.environ, "AOOCT_HOME": str(tmp_path / "home"),
           "DAGSTER_HOME": str(tmp_path / "home" / "dagster")}
    env.pop("AOOCT_DB_URL", None)
    for seed, name in ((5, "CASE_A"), (6, "CASE_B")):
        subprocess.run([_AOOCT, "phantom", str(tmp_path / name), "--seed", str(seed), "--shape", SHAPE],
                       env=env, check=True, capture_output=True, cwd=_REPO)
    return tmp_path, env


def _process(env, *args, timeout=300):
    return subprocess.run([_AOOCT, "process", *map(str, args), "--settle-s", "0.2"], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=_REPO)


def _drop_entries(tmp: Path) -> list[str]:
    """Drops waiting in the drop folder (not the platform's own ``_processed/`` etc.)."""
    return sorted(p.name for p in (tmp / "home" / "drop").iterdir() if not p.name.startswith(("_", ".")))


def test_killed_run_does_not_wedge_the_next_one(home):
    tmp, env = home
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    first = subprocess.Popen([_AOOCT, "process", str(tmp / "CASE_A"), "--settle-s", "0.2"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=_REPO,
                             start_new_session=True)
    from dagster import DagsterInstance, DagsterRunStatus
    try:
        deadline = time.monotonic() + 180
        instance = None
        while time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.3)
            if instance is None and (tmp / "home" / "dagster" / INSTANCE_READY).exists():
                instance = DagsterInstance.get()
            if instance is not None and instance.event_log_storage.get_concurrency_keys() and \
                    instance.event_log_storage.get_concurrency_info("gpu").claimed_slots:
                break
        else:
            pytest.fail("the first run never took the gpu slot")
        os.killpg(first.pid, signal.SIGKILL)           # kill -9 mid-step, slot held
        first.wait(30)
        (killed,) = instance.get_runs()
        assert killed.status == DagsterRunStatus.STARTED
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        second = _process(env, tmp / "CASE_B", timeout=240)  # wedged for ever before the fix
        assert "watchdog: run" in second.stdout and "gone" in second.stdout, second.stdout + second.stderr
        assert "phantom-s6: " in second.stdout and " failed (" not in second.stdout, second.stdout
        assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        # The killed run had retired its drop (ingest was done); its case runs again whole.
        assert _drop_entries(tmp) == []
        third = _process(env, tmp / "CASE_A", timeout=240)
        assert "phantom-s5: " in third.stdout and " failed (" not in third.stdout, third.stdout
        assert _drop_entries(tmp) == []

    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        os.environ.pop("DAGSTER_HOME", None)


def test_a_copy_left_by_a_killed_call_is_reused_and_other_content_staged_apart(home):
    from aooct_assets.local_runs import stage_case_folders
    from resources.object_store import LocalObjectStore

    tmp, _env = home
    drop = LocalObjectStore(tmp / "drop")
    assert stage_case_folders(drop, [tmp / "CASE_A"]) == ["CASE_A"]
    assert stage_case_folders(drop, [tmp / "CASE_A"]) == ["CASE_A"]     # byte-identical: reused
    (tmp / "CASE_A" / "vol_00.tif").write_bytes((tmp / "CASE_B" / "vol_00.tif").read_bytes())
    (other,) = stage_case_folders(drop, [tmp / "CASE_A"])
    assert other.startswith("CASE_A-") and drop.list_keys(f"{other}/")
    assert sorted(p.name for p in (tmp / "drop").iterdir()) == sorted(["CASE_A", other])


def test_named_folders_run_once_refuse_links_and_version_other_content(home, tmp_path):
    tmp, env = home
    res = _process(env, tmp / "CASE_A")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "phantom-s5: ok" in res.stdout or "phantom-s5: qc_failed" in res.stdout, res.stdout
    again = _process(env, tmp / "CASE_A")                  # same content: done, not re-run
    assert "phantom-s5: skipped" in again.stdout and "already processed" in again.stdout
    assert "removed the staged copy CASE_A/" in again.stdout and _drop_entries(tmp) == []
    linked = tmp_path / "LINKED"
    linked.mkdir()
    for f in (tmp / "CASE_A").iterdir():
        os.symlink(f, linked / f.name) if f.name.startswith("vol") else (linked / f.name).write_bytes(f.read_bytes())
    refused = _process(env, linked)
    assert refused.returncode != 0 and "symbolic link" in refused.stderr
    # same case_id, other volumes: a new version, the first one untouched
    other = tmp_path / "REACQUIRED"
    other.mkdir()
    for f in (tmp / "CASE_A").iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "vol_00.tif").write_bytes((tmp / "CASE_B" / "vol_00.tif").read_bytes())
    v2 = _process(env, other)
    assert "phantom-s5~v2: " in v2.stdout, v2.stdout + v2.stderr
    objects = tmp / "home" / "objects" / "cases"
    assert (objects / "phantom-s5" / "raw" / "vol_00.tif").read_bytes() == \
        (tmp / "CASE_A" / "vol_00.tif").read_bytes()
    assert (objects / "phantom-s5~v2" / "raw" / "vol_00.tif").read_bytes() == \
        (tmp / "CASE_B" / "vol_00.tif").read_bytes()
