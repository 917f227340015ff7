"""Batched sub-pixel phase correlation of B-scans and sub-pixel B-scan shifting.

All B-scans of a stack are registered at once — batched FFTs, one cross-power spectrum
per pair, a vectorised peak search — instead of a Python loop over B-scans. The same code
runs on NumPy and CuPy (see :mod:`aooct_core.preprocessing.backend`).

Sub-pixel estimate
------------------
Each match is two 1-D correlations (see :class:`Spectra`):

* **axial**: the mean depth profiles of the two B-scans (the layers);
* **lateral**: the depth rows that carry lateral structure (cones, vessels, nerve-fibre
  bundles; :func:`lateral_row_weights`), each row's lateral mean removed, the moving
  rows re-sampled at the axial offset, correlated row by row along the A-lines and summed.

The cross-power spectrum of half-whitened spectra, ``X = F_m conj(F_f) / |F_m conj(F_f)|^0.5``, is
multiplied by a Gaussian spectral window of width ``sigma_px``; for a pure translation
the correlation surface is then a sampled Gaussian centred on the shift, for which a
three-point fit of a parabola to the *log* of the peak and its two neighbours along each
axis is exact [2]_. The Gaussian window also suppresses the high spatial frequencies
where independent speckle of different repeats decorrelates.

Sign convention: ``shift`` is such that ``moving(x) ≈ fixed(x - shift)`` — moving is the
fixed B-scan with its content displaced by ``+shift`` (depth_px, aline_px). To undo it,
call :func:`shift_bscans` with ``-shift``.

References
----------
.. [1] Kuglin CD, Hines DC. "The phase correlation image alignment method." Proc. IEEE
       Conf. Cybernetics and Society, 163-165 (1975).
.. [2] Guizar-Sicairos M, Thurman ST, Fienup JR. "Efficient subpixel image registration
       algorithms." Opt. Lett. 33(2):156-158 (2008).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aooct_core.preprocessing.backend import Backend, get_backend, to_device, to_host

__all__ = [
    "ShiftEstimate",
    "Spectra",
    "phase_correlate",
    "shift_bscans",
    "dim_bscans",
    "compute_spectra",
    "lateral_row_weights",
    "match_spectra",
]



@dataclass(frozen=True)
class ShiftEstimate:
    """Result of batched phase correlation (host arrays).

    Attributes
    ----------
    shifts_px : ndarray float32 (n, 2)
        ``(depth_px, aline_px)`` displacement of moving relative to fixed.
    quality : ndarray float32 (n,)
        Peak height relative to a perfect match (1 = identical up to translation, ~0 =
        no common structure).
    at_edge : ndarray bool (n,)
        The peak lay on the border of the search window (shift probably larger than
        the window; no sub-pixel refinement was applied).
    """

    shifts_px: np.ndarray
    quality: np.ndarray
    at_edge: np.ndarray


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

    ``image``: (n, depth, aline) tapered amplitude with each depth row's lateral mean
    removed and multiplied by its row weight — laterally uniform layers carry no lateral
    information and, tapered by the window, would pull lateral estimates towards 0.
    ``rows``: int (k,) depth rows that carry lateral structure (weight ≥ 5 % of the max).
    ``row_spec``: rfft along the A-lines (n, k, aline//2+1) of those rows, half-whitened.
    ``profile``: rfft (n, depth//2+1) of the tapered mean depth profile, half-whitened —
    the layers, which carry the axial information.
    """

    image: object
    rows: object
    row_spec: object
    profile: object

    def __getitem__(self, index) -> "Spectra":
        return Spectra(self.image[index], self.rows, self.row_spec[index], self.profile[index])

    def __len__(self) -> int:
        return int(self.image.shape[0])


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


