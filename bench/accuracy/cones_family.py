"""Cones on the phantom family (issue 16): detection F1 and density error, end to end.

Every member (anatomy, band reflectivities, focus, sampling, tilt, SNR, repeats from
``aooct_core.phantom.family``) whose normative cone spacing is >= 3 px on both en face axes
goes through what ``aooct analyze`` runs: ``preprocess_case`` (registered to repeat 0) and
``ml.recipe.analyze_structure("cones", enface["isos_cost"], ..., from_volume=True)`` with the case's pixel size and
eccentricity, then ``ml.recipe.measure_structure``.

Truth: the phantom's cones that are present (normal and dim; absent ones removed), moved into
the corrected volume's frame: the en face row is the B-scan, and B-scan ``b``'s content sits
``mean_r(motion_px - shifts_px)[b, aline]`` A-lines from the motion-free truth (the part of the
motion registration cannot observe is not a detection error). Scored with
``ml.evaluate.evaluate_detections`` (F1 = its Dice, 2TP / (2TP + FP + FN); the literature protocol: match radius 0.75 x the median
true nearest-neighbour distance, 7 px border). Density: the recipe's
``density_cells_per_mm2`` against the same estimator on the true points, both in the
window a spacing (plus the lateral offset) in from the edges, where the phantom lists every
cone; a detection matched to a true cone is counted where that cone is
(:func:`counting_positions`), so only false and missed cones change the count (the raw
window count is printed beside it). Members with fewer than 8 spacings across the field are skipped with the undersampled.

    python bench/accuracy/cones_family.py --held-out --n 40

Target: F1 >= 0.90 and |density error| <= 5 % on >= 90 % of the cases with spacing >= 3 px.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aooct_core.geometry import eccentricity_deg  # noqa: E402
from aooct_core.metrics.norms import normative_cone_spacing_um  # noqa: E402
from aooct_core.phantom import make_phantom  # noqa: E402
from aooct_core.phantom.family import family_member  # noqa: E402
from family_args import family_seeds, member_rows  # noqa: E402  (bench/accuracy, the script's folder)
from output_frame import InteriorWindow, points_in_output_frame, residual_px  # noqa: E402
from aooct_core.preprocessing import preprocess_case  # noqa: E402
from ml.evaluate import evaluate_detections, match_points  # noqa: E402
from ml.recipe import SLAB_OF, analyze_structure, measure_structure  # noqa: E402


def run_one(seed: int) -> dict | None:
    member = family_member(seed)
    ph = make_phantom(**member)
    g = ph.geometry
    ecc = eccentricity_deg(ph.acquisition.location_deg)
    spacing = normative_cone_spacing_um(ecc)
    sp = (spacing / g.bscan_um_per_px, spacing / g.aline_um_per_px)
    if min(sp) < 3.0 or min(n / x for n, x in zip(ph.volumes.shape[1::2], sp)) < 8:
        return None     # undersampled, or fewer than ~6 cells across the scored window
    row = {"seed": seed, "spacing_px": sp, "n_repeats": member["n_repeats"], "snr_db": member["snr_db"],
           "depth_um_per_px": member["depth_um_per_px"]}
    try:
        out = preprocess_case(ph.volumes, g, reference=0)
    except ValueError as exc:
        return {**row, "ok": False, "error": str(exc)}
    image = np.asarray(out.enface[SLAB_OF["cones"]])
    res = analyze_structure("cones", image, um_per_px=g.enface_um_per_px, eccentricity_deg=ecc,
                            from_volume=True)
    cones = ph.truth["cones"]
    pts = np.asarray(cones["positions_rc"], np.float32).reshape(-1, 2)
    refl = np.asarray(cones["reflectivity"], float)
    present = ~np.asarray(cones["missing"], bool) | (refl > 0)
    truth = points_in_output_frame(pts[present], ph.motion_px, out.motion.shifts_px, out.motion.weights)
    # The phantom lists the cones of the motion-free field only; a lateral offset brings
    # unlisted ones in at the left or right edge. Both sets are scored in the interior
    # window, a spacing (plus that offset) in from every edge.
    d = np.abs(residual_px(ph.motion_px, out.motion.shifts_px, out.motion.weights)[:, 1])
    win = InteriorWindow(image.shape, (np.ceil(sp[0]), np.ceil(sp[1] + d.max())))
    window = win.shape
    counted = counting_positions(res.points_rc, truth)
    det, truth, counted = win.crop(res.points_rc), win.crop(truth), win.crop(counted)
    score = evaluate_detections(det, truth, image_shape=window)

    def density(points):
        m = measure_structure("cones", {"points_rc": points}, image_shape=window, um_per_px=g.enface_um_per_px)
        return m["density_cells_per_mm2"].value

    d_true = density(truth)
    err = 100.0 * (density(counted) - d_true) / d_true
    err_window = 100.0 * (density(det) - d_true) / d_true
    return {**row, "precision": 1.0 - score.fdr, "recall": score.sensitivity, "f1": score.dice,
            "density_true": d_true, "density_err_pct": err, "density_err_window_pct": err_window,
            "n_found": int(len(det)), "n_true": int(len(truth)), "window_px": window,
            "ok": bool(score.dice >= 0.90 and abs(err) <= 5.0)}


def counting_positions(detected_rc, truth_rc) -> np.ndarray:
    """Where each detection is counted for the density: at its true cone when matched (the
    literature radius, 0.75 x the median true nearest-neighbour distance), else where it is.

    Counting the raw detections in a window turns localisation noise at the window's edge
    into count error (a cone 0.3 px inside, found 0.2 px outside): ~±3 cells, ±5 % at the
    40-100 cells these windows hold. Attributed to their truth, only false and missed
    detections change the count.
    """
    det = np.asarray(detected_rc, np.float64).reshape(-1, 2)
    truth = np.asarray(truth_rc, np.float64).reshape(-1, 2)
    if len(truth) < 2 or not len(det):
        return det.astype(np.float32)
    nnd = cKDTree(truth).query(truth, k=2)[0][:, 1]
    out = det.copy()
    for i, j, _ in match_points(det, truth, max_distance_px=0.75 * float(np.median(nnd))):
        out[i] = truth[j]
    return out.astype(np.float32)


def main(argv=None) -> int:
    args, seeds = family_seeds(__doc__, argv, n_default=10)
    t0, load0 = time.perf_counter(), os.getloadavg()
    print("| seed | spacing px (row, col) | rep | SNR | dz µm/px | P | R | F1 | density err % | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for seed, r in member_rows(seeds, run_one):
        rows.append(r)
        sp = r["spacing_px"]
        if "error" in r:
            print(f"| {seed} | {sp[0]:.1f}, {sp[1]:.1f} | {r['n_repeats']} | {r['snr_db']:.0f} | "
                  f"{r['depth_um_per_px']:.2f} | - | - | - | - | NO ({r['error'][:60]}) |", flush=True)
            continue
        print(f"| {seed} | {sp[0]:.1f}, {sp[1]:.1f} | {r['n_repeats']} | {r['snr_db']:.0f} | "
              f"{r['depth_um_per_px']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
              f"{r['density_err_pct']:+.1f} | {'yes' if r['ok'] else 'NO'} |", flush=True)
    n_ok = sum(r["ok"] for r in rows)
    scored = [r for r in rows if "f1" in r]
    print(f"\n{'held-out' if args.held_out else 'tuning'} seeds {seeds.start}-{seeds.stop - 1}: "
          f"{n_ok}/{len(rows)} cases (spacing >= 3 px) with F1 >= 0.90 and |density error| <= 5 % "
          f"({100 * n_ok / max(len(rows), 1):.0f} %, target >= 90 %)")
    if scored:
        print(f"median F1 {np.median([r['f1'] for r in scored]):.3f}, median |density error| "
              f"{np.median([abs(r['density_err_pct']) for r in scored]):.1f} %; "
              f"F1 >= 0.90 on {sum(r['f1'] >= 0.9 for r in scored)}/{len(scored)}, "
              f"|density error| <= 5 % on {sum(abs(r['density_err_pct']) <= 5 for r in scored)}/{len(scored)}")
        n_win = sum(r["f1"] >= 0.9 and abs(r["density_err_window_pct"]) <= 5 for r in scored)
        print(f"counting the raw detections in the window instead (edge localisation counted as density "
              f"error): {n_win}/{len(rows)}")
    print(f"{time.perf_counter() - t0:.0f} s; load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
