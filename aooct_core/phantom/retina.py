"""Layered retina: boundary surfaces and depth-resolved reflectivity.

Surfaces (depth in px, motion-free frame) are analytic functions of the en face
position ``(row, col)`` so they can be evaluated exactly at moved positions.
Thick layers are bounded by the surfaces "ILM", "NFL_GCL", "IPL_INL", "INL_OPL",
"OPL_ONL"; the thin reflective bands "ELM", "ISOS", "COST", "RPE", "BM" are given
by the depth of their *centre* (peak of the band).

Nominal thicknesses are those near 2 deg eccentricity from histology and AO-OCT
(e.g. NFL ~18 µm, GCL+IPL ~80 µm, ONL+Henle ~72 µm, IS ~26 µm, OS ~30 µm, COST
to RPE centre ~14 µm); inner layers thicken and photoreceptor segments shorten
away from the fovea, modelled as a linear change with local eccentricity.
En face orientation assumed throughout the phantom: the A-line (col) axis is the
retinal horizontal axis (col increasing towards +horizontal = temporal), the
B-scan (row) axis the vertical axis (row increasing towards +vertical = superior).

Relative reflectivities (RPE = 1) follow the appearance of AO-OCT B-scans:
bright NFL, IPL, OPL, ELM, IS/OS, COST, RPE; dark INL, ONL, IS and OS.

References
----------
.. [1] Curcio CA, et al. "Human chorioretinal layer thicknesses measured in
       macula-wide, high-resolution histologic sections." IOVS 52:3943-3954 (2011).
.. [2] Jonnal RS, et al. "A review of adaptive optics optical coherence
       tomography: technical advances, scientific applications, and the future."
       IOVS 57:OCT51-OCT68 (2016).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aooct_core.phantom.render import axial_band, smooth_step

__all__ = ["SURFACE_NAMES", "NOMINAL_SPACING_UM", "REFLECTIVITY", "Anatomy", "RetinaModel",
           "make_retina_model", "render_reflectivity"]

SURFACE_NAMES = ("ILM", "NFL_GCL", "IPL_INL", "INL_OPL", "OPL_ONL", "ELM", "ISOS", "COST", "RPE", "BM")
# Distance of each surface below the previous one (µm) and its change per degree of
# eccentricity away from the model centre (fraction per deg).
NOMINAL_SPACING_UM = {"NFL_GCL": (18.0, 0.10), "IPL_INL": (80.0, 0.15), "INL_OPL": (36.0, 0.08),
                      "OPL_ONL": (26.0, 0.0), "ELM": (72.0, -0.08), "ISOS": (26.0, -0.06),
                      "COST": (30.0, -0.10), "RPE": (14.0, 0.0), "BM": (10.0, 0.0)}
RETINA_THICKNESS_UM = sum(v[0] for v in NOMINAL_SPACING_UM.values())
TOP_MARGIN_UM = 50.0
BOTTOM_MARGIN_UM = 70.0        # room for choroid below Bruch's membrane
CURVE_AND_MOTION_MARGIN_UM = 40.0
OUTER_BOTTOM_MARGIN_UM = 30.0  # shallow windows keep at least this much choroid
ELM_TO_BM_UM = sum(NOMINAL_SPACING_UM[k][0] for k in ("ISOS", "COST", "RPE", "BM"))


@dataclass(frozen=True)
class Anatomy:
    """Departures from the nominal retina: what a phantom *family* varies.

    Attributes
    ----------
    spacing_um : dict
        Surface name → distance below the previous surface (µm), replacing
        :data:`NOMINAL_SPACING_UM` for that surface (e.g. ``{"COST": 40.0}`` for a 40 µm
        outer segment, ``{"RPE": 5.0}`` for COST 5 µm above the RPE centre).
    inner_scale : float
        Multiplies the inner-retina thicknesses (ILM to the ELM).
    reflectivity_gain : dict
        Band or layer name of :data:`REFLECTIVITY` → gain (e.g. ``{"RPE": 0.3}`` for a dim
        RPE); ``"CONES_ISOS"`` and ``"CONES_COST"`` scale the cone reflections.
    focus : {None, "ISOS", "RPE"}
        Where the AO focus sits: intensity falls off as a Gaussian of the depth distance
        from that surface with SD ``depth_of_focus_um`` (to ``focus_floor`` far away).
    depth_of_focus_um, focus_floor : float
    tilt_deg : tuple of float or None
        Retinal tilt ``(along B-scans, along A-lines)`` in degrees, replacing the random one.
    """

    spacing_um: dict = None  # type: ignore[assignment]
    inner_scale: float = 1.0
    reflectivity_gain: dict = None  # type: ignore[assignment]
    focus: str | None = None
    depth_of_focus_um: float = 60.0
    focus_floor: float = 0.2
    tilt_deg: tuple[float, float] | None = None

    def __post_init__(self):
        object.__setattr__(self, "spacing_um", dict(self.spacing_um or {}))
        object.__setattr__(self, "reflectivity_gain", dict(self.reflectivity_gain or {}))
        unknown = set(self.spacing_um) - set(SURFACE_NAMES[1:])
        unknown |= set(self.reflectivity_gain) - set(REFLECTIVITY) - {"CONES_ISOS", "CONES_COST"}
        if unknown or self.focus not in (None, "ISOS", "RPE"):
            raise ValueError(f"Anatomy: unknown names {sorted(unknown)} or focus {self.focus!r}; "
                             f"surfaces are {SURFACE_NAMES[1:]}, bands {sorted(REFLECTIVITY)}")

    def gain(self, name: str) -> float:
        return float(self.reflectivity_gain.get(name, 1.0))


@dataclass(frozen=True)
class RetinaModel:
    """Parameters of the analytic layer surfaces (all depths in px).

    Attributes
    ----------
    ilm_depth_px : float
        ILM depth at the field centre.
    centre_rc : tuple of float
        En face field centre in px.
    um_per_px_rc : tuple of float
        En face sampling ``(row, col)`` in µm/px.
    depth_um_per_px : float
        Axial sampling in µm/px.
    sag_px : float
        Depth added at the field corners by the (quadratic) curvature.
    tilt_px : tuple of float
        Depth change across the full field along rows and along cols.
    location_deg : tuple of float
        ``(horizontal, vertical)`` retinal location of the field centre.
    um_per_deg : float
        Retinal magnification.
    waves : tuple
        Low-frequency undulations ``(surface, amp_px, k_row, k_col, phase)``
        (``surface`` None = whole retina), k in rad/px.
    """

    ilm_depth_px: float
    centre_rc: tuple[float, float]
    um_per_px_rc: tuple[float, float]
    depth_um_per_px: float
    sag_px: float
    tilt_px: tuple[float, float]
    location_deg: tuple[float, float]
    um_per_deg: float
    waves: tuple[tuple[str | None, float, float, float, float], ...]
    spacing_um: tuple[tuple[str, float, float], ...] = tuple(
        (k, v[0], v[1]) for k, v in NOMINAL_SPACING_UM.items())

    def surfaces_px(self, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
        """Depth (px) of every surface at en face positions ``(rows, cols)`` (broadcast)."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        dr = (rows - self.centre_rc[0]) / max(self.centre_rc[0], 1.0)     # -1..1 across the field
        dc = (cols - self.centre_rc[1]) / max(self.centre_rc[1], 1.0)
        top = self.ilm_depth_px + self.sag_px * 0.5 * (dr ** 2 + dc ** 2)
        top = top + 0.5 * self.tilt_px[0] * dr + 0.5 * self.tilt_px[1] * dc
        wave = {}
        for name, amp, k_r, k_c, phase in self.waves:
            wave[name] = wave.get(name, 0.0) + amp * np.sin(k_r * rows + k_c * cols + phase)
        top = top + wave.get(None, 0.0)
        # Local eccentricity change (deg) relative to the field centre.
        h = self.location_deg[0] + (cols - self.centre_rc[1]) * self.um_per_px_rc[1] / self.um_per_deg
        v = self.location_deg[1] + (rows - self.centre_rc[0]) * self.um_per_px_rc[0] / self.um_per_deg
        d_ecc = np.hypot(h, v) - math.hypot(*self.location_deg)
        out = {"ILM": top + wave.get("ILM", 0.0)}
        depth = out["ILM"]
        spacings = {k: (um, per_deg) for k, um, per_deg in self.spacing_um}
        for name in SURFACE_NAMES[1:]:
            spacing_um, per_deg = spacings[name]
            factor = np.clip(1.0 + per_deg * d_ecc, 0.5, 1.5)
            depth = depth + spacing_um * factor / self.depth_um_per_px + wave.get(name, 0.0)
            out[name] = depth
        shape = np.broadcast_shapes(rows.shape, cols.shape)
        return {k: np.broadcast_to(v, shape).astype(np.float32) for k, v in out.items()}


