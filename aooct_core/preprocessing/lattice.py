"""Lateral B-scan jitter from the phase of the cone-lattice Fourier peaks.

Matching repeats to each other cannot see the *mean* lateral displacement of a B-scan
over the repeats, and adjacent B-scans are too different (each holds another row of
cones) to be matched to each other. The cone mosaic, however, is close to a triangular
lattice: its en face image has sharp Fourier peaks at lattice vectors ``k``. If row ``b``
is displaced laterally by ``s[b]``, the local phase of every peak along that row moves
by ``-2π k_aline s[b]``; demodulating each row at ``k`` and unwrapping the phase along
the rows measures ``s`` up to a linear trend (a sheared lattice is still a lattice, so
the linear part stays unobservable) [1]_.

Up to three peaks with a large A-line component are demodulated; the two estimates that
agree best are combined and must correlate ≥ ``min_agreement``, otherwise no correction
is returned — no lattice (e.g. RPE-only fields, vessels), no correction.

References
----------
.. [1] Takeda M, Ina H, Kobayashi S. "Fourier-transform method of fringe-pattern analysis
       for computer-based topography and interferometry." JOSA 72(1):156-160 (1982)
       (demodulation of a carrier to recover a displacement phase).
"""
from __future__ import annotations

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter1d

__all__ = ["lattice_row_shifts"]


def _peaks(power, freq_rows, freq_cols, *, min_freq, min_aline_freq, n_peaks):
    radius = np.hypot(freq_rows[:, None], freq_cols[None, :])
    allowed = (radius > min_freq) & (freq_cols[None, :] > min_aline_freq)   # one of each ± pair
    # Ranked by k_aline² · power: the lateral sensitivity of a peak's phase times its SNR.
    candidates = np.where(allowed, power * freq_cols[None, :] ** 2, 0)
    picked = []
    for flat in np.argsort(candidates.ravel())[::-1][:2000]:
        r, c = np.unravel_index(flat, candidates.shape)
        if candidates[r, c] <= 0:
            break
        if all(abs(r - pr) + abs(c - pc) > 4 for pr, pc in picked):
            picked.append((int(r), int(c)))
        if len(picked) == n_peaks:
            break
    return picked


def lattice_row_shifts(enface, *, min_freq: float = 0.12, min_aline_freq: float = 0.08,
                       n_peaks: int = 3, min_agreement: float = 0.5):
    """Lateral displacement of each en face row from the cone-lattice phase.

    Parameters
    ----------
    enface : ndarray (n_rows, n_cols)
        Cone en face image (e.g. IS/OS + COST slabs), rows = B-scans, linear intensity.
    min_freq : float
        Lowest lattice frequency considered, cycles/px (cones are ≤ ~8 px apart).
    min_aline_freq : float
        Peaks need at least this A-line frequency (cycles/px): the phase of a peak with
        a small A-line component hardly moves with a lateral shift.
    n_peaks : int
        Number of candidate peaks (ranked by ``k_aline² · power``); the two whose
        estimates agree best are combined, weighted by ``k_aline² · power``.
    min_agreement : float
        Minimum correlation between those two estimates to trust the result.

    Returns
    -------
    shift_px : ndarray float32 (n_rows,)
        Displacement of each row's content, px along the A-lines, zero mean, linear trend
        removed; all zeros when not trusted. Add it to the B-scans' lateral motion.
    agreement : float
        Correlation between the per-peak estimates (NaN when fewer than 2 peaks).
    """
    image = np.asarray(enface, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"enface must be 2-D (row, col); got shape {image.shape}")
    n_rows, n_cols = image.shape
    zero = np.zeros(n_rows, np.float32)
    if n_rows < 16 or n_cols < 16 or not np.isfinite(image).all():
        return zero, float("nan")
    window = np.hanning(n_rows)[:, None] * np.hanning(n_cols)[None, :]
    spectrum = scipy.fft.fft2((image - image.mean()) * window, workers=-1)
    power = np.abs(spectrum) ** 2
    freq_rows, freq_cols = np.fft.fftfreq(n_rows), np.fft.fftfreq(n_cols)
    peaks = _peaks(power, freq_rows, freq_cols, min_freq=min_freq, min_aline_freq=min_aline_freq,
                   n_peaks=n_peaks)
    if len(peaks) < 2:
        return zero, float("nan")
    rows = np.arange(n_rows)[:, None]
    cols = np.arange(n_cols)[None, :]
    estimates, weights = [], []
    for r, c in peaks:
        k_row, k_col = freq_rows[r], freq_cols[c]
        demod = (image * np.exp(-2j * np.pi * (k_row * rows + k_col * cols)) * np.hanning(n_cols)).sum(axis=1)
        demod = gaussian_filter1d(demod.real, 1.0) + 1j * gaussian_filter1d(demod.imag, 1.0)
        shift = -np.unwrap(np.angle(demod)) / (2 * np.pi * k_col)
        b = np.arange(n_rows)
        shift -= np.polyval(np.polyfit(b, shift, 1), b)
        estimates.append(shift)
        weights.append(k_col ** 2 * power[r, c])
    # The best-agreeing pair of peaks is used (a third peak can be a harmonic or noise).
    pairs = [(float(np.corrcoef(estimates[i], estimates[j])[0, 1]), i, j)
             for i in range(len(estimates)) for j in range(i + 1, len(estimates))]
    agreement, i, j = max(pairs)
    if not agreement >= min_agreement:
        return zero, agreement
    combined = np.average(np.stack([estimates[i], estimates[j]]), axis=0, weights=[weights[i], weights[j]])
    return (combined - combined.mean()).astype(np.float32), agreement
