"""Retinal layer surfaces by dynamic programming, and flattening.

Each surface is the minimum-cost path across the A-lines of every B-scan (all B-scans
at once), with the depth allowed to change by at most ``max_slope`` px per A-line — a
1-D graph search per B-scan [1]_. The cost is built on the dB volume smoothed laterally:

* **IS/OS, COST, RPE**: which ridge is which band is decided once per volume by
  :func:`~aooct_core.preprocessing.bands.identify_bands` from the order and spacing of
  the bands (priors in µm), never from which is brightest; each surface is the ridge
  path inside a window around its band that follows the retina's tilt and curvature.
* **ILM**: only when the vitreous is in view (:func:`~aooct_core.preprocessing.ilm.find_vitreous`;
  AO-OCT windows often start below it): the strongest dark-to-bright transition (positive
  vertical gradient of the linear intensity) within 10 µm above / 20 µm below the first
  depth above the mid-level between this volume's vitreous floor and its inner retina,
  and more than 60 µm above IS/OS. Otherwise the ILM surface is NaN (not in view).

The search runs on block means of ``column_step`` A-lines (all 3-D filtering happens on
that smaller array); each surface is then refined on every A-line, in a thin window of
rows gathered around it, to the local extremum within ±2 px with a parabolic fit.
Depths are px from the top of the volume, ridges at the centre of their band.

References
----------
.. [1] Chiu SJ, Li XT, Nicholas P, Toth CA, Izatt JA, Farsiu S. "Automatic segmentation of
       seven retinal layers in SDOCT images congruent with expert manual segmentation."
       Opt. Express 18(18):19413-19428 (2010).
"""
from __future__ import annotations

import time

import numpy as np

from aooct_core.preprocessing.backend import get_backend, synchronize, to_device, to_host
from aooct_core.preprocessing.band_fit import debias_surfaces
from aooct_core.preprocessing.bands import identify_bands
from aooct_core.preprocessing.ilm import MIN_ILM_TO_ISOS_UM, find_vitreous

__all__ = ["segment_layers", "flatten_volume", "dp_surface"]

_BIG = np.float32(1e6)


_DP_KERNEL_SOURCE = r"""
extern "C" __global__ void dp_surface(const float* cost, signed char* back, long long* path,
                                      const int n_b, const int n_z, const int n_c, const int k,
                                      const long long stride_z, const long long stride_c) {
    // One block per B-scan; the accumulated cost of the current column lives in shared
    // memory. Same recursion and tie-breaking (first minimum) as the NumPy loop.
    // Cost (z, c) of B-scan b is cb[z * stride_z + c * stride_c]: (n_z, n_c) per B-scan
    // gives strides (n_c, 1); (n_c, n_z) gives (1, n_z), where one column's depths are
    // contiguous and a warp's reads coalesce.
    extern __shared__ float shared[];
    float* acc = shared;
    float* nxt = shared + n_z;
    const int b = blockIdx.x;
    const float* cb = cost + (long long)b * n_z * n_c;
    for (int z = threadIdx.x; z < n_z; z += blockDim.x) acc[z] = cb[(long long)z * stride_z];
    __syncthreads();
    for (int c = 1; c < n_c; ++c) {
        for (int z = threadIdx.x; z < n_z; z += blockDim.x) {
            float best = __int_as_float(0x7f800000);  // +inf without <math.h> under NVRTC
            int arg = 0;
            for (int j = 0; j <= 2 * k; ++j) {
                const int zz = z + j - k;
                if (zz >= 0 && zz < n_z) {
                    const float v = acc[zz];
                    if (v < best) { best = v; arg = j; }
                }
            }
            nxt[z] = best + cb[(long long)z * stride_z + (long long)c * stride_c];
            back[((long long)c * n_b + b) * n_z + z] = (signed char)arg;
        }
        __syncthreads();
        float* t = acc; acc = nxt; nxt = t;
    }
    if (threadIdx.x == 0) {
        int zc = 0;
        float best = acc[0];
        for (int z = 1; z < n_z; ++z) if (acc[z] < best) { best = acc[z]; zc = z; }
        long long* pb = path + (long long)b * n_c;
        pb[n_c - 1] = zc;
        for (int c = n_c - 1; c > 0; --c) {
            zc += (int)back[((long long)c * n_b + b) * n_z + zc] - k;
            zc = min(max(zc, 0), n_z - 1);
            pb[c - 1] = zc;
        }
    }
}
"""
_DP_KERNEL = None
_KERNEL_SHARED_BYTES = 48 * 1024


