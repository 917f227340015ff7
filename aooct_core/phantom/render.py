"""Rendering helpers: Gaussian splats on an en face grid with per-B-scan shifts.

Every feature of the phantom is rendered *directly at its moved position*: for
B-scan ``row`` of a repeat whose motion is ``(dz, da)`` px, a point at true en face
position ``(r, c)`` is evaluated at column ``c + da[row]`` (and depth ``z + dz[row]``).
No resampling of an already rendered volume is done, so the motion truth is exact
to floating-point precision (no interpolation blur, no wrap-around).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["splat_gaussians", "axial_band", "smooth_step"]


def splat_gaussians(points_rc: np.ndarray, weights: np.ndarray, *, shape: tuple[int, int],
                    sigma_px: tuple[float, float], col_shift_px: np.ndarray | None = None) -> np.ndarray:
    """Sum of 2-D Gaussians of peak ``weights`` centred at sub-pixel points.

    Parameters
    ----------
    points_rc : numpy.ndarray, shape (N, 2)
        Centres ``(row, col)`` in px of the motion-free en face frame.
    weights : numpy.ndarray, shape (N,)
        Peak value of each Gaussian.
    shape : tuple of int
        ``(n_rows, n_cols)`` of the output.
    sigma_px : tuple of float
        ``(row, col)`` Gaussian SD in px.
    col_shift_px : numpy.ndarray, shape (n_rows,), optional
        Column shift of each output row (lateral motion of each B-scan): content of
        row ``i`` is displaced by ``+col_shift_px[i]``.

    Returns
    -------
    numpy.ndarray, float32, shape ``shape``
    """
    n_rows, n_cols = shape
    out = np.zeros(shape, dtype=np.float64)
    pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if pts.shape[0] == 0:
        return out.astype(np.float32)
    shift = np.zeros(n_rows) if col_shift_px is None else np.asarray(col_shift_px, dtype=np.float64)
    max_shift = float(np.max(np.abs(shift)))
    s_r, s_c = float(sigma_px[0]), float(sigma_px[1])
    rad_r = int(math.ceil(3.5 * s_r))
    rad_c = int(math.ceil(3.5 * s_c + max_shift))
    # Drop points whose footprint cannot reach the image (cheap pre-cull).
    keep = ((pts[:, 0] > -rad_r - 1) & (pts[:, 0] < n_rows + rad_r)
            & (pts[:, 1] > -rad_c - 1) & (pts[:, 1] < n_cols + rad_c))
    pts, w = pts[keep], w[keep]
    r0 = np.rint(pts[:, 0]).astype(np.int64)
    dr = np.arange(-rad_r, rad_r + 1)
    rows = r0[:, None] + dr[None, :]                                  # (N, Wr)
    row_ok = (rows >= 0) & (rows < n_rows)
    rows_c = np.clip(rows, 0, n_rows - 1)
    g_r = np.exp(-0.5 * ((rows - pts[:, :1]) / s_r) ** 2) * row_ok    # (N, Wr)
    centre_c = pts[:, 1:2] + shift[rows_c]                             # moved column centre per row
    c0 = np.rint(centre_c).astype(np.int64)
    rad_c0 = int(math.ceil(3.5 * s_c))
    dc = np.arange(-rad_c0, rad_c0 + 1)
    cols = c0[:, :, None] + dc[None, None, :]                          # (N, Wr, Wc)
    col_ok = (cols >= 0) & (cols < n_cols)
    g_c = np.exp(-0.5 * ((cols - centre_c[:, :, None]) / s_c) ** 2) * col_ok
    vals = w[:, None, None] * g_r[:, :, None] * g_c
    flat = rows_c[:, :, None] * n_cols + np.clip(cols, 0, n_cols - 1)
    out.ravel()[:] = np.bincount(flat.ravel(), weights=vals.ravel(), minlength=n_rows * n_cols)
    return out.astype(np.float32)


def smooth_step(z: np.ndarray, edge: np.ndarray, width_px: float) -> np.ndarray:
    """0 above ``edge`` and 1 below it, with a tanh transition ``width_px`` wide (float32)."""
    return (0.5 + 0.5 * np.tanh((z - edge) / np.float32(width_px))).astype(np.float32, copy=False)


def axial_band(z: np.ndarray, centre: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian band of unit peak centred at depth ``centre`` (float32)."""
    return np.exp(np.float32(-0.5 / sigma_px ** 2) * (z - centre) ** 2).astype(np.float32, copy=False)
