"""The result of :func:`~aooct_core.preprocessing.registration.estimate_motion`: :class:`MotionReport`.

A plain frozen dataclass of host arrays and scalars, kept apart from the estimate itself
so that the registration module stays readable; re-exported by
:mod:`aooct_core.preprocessing.registration` and :mod:`aooct_core.preprocessing`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MotionReport", "padded_columns"]


@dataclass(frozen=True)
class MotionReport:
    """Estimated B-scan motion of a case and its quality.

    Attributes
    ----------
    shifts_px : ndarray float32 (n_repeats, n_bscans, 2)
        Estimated ``(depth_px, aline_px)`` displacement of each observed B-scan in the
        motion-free frame (same convention as the phantom's ``motion_px``), defined up
        to one constant per repeat (see :mod:`~aooct_core.preprocessing.registration` for what
        stays unobservable).
    reference : int
        Index of the reference repeat.
    rigid_shift_px : ndarray float32 (n_repeats, 2)
        Whole-volume shift of each repeat relative to the reference.
    quality : ndarray float32 (n_repeats, n_bscans)
        Correlation-peak height relative to a perfect match (reference repeat: 1).
    weights : ndarray float32 (n_repeats, n_bscans)
        Averaging weight (0 = rejected).
    rejected_bscans : list of (repeat, bscan)
        Dim / blinked / unmatched B-scans.
    weak_bscans : list of (repeat, bscan)
        Matched, but the correlation peak did not stand out of its surface
        (``min_significance``): not averaged (weight 0), the shift interpolated.
    residual_lateral_um_rms : float
        Estimated residual lateral (A-line axis) motion after all corrections, µm RMS, from
        the data only. From :func:`~aooct_core.preprocessing.registration.estimate_motion`:
        the expected size of the mean displacement over repeats, which matching repeats to
        each other cannot see (see
        :func:`~aooct_core.preprocessing.tracking.mean_frame_residual`). From
        ``preprocess_case`` when its cone-lattice step corrected the rows: the fast part
        of the across-repeat shifts that the lattice phase cannot follow plus the matching
        noise (:func:`~aooct_core.preprocessing.tracking.fast_residual`: 0.85-1.7× of the
        truth under the motion model, 0.74-1.21× measured on 20 phantom seeds; blind to a
        common step left by a lattice-phase slip, see bench/results_preprocessing.md).
        NaN for a single repeat, where no estimate without ground truth is available.
    residual_axial_px_rms : float
        Depth axis, px RMS: the expected size of the polynomial part of the mean frame's
        axial motion, which the within-volume track removes with the retinal tilt and
        curvature (:func:`~aooct_core.preprocessing.tracking.polynomial_residual`); the
        whole mean frame when the within-volume track is off.
    registration_ok : bool
        False when more than ``max_rejected_fraction`` of B-scans were rejected, more than
        ``max_weak_fraction`` of the non-reference ones were weak, or a rigid shift hit the
        edge of its search window.
    lattice_agreement : float
        Set by :func:`~aooct_core.preprocessing.pipeline.preprocess_case` when the
        cone-lattice refinement ran: agreement of its per-peak estimates (NaN = not run);
        ≥ 0.5 means the lateral shifts include it.
    saccade_ambiguity_um : float
        Two repeats only: half the largest lateral saccade whose repeat could not be told
        (:func:`~aooct_core.preprocessing.tracking.two_repeat_saccades`), µm. The mean frame
        may be off by this much from that B-scan on, which ``residual_lateral_um_rms``
        cannot see; 0 when none (and always with one or ≥ 3 repeats).
    """

    shifts_px: np.ndarray
    reference: int
    rigid_shift_px: np.ndarray
    quality: np.ndarray
    weights: np.ndarray
    rejected_bscans: list = field(default_factory=list)
    weak_bscans: list = field(default_factory=list)
    residual_lateral_um_rms: float = float("nan")
    residual_axial_px_rms: float = float("nan")
    registration_ok: bool = True
    lattice_agreement: float = float("nan")
    saccade_ambiguity_um: float = 0.0


def padded_columns(shifts_px, weights, n_alines: int) -> np.ndarray:
    """Columns of each averaged B-scan that hold edge-replicated (invented) pixels.

    Undoing a lateral displacement ``s`` shifts a B-scan by ``-s`` with edge replication
    (:func:`~aooct_core.preprocessing.resample.shift_bscans`): ``ceil(s)`` columns at the
    right edge (``ceil(-s)`` at the left for ``s < 0``) repeat the border column. A column of
    the average is counted when any repeat that contributes to it (weight > 0; all of them
    where none does) is padded there.

    Parameters
    ----------
    shifts_px : array (n_repeats, n_bscans, 2)
        ``MotionReport.shifts_px``.
    weights : array (n_repeats, n_bscans)
        ``MotionReport.weights``.
    n_alines : int
        Columns per B-scan.

    Returns
    -------
    ndarray int32 (n_bscans, 2)
        ``(left, right)`` padded columns of each B-scan, each at most ``n_alines``.

    Examples
    --------
    >>> shifts = np.zeros((2, 3, 2), np.float32); shifts[1, 0, 1] = 2.5; shifts[0, 2, 1] = -1.0
    >>> padded_columns(shifts, np.ones((2, 3)), 10).tolist()
    [[0, 3], [0, 0], [1, 0]]
    """
    s = np.asarray(shifts_px, np.float64)[..., 1]
    w = np.asarray(weights) > 0
    w = np.where(w.any(axis=0)[None], w, True)
    left = np.where(w, np.ceil(np.maximum(-s, 0) - 1e-6), 0).max(axis=0)
    right = np.where(w, np.ceil(np.maximum(s, 0) - 1e-6), 0).max(axis=0)
    return np.minimum(np.stack([left, right], axis=1), int(n_alines)).astype(np.int32)
