"""``metrics``: the tidy metrics table (Parquet) of a case, also stored in the metadata DB."""

import io
import math
import time

import numpy as np
from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, asset

from aooct_assets.assets._common import (CODE_VERSION, RETRY, artifact_metadata, case_prefix,
                                         db_of, json_bytes, load_json, load_npy, put,
                                         record_artifacts, step_errors, store_of)
from aooct_assets.assets.masks import STRUCTURES
from aooct_assets.partitions import cases_partitions

__all__ = ["metrics", "compute_case_metrics"]

#: Arrays of each structure that its metrics are computed from (as the mask assets store them).
_MEASURED_FROM = {"cones": ("points_rc",), "rpe": ("points_rc",), "capillaries": ("mask",),
                  "nfl": ("mask", "orientation_rad")}


def compute_case_metrics(store, case_id: str) -> tuple[dict, dict, dict]:
    """(metrics by structure, mask summaries, en face summary) from the stored masks.

    Each structure is measured by :func:`ml.recipe.measure_structure`, the function
    ``aooct analyze`` measures with, on the arrays the mask assets stored (bit-identical
    to the ones the recipe returned), so the numbers agree with the CLI's.
    """
    from ml.recipe import measure_structure

    base = case_prefix(case_id)
    enface = load_json(store, f"{base}/enface/summary.json")
    summaries = {s: load_json(store, f"{base}/masks/{s}/summary.json") for s in STRUCTURES}
    by_structure = {}
    for s in STRUCTURES:
        keys = [f"{base}/masks/{s}/{name}.npy" for name in _MEASURED_FROM[s]]
        arrays = {k.rsplit("/", 1)[1][:-4]: load_npy(store, k) for k in keys if store.exists(k)}
        by_structure[s] = measure_structure(s, arrays, image_shape=enface["shape_px"],
                                            um_per_px=enface["um_per_px"],
                                            not_analysed=summaries[s].get("not_analysed", ""))
    return by_structure, summaries, enface


@asset(partitions_def=cases_partitions, group_name="metrics", code_version="metrics-2",
       retry_policy=RETRY, kinds={"polars", "parquet"},
       deps=[AssetKey(v[0]) for v in STRUCTURES.values()] + [AssetKey("enface_projections")],
       required_resource_keys={"object_store", "metadata_db"},
       description="Cone/RPE mosaic, capillary and nerve-fibre metrics with 95 % CIs, tidy Parquet.")
def metrics(context: AssetExecutionContext) -> MaterializeResult:
    from aooct_core.metrics import cone_density_percentile, metrics_table

    case_id = context.partition_key
    store, db = store_of(context), db_of(context)
    base = case_prefix(case_id)
    written: dict = {}
    with step_errors(f"metrics of case {case_id}"):
        t0 = time.perf_counter()
        by_structure, summaries, enface = compute_case_metrics(store, case_id)
        model_versions = {s: summaries[s]["model_version"] for s in STRUCTURES}
        table = metrics_table(case_id, by_structure, model_version=";".join(
            f"{s}={v}" for s, v in sorted(model_versions.items())), code_version=CODE_VERSION)
        compute_s = time.perf_counter() - t0
        buf = io.BytesIO()
        table.write_parquet(buf, statistics=False, compression="zstd")
        put(store, f"{base}/metrics/metrics.parquet", buf.getvalue(), written)
        density = by_structure["cones"]["density_cells_per_mm2"]
        percentile, z = cone_density_percentile(density.value, enface["eccentricity_deg"])
        summary = {"case_id": case_id, "model_versions": model_versions, "code_version": CODE_VERSION,
                   "eccentricity_deg": enface["eccentricity_deg"],
                   "cone_density_percentile": float(percentile), "cone_density_z": float(z),
                   "metrics": {s: {k: v.to_dict() for k, v in sorted(d.items())}
                               for s, d in sorted(by_structure.items())}}
        put(store, f"{base}/metrics/summary.json", json_bytes(summary), written)
        rows = [{k: _none_if_nan(r[k]) if k in ("value", "ci_low", "ci_high") else r[k]
                 for k in ("structure", "metric", "value", "unit", "ci_low", "ci_high", "method",
                           "model_version", "code_version")} | {"run_id": context.run.run_id}
                for r in table.to_dicts()]
        db.record_metrics(case_id, rows)
        record_artifacts(db, case_id, "metrics", store, written, context.run.run_id)
    cones = by_structure["cones"]
    meta = artifact_metadata(store, written)
    meta.update(
        cone_count=int(cones["count"].value),
        cone_density_cells_per_mm2=float(density.value),
        cone_density_ci_low=_num(density.ci_low), cone_density_ci_high=_num(density.ci_high),
        cone_density_percentile=float(percentile),
        rpe_count=int(by_structure["rpe"]["count"].value),
        capillary_area_density=float(by_structure["capillaries"]["area_density"].value),
        nfl_bundle_count=float(by_structure["nfl"]["bundle_count"].value),
        model_versions=model_versions, n_rows=int(table.height), compute_s=round(compute_s, 3),
    )
    return MaterializeResult(metadata=meta, data_version=DataVersion(meta["content_hash"][:32]))


def _none_if_nan(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _num(x) -> float:
    return float("nan") if x is None else float(np.float64(x))
