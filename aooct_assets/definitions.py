"""``defs``: the Dagster code location of the aooct platform (``workspace.yaml`` loads it).

Endpoints come from the environment (``resources/config.py``): the same file serves the
embedded demo (SQLite, folders, MLflow on SQLite) and a cluster (PostgreSQL, S3/MinIO, an
MLflow server, the k8s executor).
"""
from __future__ import annotations

import os

from dagster import Definitions

from aooct_assets.assets import case_assets
from aooct_assets.checks import qc_checks
from aooct_assets.jobs import CASE_JOB_NAME, case_job, executor_from_env
from aooct_assets.run_hygiene import make_run_watchdog
from aooct_assets.sensors import make_drop_sensor, make_failure_sensor, mark_case_failed
from resources.config import PlatformConfig, load_config
from resources.dagster_resources import (ComputeDevice, MetadataDBResource, ModelRegistryResource,
                                         ObjectStoreResource)

__all__ = ["defs", "build_resources", "build_definitions"]


def build_resources(cfg: PlatformConfig) -> dict:
    """The resources of a deployment described by ``cfg``."""
    return {
        "object_store": ObjectStoreResource(url=cfg.object_store, **cfg.store_options()),
        "drop_store": ObjectStoreResource(url=cfg.drop, **cfg.store_options()),
        "metadata_db": MetadataDBResource(url=cfg.db_url),
        "model_registry": ModelRegistryResource(tracking_uri=cfg.mlflow_tracking_uri,
                                                artifact_location=str(cfg.mlflow_artifacts)
                                                if not cfg.mlflow_tracking_uri.startswith("http") else None,
                                                cache_dir=str(cfg.home / "model_cache")),
        "compute": ComputeDevice(device=cfg.device),
    }


def build_definitions(cfg: PlatformConfig | None = None, *, sensor_interval_s: int | None = None
                      ) -> Definitions:
    """Definitions for ``cfg``; the drop sensor ticks every ``AOOCT_SENSOR_INTERVAL_S`` (15) s."""
    cfg = cfg or load_config()
    if sensor_interval_s is None:
        sensor_interval_s = int(os.environ.get("AOOCT_SENSOR_INTERVAL_S", "15"))
    return Definitions(
        assets=case_assets,
        asset_checks=qc_checks,
        jobs=[case_job],
        sensors=[make_drop_sensor(cfg.drop, job_name=CASE_JOB_NAME, endpoint_url=cfg.s3_endpoint_url,
                                  minimum_interval_seconds=sensor_interval_s,
                                  conflict_policy=cfg.case_id_conflict),
                 make_failure_sensor(cfg.db_url),
                 make_run_watchdog(on_failed=lambda run, why: mark_case_failed(cfg.db_url, run, why))],
        resources=build_resources(cfg),
        executor=executor_from_env(),
    )


defs = build_definitions()
