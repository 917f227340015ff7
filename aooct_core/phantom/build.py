"""``make_phantom`` and ``write_phantom``: a realistic AO-OCT case with ground truth.

How motion is applied
---------------------
Cones, capillaries, bundles, RPE cells, choroid blobs and layer surfaces are kept
in continuous coordinates and each observed B-scan is *rendered directly at its
moved position* (``PhantomScene.render``); nothing is resampled, so the motion truth
``motion_px`` is exact to sub-pixel precision. Sign convention:
``observed[r, b](z, a) = true[b](z - dz, a - da)`` with
``(dz, da) = motion_px[r, b]`` — content moves by ``+motion_px``.

Speckle is generated independently per repeat on the observed grid; since the
repeats' speckle patterns are independent anyway this is statistically identical
to speckle attached to the moving tissue, and averaging ``N`` repeats lowers the
speckle contrast as ``1 / sqrt(N)`` (see ``aooct_core.phantom.speckle``).

Truth record (``Phantom.truth`` = ``truth.json``)
-------------------------------------------------
All positions are px of the motion-free en face frame, ``(row, col)`` =
``(bscan index, aline index)``, pixel ``i`` spanning ``[i - 0.5, i + 0.5)``; depths
are px from the top of the volume.

* ``seed``, ``shape_px`` ``[n_repeats, n_bscans, n_depth, n_alines]``, ``geometry``
  (µm/px per axis), ``eccentricity_deg``, ``location_deg``, ``axial_length_mm``,
  ``psf_fwhm_um``, ``snr_db``, ``enface_orientation``, ``motion_convention``.
* ``cones``: ``positions_rc`` (every lattice cone whose centre lies in the field,
  including absent/dim ones), ``reflectivity`` (IS/OS, healthy median 1, 0 =
  absent), ``reflectivity_cost``, ``missing`` (absent or dim),
  ``true_density_cells_per_mm2`` (lattice cones in the field / field area),
  ``visible_density_cells_per_mm2`` (non-missing only),
  ``curcio_density_cells_per_mm2`` (model value), ``spacing_um``, ``disorder``.
* ``rpe``: ``positions_rc``, ``true_density_cells_per_mm2``, ``spacing_um``.
* ``vessels``: per capillary segment ``plexus`` ("SVP"/"DVP"), ``centerline_rc``,
  ``depth_px`` (mean centre depth along the segment), ``diameter_um``.
* ``nerve_fiber_bundles``: ``centerline_rc`` and ``width_um`` per bundle;
  ``nerve_fiber_orientation_rad`` (from the col axis towards the row axis).
* ``fovea_rc`` (may lie outside the field), ``motion_px`` ``[r][b] = [dz, da]``,
  ``dim_bscans`` ``[[r, b], ...]``, ``layers_mean_depth_px`` per surface.
"""
from __future__ import annotations

import json
import math
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from aooct_core.geometry import Acquisition, Geometry, geometry_from_acquisition, retinal_mm_per_deg
from aooct_core.phantom.cones import (cone_reflectivities, cone_spacing_um,
                                      curcio_cone_density_cells_per_mm2, sample_cone_mosaic)
from aooct_core.phantom.motion import simulate_eye_motion_px
from aooct_core.phantom.retina import SURFACE_NAMES, Anatomy, make_retina_model
from aooct_core.phantom.scene import PhantomScene
from aooct_core.phantom.speckle import FWHM_TO_SIGMA, static_speckle_spectrum
from aooct_core.phantom.textures import choroid_blobs, make_rpe_mosaic
from aooct_core.phantom.vessels import capillary_segments, make_nerve_fiber_bundles

__all__ = ["Phantom", "make_phantom", "write_phantom"]

