"""The documented k8s_job_executor setup is valid configuration for dagster-k8s 0.29.27."""
from __future__ import annotations

import pytest

from aooct_assets.jobs import executor_from_env, k8s_executor, k8s_executor_config

dagster_k8s = pytest.importorskip("dagster_k8s", reason="dagster-k8s==0.29.27 not installed")


def test_k8s_executor_config_validates_against_dagster_k8s_schema():
    from dagster._config import process_config

    from dagster_k8s import k8s_job_executor

    cfg = k8s_executor_config(job_namespace="aooct")
    result = process_config(k8s_job_executor.config_schema.config_type, cfg)
    assert result.success, result.errors
    assert result.value["job_namespace"] == "aooct" and result.value["max_concurrent"] == 8
    assert k8s_executor(job_namespace="aooct").name == "k8s"


def test_gpu_step_tags_become_a_gpu_request_in_the_pod_spec():
    from dagster_k8s.job import get_user_defined_k8s_config

    from aooct_assets.assets.masks import mask_assets

    op_tags = mask_assets[0].op.tags  # as the executor sees them (JSON strings)
    k8s = get_user_defined_k8s_config(op_tags)
    assert k8s.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert k8s.pod_spec_config["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_executor_chosen_by_environment(monkeypatch):
    monkeypatch.setenv("AOOCT_EXECUTOR", "k8s")
    assert executor_from_env().name == "k8s"
    monkeypatch.setenv("AOOCT_EXECUTOR", "multiprocess")
    assert executor_from_env().name == "multiprocess"
    monkeypatch.setenv("AOOCT_EXECUTOR", "slurm")
    with pytest.raises(ValueError, match="AOOCT_EXECUTOR"):
        executor_from_env()
