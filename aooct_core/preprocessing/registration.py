"""Motion correction of repeated volumes: B-scan displacements in one common frame.

Model: observed B-scan ``b`` of repeat ``r`` is the motion-free B-scan ``b`` displaced
by ``m[r, b] = (depth_px, aline_px)``. The estimate has four steps, each a batched
phase correlation of all B-scans at once (:mod:`aooct_core.preprocessing.motion`):

1. **Rigid, then per B-scan, across repeats.** Each repeat is matched to the reference
   repeat as a whole (per axis, the median of every B-scan's peak in a wide window), then
   every B-scan is refined in a small window around that rigid shift. This gives
   ``d[r, b] = m[r, b] - m[ref, b]`` precisely, because both see the same tissue.
2. **Mean frame.** Subtracting the weighted mean over repeats, ``e = d - mean_r d``,
   maps every repeat onto the *mean* displacement ``M[b] = mean_r m[r, b]`` (its
   jitter is ~1/sqrt(R) of one repeat's), and the repeats are averaged there.
3. **Saccades** (≥ 3 repeats): a jump of one repeat between consecutive B-scans shows
   in ``e`` of every repeat; attributing it to the repeat that moved (the others only
   drifted, zero-mean) gives back its share of ``M`` (:func:`~aooct_core.preprocessing.tracking.saccade_steps`).
   With two repeats each repeat's own adjacent-B-scan track picks the mover
   (:func:`~aooct_core.preprocessing.tracking.two_repeat_saccades`); jumps it cannot
   attribute are reported as ``MotionReport.saccade_ambiguity_um``.
4. **Within volume.** Adjacent B-scans of the mean-frame average are registered to each
   other. Axially their cumulative sum tracks ``M[b]`` plus smooth anatomy (tilt,
   curvature), removed as a low-order polynomial. Laterally only saccade-sized jumps are
   used, and only for a single volume: adjacent B-scans see different cones.
   What remains is the slow lateral drift of ``M`` (≈ drift / sqrt(R)) and the
   polynomial part of the axial ``M``; :func:`~aooct_core.preprocessing.pipeline.preprocess_case`
   recovers the lateral drift from the cone lattice (its phase, and its isotropy for
   the linear part; :mod:`~aooct_core.preprocessing.lattice`).

Cost: one pass over each repeat (row means → axial profiles and blink check); the
lateral match reads only the structured depth rows (every 2nd row with lateral contrast),
so no full-volume float copy or 2-D FFT is made. On the CPU the per-repeat work runs in a
small thread pool (:mod:`~aooct_core.preprocessing.cpu_parallel`; ``cpu_threads``); the CUDA
path is serial, as before. :class:`MotionReport` (:mod:`~aooct_core.preprocessing.motion_report`)
and :func:`adjacent_shifts` (:mod:`~aooct_core.preprocessing.adjacent`) live in their own
modules and are re-exported here.

Dim or blinked B-scans (low mean intensity), B-scans whose correlation peak is weak and
isolated false matches are rejected: their displacement is interpolated from neighbours,
they get weight 0 in the average and they are listed in ``rejected_bscans``. A match whose
peak does not stand out of its correlation surface (peak-to-sidelobe ratio below
``min_significance``; :func:`~aooct_core.preprocessing.motion.peak_significance`) is not
applied either: the B-scan is left out of the average and listed in ``weak_bscans``. On the
phantom family's tuning seeds 0-99 (82 members with ≥ 2 repeats) this took the B-scans
averaged while more than 2 px off from 5.6 % to 2.8 % and the repeats with more than a
quarter of them off from 13 to 1 of 219, averaging 85 % of the B-scans instead of 92 %
(``bench/accuracy/registration_family.py``).

References
----------
.. [1] Kocaoglu OP, Lee S, Jonnal RS, et al. "Imaging cone photoreceptors in three
       dimensions and in time using ultrahigh resolution optical coherence tomography with
       adaptive optics." Biomed. Opt. Express 2(4):748-763 (2011).
.. [2] Jonnal RS et al. "In vivo functional imaging of human cone photoreceptors."
       Opt. Express 15(24):16141-16160 (2007); registration 15 µm -> 1.3 µm RMS (2011).
"""
from __future__ import annotations

