"""Cell detections (cones, RPE) and vessel masks (capillaries, nerve fibre bundles) with uncertainty.

One asset per structure, all in the ``gpu`` pool, each one call of
:func:`ml.recipe.analyze_structure` — the recipe ``aooct analyze`` runs too, so the numbers
are the same wherever a case is analysed. Weights come from the model registry
(``aooct-<target>@champion``) when one is configured, else from the committed
``ml/weights``; the model name and its content-addressed version go into the metadata.

``uncertainty_fraction`` is the share of outputs whose decision the model is unsure of:
detections with confidence < 0.5 (cells), or mask pixels whose mean ± 2 SD interval
crosses the 0.5 threshold (vessels); 1.0 when nothing was found (see :mod:`ml.recipe`).
"""

import time

import numpy as np
from dagster import AssetExecutionContext, AssetKey, DataVersion, MaterializeResult, asset

from aooct_assets.assets._common import (GPU_OP_TAGS, GPU_POOL, RETRY, artifact_metadata,
                                         case_prefix, db_of, device_of, json_bytes, load_json,
                                         load_npy, put, record_artifacts, registry_of,
                                         step_errors, store_of, npy_bytes)
from aooct_assets.partitions import cases_partitions
from ml.recipe import RPE_SPACING_UM, SLAB_OF, UNCERTAINTY_METHOD, expected_spacing_um
from resources.model_registry import MODEL_PREFIX

__all__ = ["mask_assets", "STRUCTURES", "expected_spacing_um", "RPE_SPACING_UM"]

#: structure → (asset name, en face slab, kind). The slab of each structure is the recipe's
#: (``ml.recipe.SLAB_OF``: cones on IS/OS, capillaries on the structural SVP slab — the
#: OCTA slabs are still computed, stored and shown).
STRUCTURES = {
    "cones": ("cone_detections", SLAB_OF["cones"], "cells"),
    "rpe": ("rpe_detections", SLAB_OF["rpe"], "cells"),
    "capillaries": ("capillary_mask", SLAB_OF["capillaries"], "vessels"),
    "nfl": ("nfl_mask", SLAB_OF["nfl"], "vessels"),
}


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
           group_name="masks", code_version=f"{asset_name}-5", retry_policy=RETRY, pool=GPU_POOL,
           op_tags=GPU_OP_TAGS, kinds={"pytorch"},
           required_resource_keys={"object_store", "metadata_db", "compute", "model_registry"},
           description=f"{structure}: {'cell centres' if kind == 'cells' else 'mask'} with "
                       f"uncertainty ({UNCERTAINTY_METHOD}) on the '{slab}' en face slab.")
    def _mask_asset(context: AssetExecutionContext) -> MaterializeResult:
        from ml.recipe import analyze_structure

        case_id = context.partition_key
        store, db = store_of(context), db_of(context)
        base = case_prefix(case_id)
        out = f"{base}/masks/{structure}"
        written: dict = {}
        with step_errors(f"{structure} segmentation of case {case_id}"):
            device = device_of(context)
            enface = load_json(store, f"{base}/enface/summary.json")
            weights, model = _weights(context, structure)
            t0 = time.perf_counter()
            res = analyze_structure(structure, load_npy(store, f"{base}/enface/{slab}.npy"),
                                    um_per_px=enface["um_per_px"], device=device, weights=weights,
                                    eccentricity_deg=enface["eccentricity_deg"], from_volume=True)
            compute_s = time.perf_counter() - t0
            for name in sorted(res.arrays):
                put(store, f"{out}/{name}.npy", npy_bytes(res.arrays[name]), written)
            summary = {"case_id": case_id, "structure": structure, "slab": slab,
                       "uncertainty_method": UNCERTAINTY_METHOD,
                       "uncertainty_fraction": res.uncertainty["uncertainty_fraction"],
                       "model_name": model["model_name"], "model_version": res.model_version,
                       "registry_version": model["registry_version"],
                       "um_per_px": float(np.mean(enface["um_per_px"])), **res.numbers}
            if res.not_analysed:
                summary["not_analysed"] = res.not_analysed
            put(store, f"{out}/summary.json", json_bytes(summary), written)
            record_artifacts(db, case_id, asset_name, store, written, context.run.run_id)
        meta = artifact_metadata(store, written)
        meta.update({k: v for k, v in summary.items() if k not in ("case_id",)})
        meta.update(device=device, uri=store.uri(f"{out}/summary.json"), compute_s=round(compute_s, 3))
        return MaterializeResult(metadata=meta, data_version=DataVersion(meta["content_hash"][:32]))

    return _mask_asset


mask_assets = [_make(s) for s in STRUCTURES]
