"""Post-training calibration on *training* images only (never on held-out subjects).

* cells: the heat-map peak threshold and the minimum-distance factor that maximise the
  mean per-image Dice of the literature protocol on the training images;
* masks: the probability threshold that maximises the mean pixel Dice.
The same search is run for the classical baselines' thresholds, so the comparison is fair.
"""
from __future__ import annotations

import numpy as np

from ml.evaluate import evaluate_detections, pixel_dice

__all__ = ["calibrate_peaks", "calibrate_mask_threshold", "calibrate_log_threshold"]


def calibrate_peaks(heatmaps: list[np.ndarray], truths: list[np.ndarray], *,
                    thresholds=np.arange(0.15, 0.71, 0.05),
                    factors=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> dict:
    """Best ``{"peak_threshold", "min_distance_factor", "train_dice"}`` on training heat maps."""
    from ml.inference import find_peaks
    best = {"peak_threshold": 0.5, "min_distance_factor": 0.5, "train_dice": -1.0}
    for f in factors:
        for t in thresholds:
            dice = np.mean([evaluate_detections(find_peaks(h, threshold=float(t), min_distance_factor=f),
                                                p, image_shape=h.shape).dice
                            for h, p in zip(heatmaps, truths)])
            if dice > best["train_dice"] + 1e-9:
                best = {"peak_threshold": round(float(t), 3), "min_distance_factor": float(f),
                        "train_dice": float(dice)}
    return best


def calibrate_mask_threshold(probabilities: list[np.ndarray], masks: list[np.ndarray], *,
                             thresholds=np.arange(0.3, 0.71, 0.05)) -> dict:
    """Best ``{"mask_threshold", "train_dice"}`` on training probability maps."""
    best = {"mask_threshold": 0.5, "train_dice": -1.0}
    for t in thresholds:
        dice = np.mean([pixel_dice(p > t, m) for p, m in zip(probabilities, masks)])
        if dice > best["train_dice"] + 1e-9:
            best = {"mask_threshold": round(float(t), 3), "train_dice": float(dice)}
    return best


def calibrate_log_threshold(images: list[np.ndarray], truths: list[np.ndarray], *,
                            polarity: str, thresholds=(-1.5, -1.0, -0.5, 0.0, 0.5, 1.0)) -> dict:
    """Best LoG response threshold for the baseline on training images."""
    from ml.baselines import log_cell_detector
    best = {"threshold": 0.0, "train_dice": -1.0}
    for t in thresholds:
        dice = np.mean([evaluate_detections(log_cell_detector(im, polarity=polarity, threshold=t),
                                            p, image_shape=im.shape).dice
                        for im, p in zip(images, truths)])
        if dice > best["train_dice"] + 1e-9:
            best = {"threshold": float(t), "train_dice": float(dice)}
    return best
