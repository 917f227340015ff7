"""Intensity model, drift correction, robust scaling, speckle contrast and SNR.

Intensity model
---------------
Volumes are **linear intensity** ``I ≥ 0`` (proportional to backscattered power, as
produced by the OCT reconstruction: |FFT of the spectral interferogram|²). The log
display scale is ``dB = 10·log10(max(I, floor))`` and back ``I = 10**(dB / 10)``.
Averaging, speckle contrast and OCTA are computed on linear intensity; layer
segmentation works on dB because reflectivity spans several decades.

Normalization keeps intensity linear (scale only, no offset), so speckle contrast and
ratios are unchanged: each B-scan is divided by its smoothed relative brightness
(drift of the AO loop, focus, vignetting across the slow axis), then the whole volume
is divided by its ``high_percentile`` so that bright layers sit near 1.
"""
from __future__ import annotations

import numpy as np

from aooct_core.preprocessing.backend import get_backend, to_device, to_host

__all__ = ["to_db", "from_db", "normalize_volume", "speckle_contrast", "snr_db", "snr_lower_bound_db",
           "robust_percentile"]

_DB_FLOOR = 1e-6


def to_db(intensity, *, floor: float = _DB_FLOOR):
    """Linear intensity → dB (``10·log10``), values below ``floor`` clipped (float32, same device)."""
    xp = get_backend("cuda" if type(intensity).__module__.startswith("cupy") else "cpu").xp
    return (10 * xp.log10(xp.maximum(intensity.astype(xp.float32, copy=False), np.float32(floor)))).astype(xp.float32)


def from_db(db):
    """dB → linear intensity (float32, same device)."""
    xp = get_backend("cuda" if type(db).__module__.startswith("cupy") else "cpu").xp
    return (10 ** (db.astype(xp.float32, copy=False) / np.float32(10))).astype(xp.float32)


def robust_percentile(volume, q: float, *, sample_step: int = 3, device: str = "cpu") -> float:
    """Percentile ``q`` of a strided sub-sample (every ``sample_step``-th voxel per axis).

    Sub-sampling makes this cheap on 512³ volumes and identical on both devices.
    """
    xp = get_backend(device).xp
    vol = to_device(volume, device)
    sample = vol[(slice(None, None, sample_step),) * vol.ndim].astype(xp.float32).ravel()
    return float(to_host(xp.percentile(sample, q)))


def normalize_volume(volume, *, device: str = "cpu", high_percentile: float = 99.5,
                     drift_sigma_bscans: float = 3.0, sample_step: int = 3):
    """Correct B-scan brightness drift and scale so ``high_percentile`` maps to 1.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines), linear intensity, any real dtype
    device : {"cpu", "cuda"}
    high_percentile : float
        Percentile (of a strided sub-sample) that is scaled to 1.
    drift_sigma_bscans : float
        Gaussian smoothing of the per-B-scan mean before it is divided out, B-scans
        (0 = correct every B-scan on its own).

    Returns
    -------
    normalized : float32 (n_bscans, n_depth, n_alines) on ``device``
    gain : ndarray float32 (n_bscans,) host — the factor each B-scan was multiplied by
        before the global scaling.
    """
    if not 50 < high_percentile <= 100:
        raise ValueError(f"high_percentile must be in (50, 100]; got {high_percentile!r}")
    backend = get_backend(device)
    xp = backend.xp
    vol = to_device(volume, device).astype(xp.float32, copy=False)
    means = vol.mean(axis=(1, 2), dtype=xp.float32)
    if drift_sigma_bscans > 0 and vol.shape[0] > 1:
        means = backend.ndimage.gaussian_filter1d(means, drift_sigma_bscans, mode="nearest")
    gain = xp.median(means) / xp.maximum(means, np.float32(1e-30))
    out = vol * gain[:, None, None].astype(xp.float32)
    scale = robust_percentile(out, high_percentile, sample_step=sample_step, device=device)
    if not scale > 0:
        raise ValueError(f"volume has no positive intensity at the {high_percentile}th percentile; "
                         "is it linear intensity (not dB, not all zeros)?")
    out *= np.float32(1.0 / scale)
    return out, to_host(gain).astype(np.float32)


