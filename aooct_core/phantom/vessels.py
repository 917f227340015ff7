"""Capillaries of the two retinal plexuses and nerve fiber bundles.

Capillaries
-----------
Each plexus is a closed mesh built from the edges of a Voronoi tessellation of
random seeds (mean mesh spacing ~65 µm in the superficial plexus, SVP, and ~50 µm
in the deep plexus, DVP), every edge bent into a quadratic Bézier curve so the mesh
is not polygonal. Diameters are uniform in 4-6 µm. Segments inside the foveal
avascular zone (radius 250 µm SVP / 300 µm DVP around the fovea) are removed.
The SVP lies in the GCL (a quarter of the way from NFL/GCL to IPL/INL), the DVP at
the INL/OPL border.

Nerve fiber bundles
-------------------
Parallel, gently wavy bands of width 3-30 µm (most narrow, few wide) separated by
2-8 µm gaps, oriented perpendicular to the direction of the fovea (arcuate
approximation of the raphe-free parafovea).

References
----------
.. [1] Chui TYP, et al. "Foveal avascular zone and its relationship to foveal
       pit shape." Optom Vis Sci 89:602-610 (2012).
.. [2] Campbell JP, et al. "Detailed vascular anatomy of the human retina by
       projection-resolved OCT angiography." Sci Rep 7:42201 (2017).
.. [3] Kocaoglu OP, et al. "Imaging retinal nerve fiber bundles using optical
       coherence tomography with adaptive optics." Vision Res 51:1835-1844 (2011).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Voronoi

from aooct_core.phantom.render import splat_gaussians

__all__ = ["capillary_segments", "render_capillaries", "NerveFiberBundles", "make_nerve_fiber_bundles"]

PLEXUS_SPACING_UM = {"SVP": 65.0, "DVP": 50.0}
FAZ_RADIUS_UM = {"SVP": 250.0, "DVP": 300.0}


def capillary_segments(plexus: str, *, field_px: tuple[int, int], um_per_px_rc: tuple[float, float],
                       fovea_rc: tuple[float, float], margin_px: float,
                       rng: np.random.Generator) -> list[dict]:
    """Random capillary mesh of one plexus as densely sampled centrelines.

    Returns
    -------
    list of dict
        ``{"plexus", "points_rc" (M, 2) float64 px (~0.4 px apart), "diameter_um"}``
        for every segment reaching into the padded field.
    """
    spacing = PLEXUS_SPACING_UM[plexus]
    um_r, um_c = um_per_px_rc
    lo = np.array([-margin_px * um_r - 2 * spacing, -margin_px * um_c - 2 * spacing])
    hi = np.array([(field_px[0] + margin_px) * um_r + 2 * spacing, (field_px[1] + margin_px) * um_c + 2 * spacing])
    n_seeds = max(4, rng.poisson(np.prod(hi - lo) / spacing ** 2))
    seeds = lo + rng.uniform(size=(n_seeds, 2)) * (hi - lo)
    vor = Voronoi(seeds)
    fovea_um = np.array([fovea_rc[0] * um_r, fovea_rc[1] * um_c])
    segments = []
    for a, b in vor.ridge_vertices:
        if a < 0 or b < 0:
            continue
        p0, p1 = vor.vertices[a], vor.vertices[b]
        length = float(np.hypot(*(p1 - p0)))
        if length < 1e-6:
            continue
        normal = np.array([-(p1 - p0)[1], (p1 - p0)[0]]) / length
        ctrl = 0.5 * (p0 + p1) + normal * rng.normal(0.0, 0.15 * length)
        n_pts = max(2, int(math.ceil(length / (0.4 * min(um_r, um_c)))) + 1)
        t = np.linspace(0.0, 1.0, n_pts)[:, None]
        pts_um = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t ** 2 * p1
        if np.min(np.hypot(*(pts_um - fovea_um).T)) < FAZ_RADIUS_UM[plexus]:
            continue
        pts = pts_um / np.array([um_r, um_c])
        inside = ((pts[:, 0] > -margin_px) & (pts[:, 0] < field_px[0] + margin_px)
                  & (pts[:, 1] > -margin_px) & (pts[:, 1] < field_px[1] + margin_px))
        if not inside.any():
            continue
        segments.append({"plexus": plexus, "points_rc": pts, "diameter_um": float(rng.uniform(4.0, 6.0))})
    return segments


def render_capillaries(segments: list[dict], *, shape: tuple[int, int], um_per_px_rc: tuple[float, float],
                       psf_sigma_um: float, col_shift_px: np.ndarray | None = None) -> np.ndarray:
    """En face capillary map (0-1) of one plexus, moved per row by ``col_shift_px``."""
    if not segments:
        return np.zeros(shape, dtype=np.float32)
    pts, weights = [], []
    mean_d = float(np.mean([s["diameter_um"] for s in segments]))
    sigma_um = math.hypot(mean_d / 2.355, psf_sigma_um)
    sigma_px = (sigma_um / um_per_px_rc[0], sigma_um / um_per_px_rc[1])
    for seg in segments:
        p = seg["points_rc"]
        step_um = float(np.mean(np.hypot(*(np.diff(p, axis=0) * np.array(um_per_px_rc)).T)))
        # A line of Gaussians spaced step apart has a cross-profile peak of sqrt(2 pi) sigma / step.
        w = step_um / (math.sqrt(2 * math.pi) * sigma_um) * (seg["diameter_um"] / mean_d)
        pts.append(p)
        weights.append(np.full(len(p), w))
    out = splat_gaussians(np.concatenate(pts), np.concatenate(weights), shape=shape,
                          sigma_px=sigma_px, col_shift_px=col_shift_px)
    return np.minimum(out, 1.0)


@dataclass(frozen=True)
class NerveFiberBundles:
    """Analytic nerve fiber bundle layout in µm of the en face frame.

    ``centres_um``, ``widths_um``, ``brightness``, ``wave_amp_um``, ``wave_len_um``,
    ``wave_phase`` are per bundle; ``orientation_rad`` is the direction the bundles run,
    measured from the col axis towards the row axis.
    """

    orientation_rad: float
    centres_um: np.ndarray
    widths_um: np.ndarray
    brightness: np.ndarray
    wave_amp_um: np.ndarray
    wave_len_um: np.ndarray
    wave_phase: np.ndarray
    origin_um: tuple[float, float]

    def _uv(self, rows_um: np.ndarray, cols_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.orientation_rad), math.sin(self.orientation_rad)
        dr, dc = rows_um - self.origin_um[0], cols_um - self.origin_um[1]
        return -s * dc + c * dr, c * dc + s * dr          # across, along

    def evaluate(self, rows_um: np.ndarray, cols_um: np.ndarray) -> np.ndarray:
        """Bundle map (0-1) at en face positions in µm (broadcast), float32."""
        u, v = self._uv(np.asarray(rows_um, float), np.asarray(cols_um, float))
        out = np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=np.float64)
        for k in range(len(self.centres_um)):
            centre = self.centres_um[k] + self.wave_amp_um[k] * np.sin(
                2 * math.pi * v / self.wave_len_um[k] + self.wave_phase[k])
            half = 0.5 * self.widths_um[k]
            edge = np.abs(u - centre) - half
            # Soft (1 µm) edges: bundles are resolved, their borders are not razor sharp.
            # Far outside a bundle exp() overflows to inf and the term is exactly 0, as wanted.
            with np.errstate(over="ignore"):
                out = np.maximum(out, self.brightness[k] / (1.0 + np.exp(edge / 0.7)))
        return out.astype(np.float32)

    def centrelines_rc(self, *, field_px: tuple[int, int], um_per_px_rc: tuple[float, float]) -> list[dict]:
        """Truth: centre line (px, sampled every ~1 px) and width of bundles crossing the field."""
        um_r, um_c = um_per_px_rc
        c, s = math.cos(self.orientation_rad), math.sin(self.orientation_rad)
        half_diag = math.hypot(field_px[0] * um_r, field_px[1] * um_c)
        v = np.arange(-half_diag, half_diag, min(um_r, um_c))
        result = []
        for k in range(len(self.centres_um)):
            u = self.centres_um[k] + self.wave_amp_um[k] * np.sin(
                2 * math.pi * v / self.wave_len_um[k] + self.wave_phase[k])
            rows = (self.origin_um[0] + c * u + s * v) / um_r
            cols = (self.origin_um[1] - s * u + c * v) / um_c
            inside = (rows >= -0.5) & (rows < field_px[0] - 0.5) & (cols >= -0.5) & (cols < field_px[1] - 0.5)
            if inside.sum() >= 2:
                result.append({"centerline_rc": np.stack([rows[inside], cols[inside]], 1).round(3).tolist(),
                               "width_um": float(self.widths_um[k])})
        return result


def make_nerve_fiber_bundles(*, field_um: tuple[float, float], location_deg: tuple[float, float],
                             rng: np.random.Generator) -> NerveFiberBundles:
    """Random bundle layout covering a field of ``field_um`` (row, col) plus margins."""
    h, v = location_deg
    radial = math.atan2(v, h) if (h or v) else 0.0
    # Direction in the en face frame: col = +horizontal, row = +vertical (see retina.py).
    orientation = radial + math.pi / 2
    half = 0.5 * math.hypot(*field_um) + 40.0
    centres, widths = [], []
    u = -half
    while u < half:
        w = 3.0 + 27.0 * rng.beta(1.2, 3.0)
        centres.append(u + 0.5 * w)
        widths.append(w)
        u += w + rng.uniform(2.0, 8.0)
    n = len(centres)
    return NerveFiberBundles(
        orientation_rad=float(orientation), centres_um=np.array(centres), widths_um=np.array(widths),
        brightness=rng.uniform(0.6, 1.0, n), wave_amp_um=rng.uniform(0.5, 3.0, n),
        wave_len_um=rng.uniform(150.0, 400.0, n), wave_phase=rng.uniform(0, 2 * math.pi, n),
        origin_um=(0.5 * field_um[0], 0.5 * field_um[1]),
    )
