"""Test resources and one-call runs for the platform tests (tests/assets, tests/e2e)."""
from __future__ import annotations

import shutil
from pathlib import Path

from dagster import DagsterInstance, Definitions, ResourceDefinition, materialize

from aooct_assets.assets import case_assets
from aooct_assets.checks import qc_checks
from aooct_assets.jobs import CASE_JOB_NAME, case_job
from resources.dagster_resources import ComputeDevice
from resources.metadata_db import make_test_metadata_db
from resources.object_store import LocalObjectStore, ObjectStore


def make_test_resources(root: Path, *, object_store: ObjectStore | None = None,
                   drop_store: ObjectStore | None = None) -> dict:
    """Local folders + SQLite under ``root``, committed weights without MLflow, CPU."""
    root.mkdir(parents=True, exist_ok=True)
    return {
        "object_store": object_store or LocalObjectStore(root / "objects"),
        "drop_store": drop_store or LocalObjectStore(root / "drop"),
        "metadata_db": make_test_metadata_db(root),
        "model_registry": ResourceDefinition.none_resource(),
        "compute": ComputeDevice(device="cpu"),
    }


def run_case(case_id: str, resources: dict, *, drop_prefix: str = "", instance=None, checks=True,
             raise_on_error=False):
    """Materialize every per-case asset (and its checks) for one partition, in process."""
    instance = instance or DagsterInstance.ephemeral()
    if not instance.has_dynamic_partition("cases", case_id):
        instance.add_dynamic_partitions("cases", [case_id])
    run_config = {"ops": {"raw_volume": {"config": {"drop_prefix": drop_prefix}}}}
    if not checks:
        return materialize(case_assets, partition_key=case_id, resources=resources, instance=instance,
                           raise_on_error=raise_on_error, run_config=run_config)
    # The production job (with its failure hook), executed in process.
    defs = Definitions(assets=case_assets, asset_checks=qc_checks, jobs=[case_job], resources=resources)
    return defs.resolve_job_def(CASE_JOB_NAME).execute_in_process(
        partition_key=case_id, instance=instance, raise_on_error=raise_on_error, run_config=run_config)


def materialized(result) -> dict:
    """asset name → metadata dict (plain values) of the run's materializations."""
    out = {}
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def check_results(result) -> dict:
    return {ev.event_specific_data.check_name: ev.event_specific_data
            for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION"}


def weights_for_tests(tmp_dir: Path) -> Path:
    """The committed ``ml/weights`` when every task has one; otherwise untrained networks of
    the same architecture written to ``tmp_dir`` (orchestration tests check data flow, not
    accuracy, and must not depend on the ML engineer's training having finished)."""
    from ml import TASKS, WEIGHTS_DIR

    if all((WEIGHTS_DIR / f"{t}.pt").exists() for t in TASKS):
        return WEIGHTS_DIR
    import torch

    from ml.checkpoint import save_checkpoint
    from ml.models import build_model
    from ml.models.unet import DEFAULT_WIDTHS

    tmp_dir = Path(tmp_dir)
    torch.manual_seed(0)
    for task, kind in TASKS.items():
        save_checkpoint(tmp_dir / f"{task}.pt", build_model(kind), {
            "task": task, "kind": kind, "widths": list(DEFAULT_WIDTHS[kind]), "peak_threshold": 0.5,
            "min_distance_factor": 0.5, "mask_threshold": 0.5, "model_version": f"{task}-untrained"})
    return tmp_dir


def copy_case_files(case_folder: Path, drop, name: str) -> None:
    """Put a case folder's ``case.json`` and volumes into a drop store under ``name/``."""
    import json

    spec = json.loads((Path(case_folder) / "case.json").read_text())
    for f in [*spec["volumes"], "case.json"]:
        drop.put_file(f"{name}/{f}", Path(case_folder) / f)


def drop_case(case_folder: Path, drop_root: Path, name: str) -> Path:
    """Copy a case folder into a local drop folder (case.json and volumes only; truth stays behind)."""
    dest = drop_root / name
    dest.mkdir(parents=True)
    for f in case_folder.iterdir():
        if f.name == "case.json" or f.suffix in (".tif", ".tiff", ".npy", ".dcm"):
            shutil.copy2(f, dest / f.name)
    return dest
