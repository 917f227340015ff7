"""Faults: a run killed mid-step, S3 errors on the first attempts, the same case twice.

All three rest on the same two properties: every artifact is committed atomically (a
visible key is always a complete object) and every step is deterministic (same inputs and
code → the same bytes), so a rerun converges to exactly what an uninterrupted run writes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:  # tests/ml (no __init__.py) would shadow the `ml` package
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("ml"), "__file__", "") is None:
    del sys.modules["ml"]

from dagster import DagsterInstance, materialize  # noqa: E402

from aooct_assets.assets import raw_volume  # noqa: E402
from aooct_assets.testing import (copy_case_files, make_test_resources, run_case,  # noqa: E402
                                  weights_for_tests)
from resources.object_store import TMP_MARKER, LocalObjectStore, S3ObjectStore  # noqa: E402
from resources.testing import inject_s3_connection_errors, moto_s3_server  # noqa: E402

SHAPE_PX = (48, 256, 64)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Weights, one phantom case folder, and a reference run of it (module-wide)."""
    from aooct_core.phantom import make_phantom, write_phantom

    weights = weights_for_tests(tmp_path_factory.mktemp("weights"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AOOCT_WEIGHTS_DIR", str(weights))
        mp.setenv("AOOCT_DEID_KEY", "5a" * 16)  # one installation: the same subject pseudonyms
        case = tmp_path_factory.mktemp("phantom") / "KILL1"
        write_phantom(case, make_phantom(seed=11, shape_px=SHAPE_PX, case_id="KILL1"))
        ref = tmp_path_factory.mktemp("reference")
        res = make_test_resources(ref)
        copy_case_files(case, res["drop_store"], "KILL1")
        assert run_case("KILL1", res, drop_prefix="KILL1", checks=False).success
        yield {"case": case, "ref": res["object_store"], "weights": weights}


def _artifacts(store) -> dict[str, bytes]:
    return {k: store.get_bytes(k) for k in store.list_keys("cases/")}


def test_same_case_twice_gives_byte_identical_artifacts(env, tmp_path):
    res = make_test_resources(tmp_path)
    copy_case_files(env["case"], res["drop_store"], "again")
    assert run_case("KILL1", res, drop_prefix="again", checks=False).success
    ours, ref = _artifacts(res["object_store"]), _artifacts(env["ref"])
    assert sorted(ours) == sorted(ref)
    differing = [k for k in ref if ours[k] != ref[k]]
    assert not differing, f"artifacts differ between identical runs: {differing}"


_RUNNER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from aooct_assets.testing import make_test_resources, run_case
    from pathlib import Path
    res = make_test_resources(Path({root!r}))
    run_case("KILL1", res, drop_prefix="KILL1", checks=False)
""")


def test_run_killed_during_a_step_leaves_no_partial_artifact_and_rerun_completes(env, tmp_path):
    root = tmp_path / "killed"
    res = make_test_resources(root)
    copy_case_files(env["case"], res["drop_store"], "KILL1")
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER.format(repo=_REPO, root=str(root))],
                            env={**os.environ, "AOOCT_WEIGHTS_DIR": str(env["weights"])},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    objects = root / "objects" / "cases" / "KILL1"
    deadline = time.monotonic() + 120

    def wait_for(path: Path) -> None:
        while time.monotonic() < deadline and proc.poll() is None and not path.exists():
            time.sleep(0.005)

    # Kill while the preprocessing step is writing: the raw copy is committed and the
    # first corrected files are appearing.
    wait_for(objects / "raw" / "manifest.json")
    wait_for(objects / "corrected")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    store: LocalObjectStore = res["object_store"]
    visible = _artifacts(store)
    assert "cases/KILL1/report/report.html" not in visible
    ref = _artifacts(env["ref"])
    # Whatever is visible under its final key is complete: byte-identical to the reference.
    assert all(visible[k] == ref[k] for k in visible), "a partial artifact is visible"
    # The killed step's temp files may remain, but are never listed as objects.
    assert not [k for k in visible if TMP_MARKER in k]
    result = run_case("KILL1", make_test_resources(root), drop_prefix="KILL1", checks=False)
    assert result.success
    assert _artifacts(store) == ref


def test_s3_errors_on_the_first_attempts_are_retried_and_the_step_succeeds(env, tmp_path):
    with moto_s3_server("aooct-faults") as endpoint:
        s3 = S3ObjectStore("aooct-faults", "objects", endpoint_url=endpoint, max_attempts=2)
        injected = inject_s3_connection_errors(s3, "PutObject", n=3)  # botocore absorbs 1, Dagster retries
        res = make_test_resources(tmp_path, object_store=s3)
        copy_case_files(env["case"], res["drop_store"], "KILL1")
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("cases", ["KILL1"])
        result = materialize([raw_volume], partition_key="KILL1", resources=res, instance=instance,
                             run_config={"ops": {"raw_volume": {"config": {"drop_prefix": "KILL1"}}}})
        assert result.success and injected["failed"] == 3
        restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
        assert len(restarts) >= 1
        ref = {k: v for k, v in _artifacts(env["ref"]).items() if "/raw/" in k}
        assert _artifacts(s3) == ref
        raw = s3.client.list_objects_v2(Bucket="aooct-faults", Prefix="objects/")["Contents"]
        assert not [o["Key"] for o in raw if TMP_MARKER in o["Key"]]
