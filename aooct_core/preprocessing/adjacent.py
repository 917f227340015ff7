"""Adjacent-B-scan matching within one volume, and the spectra helpers it shares.

:func:`adjacent_shifts` registers each usable B-scan to the previous usable one and sums
the steps; :func:`~aooct_core.preprocessing.registration.estimate_motion` runs the same
track (``adjacent_track``) on the reference repeat's spectra for its within-volume step,
and uses ``spectra_chunked`` / ``row_weights_of`` for the across-repeat match. Split out of
:mod:`aooct_core.preprocessing.registration`, which re-exports :func:`adjacent_shifts`.
"""
from __future__ import annotations

import numpy as np

from aooct_core.preprocessing.backend import get_backend, to_device, to_host
from aooct_core.preprocessing.motion import match_spectra
from aooct_core.preprocessing.spectra import Spectra, compute_spectra, lateral_row_weights
from aooct_core.preprocessing.tracking import interp_invalid as _interp_invalid

__all__ = ["adjacent_shifts", "adjacent_track", "row_weights_of", "spectra_chunked"]


def _per_bscan_shifts(spec_m, spec_f, shape, center, search_px, sigma_px, chunk, backend, lateral=True):
    # Chunks bound the size of the cross-power spectra and correlation surfaces.
    xp = backend.xp
    n = len(spec_m)
    parts = []
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        parts.append(match_spectra(spec_m[sl], spec_f[sl], shape, backend, center_px=center[sl],
                                   search_px=search_px, sigma_px=sigma_px, lateral=lateral))
    return tuple(to_host(xp.concatenate([p[k] for p in parts])) for k in range(3))


def spectra_chunked(volume, chunk, backend, row_weights, as_fixed=True, row_mean=None) -> Spectra:
    # Spectra hold only the depth profiles and the structured rows (no full-volume copy),
    # so one call covers the whole volume; ``chunk`` bounds the matching, not this.
    return compute_spectra(volume, backend, row_weights=row_weights, as_fixed=as_fixed, row_mean=row_mean)


def row_weights_of(volume, device: str, max_bscans: int = 16):
    # The weights are a median over B-scans: an evenly spaced subset gives the same rows
    # (every 8th of 128 B-scans on the phantom: the same rows) for a fraction of the cost.
    step = max(1, volume.shape[0] // max_bscans)
    return lateral_row_weights(volume[::step], device=device)


def adjacent_shifts(volume, *, valid=None, device: str = "cpu", search_px=(8, 8), sigma_px: float = 1.5,
                    chunk_bscans: int | None = None):
    """Displacement of each usable B-scan relative to the previous usable one.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines), linear intensity
    valid : bool array (n_bscans,) or None

    Returns
    -------
    cumulative : ndarray float32 (n_bscans, 2)
        Cumulative sum of the adjacent displacements (first usable B-scan = 0),
        interpolated over unusable B-scans.
    quality : ndarray float32 (n_bscans,)
    """
    backend = get_backend(device)
    vol = to_device(volume, device)
    chunk = chunk_bscans or (vol.shape[0] if device == "cuda" else 128)
    spec = spectra_chunked(vol, chunk, backend, row_weights_of(vol, device))
    return adjacent_track(spec, valid, tuple(vol.shape[1:]), search_px, sigma_px, chunk, backend)


def adjacent_track(spec: Spectra, valid, shape, search_px, sigma_px, chunk, backend, lateral=True):
    xp = backend.xp
    n = len(spec)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    idx = np.flatnonzero(valid)
    cumulative = np.zeros((n, 2), np.float32)
    quality = np.zeros(n, np.float32)
    if len(idx) < 2:
        return cumulative, quality
    if len(idx) < n:
        spec = spec[to_device(idx, backend.device)]
    center = xp.zeros((len(idx) - 1, 2), dtype=xp.int64)
    steps, q, _ = _per_bscan_shifts(spec[1:], spec[:-1], shape, center, search_px, sigma_px, chunk, backend,
                                    lateral=lateral)
    cumulative[idx] = np.concatenate([np.zeros((1, 2), np.float32), np.cumsum(steps, axis=0)])
    quality[idx[1:]] = q
    quality[idx[0]] = q[0]
    return _interp_invalid(cumulative, valid), quality
