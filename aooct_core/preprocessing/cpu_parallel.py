"""CPU-only thread-pool helpers of :func:`~aooct_core.preprocessing.registration.estimate_motion`.

The motion estimate of a few repeats is a handful of large NumPy reductions, gathers and
batched ``scipy.fft`` transforms, all of which release the GIL. On the CPU they are split
over a small thread pool — by repeat, or by halves of the B-scans — with each task's FFTs
on one worker, so the cores are not oversubscribed. The split itself changes nothing
(reductions run along the A-lines of each row, FFTs along one axis of each B-scan), so the
result is the same for any pool size ≥ 2; two cheaper computations used only here (row
means by sgemv, reference spectra whitened over the kept bins only) differ from the serial
path (``cpu_threads=1``) by float32 rounding: shifts within 5e-6 px on the phantom.
The CUDA path never comes here.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from aooct_core.preprocessing.motion import kept_bins
from aooct_core.preprocessing.spectra import Spectra, compute_spectra, half_whiten, lateral_rows

__all__ = ["cpu_pool", "run_split", "row_means_cpu", "parallel_spectra", "row_halves"]


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def cpu_pool(device: str, cpu_threads: int | None, n_repeats: int) -> ThreadPoolExecutor | None:
    """The shared thread pool for the CPU path, or None (CUDA, or one thread asked for / available).

    One pool per thread count, created on first use and kept for the process: starting
    threads costs ~2 ms each on a loaded machine (``Thread.start`` waits for the thread to
    run), as much as a fifth of the whole estimate. Tasks never submit tasks, so sharing
    it between concurrent callers cannot deadlock.
    """
    if device != "cpu":
        return None
    if cpu_threads is not None and int(cpu_threads) < 1:
        raise ValueError(f"cpu_threads must be ≥ 1 or None (all cores, up to the repeats); got {cpu_threads!r}")
    threads = int(cpu_threads) if cpu_threads is not None else \
        min(os.cpu_count() or 1, max(2, n_repeats - 1))
    if threads < 2:
        return None
    with _POOLS_LOCK:
        if threads not in _POOLS:
            # The calling thread works too (see run_split), so the pool has one thread fewer.
            _POOLS[threads] = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="aooct-motion")
        return _POOLS[threads]


def run_split(pool: ThreadPoolExecutor, fn, items: list) -> list:
    """``[fn(x) for x in items]`` with the first item on the calling thread, the rest in ``pool``.

    The caller works instead of waiting: one hand-off fewer per batch, and no idle wake-up
    of a pool thread for work the caller can do (on a VM a sleeping vCPU takes a while).
    """
    jobs = [pool.submit(fn, x) for x in items[1:]]
    first = [fn(items[0])] if items else []
    return first + [j.result() for j in jobs]


def row_halves(n: int, parts: int) -> list[slice]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _row_means_one(volume) -> np.ndarray:
    vol = np.asarray(volume)
    if vol.dtype != np.float32:
        vol = vol.astype(np.float32)
    inv = np.full(vol.shape[-1], 1.0 / vol.shape[-1], dtype=np.float32)
    return (vol.reshape(-1, vol.shape[-1]) @ inv).reshape(vol.shape[:2])


def row_means_cpu(volumes, pool: ThreadPoolExecutor | None = None) -> list[np.ndarray]:
    """Mean intensity of every depth row, float32 (n_bscans, n_depth) per repeat (host).

    A matrix-vector product with a 1/n_alines vector (BLAS sgemv streams the repeat once,
    ~2-4× faster than NumPy's pairwise ``mean`` over 128-element rows); equal to ``mean``
    within float32 rounding (~1e-7 relative). Non-float32 input is converted one repeat
    at a time. With ``pool``, one task per repeat.
    """
    if pool is None:
        return [_row_means_one(volumes[r]) for r in range(volumes.shape[0])]
    return run_split(pool, _row_means_one, [volumes[r] for r in range(volumes.shape[0])])


def _fixed_spectra(bscans, backend, row_weights, row_mean, n_keep: int) -> Spectra:
    # compute_spectra(as_fixed=True), with the row spectra cut to the ``n_keep`` rfft bins
    # that match_spectra correlates before they are half-whitened (the others would be
    # whitened only to be dropped; the whitening floor then averages over the kept bins,
    # as on the moving side: shifts change by < 1e-5 px on the phantom).
    spec = compute_spectra(bscans, backend, row_weights=row_weights, row_mean=row_mean, as_fixed=False)
    rows = lateral_rows(bscans, np.broadcast_to(spec.rows[None, :], (bscans.shape[0], spec.rows.size)),
                         spec.row_weight[spec.rows], backend)
    row_spec = half_whiten(backend.fft.rfft(rows, axis=2, **backend.fft_kwargs())[..., :n_keep], np, axes=(2,))
    return Spectra(bscans, spec.row_weight, spec.rows, row_spec, spec.profile)


def parallel_spectra(pool: ThreadPoolExecutor, volume, backend, row_weights, row_mean, *,
                     sigma_px: float) -> Spectra:
    """Fixed-side :class:`~aooct_core.preprocessing.motion.Spectra` of two halves of the B-scans at once.

    Row spectra hold only the rfft bins kept for a correlation window of ``sigma_px``.
    """
    n_keep = kept_bins(volume.shape[2], sigma_px)
    parts = row_halves(volume.shape[0], 2)
    specs = run_split(pool, lambda sl: _fixed_spectra(volume[sl], backend, row_weights, row_mean[sl], n_keep), parts)
    return Spectra(volume, specs[0].row_weight, specs[0].rows,
                   np.concatenate([s.row_spec for s in specs]), np.concatenate([s.profile for s in specs]))
