"""Weighted averaging of motion-corrected repeats and OCTA decorrelation.

Averaging N registered repeats of a speckled volume lowers the speckle contrast
roughly as 1/sqrt(N) while the anatomy (cones, RPE, layers) stays, which is why
AO-OCT volumes are acquired in repeats [1]_. Repeats are corrected and accumulated
one at a time so that at most one corrected repeat exists at once (peak memory stays
near the input size).

References
----------
.. [1] Jonnal RS, Kocaoglu OP, Wang Q, Lee S, Miller DT. "Phase-sensitive imaging of the
       outer retina using optical coherence tomography and adaptive optics."
       Biomed. Opt. Express 3(1):104-124 (2012).
.. [2] Jia Y et al. "Split-spectrum amplitude-decorrelation angiography with optical
       coherence tomography." Opt. Express 20(4):4710-4725 (2012).
"""
from __future__ import annotations

import numpy as np

from aooct_core.preprocessing.backend import get_backend, to_device
from aooct_core.preprocessing.cpu_resample import average_repeats_cpu
from aooct_core.preprocessing.motion import shift_bscans

__all__ = ["average_repeats"]


def _window_sum(x, window: tuple[int, int], xp):
    """Sum over a (depth, A-line) window within each B-scan, edges repeated.

    Equal to ``uniform_filter(x, (1, *window), mode="nearest")`` times the window size
    (the size cancels in the decorrelation ratio); shifted slices of one padded copy are
    3x faster than SciPy's filter on the CPU and are the same code on CuPy.
    """
    hd, ha = window[0] // 2, window[1] // 2
    padded = xp.pad(x, ((0, 0), (hd, hd), (ha, ha)), mode="edge")
    n_d, n_a = x.shape[1], x.shape[2]
    along_depth = padded[:, 0:n_d]
    for j in range(1, window[0]):
        along_depth = along_depth + padded[:, j:j + n_d]
    out = along_depth[:, :, 0:n_a]
    for j in range(1, window[1]):
        out = out + along_depth[:, :, j:j + n_a]
    return out


def average_repeats(volumes, shifts_px, *, weights=None, device: str = "cpu",
                    decorrelation: bool = False, decorrelation_window_px: tuple[int, int] = (3, 3),
                    chunk_bscans: int | None = None, cpu_threads: int | None = None):
    """Undo each B-scan's displacement, then average the repeats with weights.

    Parameters
    ----------
    volumes : array (n_repeats, n_bscans, n_depth, n_alines), any real dtype, linear intensity
    shifts_px : array (n_repeats, n_bscans, 2) float
        Measured ``(depth_px, aline_px)`` displacement of each observed B-scan
        (as in :class:`~aooct_core.preprocessing.registration.MotionReport`); each B-scan
        is shifted by ``-shifts_px``.
    weights : array (n_repeats, n_bscans) or None
        Non-negative weight of each B-scan (0 = rejected, e.g. a blink). Where every
        repeat of a B-scan has weight 0 the plain mean is used (the caller reports those
        B-scans as rejected).
    device : {"cpu", "cuda"}
    decorrelation : bool
        Also return the mean amplitude decorrelation between consecutive corrected
        repeats, ``D = 1 - 2·A1·A2 / (A1² + A2²)`` with amplitude ``A = sqrt(I)`` [2]_
        (0 = identical, 1 = fully decorrelated); needs ≥ 2 repeats.
    decorrelation_window_px : (int, int)
        ``(depth, A-line)`` window, within each B-scan, over which the numerator
        ``2·A1·A2`` and denominator ``A1² + A2²`` are averaged before dividing (as SSADA
        does [2]_): one pixel's speckle decorrelation is too noisy to tell flow from
        static tissue. (1, 1) gives the per-pixel ratio. On the phantom with partly
        static speckle, (3, 3) raises the OCTA slab's correlation with the true
        capillaries from 0.38 to 0.60 (motion-free) and from 0.18 to 0.30 (with eye
        motion); see bench/results_preprocessing.md.
    chunk_bscans : int or None
        B-scans processed at once (default 16 on the CPU, all on CUDA).
    cpu_threads : int or None
        CPU threads of the fused shift-and-average (default: the shared pool, 2 threads
        for ≥ 3 repeats; 1 = the calling thread only). Ignored on CUDA.

    Returns
    -------
    mean : float32 (n_bscans, n_depth, n_alines) on ``device``
    decor : float32 (n_bscans, n_depth, n_alines) on ``device``, or None
    """
    backend = get_backend(device)
    xp = backend.xp
    n_repeats, n_bscans = volumes.shape[:2]
    shifts = np.asarray(shifts_px, dtype=np.float32)
    if shifts.shape != (n_repeats, n_bscans, 2):
        raise ValueError(f"shifts_px must be (n_repeats, n_bscans, 2) = {(n_repeats, n_bscans, 2)}; "
                         f"got {shifts.shape}")
    window = tuple(int(w) for w in decorrelation_window_px)
    if len(window) != 2 or min(window) < 1 or any(w % 2 == 0 for w in window):
        raise ValueError("decorrelation_window_px must be two odd window sizes >= 1 (depth, A-line), "
                         f"e.g. (3, 3) or (1, 1) for per-pixel; got {decorrelation_window_px!r}")
    if decorrelation and n_repeats < 2:
        raise ValueError("decorrelation needs at least 2 repeats; pass decorrelation=False for one volume")
    w = np.ones((n_repeats, n_bscans), np.float32) if weights is None else np.asarray(weights, np.float32)
    if w.shape != (n_repeats, n_bscans) or (w < 0).any():
        raise ValueError(f"weights must be non-negative with shape {(n_repeats, n_bscans)}; got {w.shape}")
    none_left = w.sum(axis=0) <= 0
    w = np.where(none_left[None, :], np.float32(1), w)
    w_norm = to_device(w / w.sum(axis=0, keepdims=True), device).astype(xp.float32)

    if device == "cpu" and not decorrelation:
        # Fused CPU path (cpu_resample): slices of edge-padded blocks instead of gathers,
        # accumulated in place; equal to the path below within float32 rounding.
        fast = average_repeats_cpu(volumes, shifts, w_norm, cpu_threads=cpu_threads)
        if fast is not None:
            return fast, None
    chunk = chunk_bscans or (n_bscans if device == "cuda" else 16)
    mean = xp.empty(volumes.shape[1:], dtype=xp.float32)
    decor = xp.empty(volumes.shape[1:], dtype=xp.float32) if decorrelation else None
    # B-scan chunks keep the temporaries small: peak memory ≈ input + mean (+ decor).
    for start in range(0, n_bscans, chunk):
        sl = slice(start, min(n_bscans, start + chunk))
        acc = None
        dec = None
        previous = None
        for r in range(n_repeats):
            corrected = shift_bscans(to_device(volumes[r, sl], device), -shifts[r, sl], device=device)
            if decorrelation:
                amp = xp.sqrt(xp.maximum(corrected, 0))
                if previous is not None:
                    num = amp * previous
                    num *= 2
                    den = amp * amp
                    den += previous * previous
                    if window != (1, 1):
                        num, den = _window_sum(num, window, xp), _window_sum(den, window, xp)
                    den += np.float32(1e-12)
                    num /= den
                    dec = (1 - num) if dec is None else dec + (1 - num)
                previous = amp
            corrected *= w_norm[r, sl][:, None, None]
            acc = corrected if acc is None else acc + corrected
        mean[sl] = acc
        if decorrelation:
            decor[sl] = dec / np.float32(n_repeats - 1)
    return mean, decor