_MAX_MOTION_UM = 15.0


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic AO-OCT case and its ground truth.

    Attributes
    ----------
    acquisition : Acquisition
    geometry : Geometry
    volumes : numpy.ndarray, float32, shape (n_repeats, n_bscans, n_depth, n_alines)
        Linear intensity of every repeat, with motion, speckle and noise.
    truth : dict
        JSON-serialisable ground truth (content of ``truth.json``).
    surfaces_px : dict of str to numpy.ndarray, float32, shape (n_bscans, n_alines)
        Depth (px) of each layer surface in the motion-free frame.
    motion_px : numpy.ndarray, float32, shape (n_repeats, n_bscans, 2)
        ``(depth_shift_px, aline_shift_px)``; ``observed[r, b] = true[b]`` shifted by
        ``motion_px[r, b]`` (content moves by ``+motion_px``).
    scene : PhantomScene
        The static scene, to re-render e.g. the motion-free volume.
    """

    acquisition: Acquisition
    geometry: Geometry
    volumes: np.ndarray
    truth: dict
    surfaces_px: dict
    motion_px: np.ndarray
    scene: PhantomScene = field(repr=False)

    def motion_free(self, *, speckle_seed: int | None = None) -> np.ndarray:
        """Render the motion-free volume (no noise; speckle only if a seed is given)."""
        n_b = self.volumes.shape[1]
        rng = None if speckle_seed is None else np.random.default_rng(speckle_seed)
        return self.scene.render(np.zeros((n_b, 2)), speckle_rng=rng)


def _check(shape_px, n_repeats, location_deg, scan_field_deg, depth_um_per_px) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in shape_px)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape_px must be (n_bscans, n_depth, n_alines) with every size >= 8; got {shape_px!r}")
    if int(n_repeats) < 1:
        raise ValueError(f"n_repeats must be >= 1; got {n_repeats!r}")
    if len(location_deg) != 2 or not all(math.isfinite(v) for v in location_deg):
        raise ValueError(f"location_deg must be (horizontal_deg, vertical_deg); got {location_deg!r}")
    if len(scan_field_deg) != 2 or not all(0 < v <= 10 for v in scan_field_deg):
        raise ValueError(f"scan_field_deg must be two sizes in (0, 10] deg; got {scan_field_deg!r}")
    if not (0 < depth_um_per_px <= 10):
        raise ValueError(f"depth_um_per_px must be in (0, 10] µm; got {depth_um_per_px!r}")
    return shape


def make_phantom(*, seed: int, n_repeats: int = 3, shape_px: tuple[int, int, int] = (128, 256, 128),
                 location_deg: tuple[float, float] = (2.0, 0.0), axial_length_mm: float = 24.0,
                 scan_field_deg: tuple[float, float] = (1.0, 1.0), depth_um_per_px: float = 2.0,
                 lateral_psf_fwhm_um: float = 2.4, axial_psf_fwhm_um: float = 3.0,
                 cone_disorder: float = 0.1, missing_cone_fraction: float = 0.03,
                 dim_cone_fraction: float = 0.05, motion_scale: float = 1.0,
                 dim_bscan_fraction: float = 0.0, snr_db: float = 35.0, eye: str = "OD",
                 static_speckle_correlation: float = 0.0, case_id: str | None = None,
                 anatomy: Anatomy | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Phantom:
    """Generate a repeated AO-OCT volume set of one retinal location with ground truth.

    Parameters
    ----------
    seed : int
        Seed; the same seed and options give bit-identical volumes and truth.
    n_repeats : int
        Number of repeated volumes.
    shape_px : tuple of int
        ``(n_bscans, n_depth, n_alines)`` of each volume.
    location_deg : tuple of float
        ``(horizontal, vertical)`` retinal location; positive = temporal / superior.
    axial_length_mm : float
        Axial length; sets the lateral µm/px via the Bennett (1994) eye model.
    scan_field_deg : tuple of float
        ``(bscan, aline)`` field in degrees.
    depth_um_per_px : float
        Axial sampling in tissue.
    lateral_psf_fwhm_um, axial_psf_fwhm_um : float
        Intensity-PSF FWHM (AO-corrected 6.75 mm pupil ~2.4 µm; ~3 µm axially).
    cone_disorder : float
        Lattice jitter SD as a fraction of the cone spacing.
    missing_cone_fraction, dim_cone_fraction : float
        Fractions of absent and dim (15 %) cones.
    motion_scale : float
        Multiplies every motion magnitude (0 = no motion).
    dim_bscan_fraction : float
        Fraction of B-scans dimmed to 2-30 % (blinks, tear film); listed in the truth.
    snr_db : float
        RPE-to-noise-floor ratio of the mean intensities, dB.
    eye : {"OD", "OS"}
    static_speckle_correlation : float
        Intensity correlation ρ in [0, 1) of static-tissue speckle between repeats
        (blood always decorrelates fully). 0 (default): independent speckle per repeat,
        as for volume repeats seconds apart; 0.8-0.95: B-scan repeats ms apart, where
        OCTA sees the capillaries. See ``aooct_core.phantom.speckle``.
    case_id : str, optional
        Defaults to ``"phantom-s<seed>"``.
    anatomy : Anatomy, optional
        Layer spacings, band reflectivities, focus and tilt of a phantom-family member
        (:mod:`aooct_core.phantom.family`); the nominal retina when None.
    progress : callable, optional
        Called as ``progress(done, total)`` after each rendered repeat.

    Returns
    -------
    Phantom

    Examples
    --------
    >>> ph = make_phantom(seed=1, n_repeats=1, shape_px=(16, 256, 16))
    >>> ph.volumes.shape, ph.volumes.dtype.name, ph.motion_px.shape
    ((1, 16, 256, 16), 'float32', (1, 16, 2))
    """
    shape = _check(shape_px, n_repeats, location_deg, scan_field_deg, depth_um_per_px)
    if eye not in ("OD", "OS"):
        raise ValueError(f"eye must be 'OD' or 'OS'; got {eye!r}")
    if not (0 <= motion_scale <= 3 and 0 <= dim_bscan_fraction <= 1 and math.isfinite(snr_db)):
        raise ValueError("motion_scale must be in [0, 3], dim_bscan_fraction in [0, 1] and snr_db finite; "
                         f"got {motion_scale!r}, {dim_bscan_fraction!r}, {snr_db!r}")
    if not 0.0 <= static_speckle_correlation < 1.0:
        raise ValueError("static_speckle_correlation must be in [0, 1) (0 = independent speckle per "
                         f"repeat); got {static_speckle_correlation!r}")
    n_b, n_d, n_a = shape
    acq = Acquisition(case_id=case_id or f"phantom-s{int(seed)}", subject_id="phantom-subject", eye=eye,
                      location_deg=(float(location_deg[0]), float(location_deg[1])),
                      axial_length_mm=float(axial_length_mm),
                      scan_field_deg=(float(scan_field_deg[0]), float(scan_field_deg[1])),
                      sampling_px=shape, depth_um_per_px=float(depth_um_per_px))
    geom = geometry_from_acquisition(acq)
    um_r, um_c = geom.bscan_um_per_px, geom.aline_um_per_px
    um_per_deg = 1000.0 * retinal_mm_per_deg(axial_length_mm)
    ecc = acq.eccentricity_deg
    # Independent streams per component: changing n_repeats leaves the anatomy unchanged.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(8)]
    rng_retina, rng_cones, rng_vessels, rng_nfl, rng_rpe, rng_chor, rng_motion, rng_dim = streams
    repeat_seeds = np.random.SeedSequence([int(seed), 1]).spawn(2 * int(n_repeats))

    density = curcio_cone_density_cells_per_mm2(ecc, axial_length_mm=axial_length_mm)
    spacing = cone_spacing_um(density)
    margin_px = _MAX_MOTION_UM * max(motion_scale, 1.0) / min(um_r, um_c) + 6.0
    margin_um = margin_px * max(um_r, um_c)
    field_um = (n_b * um_r, n_a * um_c)
    cones_um = sample_cone_mosaic((field_um[0] + 2 * margin_um, field_um[1] + 2 * margin_um),
                                  density_cells_per_mm2=density, rng=rng_cones, disorder=cone_disorder) - margin_um
    cones_rc = cones_um / np.array([um_r, um_c]) - 0.5          # pixel i spans [i - 0.5, i + 0.5)
    isos, cost, missing = cone_reflectivities(len(cones_rc), rng=rng_cones, missing_fraction=missing_cone_fraction,
                                              dim_fraction=dim_cone_fraction)
    fovea_rc = ((n_b - 1) / 2 - location_deg[1] * um_per_deg / um_r,
                (n_a - 1) / 2 - location_deg[0] * um_per_deg / um_c)
    capillaries = {p: capillary_segments(p, field_px=(n_b, n_a), um_per_px_rc=(um_r, um_c), fovea_rc=fovea_rc,
                                         margin_px=margin_px, rng=rng_vessels) for p in ("SVP", "DVP")}
    retina = make_retina_model(n_depth=n_d, n_rows=n_b, n_cols=n_a, depth_um_per_px=depth_um_per_px,
                               um_per_px_rc=(um_r, um_c), location_deg=acq.location_deg,
                               um_per_deg=um_per_deg, rng=rng_retina, anatomy=anatomy)
    bundles = make_nerve_fiber_bundles(field_um=field_um, location_deg=acq.location_deg, rng=rng_nfl)
    scene = PhantomScene(
        shape_px=shape, um_per_px=(um_r, float(depth_um_per_px), um_c),
        lateral_psf_fwhm_um=float(lateral_psf_fwhm_um), axial_psf_fwhm_um=float(axial_psf_fwhm_um),
        retina=retina, cones_rc=cones_rc, cone_isos=isos, cone_cost=cost,
        cone_sigma_um=math.hypot(lateral_psf_fwhm_um * FWHM_TO_SIGMA, 0.15 * spacing),
        rpe=make_rpe_mosaic(field_um=field_um, margin_um=margin_um, rng=rng_rpe),
        capillaries=capillaries, bundles=bundles,
        choroid=tuple(choroid_blobs(field_px=(n_b, n_a), um_per_px_rc=(um_r, um_c), margin_px=margin_px, rng=rng_chor)
                      for _ in range(2)),
        noise_floor=10.0 ** (-snr_db / 10.0),
        static_speckle_correlation=float(static_speckle_correlation),
        anatomy=anatomy,
        static_speckle_spectrum=None if static_speckle_correlation == 0 else static_speckle_spectrum(
            shape, psf_fwhm_px=(lateral_psf_fwhm_um / um_r, axial_psf_fwhm_um / depth_um_per_px,
                                lateral_psf_fwhm_um / um_c),
            rng=np.random.default_rng(np.random.SeedSequence([int(seed), 2]))),
    )
    motion = simulate_eye_motion_px(
        int(n_repeats), n_b, rng=rng_motion, depth_um_per_px=depth_um_per_px, aline_um_per_px=um_c,
        drift_um=8.0 * motion_scale, tremor_um=0.5 * motion_scale,
        microsaccades_per_volume=1.0 if motion_scale > 0 else 0.0, axial_um=4.0 * motion_scale,
        max_um=_MAX_MOTION_UM * motion_scale)
    gains = np.ones((int(n_repeats), n_b), dtype=np.float32)
    dim = rng_dim.uniform(size=gains.shape) < dim_bscan_fraction
    gains[dim] = rng_dim.uniform(0.02, 0.3, size=int(dim.sum()))

    volumes = np.empty((int(n_repeats), n_b, n_d, n_a), dtype=np.float32)
    for r in range(int(n_repeats)):
        volumes[r] = scene.render(motion[r], speckle_rng=np.random.default_rng(repeat_seeds[2 * r]),
                                  noise_rng=np.random.default_rng(repeat_seeds[2 * r + 1]), bscan_gain=gains[r])
        if progress is not None:
            progress(r + 1, int(n_repeats))

    rows, cols = np.arange(n_b)[:, None], np.arange(n_a)[None, :]
    surfaces = retina.surfaces_px(rows, cols)
    in_field = ((cones_rc[:, 0] >= -0.5) & (cones_rc[:, 0] < n_b - 0.5)
                & (cones_rc[:, 1] >= -0.5) & (cones_rc[:, 1] < n_a - 0.5))
    area_mm2 = field_um[0] * field_um[1] * 1e-6
    truth = {
        "seed": int(seed),
        "shape_px": [int(n_repeats), n_b, n_d, n_a],
        "geometry": {"bscan_um_per_px": um_r, "depth_um_per_px": geom.depth_um_per_px, "aline_um_per_px": um_c},
        "eccentricity_deg": ecc,
        "location_deg": list(acq.location_deg),
        "axial_length_mm": float(axial_length_mm),
        "psf_fwhm_um": {"lateral": float(lateral_psf_fwhm_um), "axial": float(axial_psf_fwhm_um)},
        "enface_orientation": "col = +horizontal (temporal), row = +vertical (superior)",
        "motion_convention": "observed[r, b](z, a) = true[b](z - dz, a - da), (dz, da) = motion_px[r][b]",
        "cones": {
            "positions_rc": cones_rc[in_field].round(4).tolist(),
            "reflectivity": isos[in_field].round(4).tolist(),
            "reflectivity_cost": cost[in_field].round(4).tolist(),
            "missing": missing[in_field].tolist(),
            "true_density_cells_per_mm2": float(in_field.sum() / area_mm2),
            "visible_density_cells_per_mm2": float((in_field & ~missing).sum() / area_mm2),
            "curcio_density_cells_per_mm2": density,
            "spacing_um": spacing,
            "disorder": float(cone_disorder),
        },
        "rpe": _rpe_truth(scene, (n_b, n_a), (um_r, um_c), area_mm2),
        "vessels": _vessel_truth(scene, surfaces, (n_b, n_a), retina),
        "nerve_fiber_bundles": bundles.centrelines_rc(field_px=(n_b, n_a), um_per_px_rc=(um_r, um_c)),
        "nerve_fiber_orientation_rad": bundles.orientation_rad,
        "fovea_rc": [float(fovea_rc[0]), float(fovea_rc[1])],
        "motion_px": motion.round(5).tolist(),
        "dim_bscans": [[int(r), int(b)] for r, b in zip(*np.nonzero(dim))],
        "layers_mean_depth_px": {k: float(v.mean()) for k, v in surfaces.items()},
        "snr_db": float(snr_db),
        "static_speckle_correlation": float(static_speckle_correlation),
        "anatomy": None if anatomy is None else {
            "spacing_um": anatomy.spacing_um, "inner_scale": anatomy.inner_scale,
            "reflectivity_gain": anatomy.reflectivity_gain, "focus": anatomy.focus,
            "depth_of_focus_um": anatomy.depth_of_focus_um, "tilt_deg": anatomy.tilt_deg},
    }
    return Phantom(acquisition=acq, geometry=geom, volumes=volumes, truth=truth,
                   surfaces_px={k: surfaces[k] for k in SURFACE_NAMES}, motion_px=motion, scene=scene)


def _rpe_truth(scene: PhantomScene, field_px, um_per_px_rc, area_mm2) -> dict:
    rc = scene.rpe.centres_um / np.array(um_per_px_rc) - 0.5
    inside = (rc[:, 0] >= -0.5) & (rc[:, 0] < field_px[0] - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] < field_px[1] - 0.5)
    return {"positions_rc": rc[inside].round(4).tolist(),
            "true_density_cells_per_mm2": float(inside.sum() / area_mm2),
            "spacing_um": scene.rpe.spacing_um}


def _vessel_truth(scene: PhantomScene, surfaces, field_px, retina) -> list[dict]:
    out = []
    for plexus, segments in scene.capillaries.items():
        for seg in segments:
            pts = seg["points_rc"]
            inside = ((pts[:, 0] >= -0.5) & (pts[:, 0] < field_px[0] - 0.5)
                      & (pts[:, 1] >= -0.5) & (pts[:, 1] < field_px[1] - 0.5))
            if not inside.any():
                continue
            surf = retina.surfaces_px(pts[inside, 0], pts[inside, 1])
            depth = float(np.mean(scene.plexus_depth_px(surf, plexus)))
            keep = np.unique(np.r_[np.arange(0, len(pts), 3), len(pts) - 1])
            out.append({"plexus": plexus, "centerline_rc": pts[keep].round(3).tolist(),
                        "depth_px": depth, "diameter_um": seg["diameter_um"]})
    return out


def write_phantom(out_folder: str | Path, phantom: Phantom, *, overwrite: bool = False) -> Path:
    """Write the phantom as a case folder plus its ground truth, atomically.

    The folder holds ``case.json`` and ``vol_XX.tif`` (written by
    ``aooct_core.io.write_case``), ``truth.json`` (``phantom.truth``) and
    ``truth_surfaces.npz`` (full motion-free surfaces in px, and ``motion_px``).
    Everything is first written to a hidden sibling folder and then renamed into
    place, so a crash never leaves a case without its truth.

    Parameters
    ----------
    out_folder : str or Path
        Destination case folder.
    phantom : Phantom
    overwrite : bool
        Replace an existing, different folder; an identical phantom already there is
        left as is.

    Returns
    -------
    pathlib.Path
        The case folder.

    Raises
    ------
    aooct_core.io.CaseExistsError
        ``out_folder`` holds something else and ``overwrite`` is False.
    """
    from aooct_core.io import CaseExistsError, case_content_hash, commit_case_folder, write_case

    folder = Path(out_folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise CaseExistsError(folder, "exists and is not a folder — remove it or choose another folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.phantom-{uuid.uuid4().hex}"
    truth_bytes = json.dumps(phantom.truth, separators=(",", ":")).encode()

    def same_phantom(old: Path, new: Path) -> bool:
        return (case_content_hash(old) == case_content_hash(new)
                and (old / "truth.json").read_bytes() == truth_bytes)

    try:
        write_case(tmp, phantom.acquisition, phantom.volumes)
        (tmp / "truth.json").write_bytes(truth_bytes)
        with (tmp / "truth_surfaces.npz").open("wb") as fh:
            np.savez_compressed(fh, motion_px=phantom.motion_px, **phantom.surfaces_px)
        commit_case_folder(tmp, folder, overwrite=overwrite, same=same_phantom,
                           overwrite_hint="pass overwrite=True (aooct phantom --overwrite) "
                                          "or choose another folder")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder
