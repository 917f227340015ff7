"""``preprocess_case``: raw repeated volumes → corrected average, layers, en face, OCTA.

Order of the steps and why:

1. motion estimate (within and across repeats) and weighted average of the corrected
   repeats, with OCTA decorrelation between consecutive corrected repeats;
2. normalization of the average (B-scan drift, robust percentile scale, still linear);
3. layer surfaces on the average (speckle-reduced, so the ridges are clean);
4. lateral refinement from the cone-lattice phase of the IS/OS + COST slabs (drift) and
   from the isotropy of its spectrum (the linear part of the drift, a shear), which needs
   the surfaces, then the average is recomputed with the refined shifts;
5. en face slabs and OCTA slabs relative to the surfaces;
6. optional single-volume denoising of the average (``denoise``; off by default), after
   the layers, the lattice step and the cone slabs, which all read the un-denoised average
   (a denoiser smooths away cones ~3 px apart); the diffuse-tissue slabs (RPE, NFL,
   plexuses) are re-projected from the denoised volume;
7. quality numbers: speckle contrast, SNR; the lateral motion residual is re-estimated
   after step 4 when the lattice phase corrected the rows.

Everything stays on the chosen device until the end; only small arrays (shifts,
per-B-scan statistics) visit the host in between.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field, replace

import numpy as np

from aooct_core.geometry import Geometry
from aooct_core.preprocessing.backend import get_backend, synchronize, to_host
from aooct_core.preprocessing.averaging import average_repeats
from aooct_core.preprocessing.denoise import DENOISE_METHODS, DENOISED_SLABS, denoise_volume
from aooct_core.preprocessing.enface import enface_slabs, slab_bounds_px, slab_projection
from aooct_core.preprocessing.ilm import MAX_ILM_TO_ISOS_UM, MIN_VITREOUS_PX
from aooct_core.preprocessing.lattice import (ROW_PHASE_SIGMA_ROWS, dejitter_rows, lattice_row_shifts,
                                               lattice_shear)
from aooct_core.preprocessing.layers import segment_layers
from aooct_core.preprocessing.normalization import (normalize_volume, snr_db, snr_lower_bound_db,
                                                     speckle_contrast)
from aooct_core.preprocessing.motion_report import padded_columns
from aooct_core.preprocessing.registration import MotionReport, estimate_motion_details, estimate_motion
from aooct_core.preprocessing.tracking import fast_residual

__all__ = ["Preprocessed", "preprocess_case", "speckle_mask"]

#: Rows left between the vitreous noise rows and the surface below them (snr_db's margin).
SNR_MARGIN_PX = 4


@dataclass
class Preprocessed:
    """Result of :func:`preprocess_case` (see the contract in docs).

    Attributes
    ----------
    volume : float32 (n_bscans, n_depth, n_alines)
        Motion-corrected, repeat-averaged, normalized linear intensity (not flattened).
    surfaces_px : dict str → float32 (n_bscans, n_alines)
        "ILM", "ISOS", "COST", "RPE" depth in px (ILM all-NaN when it is above the depth
        window: no vitreous in view, see :mod:`~aooct_core.preprocessing.ilm`).
    enface : dict str → float32 (n_bscans, n_alines)
        "isos", "cost", "rpe", "nfl", "svp", "dvp", "octa_svp", "octa_dvp" (OCTA all-NaN
        for a single repeat; the inner-retina slabs all-NaN without the ILM).
    motion : MotionReport
    speckle_contrast : float
        Median local SD/mean in the inner-retina slab (see :func:`speckle_mask`); NaN
        without the ILM.
    snr_db : float
        Mean RPE intensity over the vitreous noise floor, dB. Without the ILM and the
        vitreous in view, a lower bound (:func:`~aooct_core.preprocessing.normalization.snr_lower_bound_db`;
        ``snr_is_lower_bound``).
    registration_ok : bool
    timings_s : dict str → float
        Wall time of each step (device synchronised), s.
    input_scale : str
        The scale the volumes were stored in ("intensity", "amplitude" or "db"), declared or
        detected; they were converted to intensity.
    snr_is_lower_bound : bool
        ``snr_db`` is a lower bound (no vitreous in view).
    padded_fraction : float
        Share of en face pixels in columns that hold edge-replicated pixels of at least one
        averaged repeat (:func:`~aooct_core.preprocessing.motion_report.padded_columns` of
        the final shifts): the motion there is larger than the field it was imaged in.
        Judged by the ``padded_columns`` QC check.
    """

    volume: np.ndarray
    surfaces_px: dict
    enface: dict
    motion: MotionReport
    speckle_contrast: float
    snr_db: float
    registration_ok: bool
    timings_s: dict = field(default_factory=dict)
    input_scale: str = "intensity"
    snr_is_lower_bound: bool = False
    padded_fraction: float = 0.0


def speckle_mask(surfaces: dict, shape: tuple[int, int, int], *, device: str = "cpu"):
    """Voxels of the mid inner retina (30-45 % of ILM→IS/OS): few vessels, no bright bands."""
    xp = get_backend(device).xp
    ilm = surfaces["ILM"]
    thickness = surfaces["ISOS"] - ilm
    z = xp.arange(shape[1], dtype=xp.float32)[None, :, None]
    return (z >= (ilm + 0.30 * thickness)[:, None, :]) & (z <= (ilm + 0.45 * thickness)[:, None, :])


def _band_speckle_contrast(volume, surfaces: dict, *, device: str) -> float:
    # Only the depth range of the band is filtered (the window is one px deep, so
    # cropping in depth changes nothing) — on 512³ this avoids two full-volume filters.
    xp = get_backend(device).xp
    ilm = surfaces["ILM"]
    thickness = surfaces["ISOS"] - ilm
    z0 = max(0, int(np.floor(float((ilm + 0.30 * thickness).min()))))
    z1 = min(volume.shape[1], int(np.ceil(float((ilm + 0.45 * thickness).max()))) + 1)
    if z1 <= z0:
        raise ValueError("speckle band is empty: ILM and IS/OS surfaces are not in order; check the layers")
    shifted = {"ILM": ilm - np.float32(z0), "ISOS": surfaces["ISOS"] - np.float32(z0)}
    sub = volume[:, z0:z1]
    mask = speckle_mask(shifted, sub.shape, device=device)
    return speckle_contrast(xp.ascontiguousarray(sub), mask=mask, device=device)


def preprocess_case(volumes, geometry: Geometry, *, device: str = "cpu", reference: int | None = None,
                    search_px: tuple[int, int] = (12, 12), within_volume: bool | None = None,
                    high_percentile: float = 99.5, column_step: int = 4, lattice: bool = True,
                    denoise: str | None = None, return_on_device: bool = False,
                    scale: str = "intensity") -> Preprocessed:
    """Motion-correct, register, average, normalize, segment and project a case.

    Parameters
    ----------
    volumes : array (n_repeats, n_bscans, n_depth, n_alines), any real dtype
        Linear intensity of the repeated volumes of one location (NumPy, memmap or —
        with ``device="cuda"`` — CuPy). uint16 is fine and is the cheapest to upload.
    geometry : Geometry
        Sampling in µm/px.
    device : {"cpu", "cuda"}
    reference : int or None
        Reference repeat; None picks the least-moving one.
    search_px, within_volume :
        See :func:`~aooct_core.preprocessing.registration.estimate_motion`.
    high_percentile :
        See :func:`~aooct_core.preprocessing.normalization.normalize_volume`.
    column_step :
        See :func:`~aooct_core.preprocessing.layers.segment_layers`.
    lattice : bool
        Refine the lateral shifts with the cone-lattice phase of the IS/OS + COST en face
        image (:func:`~aooct_core.preprocessing.lattice.lattice_row_shifts`) and re-average;
        applied only when its two estimates agree (``motion.lattice_agreement``).
    denoise : {None, "nl_means", "bm4d"}
        Single-volume speckle denoiser (:func:`~aooct_core.preprocessing.denoise.denoise_volume`,
        CPU only) applied to the final average. ``volume`` and the "rpe", "nfl", "svp" and
        "dvp" en face images then come from the denoised volume; the cone slabs ("isos",
        "cost"), the layers and the OCTA images do not. None (default) skips it.
    return_on_device : bool
        Keep ``volume``, surfaces and en face images on the device (CuPy arrays) —
        for benchmarks that time the download separately.
    scale : {"intensity", "amplitude", "db", "auto"}
        How ``volumes`` are stored (:mod:`~aooct_core.preprocessing.scale`); they are
        converted to intensity first. "auto" tells it from the speckle statistics of the
        first repeat (``ValueError`` when they fit no scale). Recorded in ``input_scale``.

    Returns
    -------
    Preprocessed

    Examples
    --------
    >>> from aooct_core.phantom import make_phantom  # doctest: +SKIP
    >>> ph = make_phantom(seed=0, shape_px=(32, 256, 48))  # doctest: +SKIP
    >>> out = preprocess_case(ph.volumes, ph.geometry)  # doctest: +SKIP
    >>> out.volume.shape  # doctest: +SKIP
    (32, 256, 48)
    """
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry must be an aooct_core.geometry.Geometry; got {type(geometry).__name__}")
    if getattr(volumes, "ndim", 0) == 3:
        raise ValueError(f"volumes must be 4-D (repeat, bscan, depth, aline); got 3-D shape {volumes.shape} "
                         "— pass volume[None] for a single volume")
    if denoise is not None and (denoise not in DENOISE_METHODS or device != "cpu"):
        raise ValueError(f"denoise must be None or one of {DENOISE_METHODS} and runs on the CPU only; "
                         f"got denoise={denoise!r} with device={device!r}")
    from aooct_core.preprocessing.scale import SCALES, detect_scale, to_intensity

    if scale not in (*SCALES, "auto"):
        raise ValueError(f"scale must be one of {(*SCALES, 'auto')}; got {scale!r}")
    if scale == "auto":
        scale, _evidence = detect_scale(to_host(volumes[0]))
    if scale != "intensity":
        if device != "cpu":
            raise ValueError(f"volumes stored as {scale} are converted on the CPU; convert them to "
                             "intensity first or use device='cpu'")
        volumes = to_intensity(volumes, scale)
    timings = {}
    clock = [time.perf_counter()]

    def tick(name):
        synchronize(device)
        now = time.perf_counter()
        timings[name] = now - clock[0]
        clock[0] = now

    # estimate_motion's own defaults, through its body, which also hands back the
    # across-repeat shifts the residual is re-estimated from after the lattice step.
    options = {k: v.default for k, v in inspect.signature(estimate_motion).parameters.items()
               if v.kind is inspect.Parameter.KEYWORD_ONLY}
    options.update(reference=reference, device=device, search_px=search_px, within_volume=within_volume,
                   return_average=True)
    report, average, decor, (e_lateral, usable) = estimate_motion_details(volumes, geometry, **options)
    tick("motion_and_average")
    volume, _ = normalize_volume(average, device=device, high_percentile=high_percentile)
    del average
    tick("normalize")
    layer_timings: dict = {}
    surfaces = segment_layers(volume, depth_um_per_px=geometry.depth_um_per_px, device=device,
                              column_step=column_step, timings=layer_timings)
    tick("layers")
    timings.update({f"layers.{k}": v for k, v in layer_timings.items()})
    if lattice:
        # Cone-lattice phase gives back the mean lateral jitter the repeats cannot see;
        # the surfaces barely move with a sub-pixel lateral change, so they are kept.
        cones = sum(to_host(slab_projection(volume, *slab_bounds_px(name, surfaces,
                                                                     depth_um_per_px=geometry.depth_um_per_px),
                                            device=device)) for name in ("isos", "cost"))
        row_shift, agreement = lattice_row_shifts(cones)
        # The linear part of the mean drift (a shear of the en face image) is invisible
        # to the phase; the isotropy of the lattice gives it back (lattice_shear).
        # Measured on the en face image with the row correction already applied (row-wise
        # interpolation, no re-average): uncorrected drift smears the lattice peaks.
        rows = np.arange(cones.shape[0], dtype=np.float32)
        dejittered = dejitter_rows(cones, row_shift)
        shear_px, _ = lattice_shear(dejittered, um_per_px=geometry.enface_um_per_px)
        correction = row_shift + np.float32(shear_px) * (rows - rows.mean())
        shifts = report.shifts_px.copy()
        shifts[..., 1] += correction[None, :]
        report = replace(report, shifts_px=shifts, lattice_agreement=agreement)
        if np.any(row_shift) and volumes.shape[0] >= 2:
            # The row phases took out the slow part of the mean-frame motion (the
            # estimate_motion residual); what is left is its fast part and the matching
            # noise, both visible in the fast part of the across-repeat shifts.
            lateral_px = fast_residual(e_lateral, usable, sigma_px=ROW_PHASE_SIGMA_ROWS)
            report = replace(report, residual_lateral_um_rms=float(lateral_px * geometry.aline_um_per_px))
        if np.any(correction):
            average, decor = average_repeats(volumes, shifts, weights=report.weights, device=device,
                                             decorrelation=decor is not None)
            volume, _ = normalize_volume(average, device=device, high_percentile=high_percentile)
            del average
        tick("lattice")
    enface = enface_slabs(volume, surfaces, depth_um_per_px=geometry.depth_um_per_px,
                          decorrelation=decor, device=device)
    del decor
    tick("enface_octa")
    if denoise is not None:
        volume = denoise_volume(volume, method=denoise)
        # Only the diffuse-tissue slabs are re-projected from the denoised volume: cones,
        # ~3 px apart, are smoothed away by the denoiser (bench/bench_denoise.py).
        enface.update({name: slab_projection(volume, *slab_bounds_px(name, surfaces,
                                                                     depth_um_per_px=geometry.depth_um_per_px),
                                             device=device)
                       for name in DENOISED_SLABS})
        tick("denoise")
    # Both rest on the ILM. Without it (all-NaN) the speckle band is not measured (NaN).
    # The SNR is then measured over the rows too far above the IS/OS to be retina, when
    # the window reaches them (the ILM lost in noise), else only bounded from below by the
    # darkest rows (snr_is_lower_bound) — never measured on tissue as if it were vitreous.
    xp = get_backend(device).xp
    ilm_in_view = bool(to_host(xp.isfinite(surfaces["ILM"]).all()))
    contrast = _band_speckle_contrast(volume, surfaces, device=device) if ilm_in_view else float("nan")
    retina_top = surfaces["ISOS"] - np.float32(MAX_ILM_TO_ISOS_UM / geometry.depth_um_per_px)
    snr_bound = False
    if ilm_in_view:
        snr = snr_db(volume, surfaces["RPE"], surfaces["ILM"], margin_px=SNR_MARGIN_PX, device=device)
    elif float(to_host(retina_top.min())) >= SNR_MARGIN_PX + MIN_VITREOUS_PX:
        snr = snr_db(volume, surfaces["RPE"], retina_top, margin_px=SNR_MARGIN_PX, device=device)
    else:
        above_isos = float(to_host(xp.median(surfaces["ISOS"]))) - 20.0 / geometry.depth_um_per_px
        snr = snr_lower_bound_db(volume, surfaces["RPE"], above_isos, device=device)
        snr_bound = True
    tick("quality")
    if not return_on_device:
        volume = to_host(volume)
        surfaces = {k: to_host(v) for k, v in surfaces.items()}
        enface = {k: to_host(v) for k, v in enface.items()}
        tick("download")
    padded = padded_columns(report.shifts_px, report.weights, volumes.shape[3])
    return Preprocessed(volume=volume, surfaces_px=surfaces, enface=enface, motion=report,
                        speckle_contrast=contrast, snr_db=snr, registration_ok=report.registration_ok,
                        timings_s=timings, input_scale=scale, snr_is_lower_bound=snr_bound,
                        padded_fraction=float(padded.sum() / (padded.shape[0] * volumes.shape[3])))

