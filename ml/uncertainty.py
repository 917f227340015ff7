"""Test-time augmentation and MC dropout → per-pixel mean/variance, cell confidence, QC.

* TTA: the 8 dihedral symmetries of the square (or the first ``n``) are applied to the
  input, the prediction is mapped back, and the per-pixel mean and variance of the
  sigmoid outputs are taken. Orientation channels (NFL) are rotated back as angles.
* MC dropout: the decoder's Dropout2d layers stay active at inference and ``n`` stochastic
  passes are averaged (torch backend only: the ONNX graph is exported without dropout).

References
----------
.. [1] Gal Y, Ghahramani Z. "Dropout as a Bayesian approximation." ICML 2016.
.. [2] Wang G et al. "Aleatoric uncertainty estimation with test-time augmentation for
       medical image segmentation." Neurocomputing 338:34-45 (2019).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DIHEDRAL", "apply_transform", "invert_transform", "invert_angle",
           "enable_mc_dropout", "cell_confidence", "uncertainty_summary"]

#: (k rotations by 90° counter-clockwise, flip columns) — identity first, flips before rotations.
DIHEDRAL = ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True))


def apply_transform(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate the last two axes by ``k`` × 90° (CCW) then flip columns."""
    out = np.rot90(arr, k, axes=(-2, -1)) if k else arr
    return np.ascontiguousarray(out[..., ::-1] if flip else out)


def invert_transform(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Undo :func:`apply_transform` on the last two axes."""
    out = arr[..., ::-1] if flip else arr
    return np.ascontiguousarray(np.rot90(out, -k, axes=(-2, -1)) if k else out)


def invert_angle(theta: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Orientation (rad, from +col towards +row, mod π) back to the untransformed frame."""
    out = np.pi - theta if flip else theta
    return np.mod(out + k * np.pi / 2, np.pi)


def enable_mc_dropout(model) -> None:
    """Put the model in eval mode but keep its Dropout layers sampling (MC dropout)."""
    import torch
    model.eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)):
            m.train()


def cell_confidence(mean: np.ndarray, var: np.ndarray, threshold: float,
                    *, floor_sd: float = 0.05) -> np.ndarray:
    """P(peak height > threshold) under a normal model of the TTA/MC spread, in [0, 1].

    ``floor_sd`` keeps a single forward pass (variance 0) from claiming certainty.
    """
    sd = np.sqrt(np.maximum(np.asarray(var, np.float64), 0) + floor_sd ** 2)
    z = (np.asarray(mean, np.float64) - threshold) / sd
    return (0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))).astype(np.float32) \
        if z.size else np.zeros(0, np.float32)


def uncertainty_summary(mean: np.ndarray, var: np.ndarray, *, confidence: np.ndarray | None = None,
                        sd_threshold: float = 0.15, low_confidence: float = 0.5) -> dict:
    """QC summary of an uncertainty map.

    Returns a dict with ``high_uncertainty_fraction`` (pixels with predictive SD above
    ``sd_threshold`` among pixels where the structure is plausible, mean > 0.1),
    ``mean_sd`` and, for cell detections, ``low_confidence_fraction`` (cells with
    confidence < ``low_confidence``). Values are NaN when no uncertainty was estimated.
    """
    var = np.asarray(var, np.float64)
    if not np.all(np.isfinite(var)):
        out = {"high_uncertainty_fraction": float("nan"), "mean_sd": float("nan")}
    else:
        sd = np.sqrt(np.maximum(var, 0))
        region = np.asarray(mean) > 0.1
        denom = max(int(region.sum()), 1)
        out = {"high_uncertainty_fraction": float((sd[region] > sd_threshold).sum() / denom),
               "mean_sd": float(sd[region].mean()) if region.any() else 0.0}
    if confidence is not None:
        conf = np.asarray(confidence)
        out["low_confidence_fraction"] = float((conf < low_confidence).mean()) if conf.size else 0.0
    return out
