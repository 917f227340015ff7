"""Tier 3: the code location loads, and its shape is what the platform promises."""
from __future__ import annotations

from dagster import AssetKey

from aooct_assets.assets._common import GPU_OP_TAGS, GPU_POOL
from aooct_assets.definitions import build_definitions
from resources.config import load_config

ASSETS = {"raw_volume", "corrected_volume", "enface_projections", "cone_detections",
          "rpe_detections", "capillary_mask", "nfl_mask", "metrics", "report"}


def _defs(tmp_path):
    return build_definitions(load_config({"AOOCT_HOME": str(tmp_path)}))


def test_definitions_load_with_every_asset_check_job_and_sensor(tmp_path):
    defs = _defs(tmp_path)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    job = defs.resolve_job_def("case_pipeline")
    assert job.partitions_def.name == "cases"
    sensors = {s.name for s in defs.sensors}
    assert {"case_drop_sensor", "case_failure_sensor"} <= sensors
    checks = graph.asset_check_keys
    assert {c.name for c in checks} >= {"registration_residual", "snr", "cones_uncertainty",
                                         "physiological_plausibility"}


def test_lineage_code_versions_pools_and_k8s_tags(tmp_path):
    graph = _defs(tmp_path).resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert parents["corrected_volume"] == {"raw_volume"}
    assert parents["enface_projections"] == {"corrected_volume"}
    assert parents["cone_detections"] == {"enface_projections", "corrected_volume"}
    assert parents["metrics"] >= {"cone_detections", "rpe_detections", "capillary_mask", "nfl_mask"}
    assert parents["report"] == {"metrics"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version, f"{key} has no code_version"
        assert node.partitions_def is not None and node.partitions_def.name == "cases"
    for name in ("corrected_volume", "cone_detections", "nfl_mask"):
        node = graph.get(AssetKey(name))
        assert node.pools == {GPU_POOL}
    assets_def = graph.get(AssetKey("cone_detections")).assets_def
    op_tags = assets_def.op.tags
    assert "nvidia.com/gpu" in str(op_tags["dagster-k8s/config"])
    assert assets_def.op.retry_policy is not None and assets_def.op.retry_policy.max_retries == 3
    assert GPU_OP_TAGS["dagster-k8s/config"]["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_checks_are_partitioned_and_the_quality_gates_block(tmp_path):
    defs = _defs(tmp_path)
    blocking = {}
    for checks_def in defs.asset_checks:
        for spec in checks_def.check_specs:
            blocking[spec.name] = spec.blocking
            assert spec.partitions_def is not None and spec.partitions_def.name == "cases"
    assert blocking == {"registration_residual": True, "snr": True, "cones_uncertainty": True,
                        "rpe_uncertainty": True, "capillaries_uncertainty": False,
                        "nfl_uncertainty": False, "physiological_plausibility": True,
                        "cone_mosaic": True}


def test_both_instance_configs_enable_run_monitoring_and_free_slots(tmp_path):
    """Issue 17 finding 2: neither instance config enabled run monitoring."""
    import yaml
    from pathlib import Path

    from aooct_assets.local_runs import EMBEDDED_DAGSTER_YAML

    repo_yaml = (Path(__file__).resolve().parents[2] / "dagster.yaml").read_text()
    for text in (EMBEDDED_DAGSTER_YAML, repo_yaml):
        mon = yaml.safe_load(text)["run_monitoring"]
        assert mon["enabled"] is True and mon["free_slots_after_run_end_seconds"] > 0
        assert mon["start_timeout_seconds"] > 0 and mon["cancel_timeout_seconds"] > 0
        assert mon["max_resume_run_attempts"] == 0
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(EMBEDDED_DAGSTER_YAML)
    from dagster import DagsterInstance
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
    assert "run_watchdog" in {s.name for s in _defs(tmp_path).sensors}