def _dp_surface_cuda(cost, k, xp, *, depth_contiguous: bool = True):
    # One kernel launch for the whole search instead of ~6 small launches per column.
    # ``depth_contiguous`` first transposes the cost to (n_b, n_c, n_z) so that a warp's
    # reads of one column coalesce, for the price of one extra pass over the cost; in the
    # (n_b, n_z, n_c) layout each thread reads its own memory sector.
    # bench/gpu_preprocessing.py times both layouts.
    global _DP_KERNEL
    if _DP_KERNEL is None:
        _DP_KERNEL = xp.RawKernel(_DP_KERNEL_SOURCE, "dp_surface")
    n_b, n_z, n_c = cost.shape
    cost = xp.ascontiguousarray(cost.transpose(0, 2, 1) if depth_contiguous else cost, dtype=xp.float32)
    strides = (np.int64(1), np.int64(n_z)) if depth_contiguous else (np.int64(n_c), np.int64(1))
    back = xp.zeros((n_c, n_b, n_z), dtype=xp.int8)
    path = xp.zeros((n_b, n_c), dtype=xp.int64)
    threads = int(min(256, max(32, n_z)))
    _DP_KERNEL((n_b,), (threads,), (cost, back, path, np.int32(n_b), np.int32(n_z), np.int32(n_c), np.int32(k),
                                    *strides), shared_mem=2 * n_z * 4)
    return path


def dp_surface(cost, *, max_slope: int = 2, backend=None):
    """Minimum-cost surface through ``cost`` (n_bscans, n_depth, n_cols), one per B-scan.

    The depth may change by at most ``max_slope`` px between neighbouring columns; ties go
    to the first (shallowest) candidate. On CUDA a single CuPy kernel runs the recursion.

    Returns int64 depth indices (n_bscans, n_cols) on the cost's device.
    """
    backend = backend or get_backend("cpu")
    xp = backend.xp
    if cost.ndim != 3 or min(cost.shape) < 1:
        raise ValueError(f"cost must be (n_bscans, n_depth, n_cols) with every size >= 1; got {cost.shape}")
    n_b, n_z, n_c = cost.shape
    k = int(max_slope)
    if not 0 <= k < 64:
        raise ValueError(f"max_slope must be in [0, 63] px per column; got {max_slope!r}")
    # The kernel keeps two columns of accumulated cost in shared memory; past CUDA's
    # default 48 KiB per block (6144 depths) the array code below runs on the GPU instead.
    if backend.device == "cuda" and hasattr(xp, "RawKernel") and 2 * n_z * 4 <= _KERNEL_SHARED_BYTES:
        return _dp_surface_cuda(cost, k, xp)
    cost = cost.astype(xp.float32, copy=False)
    acc = cost[:, :, 0]
    back = xp.zeros((n_c, n_b, n_z), dtype=xp.int8)
    pad = xp.full((n_b, n_z + 2 * k), np.inf, dtype=xp.float32)
    for c in range(1, n_c):
        pad[:, k:k + n_z] = acc
        cand = xp.stack([pad[:, j:j + n_z] for j in range(2 * k + 1)])
        arg = cand.argmin(axis=0)
        back[c] = arg.astype(xp.int8)
        acc = xp.take_along_axis(cand, arg[None], axis=0)[0] + cost[:, :, c]
    path = xp.zeros((n_b, n_c), dtype=xp.int64)
    rows = xp.arange(n_b)
    path[:, -1] = acc.argmin(axis=1)
    for c in range(n_c - 1, 0, -1):
        path[:, c - 1] = xp.clip(path[:, c] + back[c][rows, path[:, c]].astype(xp.int64) - k, 0, n_z - 1)
    return path


