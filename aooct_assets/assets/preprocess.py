"""``corrected_volume`` and ``enface_projections`` from one ``preprocess_case`` call.

They are one step because the OCTA slabs need the inter-repeat decorrelation, which only
exists inside the motion correction; splitting them would mean storing a second full
volume. Lineage still shows raw → corrected → en face.
"""

import time
from enum import Enum
from typing import Optional

import numpy as np
from dagster import (AssetExecutionContext, AssetKey, AssetSpec, Config, DataVersion, MaterializeResult,
                     multi_asset)

from aooct_assets.assets._common import (GPU_OP_TAGS, GPU_POOL, RETRY, artifact_metadata,
                                         case_prefix, db_of, device_of, json_bytes,
                                         local_case_folder, npy_bytes, put, record_artifacts,
                                         step_errors, store_of)
from aooct_assets.partitions import cases_partitions

__all__ = ["preprocessed", "PreprocessConfig", "CORRECTED", "ENFACE"]

CORRECTED = AssetKey("corrected_volume")
ENFACE = AssetKey("enface_projections")


class DenoiseMethod(Enum):
    """``aooct_core.preprocessing.denoise.DENOISE_METHODS``, as Dagster config can check them at launch."""

    nl_means = "nl_means"
    bm4d = "bm4d"


class PreprocessConfig(Config):
    """Run options; the defaults are what the sensor's runs use."""

    denoise: Optional[DenoiseMethod] = None
    """Single-volume speckle denoiser before the en face projections (CPU; off by default)."""


