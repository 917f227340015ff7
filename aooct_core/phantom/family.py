"""A phantom *family*: anatomy, optics and sampling drawn over ranges from the literature.

One phantom is one answer; a method tuned to it learns its quirks (the RPE as the brightest
band, a 30 µm outer segment, 2 µm/px). :func:`family_member` draws every property that real
AO-OCT volumes vary in from the ranges of :data:`FAMILY_RANGES` with a seeded RNG, so a
benchmark can report over many members and keep a seed range out of all tuning:

* :data:`TUNING_SEEDS` — seeds a developer may look at while designing a method;
* :data:`HELD_OUT_SEEDS` — seeds only benchmarks read; results are reported on these.

References for the ranges
-------------------------
.. [1] Jonnal RS et al. "The properties of outer retinal band three investigated with
       adaptive-optics optical coherence tomography." IOVS 58:4559 (2017): COST–RPE and
       OS length vs eccentricity, band visibility.
.. [2] Spaide RF, Curcio CA. Retina 31:1609 (2011): band order and anatomy.
.. [3] Curcio CA et al. IOVS 52:3943 (2011): layer thicknesses (±30 % over the macula and
       between eyes).
.. [4] Jonnal RS et al. IOVS 57:OCT51 (2016): AO-OCT sampling (axial 1–4 µm/px in tissue,
       lateral 0.5–2 µm/px), focus at the photoreceptors or the RPE, SNR.
.. [5] /work/shared/notes/outer-retina-bands.md (a real volume with COST > RPE > IS/OS).
"""
from __future__ import annotations

import math

import numpy as np

from aooct_core.phantom.retina import Anatomy

__all__ = ["FAMILY_RANGES", "TUNING_SEEDS", "HELD_OUT_SEEDS", "family_member"]

TUNING_SEEDS = range(0, 1000)
HELD_OUT_SEEDS = range(50_000, 51_000)

#: (low, high) of every property a member draws; µm unless named otherwise.
FAMILY_RANGES = {
    "eccentricity_deg": (1.5, 7.0),           # parafovea to near periphery (rods appear ≥ 3–5°)
    "os_length_um": (15.0, 45.0),             # IS/OS → COST [1]
    "cost_to_rpe_um": (3.0, 20.0),            # COST → RPE centre [1]
    "elm_to_isos_um": (18.0, 38.0),           # ELM → IS/OS (the inner segment) [2][5]
    "rpe_to_bm_um": (6.0, 14.0),
    "inner_scale": (0.7, 1.3),                # ±30 % [3]
    "elm_gain": (0.3, 3.0),                   # a dim or a bright ELM
    "rpe_gain": (0.12, 1.5),                  # a dim RPE (COST > RPE > IS/OS [5]) or a bright one
    "bm_over_rpe": (0.4, 1.0),                # Bruch's membrane gain relative to the RPE's
    "isos_gain": (0.5, 3.0), "cost_gain": (0.5, 3.0),   # diffuse band brightness
    "cone_gain": (0.5, 2.0),                  # waveguiding (cone reflections)
    "depth_um_per_px": (1.0, 4.0),            # [4]
    "aline_um_per_px": (0.5, 2.0),            # [4]
    "tilt_deg": (-5.0, 5.0),
    "depth_of_focus_um": (40.0, 150.0),
    "snr_db": (15.0, 35.0),
    "n_repeats": (1, 5),
    "depth_window_um": (200.0, 520.0),        # photoreceptor-focused windows to the whole retina
}
_N_BSCANS, _N_ALINES = 64, 96
_MAX_DEPTH_PX = 320


def family_member(seed: int) -> dict:
    """Keyword arguments of :func:`aooct_core.phantom.make_phantom` for family member ``seed``.

    Parameters
    ----------
    seed : int
        Same seed → same member. Use :data:`HELD_OUT_SEEDS` for reported results.

    Returns
    -------
    dict
        ``seed``, ``n_repeats``, ``shape_px``, ``location_deg``, ``scan_field_deg``,
        ``depth_um_per_px``, ``snr_db``, ``anatomy`` (an :class:`Anatomy`), ready for
        ``make_phantom(**member)``.

    Examples
    --------
    >>> m = family_member(3)
    >>> sorted(m)[:4], m == family_member(3)
    (['anatomy', 'axial_length_mm', 'case_id', 'depth_um_per_px'], True)
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xFA3]))
    u = lambda name: float(rng.uniform(*FAMILY_RANGES[name]))  # noqa: E731
    lg = lambda name: float(math.exp(rng.uniform(*np.log(FAMILY_RANGES[name]))))  # noqa: E731
    ecc = u("eccentricity_deg")
    # OS length shortens with eccentricity [1]: draw within the range, biased by location.
    frac = (ecc - FAMILY_RANGES["eccentricity_deg"][0]) / np.ptp(FAMILY_RANGES["eccentricity_deg"])
    lo, hi = FAMILY_RANGES["os_length_um"]
    os_um = float(np.clip(hi - (hi - lo) * (0.6 * frac + 0.4 * rng.uniform()), lo, hi))
    depth_um = u("depth_um_per_px")
    n_depth = int(min(_MAX_DEPTH_PX, round(u("depth_window_um") / depth_um)))
    aline_um = lg("aline_um_per_px")
    um_per_deg = 291.0  # Bennett at 24 mm axial length (the case's default)
    field = (_N_BSCANS * aline_um / um_per_deg, _N_ALINES * aline_um / um_per_deg)
    focus = ("ISOS", "RPE", None)[int(rng.integers(0, 3))]
    rpe_gain = lg("rpe_gain")
    anatomy = Anatomy(
        spacing_um={"ISOS": u("elm_to_isos_um"), "COST": os_um, "RPE": u("cost_to_rpe_um"),
                    "BM": u("rpe_to_bm_um")},
        inner_scale=u("inner_scale"),
        # Bruch's membrane is a thin line beneath the RPE, dimmer than it [2][5]: its gain
        # follows the RPE's (BM/RPE reflectivity 0.14-0.35 with the nominal 0.35/1.0).
        reflectivity_gain={"ELM": lg("elm_gain"), "RPE": rpe_gain, "BM": rpe_gain * u("bm_over_rpe"),
                           "ISOS": lg("isos_gain"),
                           "COST": lg("cost_gain"), "CONES_ISOS": lg("cone_gain"),
                           "CONES_COST": lg("cone_gain")},
        focus=focus, depth_of_focus_um=u("depth_of_focus_um"),
        tilt_deg=(u("tilt_deg"), u("tilt_deg")))
    return {"seed": int(seed), "case_id": f"family-s{int(seed)}",
            "n_repeats": int(rng.integers(FAMILY_RANGES["n_repeats"][0], FAMILY_RANGES["n_repeats"][1] + 1)),
            "shape_px": (_N_BSCANS, max(n_depth, 1), _N_ALINES), "location_deg": (ecc, 0.0),
            "axial_length_mm": 24.0, "scan_field_deg": field, "depth_um_per_px": depth_um,
            "snr_db": u("snr_db"), "anatomy": anatomy}
