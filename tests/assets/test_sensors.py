"""Drop sensor: waits for partial drops, one run per content, quarantines malformed drops."""
from __future__ import annotations

import hashlib
import json

import pytest
from dagster import DagsterInstance, build_sensor_context

from aooct_assets.sensors import make_drop_sensor, scan_drop
from resources.object_store import LocalObjectStore


def _case_json(case_id="CASE1", volumes=("vol_00.tif", "vol_01.tif")):
    return json.dumps({"schema_version": 1, "case_id": case_id, "subject_id": "S1", "eye": "OD",
                       "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
                       "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0,
                       "volumes": list(volumes)}).encode()


def _drop(store, name, case_id="CASE1", payload=b"volume-bytes", volumes=("vol_00.tif", "vol_01.tif")):
    for i, v in enumerate(volumes):
        store.put_bytes(f"{name}/{v}", payload + bytes([i]))
    store.put_bytes(f"{name}/case.json", _case_json(case_id, volumes))


@pytest.fixture
def env(tmp_path):
    store = LocalObjectStore(tmp_path / "drop")
    instance = DagsterInstance.ephemeral()
    sensor = make_drop_sensor(store, job_name="case_pipeline")
    state = {"cursor": None}

    def tick():
        ctx = build_sensor_context(instance=instance, cursor=state["cursor"])
        result = sensor(ctx)
        state["cursor"] = result.cursor
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return result

    yield store, instance, tick
    instance.dispose()


def test_complete_drop_waits_one_tick_then_requests_one_partitioned_run(env):
    store, instance, tick = env
    _drop(store, "incoming1")
    first = tick()
    assert not first.run_requests and "waiting for sizes" in first.skip_reason.skip_message
    second = tick()
    (req,) = second.run_requests
    assert req.partition_key == "CASE1" and len(req.run_key) == 64
    assert req.run_config["ops"]["raw_volume"]["config"]["drop_prefix"] == "incoming1"
    assert [r.partition_keys for r in second.dynamic_partitions_requests] == [["CASE1"]]
    assert instance.get_dynamic_partitions("cases") == ["CASE1"]
    assert not tick().run_requests   # the drop stays until its run retires it: no second run


def test_partial_drop_waits_until_every_listed_volume_is_there_and_stable(env):
    store, _, tick = env
    store.put_bytes("inc/case.json", _case_json())
    store.put_bytes("inc/vol_00.tif", b"abc")
    for _ in range(3):
        result = tick()
        assert not result.run_requests
    assert "waiting for volumes ['vol_01.tif']" in result.skip_reason.skip_message
    store.put_bytes("inc/vol_01.tif", b"de")       # arrives: the listing changed, wait again
    assert not tick().run_requests
    assert len(tick().run_requests) == 1


def test_growing_file_is_not_judged_until_its_size_is_stable(env):
    store, _, tick = env
    _drop(store, "grow")
    tick()
    store.put_bytes("grow/vol_01.tif", b"longer volume bytes now")  # still being copied
    assert not tick().run_requests
    assert len(tick().run_requests) == 1


def test_duplicate_content_gives_one_run_and_is_recorded_in_duplicates(env):
    store, _, tick = env
    _drop(store, "first")
    tick()
    assert len(tick().run_requests) == 1
    _drop(store, "second")               # same bytes, another folder name
    tick()
    result = tick()
    assert not result.run_requests
    (dup,) = store.list_keys("_duplicates/")
    assert dup.endswith("REASON.txt")
    reason = store.get_bytes(dup).decode()
    assert "same content" in reason and "first" in reason
    sha = hashlib.sha256(store.get_bytes("first/vol_00.tif")).hexdigest()
    assert f"vol_00.tif  {store.size('first/vol_00.tif')} bytes  sha256 {sha}" in reason
    assert store.list_keys("second/") == []


def test_same_content_after_processing_is_not_run_again(env):
    store, _, tick = env
    _drop(store, "a")
    tick()
    assert len(tick().run_requests) == 1
    store.move_prefix("a", "_processed/a-x")   # what raw_volume does after ingest
    tick()
    _drop(store, "a")                          # dropped again, same content, same name
    tick()
    assert not tick().run_requests
    assert store.list_keys("_duplicates/")


def test_changed_content_is_a_new_run(env):
    store, _, tick = env
    _drop(store, "a")
    tick()
    (r1,) = tick().run_requests
    store.move_prefix("a", "_processed/a-x")
    tick()
    _drop(store, "a2", payload=b"re-acquired")
    tick()
    (r2,) = tick().run_requests
    # Issue 17 finding 7: other content under a known case_id is a new version, never an overwrite.
    assert (r1.partition_key, r2.partition_key) == ("CASE1", "CASE1~v2") and r1.run_key != r2.run_key


