"""Is there a cone mosaic in this image? Yellott's ring at the spacing expected for the location.

A cone mosaic's power spectrum has a ring at the inverse of the row period of the
(nearly triangular) lattice [1]_; an en face slab cut through the outer nuclear layer,
the RPE or the choroid — layers labelled wrong, repeats misregistered, or the focus far
from the photoreceptors — has none there. :func:`mosaic_ring_strength` measures how much
the (whitened) power in the ring stands above its spectral neighbourhood, at the spacing
the normative density predicts, so a missing mosaic is noticed even when a detector still
returns points.

References
----------
.. [1] Yellott JI Jr. "Spectral analysis of spatial sampling by photoreceptors: topological
       disorder prevents aliasing." Vision Res. 22:1205-1210 (1982).
"""
from __future__ import annotations

import numpy as np

__all__ = ["mosaic_ring_strength", "cone_mosaic_strength"]

_RING = 2.0 / np.sqrt(3.0)   # ring radius in units of 1 / spacing (triangular lattice)


def mosaic_ring_strength(image, *, expected_spacing_px, tolerance: float = 0.25) -> float:
    """Power at the expected cone-mosaic ring over the background around it.

    Parameters
    ----------
    image : array_like, shape (n_rows, n_cols)
        En face image (any positive scale), e.g. the IS/OS or COST slab.
    expected_spacing_px : float or tuple of float
        Expected centre-to-centre cone spacing in px, or ``(rows, cols)`` when the two
        axes are sampled differently (normative spacing in µm over the µm/px per axis).
    tolerance : float
        Relative half-width of the ring band (± 25 %: densities between eyes vary by ±
        ~20 % at one eccentricity).

    Returns
    -------
    float
        Highest radial-profile bin in the ring band over the background there (a power
        law fitted to the profile at 0.45-0.7 and 1.35-1.9 times the ring radius);
        ~1 without a mosaic, well above it with one (calibration:
        ``bench/accuracy/missing_mosaic.py``).

    Raises
    ------
    ValueError
        For an image smaller than 16 × 16 px, or a spacing that puts the ring outside the
        sampled frequencies (spacing < 2.3 px: undersampled; > a sixth of the image, fewer than six cells across).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> mosaic_ring_strength(rng.random((64, 64)), expected_spacing_px=6.0) < 2   # no mosaic
    True
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 16:
        raise ValueError(f"image must be 2-D and at least 16 × 16 px; got shape {img.shape}")
    sp = np.broadcast_to(np.asarray(expected_spacing_px, dtype=np.float64), (2,))
    if not (np.all(np.isfinite(sp)) and np.all(sp >= 2.3) and np.all(sp <= np.asarray(img.shape) / 6)):
        raise ValueError(f"expected_spacing_px {tuple(sp)} must be within [2.3 px, a sixth of the image "
                         f"{img.shape}]; a mosaic sampled more coarsely cannot show its ring")
    img = img / max(float(np.mean(img)), 1e-30) - 1.0
    h, w = img.shape
    power = np.abs(np.fft.fft2(img * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    fr = np.fft.fftfreq(h)[:, None] * sp[0]
    fc = np.fft.fftfreq(w)[None, :] * sp[1]
    r = np.hypot(fr, fc) / _RING                    # 1 on the expected ring
    ring = (r >= 1 - tolerance) & (r <= 1 + tolerance)
    around = ((r >= 0.45) & (r <= 0.7)) | ((r >= 1.35) & (r <= 1.9))
    nyquist = (np.abs(np.fft.fftfreq(h))[:, None] < 0.5) & (np.abs(np.fft.fftfreq(w))[None, :] < 0.5)
    ring &= nyquist
    around &= nyquist
    if ring.sum() < 8 or around.sum() < 8:
        raise ValueError(f"too few frequencies around the ring for spacing {tuple(sp)} px in {img.shape}")
    # Background: a power law fitted (log-log) to the radial profile inside and outside the
    # ring band, so a 1/f^a spectrum without a ring gives ~1; the strength is the highest
    # ring-band bin of the profile over it (the mosaic's spacing may differ from the norm).
    edges = np.arange(0.45, 1.9001, 0.05)
    idx = np.digitize(r, edges) - 1
    valid = (idx >= 0) & (idx < len(edges) - 1) & nyquist
    sums = np.bincount(idx[valid], weights=power[valid], minlength=len(edges) - 1)
    counts = np.bincount(idx[valid], minlength=len(edges) - 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    have = counts >= 3
    prof = np.where(have, sums / np.maximum(counts, 1), np.nan)
    bg_bins = have & (((centres >= 0.45) & (centres <= 0.7)) | ((centres >= 1.35) & (centres <= 1.9)))
    ring_bins = have & (centres >= 1 - tolerance) & (centres <= 1 + tolerance)
    if bg_bins.sum() < 3 or ring_bins.sum() < 2:
        raise ValueError(f"too few frequencies around the ring for spacing {tuple(sp)} px in {img.shape}")
    slope, intercept = np.polyfit(np.log(centres[bg_bins]), np.log(prof[bg_bins]), 1)
    background = np.exp(intercept + slope * np.log(centres[ring_bins]))
    return float(np.max(prof[ring_bins] / background))


def cone_mosaic_strength(slabs, *, eccentricity_deg: float | None, um_per_px) -> float | None:
    """Strongest :func:`mosaic_ring_strength` of the cone slabs at the normative spacing.

    The one definition the platform's ``cone_mosaic`` QC check and ``aooct analyze`` use.

    Parameters
    ----------
    slabs : iterable of array_like (n_rows, n_cols)
        The cone slabs (IS/OS and COST).
    eccentricity_deg : float or None
        Retinal eccentricity of the field.
    um_per_px : float or tuple of float
        En face pixel size (rows, cols), µm.

    Returns
    -------
    float or None
        None where the check cannot judge: eccentricity or pixel size unknown, beyond the
        normative data, expected spacing under 3 px (``undersampled_mosaic`` covers it) or
        fewer than six cells across the image.
    """
    from aooct_core.metrics.norms import has_norm, normative_cone_spacing_um

    if eccentricity_deg is None or um_per_px is None or not has_norm(eccentricity_deg):
        return None
    um = np.broadcast_to(np.asarray(um_per_px, dtype=np.float64), (2,))
    spacing_px = normative_cone_spacing_um(eccentricity_deg) / um
    out = []
    for slab in slabs:
        shape = np.asarray(np.shape(slab))
        if spacing_px.min() < 3.0 or np.any(spacing_px > shape / 6):
            return None
        out.append(mosaic_ring_strength(slab, expected_spacing_px=tuple(spacing_px)))
    return max(out) if out else None
