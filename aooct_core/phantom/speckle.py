"""Fully developed speckle with a grain matched to the system point-spread function.

Model
-----
The observed intensity of one repeat is ``I = R * S + noise`` where ``R`` is the
PSF-blurred reflectivity and ``S`` an independent speckle field per repeat.
``S = |h_a * w|^2 / mean`` with ``w`` circular complex white Gaussian noise and
``h_a`` the *amplitude* PSF: a Gaussian with SD ``sqrt(2)`` times that of the
intensity PSF (an intensity PSF of FWHM ``F`` has SD ``F / 2.355``). ``S`` is then
exponentially distributed with mean 1 and contrast (SD / mean) 1 — fully developed
speckle (Goodman) — and its grain equals the resolution cell, as in real OCT.

In the phantom, the speckle multiplies the diffuse tissue reflectivity (layers,
NFL bundles, RPE, choroid, capillaries). Two physically motivated exceptions,
applied by ``PhantomScene.render``: cone IS/OS and COST reflections come from a
single reflector per resolution cell and are therefore not speckled — they
scintillate between repeats instead (Gamma factor, CV 0.3); and capillary signal
gets one more independent exponential factor per repeat (moving blood), so its
inter-repeat decorrelation exceeds that of static tissue, as OCT angiography
assumes.

Averaging ``N`` independent repeats gives a sum of exponentials (a Gamma(N)
variable), whose contrast is exactly ``1 / sqrt(N)``; averaging over a region also
averages neighbouring grains, so measured contrasts can only fall further.

Partly static speckle (``static_speckle_correlation`` ρ of ``make_phantom``). Real
repeats share part of their speckle: the scatterers of static tissue stay put, only
eye motion, tissue dynamics and noise change the pattern between repeats. With
ρ > 0 the tissue's complex amplitude is ``a_r = sqrt(m) c + sqrt(1 - m) n_r`` with
``m = sqrt(ρ)``: ``c`` a tissue-fixed field that moves with the eye (shifted with
each B-scan's motion), ``n_r`` independent per repeat. For circular Gaussian fields
the intensity correlation between two repeats is ``m**2 = ρ``, so the contrast of the
average of ``N`` registered repeats is ``C(1) * sqrt((1 + (N - 1) ρ) / N)`` —
falling as ``1 / sqrt(N)`` at first, then levelling off at ``C(1) sqrt(ρ)``. Blood
then decorrelates fully (its own independent speckle per repeat), which is the
contrast OCT angiography measures. ρ near 0 models volume repeats seconds apart
with residual sub-resolution motion; ρ around 0.8-0.95 models B-scan repeats a few
ms apart (the OCTA regime).

References
----------
.. [1] Goodman JW. "Speckle Phenomena in Optics", Roberts & Co. (2007), ch. 3.
.. [2] Schmitt JM, Xiang SH, Yung KM. "Speckle in optical coherence tomography."
       J Biomed Opt 4:95-105 (1999).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["speckle_field", "speckle_contrast", "static_speckle_spectrum",
           "partially_correlated_speckle", "averaged_speckle_contrast", "FWHM_TO_SIGMA"]

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def speckle_field(shape: tuple[int, ...], *, psf_fwhm_px: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
    """Exponential (intensity) speckle of mean 1 with grain matched to the PSF.

    Parameters
    ----------
    shape : tuple of int
        Output shape, e.g. ``(n_bscans, n_depth, n_alines)``.
    psf_fwhm_px : tuple of float
        Intensity-PSF FWHM in px along each axis (same length as ``shape``).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    numpy.ndarray, float32, shape ``shape``
        Speckle multiplier, mean 1, pointwise exponentially distributed.

    Examples
    --------
    >>> s = speckle_field((64, 64), psf_fwhm_px=(2.0, 2.0), rng=np.random.default_rng(0))
    >>> bool(0.9 < s.std() / s.mean() < 1.1)
    True
    """
    if len(psf_fwhm_px) != len(shape):
        raise ValueError(f"psf_fwhm_px needs one FWHM per axis of shape {shape}; got {psf_fwhm_px!r}")
    if any(not (f >= 0 and math.isfinite(f)) for f in psf_fwhm_px):
        raise ValueError(f"psf_fwhm_px must be finite and >= 0 px; got {psf_fwhm_px!r}")
    re, im = _amplitude_field(shape, psf_fwhm_px, rng)
    intensity = re * re
    intensity += im * im
    intensity /= np.float32(intensity.mean(dtype=np.float64))
    return intensity


def _amplitude_field(shape, psf_fwhm_px, rng) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts (float32) of white circular Gaussian noise filtered by the
    amplitude PSF (SD sqrt(2) x the intensity PSF's)."""
    sigma_amp = [math.sqrt(2.0) * f * FWHM_TO_SIGMA for f in psf_fwhm_px]
    re = rng.standard_normal(shape, dtype=np.float32)
    im = rng.standard_normal(shape, dtype=np.float32)
    # Periodic boundaries keep the statistics identical at the volume edges.
    ndimage.gaussian_filter(re, sigma_amp, output=re, mode="wrap", truncate=3.0)
    ndimage.gaussian_filter(im, sigma_amp, output=im, mode="wrap", truncate=3.0)
    return re, im


def _filtered_complex_noise(shape, psf_fwhm_px, rng) -> np.ndarray:
    """Circular complex Gaussian field of unit mean power, correlated over the amplitude PSF."""
    re, im = _amplitude_field(shape, psf_fwhm_px, rng)
    field = re + 1j * im
    field /= np.sqrt(np.mean(np.abs(field) ** 2, dtype=np.float64))
    return field.astype(np.complex64)