def make_retina_model(*, n_depth: int, n_rows: int, n_cols: int, depth_um_per_px: float,
                      um_per_px_rc: tuple[float, float], location_deg: tuple[float, float],
                      um_per_deg: float, rng: np.random.Generator,
                      anatomy: Anatomy | None = None) -> RetinaModel:
    """Random but plausible surface parameters for a field of the given size.

    With at least ``TOP + retina + BOTTOM + curvature margins`` (472 µm, 236 px at
    2 µm/px) the whole retina is in view below some vitreous; shallower windows
    (down to ~140 µm) show the outer retina, RPE and choroid, and the inner layers
    run off the top of the volume (negative surface depths). ``anatomy`` replaces the
    nominal spacings and the random tilt (the random draws are made all the same, so
    the rest of the phantom does not change with it).
    """
    anatomy = anatomy or Anatomy()
    spacing = {}
    for k, (um, per_deg) in NOMINAL_SPACING_UM.items():
        inner = SURFACE_NAMES.index(k) <= SURFACE_NAMES.index("ELM")
        spacing[k] = (anatomy.spacing_um.get(k, um * (anatomy.inner_scale if inner else 1.0)), per_deg)
    retina_um = sum(v[0] for v in spacing.values())
    elm_to_bm_um = sum(spacing[k][0] for k in ("ISOS", "COST", "RPE", "BM"))
    depth_um = n_depth * depth_um_per_px
    needed_um = TOP_MARGIN_UM + retina_um + BOTTOM_MARGIN_UM + CURVE_AND_MOTION_MARGIN_UM
    if depth_um >= needed_um:
        ilm_um = TOP_MARGIN_UM + 0.5 * CURVE_AND_MOTION_MARGIN_UM + 0.3 * (depth_um - needed_um)
    else:
        # A shallow window (as in photoreceptor-focused AO-OCT): keep the outer retina,
        # RPE and some choroid in view and let the inner retina run off the top (its
        # surfaces then have negative depths).
        bm_um = depth_um - OUTER_BOTTOM_MARGIN_UM - 0.5 * CURVE_AND_MOTION_MARGIN_UM
        ilm_um = bm_um - retina_um
        elm_um = ilm_um + retina_um - elm_to_bm_um
        if elm_um < 0.5 * CURVE_AND_MOTION_MARGIN_UM:
            minimum_um = elm_to_bm_um + OUTER_BOTTOM_MARGIN_UM + CURVE_AND_MOTION_MARGIN_UM
            raise ValueError(
                f"n_depth={n_depth} px x {depth_um_per_px} µm/px = {depth_um:.0f} µm is too shallow even for "
                f"the outer retina (ELM to Bruch's membrane plus margins); use at least "
                f"{math.ceil(minimum_um / depth_um_per_px)} depth px, or "
                f"{math.ceil(needed_um / depth_um_per_px)} for the whole retina"
            )
    waves = [(None, rng.uniform(0.5, 1.5), *rng.normal(0, 0.03, 2), rng.uniform(0, 2 * math.pi))]
    for name in SURFACE_NAMES:
        waves.append((name, rng.uniform(0.1, 0.5), *rng.normal(0, 0.05, 2), rng.uniform(0, 2 * math.pi)))
    sag_px = float(rng.uniform(4.0, 8.0) * 2.0 / depth_um_per_px)
    tilt_px = tuple(float(x) for x in rng.uniform(-5.0, 5.0, 2) * 2.0 / depth_um_per_px)
    if anatomy.tilt_deg is not None:
        # Depth change across the whole field: tan(tilt) x field width (µm) / depth sampling.
        widths_um = (n_rows * um_per_px_rc[0], n_cols * um_per_px_rc[1])
        tilt_px = tuple(float(math.tan(math.radians(t)) * w / depth_um_per_px)
                        for t, w in zip(anatomy.tilt_deg, widths_um))
    return RetinaModel(
        ilm_depth_px=ilm_um / depth_um_per_px,
        centre_rc=((n_rows - 1) / 2.0, (n_cols - 1) / 2.0),
        um_per_px_rc=(float(um_per_px_rc[0]), float(um_per_px_rc[1])),
        depth_um_per_px=float(depth_um_per_px),
        sag_px=sag_px,
        tilt_px=tilt_px,
        location_deg=(float(location_deg[0]), float(location_deg[1])),
        um_per_deg=float(um_per_deg),
        waves=tuple(waves),
        spacing_um=tuple((k, float(um), float(per_deg)) for k, (um, per_deg) in spacing.items()),
    )


