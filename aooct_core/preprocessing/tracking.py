"""The motion model behind the registration: what across-repeat shifts can and cannot see.

Helpers of :func:`~aooct_core.preprocessing.registration.estimate_motion`, all on small
host arrays of per-B-scan shifts: filling rejected B-scans, rejecting isolated false
matches, attributing saccades to the repeat that made them, the within-volume track of
the mean frame, and the expected residual of the mean frame.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["robust_sd", "interp_invalid", "isolated_outliers", "saccade_steps", "two_repeat_saccades", "within_volume_track",
           "mean_frame_residual", "polynomial_residual", "fast_residual"]


def robust_sd(values: np.ndarray) -> float:
    """``1.4826 · median |x − median x|``: the SD of the bulk, blind to a few jumps."""
    values = np.asarray(values, np.float64)
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def interp_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill rows where ``valid`` is False by linear interpolation along the B-scan axis."""
    out = values.copy()
    if valid.all() or not valid.any():
        return out
    idx = np.arange(len(valid))
    for k in range(values.shape[1]):
        out[~valid, k] = np.interp(idx[~valid], idx[valid], values[valid, k])
    return out


def isolated_outliers(d: np.ndarray, threshold_px: float) -> np.ndarray:
    """B-scans whose shift jumps away from *every* neighbour: a false correlation peak.

    Eye motion is continuous between B-scans except for saccades, which are steps. A
    B-scan is an outlier when its shift differs by more than ``threshold_px`` (on either
    axis) from each of its four nearest neighbours (b ± 1, b ± 2). Steps, and short
    plateaus where two repeats saccade a few B-scans apart (a running median of 5 flags
    those), are kept. Returns (R, B) bool.
    """
    n = d.shape[1]
    if n < 5:
        return np.zeros(d.shape[:2], bool)
    idx = np.arange(n)
    far = np.ones(d.shape[:2], bool)
    for k in (-2, -1, 1, 2):
        nb = d[:, np.clip(idx + k, 0, n - 1)]
        # At the edges a clipped neighbour is the B-scan itself: it does not count.
        self_ref = (np.clip(idx + k, 0, n - 1) == idx)[None]
        far &= (np.abs(d - nb) > threshold_px).any(axis=2) | self_ref
    return far


def saccade_steps(e: np.ndarray, threshold_px: float) -> np.ndarray:
    """Per-repeat step series of (micro)saccades found in the across-repeat shifts.

    Model: between consecutive B-scans each repeat moves by a small drift/tremor step
    (zero-mean, independent across repeats) plus, rarely, a saccade. Across-repeat
    matching sees the jumps ``J[r] = j[r] - mean_r j`` of the mean-frame shifts ``e``,
    i.e. each repeat's true step ``j[r]`` up to the unknown common part ``c = mean_r j``.
    A repeat whose jump departs from the median jump by more than ``threshold_px`` made
    a saccade; the others only drifted, and zero-mean drift gives ``c = -mean(J)`` over
    those inliers (a trimmed mean: the saccade is excluded, the drift of the other repeats
    is not mistaken for it, unlike the plain median when two repeats move at once).
    At B-scans without a saccade nothing is changed.

    Parameters
    ----------
    e : (R, B) mean-frame shifts along one axis, px
    threshold_px : departure from the median jump above which a repeat saccaded, px

    Returns
    -------
    (R, B) cumulative saccade displacement of each repeat, px (0 before the first jump);
    its mean over repeats is the mean-frame share the across-repeat matching cannot see.
    """
    n_repeats = e.shape[0]
    if n_repeats < 3 or e.shape[1] < 2:
        return np.zeros_like(e, dtype=np.float32)
    jumps = np.diff(e.astype(np.float64), axis=1)
    outlier = np.abs(jumps - np.median(jumps, axis=0, keepdims=True)) > threshold_px
    inlier = ~outlier
    # Need a majority of drifting repeats to anchor c; otherwise leave the B-scan alone.
    usable = outlier.any(axis=0) & (inlier.sum(axis=0) * 2 > n_repeats)
    c = -(jumps * inlier).sum(axis=0) / np.maximum(inlier.sum(axis=0), 1)
    steps = np.where(usable[None], jumps + c[None], 0.0)
    return np.concatenate([np.zeros((n_repeats, 1)), np.cumsum(steps, axis=1)], axis=1).astype(np.float32)


# Evidence (in robust SDs of the adjacent steps) needed to say which of two repeats made
# a saccade; below it the jump is left to the lattice step (bench_preprocessing --repeats 2).
TWO_REPEAT_EVIDENCE_SD = 2.5


