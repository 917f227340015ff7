"""CPU-only fused shift-and-average of repeats (the fast path of ``average_repeats``).

Every B-scan is displaced by one constant ``(depth, aline)`` shift, so the gather indices
of :func:`~aooct_core.preprocessing.resample.shift_bscans` are ``arange(n) + k`` (clipped
at the borders) with one integer offset ``k`` per B-scan and axis. After padding a block
of B-scans with its edge values (which reproduces the clipping exactly) and placing each
padded B-scan so that its shifted window starts at a fixed stride, the two gathers become
one strided view of the block, and the separable linear interpolation is a few NumPy
multiply/adds over long contiguous rows, accumulated in place with the repeat weight folded
into the depth weights. Halves of the B-scans run in the shared 2-thread pool of
:mod:`~aooct_core.preprocessing.cpu_parallel`.

Tolerance: one interpolation fraction per B-scan and axis, where ``shift_bscans``
recomputes it per pixel in float32 (rounding of ``i - s``), plus float32 rounding of the
folded weights: the corrected average differs from ``shift_bscans`` + weighted sum by
≤ 4e-6 of the volume's maximum on phantom seeds 0-2 (the unit test allows 1e-5).
The CUDA path never comes here.
"""
from __future__ import annotations

import numpy as np

from aooct_core.preprocessing.cpu_parallel import row_halves, cpu_pool, run_split

__all__ = ["average_repeats_cpu"]

# Larger integer shifts than this (px) take the reference path: the padding would cost more.
_MAX_PAD_PX = 64
# B-scans per block: 4 keep the block's buffers in the core's cache (bench/bench_average_block.py:
# 16 were slower with one and with two threads); results do not depend on it.
_BLOCK = 4


def _offsets(n: int, s: np.ndarray):
    # Same float32 arithmetic as resample.shift_bscans._coords (s = the shift applied).
    src = np.arange(n, dtype=np.float32)[None, :] - s[:, None]
    i0f = np.floor(src)
    frac = (src - i0f).astype(np.float32)
    i0 = i0f.astype(np.int64)
    regular = (i0 - i0[:, :1] == np.arange(n)[None, :]).all(axis=1)
    return i0[:, 0], frac, regular


