"""Score of the layer search and the cone detector on the independent AO-OCT phantom.

The phantom is :mod:`independent_phantom` (this folder): written from the physics and
published anatomy ranges only, importing nothing from ``aooct_core.phantom``, so a result
that holds on both phantoms is not tied to one phantom's quirks.

Score (:func:`main`): ``preprocess_case(volumes, geometry, reference=0)``; surfaces and
cones are moved into the corrected frame with ``mean_r(motion_px - shifts_px)`` (the
convention of ``layers_family.py`` / ``cones_family.py``), layers scored by RMS px, cones
by ``evaluate_detections`` in an interior window.

    python bench/accuracy/independent_aooct.py --n 20
    python bench/accuracy/independent_aooct.py --check 3     # generator sanity check
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from independent_phantom import N_ALINES, N_BSCANS, SURFACES, make_volume  # noqa: E402  (this folder)
from output_frame import InteriorWindow, points_in_output_frame, residual_px, surface_in_output_frame  # noqa: E402


def _cone_score(image, truth_rc, geometry, ecc, d_max, spacing_px, *, from_volume):
    from ml.evaluate import evaluate_detections
    from ml.recipe import analyze_structure

    res = analyze_structure("cones", np.asarray(image), um_per_px=geometry.enface_um_per_px,
                            eccentricity_deg=ecc, from_volume=from_volume)
    win = InteriorWindow(image.shape, (np.ceil(spacing_px), np.ceil(spacing_px + d_max)))
    det, tru = win.crop(res.points_rc), win.crop(truth_rc)
    sc = evaluate_detections(det, tru, image_shape=win.shape)
    err = 100.0 * (len(det) - len(tru)) / len(tru)
    return {"f1": sc.dice, "sens": sc.sensitivity, "fdr": sc.fdr, "dens_err": err,
            "n_det": len(det), "n_true": len(tru), "ok": bool(sc.dice >= 0.90 and abs(err) <= 5.0)}


def run_case(seed: int) -> dict:
    from aooct_core.preprocessing import preprocess_case
    from ml.recipe import SLAB_OF

    t0 = time.perf_counter()
    vols, g, truth, p = make_volume(seed)
    t_gen = time.perf_counter() - t0
    row = {"seed": seed, "p": p, "t_gen": t_gen}
    try:
        out = preprocess_case(vols, g, reference=0)
    except ValueError as exc:
        row.update(error=str(exc), layers_ok=False, one_band_off=[], t=time.perf_counter() - t0)
        return row
    shifts = np.asarray(out.motion.shifts_px)
    motion = truth["motion_px"]
    rms, med_um = {}, {}
    for k in ("ILM",) + SURFACES:
        found = np.asarray(out.surfaces_px[k], np.float64)
        true = surface_in_output_frame(truth["surfaces_px"][k], motion, shifts, out.motion.weights)
        e = found - true
        rms[k] = float(np.sqrt(np.mean(e ** 2))) if np.isfinite(e).all() else float("nan")
        med_um[k] = float(np.nanmedian(e) * g.depth_um_per_px) if np.isfinite(e).any() else float("nan")
    row["rms_px"], row["median_err_um"] = rms, med_um
    row["layers_ok"] = all(rms[k] <= 2.0 for k in SURFACES)
    row["one_band_off"] = [k for k in SURFACES if not abs(med_um[k]) <= 8.0]
    row["snr_found"] = float(out.snr_db)
    # cones
    sp_px = truth["spacing_um"] / g.aline_um_per_px
    row["spacing_px"] = sp_px
    if sp_px < 3.0:
        row["cones"] = None
    else:
        d = np.abs(residual_px(motion, shifts, out.motion.weights)[:, 1])
        tru = points_in_output_frame(truth["cones_rc_all"], motion, shifts, out.motion.weights)
        ecc = p["eccentricity_deg"]
        row["cones"] = _cone_score(out.enface[SLAB_OF["cones"]], tru, g, ecc, float(d.max()), sp_px,
                                   from_volume=True)
        row["baseline"] = _cone_score(out.enface["isos"], tru, g, ecc, float(d.max()), sp_px,
                                      from_volume=False)
    # registration residual: what the layers/cones truths absorb
    resid = motion.astype(np.float64) - shifts
    resid -= resid.mean(axis=1, keepdims=True)
    row["resid_lat_px_rms"] = float(np.sqrt(np.mean(resid[..., 1] ** 2)))
    row["t"] = time.perf_counter() - t0
    return row


def _fmt_row(r):
    p = r["p"]
    lvl, th = p["band_level"], p["thickness_um"]
    head = (f"| {r['seed']} | {p['eccentricity_deg']:.1f} | {p['depth_um_per_px']:.2f} | "
            f"{p['lateral_um_per_px']:.2f} | {p['n_repeats']} | {p['snr_db']:.0f}"
            f" ({r.get('snr_found', float('nan')):.0f}) | {p['focus_at']} {p['focus_fwhm_um']:.0f} | "
            f"{lvl['COST']:.2f} / {lvl['RPE']:.2f} | {th['ISOS_COST']:.0f} / {th['COST_RPE']:.0f} / "
            f"{p['band_fwhm_um']['RPE']:.0f} | ")
    if "error" in r:
        return head + f"ERROR {r['error'][:70]} | | | | | | {r['t']:.1f} |"
    e, m = r["rms_px"], r["median_err_um"]
    lay = (f"{e['ISOS']:.2f} / {e['COST']:.2f} / {e['RPE']:.2f} | {m['ISOS']:+.1f} / {m['COST']:+.1f} / "
           f"{m['RPE']:+.1f} | {'yes' if r['layers_ok'] else 'NO'}"
           + (f" (off: {','.join(r['one_band_off'])})" if r["one_band_off"] else "") + " | ")
    c = r["cones"]
    if c is None:
        cones = f"{r['spacing_px']:.1f} | skipped | | "
    else:
        b = r["baseline"]
        cones = (f"{r['spacing_px']:.1f} | {c['f1']:.3f} ({c['sens']:.2f}/{1 - c['fdr']:.2f}) | "
                 f"{c['dens_err']:+.1f} ({c['n_det']}/{c['n_true']}) {'yes' if c['ok'] else 'NO'} | "
                 f"{b['f1']:.3f} / {b['dens_err']:+.1f} | ")
    return head + lay + cones + f"{r['t']:.1f} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--check", type=int, default=None, help="sanity-check the generator on this seed")
    args = ap.parse_args(argv)
    if args.check is not None:
        return check(args.check)
    seeds = range(args.start, args.start + args.n)
    t0, load0 = time.perf_counter(), os.getloadavg()
    print("| seed | ecc ° | dz µm/px | dl µm/px | rep | SNR (found) | focus | COST / RPE level | "
          "OS / COST-RPE / RPE FWHM µm | RMS px ISOS / COST / RPE | median err µm | layers ok | "
          "spacing px | F1 (sens/prec) | density err % (det/true) ok | baseline isos F1 / dens % | s |")
    print("|" + "---|" * 17)
    rows = []
    for seed in seeds:
        r = run_case(seed)
        rows.append(r)
        print(_fmt_row(r), flush=True)
    n = len(rows)
    scored = [r for r in rows if r.get("cones")]
    print()
    print(f"layers ok (ISOS, COST, RPE all <= 2 px RMS): {sum(r['layers_ok'] for r in rows)}/{n}")
    offs = [r for r in rows if r.get("one_band_off")]
    print(f"one band off (|median error| > 8 µm on any of ISOS/COST/RPE): {len(offs)}/{n}"
          + (" — " + ", ".join(f"seed {r['seed']}: {','.join(r['one_band_off'])}" for r in offs) if offs else ""))
    for k in SURFACES:
        v = [r["rms_px"][k] for r in rows if "rms_px" in r]
        print(f"  {k}: median RMS {np.nanmedian(v):.2f} px, <= 2 px on {sum(x <= 2 for x in v)}/{len(v)}")
    skipped = [r["seed"] for r in rows if "rms_px" in r and r.get("cones") is None]
    print(f"cones ok (F1 >= 0.90 and |density error| <= 5 %): {sum(r['cones']['ok'] for r in scored)}/"
          f"{len(scored)} scored" + (f" (skipped, spacing < 3 px: {skipped})" if skipped else ""))
    if scored:
        f1 = [r["cones"]["f1"] for r in scored]
        de = [r["cones"]["dens_err"] for r in scored]
        bf1 = [r["baseline"]["f1"] for r in scored]
        bde = [r["baseline"]["dens_err"] for r in scored]
        print(f"  isos_cost, from_volume: median F1 {np.median(f1):.3f}, median |density error| "
              f"{np.median(np.abs(de)):.1f} %, median signed {np.median(de):+.1f} %; F1 >= 0.90 on "
              f"{sum(x >= 0.9 for x in f1)}/{len(f1)}, |dens| <= 5 % on {sum(abs(x) <= 5 for x in de)}/{len(de)}")
        print(f"  baseline isos, default: median F1 {np.median(bf1):.3f}, median |density error| "
              f"{np.median(np.abs(bde)):.1f} %, median signed {np.median(bde):+.1f} %; ok "
              f"{sum(a >= 0.9 and abs(b) <= 5 for a, b in zip(bf1, bde))}/{len(bf1)}")
    gen = [r["t_gen"] for r in rows]
    print(f"{time.perf_counter() - t0:.0f} s (generation median {np.median(gen):.1f} s/case); load average "
          f"{load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    return 0


# ---------------------------------------------------------------------------------------
# generator sanity check


def _local_maxima(profile, min_rel=0.05):
    from scipy.signal import find_peaks

    pk, prop = find_peaks(profile, prominence=min_rel * float(profile.max()))
    return pk, prop["prominences"]


def _radial_spectrum(image, n=256):
    """Radially averaged power spectrum (cycles/px bins, power) of a Hann-windowed image."""
    im = np.asarray(image, np.float64)
    win = np.outer(np.hanning(im.shape[0]), np.hanning(im.shape[1]))
    im = (im - np.sum(im * win) / np.sum(win)) * win       # no DC leakage through the window
    ps = np.abs(np.fft.fft2(im, s=(n, n))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    bins = np.linspace(0.0, 0.5, 61)
    idx = np.digitize(np.hypot(fy, fx).ravel(), bins)
    power = np.array([ps.ravel()[idx == i].mean() for i in range(1, len(bins))])
    return (bins[1:] + bins[:-1]) / 2, power


def _ring_frequency(image, f_expected):
    """Ring of the radial power spectrum (cycles/px): in 0.5-1.8 x f_expected, the largest
    excess of log power over a quadratic trend fitted there (the cone blob's falloff)."""
    f, power = _radial_spectrum(image)
    sel = (f > 0.5 * f_expected) & (f < 1.8 * f_expected)
    lp = np.log(power[sel])
    trend = np.polyval(np.polyfit(f[sel], lp, 2), f[sel])
    return float(f[sel][np.argmax(lp - trend)])


def check(seed: int) -> int:
    t0 = time.perf_counter()
    vols, g, truth, p = make_volume(seed)
    print(f"seed {seed}: volumes {vols.shape} generated in {time.perf_counter() - t0:.2f} s; "
          f"dz {g.depth_um_per_px:.2f} µm/px, dl {g.aline_um_per_px:.2f} µm/px, repeats {p['n_repeats']}, "
          f"focus {p['focus_at']} FWHM {p['focus_fwhm_um']:.0f}")
    print("band levels", {k: round(v, 3) for k, v in p["band_level"].items()}, "thickness",
          {k: round(v, 1) for k, v in p["thickness_um"].items()})
    b = N_BSCANS // 2
    mot = truth["motion_px"][0, b]
    # raw mean over A-lines of B-scan b (repeat 0) and the same flattened on the true ISOS
    prof = vols[0, b].mean(axis=1)
    np.save("/tmp/independent_aooct_profile.npy", prof)
    isos = truth["surfaces_px"]["ISOS"][b]
    x = np.arange(N_ALINES)
    isos_inst = np.interp(x - mot[1], x, isos) + mot[0]
    ref = float(np.median(isos_inst))
    z = np.arange(vols.shape[2])
    flat = np.mean([np.interp(z + (isos_inst[a] - ref), z, vols[:, b, :, a].mean(axis=0))
                    for a in range(N_ALINES)], axis=0)
    print(f"B-scan {b}: truth depths (px, instrument frame, median over A-lines; motion {mot[0]:+.2f} px):")
    for k in ("ILM", "ELM", "ISOS", "COST", "RPE", "BM"):
        s = np.interp(x - mot[1], x, truth["surfaces_px"][k][b]) + mot[0]
        print(f"  {k:5s} {np.median(s):7.2f}  (range {s.min():.1f}-{s.max():.1f})")
    for name, pr in (("raw mean profile", prof), ("flattened on true ISOS, mean of repeats", flat)):
        pk, prom = _local_maxima(pr)
        order = np.argsort(prom)[::-1][:8]
        print(f"  {name}: local maxima (px: intensity) "
              + ", ".join(f"{pk[i]}: {pr[pk[i]]:.3g}" for i in sorted(order, key=lambda i: pk[i])))
    noise = float(vols[0, :, :int(truth['surfaces_px']['ILM'].min()) - 3].mean())
    print(f"  vitreous mean {noise:.3g} (noise floor {p['noise_floor']:.3g})")
    # cone spacing vs power-spectrum ring: IS/OS + COST rows at the true surfaces of every
    # repeat, moved back laterally by the true motion (for this check only), averaged
    n_rep = vols.shape[0]
    en = np.zeros((N_BSCANS, N_ALINES))
    for r in range(n_rep):
        for bb in range(N_BSCANS):
            m = truth["motion_px"][r, bb]
            for k in ("ISOS", "COST"):
                s = np.interp(x - m[1], x, truth["surfaces_px"][k][bb]) + m[0]
                row = vols[r, bb, np.rint(s).astype(int), x]
                en[bb] += np.interp(x + m[1], x, row)
    s_px = truth["spacing_um"] / g.aline_um_per_px
    f_exp = 2.0 / (math.sqrt(3.0) * s_px)
    delta = np.zeros((N_BSCANS, N_ALINES))
    rc = np.rint(truth["cones_rc"]).astype(int).clip(0, [N_BSCANS - 1, N_ALINES - 1])
    delta[rc[:, 0], rc[:, 1]] = 1.0
    print(f"cones: spacing {truth['spacing_um']:.2f} µm = {s_px:.2f} px, density "
          f"{truth['density_per_mm2']:.0f}/mm², {len(truth['cones_rc'])} present in the field "
          f"(expected {N_BSCANS * N_ALINES * g.aline_um_per_px ** 2 * 1e-6 * truth['density_per_mm2'] * 0.98:.0f})")
    print(f"  ring expected {f_exp:.3f} cyc/px; power-spectrum peak of the image {_ring_frequency(en, f_exp):.3f}, "
          f"of the true positions {_ring_frequency(delta, f_exp):.3f} cyc/px")
    f, pw = _radial_spectrum(en)
    sel = (f > 0.3 * f_exp) & (f < 2.0 * f_exp)
    print("  radial spectrum (f/f_expected: power re max): "
          + " ".join(f"{fi / f_exp:.2f}:{pi / pw[sel].max():.2f}" for fi, pi in zip(f[sel], pw[sel])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
