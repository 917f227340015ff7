"""Classical baselines, chosen explicitly and reported beside the networks.

* :func:`log_cell_detector` — Laplacian-of-Gaussian blob detector whose scale comes from
  the mosaic's own spacing (Yellott's ring in the power spectrum);
* :func:`frangi_vessels` — Frangi vesselness + Otsu threshold.

These are never called as a fallback when a network is missing; callers select them.

References
----------
.. [1] Lindeberg T. "Feature detection with automatic scale selection." IJCV 30:79-116 (1998).
.. [2] Yellott JI. "Spectral analysis of spatial sampling by photoreceptors: topological
       disorder prevents aliasing." Vision Res 22:1205-1210 (1982).
.. [3] Frangi AF et al. "Multiscale vessel enhancement filtering." MICCAI 1998, 130-137.
.. [4] Otsu N. "A threshold selection method from gray-level histograms." IEEE SMC 9:62-66 (1979).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ml.data import normalize_image

__all__ = ["estimate_spacing_px", "log_cell_detector", "frangi_vessels"]


def estimate_spacing_px(image: np.ndarray, *, min_px: float = 3.0, max_px: float = 40.0,
                        return_prominence: bool = False):
    """Cell spacing in px from the peak of the radially averaged power spectrum.

    For a triangular mosaic of spacing ``d`` the first spectral ring lies at
    ``f = 2 / (√3 d)`` cycles/px, hence ``d = 2 / (√3 f)``. With ``return_prominence``
    also returns the ring's height over the median of the (f²-whitened) profile in the
    search band; a mosaic gives a clear ring (> 3), noise does not.
    """
    img = normalize_image(image).astype(np.float64)
    img = img - img.mean()
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(img * win))) ** 2
    fr = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fc = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    radius = np.hypot(fr, fc)
    bins = np.linspace(0, 0.5, max(h, w) // 2 + 1)
    idx = np.digitize(radius.ravel(), bins)
    prof = np.bincount(idx, weights=power.ravel(), minlength=len(bins) + 1)[1:len(bins)]
    cnt = np.bincount(idx, minlength=len(bins) + 1)[1:len(bins)]
    prof = prof / np.maximum(cnt, 1)
    freqs = 0.5 * (bins[:-1] + bins[1:])
    # Remove the 1/f background so the ring, not the DC tail, is the maximum.
    ok = (freqs >= 2 / (np.sqrt(3) * max_px)) & (freqs <= 2 / (np.sqrt(3) * min_px))
    if not ok.any():
        raise ValueError(f"image {image.shape} too small to estimate a spacing in [{min_px}, {max_px}] px")
    flat = prof * freqs ** 2
    i_peak = int(np.argmax(flat[ok]))
    spacing = float(2 / (np.sqrt(3) * freqs[ok][i_peak]))
    if not return_prominence:
        return spacing
    # A peak on the band's high-frequency edge is the noise floor rising, not a ring.
    edge = i_peak == int(ok.sum()) - 1
    prominence = 0.0 if edge else float(flat[ok][i_peak] / (np.median(flat[ok]) + 1e-30))
    return spacing, prominence


def log_cell_detector(image: np.ndarray, *, spacing_px: float | None = None,
                      polarity: str = "bright", threshold: float = 0.0) -> np.ndarray:
    """LoG blob detector → 0-based ``(row, col)`` float32 centres (N, 2).

    Parameters
    ----------
    image : ndarray (row, col)
    spacing_px : float, optional
        Expected cell spacing; estimated with :func:`estimate_spacing_px` if None.
    polarity : {"bright", "dark"}
        Bright cells (confocal cones) or dark centres (RPE cells).
    threshold : float
        Minimum scale-normalised LoG response (in units of the image's response SD).
    """
    if polarity not in ("bright", "dark"):
        raise ValueError(f"polarity must be 'bright' or 'dark'; got {polarity!r}")
    img = normalize_image(image).astype(np.float64)
    if polarity == "dark":
        img = -img
    d = estimate_spacing_px(image) if spacing_px is None else float(spacing_px)
    sigma = max(d / (2 * np.sqrt(2)), 0.7)  # blob radius ≈ d/2 → σ = r/√2
    resp = -ndi.gaussian_laplace(img, sigma) * sigma ** 2
    resp = (resp - resp.mean()) / (resp.std() + 1e-12)
    size = max(3, int(round(0.6 * d)) | 1)
    peaks = (resp == ndi.maximum_filter(resp, size=size, mode="nearest")) & (resp > threshold)
    rr, cc = np.nonzero(peaks)
    return np.stack([rr, cc], axis=1).astype(np.float32)


def frangi_vessels(image: np.ndarray, *, sigmas: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0),
                   black_ridges: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Frangi vesselness and its Otsu-thresholded mask: ``(mask bool, vesselness float32)``."""
    from skimage.filters import frangi, threshold_otsu
    img = normalize_image(image)
    v = frangi(img, sigmas=sigmas, black_ridges=black_ridges).astype(np.float32)
    if not np.any(v > 0):
        return np.zeros(img.shape, bool), v
    return v > threshold_otsu(v), v
