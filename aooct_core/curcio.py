"""Human cone density vs eccentricity from Curcio et al. (1990), shared by the phantom and the norms.

``curcio_cone_density_cells_per_mm2`` interpolates the *published mean data* of
Curcio et al. (1990) — the mean of 8 retinas along the four principal meridians,
made public by the authors (PRtopo data set, the values of their Fig. 6) — rather
than a parametric fit: within 0-10 mm every parametric fit we could verify departs
from those data by more than the few percent a ground-truth phantom should allow.
The four meridians are averaged at each eccentricity (the nasal 4 mm value, which
falls on the optic disc, is left out), and the curve is interpolated linearly in
eccentricity and logarithmically in density. Degrees are converted to retinal mm
with the Bennett (1994) magnification for the given axial length (24 mm by default,
q = 0.290 mm/deg). At 2 deg this gives ~30,100 cones/mm², in line with in-vivo AO
counts (28,900 ± 3,700 cones/mm² at 2 deg, Legras et al. 2018).

References
----------
.. [1] Curcio CA, Sloan KR, Kalina RE, Hendrickson AE. "Human photoreceptor
       topography." J Comp Neurol 292:497-523 (1990). Data: PRtopo,
       https://info.cs.uab.edu/sloan/PRtopo/ (digitised values as distributed in
       github.com/rjonnal/cone_density).
.. [2] Bennett AG, Rudnicka AR, Edgar DF. Graefes Arch Clin Exp Ophthalmol
       232:361-367 (1994).
"""
from __future__ import annotations

import math

import numpy as np

from aooct_core.geometry import retinal_mm_per_deg

__all__ = [
    "CURCIO_1990_MEAN_DENSITY",
    "CURCIO_MAX_ECCENTRICITY_MM",
    "cone_spacing_um",
    "curcio_cone_density_cells_per_mm2",
]

# (eccentricity mm, mean of temporal/nasal/superior/inferior cones per mm²), Curcio 1990.
CURCIO_1990_MEAN_DENSITY: tuple[tuple[float, float], ...] = (
    (0.00, 197000.0), (0.05, 150750.0), (0.10, 112500.0), (0.15, 90250.0),
    (0.20, 71750.0), (0.30, 52250.0), (0.40, 40750.0), (0.50, 33750.0),
    (0.60, 29250.0), (0.70, 25000.0), (0.80, 21750.0), (0.90, 20000.0),
    (1.00, 18750.0), (2.00, 11125.0), (3.00, 8225.0), (4.00, 6367.0),
    (5.00, 5900.0), (6.00, 5425.0), (7.00, 5150.0), (8.00, 4900.0),
    (9.00, 4675.0), (10.00, 4450.0),
)
_ECC_MM = np.array([e for e, _ in CURCIO_1990_MEAN_DENSITY])
_LOG_DENSITY = np.log([d for _, d in CURCIO_1990_MEAN_DENSITY])


CURCIO_MAX_ECCENTRICITY_MM = float(_ECC_MM[-1])


def curcio_cone_density_cells_per_mm2(eccentricity_deg: float, *,
                                      axial_length_mm: float = 24.0) -> float:
    """Mean human cone density at an eccentricity (Curcio et al. 1990).

    Parameters
    ----------
    eccentricity_deg : float
        Eccentricity from the foveal centre in degrees of visual angle (>= 0).
    axial_length_mm : float, keyword-only
        Axial length used to convert degrees to retinal mm (Bennett 1994).

    Returns
    -------
    float
        Cones per mm² of retina, log-interpolated from the four-meridian mean.

    Examples
    --------
    >>> round(curcio_cone_density_cells_per_mm2(2.0) / 1000)
    30
    """
    ecc = float(eccentricity_deg)
    if not math.isfinite(ecc) or ecc < 0:
        raise ValueError(f"eccentricity_deg must be a finite number >= 0; got {eccentricity_deg!r}")
    ecc_mm = ecc * retinal_mm_per_deg(axial_length_mm)
    if ecc_mm > _ECC_MM[-1]:
        raise ValueError(
            f"eccentricity {ecc:.2f} deg = {ecc_mm:.2f} mm is beyond the {_ECC_MM[-1]:.0f} mm "
            "covered by the Curcio 1990 table; use a location within ~34 deg of the fovea"
        )
    return float(np.exp(np.interp(ecc_mm, _ECC_MM, _LOG_DENSITY)))


def cone_spacing_um(density_cells_per_mm2: float) -> float:
    """Nearest-neighbour spacing (µm) of a triangular lattice of the given density.

    ``ICD = 1000 * sqrt(2 / (sqrt(3) * D))``; e.g. 30,000 cells/mm² -> 6.20 µm.
    """
    d = float(density_cells_per_mm2)
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"density_cells_per_mm2 must be positive; got {density_cells_per_mm2!r}")
    return 1000.0 * math.sqrt(2.0 / (math.sqrt(3.0) * d))
