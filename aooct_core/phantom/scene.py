"""The static retinal scene of a phantom and its rendering under eye motion.

A ``PhantomScene`` holds every structure in continuous coordinates (layer
surfaces, cone, RPE, capillary and nerve-fiber-bundle geometry). ``render``
evaluates it for one repeat *directly at the moved positions* of each B-scan
(see ``aooct_core.phantom.render``), then applies speckle, dim B-scans and noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aooct_core.phantom.render import axial_band, splat_gaussians
from aooct_core.phantom.retina import Anatomy, RetinaModel, render_reflectivity
from aooct_core.phantom.speckle import FWHM_TO_SIGMA, partially_correlated_speckle, speckle_field
from aooct_core.phantom.textures import RpeMosaic, render_choroid
from aooct_core.phantom.vessels import NerveFiberBundles, render_capillaries

__all__ = ["PhantomScene"]

CONE_ISOS_PEAK = 2.0
CONE_COST_PEAK = 1.5
CONE_SCINTILLATION_CV = 0.3
CAPILLARY_PEAK = 0.5


@dataclass(frozen=True, eq=False)
class PhantomScene:
    """Everything needed to render one repeat of the phantom.

    Attributes
    ----------
    shape_px : tuple of int
        ``(n_bscans, n_depth, n_alines)``.
    um_per_px : tuple of float
        ``(bscan, depth, aline)`` sampling in µm/px.
    lateral_psf_fwhm_um, axial_psf_fwhm_um : float
        Intensity-PSF FWHM in tissue.
    retina : RetinaModel
        Layer surfaces.
    cones_rc : numpy.ndarray, shape (N, 2)
        All rendered cone centres (px, motion-free frame), including the margin.
    cone_isos, cone_cost : numpy.ndarray, shape (N,)
        Relative reflectivity of each cone at IS/OS and COST.
    cone_sigma_um : float
        Lateral SD of one cone reflection (PSF and waveguide mode combined).
    rpe : RpeMosaic
    capillaries : dict of str to list of dict
        ``{"SVP": segments, "DVP": segments}`` from ``vessels.capillary_segments``.
    bundles : NerveFiberBundles
    choroid : tuple
        Two blob descriptions from ``textures.choroid_blobs`` (choriocapillaris side
        and deeper choroid), blended with depth so the texture is not columnar.
    noise_floor : float
        Mean intensity of the additive (exponential) noise.
    static_speckle_correlation : float
        Intensity correlation ρ of static tissue speckle between repeats (0: every
        repeat has independent speckle; see ``aooct_core.phantom.speckle``).
    anatomy : Anatomy or None
        Band gains and focus of a phantom-family member (nominal when None).
    static_speckle_spectrum : numpy.ndarray or None
        Tissue-fixed speckle amplitude spectrum (required when ρ > 0).
    """

    shape_px: tuple[int, int, int]
    um_per_px: tuple[float, float, float]
    lateral_psf_fwhm_um: float
    axial_psf_fwhm_um: float
    retina: RetinaModel
    cones_rc: np.ndarray
    cone_isos: np.ndarray
    cone_cost: np.ndarray
    cone_sigma_um: float
    rpe: RpeMosaic
    capillaries: dict
    bundles: NerveFiberBundles
    choroid: tuple
    noise_floor: float
    static_speckle_correlation: float = 0.0
    static_speckle_spectrum: np.ndarray | None = None
    anatomy: Anatomy | None = None

    def plexus_depth_px(self, surfaces: dict[str, np.ndarray], plexus: str) -> np.ndarray:
        """Depth (px) of a capillary plexus from the layer surfaces."""
        if plexus == "SVP":
            return surfaces["NFL_GCL"] + 0.25 * (surfaces["IPL_INL"] - surfaces["NFL_GCL"])
        return surfaces["INL_OPL"]

    def _capillaries(self, surfaces: dict[str, np.ndarray], da: np.ndarray) -> np.ndarray:
        """Capillaries of both plexuses (n_bscans, n_depth, n_alines), float32, before speckle."""
        n_b, n_d, n_a = self.shape_px
        um_r, um_d, um_c = self.um_per_px
        z = np.arange(n_d, dtype=np.float32)[None, :, None]
        psf_sigma_um = self.lateral_psf_fwhm_um * FWHM_TO_SIGMA
        axial_sigma_um = self.axial_psf_fwhm_um * FWHM_TO_SIGMA
        out = np.zeros(self.shape_px, dtype=np.float32)
        for plexus, segments in self.capillaries.items():
            if not segments:
                continue
            img = render_capillaries(segments, shape=(n_b, n_a), um_per_px_rc=(um_r, um_c),
                                     psf_sigma_um=psf_sigma_um, col_shift_px=da)
            mean_d = float(np.mean([seg["diameter_um"] for seg in segments]))
            sigma_px = math.hypot(mean_d * FWHM_TO_SIGMA, axial_sigma_um) / um_d
            depth = self.plexus_depth_px(surfaces, plexus)
            out += CAPILLARY_PEAK * img[:, None, :] * axial_band(z, depth[:, None, :], sigma_px)
        out *= np.exp(-(um_d / 1000.0) * np.maximum(z - surfaces["ILM"][:, None, :], 0.0))
        return out

    def _cones(self, surfaces: dict[str, np.ndarray], da: np.ndarray, scint: np.ndarray,
               axial_sigma_px: float) -> np.ndarray:
        """IS/OS and COST cone reflections (n_bscans, n_depth, n_alines), float32."""
        n_b, n_d, n_a = self.shape_px
        um_r, um_d, um_c = self.um_per_px
        sig = (self.cone_sigma_um / um_r, self.cone_sigma_um / um_c)
        z = np.arange(n_d, dtype=np.float32)[None, :, None]
        out = np.zeros(self.shape_px, dtype=np.float32)
        anatomy = self.anatomy or Anatomy()
        gains = (anatomy.gain("CONES_ISOS"), anatomy.gain("CONES_COST"))
        for k, (name, peak, refl) in enumerate((("ISOS", CONE_ISOS_PEAK * gains[0], self.cone_isos),
                                                ("COST", CONE_COST_PEAK * gains[1], self.cone_cost))):
            img = splat_gaussians(self.cones_rc, peak * refl * scint[k], shape=(n_b, n_a), sigma_px=sig,
                                  col_shift_px=da)
            out += img[:, None, :] * axial_band(z, surfaces[name][:, None, :], axial_sigma_px)
        out *= np.exp(-(um_d / 1000.0) * np.maximum(z - surfaces["ILM"][:, None, :], 0.0))
        return out

    def render(self, motion_px: np.ndarray, *, speckle_rng: np.random.Generator | None = None,
               noise_rng: np.random.Generator | None = None,
               bscan_gain: np.ndarray | None = None) -> np.ndarray:
        """Render one repeat.

        Parameters
        ----------
        motion_px : numpy.ndarray, shape (n_bscans, 2)
            ``(depth_shift_px, aline_shift_px)`` of every B-scan; content moves by
            ``+motion`` (observed(z, a) = true(z - dz, a - da)).
        speckle_rng : numpy.random.Generator, optional
            Speckle source; None renders the speckle-free reflectivity.
        noise_rng : numpy.random.Generator, optional
            Additive-noise source; None adds no noise.
        bscan_gain : numpy.ndarray, shape (n_bscans,), optional
            Per-B-scan intensity gain (dim/blink B-scans < 1).

        Returns
        -------
        numpy.ndarray, float32, shape (n_bscans, n_depth, n_alines)
            Linear intensity.
        """
        n_b, n_d, n_a = self.shape_px
        um_r, um_d, um_c = self.um_per_px
        motion = np.asarray(motion_px, dtype=np.float64)
        if motion.shape != (n_b, 2):
            raise ValueError(f"motion_px must have shape ({n_b}, 2); got {motion.shape}")
        dz, da = motion[:, 0], motion[:, 1]
        rows = np.arange(n_b, dtype=np.float64)[:, None]
        cols = np.arange(n_a, dtype=np.float64)[None, :] - da[:, None]   # true col seen at each observed col
        surfaces = {k: v + dz[:, None].astype(np.float32)
                    for k, v in self.retina.surfaces_px(rows, cols).items()}
        rows_um, cols_um = (rows + 0.5) * um_r, (cols + 0.5) * um_c
        enface = {
            "nfl": self.bundles.evaluate(rows_um, cols_um),
            "rpe": self.rpe.evaluate(rows_um, cols_um),
            "choroid": render_choroid(self.choroid[0], shape=(n_b, n_a), um_per_px_rc=(um_r, um_c), col_shift_px=da),
            "choroid_deep": render_choroid(self.choroid[1], shape=(n_b, n_a), um_per_px_rc=(um_r, um_c),
                                           col_shift_px=da),
        }
        axial_sigma_px = self.axial_psf_fwhm_um * FWHM_TO_SIGMA / um_d
        vol = render_reflectivity(surfaces, n_d, axial_sigma_px=axial_sigma_px, enface=enface,
                                  rpe_sigma_px=10.0 * FWHM_TO_SIGMA / um_d, attenuation_per_px=um_d / 1000.0,
                                  anatomy=self.anatomy)
        vessels = self._capillaries(surfaces, da)
        if speckle_rng is not None:
            fwhm_px = (self.lateral_psf_fwhm_um / um_r, self.axial_psf_fwhm_um / um_d,
                       self.lateral_psf_fwhm_um / um_c)
            if self.static_speckle_correlation > 0:
                # Static tissue keeps part of its speckle (it moves with the eye); blood
                # decorrelates fully between repeats: the contrast OCTA measures.
                vol *= partially_correlated_speckle(self.static_speckle_spectrum, motion,
                                                    correlation=self.static_speckle_correlation,
                                                    psf_fwhm_px=fwhm_px, rng=speckle_rng)
                vol += vessels * speckle_field(vol.shape, psf_fwhm_px=fwhm_px, rng=speckle_rng)
            else:
                # Flowing blood decorrelates between repeats on top of the speckle.
                flow = speckle_field((n_b, n_a), psf_fwhm_px=(fwhm_px[0], fwhm_px[2]), rng=speckle_rng)
                vol += vessels * flow[:, None, :]
                vol *= speckle_field(vol.shape, psf_fwhm_px=fwhm_px, rng=speckle_rng)
            # Cones scintillate between repeats (CV ~0.3) but are single reflectors: no speckle.
            k = 1.0 / CONE_SCINTILLATION_CV ** 2
            scint = speckle_rng.gamma(k, 1.0 / k, size=(2, len(self.cones_rc)))
        else:
            vol += vessels
            scint = np.ones((2, len(self.cones_rc)))
        vol += self._cones(surfaces, da, scint, axial_sigma_px)
        if self.anatomy is not None and self.anatomy.focus is not None:
            # AO focus: the confocal gate of the focused beam, a Gaussian in depth around
            # the focused surface (it moves with the retina), down to a floor far from it.
            zz = np.arange(n_d, dtype=np.float32)[None, :, None]
            off_um = (zz - surfaces[self.anatomy.focus][:, None, :]) * np.float32(um_d)
            floor = np.float32(self.anatomy.focus_floor)
            vol *= floor + (1 - floor) * np.exp(-0.5 * (off_um / np.float32(self.anatomy.depth_of_focus_um)) ** 2)
        if bscan_gain is not None:
            vol *= np.asarray(bscan_gain, dtype=np.float32)[:, None, None]
        if noise_rng is not None and self.noise_floor > 0:
            vol += np.float32(self.noise_floor) * noise_rng.standard_exponential(vol.shape, dtype=np.float32)
        return vol
