"""All data access of the review app, through the ``resources`` interfaces.

Pages import only this module for data: the metadata DB
(:class:`resources.metadata_db.MetadataDB`), the object store
(:class:`resources.object_store.ObjectStore`) and the model registry
(:class:`resources.model_registry.ModelRegistry`), configured from the
environment by :func:`resources.config.load_config`. Extra variable read here:

``AOOCT_EXPORT``  where exports go: a folder or ``s3://bucket/prefix``
                  (default ``$AOOCT_HOME/exports``).

Caching: connections are ``st.cache_resource`` (one per URL per process);
immutable artifacts (arrays under ``cases/<id>/``, written once by the pipeline
through a temporary key) are ``st.cache_data`` keyed by store and key; DB rows
are never cached, because reviews, labels and roles change under the user.

Artifact keys read (``cases/<case_id>/`` prefix, as ``aooct_assets`` writes them)
---------------------------------------------------------------------------------
``enface/<slab>.npy``                           (row, col) en face slab
``masks/<cones|rpe>/points_rc.npy``             (N, 2) detected cell centres, en face px
``masks/<cones|rpe>/heatmap_var.npy``           (row, col) detector predictive variance
``masks/<capillaries|nfl>/mask.npy``            (row, col) bool mask
``masks/<capillaries|nfl>/probability_var.npy`` (row, col) segmentation predictive variance
``corrected/volume.npy``                        (bscan, depth, aline) for the B-scan viewer
``corrected/surfaces/<layer>.npy``              (bscan, aline) layer depth, px
``report/report.html``                          the case report
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from api.decisions import decision_state
from aooct_core.artifact_keys import ARTIFACT_KINDS, case_prefix, classify

__all__ = [
    "UIConfig",
    "ui_config",
    "get_db",
    "get_store",
    "get_export_store",
    "get_registry",
    "CaseArtifacts",
    "case_artifacts",
    "load_array",
    "load_bscan",
    "normative_band",
    "export_table",
    "export_report",
]

CELL_TARGETS = ("cones", "rpe")
VESSEL_TARGETS = ("capillaries", "nfl")


@dataclass(frozen=True)
class UIConfig:
    """Endpoints the app reads and writes."""

    db_url: str
    object_store: str
    export: str
    drop: str
    mlflow_tracking_uri: str
    s3_endpoint_url: str | None
    s3_region: str


def ui_config() -> UIConfig:
    """Resolve the configuration from the environment (see module docstring)."""
    from resources.config import load_config

    cfg = load_config()
    return UIConfig(
        db_url=cfg.db_url,
        object_store=cfg.object_store,
        export=cfg.export,
        drop=cfg.drop,
        mlflow_tracking_uri=cfg.mlflow_tracking_uri,
        s3_endpoint_url=cfg.s3_endpoint_url,
        s3_region=cfg.s3_region,
    )


@st.cache_resource(show_spinner=False)
def _db(url: str):
    from resources.metadata_db import SqlMetadataDB

    return SqlMetadataDB(url)


@st.cache_resource(show_spinner=False)
def _store(url: str, endpoint_url: str | None, region: str):
    from resources.object_store import make_object_store

    return make_object_store(url, endpoint_url=endpoint_url, region=region)


@st.cache_resource(show_spinner=False)
def _registry(tracking_uri: str):
    from resources.model_registry import ModelRegistry

    return ModelRegistry(tracking_uri)


def get_db():
    """The metadata DB of this deployment (cached per process)."""
    return _db(ui_config().db_url)


def get_store():
    """The artifact object store (cached per process)."""
    cfg = ui_config()
    return _store(cfg.object_store, cfg.s3_endpoint_url, cfg.s3_region)


def get_export_store():
    """The export location as an object store (a folder or an S3 prefix)."""
    cfg = ui_config()
    return _store(cfg.export, cfg.s3_endpoint_url, cfg.s3_region)


def get_drop_store():
    """The drop location as an object store (used when the drop is on S3)."""
    cfg = ui_config()
    return _store(cfg.drop, cfg.s3_endpoint_url, cfg.s3_region)


def get_registry():
    """The model registry (MLflow), cached per process."""
    return _registry(ui_config().mlflow_tracking_uri)


@st.cache_data(show_spinner=False, max_entries=64, ttl=3600)
def _load_bytes(store_url: str, key: str) -> bytes:
    return get_store().get_bytes(key)


def load_array(key: str) -> np.ndarray:
    """A ``.npy`` artifact as an array (cached)."""
    data = _load_bytes(ui_config().object_store, key)
    return np.load(io.BytesIO(data), allow_pickle=False)


@dataclass(frozen=True)
class CaseArtifacts:
    """Which artifacts a case has, by role (keys into the object store)."""

    case_id: str
    enface: dict[str, str] = field(default_factory=dict)
    points: dict[str, str] = field(default_factory=dict)
    masks: dict[str, str] = field(default_factory=dict)
    uncertainty: dict[str, str] = field(default_factory=dict)
    surfaces: dict[str, str] = field(default_factory=dict)
    volume: str | None = None
    report: str | None = None


@st.cache_data(show_spinner=False, ttl=30, max_entries=256)
def _case_keys(store_url: str, prefix: str) -> list[str]:
    # Short TTL: artifacts appear while the pipeline runs, but one listing per rerun
    # would be one S3 LIST call per widget click.
    return get_store().list_keys(prefix)


def case_artifacts(case_id: str) -> CaseArtifacts:
    """List the artifacts of a case in the object store (one listing, cached 30 s)."""
    prefix = case_prefix(case_id) + "/"
    found: dict[str, dict[str, str]] = {kind: {} for kind, _ in ARTIFACT_KINDS}
    volume = report = None
    for key in _case_keys(ui_config().object_store, prefix):
        hit = classify(key[len(prefix):])
        if hit is None:
            continue
        kind, name = hit
        if kind == "volume":
            volume = key
        elif kind == "report":
            report = key
        else:
            found[kind][name] = key
    return CaseArtifacts(case_id, volume=volume, report=report, **found)


def load_bscan(case_id: str, key: str, index: int) -> np.ndarray:
    """One B-scan ``(depth, aline)`` of the corrected volume (the volume is cached)."""
    volume = load_array(key)
    if not 0 <= index < volume.shape[0]:
        raise ValueError(f"B-scan index {index} out of range 0..{volume.shape[0] - 1} for {case_id}")
    return np.asarray(volume[index], dtype=np.float32)


def normative_band(eccentricity_deg: np.ndarray, *, axial_length_mm: float = 24.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Normative cone density mean and SD (cells/mm²) at each eccentricity (``aooct_core.metrics`` norms)."""
    from aooct_core.metrics import normative_cone_density

    pairs = [normative_cone_density(float(e), axial_length_mm=axial_length_mm)
             for e in np.asarray(eccentricity_deg).ravel()]
    mean = np.array([p[0] for p in pairs], dtype=np.float64)
    sd = np.array([p[1] for p in pairs], dtype=np.float64)
    return mean, sd


