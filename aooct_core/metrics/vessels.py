"""Capillary metrics from a binary en face vessel mask, in physical units with 95 % CIs.

Geometry is measured on the mask's centreline (``skimage.morphology.skeletonize``):

* length — each centreline pixel stands for ``1 / max(|u_row|, |u_col|)`` px of
  vessel along its local direction ``u`` (an 8-connected digital line has one
  pixel per step of its dominant axis), so straight lines at any angle are
  measured without the 8 % chain-code bias.
* diameter — sub-pixel, from area / length: every mask pixel is given to its
  nearest centreline pixel; near a centreline pixel the vessel area divided by
  the centreline length it stands for is the mean width, exact on average for a
  digitised tube whatever its sub-pixel position. Centreline within one
  diameter of an end or a junction is left out (caps and junction blobs are
  not tube).
* tortuosity — arc length / chord, summed over unbranched segments.
* intercapillary distance — twice the distance from the ridge (local maxima)
  of the avascular distance map to the nearest vessel, minus one pixel: the
  width of the gap between neighbouring capillaries.
* FAZ — the largest avascular region that does not touch the border and is
  far larger than the intercapillary holes.

CIs come from a spatial block bootstrap over image tiles (``bootstrap.py``).

References
----------
.. [1] Chui TYP, Zhong Z, Song H, Burns SA. "Foveal avascular zone and its
       relationship to foveal pit shape." Optom Vis Sci 89:602-610 (2012).
.. [2] Arend O, Wolf S, Jung F, et al. "Retinal microcirculation in patients
       with diabetes mellitus: dynamic and morphological analysis of perifoveal
       capillary network." Br J Ophthalmol 75:514-518 (1991).
.. [3] Zhang TY, Suen CY. "A fast parallel algorithm for thinning digital
       patterns." Commun ACM 27:236-239 (1984).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from aooct_core.metrics.bootstrap import block_grid, bootstrap_sums, percentile_ci
from aooct_core.metrics.values import MetricValue, as_um_per_px

__all__ = ["capillary_metrics", "capillary_diameters_um", "validate_mask", "Centreline"]

DEFAULT_BLOCK_UM = 64.0
_EIGHT = np.ones((3, 3), dtype=bool)
# Radius (px) of the window whose centreline pixels give the local direction.
_DIRECTION_RADIUS_PX = 3
# Side (px) of the neighbourhood pooled for a local diameter.
_DIAMETER_WINDOW_PX = 5


def validate_mask(mask: np.ndarray, *, name: str = "mask") -> np.ndarray:
    """Return a boolean copy of a 2-D 0/1 mask, or raise a ValueError saying how to fix it."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D en face (row, col) image; got shape {m.shape}")
    if min(m.shape) < 3:
        raise ValueError(f"{name} must be at least 3x3 px; got shape {m.shape}")
    if m.dtype == bool:
        return m.copy()
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise ValueError(f"{name} must be boolean or 0/1 numbers; got dtype {m.dtype}")
    if not np.all((m == 0) | (m == 1)):
        raise ValueError(
            f"{name} must contain only 0 and 1; threshold probabilities first (e.g. prob > 0.5)"
        )
    return m.astype(bool)


class Centreline:
    """Centreline pixels of a mask with their length, degree and nearest-pixel assignment."""

    def __init__(self, mask: np.ndarray, um_per_px: tuple[float, float]):
        sr, sc = um_per_px
        self.mask = mask
        self.skel = skeletonize(mask)
        self.rc = np.argwhere(self.skel)
        deg = ndi.convolve(self.skel.astype(np.int16), _EIGHT.astype(np.int16), mode="constant") - 1
        self.degree = np.where(self.skel, deg, 0)
        self.length_um = self._pixel_length_um(sr, sc)
        # Mask radius at each centreline pixel (µm) — sets the end/junction exclusion zone.
        self.edt_um = ndi.distance_transform_edt(mask, sampling=um_per_px)

    def _pixel_length_um(self, sr: float, sc: float) -> np.ndarray:
        """Length (µm) each centreline pixel stands for, from the local principal direction."""
        k = _DIRECTION_RADIUS_PX
        dr, dc = np.mgrid[-k : k + 1, -k : k + 1].astype(np.float64)
        sk = self.skel.astype(np.float64)
        m_rr = ndi.correlate(sk, dr * dr, mode="constant")
        m_cc = ndi.correlate(sk, dc * dc, mode="constant")
        m_rc = ndi.correlate(sk, dr * dc, mode="constant")
        theta = 0.5 * np.arctan2(2 * m_rc, m_rr - m_cc)  # direction angle in px space
        ur, uc = np.cos(theta), np.sin(theta)
        per_px = np.hypot(ur * sr, uc * sc) / np.maximum(np.abs(ur), np.abs(uc))
        return np.where(self.skel, per_px, 0.0)