@multi_asset(
    specs=[
        AssetSpec(CORRECTED, deps=["raw_volume"], partitions_def=cases_partitions,
                  group_name="preprocess", code_version="corrected-3", kinds={"numpy"},
                  description="Motion-corrected, repeat-averaged, normalized volume (float32 "
                              "(bscan, depth, aline)) with layer surfaces and motion report."),
        AssetSpec(ENFACE, deps=[CORRECTED], partitions_def=cases_partitions,
                  group_name="preprocess", code_version="enface-3", kinds={"numpy"},
                  description="En face slabs isos/cost/isos_cost/rpe/nfl/svp/dvp and OCTA svp/dvp, "
                              "float32 (row, col) = (bscan, aline)."),
    ],
    name="preprocess_case", partitions_def=cases_partitions, retry_policy=RETRY, pool=GPU_POOL,
    op_tags=GPU_OP_TAGS, required_resource_keys={"object_store", "metadata_db", "compute"},
)
def preprocessed(context: AssetExecutionContext, config: PreprocessConfig):
    from aooct_core.geometry import eccentricity_deg
    from aooct_core.io import load_case
    from aooct_core.preprocessing import preprocess_case

    case_id = context.partition_key
    store, db = store_of(context), db_of(context)
    base = case_prefix(case_id)
    denoise = None if config.denoise is None else DenoiseMethod(config.denoise).value
    corrected: dict = {}
    enface: dict = {}
    from aooct_core.metrics.mosaic_spectrum import cone_mosaic_strength

    with step_errors(f"preprocessing of case {case_id}"):
        device = device_of(context)
        with local_case_folder(store, f"{base}/raw") as folder:
            case = load_case(folder)
            geometry, acquisition = case.geometry, case.acquisition
            volumes = case.volumes()
            t0 = time.perf_counter()
            # preprocess_case refuses denoise on a GPU device with a message saying so.
            # Declared in case.json, or told from the speckle (amplitude and dB exports too).
            scale = acquisition.extra.get("intensity_scale") or "auto"
            # Registered to repeat 0, the frame aooct analyze and detections.csv use, so a case
            # gives the same numbers in the platform and from the command line.
            pre = preprocess_case(volumes, geometry, device=device, denoise=denoise, scale=scale,
                                  reference=0)
            compute_s = time.perf_counter() - t0
        motion = pre.motion
        put(store, f"{base}/corrected/volume.npy", npy_bytes(pre.volume.astype(np.float32)), corrected)
        for name in sorted(pre.surfaces_px):
            put(store, f"{base}/corrected/surfaces/{name}.npy",
                npy_bytes(np.asarray(pre.surfaces_px[name], np.float32)), corrected)
        put(store, f"{base}/corrected/shifts_px.npy", npy_bytes(np.asarray(motion.shifts_px, np.float32)),
            corrected)
        summary = {
            "case_id": case_id, "shape_px": list(pre.volume.shape),
            "geometry_um_per_px": {"bscan": geometry.bscan_um_per_px,
                                   "depth": geometry.depth_um_per_px,
                                   "aline": geometry.aline_um_per_px},
            "eccentricity_deg": eccentricity_deg(acquisition.location_deg),
            "residual_motion_um": _f(motion.residual_lateral_um_rms),
            "saccade_ambiguity_um": _f(motion.saccade_ambiguity_um),
            "residual_axial_px": _f(motion.residual_axial_px_rms),
            "residual_axial_um": _f(motion.residual_axial_px_rms * geometry.depth_um_per_px),
            "rejected_bscans": [list(map(int, rb)) for rb in motion.rejected_bscans],
            "weak_bscans": [list(map(int, wb)) for wb in motion.weak_bscans],
            "reference_repeat": int(motion.reference), "registration_ok": bool(pre.registration_ok),
            "padded_fraction": _f(pre.padded_fraction),
            "snr_db": _f(pre.snr_db), "snr_is_lower_bound": bool(pre.snr_is_lower_bound),
            "speckle_contrast": _f(pre.speckle_contrast),
            "surfaces": sorted(pre.surfaces_px), "denoise": denoise, "input_scale": pre.input_scale,
        }
        put(store, f"{base}/corrected/summary.json", json_bytes(summary), corrected)
        for slab in sorted(pre.enface):
            put(store, f"{base}/enface/{slab}.npy", npy_bytes(np.asarray(pre.enface[slab], np.float32)),
                enface)
        enface_summary = {"case_id": case_id, "slabs": sorted(pre.enface),
                          "um_per_px": list(geometry.enface_um_per_px),
                          "shape_px": list(np.asarray(pre.enface["isos"]).shape),
                          "eccentricity_deg": summary["eccentricity_deg"],
                          # QC "cone_mosaic": is there a mosaic in the cone slabs at all?
                          "mosaic_ring_strength": cone_mosaic_strength(
                              (pre.enface["isos"], pre.enface["cost"]),
                              eccentricity_deg=summary["eccentricity_deg"],
                              um_per_px=geometry.enface_um_per_px)}
        put(store, f"{base}/enface/summary.json", json_bytes(enface_summary), enface)
        record_artifacts(db, case_id, "corrected_volume", store, corrected, context.run.run_id)
        record_artifacts(db, case_id, "enface_projections", store, enface, context.run.run_id)
    meta_c = artifact_metadata(store, corrected)
    meta_c.update({k: summary[k] for k in ("residual_motion_um", "residual_axial_um", "snr_db",
                                           "speckle_contrast", "registration_ok")})
    meta_c["uri"] = store.uri(f"{base}/corrected/volume.npy")
    meta_c.update(n_rejected_bscans=len(summary["rejected_bscans"]), n_weak_bscans=len(summary["weak_bscans"]),
                  device=device,
                  denoise=denoise or "none",
                  compute_s=round(compute_s, 3),
                  timings_s={k: round(float(v), 3) for k, v in pre.timings_s.items()})
    meta_e = artifact_metadata(store, enface)
    meta_e["uri"] = store.uri(f"{base}/enface/summary.json")
    meta_e.update(slabs=", ".join(enface_summary["slabs"]),
                  um_per_px_row=float(geometry.enface_um_per_px[0]),
                  um_per_px_col=float(geometry.enface_um_per_px[1]))
    yield MaterializeResult(asset_key=CORRECTED, metadata=meta_c,
                            data_version=DataVersion(meta_c["content_hash"][:32]))
    yield MaterializeResult(asset_key=ENFACE, metadata=meta_e,
                            data_version=DataVersion(meta_e["content_hash"][:32]))


def _f(x) -> float:
    """A float for JSON (NaN stays NaN: an unmeasured quantity is not zero)."""
    return float(x)