def compute_spectra(bscans, backend: Backend, *, row_weights=None, as_fixed: bool = True) -> Spectra:
    """:class:`Spectra` of B-scans (n, depth, aline), any real dtype, on the backend's device.

    Amplitude (sqrt of linear intensity) tames the exponential tail of speckle so that a
    few bright speckles do not dominate the correlation. For the lateral (image) part each
    depth row is divided by its lateral mean (relative modulation) and multiplied by
    ``row_weights`` (n_depth,) from :func:`lateral_row_weights` (default: all 1).
    ``as_fixed=False`` skips ``row_spec``, which only the fixed side of a match uses (the
    moving side is re-sampled at its axial offset first).
    """
    xp = backend.xp
    amp = xp.sqrt(xp.maximum(bscans.astype(xp.float32, copy=False), 0))
    n_depth, n_alines = amp.shape[1:]
    w_depth = _tukey(n_depth, 0.3, xp)
    w_aline = _tukey(n_alines, 0.3, xp)
    row_mean = amp.mean(axis=2, keepdims=True, dtype=xp.float32)
    profile = row_mean[:, :, 0]
    profile = (profile - profile.mean(axis=1, keepdims=True)) * w_depth[None]
    rows = w_depth if row_weights is None else w_depth * row_weights
    floor = row_mean.mean(axis=1, keepdims=True) * np.float32(1e-3) + np.float32(1e-30)
    image = (amp / (row_mean + floor) - 1) * (rows[:, None] * w_aline[None, :])[None]
    kw = backend.fft_kwargs()
    # Only rows with lateral structure are transformed (1-D FFTs along the A-lines).
    selected = xp.arange(n_depth) if row_weights is None else xp.nonzero(row_weights >= 0.05 * row_weights.max())[0]
    if selected.size == 0:
        selected = xp.arange(n_depth)
    row_spec = _half_whiten(backend.fft.rfft(image[:, selected], axis=2, **kw), xp, axes=(2,)) if as_fixed else \
        xp.zeros((image.shape[0], 0, 0), dtype=xp.complex64)
    return Spectra(image, selected, row_spec, _half_whiten(backend.fft.rfft(profile, axis=1, **kw), xp))


def _half_whiten(spec, xp, axes=None):
    # F / sqrt|F|: the product of two half-whitened spectra is the cross-power spectrum
    # whitened by |cross|^(1/2) — done once per spectrum instead of once per pair.
    # Relative floor so empty spectra (all-zero B-scans) give zeros, not NaN.
    spec = spec.astype(xp.complex64, copy=False)
    mag = xp.abs(spec)
    axes = tuple(range(1, spec.ndim)) if axes is None else axes
    mag += mag.mean(axis=axes, keepdims=True) * np.float32(1e-4) + np.float32(1e-30)
    spec /= xp.sqrt(mag)
    return spec


def _gaussian_window(shape: tuple[int, int], sigma_px: float, xp):
    f_depth = xp.fft.fftfreq(shape[0]).astype(xp.float32)
    f_aline = xp.fft.rfftfreq(shape[1]).astype(xp.float32)
    k = np.float32(-2 * np.pi**2 * sigma_px**2)
    return xp.exp(k * (f_depth[:, None] ** 2 + f_aline[None, :] ** 2)).astype(xp.float32)


def _whitened_surface(spec_m, spec_f, window, inverse, full_shape, backend: Backend, mean_over=None):
    # Shared by the lateral (rows, summed) and axial (profile) correlations of half-whitened spectra;
    # the last axis is the half (rfft) axis of a real transform of ``full_shape``.
    xp = backend.xp
    axes = tuple(range(1, spec_m.ndim))
    twice = xp.full(spec_m.shape[-1], 2, dtype=xp.float32)   # interior half-axis bins count twice
    twice[0] = 1
    if full_shape[-1] % 2 == 0:
        twice[-1] = 1
    weight = (window * twice)[None]

    if spec_m.ndim == 3 and len(full_shape) == 1:
        weight = weight[:, None, :]      # (n, rows, freq): rows are summed below

    def energy(spec):
        return ((spec.real ** 2 + spec.imag ** 2) * weight).reshape(spec.shape[0], -1).sum(axis=1)

    # Perfect-match height by Cauchy-Schwarz, so quality = peak / ideal ≤ 1.
    ideal = xp.sqrt(energy(spec_m) * energy(spec_f)) / np.float32(np.prod(full_shape))
    cross = spec_m * xp.conj(spec_f)
    if cross.ndim == 3 and len(full_shape) == 1:
        cross = cross.sum(axis=1)        # sum of the row-wise lateral cross-spectra
        axes = (1,)
    if mean_over is not None:
        weights = mean_over.astype(xp.float32)
        total = xp.maximum(weights.sum(), np.float32(1))
        cross = (cross * weights.reshape((-1,) + (1,) * len(axes))).sum(axis=0, keepdims=True) / total
        ideal = ((ideal * weights).sum() / total).reshape(1)
    cross *= window[None]
    surface = inverse(cross).astype(xp.float32, copy=False)
    return surface, ideal.astype(xp.float32, copy=False)


