"""Tier 2: ``materialize`` one partition with test resources (local folders, SQLite, CPU)."""
from __future__ import annotations

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from aooct_assets.assets import raw_volume
from aooct_assets.testing import check_results, make_test_resources, materialized, run_case
from resources.object_store import InMemoryObjectStore, TransientStoreError

from aooct_assets.testing import drop_case


@pytest.fixture
def dropped(phantom_case, tmp_path):
    drop_case(phantom_case, tmp_path / "drop", "incoming-PH1")
    return make_test_resources(tmp_path)


def test_every_asset_materializes_with_numbers_hashes_and_db_records(dropped, tmp_path):
    result = run_case("PH1", dropped, drop_prefix="incoming-PH1", checks=False)
    assert result.success
    meta = materialized(result)
    assert set(meta) == {"raw_volume", "corrected_volume", "enface_projections", "cone_detections",
                         "rpe_detections", "capillary_mask", "nfl_mask", "metrics", "report"}
    for name, m in meta.items():
        assert len(m["content_hash"]) == 64 and m["code_version"], name
    assert np.isfinite(meta["corrected_volume"]["residual_motion_um"])
    assert meta["corrected_volume"]["snr_db"] > 10
    cones = meta["cone_detections"]
    assert cones["model_name"] == "aooct-cones" and cones["model_version"].startswith("cones-")
    m = meta["metrics"]
    assert {"cone_count", "cone_density_cells_per_mm2", "cone_density_ci_low", "cone_density_ci_high",
            "model_versions"} <= set(m)
    store, db = dropped["object_store"], dropped["metadata_db"]
    # the drop was copied, verified and retired; nothing is left half-way
    assert dropped["drop_store"].list_keys("incoming-PH1/") == []
    assert dropped["drop_store"].list_keys("_processed/")
    assert store.exists("cases/PH1/corrected/volume.npy")
    vol = np.load(store.local_path("cases/PH1/corrected/volume.npy"))
    assert vol.dtype == np.float32 and vol.shape == (48, 256, 64)
    case = db.get_case("PH1")
    assert case["status"] == "processed" and case["content_hash"] == meta["raw_volume"]["content_hash"]
    assert {r["structure"] for r in db.get_metrics("PH1")} == {"cones", "rpe", "capillaries", "nfl"}
    assert {a["asset_key"] for a in db.list_artifacts("PH1")} >= {"raw_volume", "metrics", "report"}
    html = store.get_bytes("cases/PH1/report/report.html").decode()
    assert html.count("data:image/png;base64,") >= 6 and "src='http" not in html
    assert "density_cells_per_mm2" in html and "PH1" in html


def test_low_snr_blocks_segmentation_and_is_recorded(tmp_path):
    from aooct_core.phantom import make_phantom, write_phantom

    # 800 µm deep: the inner retina is lost in the noise (no ILM found), but the top rows are
    # more than 350 µm above the IS/OS, vitreous by anatomy, and the SNR is measured on them.
    write_phantom(tmp_path / "drop" / "NOISY", make_phantom(seed=5, shape_px=(32, 400, 48), snr_db=2.0,
                                                            case_id="NOISY"))
    res = make_test_resources(tmp_path)
    result = run_case("NOISY", res, drop_prefix="NOISY")
    assert not result.success
    checks = check_results(result)
    assert not checks["snr"].passed and checks["snr"].severity.value == "ERROR"
    assert "corrected_volume" in materialized(result)
    assert "cone_detections" not in materialized(result)   # blocked downstream
    db = res["metadata_db"]
    assert db.get_case("NOISY")["status"] == "qc_failed"
    assert db.get_case("NOISY")["qc_status"] == "fail"
    snr = next(q for q in db.get_qc("NOISY") if q["check_name"] == "snr")
    assert snr["severity"] == "fail" and snr["threshold"] == 10.0