def _diameter_parts(cl: Centreline, um_per_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per centreline pixel: assigned vessel area (µm²), length (µm), and whether it is tube."""
    px_area = um_per_px[0] * um_per_px[1]
    shape = cl.mask.shape
    if len(cl.rc) == 0:
        return np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    _, idx = ndi.distance_transform_edt(~cl.skel, sampling=um_per_px, return_indices=True)
    flat_nearest = np.ravel_multi_index((idx[0][cl.mask], idx[1][cl.mask]), shape)
    area = np.bincount(flat_nearest, minlength=cl.mask.size).reshape(shape) * px_area
    special = cl.skel & (cl.degree != 2)
    if special.any():
        d_special = ndi.distance_transform_edt(~special, sampling=um_per_px)
    else:
        d_special = np.full(shape, np.inf)
    # One full diameter (2 × radius) plus a pixel away from any end or junction.
    tube = cl.skel & (d_special > 2 * cl.edt_um + max(um_per_px))
    return area, cl.length_um, tube


def _local_diameter_um(tube_area: np.ndarray, tube_len: np.ndarray) -> np.ndarray:
    """Area / length over a 5×5 px neighbourhood of each tube centreline pixel (0 elsewhere).

    One pixel's share of the area is quantised to whole pixels; pooling ~5 px of
    centreline averages that out, so the spread reflects real calibre changes.
    """
    area = ndi.uniform_filter(tube_area, size=_DIAMETER_WINDOW_PX, mode="constant")
    length = ndi.uniform_filter(tube_len, size=_DIAMETER_WINDOW_PX, mode="constant")
    out = np.zeros_like(tube_area)
    on = tube_len > 0
    out[on] = area[on] / length[on]
    return out


def capillary_diameters_um(mask: np.ndarray, *, um_per_px: float | tuple[float, float]) -> np.ndarray:
    """Local vessel diameter (µm) at every tube centreline pixel: the diameter distribution.

    Returns
    -------
    ndarray, float32, shape (n_centreline_pixels,)
        Sub-pixel diameters (area / length over 5×5 px of centreline), excluding
        centreline within one diameter of ends and junctions.
    """
    m = validate_mask(mask)
    upp = as_um_per_px(um_per_px)
    area, length, tube = _diameter_parts(Centreline(m, upp), upp)
    tube_area, tube_len = np.where(tube, area, 0.0), np.where(tube, length, 0.0)
    return _local_diameter_um(tube_area, tube_len)[tube].astype(np.float32)


def _segments(cl: Centreline) -> tuple[np.ndarray, int]:
    """Label unbranched centreline segments (junction pixels and their neighbours removed)."""
    junction = cl.skel & (cl.degree >= 3)
    cut = cl.skel & ~ndi.binary_dilation(junction, structure=_EIGHT)
    return ndi.label(cut, structure=_EIGHT)


def _tortuosity_parts(cl: Centreline, um_per_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length, chord length (µm) and centroid (row, col px) of each open segment."""
    labels, n = _segments(cl)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros((0, 2))
    seg = labels > 0
    deg = ndi.convolve(seg.astype(np.int16), _EIGHT.astype(np.int16), mode="constant") - 1
    ends = seg & (deg == 1)
    end_rc = np.argwhere(ends)
    end_lab = labels[ends]
    order = np.argsort(end_lab, kind="stable")
    end_rc, end_lab = end_rc[order], end_lab[order]
    counts = np.bincount(end_lab, minlength=n + 1)
    open_labels = np.flatnonzero(counts == 2)  # loops (0 ends) and odd shapes are skipped
    first = np.searchsorted(end_lab, open_labels)
    a, b = end_rc[first], end_rc[first + 1]
    chord = np.hypot((a[:, 0] - b[:, 0]) * um_per_px[0], (a[:, 1] - b[:, 1]) * um_per_px[1])
    idx = np.arange(n + 1)
    arc_all = ndi.sum_labels(cl.length_um, labels, idx)
    # The two end pixels stand for half a step each beyond the chord's end points.
    end_len = ndi.sum_labels(np.where(ends, cl.length_um, 0.0), labels, idx)
    arc = arc_all[open_labels] - 0.5 * end_len[open_labels]
    centroid = np.array(ndi.center_of_mass(seg, labels, open_labels)).reshape(-1, 2)
    keep = chord > 0
    return arc[keep], chord[keep], centroid[keep]


def _faz(mask: np.ndarray, um_per_px: tuple[float, float], min_area_mm2: float) -> np.ndarray | None:
    """Boolean FAZ region, or None when no avascular region qualifies as the fovea."""
    labels, n = ndi.label(~mask)
    if n == 0:
        return None
    border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    areas_mm2 = np.bincount(labels.ravel(), minlength=n + 1) * um_per_px[0] * um_per_px[1] * 1e-6
    areas_mm2[0] = 0
    areas_mm2[border] = 0
    best = int(np.argmax(areas_mm2))
    if areas_mm2[best] < min_area_mm2:
        return None
    others = np.delete(areas_mm2, [0, best])
    others = others[others > 0]
    # The FAZ dwarfs the intercapillary holes; a merely large hole is not a fovea.
    if others.size and areas_mm2[best] < 5 * np.median(others):
        return None
    return labels == best


def capillary_metrics(
    mask: np.ndarray,
    *,
    um_per_px: float | tuple[float, float],
    seed: int = 0,
    n_boot: int = 200,
    block_um: float = DEFAULT_BLOCK_UM,
    faz_min_area_mm2: float = 0.02,
) -> dict[str, MetricValue]:
    """Summarise an en face capillary mask with 95 % spatial-block-bootstrap CIs.

    Parameters
    ----------
    mask : ndarray, shape (rows, cols), bool or 0/1
        Vessel mask of one plexus (e.g. ``VesselSegmentation.mask``).
    um_per_px : float or (float, float)
        Pixel size in µm, scalar or ``(row, col)``.
    seed, n_boot : int
        Bootstrap seed and number of resamples.
    block_um : float
        Bootstrap tile width in µm; a few intercapillary spacings (default 64 µm).
    faz_min_area_mm2 : float
        Smallest avascular region accepted as the foveal avascular zone.

    Returns
    -------
    dict of str → MetricValue
        ``area_density`` (fraction), ``skeleton_length_density_mm_per_mm2``,
        ``mean_diameter_um``, ``diameter_um_sd``, ``tortuosity``,
        ``intercapillary_distance_um``, ``fragment_count`` (8-connected
        components), ``segment_count``, and ``faz_area_mm2`` when a FAZ is in the
        field. The FAZ is excluded from the area used for densities and ICD.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((64, 64), bool); m[30:34, :] = True
    >>> out = capillary_metrics(m, um_per_px=1.0, n_boot=20)
    >>> round(out["mean_diameter_um"].value, 1)
    4.0
    """
    m = validate_mask(mask)
    upp = as_um_per_px(um_per_px)
    if not (n_boot >= 10 and block_um > 0 and faz_min_area_mm2 > 0):
        raise ValueError("need n_boot ≥ 10, block_um > 0 and faz_min_area_mm2 > 0")
    rows, cols = m.shape
    field_um = (rows * upp[0], cols * upp[1])
    grid = block_grid(field_um, block_um=block_um)
    nb = grid.n_blocks
    br = (np.arange(rows) * grid.n_blocks_rc[0]) // rows
    bc = (np.arange(cols) * grid.n_blocks_rc[1]) // cols
    block_img = br[:, None] * grid.n_blocks_rc[1] + bc[None, :]

    faz = _faz(m, upp, faz_min_area_mm2)
    tissue = np.ones_like(m) if faz is None else ~faz
    cl = Centreline(m, upp)
    area, length, tube = _diameter_parts(cl, upp)
    d_vessel = ndi.distance_transform_edt(~m, sampling=upp)
    r_idx, c_idx = np.indices(m.shape)
    border_um = np.minimum.reduce(
        [(r_idx + 0.5) * upp[0], (rows - r_idx - 0.5) * upp[0], (c_idx + 0.5) * upp[1], (cols - c_idx - 0.5) * upp[1]]
    )
    ridge = (~m) & tissue & (d_vessel > 0) & (d_vessel >= ndi.maximum_filter(d_vessel, size=3))
    ridge &= d_vessel < border_um  # a vessel beyond the border could be closer
    gap_um = np.where(ridge, 2 * d_vessel - 0.5 * (upp[0] + upp[1]), 0.0)
    arc, chord, centroid = _tortuosity_parts(cl, upp)
    seg_block = (
        (np.minimum((centroid[:, 0] * grid.n_blocks_rc[0]) // rows, grid.n_blocks_rc[0] - 1) * grid.n_blocks_rc[1]
         + np.minimum((centroid[:, 1] * grid.n_blocks_rc[1]) // cols, grid.n_blocks_rc[1] - 1)).astype(np.int64)
        if len(arc) else np.zeros(0, dtype=np.int64)
    )

    def img_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(block_img.ravel(), weights=np.asarray(values, dtype=np.float64).ravel(), minlength=nb)

    px_um2 = upp[0] * upp[1]
    tube_area = np.where(tube, area, 0.0)
    tube_len = np.where(tube, length, 0.0)
    local_d = _local_diameter_um(tube_area, tube_len)
    d_ref = float(tube_area.sum() / tube_len.sum()) if tube_len.sum() > 0 else 0.0
    cols_ = {
        "tissue_um2": img_sum(tissue * px_um2),
        "vessel_um2": img_sum((m & tissue) * px_um2),
        "len_um": img_sum(np.where(tissue, length, 0.0)),
        "tube_area": img_sum(tube_area),
        "tube_len": img_sum(tube_len),
        "tube_n": img_sum(tube),
        "dd": img_sum(np.where(tube, local_d - d_ref, 0.0)),
        "dd2": img_sum(np.where(tube, (local_d - d_ref) ** 2, 0.0)),
        "arc": np.bincount(seg_block, weights=arc, minlength=nb),
        "chord": np.bincount(seg_block, weights=chord, minlength=nb),
        "gap": img_sum(gap_um),
        "ridge_n": img_sum(ridge),
    }
    keys = list(cols_)
    full = {k: np.array([v.sum()]) for k, v in cols_.items()}
    boot_m = bootstrap_sums(np.column_stack([cols_[k] for k in keys]), n_boot=n_boot, seed=seed)
    boot = {k: boot_m[:, i] for i, k in enumerate(keys)}

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    def sd(s: dict) -> np.ndarray:
        mean = ratio(s["dd"], s["tube_n"])
        return np.sqrt(np.clip(ratio(s["dd2"], s["tube_n"]) - mean**2, 0, None))

    estimators = {
        "area_density": ("1", lambda s: ratio(s["vessel_um2"], s["tissue_um2"]), "vessel pixels / non-FAZ pixels"),
        "skeleton_length_density_mm_per_mm2": (
            "mm/mm²",
            lambda s: ratio(s["len_um"], s["tissue_um2"]) * 1e3,
            "direction-corrected centreline length / non-FAZ area",
        ),
        "mean_diameter_um": (
            "µm",
            lambda s: ratio(s["tube_area"], s["tube_len"]),
            "vessel area / centreline length on tube centreline (≥ 1 diameter from ends and junctions)",
        ),
        "diameter_um_sd": ("µm", sd, "SD of local (5×5 px) area/length diameter over tube centreline pixels"),
        "tortuosity": ("1", lambda s: ratio(s["arc"], s["chord"]), "Σ arc length / Σ chord over unbranched segments"),
        "intercapillary_distance_um": (
            "µm",
            lambda s: ratio(s["gap"], s["ridge_n"]),
            "mean gap width: 2 × distance to nearest vessel on the avascular ridge − 1 px",
        ),
    }
    boot_desc = f"spatial block bootstrap, {grid.describe()}, {n_boot} resamples, seed {seed}, expanded-percentile 95% CI"
    out: dict[str, MetricValue] = {}
    for name, (unit, fn, how) in estimators.items():
        value = float(fn(full)[0])
        ci = percentile_ci(fn(boot), estimate=value, n_blocks=nb) if math.isfinite(value) else None
        out[name] = MetricValue(
            value,
            unit,
            None if ci is None else ci[0],
            None if ci is None else ci[1],
            f"{how}; {boot_desc}" if ci is not None else f"{how}; not estimable (no such structure in the mask)",
        )
    _, n_frag = ndi.label(m, structure=_EIGHT)
    out["fragment_count"] = MetricValue(float(n_frag), "1", None, None, "8-connected components of the mask")
    out["segment_count"] = MetricValue(float(len(arc)), "1", None, None, "unbranched open centreline segments")
    if faz is not None:
        faz_mm2 = float(faz.sum()) * px_um2 * 1e-6
        edge_px = float((faz & ~ndi.binary_erosion(faz)).sum())
        half_band = 0.5 * edge_px * px_um2 * 1e-6  # ±½ px along the boundary
        out["faz_area_mm2"] = MetricValue(
            faz_mm2,
            "mm²",
            faz_mm2 - half_band,
            faz_mm2 + half_band,
            "largest interior avascular region; CI = digitisation bound ±½ px along its boundary",
        )
    return out