def static_speckle_spectrum(shape: tuple[int, int, int], *, psf_fwhm_px: tuple[float, float, float],
                            rng: np.random.Generator) -> np.ndarray:
    """Spectrum of the tissue-fixed speckle amplitude, ready to be shifted per B-scan.

    Parameters
    ----------
    shape : tuple of int
        ``(n_bscans, n_depth, n_alines)``.
    psf_fwhm_px : tuple of float
        Intensity-PSF FWHM in px along each axis.
    rng : numpy.random.Generator
        Source of the static scatterers (one per case, shared by all repeats).

    Returns
    -------
    numpy.ndarray, complex64, shape ``shape``
        2-D FFT over (depth, A-line) of a unit-power complex amplitude field.
    """
    if len(shape) != 3 or len(psf_fwhm_px) != 3:
        raise ValueError(f"static speckle needs a 3-D shape and 3 FWHMs; got {shape}, {psf_fwhm_px}")
    return np.fft.fft2(_filtered_complex_noise(shape, psf_fwhm_px, rng), axes=(1, 2)).astype(np.complex64)


def partially_correlated_speckle(static_spectrum: np.ndarray, motion_px: np.ndarray, *,
                                 correlation: float, psf_fwhm_px: tuple[float, float, float],
                                 rng: np.random.Generator) -> np.ndarray:
    """Intensity speckle of one repeat whose static part moves with the eye.

    Parameters
    ----------
    static_spectrum : numpy.ndarray, complex64, shape (n_bscans, n_depth, n_alines)
        From :func:`static_speckle_spectrum` (the same for every repeat of a case).
    motion_px : numpy.ndarray, shape (n_bscans, 2)
        ``(depth, aline)`` shift of each B-scan's content in px (observed(z, a) =
        true(z - dz, a - da)); applied exactly as a Fourier phase ramp (periodic field).
    correlation : float
        Intensity correlation ρ in [0, 1) between two repeats of the same tissue point.
    psf_fwhm_px : tuple of float
        Intensity-PSF FWHM in px along each axis (grain of the independent part).
    rng : numpy.random.Generator
        Source of this repeat's independent part.

    Returns
    -------
    numpy.ndarray, float32, shape of ``static_spectrum``
        Speckle multiplier, mean 1, pointwise exponentially distributed.
    """
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"correlation must be in [0, 1); got {correlation!r}")
    if static_spectrum is None or np.ndim(static_spectrum) != 3:
        raise ValueError("static_spectrum must be the 3-D array from static_speckle_spectrum(); "
                         f"got {type(static_spectrum).__name__}")
    n_b, n_d, n_a = static_spectrum.shape
    motion = np.asarray(motion_px, dtype=np.float64)
    if motion.shape != (n_b, 2):
        raise ValueError(f"motion_px must have shape ({n_b}, 2); got {motion.shape}")
    # The shift's phase ramp is separable: a depth factor times an A-line factor per B-scan.
    ramp_z = np.exp(-2j * np.pi * np.fft.fftfreq(n_d)[None, :, None] * motion[:, 0, None, None])
    ramp_a = np.exp(-2j * np.pi * np.fft.fftfreq(n_a)[None, None, :] * motion[:, 1, None, None])
    static = np.fft.ifft2(static_spectrum * ramp_z.astype(np.complex64) * ramp_a.astype(np.complex64),
                          axes=(1, 2))
    m = math.sqrt(correlation)
    field = np.float32(math.sqrt(m)) * static.astype(np.complex64)
    field += np.float32(math.sqrt(1.0 - m)) * _filtered_complex_noise(static_spectrum.shape, psf_fwhm_px, rng)
    intensity = (field.real ** 2 + field.imag ** 2).astype(np.float32)
    intensity /= np.float32(intensity.mean(dtype=np.float64))
    return intensity


def averaged_speckle_contrast(n_repeats, *, single_contrast: float, correlation: float = 0.0):
    """Contrast the model predicts for the average of ``n_repeats`` registered repeats.

    ``C(N) = C(1) * sqrt((1 + (N - 1) ρ) / N)`` for a pairwise intensity correlation ρ
    between repeats (ρ = 0: the ``1 / sqrt(N)`` law of independent speckle).

    Examples
    --------
    >>> round(averaged_speckle_contrast(4, single_contrast=1.0), 3)
    0.5
    >>> round(averaged_speckle_contrast(4, single_contrast=1.0, correlation=0.5), 3)
    0.791
    """
    n = np.asarray(n_repeats, dtype=np.float64)
    if np.any(n < 1):
        raise ValueError(f"n_repeats must be >= 1; got {n_repeats!r}")
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1]; got {correlation!r}")
    out = single_contrast * np.sqrt((1.0 + (n - 1.0) * correlation) / n)
    return float(out) if out.ndim == 0 else out


def speckle_contrast(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Speckle contrast ``SD / mean`` of an intensity image inside an optional mask.

    Parameters
    ----------
    image : numpy.ndarray
        Linear intensity (any real dtype, any shape).
    mask : numpy.ndarray of bool, optional
        Same shape as ``image``; only True pixels are used.

    Returns
    -------
    float
        Contrast; 1 for fully developed speckle on a uniform reflector.
    """
    values = np.asarray(image, dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(mask, dtype=bool)]
    if values.size < 2:
        raise ValueError("speckle_contrast needs at least 2 pixels; widen the mask")
    mean = values.mean()
    if mean <= 0:
        raise ValueError(f"speckle_contrast needs a positive mean intensity; got {mean:g}")
    return float(values.std() / mean)