def _window_cost(feature, lo, hi, xp):
    # Feature is "higher is better"; outside [lo, hi] the cost is prohibitive.
    z = xp.arange(feature.shape[1], dtype=xp.float32)[None, :, None]
    inside = (z >= lo[:, None, :]) & (z <= hi[:, None, :])
    return xp.where(inside, -feature, _BIG)


def _depth_band(lo, hi, n_z: int) -> tuple[int, int]:
    """Rows [z0, z1) that hold every window [lo, hi] of the volume (all rows if none).

    The search only needs these rows: a path that left them would pay the prohibitive
    cost on every row outside, and clamping it back to the band is never more expensive.
    Two scalars come back to the host (one synchronisation per surface on the GPU).
    """
    z0 = max(0, int(np.floor(float(lo.min()))))
    z1 = min(n_z, int(np.ceil(float(hi.max()))) + 1)
    return (z0, z1) if z1 > z0 else (0, n_z)


def _to_full_columns(path_blocks, step, n_a, xp):
    # Block centres -> every A-line by linear interpolation.
    n_cb = path_blocks.shape[1]
    a = xp.arange(n_a, dtype=xp.float32)
    pos = xp.clip((a - (step - 1) / 2) / step, 0, n_cb - 1)
    i0 = xp.floor(pos).astype(xp.int64)
    i1 = xp.minimum(i0 + 1, n_cb - 1)
    f = (pos - i0).astype(xp.float32)
    p = path_blocks.astype(xp.float32)
    return p[:, i0] * (1 - f) + p[:, i1] * f


def _refine(vol, guess, radius, *, edge: bool, lateral_sigma_px: float, backend):
    """Full-resolution surface: extremum within ±radius px of ``guess``, sub-pixel.

    A thin window of rows following ``guess`` is gathered from the volume, smoothed like
    the search features (laterally, and 1 px in depth), and the maximum of the intensity
    (bands) or of its depth derivative (``edge``, the ILM) is fitted with a parabola.
    """
    xp, nd = backend.xp, backend.ndimage
    n_b, n_z, n_a = vol.shape
    pad = 3
    offs = xp.arange(-(radius + pad), radius + pad + 1)
    z = xp.clip(xp.rint(guess).astype(xp.int64)[:, None, :] + offs[None, :, None], 0, n_z - 1)
    win = vol[xp.arange(n_b)[:, None, None], z, xp.arange(n_a)[None, None, :]]
    sigma = (0.5 * lateral_sigma_px, 1.0 if edge else 0.7, lateral_sigma_px)
    vals = nd.gaussian_filter(win, sigma, order=(0, 1, 0) if edge else 0, mode="nearest")[:, pad:pad + 2 * radius + 1]
    z = z[:, pad:pad + 2 * radius + 1]
    i = vals.argmax(axis=1)
    inner = (i > 0) & (i < 2 * radius)
    g = lambda k: xp.take_along_axis(vals, xp.clip(k, 0, 2 * radius)[:, None, :], axis=1)[:, 0]  # noqa: E731
    y0, ym, yp = g(i), g(i - 1), g(i + 1)
    denom = ym - 2 * y0 + yp
    ok = inner & (denom < 0)
    delta = xp.where(ok, (ym - yp) / xp.where(ok, 2 * denom, np.float32(1)), np.float32(0))
    zi = xp.take_along_axis(z, i[:, None, :], axis=1)[:, 0]
    return (zi + xp.clip(delta, -0.5, 0.5)).astype(xp.float32)


class _Clock:
    """Synchronised wall time of sub-steps into ``timings`` (a debugging aid; no-op if None)."""

    def __init__(self, timings, device):
        self.timings, self.device = timings, device
        self.last = time.perf_counter()

    def __call__(self, name, *, accumulate: bool = False):
        if self.timings is None:
            return
        synchronize(self.device)
        now = time.perf_counter()
        self.timings[name] = now - self.last + (self.timings.get(name, 0.0) if accumulate else 0.0)
        self.last = now


