"""Fixational eye motion per B-scan: drift, tremor and microsaccades.

Every B-scan of an AO-OCT volume is acquired in well under a millisecond, so motion
*within* a B-scan is neglected and each B-scan ``b`` of repeat ``r`` gets one rigid
shift ``motion_px[r, b] = (depth_shift_px, aline_shift_px)``.

Sign convention (the one the registration is scored against)
------------------------------------------------------------
``observed[r, b](z, a) = true[b](z - dz, a - da)`` with ``(dz, da) = motion_px[r, b]``:
a feature at depth ``z0`` and A-line ``a0`` of the motion-free frame appears at
``(z0 + dz, a0 + da)`` in the observed B-scan (content moves by ``+motion``, like
``scipy.ndimage.shift(true, motion)``). To undo the motion, shift by ``-motion_px``.

Lateral model (along the A-lines, µm): Brownian drift whose SD over one volume is
``drift_um`` + white tremor of SD ``tremor_um`` + a Poisson number (mean
``microsaccades_per_volume``) of step jumps of 4-12 µm. Axial model: a slow
(cardiac/head) sinusoid of amplitude ``axial_um`` plus tremor. Both are clipped to
``±max_um`` and centred per repeat so the motion-free frame is the mean position.
Magnitudes follow fixational eye-motion reviews (drift ~0.1-0.5 deg/s, tremor
< 1 arcmin, microsaccades 5-30 arcmin, 1-2 per second) scaled to the ~0.1-0.3 s
duration of a volume.

References
----------
.. [1] Martinez-Conde S, Macknik SL, Hubel DH. "The role of fixational eye
       movements in visual perception." Nat Rev Neurosci 5:229-240 (2004).
.. [2] Kocaoglu OP, et al. "Adaptive optics optical coherence tomography at 1 MHz."
       Biomed Opt Express 5:4186-4200 (2014) (axial and lateral motion in AO-OCT).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["simulate_eye_motion_px", "motion_residual"]


def simulate_eye_motion_px(n_repeats: int, n_bscans: int, *, rng: np.random.Generator,
                           depth_um_per_px: float, aline_um_per_px: float,
                           drift_um: float = 8.0, tremor_um: float = 0.5,
                           microsaccades_per_volume: float = 1.0, axial_um: float = 4.0,
                           max_um: float = 15.0) -> np.ndarray:
    """Independent per-B-scan eye motion for each repeat.

    Parameters
    ----------
    n_repeats, n_bscans : int
        Number of repeated volumes and of B-scans per volume.
    rng : numpy.random.Generator
        Source of randomness.
    depth_um_per_px, aline_um_per_px : float
        Sampling used to convert µm to px.
    drift_um, tremor_um, microsaccades_per_volume, axial_um, max_um : float
        Motion magnitudes (see the module docstring); set all to 0 for no motion.

    Returns
    -------
    numpy.ndarray, float32, shape (n_repeats, n_bscans, 2)
        ``(depth_shift_px, aline_shift_px)`` of each observed B-scan relative to the
        motion-free frame; ``observed[r, b] = true[b]`` shifted by it.
    """
    if n_repeats < 1 or n_bscans < 1:
        raise ValueError(f"n_repeats and n_bscans must be >= 1; got {n_repeats}, {n_bscans}")
    for name, value in (("drift_um", drift_um), ("tremor_um", tremor_um), ("axial_um", axial_um),
                        ("microsaccades_per_volume", microsaccades_per_volume), ("max_um", max_um)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    motion = np.zeros((n_repeats, n_bscans, 2), dtype=np.float64)
    t = np.arange(n_bscans) / max(n_bscans - 1, 1)
    for r in range(n_repeats):
        lateral = np.cumsum(rng.normal(0.0, drift_um / math.sqrt(n_bscans), n_bscans))
        lateral += rng.normal(0.0, tremor_um, n_bscans)
        for _ in range(rng.poisson(microsaccades_per_volume)):
            start = rng.integers(1, n_bscans) if n_bscans > 1 else 0
            lateral[start:] += rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 12.0)
        axial = axial_um * np.sin(2 * math.pi * (rng.uniform(0.5, 1.5) * t + rng.uniform()))
        axial += rng.normal(0.0, 0.5 * tremor_um, n_bscans)
        for k, (series, um_per_px) in enumerate(((axial, depth_um_per_px), (lateral, aline_um_per_px))):
            series = series - series.mean()
            series = np.clip(series, -max_um, max_um)
            motion[r, :, k] = series / um_per_px
    return motion.astype(np.float32)


def motion_residual(estimated_px: np.ndarray, true_px: np.ndarray, *, aline_um_per_px: float,
                    common_axial_degree: int | None = None) -> tuple[float, float]:
    """RMS error of estimated eye motion against the phantom's ``motion_px``.

    One constant per repeat and axis is removed first: the motion-free frame is defined
    only up to a per-repeat offset.

    Parameters
    ----------
    estimated_px, true_px : ndarray, shape (n_repeats, n_bscans, 2)
        ``(depth_shift_px, aline_shift_px)`` per B-scan, same convention as
        :func:`simulate_eye_motion_px`.
    aline_um_per_px : float
        A-line spacing, to express the lateral error in µm.
    common_axial_degree : int or None
        When given, also remove the polynomial of this degree (fitted along the B-scans)
        from the *across-repeat mean* of the axial error. With every repeat scanned in the
        same raster direction, that part of the motion is the same signal as a tilt or
        curvature of the retina along the slow axis, so no registration can recover it from
        the data; the within-volume track removes degree 2. The result is the error of the
        part of the axial motion that is observable.

    Returns
    -------
    (axial_px_rms, lateral_um_rms) : tuple of float
    """
    est = np.asarray(estimated_px, dtype=np.float64)
    true = np.asarray(true_px, dtype=np.float64)
    if est.shape != true.shape or est.ndim != 3 or est.shape[2] != 2:
        raise ValueError(f"estimated and true motion must both be (n_repeats, n_bscans, 2); "
                         f"got {est.shape} and {true.shape}")
    err = est - true
    err = err - err.mean(axis=1, keepdims=True)
    if common_axial_degree is not None:
        if common_axial_degree < 0:
            raise ValueError(f"common_axial_degree must be >= 0 or None; got {common_axial_degree}")
        t = np.linspace(-1.0, 1.0, err.shape[1])
        deg = min(common_axial_degree, err.shape[1] - 1)
        common = err[:, :, 0].mean(axis=0)
        err[:, :, 0] -= np.polyval(np.polyfit(t, common, deg), t)[None, :]
    rms = np.sqrt((err ** 2).mean(axis=(0, 1)))
    return float(rms[0]), float(rms[1] * aline_um_per_px)