def two_repeat_saccades(d: np.ndarray, ref_track: np.ndarray, other_track: np.ndarray, *, reference: int,
                        threshold_px: float) -> tuple[np.ndarray, float]:
    """Saccades of two repeats, each attributed to the repeat that made it.

    With two repeats a jump ``J`` of ``d = m[other] - m[ref]`` between consecutive B-scans
    is precise (both repeats see the same tissue) but says nothing about who moved, and
    the mean frame moves by ``+J/2`` if the other repeat jumped, ``-J/2`` if the reference
    did. Each repeat's own adjacent-B-scan track (its ``m`` plus smooth anatomy) decides.
    Those lateral steps see only part of a jump (adjacent B-scans hold different cones;
    ~40 % of it on phantoms) but with the right sign: the mover's step points along its
    share of ``J`` (``-J`` for the reference, ``+J`` for the other), the other's stays
    near 0. The evidence is the difference of the two steps, each in robust SDs of that
    track's steps; a jump is attributed only when it exceeds
    :data:`TWO_REPEAT_EVIDENCE_SD`, since jumps of two drifting repeats can add up past
    ``threshold_px`` without a saccade. The size always comes from ``d``.

    Parameters
    ----------
    d : (2, B) shifts of each repeat relative to the reference along one axis, px
        (the reference's row is 0)
    ref_track, other_track : (B,) cumulative adjacent-B-scan tracks of the reference and
        of the other repeat along that axis, px
    reference : index of the reference repeat (0 or 1)
    threshold_px : smallest ``|J|`` treated as a saccade, px

    Returns
    -------
    saccades : (2, B) float32
        Cumulative saccade displacement of each repeat, px (0 before the first jump); same
        meaning as :func:`saccade_steps`, whose across-repeat rule needs three repeats.
    ambiguity_px : float
        Half the largest jump left unattributed, px: the mean frame may be off by this much
        after it (0 when every jump was attributed). The lattice step often repairs it, but
        nothing here can tell; the registration QC warns on it.
    """
    d = np.asarray(d, np.float64)
    if d.shape[0] != 2 or d.shape[1] < 2:
        return np.zeros_like(d, dtype=np.float32), 0.0
    other = 1 - int(reference)
    jumps = np.diff(d[other])

    def in_sd(track):
        steps = np.diff(np.asarray(track, np.float64))
        return steps / max(robust_sd(steps), 0.05)

    direction = np.sign(jumps)
    evidence = -in_sd(ref_track) * direction - in_sd(other_track) * direction   # > 0: the reference moved
    saccade = np.abs(jumps) > threshold_px
    ref_moved = saccade & (evidence > TWO_REPEAT_EVIDENCE_SD)
    other_moved = saccade & (evidence < -TWO_REPEAT_EVIDENCE_SD)
    steps = np.zeros((2, len(jumps)))
    steps[int(reference)] = np.where(ref_moved, -jumps, 0.0)
    steps[other] = np.where(other_moved, jumps, 0.0)
    unattributed = np.abs(jumps[saccade & ~ref_moved & ~other_moved])
    ambiguity = float(unattributed.max() / 2) if unattributed.size else 0.0
    return np.concatenate([np.zeros((2, 1)), np.cumsum(steps, axis=1)], axis=1).astype(np.float32), ambiguity


def within_volume_track(track: np.ndarray, *, axial_degree: int, step_threshold_px: float) -> np.ndarray:
    """Motion of the mean frame from its adjacent-B-scan steps: (B, 2) px.

    Axial: the cumulative track minus a polynomial of ``axial_degree`` along the B-scans —
    retinal tilt and curvature are smooth, the layers are continuous, so the steps are
    precise (~0.1 px on the phantom) and only the polynomial part of the motion is lost.
    Lateral: only jumps above ``step_threshold_px`` (saccades). Adjacent B-scans hold
    different rows of cones, so each lateral step is uncertain by ~0.7 px RMS (phantom,
    2.26 µm/px) and integrating every step adds more error than the drift it removes.
    """
    b = np.arange(len(track), dtype=np.float64)
    axial = track[:, 0] - np.polyval(np.polyfit(b, track[:, 0], min(axial_degree, len(b) - 1)), b)
    steps = np.diff(track[:, 1])
    jumps = np.where(np.abs(steps) > step_threshold_px, steps, 0)
    lateral = np.concatenate([[0.0], np.cumsum(jumps)])
    return np.stack([axial - axial.mean(), lateral - lateral.mean()], axis=1).astype(np.float32)


