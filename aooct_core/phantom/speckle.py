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

__all__ = ["speckle_field", "speckle_contrast", "FWHM_TO_SIGMA"]

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
    sigma_amp = [math.sqrt(2.0) * f * FWHM_TO_SIGMA for f in psf_fwhm_px]
    re = rng.standard_normal(shape, dtype=np.float32)
    im = rng.standard_normal(shape, dtype=np.float32)
    # Periodic boundaries keep the statistics identical at the volume edges.
    ndimage.gaussian_filter(re, sigma_amp, output=re, mode="wrap", truncate=3.0)
    ndimage.gaussian_filter(im, sigma_amp, output=im, mode="wrap", truncate=3.0)
    intensity = re * re
    intensity += im * im
    intensity /= np.float32(intensity.mean(dtype=np.float64))
    return intensity


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