def _band_windows(bands, depth_um_per_px: float) -> dict[str, tuple[float, float]]:
    """Flattened-depth search window (px) of each identified band.

    Half-way to the neighbouring band at most (so a window never holds two bands), at
    least 1.5 px and at most 10 µm; merged COST and RPE share their complex, COST in its
    upper and the RPE in its lower part (the complex itself is searched, key "COMPLEX").
    """
    d = bands.depth_px
    order = sorted((z, k) for k, z in d.items() if not (bands.merged_cost_rpe and k == "COST"))
    out = {}
    cap = 10.0 / depth_um_per_px
    for i, (z, k) in enumerate(order):
        up = z - order[i - 1][0] if i > 0 else np.inf
        down = order[i + 1][0] - z if i + 1 < len(order) else np.inf
        out[k] = (z - max(1.5, min(cap, 0.45 * up)), z + max(1.5, min(cap, 0.45 * down)))
    if bands.merged_cost_rpe:  # the complex is searched; COST and RPE are offsets of it
        out["COMPLEX"] = out["RPE"]
        out["COST"] = out["RPE"]
        return {k: out[k] for k in ("ISOS", "COST", "RPE", "COMPLEX")}
    return {k: out[k] for k in ("ISOS", "COST", "RPE")}


def segment_layers(volume, *, depth_um_per_px: float, device: str = "cpu", column_step: int = 4,
                   max_slope: int = 2, lateral_sigma_px: float = 2.0, timings: dict | None = None,
                   report: dict | None = None):
    """ILM, IS/OS, COST and RPE surfaces of an averaged volume.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines), linear intensity (any positive scale)
    depth_um_per_px : float
        Axial sampling in µm/px (the search windows are set in µm).
    device : {"cpu", "cuda"}
    column_step : int
        A-lines per block in the dynamic-programming search.
    max_slope : int
        Largest depth change between neighbouring blocks, px.
    lateral_sigma_px : float
        Gaussian smoothing of the dB volume along the A-lines (and half of it across
        B-scans) before the search; speckle would otherwise dominate the ridges.
    timings : dict or None
        If given, receives the synchronised wall time (s) of the sub-steps "features",
        "bands", "search" and "refine" — for profiling on the GPU.
    report : dict or None
        If given, receives ``band_model`` (:class:`~aooct_core.preprocessing.bands.BandModel`:
        which ridge was taken for which band, and how confidently), ``windows_px`` and
        ``band_fit`` (:func:`~aooct_core.preprocessing.band_fit.debias_surfaces`) and
        ``vitreous`` (:class:`~aooct_core.preprocessing.ilm.Vitreous`: is the ILM in view).

    Raises
    ------
    ValueError
        When the outer-retina bands cannot be identified (see ``identify_bands``).

    Returns
    -------
    dict str → float32 (n_bscans, n_alines) on ``device``
        Keys "ILM", "ISOS", "COST", "RPE"; depth in px from the top of the volume. The ILM
        is all-NaN when it is above the depth window (no vitreous in view).
    """
    if not depth_um_per_px > 0:
        raise ValueError(f"depth_um_per_px must be > 0; got {depth_um_per_px!r}")
    backend = get_backend(device)
    xp = backend.xp
    nd = backend.ndimage
    vol = to_device(volume, device).astype(xp.float32, copy=False)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3-D (bscan, depth, aline); got shape {vol.shape}")
    n_b, n_z, n_a = vol.shape
    um = lambda v: np.float32(v / depth_um_per_px)  # noqa: E731  µm -> px
    clock = _Clock(timings, device)
    scale = xp.maximum(vol.mean(), np.float32(1e-30))
    step = max(1, min(int(column_step), n_a))
    n_cb = n_a // step
    # The search runs on block means of ``step`` A-lines, so every 3-D filter below works
    # on an array ``step`` times smaller than the volume (the refinement goes back to
    # full resolution, but only in a thin window around each surface).
    vol_b = vol[:, :, :n_cb * step].reshape(n_b, n_z, n_cb, step).mean(axis=3) / scale
    sigma_b = (0.5 * lateral_sigma_px, 0.7, lateral_sigma_px / step)
    db_b = 10 * xp.log10(xp.maximum(vol_b, np.float32(1e-4)))
    db_b = nd.gaussian_filter(db_b, sigma_b, mode="nearest")
    # Ridge strength: brightness above the local background (a band, not a plateau).
    ridge_b = db_b - nd.uniform_filter1d(db_b, max(3, int(round(float(um(24))))) | 1, axis=1, mode="nearest")
    # ILM edge on linear intensity: the dB gradient peaks at the foot of the step (the
    # noise floor), ~1 px above the boundary; the linear gradient peaks at its middle.
    edge_b = nd.gaussian_filter(vol_b, (sigma_b[0], 1.0, sigma_b[2]), order=(0, 1, 0), mode="nearest")
    clock("features")

    def stats(feature_b):
        return feature_b.mean(), feature_b.std() + np.float32(1e-6)

    def search(feature_b, lo, hi, feature_stats=None):
        # The feature is standardised over the whole volume, then only the depth band
        # holding the windows is searched: the IS/OS, COST and ILM windows span a few tens
        # of rows, so their cost volumes and recursions shrink by the same factor.
        # Cost volume and recursion are timed apart (summed over the four surfaces).
        z0, z1 = _depth_band(lo, hi, n_z)
        mean, sd = feature_stats or stats(feature_b)
        cost = _window_cost((feature_b[:, z0:z1] - mean) / sd, lo - z0, hi - z0, xp)
        clock("search.cost", accumulate=True)
        path = dp_surface(cost, max_slope=max_slope, backend=backend) + z0
        clock("search.dp", accumulate=True)
        return path

    # IS/OS, COST and RPE: identified by the anatomy's order and spacing in the volume's
    # own flattened mean profile (bands.identify_bands), not by which is brightest; each
    # surface is then searched in a window around its band that follows the retina.
    bands = identify_bands(to_host(db_b), to_host(ridge_b), depth_um_per_px=depth_um_per_px)
    clock("bands")
    shift = to_device(bands.shift_px, device).astype(xp.float32)
    ridge_stats = stats(ridge_b)
    windows = _band_windows(bands, depth_um_per_px)
    found = {}
    for name in ("RPE", "ISOS", "COST"):
        lo_px, hi_px = windows[name] if not (bands.merged_cost_rpe and name == "RPE") else \
            windows["COMPLEX"]
        found[name] = search(ridge_b, shift + np.float32(lo_px), shift + np.float32(hi_px),
                             ridge_stats).astype(xp.float32)
    rpe_b, isos_b, cost_b = found["RPE"], found["ISOS"], found["COST"]
    if report is not None:
        report.update(band_model=bands, windows_px=windows)
    # ILM: the first rise out of the dark vitreous. Between nerve-fibre bundles the NFL is
    # dim and deeper edges (INL/OPL) can be stronger, so the search starts at the first
    # depth brighter than 10 % of the mean intensity (-10 dB) and looks only 10 µm above
    # to 20 µm below it.
    vitreous = find_vitreous(to_host(db_b.mean(axis=(0, 2))), float(to_host(xp.median(isos_b))),
                             depth_um_per_px=depth_um_per_px)
    if report is not None:
        report["vitreous"] = vitreous
    ilm_b = None
    if vitreous.in_view:
        above = db_b >= np.float32(vitreous.level_db)
        first = xp.argmax(above, axis=1).astype(xp.float32)
        first = xp.where(above.any(axis=1), first, np.float32(vitreous.crossing_px))
        ilm_hi = xp.minimum(first + um(20), isos_b - um(MIN_ILM_TO_ISOS_UM))
        ilm_b = search(edge_b, xp.minimum(xp.maximum(first - um(10), 0), ilm_hi), ilm_hi).astype(xp.float32)

    if timings is not None:
        timings["search"] = timings["search.cost"] + timings["search.dp"]
    out = {}
    merged = bands.merged_cost_rpe
    for name, surf_b in (("ILM", ilm_b), ("ISOS", isos_b), ("COST", cost_b), ("RPE", rpe_b)):
        if merged and name == "COST":
            continue
        if surf_b is None:      # the ILM, above the depth window
            out[name] = xp.full((n_b, n_a), np.nan, dtype=xp.float32)
            continue
        guess = _to_full_columns(surf_b, step, n_a, xp)
        # The refinement stays inside the band's own window (never reaches a neighbour).
        radius = 2 if name == "ILM" else int(np.clip(np.floor(min(np.subtract(
            *windows["COMPLEX" if merged and name == "RPE" else name][::-1]) / 2, 2.0)), 1, 2))
        out[name] = _refine(vol, guess, radius, edge=name == "ILM", lateral_sigma_px=lateral_sigma_px,
                            backend=backend)
    if merged:
        # One ridge holds both bands: the refined complex, split by its width (bands.py).
        up, down = (np.float32(v) for v in bands.complex_offsets_px)
        complex_ = out["RPE"]
        out["COST"], out["RPE"] = complex_ - up, complex_ + down
        out = {k: out[k] for k in ("ILM", "ISOS", "COST", "RPE")}
    # The outer bands are parallel over an AO field (the outer segments change length only
    # slowly with eccentricity): weaker bands follow the strongest one at a smoothly
    # varying distance, so speckle on a dim COST or RPE cannot make its surface jump.
    strongest = max(("ISOS", "COST", "RPE"), key=lambda k: bands.strength_sd[k])
    for name in ("ISOS", "COST", "RPE"):
        if name != strongest:
            off = nd.median_filter(out[name] - out[strongest], size=(5, 9), mode="nearest")
            out[name] = out[strongest] + nd.gaussian_filter(off, (2.0, 4.0), mode="nearest")
    # Neighbouring bands pull each other's maxima together: fit the bands (band_fit.py).
    out, fit = debias_surfaces(vol, out, strongest, bands, depth_um_per_px=depth_um_per_px, xp=xp)
    if report is not None:
        report["band_fit"] = fit
    clock("refine")
    return out