from functools import partial

import numpy as np

from aooct_core.geometry import Geometry
from aooct_core.preprocessing.adjacent import adjacent_track, row_weights_of, spectra_chunked
from aooct_core.preprocessing.adjacent import adjacent_shifts  # noqa: F401  (re-exported)
from aooct_core.preprocessing.averaging import average_repeats
from aooct_core.preprocessing.backend import get_backend, to_device, to_host
from aooct_core.preprocessing.cpu_parallel import cpu_pool as _cpu_pool
from aooct_core.preprocessing.cpu_parallel import row_means_cpu as _row_means_cpu
from aooct_core.preprocessing.cpu_parallel import parallel_spectra as _parallel_spectra
from aooct_core.preprocessing.motion import match_spectra
from aooct_core.preprocessing.motion_report import MotionReport  # noqa: F401  (re-exported)
from aooct_core.preprocessing.tracking import (
    interp_invalid as _interp_invalid,
    isolated_outliers as _isolated_outliers,
    mean_frame_residual as _mean_frame_residual,
    polynomial_residual as _polynomial_residual,
    robust_sd as _robust_sd,
    saccade_steps as _saccade_steps,
    two_repeat_saccades as _two_repeat_saccades,
    within_volume_track as _within_volume_track,
)

__all__ = ["MotionReport", "estimate_motion", "estimate_motion_details", "pick_reference", "adjacent_shifts"]


def _check_volumes(volumes) -> None:
    if getattr(volumes, "ndim", 0) != 4:
        raise ValueError(
            "volumes must be 4-D (repeat, bscan, depth, aline); got shape "
            f"{getattr(volumes, 'shape', None)} — stack repeats with np.stack, or add an axis "
            "with volume[None] for a single volume")
    if volumes.shape[0] < 1 or volumes.shape[1] < 2 or volumes.shape[2] < 8 or volumes.shape[3] < 8:
        raise ValueError(f"volumes shape {volumes.shape} is too small: need ≥ 2 B-scans and ≥ 8 px "
                         "in depth and along the A-lines")


def pick_reference(volumes, *, valid=None, device: str = "cpu") -> int:
    """Pick the repeat least affected by motion and blinks.

    Score = fraction of usable B-scans × mean correlation of adjacent rows of the
    repeat's en face projection (lateral jitter between B-scans lowers it).

    Returns
    -------
    int, index into the repeat axis.
    """
    _check_volumes(volumes)
    backend = get_backend(device)
    xp = backend.xp
    n_repeats = volumes.shape[0]
    scores = np.zeros(n_repeats)
    for r in range(n_repeats):
        vol = to_device(volumes[r], device).astype(xp.float32, copy=False)
        enface = to_host(xp.sqrt(xp.maximum(vol, 0)).mean(axis=1))
        ok = np.ones(enface.shape[0], bool) if valid is None else np.asarray(valid[r], bool)
        rows = enface[ok] - enface[ok].mean(axis=1, keepdims=True)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12
        corr = (rows[1:] * rows[:-1]).sum(axis=1).mean() if len(rows) > 1 else 0.0
        scores[r] = ok.mean() * corr
    return int(np.argmax(scores))


