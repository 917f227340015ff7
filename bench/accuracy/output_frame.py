"""Phantom truth moved into the corrected volume's frame, and the interior scoring window —
one convention for the family benchmarks and the independent-phantom score.

Repeat ``r``'s B-scan ``b`` was moved by ``motion_px[r, b]`` and moved back by the estimated
``shifts_px[r, b]``, so its content sits at ``d = mean_r(motion - shifts)`` from the
motion-free truth, the mean weighted as the repeat average weights the repeats
(``MotionReport.weights``: a rejected B-scan adds nothing to the image, so where it would have
sat does not move what is seen). What registration cannot observe then does not count as a layer or
detection error; registration is scored by its own benchmark.
"""
from __future__ import annotations

import numpy as np

__all__ = ["residual_px", "surface_in_output_frame", "points_in_output_frame", "InteriorWindow"]


def residual_px(motion_px, shifts_px, weights=None) -> np.ndarray:
    """``mean_r(motion_px - shifts_px)`` weighted by ``weights`` (n_repeats, n_bscans; all
    repeats alike where a B-scan has none, as the average does), (n_bscans, 2)
    ``(depth, aline)`` px."""
    e = np.asarray(motion_px, np.float64) - np.asarray(shifts_px, np.float64)
    w = np.ones(e.shape[:2]) if weights is None else np.asarray(weights, np.float64)
    w = np.where(w.sum(axis=0, keepdims=True) > 0, w, 1.0)
    return (w[..., None] * e).sum(axis=0) / w.sum(axis=0)[:, None]


def surface_in_output_frame(surface: np.ndarray, motion_px, shifts_px, weights=None) -> np.ndarray:
    """A true surface (n_bscans, n_alines) depth px: a band at ``S(x)`` appears at
    ``S(x - d_aline) + d_depth``."""
    d = residual_px(motion_px, shifts_px, weights)
    x = np.arange(surface.shape[1], dtype=np.float64)
    rows = [np.interp(x - d[b, 1], x, surface[b]) + d[b, 0] for b in range(surface.shape[0])]
    return np.asarray(rows, np.float32)


def points_in_output_frame(points_rc: np.ndarray, motion_px, shifts_px, weights=None) -> np.ndarray:
    """Motion-free en face points (row = B-scan, col = A-line) → the corrected frame."""
    d = residual_px(motion_px, shifts_px, weights)[:, 1]
    rows = np.clip(np.rint(points_rc[:, 0]).astype(int), 0, len(d) - 1)
    return np.stack([points_rc[:, 0], points_rc[:, 1] + d[rows]], axis=1).astype(np.float32)


class InteriorWindow:
    """The window ``margin_px = (rows, cols)`` in from every edge of an ``image_shape``
    image, where a phantom lists every cell (a lateral offset brings unlisted ones in at
    the edges); :meth:`crop` gives points in the window's own frame."""

    def __init__(self, image_shape, margin_px):
        self.margin = (int(margin_px[0]), int(margin_px[1]))
        self.shape = (int(image_shape[0]) - 2 * self.margin[0], int(image_shape[1]) - 2 * self.margin[1])

    def crop(self, points_rc) -> np.ndarray:
        p = np.asarray(points_rc, np.float32).reshape(-1, 2) - np.float32(self.margin)
        keep = (p[:, 0] >= 0) & (p[:, 0] <= self.shape[0] - 1) & (p[:, 1] >= 0) & (p[:, 1] <= self.shape[1] - 1)
        return p[keep]
