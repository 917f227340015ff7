"""The B-scans prepared for matching: :class:`Spectra` and how they are computed.

What :func:`~aooct_core.preprocessing.motion.match_spectra` correlates — the half-whitened
spectra of the depth profiles and of the depth rows that carry lateral structure
(:func:`lateral_row_weights`). Split out of :mod:`aooct_core.preprocessing.motion`, which
re-exports the public names; the same code runs on NumPy and CuPy (see
:mod:`aooct_core.preprocessing.backend`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aooct_core.preprocessing.backend import Backend, get_backend, to_device

__all__ = ["Spectra", "compute_spectra", "lateral_row_weights", "half_whiten", "lateral_rows"]


def _tukey(n: int, alpha: float, xp):
    # Tapered cosine window: flat in the middle, so most of the B-scan still counts,
    # but the wrap-around edges of the periodic FFT no longer correlate.
    x = xp.arange(n, dtype=xp.float32) / max(n - 1, 1)
    w = xp.ones(n, dtype=xp.float32)
    edge = alpha / 2
    lo = x < edge
    hi = x > 1 - edge
    w[lo] = 0.5 * (1 + xp.cos(np.pi * (2 * x[lo] / alpha - 1)))
    w[hi] = 0.5 * (1 + xp.cos(np.pi * (2 * x[hi] / alpha - 2 / alpha + 1)))
    return w.astype(xp.float32)


@dataclass(frozen=True)
class Spectra:
    """Prepared stack of B-scans for matching (device arrays).

    Only what the match needs is computed — never a full-volume float copy:

    ``bscans``: (n, depth, aline) the raw B-scans, any real dtype (a view, not a copy);
    the moving side's structured rows are gathered from it at the axial offset.
    ``row_weight``: float32 (depth,) depth taper × lateral row weight.
    ``rows``: int (k,) depth rows that carry lateral structure (weight ≥ ``min_row_weight``
    of the max).
    ``row_spec``: rfft along the A-lines (n, k, aline//2+1) of those rows (amplitude,
    each row's lateral mean removed, weighted), half-whitened; empty on the moving side.
    ``profile``: rfft (n, depth//2+1) of the tapered depth profile (sqrt of each row's
    mean intensity), half-whitened — the layers, which carry the axial information.
    """

    bscans: object
    row_weight: object
    rows: object
    row_spec: object
    profile: object

    def __getitem__(self, index) -> "Spectra":
        spec = self.row_spec[index] if self.row_spec.shape[1] else self.row_spec
        return Spectra(self.bscans[index], self.row_weight, self.rows, spec, self.profile[index])

    def __len__(self) -> int:
        return int(self.bscans.shape[0])


def lateral_row_weights(volume, *, device: str = "cpu", smooth_px: float = 2.0):
    """Weight of each depth row for the lateral match: its contrast in excess of speckle.

    Fully developed speckle has the same amplitude contrast in every row, so rows whose
    lateral contrast (SD/mean along the A-lines, median over B-scans) exceeds the median
    row's carry structure — cones at IS/OS and COST, RPE cells, vessels — and get weight
    ``contrast / median - 1``; pure-speckle rows get ~0. Without this, independent speckle
    of the many structure-free rows swamps the few rows that carry lateral information.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines), linear intensity

    Returns
    -------
    float32 (n_depth,) on ``device``, max 1 (all ones when no row stands out).
    """
    backend = get_backend(device)
    xp = backend.xp
    amp = xp.sqrt(xp.maximum(to_device(volume, device).astype(xp.float32, copy=False), 0))
    mean = amp.mean(axis=2)
    sd = amp.std(axis=2)
    contrast = xp.median(sd / xp.maximum(mean, np.float32(1e-12)), axis=0)
    excess = xp.maximum(contrast / xp.maximum(xp.median(contrast), np.float32(1e-12)) - 1, 0)
    excess = backend.ndimage.gaussian_filter1d(excess.astype(xp.float32), smooth_px, mode="nearest")
    top = excess.max()
    return xp.where(top > 0, excess / xp.maximum(top, np.float32(1e-12)), np.float32(1)).astype(xp.float32)


def lateral_rows(bscans, rows, weight, backend: Backend, frac=None):
    """Gathered depth rows ready for the lateral correlation: (n, k, aline) float32.

    ``rows``: int (n, k) row of each B-scan to take; ``weight``: (k,) or (n, k) weights.
    ``frac``: float32 (n,) sub-pixel depth offset: the intensity is linearly interpolated
    between ``rows`` and ``rows + 1`` (clipped to the B-scan) before anything else.
    Amplitude (sqrt of linear intensity) tames the exponential tail of speckle so a few
    bright speckles do not dominate; each row is divided by its lateral mean (relative
    modulation, so laterally uniform layers carry nothing) and tapered along the A-lines.
    """
    xp = backend.xp
    index = xp.arange(bscans.shape[0])[:, None]
    n_depth = bscans.shape[1]
    # Fancy indexing returns a new array, so everything below works in place on it.
    amp = bscans[index, xp.clip(rows, 0, n_depth - 1)].astype(xp.float32, copy=False)
    if frac is not None:
        upper = bscans[index, xp.clip(rows + 1, 0, n_depth - 1)].astype(xp.float32, copy=False)
        upper -= amp
        upper *= frac.astype(xp.float32)[:, None, None]
        amp += upper
        del upper
    xp.maximum(amp, 0, out=amp)
    xp.sqrt(amp, out=amp)
    mean = amp.mean(axis=2, keepdims=True)
    # Relative floor so empty rows (all-zero B-scans) give zeros, not NaN.
    mean += mean.mean(axis=1, keepdims=True) * np.float32(1e-3) + np.float32(1e-30)
    amp /= mean
    amp -= 1
    w = weight if weight.ndim == 2 else weight[None]
    amp *= w[:, :, None] * _tukey(bscans.shape[2], 0.3, xp)[None, None, :]
    return amp


def compute_spectra(bscans, backend: Backend, *, row_weights=None, as_fixed: bool = True,
                    min_row_weight: float = 0.05, row_step: int = 2, row_mean=None) -> Spectra:
    """:class:`Spectra` of B-scans (n, depth, aline), any real dtype, on the backend's device.

    One pass over the B-scans (each row's mean intensity → the axial profile); the lateral
    part touches only the ``k`` structured rows (``row_weights`` (n_depth,) from
    :func:`lateral_row_weights`, default all 1). ``as_fixed=False`` skips ``row_spec``,
    which only the fixed side of a match uses (the moving side is gathered at its axial
    offset in :func:`~aooct_core.preprocessing.motion.match_spectra`). ``row_step``: every
    how many structured rows are used (adjacent depth rows are correlated over the axial
    resolution, ~2 px).
    ``row_mean``: (n, depth) mean intensity along the A-lines, if already at hand.
    """
    xp = backend.xp
    n, n_depth, n_alines = bscans.shape
    w_depth = _tukey(n_depth, 0.3, xp)
    # sqrt of the mean intensity rather than the mean amplitude: same layer positions,
    # and no full-volume sqrt.
    if row_mean is None:
        row_mean = bscans.mean(axis=2, dtype=xp.float32)
    profile = xp.sqrt(xp.maximum(row_mean, 0))
    profile = (profile - profile.mean(axis=1, keepdims=True)) * w_depth[None]
    weight = w_depth if row_weights is None else (w_depth * row_weights).astype(xp.float32)
    kw = backend.fft_kwargs()
    selected = xp.arange(n_depth) if row_weights is None else \
        xp.nonzero(row_weights >= min_row_weight * row_weights.max())[0]
    if selected.size == 0:
        selected = xp.arange(n_depth)
    selected = selected[::row_step]
    if as_fixed:
        rows = lateral_rows(bscans, xp.broadcast_to(selected[None, :], (n, selected.size)),
                             weight[selected], backend)
        row_spec = half_whiten(backend.fft.rfft(rows, axis=2, **kw), xp, axes=(2,))
    else:
        row_spec = xp.zeros((n, 0, 0), dtype=xp.complex64)
    return Spectra(bscans, weight, selected, row_spec, half_whiten(backend.fft.rfft(profile, axis=1, **kw), xp))


def half_whiten(spec, xp, axes=None):
    # F / sqrt|F|: the product of two half-whitened spectra is the cross-power spectrum
    # whitened by |cross|^(1/2) — done once per spectrum instead of once per pair.
    # Relative floor so empty spectra (all-zero B-scans) give zeros, not NaN.
    spec = spec.astype(xp.complex64, copy=False)
    mag = xp.abs(spec)
    axes = tuple(range(1, spec.ndim)) if axes is None else axes
    mag += mag.mean(axis=axes, keepdims=True) * np.float32(1e-4) + np.float32(1e-30)
    xp.sqrt(mag, out=mag)
    xp.reciprocal(mag, out=mag)
    spec *= mag             # real factor: cheaper than a complex division
    return spec
