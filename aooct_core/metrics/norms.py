"""Normative cone density against eccentricity → z-score and percentile, with a plot.

Two published norms are combined:

* In-vivo adaptive optics, Legras et al. (2018), 109 healthy right eyes:
  28,884 ± 3,692 cones/mm² at 2° and 15,843 ± 1,598 cones/mm² at 6° (mean ± SD,
  four meridians). Between 2° and 6° the mean is interpolated as a power law
  (straight in log-log) and the coefficient of variation linearly.
* Histology, Curcio et al. (1990): the four-meridian mean of 8 retinas (PRtopo
  data, the table also used by ``aooct_core.phantom``), eccentricity in mm
  converted to degrees with the Bennett (1994) magnification for the eye's axial
  length. Curcio's per-eccentricity SD is not tabulated here, so its SD is the
  mean times the between-subject CV of the nearest Legras point (12.8 % below
  2°, 10.1 % beyond 6°) — a stated assumption, recorded in the source string.

``source="auto"`` uses Legras inside 2–6° (what AO instruments measure) and
Curcio's fall-off outside it, scaled to meet Legras at the range ends so the norm has no
step there (at 6° the two differ by 24 %: 15,843 vs 12,755 cones/mm², a 12 % jump in
the expected spacing; at 2° by 4 %). The scale fades linearly to 1 over
:data:`BLEND_DEG` beyond 6° and towards the foveal centre below 2°, so far from the AO
range the norm is Curcio's histology again (an assumption, recorded in the source string).

References
----------
.. [1] Legras R, Gaudric A, Woog K. "Distribution of cone density, spacing and
       arrangement in adult healthy retinas with adaptive optics flood
       illumination." PLoS One 13:e0191141 (2018).
.. [2] Curcio CA, Sloan KR, Kalina RE, Hendrickson AE. "Human photoreceptor
       topography." J Comp Neurol 292:497-523 (1990).
.. [3] Bennett AG, Rudnicka AR, Edgar DF. Graefes Arch Clin Exp Ophthalmol
       232:361-367 (1994).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np

from aooct_core.curcio import (
    CURCIO_1990_MEAN_DENSITY,
    CURCIO_MAX_ECCENTRICITY_MM,
    cone_spacing_um,
    curcio_cone_density_cells_per_mm2,
)
from aooct_core.geometry import retinal_mm_per_deg

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "LEGRAS_2018",
    "CURCIO_1990_MEAN_DENSITY",
    "normative_cone_density",
    "normative_cone_spacing_um",
    "cone_density_percentile",
    "normative_source",
    "has_norm",
    "plot_cone_density_norms",
]

Source = Literal["auto", "legras2018", "curcio1990"]

# (eccentricity deg, mean cones/mm², SD cones/mm²), Legras et al. 2018, abstract.
LEGRAS_2018: tuple[tuple[float, float, float], ...] = ((2.0, 28884.0, 3692.0), (6.0, 15843.0, 1598.0))

_LEGRAS_LO, _LEGRAS_HI = LEGRAS_2018
#: Degrees beyond 6° over which the Curcio norm's scale to the Legras 6° value fades to 1.
BLEND_DEG = 4.0


def _check_ecc(eccentricity_deg: float) -> float:
    ecc = float(eccentricity_deg)
    if not (math.isfinite(ecc) and ecc >= 0):
        raise ValueError(f"eccentricity_deg must be a finite angle ≥ 0 in degrees; got {eccentricity_deg!r}")
    return ecc


def has_norm(eccentricity_deg: float, *, axial_length_mm: float = 24.0) -> bool:
    """Whether ``normative_cone_density(..., source="auto")`` covers this eccentricity."""
    ecc = _check_ecc(eccentricity_deg)
    return ecc * retinal_mm_per_deg(axial_length_mm) <= CURCIO_MAX_ECCENTRICITY_MM


def normative_source(eccentricity_deg: float, *, source: Source = "auto") -> str:
    """Which published norm (and assumption) ``normative_cone_density`` uses here."""
    ecc = _check_ecc(eccentricity_deg)
    if source == "legras2018" or (source == "auto" and _LEGRAS_LO[0] <= ecc <= _LEGRAS_HI[0]):
        return "Legras 2018 AO norm (power-law interpolation between 2° and 6°)"
    if source == "auto":
        return ("Curcio 1990 histology fall-off, scaled to meet Legras 2018 at its range end "
                f"(fading over {BLEND_DEG:g}° beyond 6°, to the fovea below 2°); SD = mean × CV of "
                "nearest Legras 2018 point")
    if source == "curcio1990":
        return "Curcio 1990 histology mean; SD = mean × CV of nearest Legras 2018 point"
    raise ValueError(f"source must be 'auto', 'legras2018' or 'curcio1990'; got {source!r}")


def normative_cone_density(
    eccentricity_deg: float, *, axial_length_mm: float = 24.0, source: Source = "auto"
) -> tuple[float, float]:
    """Mean and between-subject SD of healthy cone density at an eccentricity.

    Parameters
    ----------
    eccentricity_deg : float
        Eccentricity from the foveal centre, degrees of visual angle.
    axial_length_mm : float
        Axial length, used to convert Curcio's mm to degrees (Bennett 1994).
    source : {"auto", "legras2018", "curcio1990"}
        Which norm; see the module docstring.

    Returns
    -------
    mean, sd : float
        Cones per mm².

    Examples
    --------
    >>> normative_cone_density(2.0)
    (28884.0, 3692.0)
    """
    ecc = _check_ecc(eccentricity_deg)
    label = normative_source(ecc, source=source)
    (e0, m0, s0), (e1, m1, s1) = LEGRAS_2018
    if label.startswith("Legras"):
        if not (e0 <= ecc <= e1):
            raise ValueError(
                f"the Legras 2018 norm covers {e0:g}°–{e1:g}°; got {ecc:g}° — use source='curcio1990' or 'auto'"
            )
        for e, m, sd in LEGRAS_2018:
            if ecc == e:  # the published numbers themselves, untouched by rounding
                return (m, sd)
        frac = math.log(ecc / e0) / math.log(e1 / e0)
        mean = math.exp(math.log(m0) + frac * (math.log(m1) - math.log(m0)))
        cv = s0 / m0 + (ecc - e0) / (e1 - e0) * (s1 / m1 - s0 / m0)
        return (float(mean), float(mean * cv))
    mean = curcio_cone_density_cells_per_mm2(ecc, axial_length_mm=axial_length_mm)
    if source == "auto":   # meet Legras at the end of its range, fading to Curcio away from it
        end, m_end = (e0, m0) if ecc < e0 else (e1, m1)
        fade = ecc / e0 if ecc < e0 else max(0.0, 1.0 - (ecc - e1) / BLEND_DEG)
        scale = m_end / curcio_cone_density_cells_per_mm2(end, axial_length_mm=axial_length_mm)
        mean *= 1.0 + (scale - 1.0) * fade
    cv = s0 / m0 if ecc < e0 else s1 / m1
    return (float(mean), float(mean * cv))


def normative_cone_spacing_um(eccentricity_deg: float, *, axial_length_mm: float = 24.0) -> float:
    """Centre-to-centre spacing (µm) of a triangular mosaic with the normative mean density.

    Used to tell the cone detector what spacing to expect and to check that the en face
    sampling resolves the mosaic.

    Examples
    --------
    >>> round(normative_cone_spacing_um(2.0), 2)
    6.32
    """
    mean, _ = normative_cone_density(eccentricity_deg, axial_length_mm=axial_length_mm)
    return cone_spacing_um(mean)


def cone_density_percentile(
    density: float, eccentricity_deg: float, *, axial_length_mm: float = 24.0, source: Source = "auto"
) -> tuple[float, float]:
    """Percentile (0–100) and z-score of a cone density against the normal population.

    Assumes the healthy population is normal at each eccentricity, as the
    published mean ± SD summaries imply.

    Examples
    --------
    >>> p, z = cone_density_percentile(28884.0, 2.0)
    >>> round(p, 1), round(z, 2)
    (50.0, 0.0)
    """
    d = float(density)
    if not (math.isfinite(d) and d >= 0):
        raise ValueError(f"density must be a finite number of cells/mm² ≥ 0; got {density!r}")
    mean, sd = normative_cone_density(eccentricity_deg, axial_length_mm=axial_length_mm, source=source)
    z = (d - mean) / sd
    percentile = 50.0 * math.erfc(-z / math.sqrt(2.0))
    return (float(percentile), float(z))


def plot_cone_density_norms(
    density: float | None = None,
    eccentricity_deg: float | None = None,
    *,
    ci: tuple[float, float] | None = None,
    axial_length_mm: float = 24.0,
    ecc_range_deg: tuple[float, float] = (0.5, 10.0),
) -> "Figure":
    """Normative band (mean ± 1.96 SD) with the published points and, optionally, this case.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot, so it is safe in servers and tests; save it with
        ``fig.savefig(path)``.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib is heavy and only needed for plots

    lo_deg, hi_deg = ecc_range_deg
    max_deg = CURCIO_MAX_ECCENTRICITY_MM / retinal_mm_per_deg(axial_length_mm)
    ecc = np.linspace(max(lo_deg, 0.05), min(hi_deg, max_deg), 200)
    stats = np.array([normative_cone_density(e, axial_length_mm=axial_length_mm) for e in ecc])
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(ecc, stats[:, 0] - 1.96 * stats[:, 1], stats[:, 0] + 1.96 * stats[:, 1],
                    color="0.85", label="normal range (mean ± 1.96 SD)")
    ax.plot(ecc, stats[:, 0], color="0.3", label="norm mean (Legras 2018 2–6°, Curcio 1990 elsewhere)")
    ax.errorbar([e for e, _, _ in LEGRAS_2018], [m for _, m, _ in LEGRAS_2018],
                yerr=[s for _, _, s in LEGRAS_2018], fmt="s", color="tab:blue", capsize=3,
                label="Legras 2018 mean ± SD")
    if density is not None and eccentricity_deg is not None:
        yerr = None
        if ci is not None:
            yerr = [[density - ci[0]], [ci[1] - density]]
        ax.errorbar([eccentricity_deg], [density], yerr=yerr, fmt="o", color="tab:red", capsize=3,
                    label="this case (95% CI)")
    ax.set_yscale("log")
    ax.set_xlabel("eccentricity (deg)")
    ax.set_ylabel("cone density (cells/mm²)")
    ax.legend(fontsize=7)
    return fig