@pytest.mark.parametrize("content,why", [
    (b"{not json", "invalid"),
    (json.dumps({"schema_version": 1, "case_id": "X"}).encode(), "missing"),
    (json.dumps({"schema_version": 1, "case_id": "bad id/..", "subject_id": "S", "eye": "OX",
                 "location_deg": {"horizontal": 0, "vertical": 0}, "axial_length_mm": 240,
                 "scan_field_deg": {"bscan": 1, "aline": 1}, "depth_um_per_px": 2,
                 "volumes": ["v.tif"]}).encode(), "axial_length_mm"),
])
def test_malformed_drop_is_quarantined_with_a_reason(env, content, why):
    store, _, tick = env
    store.put_bytes("bad/case.json", content)
    store.put_bytes("bad/v.tif", b"123")
    tick()
    assert not tick().run_requests
    assert store.list_keys("bad/") == []
    reason = store.get_bytes("_quarantine/bad/REASON.txt").decode()
    assert why in reason
    assert store.exists("_quarantine/bad/v.tif") and store.exists("_quarantine/bad/case.json")


def test_empty_volume_is_quarantined(env):
    store, _, tick = env
    store.put_bytes("e/vol_00.tif", b"")
    store.put_bytes("e/vol_01.tif", b"x")
    store.put_bytes("e/case.json", _case_json())
    tick()
    tick()
    assert "empty" in store.get_bytes("_quarantine/e/REASON.txt").decode()


def test_scan_drop_state_roundtrips_through_json(tmp_path):
    store = LocalObjectStore(tmp_path)
    _drop(store, "d")
    _, state, _ = scan_drop(store, {})
    requests, state2, _ = scan_drop(store, json.loads(json.dumps(state)))
    assert len(requests) == 1 and requests[0]["content_hash"] in state2["requested"]


def test_drop_hash_equals_the_case_folder_hash(tmp_path):
    # The sensor's run key is the same content hash a case folder has on disk, so a case
    # is recognised whether it comes from a local folder or an S3 drop.
    from aooct_core.geometry import Acquisition
    from aooct_core.io import case_content_hash, write_case
    from aooct_assets.sensors import content_hash_of_drop
    import numpy as np

    vols = np.random.default_rng(0).random((2, 4, 16, 8), dtype=np.float32)
    acq = Acquisition("HASH1", "S1", "OD", (2.0, 0.0), 24.0, (1.0, 1.0), (4, 16, 8), 2.0)
    folder = write_case(tmp_path / "case", acq, vols)
    store = LocalObjectStore(tmp_path / "drop")
    for f in folder.iterdir():
        store.put_file(f"incoming/{f.name}", f)
    case_dict = json.loads((folder / "case.json").read_text())
    assert content_hash_of_drop(store, "incoming", case_dict) == case_content_hash(folder)


def _launch(instance, result):
    """What the daemon does with a sensor result: one run per request, with its tags."""
    from dagster._core.test_utils import create_run_for_test
    for req in result.run_requests or []:
        create_run_for_test(instance, job_name="case_pipeline",
                            tags={**req.tags, "dagster/partition": req.partition_key})


def test_same_case_id_same_content_reuses_the_partition_other_content_is_versioned(env):
    store, instance, tick = env
    _drop(store, "a")
    tick()
    first = tick()
    _launch(instance, first)
    store.move_prefix("a", "_processed/a-x")
    for name, payload, want in (("b", b"re-acquired", "CASE1~v2"), ("c", b"third", "CASE1~v3")):
        _drop(store, name, payload=payload)
        tick()
        result = tick()
        (req,) = result.run_requests
        assert req.partition_key == want
        _launch(instance, result)
        store.move_prefix(name, f"_processed/{name}-x")
    assert instance.get_dynamic_partitions("cases") == ["CASE1", "CASE1~v2", "CASE1~v3"]


def test_quarantine_policy_refuses_a_conflicting_case_id(tmp_path):
    store = LocalObjectStore(tmp_path / "drop")
    instance = DagsterInstance.ephemeral()
    sensor = make_drop_sensor(store, job_name="case_pipeline", conflict_policy="quarantine")
    cursor = None
    for name, payload in (("a", b"one"), ("b", b"two")):
        _drop(store, name, payload=payload)
        for _ in range(2):
            result = sensor(build_sensor_context(instance=instance, cursor=cursor))
            cursor = result.cursor
            for req in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            _launch(instance, result)
        store.move_prefix(name, f"_processed/{name}")
    assert not store.list_keys("_processed/b/")
    reason = store.get_bytes("_quarantine/b/REASON.txt").decode()
    assert "already stored with other content" in reason and "AOOCT_CASE_ID_CONFLICT" in reason
    instance.dispose()


