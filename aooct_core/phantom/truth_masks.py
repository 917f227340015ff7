"""Raster masks of a phantom's ground truth (for scoring segmentations against it)."""
from __future__ import annotations

import numpy as np

__all__ = ["capillary_truth_mask"]


def capillary_truth_mask(vessels: list[dict], shape: tuple[int, int], um_per_px_rc, *,
                         plexus: str = "SVP") -> np.ndarray:
    """Rasterise phantom capillary centrelines of one plexus into a bool (row, col) mask.

    A pixel is vessel when its centre lies within half the vessel diameter of the
    centreline (at least 0.75 px, so that sub-pixel capillaries stay connected); the
    centrelines are ``truth["vessels"][i]["centerline_rc"]`` in the motion-free frame.
    """
    from scipy.spatial import cKDTree
    um = np.broadcast_to(np.asarray(um_per_px_rc, float), (2,))
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    best = np.full(shape, np.inf)
    for v in vessels:
        if v["plexus"] != plexus:
            continue
        pts = np.asarray(v["centerline_rc"], float).reshape(-1, 2)
        radius_px = max(0.5 * v["diameter_um"] / float(um.mean()), 0.75)
        lo = np.maximum(np.floor(pts.min(0) - radius_px - 1), 0).astype(int)
        hi = np.minimum(np.ceil(pts.max(0) + radius_px + 2), shape).astype(int)
        if np.any(hi <= lo):
            continue
        rr, cc = rows[lo[0]:hi[0], lo[1]:hi[1]], cols[lo[0]:hi[0], lo[1]:hi[1]]
        d, _ = cKDTree(pts).query(np.stack([rr.ravel(), cc.ravel()], 1))
        d = d.reshape(rr.shape) / radius_px  # in units of the vessel radius
        sub = best[lo[0]:hi[0], lo[1]:hi[1]]
        np.minimum(sub, d, out=sub)
    return best <= 1.0
