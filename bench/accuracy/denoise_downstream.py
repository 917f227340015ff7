"""Does the single-volume denoiser help the measurements? Phantom cases, held-out seeds.

For each held-out capillary seed (``ml.tasks.PHANTOM_CAPILLARY_SEEDS["svp"]``, never used in
training) a phantom case is drawn with the same per-seed variation as
``ml.data.phantom_capillary_samples`` (eccentricity 1-6°, field 0.5-1.5°, SNR 25-40 dB, eye
motion), once with **one** volume and once with three repeats. Each is run through
``preprocess_case`` as the pipeline does; the one-volume case also with
``denoise="nl_means"``. Scored with the committed weights, as the pipeline calls them:

* capillaries: ``segment_vessels`` on the ``svp`` slab, pixel Dice against the SVP truth
  mask and the predicted / true area fraction;
* RPE cells: ``detect_cells(target="rpe")`` on the ``rpe`` slab with the pipeline's expected
  spacing, F1 (= Dice) against the phantom's RPE centres;
* cones: ``detect_cells`` on the ``isos`` slab (unchanged by the denoiser by design; listed
  to show it stays so), F1 against the visible cones.

Usage: nice -n 10 .venv/bin/python bench/accuracy/denoise_downstream.py [--seeds N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from aooct_assets.assets.masks import expected_spacing_um  # noqa: E402  (the pipeline's own)
from aooct_core.phantom import make_phantom  # noqa: E402
from aooct_core.phantom.truth_masks import capillary_truth_mask  # noqa: E402
from aooct_core.preprocessing import preprocess_case  # noqa: E402
from ml.evaluate import evaluate_detections, pixel_dice  # noqa: E402
from ml.inference import detect_cells, segment_vessels  # noqa: E402
from ml.tasks import PHANTOM_CAPILLARY_SEEDS  # noqa: E402

SHAPE_PX = (128, 256, 128)
VARIANTS = ("1 volume", "1 volume, nl_means", "3 volumes")


def _case_kwargs(seed: int) -> dict:
    # The same draws as ml.data.phantom_capillary_samples (vary=True), repeats set apart.
    rng = np.random.default_rng(seed)
    field = float(rng.uniform(0.5, 1.5))
    return {"location_deg": (float(rng.uniform(1.0, 6.0)), 0.0), "scan_field_deg": (field, field),
            "snr_db": float(rng.uniform(25.0, 40.0))}


def _score(pre, ph) -> dict:
    um_rc = tuple(float(u) for u in ph.geometry.enface_um_per_px)
    ecc = float(ph.truth["eccentricity_deg"])
    truth = capillary_truth_mask(ph.truth["vessels"], pre.enface["svp"].shape, um_rc, plexus="SVP")
    seg = segment_vessels(pre.enface["svp"], um_per_px=float(np.mean(um_rc)))
    out = {"capillary_dice": pixel_dice(seg.mask, truth),
           "capillary_area_ratio": float(seg.mask.mean() / max(truth.mean(), 1e-9))}
    rpe = detect_cells(pre.enface["rpe"], target="rpe", um_per_px=um_rc,
                       expected_spacing_um=expected_spacing_um("rpe", ecc))
    out["rpe_f1"] = evaluate_detections(rpe.points_rc, np.asarray(ph.truth["rpe"]["positions_rc"]),
                                        image_shape=pre.enface["rpe"].shape).dice
    cones = ph.truth["cones"]
    visible = np.asarray(cones["positions_rc"])[~np.asarray(cones["missing"], bool)]
    det = detect_cells(pre.enface["isos"], target="cones", um_per_px=um_rc,
                       expected_spacing_um=expected_spacing_um("cones", ecc))
    out["cone_f1"] = evaluate_detections(det.points_rc, visible, image_shape=pre.enface["isos"].shape).dice
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=len(PHANTOM_CAPILLARY_SEEDS["svp"]))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = PHANTOM_CAPILLARY_SEEDS["svp"][:args.seeds]
    rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for seed in seeds:
        one = make_phantom(seed=seed, n_repeats=1, shape_px=SHAPE_PX, **_case_kwargs(seed))
        three = make_phantom(seed=seed, n_repeats=3, shape_px=SHAPE_PX, **_case_kwargs(seed))
        rows["1 volume"].append(_score(preprocess_case(one.volumes, one.geometry), one))
        rows["1 volume, nl_means"].append(_score(preprocess_case(one.volumes, one.geometry, denoise="nl_means"), one))
        rows["3 volumes"].append(_score(preprocess_case(three.volumes, three.geometry), three))
        print(f"seed {seed}: " + "; ".join(f"{v}: " + ", ".join(f"{k} {r[-1][k]:.3f}" for k in r[-1])
                                           for v, r in rows.items()), flush=True)
    print(f"\n### Downstream measurements, phantom cases {SHAPE_PX}, held-out seeds {seeds[0]}-{seeds[-1]} "
          "(mean ± SD)\n")
    keys = list(rows[VARIANTS[0]][0])
    print("| case | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for v in VARIANTS:
        cells = [f"{np.mean([r[k] for r in rows[v]]):.3f} ± {np.std([r[k] for r in rows[v]], ddof=1):.3f}"
                 for k in keys]
        print(f"| {v} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
