"""Which outer-retina band is which: identified by the anatomy's order and spacing, not brightness.

Brightness ranks of the outer bands change with the focus, the system and the eye (real
AO-OCT shows COST > RPE > IS/OS as well as RPE > IS/OS > COST), so "the brightest band is
the RPE" puts every surface one band off on many volumes. Here the bands are found from
the volume's own mean axial profile and labelled by what they are:

1. **Flatten.** Every block of A-lines is aligned to the mean profile by cross-correlation
   (band-passed dB), so the profile is not blurred by tilt or curvature; the shift field is
   smoothed (tilt, curvature and slow undulation only).
2. **Candidates.** Ridges of the flattened mean ridge profile (bands above their local
   background), with their strength in SDs of the profile.
3. **Labelling.** Every ordered triple of candidates is scored as (IS/OS, COST, RPE) under
   priors in µm held against the axial sampling (``depth_um_per_px``):

   * IS/OS → COST = the cone outer-segment length, :data:`PRIORS_UM` ``os_length`` (15–45 µm
     in the literature; a wider range is accepted);
   * COST → RPE centre, ``cost_to_rpe`` (0–20 µm; merged bands are a pair, see below);
   * the outer segments and the inner segment are dark: a ridge between IS/OS and COST,
     or just above IS/OS, that is nearly as strong as the bands costs the triple;
   * the RPE is the last band: below it only Bruch's membrane (one thin band within
     ``rpe_to_bm``) and the diffuse choroid — a strong ridge deeper costs the triple;
   * the ELM (``elm_to_isos`` above IS/OS) is a dim band (Spaide & Curcio 2011): a ridge
     there more than :data:`ELM_OVER_ISOS_MAX` times as strong as the IS/OS is not counted
     as the ELM.

   The score is the three strengths minus those penalties. When COST and the RPE are too
   close to resolve (a few µm at 2–4 µm/px) the best (IS/OS, COST+RPE) pair is used.
4. **Confidence.** The margin of the best labelling over the best one that labels any
   band differently, in units of a band's strength (>= 1: clear; < 0.3: ambiguous).

The result gives, per band, its depth in the flattened frame and the per-block shift, so
the surface search can run in a window around each band.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["PRIORS_UM", "BandModel", "identify_bands"]

#: Accepted ranges (µm) — wider than the literature's so that unusual eyes still fit; the
#: penalties, not these limits, separate the right labelling from a shifted one.
PRIORS_UM = {
    "os_length": (12.0, 55.0),      # IS/OS → COST (literature 15–45 µm)
    "cost_to_rpe": (2.5, 26.0),     # COST → RPE centre (literature 0–20 µm)
    "merged_isos_to_rpe": (14.0, 65.0),
    "rpe_to_bm": (3.0, 17.0),       # Bruch's membrane below the RPE centre
    "inner_segment": (8.0, 14.0),   # dark gap kept above IS/OS (ELM is further up)
    "elm_to_isos": (12.0, 45.0),
}


#: Strongest ELM, relative to the IS/OS ridge, that a labelling may explain as the ELM. The
#: ELM is usually far dimmer than the IS/OS; the phantom family's bright-ELM members reach
#: 1.1-1.3 x, a labelling one band too deep takes the IS/OS (1.75-2 x its "IS/OS") for it.
ELM_OVER_ISOS_MAX = 1.5

#: Height (dB above the local axial background, mean profile) below which a ridge is no band.
MIN_BAND_DB = 0.5

#: The literature's ranges (notes/outer-retina-bands.md): labellings outside them pay a
#: penalty that grows over 5 µm, so they win only with clearly better band evidence.
LITERATURE_UM = {"os_length": (15.0, 45.0), "cost_to_rpe": (0.0, 20.0)}


@dataclass(frozen=True)
class BandModel:
    """Identified outer-retina bands of one volume.

    Attributes
    ----------
    depth_px : dict str → float
        Flattened-frame depth (px) of "ISOS", "COST", "RPE" (and "ELM"/"BM" when seen).
    shift_px : ndarray, float32, shape (n_bscans, n_blocks)
        Per-block depth offset: a band at flattened depth d lies at ``d + shift_px``.
    confidence : float
        Margin of the chosen labelling over the best different one, in band strengths.
    strength_sd : dict str → float
        Ridge strength of each band in SDs of the mean profile.
    width_px : dict str → float
        Full width at half height of each band's ridge, px.
    merged_cost_rpe : bool
        True when COST and the RPE are one ridge of the profile (unresolved).
    complex_offsets_px : tuple of float
        For a merged complex, how far COST lies above and the RPE below the complex's
        peak (px), from the complex's width; (0, 0) otherwise.
    candidates_px : list of float
        Every candidate ridge (flattened depth, px), for diagnostics.
    """

    depth_px: dict
    shift_px: np.ndarray
    confidence: float
    strength_sd: dict
    width_px: dict = field(default_factory=dict)
    merged_cost_rpe: bool = False
    complex_offsets_px: tuple = (0.0, 0.0)
    candidates_px: list = field(default_factory=list)


def _bandpass(prof: np.ndarray, sigma_px: float) -> np.ndarray:
    return prof - ndi.gaussian_filter1d(prof, sigma_px, axis=1, mode="nearest")


def _flatten_shifts(feat: np.ndarray, max_shift: int, iterations: int = 3) -> np.ndarray:
    """Per-block shift s with feat[b, z + s, c] ≈ ref[z] (px, float), smoothed."""
    n_b, n_z, n_c = feat.shape
    shifts = np.zeros((n_b, n_c), np.float32)
    f = feat - feat.mean(axis=1, keepdims=True)
    f /= np.maximum(f.std(axis=1, keepdims=True), 1e-6)
    ks = np.arange(-max_shift, max_shift + 1)
    for _ in range(iterations):
        ref = _aligned_mean(f, shifts)
        corr = np.empty((len(ks), n_b, n_c), np.float32)
        for i, k in enumerate(ks):
            # corr_k = sum_z f[z + k] ref[z] over the overlap.
            if k >= 0:
                corr[i] = np.einsum("bzc,z->bc", f[:, k:, :], ref[:n_z - k])
            else:
                corr[i] = np.einsum("bzc,z->bc", f[:, :n_z + k, :], ref[-k:])
        j = corr.argmax(axis=0)
        jm, jp = np.clip(j - 1, 0, len(ks) - 1), np.clip(j + 1, 0, len(ks) - 1)
        y0 = np.take_along_axis(corr, j[None], 0)[0]
        ym = np.take_along_axis(corr, jm[None], 0)[0]
        yp = np.take_along_axis(corr, jp[None], 0)[0]
        den = ym - 2 * y0 + yp
        frac = np.where(den < 0, 0.5 * (ym - yp) / np.where(den < 0, den, 1), 0.0)
        raw = ks[j] + np.clip(frac, -0.5, 0.5)
        # Robust smoothing: median then Gaussian (tilt, curvature, slow undulation).
        smooth = ndi.median_filter(raw, size=(5, 5), mode="nearest")
        shifts = ndi.gaussian_filter(smooth, (2.0, 1.5), mode="nearest").astype(np.float32)
        shifts -= np.median(shifts)
    return shifts


def _aligned_mean(f: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    n_b, n_z, n_c = f.shape
    z = np.arange(n_z, dtype=np.float32)[None, :, None] + shifts[:, None, :]
    z0 = np.clip(np.floor(z).astype(np.int64), 0, n_z - 1)
    z1 = np.clip(z0 + 1, 0, n_z - 1)
    w = (z - np.floor(z)).astype(np.float32)
    b = np.arange(n_b)[:, None, None]
    c = np.arange(n_c)[None, None, :]
    return ((1 - w) * f[b, z0, c] + w * f[b, z1, c]).mean(axis=(0, 2))


def _peaks(p: np.ndarray, n_max: int = 16) -> list[tuple[float, float, float]]:
    """(sub-pixel depth, strength, width px) of local maxima of ``p`` above 0, strongest ``n_max``.

    The width is the full width at half the peak's height above the deeper of its two
    neighbouring minima (a merged COST+RPE complex is wider than one thin band).
    """
    inner = (p[1:-1] > p[:-2]) & (p[1:-1] >= p[2:]) & (p[1:-1] > 0)
    idx = np.nonzero(inner)[0] + 1
    out = []
    for i in idx:
        den = p[i - 1] - 2 * p[i] + p[i + 1]
        d = 0.5 * (p[i - 1] - p[i + 1]) / den if den < 0 else 0.0
        out.append((float(i + np.clip(d, -0.5, 0.5)), float(p[i]), _width(p, int(i))))
    out.sort(key=lambda t: -t[1])
    return sorted(out[:n_max])


def _width(p: np.ndarray, i: int) -> float:
    lo = i
    while lo > 0 and p[lo - 1] < p[lo]:
        lo -= 1
    hi = i
    while hi < len(p) - 1 and p[hi + 1] < p[hi]:
        hi += 1
    half = 0.5 * (p[i] + max(p[lo], p[hi]))
    left = i
    while left > lo and p[left - 1] > half:
        left -= 1
    right = i
    while right < hi and p[right + 1] > half:
        right += 1
    # Linear interpolation of the two half-height crossings.
    fl = (p[left] - half) / max(p[left] - p[left - 1], 1e-9) if left > lo else 0.0
    fr = (p[right] - half) / max(p[right] - p[right + 1], 1e-9) if right < hi else 0.0
    return float(right - left + min(fl, 1.0) + min(fr, 1.0))


def _score(cands, i_isos, i_cost, i_rpe, um_per_px) -> float | None:
    """Score of labelling candidates ``(i_isos, i_cost, i_rpe)`` (``i_cost == i_rpe``: merged).

    The score is the strength of every ridge the labelling explains (the three bands, and
    an ELM above and Bruch's membrane below where the priors put them), minus what it
    leaves unexplained where the anatomy has none (the dark inner and outer segments,
    anything below Bruch's membrane) and minus band shapes that contradict it (COST is
    thin like IS/OS, the RPE thick; a merged COST+RPE complex is wider than one band).
    None when the spacings are outside the priors.
    """
    z = [c[0] * um_per_px for c in cands]
    s = [c[1] for c in cands]
    w = [c[2] for c in cands]
    merged = i_cost == i_rpe
    gap1 = z[i_cost] - z[i_isos]
    if merged:
        lo, hi = PRIORS_UM["merged_isos_to_rpe"]
        if not lo <= gap1 <= hi:
            return None
    else:
        lo, hi = PRIORS_UM["os_length"]
        lo2, hi2 = PRIORS_UM["cost_to_rpe"]
        if not (lo <= gap1 <= hi and lo2 <= z[i_rpe] - z[i_cost] <= hi2):
            return None
    floor = 0.3  # SDs of the profile: ridges weaker than this are speckle or texture
    if min(s[i_isos], s[i_cost], s[i_rpe]) < floor:
        return None
    explained = {i_isos, i_cost, i_rpe}
    lo, hi = PRIORS_UM["elm_to_isos"]
    # The ELM is a dim band: a ridge above the IS/OS that clearly outshines it is not the
    # ELM (it is the IS/OS itself, and this labelling one band too deep).
    elm = [j for j in range(len(z)) if j not in explained and lo <= z[i_isos] - z[j] <= hi
           and s[j] <= ELM_OVER_ISOS_MAX * s[i_isos]]
    lo, hi = PRIORS_UM["rpe_to_bm"]
    if merged:  # the complex's peak may be its COST part: Bruch's membrane lies further below
        hi += 10.0
    # Bruch's membrane is dimmer than the RPE; a stronger band below is not it.
    bm = [j for j in range(len(z)) if j not in explained and lo <= z[j] - z[i_rpe] <= hi
          and s[j] <= s[i_rpe]]
    explained |= {max(elm, key=lambda j: s[j])} if elm else set()
    explained |= {max(bm, key=lambda j: s[j])} if bm else set()
    base = sum(s[j] for j in explained)
    weakest = min(s[i] for i in (i_isos, i_cost, i_rpe))
    pen = 0.0
    for j in range(len(z)):
        if j in explained:
            continue
        if z[i_isos] - PRIORS_UM["inner_segment"][0] < z[j] < z[i_cost]:   # dark IS and OS
            pen += max(0.0, s[j] - max(floor, 0.35 * weakest))
        elif z[j] > z[i_rpe]:                                              # RPE/BM are last
            pen += max(0.0, s[j] - floor)
    # Soft literature ranges inside the accepted ones: OS 15-45 µm, COST -> RPE <= 20 µm.
    os_lo, os_hi = LITERATURE_UM["os_length"]
    pen += weakest * min(1.0, max(0.0, os_lo - gap1, gap1 - os_hi) / 5.0) if not merged else 0.0
    if not merged:
        pen += weakest * min(1.0, max(0.0, z[i_rpe] - z[i_cost] - LITERATURE_UM["cost_to_rpe"][1]) / 5.0)
    if merged:
        pen += s[i_rpe] * float(np.clip(1.3 - w[i_rpe] / w[i_isos], 0.0, 1.0))
    else:
        pen += s[i_cost] * float(np.clip(w[i_cost] / w[i_isos] - 1.4, 0.0, 1.0))
        pen += s[i_rpe] * float(np.clip(1.3 - w[i_rpe] / w[i_isos], 0.0, 1.0))
    return base - 1.5 * pen


def _split_complex(z_peak: float, w_thin: float, w_complex: float) -> tuple[float, float]:
    """COST and RPE centres (px) inside an unresolved complex.

    Two bands of width ``w_thin`` a distance d apart make a ridge of width about
    sqrt(w_thin² + d²); the bands are put d/2 either side of its peak (which band is
    brighter cannot be told from one ridge).
    """
    d = float(np.sqrt(max(w_complex ** 2 - w_thin ** 2, 0.0)))
    return z_peak - 0.5 * d, z_peak + 0.5 * d


def identify_bands(db_b: np.ndarray, ridge_b: np.ndarray, *, depth_um_per_px: float) -> BandModel:
    """Identify IS/OS, COST and the RPE in block-averaged features of one volume.

    Parameters
    ----------
    db_b : ndarray, float32, shape (n_bscans, n_depth, n_blocks)
        Smoothed dB intensity of blocks of A-lines (host array).
    ridge_b : ndarray, same shape
        Band strength: dB above its local axial background.
    depth_um_per_px : float
        Axial sampling, µm/px.

    Returns
    -------
    BandModel

    Raises
    ------
    ValueError
        When no ordering of the ridges fits the anatomy (e.g. a volume without an outer
        retina in view); the message says what was seen.
    """
    um = float(depth_um_per_px)
    n_b, n_z, n_c = db_b.shape
    feat = _bandpass(db_b, max(2.0, 20.0 / um))
    shifts = _flatten_shifts(feat, max_shift=int(min(n_z // 4, round(60.0 / um))))
    raw = _aligned_mean(np.asarray(ridge_b, np.float32), shifts)
    prof = (raw - np.median(raw)) / max(float(raw.std()), 1e-6)
    # A band stands at least MIN_BAND_DB above its axial background in the mean profile
    # (speckle and noise average to a few hundredths of a dB there).
    cands = [c for c in _peaks(prof) if raw[int(round(c[0]))] - np.median(raw) >= MIN_BAND_DB]
    scored = []
    for i, j, k in combinations(range(len(cands)), 3):
        sc = _score(cands, i, j, k, um)
        if sc is not None:
            scored.append((sc, i, j, k))
    for i, k in combinations(range(len(cands)), 2):
        sc = _score(cands, i, k, k, um)
        if sc is not None:
            scored.append((sc, i, k, k))
    if not scored:
        raise ValueError(f"no ordering of the {len(cands)} bands seen fits the outer retina "
                         f"(IS/OS, COST, RPE; depth sampling {um:g} µm/px): is the outer retina "
                         "in the volume, and is depth_um_per_px right?")
    scored.sort(key=lambda t: -t[0])
    best = scored[0]
    rival = next((t for t in scored[1:] if t[1:] != best[1:]), None)
    unit = max(min(cands[i][1] for i in best[1:]), 1e-6)
    confidence = float((best[0] - rival[0]) / unit) if rival else 10.0
    _, i_isos, i_cost, i_rpe = best
    depth = {"ISOS": cands[i_isos][0], "COST": cands[i_cost][0], "RPE": cands[i_rpe][0]}
    strength = {"ISOS": cands[i_isos][1], "COST": cands[i_cost][1], "RPE": cands[i_rpe][1]}
    width = {"ISOS": cands[i_isos][2], "COST": cands[i_cost][2], "RPE": cands[i_rpe][2]}
    offsets = (0.0, 0.0)
    if i_cost == i_rpe:
        # Unresolved COST+RPE: split the complex by its width.
        cost_z, rpe_z = _split_complex(depth["RPE"], width["ISOS"], width["RPE"])
        offsets = (depth["RPE"] - cost_z, rpe_z - depth["RPE"])
    lo, hi = PRIORS_UM["elm_to_isos"]
    elm = [c for c in cands if lo <= (depth["ISOS"] - c[0]) * um <= hi
           and c[1] <= ELM_OVER_ISOS_MAX * strength["ISOS"]]
    if elm:
        depth["ELM"], strength["ELM"], width["ELM"] = max(elm, key=lambda c: c[1])
    lo, hi = PRIORS_UM["rpe_to_bm"]
    bm = [c for c in cands if lo <= (c[0] - depth["RPE"]) * um <= hi]
    if bm and i_cost != i_rpe:
        depth["BM"], strength["BM"], width["BM"] = max(bm, key=lambda c: c[1])
    return BandModel(depth_px=depth, shift_px=shifts, confidence=confidence, strength_sd=strength,
                     width_px=width,
                     merged_cost_rpe=i_cost == i_rpe, complex_offsets_px=offsets,
                     candidates_px=[c[0] for c in cands])
