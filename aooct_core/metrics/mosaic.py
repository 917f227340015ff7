"""Cell-mosaic metrics (cones, RPE): density, NND, ICD, Voronoi geometry, regularity.

Coordinates: ``points_rc`` are en face pixel coordinates ``(row, col)`` of cell
centres, pixel ``i`` covering ``[i - 0.5, i + 0.5]``. The imaged field is the
whole image, ``image_shape × um_per_px``.

Edge handling, per metric:

* density — number of cells / field area. For a stationary process this
  window estimator is unbiased whatever the border, because every cell centre
  inside the window is counted and no cell outside it is.
* NND — Hanisch's border-corrected estimator: a cell contributes only if its
  nearest neighbour is closer than the border (so it is its true nearest
  neighbour), weighted by 1 / area of the window eroded by its NND.
* Voronoi area, sides, ICD — bound cells only: cells whose Voronoi polygon is
  finite and lies wholly inside the field, so no cell is clipped by the border.

References
----------
.. [1] Hanisch K-H. "Some remarks on estimators of the distribution function of
       nearest neighbour distance in stationary spatial point processes."
       Math Operationsforsch Stat Ser Stat 15:409-412 (1984).
.. [2] Rodieck RW. "The density recovery profile: a method for the analysis of
       points in the plane applicable to retinal studies." Vis Neurosci
       6:95-111 (1991).
.. [3] Wässle H, Riemann HJ. "The mosaic of nerve cells in the mammalian
       retina." Proc R Soc Lond B 200:441-461 (1978).
.. [4] Cooper RF, Wilk MA, Tarima S, Carroll J. "Evaluating descriptive metrics
       of the human cone mosaic." Invest Ophthalmol Vis Sci 57:2992-3001 (2016).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import QhullError, Voronoi, cKDTree

from aooct_core.metrics.bootstrap import BlockGrid, block_grid, bootstrap_sums, expansion_factor, percentile_ci
from aooct_core.metrics.values import MetricValue, as_um_per_px

__all__ = ["mosaic_metrics", "points_to_um", "voronoi_cells", "nearest_neighbour_um"]

# Candidate block widths in cell spacings; blocks several spacings wide keep the
# dependence between neighbouring cells inside a block (see ``_widest_grid``).
BLOCK_SPACINGS = (5.0, 8.0, 12.0)
MIN_CANDIDATE_BLOCKS = 4
MIN_BLOCK_SPACINGS = 2.5
_UM2_PER_MM2 = 1e6
# Below this (µm or µm², after centring) a spread is floating-point rounding.
_SD_ROUNDING = 1e-9


def points_to_um(
    points_rc: np.ndarray, *, image_shape: tuple[int, int], um_per_px: float | tuple[float, float]
) -> tuple[np.ndarray, tuple[float, float]]:
    """Validate pixel ``(row, col)`` points and convert them to µm in the field frame.

    Returns
    -------
    points_um : ndarray, float64, shape (N, 2)
        ``(row, col)`` in µm, origin at the outer corner of pixel (0, 0).
    field_um : tuple of float
        ``(height, width)`` of the imaged field in µm.
    """
    pts = np.asarray(points_rc)
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(
            f"points_rc must have shape (N, 2) of (row, col) pixel positions; got {pts.shape}"
        )
    if not np.issubdtype(pts.dtype, np.number) or np.iscomplexobj(pts):
        raise ValueError(f"points_rc must be real numbers; got dtype {pts.dtype}")
    if len(image_shape) != 2 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (rows, cols) ≥ 1; got {image_shape!r}")
    s_r, s_c = as_um_per_px(um_per_px)
    pts = pts.astype(np.float64)
    if not np.all(np.isfinite(pts)):
        raise ValueError("points_rc contains NaN or inf — drop undetected cells before measuring")
    rows, cols = image_shape
    outside = (pts[:, 0] < -0.5) | (pts[:, 0] > rows - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > cols - 0.5)
    if outside.any():
        raise ValueError(
            f"{int(outside.sum())} of {len(pts)} points lie outside the image of shape {tuple(image_shape)}; "
            "pass points in (row, col) pixel coordinates of that image"
        )
    points_um = np.column_stack(((pts[:, 0] + 0.5) * s_r, (pts[:, 1] + 0.5) * s_c))
    return points_um, (rows * s_r, cols * s_c)


def nearest_neighbour_um(points_um: np.ndarray, field_um: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """NND of each point (µm) and its Hanisch weight (0 where the border may hide a closer cell).

    Returns
    -------
    nnd_um : ndarray, float64, shape (N,)
    weight : ndarray, float64, shape (N,)
        ``1[nnd ≤ border distance] / ((H - 2 nnd)(W - 2 nnd))`` in 1/µm².
    """
    n = len(points_um)
    if n < 2:
        return np.full(n, np.nan), np.zeros(n)
    dist, _ = cKDTree(points_um).query(points_um, k=2)
    nnd = dist[:, 1]
    h, w = field_um
    border = np.minimum.reduce(
        [points_um[:, 0], h - points_um[:, 0], points_um[:, 1], w - points_um[:, 1]]
    )
    eroded_area = np.clip(h - 2 * nnd, 0, None) * np.clip(w - 2 * nnd, 0, None)
    ok = (nnd <= border) & (eroded_area > 0)
    weight = np.zeros(n)
    weight[ok] = 1.0 / eroded_area[ok]
    return nnd, weight


def voronoi_cells(points_um: np.ndarray, field_um: tuple[float, float]) -> dict[str, np.ndarray]:
    """Voronoi cell area, number of sides and mean neighbour distance for bound cells.

    Returns
    -------
    dict with arrays of shape (N,):
        ``bound`` (bool: polygon finite and wholly inside the field),
        ``area_um2``, ``n_sides``, ``icd_um`` (mean distance to Voronoi neighbours);
        NaN / 0 for cells that are not bound.
    """
    n = len(points_um)
    out = {
        "bound": np.zeros(n, dtype=bool),
        "area_um2": np.full(n, np.nan),
        "n_sides": np.zeros(n, dtype=np.int64),
        "icd_um": np.full(n, np.nan),
    }
    if n < 4:
        return out
    try:
        vor = Voronoi(points_um)
    except QhullError as exc:
        raise ValueError(
            "cannot build the Voronoi diagram of these points (all collinear?); "
            f"need cells spread over the field: {exc}"
        ) from exc
    h, w = field_um
    verts = vor.vertices
    vert_inside = (verts[:, 0] >= 0) & (verts[:, 0] <= h) & (verts[:, 1] >= 0) & (verts[:, 1] <= w)
    # Flatten regions into (cell, vertex) pairs so all polygons are processed at once.
    region_of_point = vor.point_region
    regions = [vor.regions[r] for r in region_of_point]
    lengths = np.fromiter((len(r) for r in regions), dtype=np.int64, count=n)
    flat = np.fromiter((v for r in regions for v in r), dtype=np.int64, count=int(lengths.sum()))
    owner = np.repeat(np.arange(n), lengths)
    bad = (flat < 0) | ~vert_inside[np.where(flat < 0, 0, flat)]
    unbound = np.zeros(n, dtype=bool)
    np.logical_or.at(unbound, owner, bad)
    bound = (~unbound) & (lengths >= 3)
    keep = bound[owner]
    owner, flat = owner[keep], flat[keep]
    xy = verts[flat]
    area = np.zeros(n)
    if len(owner):  # with few cells, none may have a Voronoi cell wholly inside the field
        area = _polygon_areas(owner, xy, points_um, n)
    out["bound"] = bound
    out["area_um2"] = np.where(bound, area, np.nan)
    out["n_sides"] = np.where(bound, lengths, 0)
    # Voronoi neighbours = Delaunay edges (ridge_points); ICD per cell = mean edge length.
    a, b = vor.ridge_points[:, 0], vor.ridge_points[:, 1]
    d = np.hypot(*(points_um[a] - points_um[b]).T)
    deg = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    tot = np.bincount(a, weights=d, minlength=n) + np.bincount(b, weights=d, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["icd_um"] = np.where(bound, tot / deg, np.nan)
    return out


def _polygon_areas(owner: np.ndarray, xy: np.ndarray, points_um: np.ndarray, n: int) -> np.ndarray:
    """Shoelace areas (µm²) of the bound cells from their flattened (cell, vertex) pairs."""
    # Order each convex polygon's vertices by angle around the cell's seed point.
    ang = np.arctan2(xy[:, 0] - points_um[owner, 0], xy[:, 1] - points_um[owner, 1])
    order = np.lexsort((ang, owner))
    owner, xy = owner[order], xy[order]
    nxt = np.arange(len(owner)) + 1
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    ends = np.r_[starts[1:], len(owner)]
    nxt[ends - 1] = starts  # close each polygon
    cross = xy[:, 1] * xy[nxt, 0] - xy[nxt, 1] * xy[:, 0]
    return 0.5 * np.abs(np.bincount(owner, weights=cross, minlength=n))


def _widest_grid(points_um: np.ndarray, field_um: tuple[float, float]) -> BlockGrid:
    """Bootstrap grid whose density interval is widest among blocks of 5, 8 and 12 spacings.

    The block must outgrow the range of dependence between cells. For regular
    mosaics 5 spacings is ample; clustered patterns (patchy loss, clumped
    detections) need larger blocks. The half-width of the density interval,
    ``expansion × sqrt(n_blocks × var(block counts))``, is cheap to get for each
    candidate, and taking the widest errs on the side of honest intervals.
    After the first candidate, grids with fewer than ``MIN_CANDIDATE_BLOCKS``
    blocks per axis are skipped: with so few blocks the bootstrap has too few
    distinct resamples to be trusted. In small fields, where 5 spacings would
    give fewer than 4 blocks per axis, 4 blocks per axis (if each is ≥ 2.5
    spacings) are tried first.
    """
    n = len(points_um)
    lam = max(n, 1) / (field_um[0] * field_um[1])
    spacing_um = math.sqrt(2.0 / (math.sqrt(3.0) * lam))  # triangular lattice at this density
    best, best_width = None, -1.0
    sizes = [k * spacing_um for k in BLOCK_SPACINGS]
    # Small fields: rather 4 blocks of ≥ 2.5 spacings per axis than 2–3 big ones.
    small = min(field_um) / MIN_CANDIDATE_BLOCKS
    if sizes[0] > small >= MIN_BLOCK_SPACINGS * spacing_um:
        sizes.insert(0, small)
    for size in sizes:
        grid = block_grid(field_um, block_um=size)
        if best is not None and (
            grid.n_blocks_rc == best.n_blocks_rc or min(grid.n_blocks_rc) < MIN_CANDIDATE_BLOCKS
        ):
            continue
        counts = np.bincount(grid.block_of(points_um), minlength=grid.n_blocks) if n else np.zeros(grid.n_blocks)
        width = expansion_factor(grid.n_blocks) * math.sqrt(grid.n_blocks * float(np.var(counts)))
        if width > best_width:
            best, best_width = grid, width
    return best


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _sd_ratio(sum_w: np.ndarray, sum_wx: np.ndarray, sum_wx2: np.ndarray) -> np.ndarray:
    """Weighted SD from sums of w, w·x, w·x² where x is centred (see ``mosaic_metrics``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sum_wx / sum_w
        sd = np.sqrt(np.clip(sum_wx2 / sum_w - mean**2, 0, None))
    # x is centred on its mean, so what is left below this is rounding, not spread.
    return np.where(sd < _SD_ROUNDING, 0.0, sd)


def mosaic_metrics(
    points_rc: np.ndarray,
    *,
    image_shape: tuple[int, int],
    um_per_px: float | tuple[float, float],
    seed: int = 0,
    n_boot: int = 200,
    block_um: float | None = None,
) -> dict[str, MetricValue]:
    """Summarise a cell mosaic with 95 % spatial-block-bootstrap confidence intervals.

    Parameters
    ----------
    points_rc : ndarray, shape (N, 2), any real dtype
        Cell centres in en face pixel coordinates ``(row, col)``.
    image_shape : tuple of int
        ``(rows, cols)`` of the en face image the cells were detected in; the
        whole image is the counting window.
    um_per_px : float or (float, float)
        Pixel size in µm, scalar or ``(row, col)``.
    seed : int
        Bootstrap seed; identical inputs and seed give identical intervals.
    n_boot : int
        Number of bootstrap resamples.
    block_um : float, optional
        Bootstrap block width in µm. Default: of blocks 5, 8 and 12 cell
        spacings wide (triangular lattice at the observed density), the one
        giving the widest density interval — see ``_widest_grid``.

    Returns
    -------
    dict of str → MetricValue
        ``count``; ``density_cells_per_mm2``; ``nnd_um_mean``, ``nnd_um_sd``
        (Hanisch-corrected); ``icd_um_mean``; ``voronoi_area_um2_mean``;
        ``voronoi_density_cells_per_mm2`` (1 / mean bound-cell area);
        ``six_sided_fraction``; ``regularity_index`` (NND mean / SD, Wässle &
        Riemann 1978); ``voronoi_regularity_index`` (area mean / SD);
        ``bound_cell_count``.

    Examples
    --------
    >>> import numpy as np
    >>> rr, cc = np.mgrid[5:95:10, 5:95:10]
    >>> m = mosaic_metrics(np.c_[rr.ravel(), cc.ravel()], image_shape=(100, 100), um_per_px=1.0)
    >>> round(m["density_cells_per_mm2"].value)
    8100
    >>> round(m["nnd_um_mean"].value, 6)
    10.0
    """
    points_um, field_um = points_to_um(points_rc, image_shape=image_shape, um_per_px=um_per_px)
    n = len(points_um)
    if n and len(np.unique(points_um, axis=0)) != n:
        raise ValueError(
            "points_rc contains duplicate positions — remove duplicate detections "
            "(np.unique(points_rc, axis=0)) before measuring"
        )
    field_area_um2 = field_um[0] * field_um[1]
    grid = block_grid(field_um, block_um=block_um) if block_um is not None else _widest_grid(points_um, field_um)
    blk = grid.block_of(points_um) if n else np.zeros(0, dtype=np.int64)
    nb = grid.n_blocks

    nnd, w = nearest_neighbour_um(points_um, field_um)
    vor = voronoi_cells(points_um, field_um)
    bound = vor["bound"]
    area = np.where(bound, vor["area_um2"], 0.0)
    icd = np.where(bound, vor["icd_um"], 0.0)
    nnd0 = np.where(np.isfinite(nnd), nnd, 0.0)
    # Centre NND and area before summing squares: the SD then survives cancellation
    # (a perfect lattice gives SD exactly 0, not 1e-7).
    nnd_ref = float(np.sum(w * nnd0) / np.sum(w)) if np.sum(w) > 0 else 0.0
    area_ref = float(area[bound].mean()) if bound.any() else 0.0
    nndc = np.where(w > 0, nnd0 - nnd_ref, 0.0)
    areac = np.where(bound, area - area_ref, 0.0)

    def per_block(values: np.ndarray) -> np.ndarray:
        return np.bincount(blk, weights=values, minlength=nb)

    columns = {
        "count": per_block(np.ones(n)),
        "area": np.full(nb, field_area_um2 / nb),
        "w": per_block(w),
        "wd": per_block(w * nndc),
        "wd2": per_block(w * nndc**2),
        "nbound": per_block(bound.astype(float)),
        "a": per_block(areac),
        "a2": per_block(areac**2),
        "six": per_block((vor["n_sides"] == 6).astype(float)),
        "icd": per_block(icd),
    }
    keys = list(columns)
    full = {k: np.array([v.sum()]) for k, v in columns.items()}
    boot_sums = bootstrap_sums(np.column_stack([columns[k] for k in keys]), n_boot=n_boot, seed=seed)
    boot = {k: boot_sums[:, i] for i, k in enumerate(keys)}

    estimators = {
        "density_cells_per_mm2": (
            "cells/mm²",
            lambda s: _ratio(s["count"], s["area"]) * _UM2_PER_MM2,
            "count / field area",
        ),
        "nnd_um_mean": ("µm", lambda s: nnd_ref + _ratio(s["wd"], s["w"]), "Hanisch border-corrected NND mean"),
        "nnd_um_sd": ("µm", lambda s: _sd_ratio(s["w"], s["wd"], s["wd2"]), "Hanisch border-corrected NND SD"),
        "icd_um_mean": ("µm", lambda s: _ratio(s["icd"], s["nbound"]), "mean distance to Voronoi neighbours, bound cells"),
        "voronoi_area_um2_mean": (
            "µm²",
            lambda s: area_ref + _ratio(s["a"], s["nbound"]),
            "mean Voronoi cell area, bound cells",
        ),
        "voronoi_density_cells_per_mm2": (
            "cells/mm²",
            lambda s: _UM2_PER_MM2 / (area_ref + _ratio(s["a"], s["nbound"])),
            "1 / mean Voronoi cell area, bound cells",
        ),
        "six_sided_fraction": ("1", lambda s: _ratio(s["six"], s["nbound"]), "fraction of bound Voronoi cells with 6 sides"),
        "regularity_index": (
            "1",
            lambda s: _ratio(nnd_ref + _ratio(s["wd"], s["w"]), _sd_ratio(s["w"], s["wd"], s["wd2"])),
            "NND mean / NND SD (Wässle & Riemann 1978), Hanisch-weighted",
        ),
        "voronoi_regularity_index": (
            "1",
            lambda s: _ratio(area_ref + _ratio(s["a"], s["nbound"]), _sd_ratio(s["nbound"], s["a"], s["a2"])),
            "Voronoi area mean / SD, bound cells",
        ),
    }
    boot_desc = f"spatial block bootstrap, {grid.describe()}, {n_boot} resamples, seed {seed}, expanded-percentile 95% CI"
    out: dict[str, MetricValue] = {
        "count": MetricValue(float(n), "cells", None, None, "observed count of detected cells in the field"),
        "bound_cell_count": MetricValue(
            float(bound.sum()), "cells", None, None, "cells whose Voronoi polygon lies wholly in the field"
        ),
    }
    for name, (unit, fn, how) in estimators.items():
        value = float(fn(full)[0])
        ci = percentile_ci(fn(boot), estimate=value, n_blocks=nb) if math.isfinite(value) or value == math.inf else None
        out[name] = MetricValue(
            value,
            unit,
            None if ci is None else ci[0],
            None if ci is None else ci[1],
            f"{how}; {boot_desc}" if ci is not None else f"{how}; not estimable from {n} cells",
        )
    return out
