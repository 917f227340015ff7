"""Random patch sampling, geometric/intensity augmentation and training targets.

Geometry (crop, zoom, the 8 dihedral symmetries) is applied to the image and to its
annotation (points, mask, orientation) together; targets are rendered *after* the
transform so a cell heat map always has the same width relative to the cell spacing.
All randomness comes from the ``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ml.data import Sample

__all__ = ["AugmentConfig", "median_nnd_px", "render_heatmap", "sample_patch", "make_batch"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges. ``zoom`` is the (min, max) magnification, log-uniform."""

    patch_px: int = 96
    zoom: tuple[float, float] = (0.8, 1.25)
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.7, 1.3)
    noise_sd: float = 0.05
    blur_sd_max: float = 0.8
    heat_sigma_frac: float = 0.18  # heat-map σ as a fraction of the median NND
    heat_sigma_min_px: float = 1.0


def median_nnd_px(points_rc: np.ndarray) -> float:
    """Median nearest-neighbour distance of a point set in px (nan for < 2 points)."""
    pts = np.asarray(points_rc, np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return float("nan")
    d, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(d[:, 1]))


def render_heatmap(points_rc: np.ndarray, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian cell-centre heat map with peak ≈ 1 at every point, float32 (row, col).

    Points are splatted bilinearly (keeps sub-pixel positions), blurred, and scaled by
    ``2πσ²`` so an isolated cell peaks at 1; overlapping tails are clipped at 1.
    """
    delta = np.zeros(shape, np.float64)
    pts = np.asarray(points_rc, np.float64).reshape(-1, 2)
    r0 = np.floor(pts[:, 0]).astype(int)
    c0 = np.floor(pts[:, 1]).astype(int)
    fr = pts[:, 0] - r0
    fc = pts[:, 1] - c0
    for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)),
                      (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        np.add.at(delta, (rr[ok], cc[ok]), w[ok])
    heat = ndi.gaussian_filter(delta, sigma_px, mode="constant") * (2 * np.pi * sigma_px ** 2)
    return np.clip(heat, 0, 1).astype(np.float32)


def _dihedral(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    out = np.rot90(arr, k) if k else arr
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _dihedral_points(pts: np.ndarray, shape: tuple[int, int], k: int, flip: bool) -> np.ndarray:
    r, c = pts[:, 0].copy(), pts[:, 1].copy()
    h, w = shape
    for _ in range(k):  # np.rot90 (counter-clockwise): (r, c) -> (w-1-c, r)
        r, c = w - 1 - c, r
        h, w = w, h
    if flip:
        c = w - 1 - c
    return np.stack([r, c], axis=1)


def _dihedral_angle(theta: np.ndarray, k: int, flip: bool) -> np.ndarray:
    # Orientation angle measured from the +col axis towards +row; rot90 CCW subtracts π/2.
    out = theta - k * np.pi / 2
    if flip:
        out = np.pi - out
    return np.mod(out, np.pi)


def sample_patch(sample: Sample, kind: str, cfg: AugmentConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One augmented ``(image (1,P,P), target (C,P,P))`` float32 pair for a task kind."""
    p = cfg.patch_px
    zoom = float(np.exp(rng.uniform(np.log(cfg.zoom[0]), np.log(cfg.zoom[1]))))
    src = int(np.ceil(p / zoom)) + 2
    img = sample.image
    pad = max(0, src - min(img.shape))
    if pad:
        img = np.pad(img, pad, mode="reflect")
    r0 = int(rng.integers(0, img.shape[0] - src + 1))
    c0 = int(rng.integers(0, img.shape[1] - src + 1))
    crop = img[r0:r0 + src, c0:c0 + src]
    crop = ndi.zoom(crop, zoom, order=1)[:p, :p]
    if crop.shape != (p, p):
        crop = np.pad(crop, ((0, p - crop.shape[0]), (0, p - crop.shape[1])), mode="reflect")
    k, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
    crop = _dihedral(crop, k, flip)
    targets: list[np.ndarray] = []
    if kind == "cells":
        pts = sample.points_rc + pad
        pts = (pts - [r0, c0] + 0.5) * zoom - 0.5
        keep = (pts[:, 0] > -3) & (pts[:, 0] < p + 3) & (pts[:, 1] > -3) & (pts[:, 1] < p + 3)
        pts = _dihedral_points(pts[keep], (p, p), k, flip)
        nnd = median_nnd_px(sample.points_rc) * zoom
        sigma = max(cfg.heat_sigma_min_px, cfg.heat_sigma_frac * nnd) if np.isfinite(nnd) else 1.5
        targets.append(render_heatmap(pts, (p, p), sigma))
    else:
        mask = np.pad(sample.mask, pad, mode="reflect") if pad else sample.mask
        m = ndi.zoom(mask[r0:r0 + src, c0:c0 + src].astype(np.float32), zoom, order=1)[:p, :p]
        m = np.pad(m, ((0, p - m.shape[0]), (0, p - m.shape[1])), mode="reflect")
        targets.append((_dihedral(m, k, flip) > 0.5).astype(np.float32))
        if kind == "nfl":
            th = np.pad(sample.orientation_rad, pad, mode="reflect") if pad else sample.orientation_rad
            th = ndi.zoom(th[r0:r0 + src, c0:c0 + src], zoom, order=0)[:p, :p]
            th = np.pad(th, ((0, p - th.shape[0]), (0, p - th.shape[1])), mode="reflect")
            th = _dihedral_angle(_dihedral(th, k, flip), k, flip)
            targets += [np.cos(2 * th).astype(np.float32), np.sin(2 * th).astype(np.float32)]
    # Intensity: gamma on the [0,1] range, contrast/brightness, blur, additive noise.
    x = np.clip(crop, 0, None) ** rng.uniform(*cfg.gamma)
    x = (x - x.mean()) * rng.uniform(*cfg.contrast) + x.mean() + rng.normal(0, 0.05)
    if cfg.blur_sd_max > 0 and rng.random() < 0.3:
        x = ndi.gaussian_filter(x, rng.uniform(0.3, cfg.blur_sd_max))
    x = x + rng.normal(0, rng.uniform(0, cfg.noise_sd), size=x.shape)
    return x[None].astype(np.float32), np.stack(targets).astype(np.float32)


def make_batch(samples: list[Sample], kind: str, batch_size: int, cfg: AugmentConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A batch of augmented patches drawn uniformly over images."""
    idx = rng.integers(0, len(samples), size=batch_size)
    pairs = [sample_patch(samples[i], kind, cfg, rng) for i in idx]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