def _match_repeat(r, *, volumes, row_means, valid, ref, spec_ref, row_weights, shape, rigid_radius, search_px,
                  sigma_px, chunk, backend):
    # Match repeat ``r`` to the reference: (shifts (B, 2), quality (B,), at_edge (B,), rigid (2,),
    # rigid search hit its edge) on the host. One task of the CPU pool; a plain call on CUDA.
    xp = backend.xp
    device = backend.device
    n_bscans = volumes.shape[1]
    spec_r = spectra_chunked(to_device(volumes[r], device), chunk, backend, row_weights, as_fixed=False,
                              row_mean=row_means[r])
    pair_ok = valid[r] & valid[ref]
    # Rigid shift, per axis, as the median of the per-B-scan peaks in a wide window
    # (a median of sharp single-B-scan peaks is robust where the peak of their mean
    # cross-spectrum is not: a drifting repeat smears the true peak while a
    # cone-lattice alias stays sharp). Axial from the depth profiles (cheap); lateral
    # from the same correlation surfaces as the per-B-scan match (one lateral pass).
    ok = to_device(pair_ok if pair_ok.any() else valid[r], device)
    zero = xp.zeros((n_bscans, 2), dtype=xp.int64)
    g_ax, _, g_edge = match_spectra(spec_r, spec_ref, shape, backend, center_px=zero,
                                    search_px=(rigid_radius[0], 0), sigma_px=sigma_px, lateral=False)
    use = ok & ~g_edge
    rigid_edge = bool(to_host(use.sum()) < 0.5 * max(int(to_host(ok.sum())), 1))
    ax0 = xp.rint(xp.median(g_ax[:, 0][use] if bool(use.any()) else g_ax[:, 0])).astype(xp.int64)
    center = xp.stack([xp.broadcast_to(ax0, (n_bscans,)), zero[:, 1]], axis=1)
    shifts, q, edge, lat0, psr = match_spectra(spec_r, spec_ref, shape, backend, center_px=center,
                                               search_px=search_px, sigma_px=sigma_px,
                                               recenter_lateral_px=rigid_radius[1], recenter_over=ok,
                                               significance=True)
    shifts, q, edge, psr = to_host(shifts), to_host(q), to_host(edge), to_host(psr)
    good = to_host(ok) & ~edge
    rigid = np.median(shifts[good], axis=0) if good.any() else (float(to_host(ax0)), float(to_host(lat0)))
    return shifts, q, edge, rigid, rigid_edge, psr


def estimate_motion(volumes, geometry: Geometry, *, reference: int | None = None, device: str = "cpu",
                    search_px: tuple[int, int] = (12, 12), rigid_search_fraction: float = 0.25,
                    sigma_px: float = 1.5, within_volume: bool | None = None,
                    axial_detrend_degree: int = 2, saccade_threshold_px: float = 2.0,
                    min_quality: float = 0.05, min_significance: float = 3.0, outlier_px: float = 2.0,
                    dim_fraction: float = 0.5, max_rejected_fraction: float = 0.1,
                    max_weak_fraction: float = 0.5,
                    chunk_bscans: int | None = None, return_average: bool = False,
                    cpu_threads: int | None = None):
    """Estimate every B-scan's displacement for a case of repeated volumes.

    Parameters
    ----------
    volumes : array (n_repeats, n_bscans, n_depth, n_alines), any real dtype, linear intensity
        May live on the GPU (CuPy) or be a NumPy memmap; it is never modified.
    geometry : Geometry
        For the residual in µm.
    reference : int or None
        Reference repeat; None picks one with :func:`pick_reference`.
    device : {"cpu", "cuda"}
    search_px : (int, int)
        Per-B-scan search half-window (depth, aline) around the rigid shift, px.
    rigid_search_fraction : float
        Rigid search half-window as a fraction of the B-scan size.
    sigma_px : float
        Correlation peak width (Gaussian spectral window), px.
    within_volume : bool or None
        Track the mean frame's motion along the B-scan sequence by registering adjacent
        B-scans of the mean-frame average (step 3 of the module docstring; see
        :func:`~aooct_core.preprocessing.tracking.within_volume_track`). None = yes.
    axial_detrend_degree : int
        Polynomial (along the B-scans) removed from the axial within-volume track as
        anatomy (tilt, curvature).
    saccade_threshold_px : float
        A repeat whose lateral jump between consecutive B-scans departs from the median
        jump of the repeats by more than this made a (micro)saccade (see
        :func:`~aooct_core.preprocessing.tracking.saccade_steps`). Drift + tremor + estimation noise of one jump is
        ~0.45 px RMS (phantom, 2.26 µm/px), so 2 px (4.5 µm, ~4.5 SD) keeps false
        detections rare; smaller saccades are left to the lattice phase in
        :func:`~aooct_core.preprocessing.pipeline.preprocess_case`. For ≤ 2 repeats the within-volume
        lateral track is used instead, above max(threshold, 4 × its robust step noise).
    min_quality : float
        B-scans whose correlation peak is below this fraction of a perfect match are rejected.
    min_significance : float
        B-scans whose lateral peak is less than this many SDs above the rest of its
        correlation surface are weak: not averaged, their shift interpolated (listed in
        ``weak_bscans``; they count against ``registration_ok`` only beyond
        ``max_weak_fraction``). 3 separated the phantom family's false matches best: half
        of them left out, 5 % of the right ones.
    max_weak_fraction : float
        ``registration_ok`` is False when more than this share of the non-reference
        B-scans is weak: the repeats then add little, and what they add is in doubt.
    outlier_px : float
        A B-scan whose across-repeat shift differs from the running median of its 5
        neighbours by more than this is a false match and is rejected.
    dim_fraction : float
        B-scans dimmer than this fraction of the median B-scan are rejected (blinks).
    chunk_bscans : int or None
        B-scans per matching batch of the within-volume track (memory bound); default all
        on CUDA, 128 on the CPU. The across-repeat match takes all B-scans at once (its
        rigid shift is a median over them); its arrays hold only the structured rows.
    return_average : bool
        Also return the corrected repeat average and the OCTA decorrelation (float32, on
        ``device``; decorrelation None for one repeat).
    cpu_threads : int or None
        CPU only: threads for the per-repeat work (row means, reference spectra, matching
        of each repeat), each task's FFTs on one thread; None = min(CPU cores,
        max(2, n_repeats - 1)); 1 = no pool, scipy.fft on one worker. Pool and serial paths
        agree within float32 rounding (shifts within 5e-6 px on the phantom). Ignored on CUDA.

    Returns
    -------
    MotionReport, or (MotionReport, average, decorrelation) when ``return_average``.
    """
    report, average, decor, _ = estimate_motion_details(**dict(locals()))
    return (report, average, decor) if return_average else report


