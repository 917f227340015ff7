"""Jobs and executors: the per-case job, the default multiprocess executor, and k8s.

``case_pipeline`` materializes every per-case asset (and runs its blocking checks) for one
partition. Locally it runs on the multiprocess executor, GPU steps queued through the
``gpu`` pool. On Kubernetes, ``k8s_executor()`` runs each step in its own pod
(``dagster-k8s==0.29.27``); GPU steps carry ``dagster-k8s/config`` tags that request
``nvidia.com/gpu`` (see ``aooct_assets/assets/_common.py``). Configuration is documented
in ``docs/PLATFORM.md`` and checked by ``tests/assets/test_jobs.py``.
"""
from __future__ import annotations

import os

from dagster import AssetSelection, HookContext, define_asset_job, failure_hook, multiprocess_executor

from aooct_assets.partitions import cases_partitions

__all__ = ["CASE_JOB_NAME", "case_job", "default_executor", "k8s_executor_config", "k8s_executor",
           "executor_from_env"]

CASE_JOB_NAME = "case_pipeline"



@failure_hook(required_resource_keys={"metadata_db"})
def mark_case_failed(context: HookContext) -> None:
    """A failed step sets the case status: ``qc_failed`` for a blocking QC check, else ``failed``."""
    from dagster._core.errors import DagsterAssetCheckFailedError

    from resources.dagster_resources import unwrap

    run = context.instance.get_run_by_id(context.run_id)
    case_id = run.tags.get("dagster/partition") if run else None
    if not case_id:
        return
    db = unwrap(context.resources.metadata_db)
    if db.get_case(case_id) is None:
        return  # failed before ingest registered the case
    qc = isinstance(context.op_exception, DagsterAssetCheckFailedError)
    db.set_case_status(case_id, "qc_failed" if qc else "failed")
    exc = context.op_exception
    reason = f"{context.step_key}: " + (f"{type(exc).__name__}: {exc}" if exc is not None else "failed")
    db.record_run(context.run_id, case_id, status="qc_failed" if qc else "failure",
                  dagster_run_id=context.run_id, reason=reason.splitlines()[0])


case_job = define_asset_job(
    CASE_JOB_NAME, selection=AssetSelection.all(), hooks={mark_case_failed},
    partitions_def=cases_partitions,
    description="Every per-case asset and its blocking QC checks for one case (partition).",
)


def default_executor(max_concurrent: int | None = None):
    """Multiprocess executor; ``AOOCT_MAX_CONCURRENT`` (default 2) steps at once."""
    n = int(max_concurrent or os.environ.get("AOOCT_MAX_CONCURRENT", "2"))
    return multiprocess_executor.configured({"max_concurrent": n})


def k8s_executor_config(*, job_namespace: str | None = None,
                        env_config_maps: list[str] | None = None,
                        env_secrets: list[str] | None = None, max_concurrent: int = 8) -> dict:
    """Run config for ``k8s_job_executor``: one pod per step, env from a ConfigMap and a Secret.

    The namespace defaults to ``AOOCT_K8S_NAMESPACE`` (``aooct``). Step pods use the image of
    the run pod (``DAGSTER_CURRENT_IMAGE``, set by the K8sRunLauncher from the code
    location), so the executor takes no image of its own. The ConfigMap
    ``aooct-env`` holds the endpoints (AOOCT_DB_URL, AOOCT_OBJECT_STORE, ...), the Secret
    ``aooct-secrets`` the credentials.
    """
    config = {
        "job_namespace": job_namespace or os.environ.get("AOOCT_K8S_NAMESPACE", "aooct"),
        "env_config_maps": env_config_maps if env_config_maps is not None else ["aooct-env"],
        "env_secrets": env_secrets if env_secrets is not None else ["aooct-secrets"],
        "max_concurrent": max_concurrent,
        "step_k8s_config": {"container_config": {"resources": {
            "requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}}},
    }
    return config


def k8s_executor(**kwargs):
    """``k8s_job_executor`` configured by :func:`k8s_executor_config` (needs dagster-k8s)."""
    try:
        from dagster_k8s import k8s_job_executor
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("AOOCT_EXECUTOR=k8s needs dagster-k8s: pip install "
                                  "'dagster-k8s==0.29.27'") from exc
    return k8s_job_executor.configured(k8s_executor_config(**kwargs))


def executor_from_env():
    """``AOOCT_EXECUTOR``: ``multiprocess`` (default), ``in_process`` or ``k8s``."""
    kind = os.environ.get("AOOCT_EXECUTOR", "multiprocess")
    if kind == "multiprocess":
        return default_executor()
    if kind == "in_process":
        from dagster import in_process_executor

        return in_process_executor
    if kind == "k8s":
        return k8s_executor()
    raise ValueError(f"AOOCT_EXECUTOR must be 'multiprocess', 'in_process' or 'k8s'; got {kind!r}")
