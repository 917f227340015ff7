"""Cone photoreceptor density (Curcio et al. 1990) and cone mosaic sampling.

Density model
-------------
``curcio_cone_density_cells_per_mm2`` (from :mod:`aooct_core.curcio`, re-exported here)
interpolates Curcio et al. (1990)'s published four-meridian mean data.

Spacing: a perfect triangular (hexagonal) lattice of density D (cells/mm²) has
nearest-neighbour spacing ``ICD = 1000 * sqrt(2 / (sqrt(3) * D))`` µm.

References
----------
Curcio 1990 and Bennett 1994: see :mod:`aooct_core.curcio`.

.. [1] Legras R, Gaudric A, Woog K. "Distribution of cone density, spacing and
       arrangement in adult healthy retinas with adaptive optics flood
       illumination." PLoS One 13:e0191141 (2018).
"""
from __future__ import annotations

import math

import numpy as np

from aooct_core.curcio import CURCIO_1990_MEAN_DENSITY, cone_spacing_um, curcio_cone_density_cells_per_mm2

__all__ = [
    "CURCIO_1990_MEAN_DENSITY",
    "curcio_cone_density_cells_per_mm2",
    "cone_spacing_um",
    "sample_cone_mosaic",
    "sample_point_process",
    "cone_reflectivities",
]

def sample_cone_mosaic(field_um: tuple[float, float], *, density_cells_per_mm2: float,
                       rng: np.random.Generator, disorder: float = 0.1) -> np.ndarray:
    """Sample a jittered triangular cone lattice of a given density.

    A perfect triangular lattice with spacing ``cone_spacing_um(density)`` is given a
    random orientation and offset, every point is displaced by isotropic Gaussian
    jitter with SD ``disorder * spacing``, and the points inside the field are kept.
    Jitter is area-preserving, so the expected count is ``density * area``.

    Parameters
    ----------
    field_um : tuple of float
        ``(rows_um, cols_um)`` size of the rectangular field; points lie in
        ``[0, rows_um) x [0, cols_um)``.
    density_cells_per_mm2 : float
        Target density, cells per mm².
    rng : numpy.random.Generator
        Source of randomness.
    disorder : float
        Jitter SD as a fraction of the spacing (0 = perfect lattice; 0.1 looks like a
        parafoveal mosaic, ~0.2 like a more disordered one).

    Returns
    -------
    numpy.ndarray, float64, shape (N, 2)
        Cone centres ``(row_um, col_um)``.

    Examples
    --------
    >>> pts = sample_cone_mosaic((100.0, 100.0), density_cells_per_mm2=30000,
    ...                          rng=np.random.default_rng(0))
    >>> 250 < len(pts) < 350
    True
    """
    rows_um, cols_um = (float(v) for v in field_um)
    if not (rows_um > 0 and cols_um > 0 and math.isfinite(rows_um * cols_um)):
        raise ValueError(f"field_um must be two positive sizes in µm; got {field_um!r}")
    if not (0 <= disorder < 1):
        raise ValueError(f"disorder must be in [0, 1) (fraction of the spacing); got {disorder!r}")
    spacing = cone_spacing_um(density_cells_per_mm2)
    # Lattice indices covering a disc that contains the whole field, whatever the rotation.
    half_diag = 0.5 * math.hypot(rows_um, cols_um) + 3 * spacing
    n = int(math.ceil(half_diag / (spacing * math.sqrt(3) / 2))) + 1
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    a = (i + 0.5 * j) * spacing                      # along the first lattice vector
    b = j * spacing * math.sqrt(3) / 2               # along its perpendicular
    theta = rng.uniform(0, math.pi / 3)               # lattice has 60° symmetry
    offset = rng.uniform(0, 1, size=2) * spacing
    c, s = math.cos(theta), math.sin(theta)
    row = 0.5 * rows_um + c * (a + offset[0]) - s * (b + offset[1])
    col = 0.5 * cols_um + s * (a + offset[0]) + c * (b + offset[1])
    pts = np.stack([row.ravel(), col.ravel()], axis=1)
    if disorder > 0:
        pts = pts + rng.normal(0.0, disorder * spacing, size=pts.shape)
    keep = (pts[:, 0] >= 0) & (pts[:, 0] < rows_um) & (pts[:, 1] >= 0) & (pts[:, 1] < cols_um)
    return pts[keep]


def sample_point_process(field_um: float, *, density_cells_per_mm2: float,
                         rng: np.random.Generator, clustered: bool = False) -> np.ndarray:
    """Reference point patterns without a lattice: Poisson, or a clustered Thomas process.

    Used to check that density CIs stay honest when the mosaic has no regularity to help
    (Poisson) or is clumped (Thomas: parents at density/5, 5 children each on average,
    Gaussian σ = 5 µm, wrapped periodically into the square field).

    Parameters
    ----------
    field_um : float
        Side of the square field, µm.
    density_cells_per_mm2 : float, keyword-only
        Expected density of the pattern.
    rng : numpy.random.Generator, keyword-only
    clustered : bool, keyword-only
        Thomas process instead of Poisson.

    Returns
    -------
    ndarray, shape (N, 2), float64
        Positions (row, col) in µm within ``[0, field_um)``.
    """
    lam_per_um2 = density_cells_per_mm2 / 1e6
    if clustered:
        parents = rng.uniform(0, field_um, (rng.poisson(lam_per_um2 / 5 * field_um**2), 2))
        kids = rng.poisson(5, len(parents))
        return (np.repeat(parents, kids, axis=0) + rng.normal(0, 5, (kids.sum(), 2))) % field_um
    return rng.uniform(0, field_um, (rng.poisson(lam_per_um2 * field_um**2), 2))


def cone_reflectivities(n_cones: int, *, rng: np.random.Generator, missing_fraction: float = 0.03,
                        dim_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cone IS/OS and COST reflectivity with some absent and dim cones.

    Healthy cones vary several-fold in brightness (log-normal, SD 0.35 in ln units);
    IS/OS and COST brightness are only partly correlated (r ~ 0.5), as in AO-OCT.
    ``missing_fraction`` of the cones reflect nothing (absent/non-waveguiding) and
    ``dim_fraction`` reflect at 15 % of normal.

    Returns
    -------
    isos, cost : numpy.ndarray, float64, shape (n_cones,)
        Relative reflectivity (healthy median 1).
    missing : numpy.ndarray, bool, shape (n_cones,)
        True for absent or dim cones.
    """
    if not (0 <= missing_fraction <= 1 and 0 <= dim_fraction <= 1 and missing_fraction + dim_fraction <= 1):
        raise ValueError("missing_fraction and dim_fraction must be in [0, 1] and sum to at most 1; "
                         f"got {missing_fraction!r} and {dim_fraction!r}")
    shared = rng.normal(size=n_cones)
    isos = np.exp(0.35 * shared)
    cost = np.exp(0.35 * (0.5 * shared + math.sqrt(0.75) * rng.normal(size=n_cones)))
    state = rng.uniform(size=n_cones)
    absent = state < missing_fraction
    dim = (state >= missing_fraction) & (state < missing_fraction + dim_fraction)
    isos[absent] = 0.0
    cost[absent] = 0.0
    isos[dim] *= 0.15
    cost[dim] *= 0.15
    return isos, cost, absent | dim
