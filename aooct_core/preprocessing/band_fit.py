"""Unbiased outer-band depths: a band model fitted to the volume's surface-aligned mean profile.

The surface search puts each band at the local maximum of its ridge. When two bands lie
within a few axial PSFs of each other (COST and the RPE are 0–20 µm apart, Bruch's membrane
3–17 µm below the RPE, at 1–4 µm/px) their tails overlap, and each maximum is pulled
towards its neighbour — by up to ~3 px for a dim COST next to a bright RPE, or for a dim,
thick RPE under a bright COST (an unresolved complex whose peak is COST's). The search also
cannot place a band that shows only as a shoulder.

Here the mean axial profile of the linear intensity is taken around the strongest surface
(A-lines aligned to it; the sub-pixel position of the surface varies across the field, so
the profile is binned finer than the sampling), and the anatomy's bands are fitted to it
as Gaussians on a smooth background:

* IS/OS and COST are thin reflectors: one shared width, the axial PSF;
* the RPE is at least as thick as they are (literature: ~ 10 µm or more FWHM);
* Bruch's membrane is a thin line within ``rpe_to_bm`` below the RPE (it may be absent);
* the band order and spacings are held inside the priors of :mod:`.bands` (µm, against
  the axial sampling): IS/OS → COST in ``os_length``, COST → RPE in ``cost_to_rpe``.

Each surface is then moved by the difference between its fitted centre and its mean
position in the aligned frame — a constant per band, so the surfaces keep their shape.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from aooct_core.preprocessing.backend import to_host
from aooct_core.preprocessing.bands import PRIORS_UM, BandModel

__all__ = ["aligned_profile", "fit_outer_bands", "debias_surfaces"]

#: Bin of the aligned profile, px (the surface's sub-pixel phase varies over the field).
BIN_PX = 0.25


def aligned_profile(vol, ref_px, lo_px: float, hi_px: float, *, xp=np, bin_px: float = BIN_PX):
    """Mean of ``vol`` against depth relative to the surface ``ref_px``, binned sub-pixel.

    Parameters
    ----------
    vol : array (n_bscans, n_depth, n_alines), linear intensity
    ref_px : array (n_bscans, n_alines), float
        Surface the A-lines are aligned to.
    lo_px, hi_px : float
        Offsets (px, relative to the surface) the profile covers.
    xp : module
        Array module of ``vol`` (NumPy or CuPy); the binning runs on the host.
    bin_px : float
        Bin width, px.

    Returns
    -------
    offsets : ndarray, float64
        Bin centres (px relative to the surface) of the bins that hold samples.
    mean : ndarray, float64
        Mean intensity in each bin.
    count : ndarray, float64
        Samples in each bin.
    """
    n_b, n_z, n_a = vol.shape
    k = xp.arange(int(np.floor(lo_px)) - 1, int(np.ceil(hi_px)) + 2)
    base = xp.floor(ref_px).astype(xp.int64)
    z = base[:, None, :] + k[None, :, None]
    inside = (z >= 0) & (z < n_z)
    zc = xp.clip(z, 0, n_z - 1)
    vals = vol[xp.arange(n_b)[:, None, None], zc, xp.arange(n_a)[None, None, :]]
    off = to_host(z.astype(xp.float32) - ref_px[:, None, :].astype(xp.float32)).ravel()
    vals, inside = to_host(vals).ravel(), to_host(inside).ravel()
    keep = inside & (off >= lo_px) & (off <= hi_px)
    idx = np.floor((off[keep] - lo_px) / bin_px).astype(np.int64)
    n_bins = int(np.floor((hi_px - lo_px) / bin_px)) + 1
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    total = np.bincount(idx, weights=vals[keep].astype(np.float64), minlength=n_bins)
    have = count > 0
    centres = lo_px + (np.arange(n_bins) + 0.5) * bin_px
    return centres[have], total[have] / count[have], count[have]


def _gauss(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def fit_outer_bands(offsets, mean, count, init_px: dict, *, depth_um_per_px: float,
                    merged: bool = False, guess_px: dict | None = None) -> dict | None:
    """Fit IS/OS, COST, RPE (and Bruch's membrane) to an aligned mean profile.

    A coarse grid over the COST and RPE positions and the RPE's width (amplitudes and
    background solved linearly at every node) finds the basin, then a bounded least-squares
    fit refines it: a dim band on the flank of a bright one is a shoulder, which a local fit
    started at the wrong place would explain away (amplitude 0).

    Parameters
    ----------
    offsets, mean, count : ndarray
        From :func:`aligned_profile`.
    init_px : dict
        "ISOS", "COST", "RPE": where the surfaces lie in the profile's frame (px).
    depth_um_per_px : float
        Axial sampling, µm/px (the priors are in µm).
    merged : bool
        COST and the RPE were one ridge: the RPE may lie anywhere in ``cost_to_rpe`` below
        COST, not only near where the complex was split.
    guess_px : dict or None
        Other estimates of the same depths (e.g. the ridges of the band identification);
        the fit searches around both.

    Returns
    -------
    dict or None
        "ISOS", "COST", "RPE", "BM" centres (px, profile frame), "sigma_thin_px",
        "sigma_rpe_px", "amplitude" (dict), "cost" (residual sum of squares) and
        "success"; None when the profile is too short to fit.
    """
    um = float(depth_um_per_px)
    px = lambda v: v / um  # noqa: E731
    x = np.asarray(offsets, np.float64)
    y = np.asarray(mean, np.float64)
    if x.size < 16:
        return None
    w = np.sqrt(np.asarray(count, np.float64) / max(float(np.max(count)), 1.0))
    scale = max(float(np.ptp(y)), 1e-12)
    y = (y - float(np.min(y))) / scale
    xc = (x - x.mean()) / max(float(np.ptp(x)), 1e-9)
    guess_px = guess_px or init_px
    i0 = float(init_px["ISOS"])
    move = max(2.0, px(4.0))  # a surface's search window is at most ±10 µm; its bias a few px

    def span(a, b, prior, wide=False):
        # Gap (px) from band a to band b: around both estimates, inside the prior (µm).
        lo_p, hi_p = px(prior[0]), px(prior[1])
        if wide:
            return lo_p, hi_p
        gaps = [init_px[b] - init_px[a], guess_px[b] - guess_px[a]]
        return max(lo_p, min(gaps) - move), max(min(hi_p, max(gaps) + move), max(lo_p, min(gaps) - move) + 0.1)

    g1_lo, g1_hi = span("ISOS", "COST", PRIORS_UM["os_length"])
    g2_lo, g2_hi = span("COST", "RPE", PRIORS_UM["cost_to_rpe"], wide=merged)
    g3_lo, g3_hi = px(PRIORS_UM["rpe_to_bm"][0]), px(PRIORS_UM["rpe_to_bm"][1])
    s_thin = _thin_width(x, y, i0, px(4.0))
    lo = [i0 - move, g1_lo, g2_lo, g3_lo, 0.7 * s_thin, 0.0]
    hi = [i0 + move, g1_hi, g2_hi, g3_hi, 1.5 * s_thin, px(12.0)]

    def columns(mu_i, a, b, c, s_t, s_x):
        mu_c, s_r = mu_i + a, np.hypot(s_t, s_x)
        xx = x[None, :]
        cols = [_gauss(xx, mu_i, s_t), _gauss(xx, mu_c, s_t), _gauss(xx, mu_c + b, s_r),
                _gauss(xx, mu_c + b + c, s_t)]
        one = np.ones_like(cols[2])
        return np.stack(np.broadcast_arrays(*cols, one, one * xc, one * xc ** 2), axis=-1)

    # Coarse grid: (COST gap, RPE gap, RPE extra width, BM gap), thin width from IS/OS.
    step = 0.5
    grid = np.stack(np.meshgrid(np.arange(g1_lo, g1_hi + 1e-9, step), np.arange(g2_lo, g2_hi + 1e-9, step),
                                np.array([0.0, px(2.0), px(4.0), px(7.0)]),
                                np.linspace(g3_lo, g3_hi, 3), indexing="ij"), -1).reshape(-1, 4)
    best, best_p = np.inf, None
    for chunk in np.array_split(grid, max(1, len(grid) // 2000)):
        a_mat = columns(i0, chunk[:, 0:1], chunk[:, 1:2], chunk[:, 3:4], s_thin, chunk[:, 2:3]) * w[None, :, None]
        gram = np.einsum("gni,gnj->gij", a_mat, a_mat) + 1e-9 * np.eye(a_mat.shape[-1])
        coef = np.linalg.solve(gram, np.einsum("gni,n->gi", a_mat, y * w)[..., None])[..., 0]
        coef[:, :4] = np.maximum(coef[:, :4], 0.0)  # ranks the nodes; the refinement is exact
        err = ((np.einsum("gni,gi->gn", a_mat, coef) - y * w) ** 2).sum(axis=1)
        j = int(np.argmin(err))
        if err[j] < best:
            best, best_p = float(err[j]), chunk[j]
    p0 = np.clip([i0, best_p[0], best_p[1], best_p[3], s_thin, best_p[2]], lo, hi)

    def amplitudes(p):
        # Variable projection: band amplitudes (>= 0) and the quadratic background are linear.
        a_mat = columns(*p)[0]
        return a_mat, _nonneg_bands_lstsq(a_mat * w[:, None], y * w, n_bands=4)

    def resid(p):
        a_mat, coef = amplitudes(p)
        return (a_mat @ coef - y) * w

    sol = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", max_nfev=200)
    mu_i, a, b, c = sol.x[:4]
    centres = (mu_i, mu_i + a, mu_i + a + b, mu_i + a + b + c)
    _, coef = amplitudes(sol.x)
    names = ("ISOS", "COST", "RPE", "BM")
    return {**{k: float(v) for k, v in zip(names, centres)},
            "sigma_thin_px": float(sol.x[4]), "sigma_rpe_px": float(np.hypot(sol.x[4], sol.x[5])),
            "amplitude": {k: float(coef[i] * scale) for i, k in enumerate(names)},
            "cost": float(sol.cost), "success": bool(sol.success)}


def _thin_width(x, y, mu, half_px: float) -> float:
    """Axial SD (px) of the thin band at ``mu`` (IS/OS: dark inner and outer segments around it)."""
    near = np.abs(x - mu) <= max(half_px, 2.0)
    xs, ys = x[near], y[near]
    if xs.size < 5:
        return 0.6

    def resid(p):
        return p[0] * _gauss(xs, p[1], p[2]) + p[3] + p[4] * (xs - mu) - ys

    p0 = [float(np.ptp(ys)), mu, 0.8, float(ys.min()), 0.0]
    sol = least_squares(resid, p0, bounds=([0, mu - 1.5, 0.3, -np.inf, -np.inf],
                                           [np.inf, mu + 1.5, max(1.0, half_px), np.inf, np.inf]))
    return float(sol.x[2])


def _nonneg_bands_lstsq(a_mat, y, *, n_bands: int) -> np.ndarray:
    """Least squares with the first ``n_bands`` coefficients >= 0 (active set, few columns)."""
    free = np.ones(a_mat.shape[1], bool)
    for _ in range(n_bands + 1):
        coef = np.zeros(a_mat.shape[1])
        coef[free] = np.linalg.lstsq(a_mat[:, free], y, rcond=None)[0]
        neg = free.copy()
        neg[n_bands:] = False
        neg &= coef < 0
        if not neg.any():
            return coef
        free &= ~neg
    coef[:n_bands] = np.maximum(coef[:n_bands], 0.0)
    return coef


def debias_surfaces(vol, surfaces: dict, reference: str, band_model: BandModel, *,
                    depth_um_per_px: float, xp=np) -> tuple[dict, dict | None]:
    """Move IS/OS, COST and RPE to the band centres fitted in the ``reference``-aligned profile.

    Parameters
    ----------
    vol : array (n_bscans, n_depth, n_alines), linear intensity
    surfaces : dict
        "ISOS", "COST", "RPE" surfaces (px, arrays of ``xp``); others are passed through.
    reference : str
        The surface the A-lines are aligned to (the strongest band).
    band_model : BandModel
        The identified bands: their ridges are a second estimate of the spacings, and a
        merged COST+RPE complex widens the RPE's search.
    depth_um_per_px : float
    xp : module

    Returns
    -------
    surfaces : dict
        A new dict, each of the three surfaces moved by a constant (px).
    fit : dict or None
        :func:`fit_outer_bands`'s result with "shift_px" (the constant per surface) and
        "applied" (False when the fit did not converge: surfaces returned unchanged); None
        when the profile was too short to fit (surfaces returned unchanged).
    """
    um = float(depth_um_per_px)
    merged = band_model.merged_cost_rpe
    guess = dict(band_model.depth_px)
    if merged:  # the complex split by its width (bands._split_complex)
        up, down = band_model.complex_offsets_px
        guess["COST"], guess["RPE"] = guess["RPE"] - up, guess["RPE"] + down
    ref = surfaces[reference]
    init = {k: float(to_host(xp.median(surfaces[k] - ref))) for k in ("ISOS", "COST", "RPE")}
    guess = {k: guess[k] - guess[reference] for k in init}  # only the spacings carry over
    lo = init["ISOS"] - max(3.0, 6.0 / um)
    hi = init["RPE"] + (PRIORS_UM["rpe_to_bm"][1] + 6.0) / um
    fit = fit_outer_bands(*aligned_profile(vol, ref, lo, hi, xp=xp), init, depth_um_per_px=um, merged=merged,
                          guess_px=guess)
    if fit is None:
        return dict(surfaces), None
    shift = {k: fit[k] - init[k] for k in init}
    fit["shift_px"], fit["applied"] = shift, bool(fit["success"])
    if not fit["applied"]:  # the optimiser did not converge: keep the search's surfaces
        return dict(surfaces), fit
    out = dict(surfaces)
    for k, s in shift.items():
        out[k] = surfaces[k] + np.float32(s)
    return out, fit
