"""Registration on the phantom family (issue 16): how far each repeat's corrected B-scans sit
from the reference's, against the eye motion the phantom rendered.

For every member with >= 2 repeats, ``preprocess_case(..., reference=0)`` (what
``aooct analyze`` runs). Repeat ``r``'s B-scan ``b`` was displaced by ``motion_px[r, b]`` and
moved back by ``shifts_px[r, b]``; what blurs the repeat average is the *relative* error
``(motion - shifts)[r, b] - (motion - shifts)[0, b]`` of the B-scans it averages (weight > 0;
a displacement common to all repeats moves the mean frame, not the mosaic). Reported: the
share of B-scans of the non-reference repeats averaged while more than 2 px (lateral) or 1 px
(axial) off, the share averaged at all, the repeats with more than 25 % of their
B-scans laterally off, and what the platform said (``registration_ok``, rejected B-scans).

    python bench/accuracy/registration_family.py --n 60
    python bench/accuracy/registration_family.py --held-out --n 60
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aooct_core.phantom import make_phantom  # noqa: E402
from aooct_core.phantom.family import family_member  # noqa: E402
from aooct_core.preprocessing import preprocess_case  # noqa: E402
from family_args import family_seeds, member_rows  # noqa: E402  (bench/accuracy, the script's folder)

LATERAL_OFF_PX = 2.0
AXIAL_OFF_PX = 1.0
BAD_REPEAT_FRACTION = 0.25


def run_one(seed: int) -> dict | None:
    member = family_member(seed)
    if member["n_repeats"] < 2:
        return None
    ph = make_phantom(**member)
    out = preprocess_case(ph.volumes, ph.geometry, reference=0)
    err = np.asarray(ph.motion_px, np.float64) - np.asarray(out.motion.shifts_px, np.float64)
    rel = (err - err[:1])[1:]                      # (R - 1, B, 2) relative to the reference
    used = np.asarray(out.motion.weights)[1:] > 0  # a rejected B-scan adds nothing to the average
    lat_off = (np.abs(rel[..., 1]) > LATERAL_OFF_PX) & used
    return {"seed": seed, "n_repeats": member["n_repeats"], "n_bscans": int(rel.shape[1]),
            "lateral_off": int(lat_off.sum()),
            "axial_off": int(((np.abs(rel[..., 0]) > AXIAL_OFF_PX) & used).sum()),
            "n_moving": int(lat_off.size), "n_used": int(used.sum()),
            "bad_repeats": int((lat_off.mean(axis=1) > BAD_REPEAT_FRACTION).sum()),
            "lateral_rms_px": float(np.sqrt(np.mean(rel[..., 1] ** 2))),
            "registration_ok": bool(out.motion.registration_ok),
            "rejected": len(out.motion.rejected_bscans), "padded_fraction": float(out.padded_fraction)}


def main(argv=None) -> int:
    args, seeds = family_seeds(__doc__, argv, n_default=20)
    t0, load0 = time.perf_counter(), os.getloadavg()
    print("| seed | rep | averaged B-scans lat > 2 px | axial > 1 px | repeats > 25 % off | lateral RMS px | ok | rejected |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for seed, r in member_rows(seeds, run_one):
        rows.append(r)
        print(f"| {seed} | {r['n_repeats']} | {r['lateral_off']}/{r['n_moving']} | {r['axial_off']} | "
              f"{r['bad_repeats']} | {r['lateral_rms_px']:.2f} | {r['registration_ok']} | {r['rejected']} |",
              flush=True)
    n_moving = sum(r["n_moving"] for r in rows)
    n_rep = sum(r["n_repeats"] - 1 for r in rows)
    print(f"\n{'held-out' if args.held_out else 'tuning'} seeds {seeds.start}-{seeds.stop - 1}, {len(rows)} "
          f"members with >= 2 repeats: B-scans averaged while laterally > {LATERAL_OFF_PX:g} px off "
          f"{100 * sum(r['lateral_off'] for r in rows) / max(n_moving, 1):.1f} %, axially > {AXIAL_OFF_PX:g} px "
          f"{100 * sum(r['axial_off'] for r in rows) / max(n_moving, 1):.1f} %, averaged "
          f"{100 * sum(r['n_used'] for r in rows) / max(n_moving, 1):.1f} %; repeats with > 25 % off "
          f"{sum(r['bad_repeats'] for r in rows)}/{n_rep}; of the members with such a repeat, "
          f"registration_ok false on {sum(not r['registration_ok'] for r in rows if r['bad_repeats'])}"
          f"/{sum(1 for r in rows if r['bad_repeats'])}")
    print(f"{time.perf_counter() - t0:.0f} s; load average {load0[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
