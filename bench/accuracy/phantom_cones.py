"""Phantom cones: density error and uncertainty at dim/absent cones.

Usage: python bench/accuracy/phantom_cones.py [--seeds 0 1 2] [--end-to-end]
For each seed: motion-free IS/OS en face image → ``detect_cells`` (TTA, 8 transforms,
expected spacing from the normative density at the phantom's eccentricity) →
``aooct_core.metrics.mosaic_metrics`` density, compared with the phantom's truth
(all lattice cones, and present cones only). Uncertainty: predictive SD of the heat map
and cell confidence sampled at the true positions of normal, dim and absent cones.
``--end-to-end`` also runs ``preprocess_case`` on the moving phantom (registration
included) and reports the density from its IS/OS slab.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402


def _expected_spacing_um(ecc_deg: float) -> float:
    from aooct_core.metrics.norms import normative_cone_density
    density, _ = normative_cone_density(ecc_deg)
    return float(np.sqrt(2.0 / (np.sqrt(3.0) * density)) * 1000.0)  # triangular lattice, µm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from aooct_core.metrics import mosaic_metrics
    from ml.data import phantom_cone_samples
    from ml.evaluate import evaluate_detections
    from ml.inference import detect_cells
    rows = []
    for s in phantom_cone_samples(args.seeds):
        um = s.extra["um_per_px_rc"]
        spacing = _expected_spacing_um(s.extra["eccentricity_deg"])
        det = detect_cells(s.image, target="cones", um_per_px=um, expected_spacing_um=spacing,
                           uncertainty="tta", n_samples=8)
        mm = mosaic_metrics(det.points_rc, image_shape=s.image.shape, um_per_px=um)
        truth_all = s.extra["truth_density"]
        state = s.extra["state"]
        present_frac = float(np.mean(state != "absent"))
        d = float(mm["density_cells_per_mm2"].value)
        score = evaluate_detections(det.points_rc, s.points_rc, image_shape=s.image.shape)
        sd = np.sqrt(np.maximum(det.heatmap_var, 0))
        pts = s.extra["all_points_rc"]
        ir = np.clip(np.rint(pts[:, 0]).astype(int), 0, sd.shape[0] - 1)
        ic = np.clip(np.rint(pts[:, 1]).astype(int), 0, sd.shape[1] - 1)
        unc = {g: {"n": int((state == g).sum()),
                   "heat_sd_mean": float(sd[ir, ic][state == g].mean()),
                   "heat_mean": float(det.heatmap_mean[ir, ic][state == g].mean())}
               for g in ("normal", "dim", "absent")}
        row = {"seed": s.subject_id, "um_per_px": um, "expected_spacing_um": spacing,
               "n_detected": len(det.points_rc), "density_detected": d,
               "density_ci95": [mm["density_cells_per_mm2"].ci_low, mm["density_cells_per_mm2"].ci_high],
               "density_truth_all": truth_all, "density_truth_present": truth_all * present_frac,
               "error_vs_all_pct": 100 * (d - truth_all) / truth_all,
               "error_vs_present_pct": 100 * (d - truth_all * present_frac) / (truth_all * present_frac),
               "dice_vs_present": score.dice, "sensitivity": score.sensitivity, "fdr": score.fdr,
               "uncertainty_at_truth": unc}
        if args.end_to_end:
            from aooct_core.preprocessing import preprocess_case
            ph = make = None
            from aooct_core.phantom import make_phantom
            seed = int(s.subject_id.split("-")[1])
            ph = make_phantom(seed=seed)
            pre = preprocess_case(ph.volumes, ph.geometry, reference=0)
            det2 = detect_cells(pre.enface["isos"], target="cones", um_per_px=um,
                                expected_spacing_um=spacing, uncertainty="tta")
            d2 = float(mosaic_metrics(det2.points_rc, image_shape=pre.enface["isos"].shape,
                                      um_per_px=um)["density_cells_per_mm2"].value)
            row["end_to_end_density"] = d2
            row["end_to_end_error_vs_all_pct"] = 100 * (d2 - truth_all) / truth_all
            row["end_to_end_error_vs_present_pct"] = 100 * (d2 - truth_all * present_frac) / (truth_all * present_frac)
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in
               ("error_vs_all_pct", "error_vs_present_pct", "dice_vs_present")}
    for g in ("normal", "dim", "absent"):
        summary[f"heat_sd_{g}"] = float(np.mean([r["uncertainty_at_truth"][g]["heat_sd_mean"] for r in rows]))
    print("SUMMARY " + json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2, default=float))


if __name__ == "__main__":
    main()