def flatten_volume(volume, surface_px, *, target_depth_px: float | None = None, device: str = "cpu"):
    """Shift every A-line along depth so that ``surface_px`` lies at one depth.

    Parameters
    ----------
    volume : array (n_bscans, n_depth, n_alines)
    surface_px : array (n_bscans, n_alines) float, e.g. ``surfaces["RPE"]``
    target_depth_px : float or None
        Depth the surface is moved to; default its median.

    Returns
    -------
    float32 (n_bscans, n_depth, n_alines) on ``device``; linear interpolation, edge values
    repeated.
    """
    xp = get_backend(device).xp
    vol = to_device(volume, device).astype(xp.float32, copy=False)
    surf = to_device(surface_px, device).astype(xp.float32)
    if surf.shape != (vol.shape[0], vol.shape[2]):
        raise ValueError(f"surface_px must be (n_bscans, n_alines) = {(vol.shape[0], vol.shape[2])}; "
                         f"got {surf.shape}")
    target = xp.median(surf) if target_depth_px is None else np.float32(target_depth_px)
    n_b, n_z, n_a = vol.shape
    src = xp.arange(n_z, dtype=xp.float32)[None, :, None] + (surf - target)[:, None, :]
    i0 = xp.floor(src)
    f = (src - i0).astype(xp.float32)
    i0 = i0.astype(xp.int32)
    b = xp.arange(n_b, dtype=xp.int32)[:, None, None]
    a = xp.arange(n_a, dtype=xp.int32)[None, None, :]
    lo = vol[b, xp.clip(i0, 0, n_z - 1), a]
    hi = vol[b, xp.clip(i0 + 1, 0, n_z - 1), a]
    return (lo * (1 - f) + hi * f).astype(xp.float32)
