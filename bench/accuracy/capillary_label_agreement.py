"""Is the capillary Dice limited by the model or by the labels? (ROSSA val)

Usage (after two ``capillary_ablation.py ... --seed S --save-probs F.npy`` runs)::

    .venv/bin/python bench/accuracy/capillary_label_agreement.py SEED_A.npy SEED_B.npy \
        [--threshold-a 0.5] [--threshold-b 0.4]

Prints, on the 100 ROSSA val images (mean per-image pixel Dice):

* each of the two runs against the labels, and the two runs against each other;
* the share of run A's label disagreements (pixels) where A and B agree (systematic, not
  run-to-run noise);
* for the committed capillary model (TTA×4): the two runs against it, its calibrated threshold, the ROSSA authors'
  protocol (min-max scaling, then Otsu per image), an oracle threshold picked per image with
  the labels, and the predicted / labelled mask area ratio.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.filters import threshold_otsu

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ml.data import load_rossa  # noqa: E402
from ml.evaluate import pixel_dice  # noqa: E402
from ml.inference import load_task_model, predict_maps  # noqa: E402


def mean_dice(masks_a, masks_b) -> float:
    return float(np.mean([pixel_dice(a, b) for a, b in zip(masks_a, masks_b)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probs_a", type=Path)
    ap.add_argument("probs_b", type=Path)
    ap.add_argument("--threshold-a", type=float, default=0.5, help="run A's calibrated mask threshold")
    ap.add_argument("--threshold-b", type=float, default=0.4, help="run B's calibrated mask threshold")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    val = load_rossa("val")
    labels = np.stack([s.mask for s in val])
    a = np.load(args.probs_a).astype(np.float32) > args.threshold_a
    b = np.load(args.probs_b).astype(np.float32) > args.threshold_b
    if a.shape != labels.shape or b.shape != labels.shape:
        raise ValueError(f"probability maps must be {labels.shape} (ROSSA val); got {a.shape} and {b.shape}")
    print(f"run A vs labels {mean_dice(a, labels):.4f}; run B vs labels {mean_dice(b, labels):.4f}; "
          f"A vs B {mean_dice(a, b):.4f}")
    wrong_a = a ^ labels
    shared = float((wrong_a & ~(a ^ b)).sum() / wrong_a.sum())
    print(f"share of A's label-disagreeing pixels where A and B agree: {shared:.3f}")

    _, runner, meta = load_task_model("capillaries")
    probs = [predict_maps(s.image, runner, kind="vessels", uncertainty="tta")[0] for s in val]
    t = float(meta["mask_threshold"])
    committed = [p > t for p in probs]
    otsu = []
    for p in probs:
        q = (p - p.min()) / max(float(p.max() - p.min()), 1e-12)
        otsu.append(q > threshold_otsu(q))
    oracle = [max(pixel_dice(p > th, m) for th in np.arange(0.1, 0.91, 0.05)) for p, m in zip(probs, labels)]
    print(f"runs against the committed model: A {mean_dice(a, committed):.4f}, B {mean_dice(b, committed):.4f}")
    ratio = np.array([c.sum() / m.sum() for c, m in zip(committed, labels)])
    print(f"committed model (TTA x4): threshold {t} -> {mean_dice(committed, labels):.4f}; "
          f"min-max + Otsu per image {mean_dice(otsu, labels):.4f}; oracle per-image threshold "
          f"{float(np.mean(oracle)):.4f}")
    print(f"mask area / label area: median {np.median(ratio):.3f}, 10-90 % "
          f"{np.percentile(ratio, 10):.3f}-{np.percentile(ratio, 90):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
