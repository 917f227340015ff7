"""Integration on real servers: PostgreSQL (Dagster instance + metadata DB) and the S3 protocol.

The PostgreSQL server is the one at 127.0.0.1:5432 (``AOOCT_TEST_PG`` to change it); each
test creates uniquely named databases and drops them afterwards, and skips with the reason
when no server answers. S3 is moto's server on a free loopback port, started here.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:  # tests/ml (no __init__.py) would shadow the `ml` package
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("ml"), "__file__", "") is None:
    del sys.modules["ml"]

from dagster import (AssetKey, DagsterInstance, ResourceDefinition, build_sensor_context,  # noqa: E402
                     materialize)

from aooct_assets.assets import case_assets  # noqa: E402
from aooct_assets.sensors import make_drop_sensor  # noqa: E402
from aooct_assets.testing import copy_case_files, materialized, weights_for_tests  # noqa: E402
from resources.dagster_resources import ComputeDevice  # noqa: E402
from resources.metadata_db import SqlMetadataDB  # noqa: E402
from resources.object_store import S3ObjectStore  # noqa: E402
from resources.testing import ServiceUnavailable, moto_s3_server, postgres_database  # noqa: E402

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_urls():
    try:
        with postgres_database() as dagster_url, postgres_database() as aooct_url:
            yield dagster_url, aooct_url
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setenv("AOOCT_WEIGHTS_DIR", str(weights_for_tests(tmp_path / "weights")))


def test_repository_dagster_yaml_runs_an_instance_on_postgresql(pg_urls, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(_REPO) / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", pg_urls[0])
    instance = DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("cases", ["X1"])
        assert instance.get_dynamic_partitions("cases") == ["X1"]
        assert instance.event_log_storage.get_concurrency_info("gpu").slot_count in (0, 1)
    finally:
        instance.dispose()


def test_s3_drop_to_metrics_on_postgresql_and_s3(pg_urls, weights, tmp_path):
    from aooct_core.phantom import make_phantom, write_phantom

    from dagster._core.test_utils import instance_for_test

    case = tmp_path / "PG1"
    write_phantom(case, make_phantom(seed=21, shape_px=(32, 256, 48), case_id="PG1"))
    with moto_s3_server("aooct-int") as endpoint, instance_for_test(
            overrides={"storage": {"postgres": {"postgres_url": pg_urls[0]}}}) as instance:
        objects = S3ObjectStore("aooct-int", "objects", endpoint_url=endpoint)
        drop = S3ObjectStore("aooct-int", "drop", endpoint_url=endpoint)
        copy_case_files(case, drop, "upload-1")
        sensor = make_drop_sensor(drop, job_name="case_pipeline")
        cursor, requests = None, []
        for _ in range(2):
            result = sensor(build_sensor_context(instance=instance, cursor=cursor))
            cursor = result.cursor
            for req in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
            requests += result.run_requests or []
        (req,) = requests
        db = SqlMetadataDB(pg_urls[1])
        try:
            res = {"object_store": objects, "drop_store": drop, "metadata_db": db,
                   "model_registry": ResourceDefinition.none_resource(),
                   "compute": ComputeDevice(device="cpu")}
            run = materialize(case_assets, partition_key=req.partition_key, instance=instance,
                              resources=res, run_config=req.run_config)
            assert run.success
            meta = materialized(run)
            assert meta["report"]["report_uri"] == "s3://aooct-int/objects/cases/PG1/report/report.html"
            assert objects.exists("cases/PG1/metrics/metrics.parquet")
            assert drop.list_keys("upload-1/") == [] and drop.list_keys("_processed/")
            assert db.get_case("PG1")["status"] == "processed"
            assert {r["structure"] for r in db.get_metrics("PG1")} == {"cones", "rpe", "capillaries", "nfl"}
            # Dagster's own records of the run live in PostgreSQL too
            mats = instance.fetch_materializations(
                records_filter=AssetKey("metrics"), limit=5).records
            assert mats and mats[0].partition_key == "PG1"
        finally:
            db.close()
