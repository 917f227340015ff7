"""Acquisition metadata and physical geometry of a case.

Conventions used everywhere in aooct
------------------------------------
* Volume axes are ``(bscan, depth, aline)``: one B-scan per index of axis 0,
  rows = depth (axial), columns = A-lines (fast lateral axis).
* En face images are ``(row, col)`` = ``(bscan, aline)`` of the volume they
  come from, so a cell at en face ``(row, col)`` lies under B-scan ``row``,
  A-line ``col``.
* Retinal location is given in degrees of visual angle from the fovea as
  ``(horizontal_deg, vertical_deg)`` in *retinal* coordinates, independent of
  the eye: positive horizontal = temporal retina, positive vertical = superior
  retina. Eccentricity is ``hypot(horizontal_deg, vertical_deg)``.
* Lateral scale comes from the Bennett (1994) abbreviated axial-length method
  unless the case gives µm/px explicitly.

References
----------
.. [1] Bennett AG, Rudnicka AR, Edgar DF. "Improvements on Littmann's method of
       determining the size of retinal features by fundus photography."
       Graefes Arch Clin Exp Ophthalmol 232:361-367 (1994).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Acquisition",
    "Geometry",
    "retinal_mm_per_deg",
    "geometry_from_acquisition",
    "eccentricity_deg",
]

Eye = Literal["OD", "OS"]

# Bennett 1994: q = 0.01306 * (AL - 1.82) mm/deg.
_BENNETT_SLOPE_MM_PER_DEG_PER_MM = 0.01306
_BENNETT_OFFSET_MM = 1.82
# Physiological range of adult axial length; outside it the eye model is not valid.
_AXIAL_LENGTH_RANGE_MM = (18.0, 35.0)


def retinal_mm_per_deg(axial_length_mm: float) -> float:
    """Retinal magnification in mm per degree of visual angle (Bennett 1994).

    Parameters
    ----------
    axial_length_mm : float
        Axial length of the eye in mm (18-35 mm).

    Returns
    -------
    float
        ``q = 0.01306 * (axial_length_mm - 1.82)`` in mm/deg.

    Examples
    --------
    >>> round(retinal_mm_per_deg(24.0), 4)
    0.2897
    """
    axial_length_mm = float(axial_length_mm)
    lo, hi = _AXIAL_LENGTH_RANGE_MM
    if not (math.isfinite(axial_length_mm) and lo <= axial_length_mm <= hi):
        raise ValueError(
            f"axial_length_mm must be a finite adult axial length in [{lo}, {hi}] mm; "
            f"got {axial_length_mm!r} — check that it is in mm, not µm"
        )
    return _BENNETT_SLOPE_MM_PER_DEG_PER_MM * (axial_length_mm - _BENNETT_OFFSET_MM)


def eccentricity_deg(location_deg: tuple[float, float]) -> float:
    """Eccentricity in degrees from ``(horizontal_deg, vertical_deg)``."""
    return float(math.hypot(location_deg[0], location_deg[1]))


@dataclass(frozen=True)
class Geometry:
    """Physical sampling of a volume, in µm per pixel along each axis.

    Attributes
    ----------
    bscan_um_per_px : float
        Spacing between B-scans (slow lateral axis), µm.
    depth_um_per_px : float
        Axial sampling in tissue, µm.
    aline_um_per_px : float
        Spacing between A-lines (fast lateral axis), µm.
    """

    bscan_um_per_px: float
    depth_um_per_px: float
    aline_um_per_px: float

    def __post_init__(self) -> None:
        for name in ("bscan_um_per_px", "depth_um_per_px", "aline_um_per_px"):
            value = getattr(self, name)
            # numbers.Real admits numpy scalars (np.float32 is not a float subclass); bool is
            # excluded because True would silently mean 1 µm.
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number of µm; got {value!r}")
            object.__setattr__(self, name, float(value))  # plain floats: stable repr/JSON/equality

    @property
    def enface_um_per_px(self) -> tuple[float, float]:
        """``(row, col)`` spacing of en face images in µm."""
        return (self.bscan_um_per_px, self.aline_um_per_px)

    @property
    def enface_pixel_area_mm2(self) -> float:
        """Area of one en face pixel in mm²."""
        return self.bscan_um_per_px * self.aline_um_per_px * 1e-6


@dataclass(frozen=True)
class Acquisition:
    """Acquisition metadata of one case (one retinal location, repeated volumes).

    Attributes
    ----------
    case_id : str
        Unique case identifier (used as the Dagster partition key).
    subject_id : str
        Pseudonymous subject id; never a name or a medical record number.
    eye : {"OD", "OS"}
        Right (OD) or left (OS) eye.
    location_deg : tuple of float
        ``(horizontal_deg, vertical_deg)``; positive = temporal / superior retina.
    axial_length_mm : float
        Axial length in mm, used for the lateral scale (Bennett 1994).
    scan_field_deg : tuple of float
        ``(bscan_deg, aline_deg)``: field covered along the slow and fast axes.
    sampling_px : tuple of int
        ``(n_bscans, n_depth, n_alines)`` of each volume.
    depth_um_per_px : float
        Axial sampling in tissue, µm/px.
    um_per_px_override : tuple of float or None
        Explicit ``(bscan, aline)`` lateral µm/px that replaces the eye model.
    """

    case_id: str
    subject_id: str
    eye: Eye
    location_deg: tuple[float, float]
    axial_length_mm: float
    scan_field_deg: tuple[float, float]
    sampling_px: tuple[int, int, int]
    depth_um_per_px: float
    um_per_px_override: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def eccentricity_deg(self) -> float:
        return eccentricity_deg(self.location_deg)


def geometry_from_acquisition(acquisition: Acquisition) -> Geometry:
    """Derive µm/px on each axis from the acquisition metadata.

    Lateral spacing = scan field (deg) × retinal magnification (µm/deg) /
    number of samples, unless ``um_per_px_override`` is set.

    Examples
    --------
    >>> acq = Acquisition("c1", "s1", "OD", (2.0, 0.0), 24.0, (1.0, 1.0),
    ...                   (128, 256, 128), 2.0)
    >>> g = geometry_from_acquisition(acq)
    >>> round(g.aline_um_per_px, 3)
    2.263
    """
    if acquisition.um_per_px_override is not None:
        bscan_um, aline_um = acquisition.um_per_px_override
    else:
        um_per_deg = retinal_mm_per_deg(acquisition.axial_length_mm) * 1000.0
        n_bscans, _, n_alines = _checked_sampling(acquisition.sampling_px)
        for name, deg in zip(("bscan", "aline"), acquisition.scan_field_deg):
            if isinstance(deg, bool) or not isinstance(deg, numbers.Real) \
                    or not (math.isfinite(deg) and deg > 0):
                raise ValueError(f"scan_field_deg ({name}) must be a positive finite number of "
                                 f"degrees; got {deg!r} — give the scanned field, e.g. 1.0")
        bscan_um = acquisition.scan_field_deg[0] * um_per_deg / n_bscans
        aline_um = acquisition.scan_field_deg[1] * um_per_deg / n_alines
    # Geometry validates and converts to float, so a bad override or depth gets its message.
    return Geometry(
        bscan_um_per_px=bscan_um,
        depth_um_per_px=acquisition.depth_um_per_px,
        aline_um_per_px=aline_um,
    )


def _checked_sampling(sampling_px) -> tuple[int, int, int]:
    """``(n_bscans, n_depth, n_alines)`` as positive ints, or a ValueError saying how to fix it."""
    if len(sampling_px) != 3 or any(
            isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1
            for n in sampling_px):
        raise ValueError(f"sampling_px must be three positive integers (n_bscans, n_depth, "
                         f"n_alines); got {tuple(sampling_px)!r} — use the volume's shape")
    return (int(sampling_px[0]), int(sampling_px[1]), int(sampling_px[2]))
