"""Lateral B-scan jitter from the phase of the cone-lattice Fourier peaks.

Matching repeats to each other cannot see the *mean* lateral displacement of a B-scan
over the repeats, and adjacent B-scans are too different (each holds another row of
cones) to be matched to each other. The cone mosaic, however, is close to a triangular
lattice: its en face image has sharp Fourier peaks at lattice vectors ``k``. If row ``b``
is displaced laterally by ``s[b]``, the local phase of every peak along that row moves
by ``-2π k_aline s[b]``; demodulating each row at ``k`` and unwrapping the phase along
the rows measures ``s`` up to a linear trend (a sheared lattice is still a lattice, so
the phase cannot see the linear part) [1]_. The linear part is a shear of the en face
image, which :func:`lattice_shear` measures from the isotropy of the lattice spectrum.

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

__all__ = ["lattice_row_shifts", "lattice_shear", "dejitter_rows", "ROW_PHASE_SIGMA_ROWS"]

# Smoothing of each peak's demodulated row signal along the B-scans (rows): it sets how fast
# a motion the phase can follow, and so what stays uncorrected (tracking.fast_residual).
ROW_PHASE_SIGMA_ROWS = 1.0


def _peaks(power, freq_rows, freq_cols, *, min_freq, min_aline_freq, n_peaks):
    radius = np.hypot(freq_rows[:, None], freq_cols[None, :])
    allowed = (radius > min_freq) & (freq_cols[None, :] > min_aline_freq)   # one of each ± pair
    # Ranked by k_aline² · power: the lateral sensitivity of a peak's phase times its SNR.
    candidates = np.where(allowed, power * freq_cols[None, :] ** 2, 0).ravel()
    # The 2000 largest, best first (a partial sort: the full argsort dominated the call).
    top = np.argpartition(candidates, candidates.size - min(2000, candidates.size))[-2000:]
    picked = []
    for flat in top[np.argsort(candidates[top])[::-1]]:
        r, c = np.unravel_index(flat, power.shape)
        if candidates[flat] <= 0:
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
    # Peaks are taken at positive A-line frequencies only (one of each ± pair), all of
    # which the real FFT holds: half the transform. fftfreq keeps the Nyquist column of
    # an even width negative, so it stays excluded as before.
    spectrum = scipy.fft.rfft2((image - image.mean()) * window, workers=-1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    freq_rows, freq_cols = np.fft.fftfreq(n_rows), np.fft.fftfreq(n_cols)[:n_cols // 2 + 1]
    peaks = _peaks(power, freq_rows, freq_cols, min_freq=min_freq, min_aline_freq=min_aline_freq,
                   n_peaks=n_peaks)
    if len(peaks) < 2:
        return zero, float("nan")
    b = np.arange(n_rows)
    k_rows = np.array([freq_rows[r] for r, _ in peaks])
    k_cols = np.array([freq_cols[c] for _, c in peaks])
    # The carrier exp(-2πi (k_row·row + k_col·col)) is separable: demodulate along the
    # A-lines with one matrix product for all peaks, then apply the row factor.
    col_carrier = np.exp(-2j * np.pi * np.outer(np.arange(n_cols), k_cols)) * np.hanning(n_cols)[:, None]
    along_cols = image @ col_carrier.real + 1j * (image @ col_carrier.imag)      # (n_rows, n_peaks)
    demods = along_cols * np.exp(-2j * np.pi * np.outer(b, k_rows))
    estimates, weights = [], []
    for p, (r, c) in enumerate(peaks):
        demod = demods[:, p]
        demod = (gaussian_filter1d(demod.real, ROW_PHASE_SIGMA_ROWS)
                 + 1j * gaussian_filter1d(demod.imag, ROW_PHASE_SIGMA_ROWS))
        shift = -np.unwrap(np.angle(demod)) / (2 * np.pi * k_cols[p])
        shift -= np.polyval(np.polyfit(b, shift, 1), b)
        estimates.append(shift)
        weights.append(k_cols[p] ** 2 * power[r, c])
    # The best-agreeing pair of peaks is used (a third peak can be a harmonic or noise).
    pairs = [(float(np.corrcoef(estimates[i], estimates[j])[0, 1]), i, j)
             for i in range(len(estimates)) for j in range(i + 1, len(estimates))]
    agreement, i, j = max(pairs)
    if not agreement >= min_agreement:
        return zero, agreement
    combined = np.average(np.stack([estimates[i], estimates[j]]), axis=0, weights=[weights[i], weights[j]])
    return (combined - combined.mean()).astype(np.float32), agreement


def dejitter_rows(enface, shift_px):
    """Undo the row displacements ``shift_px`` found by :func:`lattice_row_shifts`: each row
    is linearly re-sampled at ``col + shift_px[row]`` (end values past either end)."""
    cols = np.arange(enface.shape[1], dtype=np.float32)
    return np.stack([np.interp(cols + s, cols, row) for s, row in zip(shift_px, enface)])


def _full_columns(half_power, n_cols, cols):
    """Columns ``cols`` (any integers, periodic) of the full power spectrum of a real image
    from its real-FFT half: ``P[r, -c] = P[-r, c]`` (Hermitian symmetry)."""
    n_rows = half_power.shape[0]
    cols = np.mod(cols, n_cols)
    mirrored = cols > n_cols // 2
    out = half_power[:, np.where(mirrored, n_cols - cols, cols)]
    flip_rows = np.mod(-np.arange(n_rows), n_rows)
    out[:, mirrored] = out[flip_rows][:, mirrored]
    return out


def _triad_peaks(half_power, n_cols, freq_rows, freq_cols, *, band):
    # Three strongest local maxima of the power in the cone band, one of each ± pair.
    # ``half_power`` holds the columns 0..n_cols//2 (real FFT); the 5×5 maximum filter
    # of the full periodic spectrum needs 2 more columns on each side, rebuilt from it.
    from scipy.ndimage import maximum_filter

    n_half = half_power.shape[1]
    power = _full_columns(half_power, n_cols, np.arange(-2, n_half + 2))   # column c at c + 2
    local_max = maximum_filter(power, size=5, mode="wrap")[:, 2:-2]
    power = power[:, 2:-2]
    radius = np.hypot(freq_rows[:, None], freq_cols[None, :])
    half = (freq_cols[None, :] > 0) | ((freq_cols[None, :] == 0) & (freq_rows[:, None] > 0))
    allowed = (radius >= band[0]) & (radius <= band[1]) & half
    is_max = (power == local_max) & allowed
    cand = np.argwhere(is_max)
    cand = cand[np.argsort(power[is_max])[::-1]][:3]
    n_r = power.shape[0]
    peaks = []
    for r, c in cand:
        # Sub-bin vertex of a log-parabola through the peak and its neighbours (periodic).
        def vertex(minus, zero, plus):
            lm, l0, lp = np.log(max(minus, 1e-30)), np.log(zero), np.log(max(plus, 1e-30))
            denom = lm - 2 * l0 + lp
            return float(np.clip(0.5 * (lm - lp) / denom, -0.5, 0.5)) if denom < 0 else 0.0
        left, right = _full_columns(half_power, n_cols, np.array([c - 1, c + 1]))[r]
        dr = vertex(power[(r - 1) % n_r, c], power[r, c], power[(r + 1) % n_r, c])
        dc = vertex(left, power[r, c], right)
        step_r = freq_rows[1] - freq_rows[0]
        step_c = freq_cols[1] - freq_cols[0]
        peaks.append((freq_rows[r] + dr * step_r, freq_cols[c] + dc * step_c))
    return np.array(peaks, dtype=np.float64).reshape(-1, 2)


def lattice_shear(enface, *, um_per_px: tuple[float, float], spacing_um_range: tuple[float, float] = (2.5, 12.0),
                  max_anisotropy: float = 0.15, max_angle_error_deg: float = 10.0):
    """Linear lateral drift along the B-scans from the isotropy of the cone lattice.

    A lateral displacement growing linearly with the B-scan index, ``s · row``, shears the
    en face image (``col' = col + s·row``) — the one component of the mean motion that
    neither matching repeats to each other nor the lattice phase (:func:`lattice_row_shifts`)
    can see. The cone mosaic itself is isotropic: its power spectrum is a ring (Yellott's
    ring) [1]_, or, for a locally triangular mosaic, six peaks 60° apart whose second-moment
    tensor is isotropic whatever the lattice orientation. A shear maps a frequency
    ``(k_row, k_col)`` to ``(k_row - S k_col, k_col)`` (physical units, ``S`` in µm/µm), so
    with the three fundamental peaks ``k_i`` found in the image,
    ``S = -Σ k_row k_col / Σ k_col²`` (equal weight per peak: peak *powers* differ).

    Parameters
    ----------
    enface : ndarray (n_rows, n_cols)
        Cone en face image (rows = B-scans), linear intensity.
    um_per_px : (float, float)
        ``(row, col)`` sampling, µm/px (``Geometry.enface_um_per_px``).
    spacing_um_range : (float, float)
        Range of cone row spacings searched, µm.
    max_anisotropy : float
        The three peaks' |k| must agree within this fraction (after the shear is undone)
        and be 60° ± ``max_angle_error_deg`` apart; otherwise no lattice, no correction.

    Returns
    -------
    shear_px : float
        Lateral displacement per B-scan, px along the A-lines per row, of the image
        content (add ``shear_px · (b - mean b)`` to the lateral shifts); 0.0 when no
        triangular lattice was found.
    ok : bool
        Whether a triangular lattice was found.

    References
    ----------
    .. [1] Yellott JI Jr. "Spectral analysis of spatial sampling by photoreceptors:
           topological disorder prevents aliasing." Vision Res. 22(9):1205-1210 (1982).
    """
    image = np.asarray(enface, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"enface must be 2-D (row, col); got shape {image.shape}")
    um_row, um_col = (float(v) for v in um_per_px)
    if not (um_row > 0 and um_col > 0):
        raise ValueError(f"um_per_px must be two positive sizes (row, col) in µm; got {um_per_px!r}")
    n_rows, n_cols = image.shape
    if n_rows < 16 or n_cols < 16 or not np.isfinite(image).all():
        return 0.0, False
    window = np.hanning(n_rows)[:, None] * np.hanning(n_cols)[None, :]
    spectrum = scipy.fft.rfft2((image - image.mean()) * window, workers=-1)   # half: one of each ± pair
    half_power = spectrum.real ** 2 + spectrum.imag ** 2
    f_rows = np.fft.fftfreq(n_rows) / um_row          # cycles/µm
    f_cols = np.fft.fftfreq(n_cols)[:n_cols // 2 + 1] / um_col
    # A triangular lattice of row spacing d has its fundamental peaks at |k| = 1/d.
    band = (1.0 / spacing_um_range[1], 1.0 / spacing_um_range[0])
    peaks = _triad_peaks(half_power, n_cols, f_rows, f_cols, band=band)
    if len(peaks) < 3:
        return 0.0, False
    k_row, k_col = peaks[:, 0], peaks[:, 1]
    shear = -float((k_row * k_col).sum() / max((k_col * k_col).sum(), 1e-30))
    # Check the shear-corrected peaks form an equilateral triad (else: no lattice).
    fixed = np.stack([k_row + shear * k_col, k_col], axis=1)
    mags = np.hypot(fixed[:, 0], fixed[:, 1])
    angles = np.sort(np.degrees(np.arctan2(fixed[:, 0], fixed[:, 1])) % 180.0)
    gaps = np.diff(np.concatenate([angles, angles[:1] + 180.0]))
    ok = (mags.max() - mags.min() <= max_anisotropy * mags.mean()) and \
        bool(np.all(np.abs(gaps - 60.0) <= max_angle_error_deg))
    if not ok:
        return 0.0, False
    return shear * um_row / um_col, True