def estimate_motion_details(volumes, geometry, *, reference, device, search_px, rigid_search_fraction, sigma_px,
                     within_volume, axial_detrend_degree, saccade_threshold_px, min_quality, min_significance,
                     outlier_px, dim_fraction, max_rejected_fraction, max_weak_fraction, chunk_bscans,
                     return_average, cpu_threads):
    """:func:`estimate_motion` with every option explicit, returning also what
    :func:`~aooct_core.preprocessing.pipeline.preprocess_case` needs to re-estimate the
    residual after its lattice step: ``(report, average, decorrelation, (e_lateral, usable))``
    with ``e_lateral`` the clean lateral shifts (R, B) px and ``usable`` (R, B) bool."""
    _check_volumes(volumes)
    if reference is not None and not 0 <= int(reference) < volumes.shape[0]:
        raise ValueError(f"reference must index a repeat in [0, {volumes.shape[0] - 1}]; got {reference}")
    backend = get_backend(device)
    xp = backend.xp
    n_repeats, n_bscans, n_depth, n_alines = volumes.shape
    shape = (n_depth, n_alines)
    chunk = chunk_bscans or (n_bscans if device == "cuda" else 128)
    if not 0 < dim_fraction < 1:
        raise ValueError(f"dim_fraction must be in (0, 1); got {dim_fraction!r}")
    # CPU: a small thread pool over repeats / halves of the B-scans (NumPy reductions and
    # scipy.fft release the GIL), each task's FFTs on one thread; CUDA: one stream, as is.
    pool = _cpu_pool(device, cpu_threads, n_repeats)
    if device == "cpu":
        backend = backend.with_workers(1 if pool is not None or cpu_threads == 1 else -1)
    # One pass over each repeat: the mean intensity of every depth row gives both the
    # axial profiles (compute_spectra) and the B-scan means for the blink check
    # (same rule as dim_bscans).
    def not_dim(m):
        return ~to_host(m.mean(axis=1) < dim_fraction * xp.median(m.mean(axis=1)))

    weights_job = None
    deferred = pool is not None and reference is not None
    if pool is None:
        row_means = [to_device(volumes[r], device).mean(axis=2, dtype=xp.float32) for r in range(n_repeats)]
    elif deferred:
        # Reference known: only its row means now (its row weights beside them); each other
        # repeat's pass runs in its own matching task, just before its rows are gathered,
        # while that repeat is still in the cache (the estimate is memory-bound here).
        weights_job = pool.submit(row_weights_of, volumes[int(reference)], device)
        row_means = [None] * n_repeats
        row_means[int(reference)] = _row_means_cpu(volumes[int(reference)][None])[0]
    else:
        row_means = _row_means_cpu(volumes, pool)
    valid = np.stack([not_dim(m) if m is not None else np.ones(n_bscans, bool) for m in row_means])
    if reference is not None:
        ref = int(reference)
    else:
        ref = pick_reference(volumes, valid=valid, device=device) if n_repeats > 1 else 0

    d = np.zeros((n_repeats, n_bscans, 2), np.float32)
    quality = np.ones((n_repeats, n_bscans), np.float32)
    rigid = np.zeros((n_repeats, 2), np.float32)
    ref_vol = to_device(volumes[ref], device)
    row_weights = row_weights_of(ref_vol, device) if weights_job is None else weights_job.result()
    if pool is None:
        spec_ref = spectra_chunked(ref_vol, chunk, backend, row_weights, row_mean=row_means[ref])
    else:
        spec_ref = _parallel_spectra(pool, ref_vol, backend, row_weights, row_means[ref], sigma_px=sigma_px)
    del ref_vol
    rigid_radius = (int(rigid_search_fraction * n_depth), int(rigid_search_fraction * n_alines))
    match_one = partial(_match_repeat, volumes=volumes, row_means=row_means, valid=valid, ref=ref,
                        spec_ref=spec_ref, row_weights=row_weights, shape=shape, rigid_radius=rigid_radius,
                        search_px=search_px, sigma_px=sigma_px, chunk=chunk, backend=backend)
    others = [r for r in range(n_repeats) if r != ref]
    within = True if within_volume is None else bool(within_volume)
    track_job = None
    if pool is None:
        matched = [match_one(r) for r in others]
    else:
        def row_means_then_match(r):
            if row_means[r] is None:
                row_means[r] = _row_means_cpu(volumes[r][None])[0]
                valid[r] = not_dim(row_means[r])
            return match_one(r)

        jobs = [pool.submit(row_means_then_match, r) for r in others[1:]]
        if within:
            # The reference's adjacent-B-scan track needs only spec_ref: it runs beside
            # the repeats (queued last, it fills the gap when one repeat finishes first).
            track_job = pool.submit(adjacent_track, spec_ref, valid[ref], shape, search_px, sigma_px,
                                    chunk, backend, lateral=n_repeats < 3)
        # The calling thread matches the first repeat itself (the pool has one thread fewer).
        matched = [row_means_then_match(r) for r in others[:1]] + [j.result() for j in jobs]
    track = None if track_job is None else track_job.result()[0]
    rigid_edge = False
    significance = np.full((n_repeats, n_bscans), np.inf, np.float32)
    for r, (shifts, q, edge, rigid_r, edge_r, psr) in zip(others, matched):
        significance[r] = psr
        d[r] = shifts
        quality[r] = np.where(edge, 0, q)
        rigid[r] = rigid_r
        rigid_edge |= edge_r
    matched_ok = valid & (quality >= min_quality) & ~_isolated_outliers(d, outlier_px)
    matched_ok[ref] = valid[ref]
    weak = matched_ok & (significance < min_significance)
    usable = matched_ok & ~weak
    for r in range(n_repeats):
        d[r] = _interp_invalid(d[r], usable[r])
    weights = usable.astype(np.float32)
    w_any = weights.sum(axis=0)
    w_mean = np.where(w_any[None] > 0, weights, 1.0) / np.where(w_any > 0, w_any, n_repeats)[None]
    mean_rel = (w_mean[..., None] * d).sum(axis=0)        # M[b] - m[ref, b]
    e = d - mean_rel[None]

    if within and track is None:
        # Adjacent B-scans of the reference (its spectra already at hand): m[ref] plus anatomy.
        track, _ = adjacent_track(spec_ref, valid[ref], shape, search_px, sigma_px, chunk, backend,
                                   lateral=n_repeats < 3)
    # Saccades seen across repeats give back their mean-frame share (lateral axis). Two
    # repeats cannot say who moved; each repeat's own adjacent-B-scan track decides.
    if within and n_repeats == 2:
        other = others[0]
        # Its own structured rows: the reference's rows sit elsewhere in a repeat shifted in depth.
        other_vol = to_device(volumes[other], device)
        spec_other = spectra_chunked(other_vol, chunk, backend, row_weights_of(other_vol, device),
                                      row_mean=row_means[other])
        del other_vol
        other_track, _ = adjacent_track(spec_other, valid[other], shape, search_px, sigma_px, chunk, backend,
                                         lateral=True)
        del spec_other
        saccades, ambiguity_px = _two_repeat_saccades(d[..., 1], track[:, 1], other_track[:, 1], reference=ref,
                                                      threshold_px=saccade_threshold_px)
    else:
        saccades, ambiguity_px = _saccade_steps(e[..., 1], saccade_threshold_px), 0.0
    e_clean = e.copy()
    e_clean[..., 1] -= saccades - saccades.mean(axis=0, keepdims=True)
    shifts = e.astype(np.float32)
    shifts[..., 1] += saccades.mean(axis=0)[None] - saccades.mean(axis=0).mean()
    if within:
        # The reference's track plus mean_rel is the mean frame's M plus anatomy. With ≥ 2
        # repeats only its axial part is used (saccades come from the repeats).
        track = track + mean_rel
        step_noise = _robust_sd(np.diff(track[:, 1]))
        fast = _within_volume_track(track, axial_degree=axial_detrend_degree,
                                    step_threshold_px=max(saccade_threshold_px, 4 * step_noise))
        if n_repeats >= 2:
            fast[:, 1] = 0          # saccades already came from the across-repeat jumps
        shifts = shifts + fast[None]
    del spec_ref
    average = decor = None
    if return_average:
        average, decor = average_repeats(volumes, shifts, weights=weights, device=device,
                                         decorrelation=n_repeats > 1)
    # Across-repeat estimate of what is left. Lateral: the mean frame minus the saccades
    # (preprocess_case replaces it once the lattice step has corrected the slow part).
    # Axial: with the within-volume track only its polynomial detrend is left (it is
    # removed as anatomy); without it, the whole mean frame.
    resid = _mean_frame_residual(e_clean, usable)
    if within and n_repeats >= 2:
        resid[0] = _polynomial_residual(e_clean[..., 0], usable, degree=axial_detrend_degree)

    rejected = [(int(r), int(b)) for r, b in zip(*np.nonzero(~matched_ok))]
    weak_list = [(int(r), int(b)) for r, b in zip(*np.nonzero(weak))]
    ok = (len(rejected) <= max_rejected_fraction * n_repeats * n_bscans and not rigid_edge
          and len(weak_list) <= max_weak_fraction * max(n_repeats - 1, 1) * n_bscans)
    report = MotionReport(
        shifts_px=shifts, reference=ref, rigid_shift_px=rigid, quality=quality, weights=weights,
        rejected_bscans=rejected, weak_bscans=weak_list,
        residual_lateral_um_rms=float(resid[1] * geometry.aline_um_per_px),
        residual_axial_px_rms=float(resid[0]), registration_ok=bool(ok),
        saccade_ambiguity_um=float(ambiguity_px * geometry.aline_um_per_px))
    return report, average, decor, (e_clean[..., 1], usable)