def speckle_contrast(image, *, mask=None, window_px=(3, 1, 9), device: str = "cpu") -> float:
    """Median local speckle contrast ``SD / mean`` of a linear-intensity image.

    Local windows (default 3 B-scans × 1 depth px × 9 A-lines: one depth, so layered
    anatomy does not count as speckle) remove slow reflectivity changes; the median over
    the voxels in ``mask`` is reported. Fully developed speckle has contrast 1 and
    averaging N independent speckle patterns lowers it to ~1/sqrt(N) (Goodman).

    Parameters
    ----------
    image : array (n_bscans, n_depth, n_alines) or 2-D (row, col), linear intensity
    mask : bool array of the same shape or None
    window_px : tuple of int
        Window size per axis; for 2-D images the last two entries are used.

    Returns
    -------
    float
    """
    backend = get_backend(device)
    xp = backend.xp
    img = to_device(image, device).astype(xp.float32, copy=False)
    size = tuple(window_px[-img.ndim:])
    mean = backend.ndimage.uniform_filter(img, size, mode="reflect")
    sq = backend.ndimage.uniform_filter(img * img, size, mode="reflect")
    sd = xp.sqrt(xp.maximum(sq - mean * mean, 0))
    local = sd / xp.maximum(mean, np.float32(1e-12))
    if mask is not None:
        local = local[to_device(mask, device).astype(bool)]
    if local.size == 0:
        raise ValueError("speckle_contrast mask selects no pixels; pass a mask with at least one True")
    return float(to_host(xp.median(local)))


def snr_db(volume, signal_surface_px, top_surface_px, *, margin_px: int = 4, device: str = "cpu") -> float:
    """Signal-to-noise ratio in dB: mean intensity on a bright surface over the noise floor.

    ``SNR = 10·log10(mean I at signal_surface_px / mean I above top_surface_px - margin_px)``,
    the noise floor being the vitreous above the ILM. A-lines whose ILM is closer than
    ``margin_px + 2`` px to the top contribute no noise samples.

    Raises
    ------
    ValueError
        If no vitreous voxels are available (ILM at the very top of every A-line).
    """
    backend = get_backend(device)
    xp = backend.xp
    vol = to_device(volume, device).astype(xp.float32, copy=False)
    n_b, n_z, n_a = vol.shape
    sig = xp.clip(xp.rint(to_device(signal_surface_px, device)).astype(xp.int64), 0, n_z - 1)
    signal = vol[xp.arange(n_b)[:, None], sig, xp.arange(n_a)[None, :]].mean()
    top = to_device(top_surface_px, device)
    z = xp.arange(n_z, dtype=xp.float32)[None, :, None]
    vitreous = z < (top[:, None, :] - margin_px)
    count = vitreous.sum()
    if int(to_host(count)) == 0:
        raise ValueError("snr_db: no vitreous above the ILM to measure noise; crop the volume with "
                         f"at least {margin_px + 2} px above the retina")
    noise = (vol * vitreous).sum() / count
    return float(to_host(10 * xp.log10(xp.maximum(signal, 1e-30) / xp.maximum(noise, 1e-30))))


def snr_lower_bound_db(volume, signal_surface_px, bottom_px: float, *, window_px: int = 3,
                       device: str = "cpu") -> float:
    """A lower bound of the SNR, in dB, for a volume without vitreous in view.

    ``10·log10(mean I at signal_surface_px / mean I of the darkest run of window_px depth
    rows above bottom_px)``. Every row holds noise plus tissue signal, so its mean is at
    least the noise floor and the ratio is at most the SNR :func:`snr_db` would measure
    over the vitreous: the true SNR is at least this. With no vitreous in view (an
    outer-retina crop) the darkest rows are the ONL or INL; in a volume buried in noise
    they are the vitreous itself and the bound is the SNR.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines), linear intensity
    signal_surface_px : array (n_bscans, n_alines), e.g. the RPE surface
    bottom_px : float
        Rows at or below this depth are not searched (e.g. 20 µm above the IS/OS).
    window_px : int
        Rows averaged together (the darkest single row of a short profile is biased low).

    Raises
    ------
    ValueError
        When fewer than ``window_px`` rows lie above ``bottom_px``.
    """
    backend = get_backend(device)
    xp = backend.xp
    vol = to_device(volume, device).astype(xp.float32, copy=False)
    n_b, n_z, n_a = vol.shape
    stop = int(min(n_z, max(0.0, float(bottom_px))))
    if stop < window_px:
        raise ValueError(f"snr_lower_bound_db: only {stop} rows above depth {bottom_px:.1f} px; need at "
                         f"least {window_px}")
    sig = xp.clip(xp.rint(to_device(signal_surface_px, device)).astype(xp.int64), 0, n_z - 1)
    signal = vol[xp.arange(n_b)[:, None], sig, xp.arange(n_a)[None, :]].mean()
    profile = to_host(vol[:, :stop].mean(axis=(0, 2))).astype(np.float64)
    runs = np.convolve(profile, np.ones(window_px) / window_px, mode="valid")
    floor = float(runs.min())
    return float(10 * np.log10(max(float(to_host(signal)), 1e-30) / max(floor, 1e-30)))