def _peak_1d(surface, ideal, center, radius, backend: Backend):
    """Sub-pixel peak of periodic 1-D surfaces (n, depth) within ``center ± radius``."""
    xp = backend.xp
    n, n_depth = surface.shape
    rd = int(min(radius, (n_depth - 1) // 2))
    idx = (center[:, None] + xp.arange(-rd, rd + 1)[None]) % n_depth
    rows = xp.arange(n)
    win = surface[rows[:, None], idx]
    i = win.argmax(axis=1)
    peak = win[rows, i]
    inner = (i > 0) & (i < 2 * rd)
    delta = _log_parabola(peak, win[rows, xp.clip(i - 1, 0, 2 * rd)], win[rows, xp.clip(i + 1, 0, 2 * rd)],
                          inner, xp)
    shift = (center + (i - rd)).astype(xp.float32) + delta
    return shift, peak / xp.maximum(ideal, np.float32(1e-30)), ~inner


def _log_parabola(peak, minus, plus, inner, xp):
    # Exact vertex for a sampled Gaussian; values floored so the log stays finite.
    tiny = xp.maximum(peak, np.float32(1e-12)) * np.float32(1e-3)
    y0 = xp.log(xp.maximum(peak, tiny))
    ym = xp.log(xp.maximum(minus, tiny))
    yp = xp.log(xp.maximum(plus, tiny))
    denom = ym - 2 * y0 + yp
    ok = inner & (denom < 0)
    d = xp.where(ok, (ym - yp) / xp.where(ok, 2 * denom, np.float32(1)), np.float32(0))
    return xp.clip(d, -0.5, 0.5).astype(xp.float32)


def match_spectra(moving: Spectra, fixed: Spectra, shape, backend: Backend, *, center_px, search_px,
                  sigma_px: float = 1.5, mean_over=None, lateral: bool = True):
    """Displacement of each moving B-scan relative to its fixed partner (device arrays).

    Axial: peak of the 1-D depth-profile correlation within ``center ± search_px[0]``.
    Lateral: peak within ``center ± search_px[1]`` of the sum of row-wise correlations
    along the A-lines of the structured rows, the moving rows taken at the axial offset. ``mean_over`` (bool (n,)) averages the selected
    cross-power spectra first and returns a single rigid match. ``lateral=False`` skips
    the lateral correlation (lateral shift 0, quality of the axial match).

    Returns
    -------
    shifts (m, 2) float32, quality (m,) float32 (of the lateral match), at_edge (m,) bool.
    """
    xp = backend.xp
    fft, kw = backend.fft, backend.fft_kwargs()
    win1 = _gaussian_window((1, shape[0]), sigma_px, xp)[0]   # along depth, rfft layout
    surf1, ideal1 = _whitened_surface(moving.profile, fixed.profile, win1,
                                      lambda a: fft.irfft(a, n=shape[0], axis=1, **kw), (shape[0],),
                                      backend, mean_over)
    axial, quality1, edge1 = _peak_1d(surf1, ideal1, center_px[:, 0], search_px[0], backend)
    del surf1
    if not lateral:
        return xp.stack([axial, xp.zeros_like(axial)], axis=1), quality1.astype(xp.float32), edge1
    # Lateral: the moving B-scan's structured rows, taken at the (integer) axial offset so
    # that they face the same tissue rows of the fixed B-scan, correlated row by row along
    # the A-lines and summed over rows.
    n_depth = moving.image.shape[1]
    offset = xp.broadcast_to(axial, (len(moving),)) if mean_over is not None else axial
    base = xp.floor(offset)
    frac = (offset - base).astype(xp.float32)[:, None, None]
    src = fixed.rows[None, :] + base.astype(xp.int64)[:, None]
    index = xp.arange(len(moving))[:, None]
    # Sub-pixel axial alignment (linear interpolation between two gathered rows).
    gathered = (moving.image[index, xp.clip(src, 0, n_depth - 1)] * (1 - frac)
                + moving.image[index, xp.clip(src + 1, 0, n_depth - 1)] * frac)
    spec_rows = _half_whiten(fft.rfft(gathered, axis=2, **kw), xp, axes=(2,))
    win_a = _gaussian_window((1, shape[1]), sigma_px, xp)[0]
    surf2, ideal2 = _whitened_surface(spec_rows, fixed.row_spec, win_a,
                                      lambda a: fft.irfft(a, n=shape[1], axis=1, **kw), (shape[1],),
                                      backend, mean_over)
    lateral_px, quality, edge2 = _peak_1d(surf2, ideal2, center_px[:, 1], search_px[1], backend)
    shifts = xp.stack([axial, lateral_px], axis=1)
    return shifts, quality.astype(xp.float32), edge1 | edge2


def phase_correlate(moving, fixed, *, device: str = "cpu", sigma_px: float = 1.5,
                    search_px: tuple[int, int] = (16, 16), center_px=None) -> ShiftEstimate:
    """Register every B-scan of ``moving`` to the matching B-scan of ``fixed`` at once.

    Parameters
    ----------
    moving, fixed : array (n, depth, aline), any real dtype, linear intensity
        Stacks of B-scans; ``fixed`` may also be one B-scan (depth, aline).
    device : {"cpu", "cuda"}
    sigma_px : float
        Width of the Gaussian spectral window (correlation-peak width), px.
    search_px : (int, int)
        Half-size of the search window in (depth, aline) px around ``center_px``.
    center_px : array (n, 2) or None
        Expected shift (e.g. the rigid shift of the whole volume); default 0.

    Returns
    -------
    ShiftEstimate
        Host arrays; ``moving[i](x) ≈ fixed[i](x - shifts_px[i])``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> from scipy.ndimage import gaussian_filter, shift
    >>> img = gaussian_filter(rng.random((64, 64)), 2).astype(np.float32)
    >>> moved = shift(img, (2.3, -1.6), order=3, mode="wrap")
    >>> est = phase_correlate(moved[None], img[None])
    >>> bool(np.all(np.abs(est.shifts_px[0] - (2.3, -1.6)) < 0.2))
    True
    """
    backend = get_backend(device)
    xp = backend.xp
    moving = to_device(moving, device)
    fixed = to_device(fixed, device)
    if moving.ndim != 3:
        raise ValueError(f"moving must be 3-D (bscan, depth, aline); got shape {moving.shape}")
    if fixed.ndim == 2:
        fixed = fixed[None]
    if fixed.ndim != 3 or fixed.shape[1:] != moving.shape[1:] or fixed.shape[0] not in (1, moving.shape[0]):
        raise ValueError(
            f"fixed must be (depth, aline) or (n, depth, aline) matching moving {moving.shape}; "
            f"got {fixed.shape}")
    shape = tuple(moving.shape[1:])
    n = moving.shape[0]
    weights = lateral_row_weights(fixed, device=device)
    spec_f = compute_spectra(fixed, backend, row_weights=weights)
    if fixed.shape[0] == 1 and n > 1:
        spec_f = Spectra(xp.broadcast_to(spec_f.image, (n,) + spec_f.image.shape[1:]), spec_f.rows,
                         xp.broadcast_to(spec_f.row_spec, (n,) + spec_f.row_spec.shape[1:]),
                         xp.broadcast_to(spec_f.profile, (n,) + spec_f.profile.shape[1:]))
    center = xp.zeros((n, 2), dtype=xp.int64) if center_px is None else \
        xp.rint(to_device(np.asarray(center_px, dtype=np.float32), device)).astype(xp.int64).reshape(n, 2)
    spec_m = compute_spectra(moving, backend, row_weights=weights, as_fixed=False)
    shifts, quality, at_edge = match_spectra(spec_m, spec_f, shape, backend,
                                             center_px=center, search_px=search_px, sigma_px=sigma_px)
    return ShiftEstimate(to_host(shifts), to_host(quality), to_host(at_edge))


def shift_bscans(volume, shifts_px, *, device: str = "cpu"):
    """Displace each B-scan by its own sub-pixel ``(depth_px, aline_px)`` shift.

    ``out[b](x) = volume[b](x - shifts_px[b])`` with separable linear interpolation
    and edge replication (the border pixels are repeated, never zero-filled). To undo
    a measured displacement ``m``, pass ``-m``.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines), any real dtype
    shifts_px : array (n_bscans, 2) float, px
    device : {"cpu", "cuda"}

    Returns
    -------
    array float32 (n_bscans, n_depth, n_alines) on ``device`` (NumPy for "cpu").

    Notes
    -----
    Linear interpolation averages neighbouring pixels by up to 50 %, which lowers the
    speckle contrast of a single shifted B-scan slightly; chosen over cubic splines
    because it is one gather per axis on both devices and never overshoots.
    """
    backend = get_backend(device)
    xp = backend.xp
    vol = to_device(volume, device).astype(xp.float32, copy=False)
    shifts = to_device(np.asarray(shifts_px, dtype=np.float32) if not hasattr(shifts_px, "__cuda_array_interface__")
                       else shifts_px, device).astype(xp.float32)
    if vol.ndim != 3 or shifts.shape != (vol.shape[0], 2):
        raise ValueError(
            f"volume must be (bscan, depth, aline) and shifts_px (n_bscans, 2); got {vol.shape} and "
            f"{tuple(shifts.shape)}")
    n_b, n_d, n_a = vol.shape
    b_idx = xp.arange(n_b)

    def _coords(n, s):
        src = xp.arange(n, dtype=xp.float32)[None, :] - s[:, None]
        i0f = xp.floor(src)
        frac = (src - i0f).astype(xp.float32)
        i0 = i0f.astype(xp.int64)
        return xp.clip(i0, 0, n - 1), xp.clip(i0 + 1, 0, n - 1), frac

    d0, d1, fd = _coords(n_d, shifts[:, 0])
    a0, a1, fa = _coords(n_a, shifts[:, 1])
    if backend.device == "cpu":
        # Same arithmetic as the batched gather below, B-scan by B-scan: NumPy's fancy
        # indexing over the whole volume is several times slower than per-B-scan ``take``.
        out = np.empty(vol.shape, np.float32)
        for b in range(n_b):
            tmp = vol[b].take(d0[b], axis=0) * (1 - fd[b])[:, None] + vol[b].take(d1[b], axis=0) * fd[b][:, None]
            out[b] = tmp.take(a0[b], axis=1) * (1 - fa[b])[None, :] + tmp.take(a1[b], axis=1) * fa[b][None, :]
        return out
    tmp = vol[b_idx[:, None], d0] * (1 - fd)[:, :, None] + vol[b_idx[:, None], d1] * fd[:, :, None]
    # Gather along the aline axis through a transposed view so each gather reads rows.
    tmp_t = tmp.transpose(0, 2, 1)
    out_t = tmp_t[b_idx[:, None], a0] * (1 - fa)[:, :, None] + tmp_t[b_idx[:, None], a1] * fa[:, :, None]
    return xp.ascontiguousarray(out_t.transpose(0, 2, 1)).astype(xp.float32, copy=False)


def dim_bscans(volume, *, dim_fraction: float = 0.5, device: str = "cpu") -> np.ndarray:
    """Flag dim or blinked B-scans by their mean intensity.

    A B-scan is dim when its mean linear intensity is below ``dim_fraction`` × the
    median B-scan mean of the volume (a blink or a lost AO loop darkens whole B-scans).

    Returns
    -------
    ndarray bool (n_bscans,) on the host, True = dim.
    """
    if not 0 < dim_fraction < 1:
        raise ValueError(f"dim_fraction must be in (0, 1); got {dim_fraction!r}")
    backend = get_backend(device)
    xp = backend.xp
    vol = to_device(volume, device)
    means = vol.mean(axis=(1, 2), dtype=xp.float32)
    return to_host(means < dim_fraction * xp.median(means))
