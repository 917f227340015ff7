"""Capillary segmentation on held-out phantom slabs: network(s) vs truth, Frangi+Otsu beside.

For each held-out phantom seed of ``ml.tasks.PHANTOM_CAPILLARY_SEEDS`` the case is
preprocessed as in the pipeline (motion correction included) and the SVP slab is scored
against the SVP truth mask rasterised from ``truth["vessels"]`` (pixel Dice), together with
the predicted vs true area fraction. Slabs: "svp" (structural) and "octa_svp" (motion
contrast, the slab ``aooct demo`` currently segments).

Usage: nice -n 10 .venv/bin/python bench/accuracy/phantom_capillaries.py OUT.json [WEIGHTS.pt ...]
(default weights: the committed ml/weights/capillaries.pt)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ml.baselines import frangi_vessels  # noqa: E402
from ml.data import phantom_capillary_samples  # noqa: E402
from ml.evaluate import pixel_dice  # noqa: E402
from ml.inference import segment_vessels  # noqa: E402
from ml.tasks import PHANTOM_CAPILLARY_SEEDS  # noqa: E402


def _summary(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "sd": round(float(np.std(values, ddof=1)), 4)}


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    weights = [Path(p) for p in sys.argv[2:]] or [Path("ml/weights/capillaries.pt")]
    report: dict = {"seeds": PHANTOM_CAPILLARY_SEEDS, "slabs": {}}
    for slab in ("svp", "octa_svp"):
        samples = phantom_capillary_samples(PHANTOM_CAPILLARY_SEEDS[slab], slab=slab)
        rows: dict = {"truth_area_fraction": _summary([float(s.mask.mean()) for s in samples]),
                      "um_per_px": [round(s.um_per_px, 3) for s in samples]}
        fr = [frangi_vessels(s.image)[0] for s in samples]
        rows["Frangi+Otsu"] = {"dice": _summary([pixel_dice(m, s.mask) for m, s in zip(fr, samples)]),
                               "area_fraction": _summary([float(m.mean()) for m in fr])}
        for w in weights:
            segs = [segment_vessels(s.image, um_per_px=s.um_per_px, weights=w) for s in samples]
            rows[str(w)] = {"dice": _summary([pixel_dice(g.mask, s.mask) for g, s in zip(segs, samples)]),
                            "area_fraction": _summary([float(g.mask.mean()) for g in segs]),
                            "model_version": segs[0].model_version}
        report["slabs"][slab] = rows
        print(slab, json.dumps(rows, indent=1), flush=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