def test_bad_volume_fails_once_with_a_clear_error(tmp_path, phantom_case):
    drop = drop_case(phantom_case, tmp_path / "drop", "BAD")
    (drop / "vol_01.tif").write_bytes(b"this is not a TIFF file")
    res = make_test_resources(tmp_path)
    result = run_case("PH1", res, drop_prefix="BAD")
    assert not result.success
    failures = [ev for ev in result.all_events if ev.is_step_failure]
    assert [ev.step_key for ev in failures] == ["preprocess_case"]
    assert "vol_01.tif" in failures[0].event_specific_data.error.to_string()
    assert not [ev for ev in result.all_events if ev.event_type_value == "STEP_RESTARTED"]
    assert res["metadata_db"].get_case("PH1")["status"] == "failed"
    # the case list says why (issue 22): the step and the error, naming the file
    (run,) = res["metadata_db"].list_runs("PH1")
    assert run["status"] == "failure" and run["reason"].startswith("preprocess_case: ")
    assert "vol_01.tif" in run["reason"]


class _FlakyStore(InMemoryObjectStore):
    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    def put_bytes(self, key, data):
        if self.failures > 0:
            self.failures -= 1
            raise TransientStoreError("S3 put_object: SlowDown (injected)")
        super().put_bytes(key, data)


def test_transient_store_errors_are_retried_with_backoff(tmp_path, phantom_case):
    drop_case(phantom_case, tmp_path / "drop", "PH1")
    res = make_test_resources(tmp_path, object_store=_FlakyStore(failures=2))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cases", ["PH1"])
    result = materialize([raw_volume], partition_key="PH1", resources=res, instance=instance,
                         run_config={"ops": {"raw_volume": {"config": {"drop_prefix": "PH1"}}}})
    assert result.success
    restarts = [ev for ev in result.all_events if ev.event_type_value == "STEP_RESTARTED"]
    assert len(restarts) == 2
    assert res["object_store"].exists("cases/PH1/raw/manifest.json")
    assert result.asset_materializations_for_node("raw_volume")[0].asset_key == AssetKey("raw_volume")


def test_preprocess_config_turns_the_denoiser_on(dropped):
    import json

    from aooct_assets.assets import preprocessed
    from aooct_assets.assets.preprocess import DenoiseMethod
    from aooct_core.preprocessing.denoise import DENOISE_METHODS

    assert {m.value for m in DenoiseMethod} == set(DENOISE_METHODS)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cases", ["PH1"])
    run_config = {"ops": {"raw_volume": {"config": {"drop_prefix": "incoming-PH1"}},
                          "preprocess_case": {"config": {"denoise": "nl_means"}}}}
    result = materialize([raw_volume, preprocessed], partition_key="PH1", resources=dropped,
                         instance=instance, run_config=run_config)
    assert result.success
    meta = materialized(result)["corrected_volume"]
    assert meta["denoise"] == "nl_means" and "denoise" in meta["timings_s"]
    summary = json.loads(dropped["object_store"].get_bytes("cases/PH1/corrected/summary.json"))
    assert summary["denoise"] == "nl_means"


def test_a_malformed_deidentification_record_is_refused_with_the_fix():
    from dagster import Failure

    from aooct_assets.assets.ingest import _merge_earlier_deid

    deid = {"vol_00.dcm": {"removed": ["PatientName"], "replaced_uids": []}}
    where = _merge_earlier_deid(deid, {"where": "DICOM receiver", "profile": "p", "files": {
        "vol_00.dcm": {"removed": ["PatientID"], "replaced_uids": ["SOPInstanceUID"]}}}, "d.json")
    assert where == {"where": "DICOM receiver", "profile": "p"}
    assert deid["vol_00.dcm"] == {"removed": ["PatientID", "PatientName"], "replaced_uids": ["SOPInstanceUID"]}
    with pytest.raises(Failure, match="d.json must be"):
        _merge_earlier_deid(deid, {"files": {"vol_00.dcm": {"removed": "PatientID"}}}, "d.json")