def mean_frame_residual(e: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Expected RMS of the mean displacement ``M[b]`` that across-repeat matching cannot see.

    With independent motion in R repeats, ``e[r, b] = m[r, b] - M[b]`` scatter with the
    motion variance σ² (R-1)/R around 0 and ``M[b]`` has variance σ²/R, so
    ``E[M²] = Σ_r e² / (R (R - 1))``. Returns (2,) px, NaN for fewer than 2 usable repeats.
    """
    n_used = usable.sum(axis=0)
    ok = n_used >= 2
    if not ok.any():
        return np.full(2, np.nan)
    centred = e - e.mean(axis=1, keepdims=True)          # one constant per repeat is free
    sq = (centred ** 2 * usable[..., None]).sum(axis=0)[ok]
    k = n_used[ok][:, None].astype(np.float64)
    return np.sqrt((sq / (k * (k - 1))).mean(axis=0))


def _centred_spread(part: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Per B-scan: sum over the usable repeats of part², their count, and which B-scans count.
    n_used = usable.sum(axis=0)
    ok = n_used >= 2
    return (part ** 2 * usable).sum(axis=0), n_used, ok


def polynomial_residual(e: np.ndarray, usable: np.ndarray, *, degree: int) -> float:
    """Expected RMS of the part of ``M[b]`` that a polynomial detrend along the B-scans removes.

    The within-volume axial track removes a polynomial of ``degree`` as retinal tilt and
    curvature, which also removes that part of the mean motion ``M`` (it cannot be told
    from anatomy): that part stays in the corrected shifts. With independent motion in R
    repeats, the polynomial part of each repeat's ``e[r] = m[r] - M`` has
    ``E|P e_r|² = (R-1)/R · E|P m|²`` and ``E|P M|² = E|P m|²/R``, so
    ``E|P M|² = Σ_r |P e_r|² / (R (R - 1))`` — the same identity as
    :func:`mean_frame_residual`, restricted to what the detrend removes (an expectation:
    with 3 repeats one case's value scatters around it by a factor ~2).

    Parameters
    ----------
    e : (R, B) mean-frame shifts along one axis, px
    usable : (R, B) bool
    degree : polynomial degree of the detrend (its constant is free anyway)

    Returns
    -------
    float, px RMS; NaN for fewer than 2 usable repeats.
    """
    n_repeats, n_bscans = e.shape
    if n_repeats < 2 or n_bscans < 2:
        return float("nan")
    b = np.arange(n_bscans, dtype=np.float64)
    deg = min(degree, n_bscans - 1)
    # Least-squares fit of every repeat at once; the constant is free (one per repeat).
    basis = np.vander((b - b.mean()) / max(b.std(), 1.0), deg + 1)
    coef, *_ = np.linalg.lstsq(basis, e.astype(np.float64).T, rcond=None)
    part = (basis @ coef).T
    part -= part.mean(axis=1, keepdims=True)
    sq, n_used, ok = _centred_spread(part, usable)
    if not ok.any():
        return float("nan")
    return float(np.sqrt((sq[ok] / (n_used[ok] * (n_used[ok] - 1))).mean()))


def fast_residual(e: np.ndarray, usable: np.ndarray, *, sigma_px: float) -> float:
    """RMS of the lateral error left once the mean frame's slow motion is corrected.

    After the cone-lattice step (:mod:`~aooct_core.preprocessing.lattice`), whose row
    phases are smoothed along the B-scans by a Gaussian of ``sigma_px``, two errors stay in
    each repeat's shift: the part of the common motion ``M`` faster than that smoothing,
    and the repeat's own across-repeat matching noise. Both show in the fast part of the
    across-repeat shifts, ``H e_r`` with ``H = 1 - Gaussian(sigma_px)``:
    ``e_r = (m_r - M) + (n_r - mean n)``. The estimate is the unbiased spread over repeats
    of that fast part, ``Σ_r |H e_r|² / (R - 1)`` (per B-scan, then averaged).

    Under the model it stays within a known factor of the truth: if the fast part is all
    eye motion (tremor) it is ``E|H m_r|²`` while the residual is ``E|H M|² = E|H m_r|²/R``
    (over by √R, 1.7× for 3 repeats); if it is all matching noise the residual is the full
    noise, of which ``H`` keeps about half (under by ~0.85×). Trend errors of the
    lattice shear and saccades missed by both steps are not counted (saccade steps are
    removed from ``e`` before).

    Parameters
    ----------
    e : (R, B) mean-frame shifts along the A-line axis with the attributed saccades
        removed, px
    usable : (R, B) bool
    sigma_px : smoothing of the lattice row phases along the B-scans, B-scans

    Returns
    -------
    float, px RMS; NaN for fewer than 2 usable repeats.
    """
    n_repeats, n_bscans = e.shape
    if n_repeats < 2 or n_bscans < 2:
        return float("nan")
    x = e.astype(np.float64)
    fast = x - gaussian_filter1d(x, sigma_px, axis=1, mode="nearest")
    sq, n_used, ok = _centred_spread(fast, usable)
    if not ok.any():
        return float("nan")
    return float(np.sqrt((sq[ok] / (n_used[ok] - 1)).mean()))
