"""Drop sensor: waits for partial drops, one run per content, quarantines malformed drops."""
from __future__ import annotations

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


def test_duplicate_content_gives_one_run_and_is_kept_in_duplicates(env):
    store, _, tick = env
    _drop(store, "first")
    tick()
    assert len(tick().run_requests) == 1
    _drop(store, "second")               # same bytes, another folder name
    tick()
    result = tick()
    assert not result.run_requests
    dup = [k for k in store.list_keys("_duplicates/")]
    assert any(k.endswith("REASON.txt") for k in dup) and any(k.endswith("vol_00.tif") for k in dup)
    reason = store.get_bytes(next(k for k in dup if k.endswith("REASON.txt"))).decode()
    assert "same content" in reason and "first" in reason
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
    assert r1.partition_key == r2.partition_key == "CASE1" and r1.run_key != r2.run_key


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
