"""Per-modality peak calibration vs the joint one, on the committed cone weights.

Usage::

    .venv/bin/python bench/accuracy/cone_modality_calibration.py [--n-calib 60]

For each AOSLO modality: calibrates the peak threshold and minimum-distance factor on up to
``--n-calib`` of its training images (TTA×4 heat maps, as ``finalize_task`` does for the
joint values) and scores the fixed held-out subjects with the joint and with the
per-modality values (literature protocol, mean per-image Dice).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ml.calibrate import calibrate_peaks  # noqa: E402
from ml.evaluate import evaluate_detections  # noqa: E402
from ml.inference import find_peaks, load_task_model, predict_maps  # noqa: E402
from ml.tasks import load_task_data  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-calib", type=int, default=60)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    _, runner, meta = load_task_model("cones")
    joint = (float(meta["peak_threshold"]), float(meta["min_distance_factor"]))
    print(f"joint calibration: threshold {joint[0]}, distance factor {joint[1]}")
    train, held = load_task_data("cones")
    rng = np.random.default_rng(0)
    for modality in ("split-detector", "confocal"):
        pool = [s for s in train if s.modality == modality]
        calib = [pool[i] for i in sorted(rng.choice(len(pool), min(args.n_calib, len(pool)), replace=False))]
        heat = [predict_maps(s.image, runner, kind="cells", uncertainty="tta")[0] for s in calib]
        own = calibrate_peaks(heat, [s.points_rc for s in calib])
        test = held[modality]
        test_heat = [predict_maps(s.image, runner, kind="cells", uncertainty="tta")[0] for s in test]

        def score(threshold, factor):
            return float(np.mean([evaluate_detections(find_peaks(h, threshold=threshold, min_distance_factor=factor),
                                                      s.points_rc, image_shape=h.shape).dice
                                  for h, s in zip(test_heat, test)]))

        print(f"{modality}: own calibration threshold {own['peak_threshold']}, distance factor "
              f"{own['min_distance_factor']}; held-out ({len(test)} images) Dice joint "
              f"{score(*joint):.4f}, own {score(own['peak_threshold'], own['min_distance_factor']):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
