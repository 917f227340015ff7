"""Calibrate and check the missing-mosaic QC check (issue 16) on the phantom family.

For every member whose expected cone spacing is >= 3 px, the ring strength
(``aooct_core.metrics.mosaic_spectrum.mosaic_ring_strength``) of

* the cone slabs the pipeline makes (IS/OS and COST, its own layers), and
* slabs forced off the photoreceptors: at the ELM, in the ONL (ELM - 20 µm), at the RPE and
  in the choroid (Bruch's membrane + 15 µm), from the phantom's true surfaces;

is printed with the QC verdict. Target: every forced-wrong slab fails, >= 95 % of the good
ones pass.

    python bench/accuracy/missing_mosaic.py --held-out --n 40
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aooct_core.metrics.mosaic_spectrum import mosaic_ring_strength  # noqa: E402
from aooct_core.metrics.norms import normative_cone_spacing_um  # noqa: E402
from aooct_core.phantom import make_phantom  # noqa: E402
from aooct_core.phantom.family import HELD_OUT_SEEDS, TUNING_SEEDS, family_member  # noqa: E402
from aooct_core.preprocessing import preprocess_case, slab_projection  # noqa: E402
from aooct_core.qc import QCThresholds, qc_checks  # noqa: E402

WRONG = {"ELM": ("ELM", 0.0), "ONL": ("ELM", -20.0), "RPE": ("RPE", 0.0), "choroid": ("BM", 15.0)}


def run_one(seed: int) -> dict | None:
    member = family_member(seed)
    ph = make_phantom(**member)
    g = ph.geometry
    spacing = normative_cone_spacing_um(ph.acquisition.eccentricity_deg)
    sp = (spacing / g.bscan_um_per_px, spacing / g.aline_um_per_px)
    if min(sp) < 3.0 or max(sp[0] / 64 * 6, sp[1] / 96 * 6) > 1:   # outside the check's range
        return None
    try:
        out = preprocess_case(ph.volumes, g, reference=0)
    except ValueError as exc:
        return {"seed": seed, "error": str(exc)}
    half = 3.0 / g.depth_um_per_px

    def strength(centre):
        img = slab_projection(out.volume, centre - half, centre + half)
        return mosaic_ring_strength(img, expected_spacing_px=sp)

    good = {k: strength(np.asarray(out.surfaces_px[k])) for k in ("ISOS", "COST")}
    wrong = {name: strength(ph.surfaces_px[surface] + np.float32(offset_um / g.depth_um_per_px))
             for name, (surface, offset_um) in WRONG.items()}
    return {"seed": seed, "spacing_px": sp, "good": good, "wrong": wrong,
            "n_repeats": member["n_repeats"], "snr_db": member["snr_db"]}


def verdict(strength: float) -> str:
    (check,) = qc_checks(mosaic_ring_strength=strength)
    return "pass" if check.passed else check.severity


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--held-out", action="store_true")
    args = ap.parse_args(argv)
    seeds = (HELD_OUT_SEEDS if args.held_out else TUNING_SEEDS)[:args.n]
    t = QCThresholds()
    print(f"thresholds: warn < {t.mosaic_ring_warn}, fail < {t.mosaic_ring_fail}")
    print("| seed | spacing px | rep | SNR | IS/OS, COST (good) | ELM, ONL, RPE, choroid (forced wrong) |")
    print("|---|---|---|---|---|---|")
    good_pass = good_n = wrong_fail = wrong_n = 0
    for seed in seeds:
        r = run_one(seed)
        if r is None:
            continue
        if "error" in r:
            print(f"| {seed} | — | — | — | error: {r['error'][:60]} | |")
            continue
        g = [f"{v:.2f} {verdict(v)}" for v in r["good"].values()]
        w = [f"{v:.2f} {verdict(v)}" for v in r["wrong"].values()]
        good_n += 1
        good_pass += verdict(max(r["good"].values())) == "pass"
        wrong_n += len(r["wrong"])
        wrong_fail += sum(verdict(v) == "fail" for v in r["wrong"].values())
        print(f"| {seed} | {min(r['spacing_px']):.1f} | {r['n_repeats']} | {r['snr_db']:.0f} | "
              f"{', '.join(g)} | {', '.join(w)} |", flush=True)
    print(f"\n{'held-out' if args.held_out else 'tuning'}: good cases passing (best cone slab) "
          f"{good_pass}/{good_n}; forced-wrong slabs failing {wrong_fail}/{wrong_n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
