"""Nerve fiber bundle metrics: count across transects, width, orientation and dispersion.

Orientation convention (shared with ``ml.inference.VesselSegmentation``): a
bundle direction ``θ`` in ``[0°, 180°)`` is measured in the en face plane from
the +col axis towards the +row axis, i.e. the unit direction is
``(row, col) = (sin θ, cos θ)``; angles are physical (µm), which equals pixel
space when pixels are square.

Method
------
* Orientation: axial (doubled-angle) statistics over bundle pixels, of the
  given orientation map or, when none is given, of the structure tensor of the
  mask. Dispersion is the circular standard deviation of axial data,
  ``½·sqrt(-2 ln R)`` (Mardia & Jupp 2000, §3.7), in degrees.
* Count and width: ``n_transects`` parallel lines perpendicular to the dominant
  orientation, spread over the field. Each run of bundle pixels on a line is a
  bundle crossing; its width is the run length times ``|cos(θ_local − θ̄)|``,
  which corrects for bundles that are not exactly parallel to the mean.
  Runs cut by the image border are counted but not measured.
* CIs: count and width resample whole transects (they are far apart, so close
  to independent); orientation and dispersion use a spatial block bootstrap of
  the doubled-angle sums.

References
----------
.. [1] Mardia KV, Jupp PE. Directional Statistics. Wiley (2000).
.. [2] Bigün J, Granlund GH. "Optimal orientation detection of linear
       symmetry." Proc ICCV 433-438 (1987).
.. [3] Cense B, Gao W, Brown JM, et al. "Retinal imaging with polarization-
       sensitive optical coherence tomography and adaptive optics." Opt Express
       17:21634-21651 (2009).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from aooct_core.metrics.bootstrap import block_grid, bootstrap_sums, percentile_ci
from aooct_core.metrics.values import MetricValue, as_um_per_px
from aooct_core.metrics.vessels import validate_mask

__all__ = ["nerve_fiber_metrics", "orientation_field_rad"]

DEFAULT_BLOCK_UM = 64.0
_STEP_PX = 0.5


def orientation_field_rad(mask: np.ndarray, *, um_per_px: tuple[float, float], sigma_px: float = 2.0) -> np.ndarray:
    """Local bundle direction (rad, [0, π), physical) from the structure tensor of a mask.

    Returns
    -------
    ndarray, float32, shape (rows, cols)
    """
    img = ndi.gaussian_filter(mask.astype(np.float64), sigma_px)
    g_r = ndi.sobel(img, axis=0) / um_per_px[0]
    g_c = ndi.sobel(img, axis=1) / um_per_px[1]
    j_cc = ndi.gaussian_filter(g_c * g_c - g_r * g_r, 2 * sigma_px)
    j_rc = ndi.gaussian_filter(2 * g_r * g_c, 2 * sigma_px)
    gradient_angle = 0.5 * np.arctan2(j_rc, j_cc)
    # Fibres run perpendicular to the intensity gradient across them.
    return np.mod(gradient_angle + math.pi / 2, math.pi).astype(np.float32)


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of a 1-D boolean array."""
    padded = np.r_[False, values, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[0::2], edges[1::2]


def _transects(mask, theta_map, theta_bar, upp, n_transects):
    """Per transect: crossings, Σ width (µm), complete runs, Σ width² (µm²), length (µm),
    crossings that start inside the transect (the unbiased count for a density)."""
    rows, cols = mask.shape
    h, w = rows * upp[0], cols * upp[1]
    u = np.array([math.sin(theta_bar), math.cos(theta_bar)])  # along the bundles, µm frame
    nvec = np.array([u[1], -u[0]])  # across the bundles
    corners = np.array([[0, 0], [0, w], [h, 0], [h, w]])
    proj = corners @ u - np.array([h / 2, w / 2]) @ u
    offsets = np.linspace(0.8 * proj.min(), 0.8 * proj.max(), n_transects)
    half = math.hypot(h, w)
    step_um = _STEP_PX * min(upp)
    s = np.arange(-half, half, step_um)
    out = np.zeros((n_transects, 6))
    for k, t in enumerate(offsets):
        pts = np.array([h / 2, w / 2]) + t * u + s[:, None] * nvec
        px = pts / np.asarray(upp) - 0.5
        inside = (px[:, 0] >= -0.5) & (px[:, 0] <= rows - 0.5) & (px[:, 1] >= -0.5) & (px[:, 1] <= cols - 0.5)
        px = px[inside]
        if len(px) < 3:
            continue
        idx = np.clip(np.rint(px).astype(np.int64), 0, [rows - 1, cols - 1])
        on = mask[idx[:, 0], idx[:, 1]]
        start, end = _runs(on)
        long_enough = (end - start) * step_um >= min(upp)  # shorter runs are pixel noise
        start, end = start[long_enough], end[long_enough]
        complete = (start > 0) & (end < len(on))
        mid = idx[(start + end - 1) // 2]
        local = theta_map[mid[:, 0], mid[:, 1]]
        width = (end - start) * step_um * np.abs(np.cos(local - theta_bar))
        out[k] = (len(start), width[complete].sum(), complete.sum(), (width[complete] ** 2).sum(), len(on) * step_um,
                  (start > 0).sum())
    return out


def nerve_fiber_metrics(
    mask: np.ndarray,
    *,
    um_per_px: float | tuple[float, float],
    orientation_rad: np.ndarray | float | None = None,
    seed: int = 0,
    n_boot: int = 200,
    n_transects: int = 9,
    block_um: float = DEFAULT_BLOCK_UM,
) -> dict[str, MetricValue]:
    """Summarise a nerve-fiber-bundle mask with 95 % bootstrap CIs.

    Parameters
    ----------
    mask : ndarray, shape (rows, cols), bool or 0/1
        NFL bundle mask (e.g. ``segment_vessels(..., target="nfl").mask``).
    um_per_px : float or (float, float)
        Pixel size in µm, scalar or ``(row, col)``.
    orientation_rad : ndarray (rows, cols) or float, optional
        Bundle direction in radians (convention in the module docstring). When
        ``None`` it is estimated from the mask's structure tensor.
    seed, n_boot : int
        Bootstrap seed and number of resamples.
    n_transects : int
        Number of parallel transects across the bundles (≥ 3).
    block_um : float
        Tile width of the orientation block bootstrap, µm.

    Returns
    -------
    dict of str → MetricValue
        ``bundle_count`` (mean crossings per transect), ``bundle_density_per_mm``
        (crossings per mm of transect), ``width_um_mean``,
        ``width_um_sd``, ``orientation_deg`` ([0, 180)),
        ``orientation_dispersion_deg``.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((100, 100), bool)
    >>> for r in range(5, 100, 20): m[r:r + 6, :] = True
    >>> out = nerve_fiber_metrics(m, um_per_px=1.0, n_boot=20)
    >>> round(out["bundle_count"].value), round(out["orientation_deg"].value) % 180
    (5, 0)
    """
    m = validate_mask(mask)
    upp = as_um_per_px(um_per_px)
    if n_transects < 3 or n_boot < 10:
        raise ValueError(f"need n_transects ≥ 3 and n_boot ≥ 10; got {n_transects}, {n_boot}")
    if orientation_rad is None:
        theta = orientation_field_rad(m, um_per_px=upp)
        source = "structure tensor of the mask"
    else:
        theta = np.broadcast_to(np.asarray(orientation_rad, dtype=np.float64), m.shape)
        if not np.all(np.isfinite(theta[m])):
            raise ValueError("orientation_rad has NaN/inf on bundle pixels — pass a finite map in radians")
        source = "given orientation map"
    rows, cols = m.shape
    grid = block_grid((rows * upp[0], cols * upp[1]), block_um=block_um)
    nb = grid.n_blocks
    br = (np.arange(rows) * grid.n_blocks_rc[0]) // rows
    bc = (np.arange(cols) * grid.n_blocks_rc[1]) // cols
    blk = (br[:, None] * grid.n_blocks_rc[1] + bc[None, :])[m]
    two = 2.0 * theta[m]
    sums = np.column_stack([
        np.bincount(blk, minlength=nb).astype(float),
        np.bincount(blk, weights=np.cos(two), minlength=nb),
        np.bincount(blk, weights=np.sin(two), minlength=nb),
    ])

    def orient(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.atleast_2d(s)
        with np.errstate(invalid="ignore", divide="ignore"):
            r_len = np.hypot(s[:, 1], s[:, 2]) / s[:, 0]
            mean_deg = np.degrees(np.mod(0.5 * np.arctan2(s[:, 2], s[:, 1]), math.pi))
            disp_deg = np.degrees(0.5 * np.sqrt(np.abs(-2.0 * np.log(np.clip(r_len, 1e-300, 1.0)))))
        return mean_deg, disp_deg

    out: dict[str, MetricValue] = {}
    if not m.any():
        nan_method = "not estimable: the mask has no bundle pixels"
        for key, unit in (("bundle_count", "1"), ("bundle_density_per_mm", "1/mm"),
                          ("width_um_mean", "µm"), ("width_um_sd", "µm"),
                          ("orientation_deg", "deg"), ("orientation_dispersion_deg", "deg")):
            zero = key in ("bundle_count", "bundle_density_per_mm")
            out[key] = MetricValue(0.0 if zero else math.nan, unit, None, None, nan_method)
        return out

    mean_deg, disp_deg = orient(sums.sum(axis=0))
    theta_bar = math.radians(float(mean_deg[0]))
    boot_o = bootstrap_sums(sums, n_boot=n_boot, seed=seed)
    b_mean, b_disp = orient(boot_o)
    # Axial angles wrap at 180°: express replicates as the nearest turn to the estimate.
    b_mean = mean_deg[0] + (b_mean - mean_deg[0] + 90.0) % 180.0 - 90.0
    o_desc = f"spatial block bootstrap, {grid.describe()}, {n_boot} resamples, seed {seed}, expanded-percentile 95% CI"
    for key, est, reps, how in (
        ("orientation_deg", float(mean_deg[0]), b_mean, "axial mean direction (from +col towards +row)"),
        ("orientation_dispersion_deg", float(disp_deg[0]), b_disp, "axial circular SD ½·sqrt(-2 ln R)"),
    ):
        ci = percentile_ci(reps, estimate=est, n_blocks=nb)
        out[key] = MetricValue(est, "deg", ci[0], ci[1], f"{how} of {source}; {o_desc}")

    per = _transects(m, np.asarray(theta, dtype=np.float64), theta_bar, upp, n_transects)
    t_desc = (f"bootstrap over {n_transects} transects ⟂ mean orientation, {n_boot} resamples, seed {seed}, "
              "expanded-percentile 95% CI")
    boot_t = bootstrap_sums(per, n_boot=n_boot, seed=seed)

    def ratio(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    count = float(per[:, 0].mean())
    ci = percentile_ci(boot_t[:, 0] / n_transects, estimate=count, n_blocks=n_transects)
    out["bundle_count"] = MetricValue(count, "1", ci[0], ci[1], f"mean bundle crossings per transect; {t_desc}")
    # Transects differ in length when bundles are oblique to the image; per mm they compare.
    # Counting only runs that start inside a transect (one edge per bundle) removes the
    # border bias of counting cut bundles as whole ones.
    density = float(ratio(per[:, 5].sum(), per[:, 4].sum()) * 1e3)
    ci = percentile_ci(ratio(boot_t[:, 5], boot_t[:, 4]) * 1e3, estimate=density, n_blocks=n_transects)
    out["bundle_density_per_mm"] = MetricValue(
        density, "1/mm", ci[0], ci[1], f"bundle edges entered per mm of transect; {t_desc}"
    )
    width = float(ratio(per[:, 1].sum(), per[:, 2].sum()))
    ci = percentile_ci(ratio(boot_t[:, 1], boot_t[:, 2]), estimate=width, n_blocks=n_transects)
    how = "run length × |cos(θ_local − θ̄)| over complete crossings"

    def width_sd(s: np.ndarray) -> np.ndarray:
        mean = ratio(s[..., 1], s[..., 2])
        return np.sqrt(np.clip(ratio(s[..., 3], s[..., 2]) - mean**2, 0, None))

    sd = float(width_sd(per.sum(axis=0)))
    for key, est, reps, what in (
        ("width_um_mean", width, ratio(boot_t[:, 1], boot_t[:, 2]), "mean"),
        ("width_um_sd", sd, width_sd(boot_t), "SD"),
    ):
        ci = percentile_ci(reps, estimate=est, n_blocks=n_transects)
        out[key] = MetricValue(
            est, "µm", None if ci is None else ci[0], None if ci is None else ci[1],
            f"{what} of {how}; {t_desc}" if ci is not None else f"{how}; not estimable (no complete crossing)",
        )
    return out
