"""What every per-case asset shares: resources, deterministic artifact I/O, retries, versions.

Artifacts are written through :class:`~resources.object_store.ObjectStore` (temporary key,
atomic commit) as bytes that depend only on the inputs and the code: ``np.save`` of
float32/bool/int arrays, JSON with sorted keys and no timestamps, Parquet without
statistics timestamps. Each asset writes its ``summary.json`` last, so a step killed half
way leaves only complete files, and the summary of the previous run (same bytes, because
the steps are deterministic) or none.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from dagster import Backoff, Failure, Jitter, RetryPolicy

import aooct_core
from resources.dagster_resources import unwrap
from resources.object_store import LocalObjectStore, ObjectStore, TransientStoreError

__all__ = ["RETRY", "GPU_POOL", "GPU_OP_TAGS", "CODE_VERSION", "step_errors", "store_of", "db_of",
           "device_of", "registry_of", "npy_bytes", "json_bytes", "load_npy", "load_json",
           "put", "case_prefix", "local_case_folder", "artifact_metadata", "record_artifacts"]

#: Retries with exponential backoff, for transient object-store and DB errors only
#: (everything else is re-raised by :func:`step_errors` as a non-retryable Failure).
RETRY = RetryPolicy(max_retries=3, delay=0.5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

#: Dagster pool of the GPU steps; ``dagster.yaml`` limits it to 1 step at a time locally.
GPU_POOL = "gpu"

#: Picked up by ``k8s_job_executor`` (dagster-k8s) for each GPU step's pod.
GPU_OP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"requests": {"nvidia.com/gpu": "1", "cpu": "2", "memory": "8Gi"},
                                           "limits": {"nvidia.com/gpu": "1", "memory": "16Gi"}}},
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                             "effect": "NoSchedule"}]},
    },
}

#: Bump ASSETS_REVISION when asset code changes the artifacts; per-asset ``code_version``s
#: (which make changed assets show as stale in the UI) are derived from it.
ASSETS_REVISION = "3"
CODE_VERSION = f"{aooct_core.__version__}+assets.{ASSETS_REVISION}"


def _transient_types() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import DisconnectionError, OperationalError

    return (TransientStoreError, OperationalError, DisconnectionError, ConnectionError, TimeoutError)


@contextlib.contextmanager
def step_errors(what: str):
    """Let transient errors through (the RetryPolicy retries them); make the rest final.

    Bad input or a bug is not fixed by running again, so it becomes a
    ``Failure(allow_retries=False)`` whose description says what failed.
    """
    try:
        yield
    except Failure:
        raise
    except _transient_types():
        raise
    except Exception as exc:
        raise Failure(description=f"{what}: {type(exc).__name__}: {exc}", allow_retries=False) from exc


def store_of(context) -> ObjectStore:
    return unwrap(context.resources.object_store)


def db_of(context):
    return unwrap(context.resources.metadata_db)


def device_of(context) -> str:
    return unwrap(context.resources.compute)


def registry_of(context):
    res = getattr(context.resources, "model_registry", None)
    return None if res is None else unwrap(res)


from aooct_core.artifact_keys import case_prefix  # noqa: E402,F401  (the layout's one statement; re-exported)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=True) + "\n").encode()


def load_npy(store: ObjectStore, key: str) -> np.ndarray:
    return np.load(io.BytesIO(store.get_bytes(key)), allow_pickle=False)


def load_json(store: ObjectStore, key: str):
    return json.loads(store.get_bytes(key))


def put(store: ObjectStore, key: str, data: bytes, written: dict) -> None:
    """Commit ``data`` under ``key`` and remember its sha256 and size in ``written``."""
    store.put_bytes(key, data)
    written[key] = {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}


def artifact_metadata(store: ObjectStore, written: dict) -> dict:
    """Materialization metadata naming every artifact with its content hash."""
    combined = hashlib.sha256(json.dumps(sorted((k, v["sha256"]) for k, v in written.items()))
                              .encode()).hexdigest()
    return {
        "content_hash": combined,
        "artifact_hashes": {k: v["sha256"][:16] for k, v in sorted(written.items())},
        "size_bytes": int(sum(v["size_bytes"] for v in written.values())),
        "uri": store.uri(next(iter(sorted(written)))) if written else "",
        "code_version": CODE_VERSION,
    }


def record_artifacts(db, case_id: str, asset_key: str, store: ObjectStore, written: dict,
                     run_id: str) -> None:
    db.record_artifacts(case_id, [
        {"asset_key": asset_key, "uri": store.uri(key), "content_hash": info["sha256"],
         "size_bytes": info["size_bytes"], "run_id": run_id} for key, info in sorted(written.items())])


@contextlib.contextmanager
def local_case_folder(store: ObjectStore, prefix: str):
    """A local folder with the objects under ``prefix/`` (the store's own folder when local)."""
    if isinstance(store, LocalObjectStore):
        yield store.local_path(prefix)
        return
    with tempfile.TemporaryDirectory(prefix="aooct-case-") as tmp:
        for key in store.list_keys(prefix.rstrip("/") + "/"):
            store.get_file(key, Path(tmp) / os.path.relpath(key, prefix))
        yield Path(tmp)