REFLECTIVITY = {"NFL": 0.35, "GCL": 0.035, "IPL": 0.16, "INL": 0.035, "OPL": 0.15, "ONL": 0.015,
                "ELM": 0.12, "IS": 0.015, "ISOS": 0.10, "OS": 0.02, "COST": 0.06, "COST_RPE": 0.03,
                "RPE": 1.0, "BM": 0.35, "CHOROID": 0.06}


def render_reflectivity(surfaces: dict[str, np.ndarray], n_depth: int, *, axial_sigma_px: float,
                        enface: dict[str, np.ndarray], rpe_sigma_px: float,
                        attenuation_per_px: float, anatomy: Anatomy | None = None) -> np.ndarray:
    """Depth-resolved reflectivity of the layers (no cones, no capillaries, no speckle).

    Parameters
    ----------
    surfaces : dict of str to (n_rows, n_cols) float32
        Surface depths (px) already moved by the repeat's motion.
    n_depth : int
        Number of depth samples.
    axial_sigma_px : float
        SD of the axial intensity PSF in px (sets band and edge widths).
    enface : dict of str to (n_rows, n_cols) float32
        En face modulation maps: "nfl" (bundles, 0-1), "rpe" (cell texture, mean
        ~1), "choroid" and "choroid_deep" (textures near Bruch's membrane and deeper).
    rpe_sigma_px : float
        Axial SD (px) of the RPE band (~10 µm FWHM in tissue).
    attenuation_per_px : float
        Round-trip intensity attenuation per px below the ILM.
    anatomy : Anatomy, optional
        Band reflectivity gains (nominal when None).

    Returns
    -------
    numpy.ndarray, float32, shape (n_rows, n_depth, n_cols)
    """
    anatomy = anatomy or Anatomy()
    R = {k: v * anatomy.gain(k) for k, v in REFLECTIVITY.items()}  # noqa: N806
    z = np.arange(n_depth, dtype=np.float32)[None, :, None]
    s = {k: v[:, None, :] for k, v in surfaces.items()}
    w = max(axial_sigma_px, 0.5)
    band = lambda name, sigma=axial_sigma_px: axial_band(z, s[name], sigma)  # noqa: E731
    step = lambda name: smooth_step(z, s[name], w)  # noqa: E731
    ilm, nfl_gcl, ipl_inl = step("ILM"), step("NFL_GCL"), step("IPL_INL")
    # NFL: bundles bright, gaps between them dim.
    nfl = R["NFL"] * (0.25 + 0.75 * enface["nfl"][:, None, :])
    vol = nfl * (ilm - nfl_gcl)
    # GCL/IPL: reflectivity ramps from the dim GCL to the brighter IPL.
    frac = np.clip((z - s["NFL_GCL"]) / np.maximum(s["IPL_INL"] - s["NFL_GCL"], 1.0), 0.0, 1.0)
    vol += (R["GCL"] + (R["IPL"] - R["GCL"]) * frac ** 2) * (nfl_gcl - ipl_inl)
    del frac, nfl
    inl_opl, opl_onl, bm = step("INL_OPL"), step("OPL_ONL"), step("BM")
    vol += R["INL"] * (ipl_inl - inl_opl)
    vol += R["OPL"] * (inl_opl - opl_onl)
    # Outer retina between OPL and BM: weak background plus the reflective bands.
    elm, isos, cost = step("ELM"), step("ISOS"), step("COST")
    vol += R["ONL"] * (opl_onl - elm) + R["IS"] * (elm - isos)
    vol += R["OS"] * (isos - cost) + R["COST_RPE"] * (cost - bm)
    del ilm, nfl_gcl, ipl_inl, inl_opl, opl_onl, elm, isos, cost
    vol += R["ELM"] * band("ELM")
    vol += R["ISOS"] * band("ISOS")        # diffuse part; cones are added by the scene
    vol += R["COST"] * band("COST")
    vol += R["RPE"] * enface["rpe"][:, None, :] * band("RPE", max(rpe_sigma_px, axial_sigma_px))
    vol += R["BM"] * band("BM", 1.2 * axial_sigma_px)
    # Choroid: textured, fading with depth below Bruch's membrane.
    below = np.maximum(z - s["BM"], 0.0)
    shallow = np.exp(-below / 12.0)
    texture = enface["choroid"][:, None, :] * shallow + enface["choroid_deep"][:, None, :] * (1.0 - shallow)
    vol += R["CHOROID"] * texture * bm * np.exp(-below / 30.0)
    del shallow, texture
    del below, bm
    vol *= np.exp(-attenuation_per_px * np.maximum(z - s["ILM"], 0.0))
    return vol.astype(np.float32, copy=False)
