"""An independently written AO-OCT volume phantom (the generator of ``independent_aooct.py``).

Why: the layer search and the cone detector were tuned on ``aooct_core.phantom``. This file
is a second generator, written from the physics and from published anatomy ranges only (it
imports nothing from ``aooct_core.phantom``), so a result that holds on both is not tied
to one phantom's quirks.

Generator (:func:`make_volume`), every number drawn from ``numpy.random.default_rng(seed)``:

* Sampling: depth 1.2-3.0 µm/px, lateral 0.8-1.6 µm/px (same on both lateral axes),
  48 B-scans x 96 A-lines, depth window ~40 µm of vitreous above the ILM to ~60 µm below
  Bruch's membrane (at most 400 px).
* Anatomy (µm): layer thicknesses NFL..ONL, ELM→IS/OS, IS/OS→COST, COST→RPE, RPE→BM drawn
  from literature ranges, total ILM→BM kept in 230-320 µm (rejection sampling). All
  boundaries are parallel to the ILM, which carries a tilt (±4° on each lateral axis) and
  a mild paraboloid curvature (±3 µm sag at the field corner).
* Reflectivity: a 1-D mean-reflectivity profile in depth below the ILM (layers as steps,
  ELM / IS/OS / COST / BM as thin Gaussians, RPE as a thick Gaussian, choroid decaying).
  Band "levels" are laterally averaged imaged peak intensities: IS/OS = 1, COST 0.6-1.8,
  RPE 0.2-1.5 x COST, ELM 0.2-2.5 x the diffuse IS/OS level, BM 0.3-0.8 x RPE.
* Cones: density D(e) = 140000 (1 + e/0.3)^-0.756 cones/mm² (own fit to the Curcio 1990
  falloff: 30000 at 2°, 15900 at 5°, 12500 at 7°), spacing sqrt(2/(sqrt(3) D)); a jittered
  triangular lattice (random orientation, jitter 8-15 % of the spacing) over a field
  larger than the imaged one. Each cone: log-normal IS/OS and COST reflectivities
  (sigma 0.3-0.5, correlation 0.4), 2 % missing; a Gaussian reflector of lateral FWHM
  0.35 x spacing confined to the IS/OS / COST band (FWHM 2-3 µm). Cones carry 60-85 % of
  each band's energy, the rest is diffuse band background.
* Imaging: complex field = PSF ⊛ (sqrt(mean reflectivity) x circular complex Gaussian),
  i.e. fully developed speckle; intensity |field|². Axial PSF FWHM 2.0-3.5 µm, lateral
  2.0-3.0 µm (intensity FWHM). Diffuse tissue is rendered on a fine grid (≤ 0.3 PSF FWHM)
  tied to the tissue, y-correlated through the lateral PSF, then point-sampled. Cones are
  analytic Gaussians added to the mean reflectivity of that grid at their exact displaced
  positions, so they speckle like the tissue (only their mean is fixed). Repeats mix the
  phasors: c Z0 + sqrt(1-c²) Zr, c 0.3-0.8.
  Focus envelope: Gaussian in depth (FWHM 60-150 µm, at IS/OS or RPE) on a floor of
  5-15 % (the out-of-focus light a confocal system still collects; a pure Gaussian leaves
  the inner retina 30-100 dB down). Additive complex noise for an RPE-band SNR 18-32 dB.
* Motion per repeat and B-scan: random-walk drift (2-6 µm lateral, 2-5 µm axial range),
  tremor (SD 0.2-0.5 µm), an initial offset (SD 1.5 µm), a microsaccade (3-10 µm lateral
  step) with probability 0.5. Rendered by displacing the geometry (no image resampling).

Used by ``bench/accuracy/independent_aooct.py`` (the score).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aooct_core.geometry import Geometry  # noqa: E402

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
MM_PER_DEG = 0.29
N_BSCANS, N_ALINES = 48, 96
MAX_DEPTH_PX = 400
SURFACES = ("ISOS", "COST", "RPE")

#: Inner-retina layers from the ILM: (name, thickness range µm, level range re IS/OS).
INNER_LAYERS = (("NFL", (15, 40), (0.30, 0.80)),
                ("GCL", (20, 45), (0.08, 0.20)),
                ("IPL", (25, 40), (0.15, 0.35)),
                ("INL", (20, 35), (0.04, 0.10)),
                ("OPL", (15, 30), (0.12, 0.30)),
                ("ONL", (50, 90), (0.02, 0.05)))


def cone_density_per_mm2(ecc_deg: float) -> float:
    """Own closed form of the Curcio et al. (1990) falloff, cones/mm² at ``ecc_deg``."""
    return 140000.0 * (1.0 + ecc_deg / 0.3) ** -0.756


def cone_spacing_um(ecc_deg: float) -> float:
    """Triangular-lattice spacing, µm, of :func:`cone_density_per_mm2`."""
    d_um2 = cone_density_per_mm2(ecc_deg) * 1e-6
    return math.sqrt(2.0 / (math.sqrt(3.0) * d_um2))


def _sigma(fwhm):
    return fwhm / FWHM_PER_SIGMA


def _kernel_energy(sigma_px: float) -> float:
    """Sum of squares of gaussian_filter1d's kernel (to normalise filtered white noise)."""
    n = 2 * int(4.0 * sigma_px + 0.5) + 3
    d = np.zeros(n)
    d[n // 2] = 1.0
    k = gaussian_filter1d(d, sigma_px, mode="constant")
    return float(np.sum(k ** 2))


def _cfilter(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian filter of a complex64 array along ``axis`` (real and imaginary parts)."""
    v = np.ascontiguousarray(a).view(np.float32).reshape(a.shape + (2,))
    out = gaussian_filter1d(v, sigma, axis=axis, mode="nearest")
    return out.reshape(a.shape[:-1] + (2 * a.shape[-1],)).view(np.complex64).reshape(a.shape)


def _cnormal(rng, shape) -> np.ndarray:
    """Circular complex Gaussian, E|z|² = 1, complex64."""
    z = rng.standard_normal(shape + (2,), dtype=np.float32)
    z *= np.float32(1.0 / math.sqrt(2.0))
    return z.view(np.complex64).reshape(shape)


def _random_walk(rng, n, total):
    w = np.cumsum(rng.standard_normal(n))
    span = w.max() - w.min()
    return (w - w[0]) * (total / span if span > 0 else 0.0)


def make_volume(seed: int):
    """One phantom case → ``(volumes, geometry, truth, params)``.

    ``volumes`` float32 (n_repeats, 48, n_depth, 96), linear intensity, depth downwards.
    ``truth``: ``surfaces_px`` (ILM, ELM, ISOS, COST, RPE, BM; motion-free frame, depth px),
    ``cones_rc`` (present cones inside the imaged field, motion-free en face px),
    ``cones_rc_all`` (every present cone of the lattice, same frame), ``motion_px``
    (n_repeats, n_bscans, 2) = (depth, aline) px displacement of each B-scan's content,
    ``spacing_um``, ``density_per_mm2``; ``params``: every drawn number.
    """
    rng = np.random.default_rng(seed)
    n_b, n_a = N_BSCANS, N_ALINES
    p: dict = {"seed": seed}
    dz = p["depth_um_per_px"] = float(rng.uniform(1.2, 3.0))
    dl = p["lateral_um_per_px"] = float(rng.uniform(0.8, 1.6))
    ecc = p["eccentricity_deg"] = float(rng.uniform(2.0, 7.0))
    p["eccentricity_mm"] = ecc * MM_PER_DEG

    # --- anatomy (µm) ------------------------------------------------------------------
    for _ in range(10000):
        inner = {name: float(rng.uniform(*th)) for name, th, _ in INNER_LAYERS}
        outer = {"ELM_ISOS": float(rng.uniform(20, 35)), "ISOS_COST": float(rng.uniform(20, 45)),
                 "COST_RPE": float(rng.uniform(5, 20)), "RPE_BM": float(rng.uniform(5, 12))}
        total = sum(inner.values()) + sum(outer.values())
        if 230.0 <= total <= 320.0:
            break
    p["thickness_um"] = {**inner, **outer, "ILM_BM": total}
    u_top, acc = {}, 0.0
    for name, _, _ in INNER_LAYERS:
        u_top[name] = acc
        acc += inner[name]
    u = {"ILM": 0.0, "ELM": acc}
    u["ISOS"] = u["ELM"] + outer["ELM_ISOS"]
    u["COST"] = u["ISOS"] + outer["ISOS_COST"]
    u["RPE"] = u["COST"] + outer["COST_RPE"]
    u["BM"] = u["RPE"] + outer["RPE_BM"]
    p["depth_below_ilm_um"] = dict(u)

    # --- optics --------------------------------------------------------------------------
    fz = p["axial_psf_fwhm_um"] = float(rng.uniform(2.0, 3.5))
    fl = p["lateral_psf_fwhm_um"] = float(rng.uniform(2.0, 3.0))
    s_iz, s_il = _sigma(fz), _sigma(fl)          # intensity PSF sigmas

    # --- band levels (laterally averaged imaged peak intensity, IS/OS = 1) ---------------
    f_cone = {"ISOS": float(rng.uniform(0.60, 0.85)), "COST": float(rng.uniform(0.60, 0.85))}
    level = {"ISOS": 1.0, "COST": float(rng.uniform(0.6, 1.8))}
    g_elm = float(rng.uniform(0.2, 2.5))
    g_rpe = float(rng.uniform(0.2, 1.5))
    g_bm = float(rng.uniform(0.3, 0.8))
    level["ELM"] = g_elm * (1.0 - f_cone["ISOS"]) * level["ISOS"]
    level["RPE"] = g_rpe * level["COST"]
    level["BM"] = g_bm * level["RPE"]
    fwhm = {"ISOS": float(rng.uniform(2.0, 3.0)), "COST": float(rng.uniform(2.0, 3.0)),
            "ELM": float(rng.uniform(1.5, 3.0)), "BM": float(rng.uniform(2.0, 4.0)),
            "RPE": float(rng.uniform(8.0, 15.0))}
    layer_level = {name: float(rng.uniform(*lv)) for name, _, lv in INNER_LAYERS}
    layer_level.update(IS=float(rng.uniform(0.02, 0.06)), OS=float(rng.uniform(0.01, 0.04)),
                       GAP=float(rng.uniform(0.02, 0.06)))
    choroid = float(rng.uniform(0.2, 0.5)) * level["RPE"]
    choroid_decay = float(rng.uniform(30.0, 80.0))
    p.update(cone_energy_fraction=f_cone, band_level=level, band_fwhm_um=fwhm,
             gains={"ELM_re_diffuse_ISOS": g_elm, "RPE_re_COST": g_rpe, "BM_re_RPE": g_bm},
             layer_level=layer_level, choroid_level=choroid, choroid_decay_um=choroid_decay)

    # mean (pre-PSF) reflectivity profile below the ILM, tabulated
    u_tab = np.arange(-20.0, u["BM"] + 250.0, 0.02)
    prof = np.zeros_like(u_tab)
    for name, _, _ in INNER_LAYERS:
        sel = (u_tab >= u_top[name]) & (u_tab < u_top[name] + inner[name])
        prof[sel] = layer_level[name]
    prof[(u_tab >= u["ELM"]) & (u_tab < u["ISOS"])] = layer_level["IS"]
    prof[(u_tab >= u["ISOS"]) & (u_tab < u["COST"])] = layer_level["OS"]
    prof[(u_tab >= u["COST"]) & (u_tab < u["BM"])] = layer_level["GAP"]
    below = u_tab >= u["BM"]
    prof[below] = choroid * np.exp(-(u_tab[below] - u["BM"]) / choroid_decay)

    def add_band(name, imaged_peak):
        st = _sigma(fwhm[name])
        pre_peak = imaged_peak * math.sqrt(st ** 2 + s_iz ** 2) / st   # energy-preserving
        prof[:] += pre_peak * np.exp(-0.5 * ((u_tab - u[name]) / st) ** 2)

    add_band("ELM", level["ELM"])
    add_band("ISOS", (1.0 - f_cone["ISOS"]) * level["ISOS"])
    add_band("COST", (1.0 - f_cone["COST"]) * level["COST"])
    add_band("RPE", level["RPE"])
    add_band("BM", level["BM"])

    # --- acquisition ---------------------------------------------------------------------
    n_rep = p["n_repeats"] = int(rng.integers(1, 5))
    c_mix = p["speckle_correlation"] = float(rng.uniform(0.3, 0.8))
    snr = p["snr_db"] = float(rng.uniform(18.0, 32.0))
    focus_at = p["focus_at"] = "ISOS" if rng.random() < 0.5 else "RPE"
    focus_fwhm = p["focus_fwhm_um"] = float(rng.uniform(60.0, 150.0))
    focus_floor = p["focus_floor"] = float(rng.uniform(0.05, 0.15))

    # --- eye motion (µm) -----------------------------------------------------------------
    tremor = p["tremor_sd_um"] = float(rng.uniform(0.2, 0.5))
    mz = np.zeros((n_rep, n_b))
    mx = np.zeros((n_rep, n_b))
    saccades = []
    for r in range(n_rep):
        mx[r] = _random_walk(rng, n_b, rng.uniform(2.0, 6.0))
        mz[r] = _random_walk(rng, n_b, rng.uniform(2.0, 5.0))
        mx[r] += rng.normal(0.0, tremor, n_b) + rng.normal(0.0, 1.5)
        mz[r] += rng.normal(0.0, tremor, n_b) + rng.normal(0.0, 1.5)
        if rng.random() < 0.5:
            b0 = int(rng.integers(4, n_b - 4))
            step = float(rng.uniform(3.0, 10.0)) * (1 if rng.random() < 0.5 else -1)
            mx[r, b0:] += step
            saccades.append((r, b0, step))
    p["microsaccades"] = saccades

    # --- surface geometry (tissue frame, µm) ---------------------------------------------
    xc, yc = (n_a - 1) * dl / 2.0, (n_b - 1) * dl / 2.0
    tx = math.tan(math.radians(rng.uniform(-4.0, 4.0)))
    ty = math.tan(math.radians(rng.uniform(-4.0, 4.0)))
    sag = float(rng.uniform(-3.0, 3.0))
    kappa = sag / (xc ** 2 + yc ** 2)
    p.update(tilt_deg=(math.degrees(math.atan(ty)), math.degrees(math.atan(tx))), sag_um=sag)
    ya, xa = np.meshgrid(np.arange(n_b) * dl, np.arange(n_a) * dl, indexing="ij")

    def shape_um(x, y):
        return tx * (x - xc) + ty * (y - yc) + kappa * ((x - xc) ** 2 + (y - yc) ** 2)

    s0 = shape_um(xa, ya)
    vitreous = p["vitreous_um"] = float(rng.uniform(38.0, 46.0))
    z0 = vitreous - float(s0.min())

    def ilm_um(x, y):
        return z0 + shape_um(x, y)

    bottom_um = z0 + float(s0.max()) + u["BM"] + 60.0 + max(float(mz.max()), 0.0)
    n_z = p["n_depth"] = int(min(MAX_DEPTH_PX, math.ceil(bottom_um / dz) + 1))
    zk = np.arange(n_z) * dz                      # output depth of row k, µm
    xk = np.arange(n_a) * dl

    # --- cones ---------------------------------------------------------------------------
    spacing = cone_spacing_um(ecc)
    p["spacing_um"] = spacing
    jitter = p["cone_jitter_frac"] = float(rng.uniform(0.08, 0.15))
    sig_ln = p["cone_lognormal_sigma"] = float(rng.uniform(0.3, 0.5))
    theta = p["lattice_angle_rad"] = float(rng.uniform(0.0, math.pi / 3.0))
    margin_x = float(np.abs(mx).max()) + 4.0 * spacing
    margin_y = 4.0 * spacing
    lo = np.array([-margin_x, -margin_y])
    hi = np.array([(n_a - 1) * dl + margin_x, (n_b - 1) * dl + margin_y])
    a1 = spacing * np.array([math.cos(theta), math.sin(theta)])
    a2 = spacing * np.array([math.cos(theta + math.pi / 3), math.sin(theta + math.pi / 3)])
    centre = (lo + hi) / 2.0 + rng.uniform(0.0, spacing, 2)
    n_ij = int(math.ceil(np.hypot(*(hi - lo)) / (spacing * math.sin(math.pi / 3)))) + 2
    i, j = np.meshgrid(np.arange(-n_ij, n_ij + 1), np.arange(-n_ij, n_ij + 1), indexing="ij")
    pts = centre + i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2            # (x, y) µm
    pts = pts[np.all((pts >= lo) & (pts <= hi), axis=1)]
    pts = pts + rng.normal(0.0, jitter * spacing, pts.shape)
    n_c = len(pts)
    g1, g3 = rng.standard_normal((2, n_c))
    g2 = 0.4 * g1 + math.sqrt(1 - 0.4 ** 2) * g3
    refl = {"ISOS": np.exp(sig_ln * g1 - sig_ln ** 2 / 2), "COST": np.exp(sig_ln * g2 - sig_ln ** 2 / 2)}
    missing = rng.random(n_c) < 0.02
    for k in refl:
        refl[k][missing] = 0.0
    present = ~missing
    cx, cy = pts[:, 0], pts[:, 1]
    density_um2 = 2.0 / (math.sqrt(3.0) * spacing ** 2)
    s_cone = _sigma(0.35 * spacing)
    s_lat2 = s_cone ** 2 + s_il ** 2              # imaged cone: intensity sigma², lateral
    # cone reflectivity (pre-PSF): lateral FWHM 0.35 spacing in x, band FWHM in depth; in y
    # the B-scan sees the cone through the lateral PSF (imaged width). Scaled so the cones
    # carry f_cone of the band's laterally averaged imaged peak.
    cone_q, s_ax2, cone_z = {}, {}, {}
    for k in ("ISOS", "COST"):
        s_t = _sigma(fwhm[k])
        s_ax2[k] = s_t ** 2 + s_iz ** 2
        peak_img = f_cone[k] * level[k] / (density_um2 * 2 * math.pi * s_lat2 * (1 - 0.02))
        cone_q[k] = peak_img * math.sqrt(s_lat2) / s_cone * math.sqrt(s_ax2[k]) / s_t
        cone_z[k] = ilm_um(cx, cy) + u[k]
    cone_sig_t = {k: _sigma(fwhm[k]) for k in ("ISOS", "COST")}

    # --- diffuse speckle grids ------------------------------------------------------------
    s_az, s_al = math.sqrt(2) * s_iz, math.sqrt(2) * s_il      # amplitude PSF sigmas, µm
    kz = max(1, math.ceil(dz / min(0.3 * fz, 0.9)))
    kx = max(1, math.ceil(dl / min(0.3 * fl, 0.9)))
    dzf, dxf = dz / kz, dl / kx
    sz_f, sx_f, sy_px = s_az / dzf, s_al / dxf, s_al / dl
    pad_z, pad_x, pad_y = int(4 * sz_f + 2), int(4 * sx_f + 2), int(4 * sy_px + 2)
    nzf, nxf = (n_z - 1) * kz + 1 + 2 * pad_z, (n_a - 1) * kx + 1 + 2 * pad_x
    zf = (np.arange(nzf) - pad_z) * dzf
    xf = (np.arange(nxf) - pad_x) * dxf
    iz = np.rint(mz / dzf).astype(int)
    ix = np.rint(mx / dxf).astype(int)
    mgz, mgx = int(np.abs(iz).max()) + 1, int(np.abs(ix).max()) + 1
    tissue_shape = (n_b + 2 * pad_y, nzf + 2 * mgz, nxf + 2 * mgx)
    norm_y = 1.0 / math.sqrt(_kernel_energy(sy_px))
    norm_zx = 1.0 / math.sqrt(_kernel_energy(sz_f) * _kernel_energy(sx_f))
    p["fine_grid"] = {"kz": kz, "kx": kx, "shape": tissue_shape}

    env_amp = np.sqrt(focus_floor + (1 - focus_floor) * np.exp(
        -4 * math.log(2) * ((zk - float(np.median(ilm_um(xa, ya) + u[focus_at]))) / focus_fwhm) ** 2))
    p["focus_depth_um"] = float(np.median(ilm_um(xa, ya) + u[focus_at]))

    w0 = _cnormal(rng, tissue_shape)
    field = np.zeros((n_rep, n_b, n_z, n_a), np.complex64)
    yb_um = np.arange(n_b) * dl
    for r in range(n_rep):
        w = w0 if r == 0 else (np.float32(c_mix) * w0
                               + np.float32(math.sqrt(1 - c_mix ** 2)) * _cnormal(rng, tissue_shape))
        w = _cfilter(w, sy_px, axis=0)[pad_y:pad_y + n_b]
        a = np.empty((n_b, nzf, nxf), np.complex64)
        for b in range(n_b):
            win = w[b, mgz - iz[r, b]: mgz - iz[r, b] + nzf, mgx - ix[r, b]: mgx - ix[r, b] + nxf]
            ub = zf[:, None] - mz[r, b] - ilm_um(xf[None, :] - mx[r, b], yb_um[b])
            refl_b = np.interp(ub, u_tab, prof, left=0.0).astype(np.float32)
            dy = cy - yb_um[b]
            near = (np.abs(dy) < 4.5 * math.sqrt(s_lat2)) & present
            gx = np.exp(-(xf[None, :] - (cx[near] + mx[r, b])[:, None]) ** 2 / (2 * s_cone ** 2))
            wy = np.exp(-dy[near] ** 2 / (2 * s_lat2))
            for k in ("ISOS", "COST"):
                gz = np.exp(-(zf[:, None] - (cone_z[k][near] + mz[r, b])[None, :]) ** 2
                            / (2 * cone_sig_t[k] ** 2))
                refl_b += ((gz * (cone_q[k] * refl[k][near] * wy)[None, :]) @ gx).astype(np.float32)
            a[b] = win * np.sqrt(refl_b)
        del w
        a = _cfilter(a, sz_f, axis=1)[:, pad_z::kz][:, :n_z]
        a = _cfilter(a, sx_f, axis=2)[:, :, pad_x::kx][:, :, :n_a]
        f = a * np.float32(norm_y * norm_zx)
        del a
        field[r] = f * env_amp[None, :, None].astype(np.float32)
        del f

    # --- noise for the drawn SNR (RPE band mean over the vitreous noise floor) -----------
    rpe0 = ilm_um(xa[:, None, :] - mx[0][:, None, None], ya[:, None, :]) + u["RPE"] + mz[0][:, None, None]
    band = np.abs(zk[None, :, None] - rpe0) <= fwhm["RPE"] / 2
    rpe_mean = float(np.mean(np.abs(field[0][band]) ** 2))
    noise_var = rpe_mean / 10 ** (snr / 10)
    p["noise_floor"] = noise_var
    vol = np.empty(field.shape, np.float32)
    for r in range(n_rep):
        e = field[r] + np.float32(math.sqrt(noise_var)) * _cnormal(rng, field.shape[1:])
        vol[r] = e.real ** 2 + e.imag ** 2
    del field

    geometry = Geometry(bscan_um_per_px=dl, depth_um_per_px=dz, aline_um_per_px=dl)
    ilm0 = ilm_um(xa, ya)
    surfaces = {k: ((ilm0 + u[k]) / dz).astype(np.float32) for k in ("ILM", "ELM", "ISOS", "COST", "RPE", "BM")}
    rc_all = np.stack([cy / dl, cx / dl], axis=1)[present].astype(np.float32)
    inside = ((rc_all[:, 0] >= -0.5) & (rc_all[:, 0] <= n_b - 0.5)
              & (rc_all[:, 1] >= -0.5) & (rc_all[:, 1] <= n_a - 0.5))
    motion_px = np.stack([mz / dz, mx / dl], axis=-1).astype(np.float32)
    truth = {"surfaces_px": surfaces, "cones_rc": rc_all[inside], "cones_rc_all": rc_all,
             "motion_px": motion_px, "spacing_um": spacing,
             "density_per_mm2": cone_density_per_mm2(ecc), "eccentricity_deg": ecc,
             "params": p}
    return vol, geometry, truth, p


# ---------------------------------------------------------------------------------------
# scoring
