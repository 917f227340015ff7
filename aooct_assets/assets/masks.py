"""Cell detections (cones, RPE) and vessel masks (capillaries, nerve fibre bundles) with uncertainty.

One asset per structure, all in the ``gpu`` pool. Weights come from the model registry
(``aooct-<target>@champion``) when one is configured, else from the committed
``ml/weights``; the model name and its content-addressed version go into the metadata.

``uncertainty_fraction`` is the share of outputs whose decision the model is unsure of:
detections with confidence < 0.5 (cells), or mask pixels whose mean ± 2 SD interval
crosses the 0.5 threshold (vessels).
"""

import time

import numpy as np
from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, asset

from aooct_assets.assets._common import (GPU_OP_TAGS, GPU_POOL, RETRY, artifact_metadata,
                                         case_prefix, db_of, device_of, json_bytes, load_json,
                                         load_npy, put, record_artifacts, registry_of,
                                         step_errors, store_of, npy_bytes)
from aooct_assets.partitions import cases_partitions
from resources.model_registry import MODEL_PREFIX

__all__ = ["mask_assets", "STRUCTURES"]

#: structure → (asset name, en face slab, kind). Capillaries are segmented on the structural
#: SVP slab: with the few repeats of a typical case the OCTA decorrelation slab is too noisy
#: (phantom: correlation with the true vessels 0.13-0.15 for octa_svp vs 0.59-0.64 for svp;
#: bench/results_ml.md). The OCTA slabs are still computed, stored and shown.
STRUCTURES = {
    "cones": ("cone_detections", "cost", "cells"),
    "rpe": ("rpe_detections", "rpe", "cells"),
    "capillaries": ("capillary_mask", "svp", "vessels"),
    "nfl": ("nfl_mask", "nfl", "vessels"),
}
_UNCERTAINTY = "tta"
#: Typical centre-to-centre RPE cell spacing in the parafovea, µm (density ~5,000 cells/mm²
#: in a hexagonal mosaic; Ach et al. 2014). Only used to resample too-fine images.
RPE_SPACING_UM = 14.0


def expected_spacing_um(structure: str, eccentricity_deg: float) -> float:
    """Centre-to-centre spacing the detector should expect, µm.

    Cones: from the normative density at the eccentricity, as the spacing of a triangular
    lattice, ``sqrt(2 / (sqrt(3) * density))``. RPE: :data:`RPE_SPACING_UM`.

    References
    ----------
    .. [1] Ach T, et al. "Quantitative autofluorescence and cell density maps of the human
           retinal pigment epithelium." IOVS 55:4832-4841 (2014).
    """
    if structure == "rpe":
        return RPE_SPACING_UM
    from aooct_core.metrics import normative_cone_spacing_um

    return normative_cone_spacing_um(eccentricity_deg)


def _weights(context, target: str):
    """(weights path or None, registry info dict) for ``target``."""
    registry = registry_of(context)
    if registry is None:
        return None, {"model_name": f"{MODEL_PREFIX}{target}", "registry_version": "committed"}
    name = f"{MODEL_PREFIX}{target}"
    try:
        path = registry.load_weights(name, alias="champion")
    except KeyError:
        registry.seed_from_committed_weights()  # first use: register ml/weights/*
        path = registry.load_weights(name, alias="champion")
    info = registry.model_version_info(name, alias="champion")
    return path, {"model_name": name, "registry_version": str(info["version"])}