def _accumulate(volumes, shifts, w_norm, mean, sl: slice) -> None:
    n_repeats = volumes.shape[0]
    n_d, n_a = volumes.shape[2:]
    s = -shifts[:, sl].reshape(-1, 2)
    k_d, fd, _ = _offsets(n_d, s[:, 0])
    k_a, fa, _ = _offsets(n_a, s[:, 1])
    pad = int(max(np.abs(k_d).max(), np.abs(k_a).max())) + 2
    n_sl = sl.stop - sl.start
    # One fraction per B-scan and axis (the value at index 0): shift_bscans recomputes it
    # per pixel in float32, which differs by float32 rounding of ``i - s`` only (< 2e-5).
    w = w_norm[:, sl].reshape(-1).astype(np.float64)
    wd0 = ((1 - fd[:, 0]) * w).astype(np.float32).reshape(n_repeats, n_sl)
    wd1 = (fd[:, 0] * w).astype(np.float32).reshape(n_repeats, n_sl)
    wa0 = (1 - fa[:, 0]).reshape(n_repeats, n_sl)
    wa1 = fa[:, 0].reshape(n_repeats, n_sl)
    r0 = (pad + k_d).reshape(n_repeats, n_sl)
    c0 = (pad + k_a).reshape(n_repeats, n_sl)
    hp, wp = n_d + 2 * pad, n_a + 2 * pad
    n_px = n_d * wp
    n_out = (n_d - 1) * wp + n_a
    # Each padded B-scan is stored in one flat buffer at ``j * stride - offset_j`` so that
    # its shifted window starts at ``j * stride``: one strided view then serves the whole
    # block, and every multiply/add below is one NumPy call over long contiguous rows
    # (columns past the A-lines are computed and dropped). Per-B-scan calls on
    # (rows, 128) views were 3x slower and lost to the GIL with 2 threads.
    off = (r0 * wp + c0).astype(np.int64)
    max_off = 2 * pad * wp + 2 * pad
    stride = hp * wp + max_off
    padded = np.empty((_BLOCK, hp, wp), np.float32)
    flat = np.empty(_BLOCK * stride + max_off, np.float32)
    t1 = np.empty((_BLOCK, n_px), np.float32)
    t2 = np.empty_like(t1)
    acc = np.empty((_BLOCK, n_px), np.float32)
    item = flat.itemsize
    for start in range(sl.start, sl.stop, _BLOCK):
        stop = min(sl.stop, start + _BLOCK)
        nb = stop - start
        i0, i1 = start - sl.start, stop - sl.start
        for r in range(n_repeats):
            pb = padded[:nb]
            # Edge padding = the index clipping of shift_bscans.
            pb[:, pad:pad + n_d, pad:pad + n_a] = volumes[r, start:stop]
            pb[:, :pad, pad:pad + n_a] = pb[:, pad:pad + 1, pad:pad + n_a]
            pb[:, pad + n_d:, pad:pad + n_a] = pb[:, pad + n_d - 1:pad + n_d, pad:pad + n_a]
            pb[:, :, :pad] = pb[:, :, pad:pad + 1]
            pb[:, :, pad + n_a:] = pb[:, :, pad + n_a - 1:pad + n_a]
            for j in range(nb):
                base = j * stride + max_off - int(off[r, i0 + j])
                flat[base:base + hp * wp] = pb[j].reshape(-1)
            view = np.lib.stride_tricks.as_strided(flat[max_off:], shape=(nb, n_px + wp),
                                                   strides=(stride * item, item), writeable=False)
            a, b = t1[:nb], t2[:nb]
            np.multiply(view[:, :n_px], wd0[r, i0:i1, None], out=a)
            np.multiply(view[:, wp:wp + n_px], wd1[r, i0:i1, None], out=b)
            a += b
            out = acc[:nb, :n_out]
            if r == 0:
                np.multiply(a[:, :n_out], wa0[r, i0:i1, None], out=out)
            else:
                np.multiply(a[:, :n_out], wa0[r, i0:i1, None], out=b[:, :n_out])
                out += b[:, :n_out]
            np.multiply(a[:, 1:1 + n_out], wa1[r, i0:i1, None], out=b[:, :n_out])
            out += b[:, :n_out]
        mean[start:stop] = acc[:nb].reshape(nb, n_d, wp)[:, :, :n_a]


def average_repeats_cpu(volumes, shifts_px: np.ndarray, w_norm: np.ndarray, *,
                        cpu_threads: int | None = None) -> np.ndarray | None:
    """Weighted average of the shifted repeats on the CPU, or None where the fast path does not apply.

    Parameters
    ----------
    volumes : array (n_repeats, n_bscans, n_depth, n_alines), any real dtype (not modified)
    shifts_px : float32 (n_repeats, n_bscans, 2)
        Measured displacements; each B-scan is shifted by ``-shifts_px``.
    w_norm : float32 (n_repeats, n_bscans)
        Weights normalised to sum 1 over the repeats of each B-scan.

    Returns
    -------
    float32 (n_bscans, n_depth, n_alines), or None when a shift is larger than
    ``_MAX_PAD_PX`` px or not finite (the caller then uses the reference path).
    """
    shifts = np.asarray(shifts_px, np.float32)
    if volumes.ndim != 4 or 0 in volumes.shape:
        return None
    if not np.isfinite(shifts).all() or np.abs(shifts).max(initial=0) > _MAX_PAD_PX:
        return None
    n_repeats, n_bscans, n_d, n_a = volumes.shape
    for axis, n in ((0, n_d), (1, n_a)):
        if not _offsets(n, -shifts[..., axis].reshape(-1))[2].all():
            return None     # float32 rounding made an offset irregular: keep the exact gather
    w = np.asarray(w_norm, np.float32)
    mean = np.empty((n_bscans, n_d, n_a), np.float32)
    pool = cpu_pool("cpu", cpu_threads, n_repeats)
    if pool is None:
        _accumulate(volumes, shifts, w, mean, slice(0, n_bscans))
    else:
        run_split(pool, lambda sl: _accumulate(volumes, shifts, w, mean, sl), row_halves(n_bscans, 2))
    return mean
