"""Is the ILM in the volume, and at which level does the vitreous end?

AO-OCT volumes are often cropped to the outer retina (the focus and the depth window sit
on the photoreceptors), so the inner limiting membrane (ILM) and the vitreous above it may
not be in view at all. Every measure that rests on them — the SNR over the vitreous noise
floor, the inner-retina slabs (NFL, SVP, DVP) and their capillaries — is then undefined,
and must be reported as not measured rather than measured on whatever tissue sits at the
top of the window.

:func:`find_vitreous` decides it from the volume's mean depth profile (dB), above the
IS/OS. The vitreous is the top of the profile when all of these hold:

* **a step up**: the profile rises from its top level ``N`` (median of the top rows) by at
  least :data:`MIN_RISE_DB` to the brightest inner-retina level above the IS/OS (the NFL,
  or the ganglion-cell complex near the fovea: the retina is well above the noise floor,
  10-30 dB in clinical and AO-OCT);
* **anatomy**: the step's mid-level crossing lies at least :data:`MIN_ILM_TO_ISOS_UM`
  above the IS/OS, and at least :data:`MIN_VITREOUS_PX` rows below the top of the volume.
  ILM to IS/OS is 150-190 µm at the foveola (the inner retina is absent there but the ONL
  and Henle fibre layer are thickest) and 180-280 µm at 1-10°; 60 µm leaves room for
  inner-retinal atrophy while the ELM, 20-40 µm above the IS/OS, is never taken for it;
* **darker than any retina**: ``N`` is no brighter than the darkest retinal layer between
  the crossing and the IS/OS (the ONL is the least reflective layer, yet above the noise
  floor). A window that starts in the ONL or the INL has a dark, flat top too; this rule
  and the distance to the IS/OS tell it from the vitreous.

Where the ILM cannot be found (the inner retina is lost in noise) but the window reaches
more than :data:`MAX_ILM_TO_ISOS_UM` above the IS/OS, the rows above that depth are
vitreous by anatomy, and the SNR is measured over them all the same
(:func:`~aooct_core.preprocessing.pipeline.preprocess_case`).

The ILM is then searched per A-line around the first depth that crosses the mid-level
``N + rise / 2`` (:attr:`Vitreous.level_db`), a level taken from this volume's own noise
floor and retina, not a fixed fraction of the mean intensity (which the noise floor
crosses at low SNR or with a bright RPE).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Vitreous", "find_vitreous", "MIN_RISE_DB", "MIN_ILM_TO_ISOS_UM", "MAX_ILM_TO_ISOS_UM",
           "MIN_VITREOUS_PX"]

#: Smallest rise, dB, from the vitreous floor to the brightest inner-retina level.
MIN_RISE_DB = 6.0
#: Smallest ILM to IS/OS distance, µm (see the module docstring).
MIN_ILM_TO_ISOS_UM = 60.0
#: Largest ILM to IS/OS distance, µm: the thickest normal retina (perifoveal ILM to
#: Bruch's membrane ≈ 340 µm, IS/OS ≈ 70 µm above it) plus a margin. Rows further above
#: the IS/OS are vitreous (a thickened, oedematous retina can exceed it).
MAX_ILM_TO_ISOS_UM = 350.0
#: Rows of vitreous needed above the ILM (the SNR's noise floor needs a few).
MIN_VITREOUS_PX = 3


@dataclass(frozen=True)
class Vitreous:
    """What :func:`find_vitreous` found.

    Attributes
    ----------
    in_view : bool
        The ILM and some vitreous above it are in the volume.
    reason : str
        Why not (empty when in view), in words a user can act on.
    floor_db, rise_db, level_db : float
        Top level of the profile, its rise to the brightest inner-retina level, and the
        mid-level the per-A-line ILM search starts from (dB, in the profile's units).
    crossing_px : float
        First depth of the profile at or above ``level_db`` (NaN if none).
    """

    in_view: bool
    reason: str
    floor_db: float
    rise_db: float
    level_db: float
    crossing_px: float


def find_vitreous(profile_db, isos_px: float, *, depth_um_per_px: float) -> Vitreous:
    """Decide whether the vitreous and the ILM are in view, from the mean depth profile.

    Parameters
    ----------
    profile_db : array (n_depth,)
        Mean over the volume of the (smoothed) dB intensity at each depth.
    isos_px : float
        Depth of the IS/OS band (e.g. the median of its surface), px.
    depth_um_per_px : float
        Axial sampling, µm/px.

    Returns
    -------
    Vitreous

    Examples
    --------
    >>> z = np.arange(200)
    >>> p = np.where(z < 40, -10.0, 3.0); p[120:150] = -4.0   # vitreous, retina, ONL
    >>> v = find_vitreous(p, 160.0, depth_um_per_px=2.0)
    >>> v.in_view, v.crossing_px
    (True, 40.0)
    >>> find_vitreous(p[100:], 60.0, depth_um_per_px=2.0).in_view   # window starts in the retina
    False
    """
    p = np.asarray(profile_db, np.float64)
    if p.ndim != 1:
        raise ValueError(f"profile_db must be 1-D (n_depth,); got shape {p.shape}")
    if not depth_um_per_px > 0:
        raise ValueError(f"depth_um_per_px must be > 0; got {depth_um_per_px!r}")
    nan = float("nan")
    limit = int(np.floor(float(isos_px) - MIN_ILM_TO_ISOS_UM / depth_um_per_px))
    if limit <= MIN_VITREOUS_PX + 1:
        return Vitreous(False, f"less than {MIN_ILM_TO_ISOS_UM:g} µm of retina above the IS/OS is in "
                               "the volume: the ILM and the vitreous are above the depth window",
                        nan, nan, nan, nan)
    floor = float(np.median(p[:MIN_VITREOUS_PX]))
    rise = float(p[:limit].max() - floor)
    level = floor + 0.5 * rise
    above = np.nonzero(p[:limit] >= level)[0]
    crossing = float(above[0]) if len(above) else nan
    if rise < MIN_RISE_DB or not len(above):
        return Vitreous(False, f"the top of the volume is not {MIN_RISE_DB:g} dB darker than the inner "
                               f"retina (rise {rise:.1f} dB): no vitreous in view above the ILM",
                        floor, rise, level, crossing)
    if crossing < MIN_VITREOUS_PX:
        return Vitreous(False, f"the retina starts within {MIN_VITREOUS_PX} px of the top of the volume: "
                               "no vitreous in view above the ILM", floor, rise, level, crossing)
    retina = p[int(crossing) + max(1, int(round(20.0 / depth_um_per_px))):max(int(isos_px) - 2, 0)]
    if len(retina) and floor > float(retina.min()):
        return Vitreous(False, f"the dark top of the volume ({floor:.1f} dB) is brighter than the darkest "
                               f"retinal layer below it ({float(retina.min()):.1f} dB): it is retina "
                               "(ONL or INL), not vitreous", floor, rise, level, crossing)
    return Vitreous(True, "", floor, rise, level, crossing)