def _make(structure: str):
    asset_name, slab, kind = STRUCTURES[structure]

    # corrected_volume is a dependency too so that its blocking QC checks (registration,
    # SNR) stop segmentation: en face slabs come out of the same step and are not checked.
    @asset(name=asset_name, deps=[AssetKey("enface_projections"), AssetKey("corrected_volume")], partitions_def=cases_partitions,
           group_name="masks", code_version=f"{asset_name}-2", retry_policy=RETRY, pool=GPU_POOL,
           op_tags=GPU_OP_TAGS, kinds={"pytorch"},
           required_resource_keys={"object_store", "metadata_db", "compute", "model_registry"},
           description=f"{structure}: {'cell centres' if kind == 'cells' else 'mask'} with "
                       f"uncertainty ({_UNCERTAINTY}) on the '{slab}' en face slab.")
    def _mask_asset(context: AssetExecutionContext) -> MaterializeResult:
        from ml.inference import detect_cells, segment_vessels

        case_id = context.partition_key
        store, db = store_of(context), db_of(context)
        base = case_prefix(case_id)
        out = f"{base}/masks/{structure}"
        written: dict = {}
        with step_errors(f"{structure} segmentation of case {case_id}"):
            device = device_of(context)
            image = load_npy(store, f"{base}/enface/{slab}.npy")
            enface_summary = load_json(store, f"{base}/enface/summary.json")
            um_rc = tuple(float(u) for u in enface_summary["um_per_px"])
            um_per_px = float(np.mean(um_rc))
            weights, model = _weights(context, structure)
            t0 = time.perf_counter()
            if kind == "cells":
                spacing = expected_spacing_um(structure, enface_summary["eccentricity_deg"])
                det = detect_cells(image, target=structure, um_per_px=um_rc, device=device,
                                   uncertainty=_UNCERTAINTY, weights=weights,
                                   expected_spacing_um=spacing)
                arrays = {"points_rc": det.points_rc, "confidence": det.confidence,
                          "heatmap_mean": det.heatmap_mean, "heatmap_var": det.heatmap_var}
                count = int(len(det.points_rc))
                unsure = float(np.mean(det.confidence < 0.5)) if count else 1.0
                numbers = {"count": count, "expected_spacing_um": spacing,
                           "mean_confidence": float(np.mean(det.confidence)) if count else 0.0}
                version = det.model_version
            else:
                seg = segment_vessels(image, target=structure, um_per_px=um_per_px, device=device,
                                      uncertainty=_UNCERTAINTY, weights=weights)
                arrays = {"mask": seg.mask.astype(bool), "probability_mean": seg.probability_mean,
                          "probability_var": seg.probability_var}
                if seg.orientation_rad is not None:
                    arrays["orientation_rad"] = seg.orientation_rad
                sd = np.sqrt(np.clip(np.nan_to_num(seg.probability_var), 0, None))
                m = seg.mask.astype(bool)
                crosses = (seg.probability_mean - 2 * sd < 0.5) & (seg.probability_mean + 2 * sd > 0.5)
                unsure = float(crosses[m].mean()) if m.any() else 1.0
                numbers = {"mask_fraction": float(m.mean())}
                if structure == "capillaries":
                    from scipy import ndimage

                    numbers["fragment_count"] = int(ndimage.label(m, structure=np.ones((3, 3)))[1])
                version = seg.model_version
            compute_s = time.perf_counter() - t0
            for name in sorted(arrays):
                arr = arrays[name]
                arr = arr if arr.dtype == bool else np.asarray(arr, np.float32)
                put(store, f"{out}/{name}.npy", npy_bytes(arr), written)
            summary = {"case_id": case_id, "structure": structure, "slab": slab,
                       "uncertainty_method": _UNCERTAINTY, "uncertainty_fraction": unsure,
                       "model_name": model["model_name"], "model_version": version,
                       "registry_version": model["registry_version"], "um_per_px": um_per_px,
                       **numbers}
            put(store, f"{out}/summary.json", json_bytes(summary), written)
            record_artifacts(db, case_id, asset_name, store, written, context.run.run_id)
        meta = artifact_metadata(store, written)
        meta.update({k: v for k, v in summary.items() if k not in ("case_id",)})
        meta.update(device=device, uri=store.uri(f"{out}/summary.json"), compute_s=round(compute_s, 3))
        return MaterializeResult(metadata=meta, data_version=DataVersion(meta["content_hash"][:32]))

    return _mask_asset


mask_assets = [_make(s) for s in STRUCTURES]