def export_table(df, *, actor: str, fmt: str) -> str:
    """Write a polars DataFrame as CSV or Parquet to the export location; return its URI."""
    from api.exports import write_table

    return write_table(df, get_export_store(), actor=actor, fmt=fmt)


def export_report(case_id: str, report_key: str, *, actor: str) -> str:
    """Copy a case report to the export location; return its URI."""
    from api.exports import copy_report

    return copy_report(get_store(), report_key, get_export_store(), case_id=case_id, actor=actor)


def qc_status(qc_rows: list[dict]) -> str:
    """Summarise QC rows of a case as "fail", "warn", "pass" or "none"."""
    if not qc_rows:
        return "none"
    failed = [r for r in qc_rows if not r.get("passed")]
    if any(r.get("severity") == "fail" for r in failed):
        return "fail"
    return "warn" if failed else "pass"


def _metric_lookup(rows: list[dict], structure: str, metric: str) -> dict | None:
    hits = [r for r in rows if r.get("structure") == structure and r.get("metric") == metric]
    return hits[-1] if hits else None


def case_rows(cases: list[dict]) -> list[dict]:
    """Table rows for the Cases page: status, QC summary and headline metrics."""
    db = get_db()
    out = []
    for c in cases:
        qc = db.get_qc(c["case_id"])
        metrics = db.get_metrics(c["case_id"])
        density = _metric_lookup(metrics, "cones", "density_cells_per_mm2")
        failed = sorted({r["check_name"] for r in qc if not r.get("passed")})
        runs = db.list_runs(c["case_id"])
        last = runs[-1] if runs else None
        decision = decision_state(db, c["case_id"], runs=runs)
        out.append({
            "case_id": c["case_id"],
            "subject_id": c.get("subject_id"),
            "eye": c.get("eye"),
            "eccentricity_deg": c.get("eccentricity_deg"),
            "acquired_at": c.get("acquired_at"),
            "status": c.get("status"),
            # the latest run: running / success / failure (why) — refreshed while one runs
            "last_run": None if last is None else (
                last["status"] + (f": {last['reason']}" if last.get("reason") else "")),
            "decision": None if decision.decision is None else (
                decision.decision + ("" if decision.current else " (earlier run)")),
            "qc": qc_status(qc),
            "qc_flags": ", ".join(failed),
            "cone_density_cells_per_mm2": density["value"] if density else None,
            "n_metrics": len(metrics),
        })
    return out


def metrics_frame():
    """All metrics joined with case fields and QC status, as a polars DataFrame."""
    import polars as pl

    db = get_db()
    rows = db.get_metrics()
    if not rows:
        return pl.DataFrame()
    case_ids = sorted({r["case_id"] for r in rows})
    cases = {cid: db.get_case(cid) or {} for cid in case_ids}
    qc = {cid: qc_status(db.get_qc(cid)) for cid in case_ids}
    keep = ("case_id", "structure", "metric", "value", "unit", "ci_low", "ci_high",
            "method", "model_version", "code_version")
    records = []
    for r in rows:
        c = cases[r["case_id"]]
        rec = {k: r.get(k) for k in keep}
        rec.update(subject_id=c.get("subject_id"), eye=c.get("eye"),
                   eccentricity_deg=c.get("eccentricity_deg"),
                   acquired_at=str(c.get("acquired_at") or ""), qc=qc[r["case_id"]],
                   status=c.get("status"))
        records.append(rec)
    return pl.DataFrame(records, infer_schema_length=None)