def test_content_changed_at_the_same_size_after_request_is_requested_again(env):
    """Issue 17 finding 8: corrupted in place (or a preallocating copier) after the sensor saw it."""
    import os
    import time
    store, _, tick = env
    _drop(store, "a")
    tick()
    (r1,) = tick().run_requests
    path = store.local_path("a/vol_00.tif")
    time.sleep(0.01)
    path.write_bytes(b"X" * path.stat().st_size)          # same size, other bytes
    os.utime(path, ns=(time.time_ns(), time.time_ns()))
    assert not tick().run_requests                          # changed: wait until stable again
    (r2,) = tick().run_requests
    assert r2.run_key != r1.run_key
    path.write_bytes(b"volume-bytes\x00")                  # restored to the first content
    tick()
    (r3,) = tick().run_requests                            # requested again, not lost
    assert r3.run_key.startswith(r1.run_key) and r3.run_key != r1.run_key


@pytest.mark.parametrize("bad", ["deep", "digits", "dangling", "fifo", "symlink", "huge"])
def test_one_bad_drop_never_stalls_the_others(env, tmp_path, bad):
    """Issue 17 findings 5 and 7: each is quarantined with a reason; the good drop is requested."""
    import os
    store, _, tick = env
    _drop(store, "good", case_id="GOOD")
    root = store.root
    (root / "bad").mkdir()
    if bad == "deep":
        (root / "bad" / "case.json").write_text("[" * 100_000 + "]" * 100_000)
    elif bad == "digits":
        (root / "bad" / "case.json").write_text('{"schema_version": 1' + "1" * 5000 + "}")
    elif bad == "dangling":
        _drop(store, "bad", case_id="BAD")
        os.symlink(tmp_path / "nowhere.tif", root / "bad" / "extra.tif")
    elif bad == "fifo":
        os.mkfifo(root / "bad" / "case.json")
    elif bad == "symlink":
        outside = tmp_path / "outside.tif"
        outside.write_bytes(b"a file outside the drop")
        _drop(store, "bad", case_id="BAD")
        (root / "bad" / "vol_00.tif").unlink()
        os.symlink(outside, root / "bad" / "vol_00.tif")
    elif bad == "huge":
        with open(root / "bad" / "case.json", "wb") as fh:
            fh.truncate(5 << 20)
    tick()
    result = tick()
    assert [r.partition_key for r in result.run_requests] == ["GOOD"]
    reason = store.get_bytes("_quarantine/bad/REASON.txt").decode()
    assert reason.strip(), reason
    assert not store.list_keys("bad/") and not store.refused_entries("bad/")
    if bad == "symlink":
        assert "symbolic link" in reason


def test_folder_named_by_the_subject_is_renamed_to_its_token_before_the_run(env):
    """Issue 17: a drop folder's name holding the case's subject_id is never stored: the
    cursor and skip reasons name it by token, the run gets the renamed folder."""
    store, instance, tick = env
    _drop(store, "S1-scan")                       # _case_json's subject_id is "S1"
    first = tick()
    assert "S1-scan" not in first.cursor and "S1-scan" not in first.skip_reason.skip_message
    (req,) = tick().run_requests
    renamed = req.run_config["ops"]["raw_volume"]["config"]["drop_prefix"]
    assert renamed.startswith("drop-") and req.tags["aooct/drop"] == renamed
    assert not store.list_keys("S1-scan/") and store.exists(f"{renamed}/case.json")
    assert "S1-scan" not in tick().cursor
    assert not tick().run_requests                  # still one run for it


def test_interrupted_rename_is_resumed_into_the_same_token(env):
    from aooct_assets.quarantine import drop_token

    store, instance, tick = env
    _drop(store, "S1-scan")
    token = drop_token("S1-scan")
    store.move("S1-scan/vol_00.tif", f"{token}/vol_00.tif")   # as a killed move leaves it
    tick()
    (req,) = tick().run_requests
    assert req.run_config["ops"]["raw_volume"]["config"]["drop_prefix"] == token
    assert sorted(store.list_keys(f"{token}/")) == [f"{token}/{n}" for n in ("case.json", "vol_00.tif", "vol_01.tif")]


@pytest.mark.parametrize("case_id, volumes, why", [
    ("S1_OD", ("vol_00.tif",), "case_id holds the patient's subject_id"),
    ("CASE7", ("vol_00.tif", "s1_repeat.tif"), "volume 2 of 2's file name holds the patient's subject_id"),
])
def test_case_id_or_volume_name_holding_the_subject_is_quarantined_without_it(env, case_id, volumes, why):
    from aooct_core.io.phi import Identifier, find_identifiers

    store, instance, tick = env
    _drop(store, "incoming", case_id=case_id, volumes=volumes)
    tick()
    result = tick()
    assert not result.run_requests and instance.get_dynamic_partitions("cases") == []
    (reason_key,) = [k for k in store.list_keys("_quarantine/") if k.endswith("REASON.txt")]
    reason = store.get_bytes(reason_key).decode()
    assert why in reason
    assert find_identifiers(reason, [Identifier("subject_id", "S1")]) == []
    keys = store.list_keys("_quarantine/")
    assert all(not find_identifiers(k, [Identifier("subject_id", "S1")]) for k in keys), keys
    assert find_identifiers(result.skip_reason.skip_message + result.cursor, [Identifier("subject_id", "S1")]) == []
