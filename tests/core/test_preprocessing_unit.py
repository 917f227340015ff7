"""Unit tests of aooct_core.preprocessing on a tiny local synthetic retina (fast, no phantom)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from aooct_core.geometry import Geometry
from aooct_core.preprocessing import (
    average_repeats,
    dim_bscans,
    enface_slabs,
    estimate_motion,
    flatten_volume,
    from_db,
    normalize_volume,
    phase_correlate,
    preprocess_case,
    segment_layers,
    shift_bscans,
    speckle_contrast,
    to_db,
    to_host,
)

try:
    import torch

    _CUDA = bool(torch.cuda.is_available())
except ImportError:  # torch is a project dependency; this only guards odd installs
    _CUDA = False
DEVICES = ["cpu"] + (["cuda"] if _CUDA else [])
GEOM = Geometry(bscan_um_per_px=2.26, depth_um_per_px=2.0, aline_um_per_px=2.26)


def make_synthetic(*, seed=0, n_repeats=2, shape=(32, 96, 48), motion_um=4.0, blink=None):
    """Small layered retina with a cone mosaic, per-repeat speckle and per-B-scan motion.

    Returns volumes (R, B, D, A) float32, motion_px (R, B, 2), surfaces dict (B, A) px.
    Layer centres (px): ILM 14, ISOS 56, COST 64, RPE 70 (depth 2 µm/px).
    """
    rng = np.random.default_rng(seed)
    n_b, n_d, n_a = shape
    pad = 12
    wide = n_a + 2 * pad
    # En face cone mosaic on a wider field so lateral shifts bring real content in.
    pts = rng.uniform([0, 0], [n_b, wide], size=(int(n_b * wide / 5), 2))
    cones = np.zeros((n_b, wide))
    np.add.at(cones, (pts[:, 0].astype(int), pts[:, 1].astype(int)), rng.uniform(0.5, 1.5, len(pts)))
    cones = ndimage.gaussian_filter(cones, 1.0)
    cones /= cones.max() / 2.0   # AO-OCT cones are bright, compact reflections
    z = np.arange(n_d, dtype=float)[:, None]
    tilt = np.linspace(-2, 2, n_b)

    def reflectivity(b):
        zz = z - tilt[b]
        prof = 0.002 + 0.4 * ((zz > 14) & (zz < 22)) + 0.08 * ((zz >= 22) & (zz < 50))
        prof = prof + 0.5 * np.exp(-0.5 * ((zz - 56) / 0.8) ** 2) * (0.1 + cones[b])[None, :]
        prof = prof + 0.3 * np.exp(-0.5 * ((zz - 64) / 0.8) ** 2) * (0.1 + cones[b])[None, :]
        prof = prof + 1.0 * np.exp(-0.5 * ((zz - 70) / 1.2) ** 2) + 0.2 * (zz > 74)
        return ndimage.gaussian_filter(prof * np.ones((1, wide)), (0.6, 0.6))

    truth = np.stack([reflectivity(b) for b in range(n_b)])
    motion = np.zeros((n_repeats, n_b, 2), np.float32)
    vols = np.zeros((n_repeats, n_b, n_d, n_a), np.float32)
    for r in range(n_repeats):
        lat = np.cumsum(rng.normal(0, 0.3, n_b)) + rng.normal(0, motion_um / 2.26 / 3, n_b)
        ax = 1.5 * np.sin(2 * np.pi * (np.arange(n_b) / n_b + rng.uniform())) + rng.normal(0, 0.3, n_b)
        motion[r, :, 0] = ax - ax.mean()
        motion[r, :, 1] = lat - lat.mean()
        for b in range(n_b):
            moved = ndimage.shift(truth[b], (motion[r, b, 0], motion[r, b, 1]), order=3, mode="nearest")
            vols[r, b] = moved[:, pad:pad + n_a]
        speckle = rng.exponential(size=vols[r].shape)
        vols[r] = np.maximum(vols[r], 0) * ndimage.gaussian_filter(speckle, (0, 0.5, 0.5)) * 1000
        vols[r] += rng.exponential(2.0, size=vols[r].shape)
    if blink is not None:
        vols[blink[0], blink[1]] *= 0.05
    surfaces = {name: (c + tilt[:, None] + np.zeros((n_b, n_a))).astype(np.float32)
                for name, c in (("ILM", 14.5), ("ISOS", 56.0), ("COST", 64.0), ("RPE", 70.0))}
    return vols, motion, surfaces


def _residual_rms(est, true):
    err = est - true
    err = err - err.mean(axis=1, keepdims=True)  # one constant per repeat is free
    return np.sqrt((err ** 2).mean(axis=(0, 1)))


@pytest.mark.parametrize("device", DEVICES)
def test_phase_correlate_recovers_subpixel_shifts(device):
    rng = np.random.default_rng(1)
    base = ndimage.gaussian_filter(rng.random((12, 64, 64)), (0, 2, 2)).astype(np.float32) ** 3
    true = rng.uniform(-5, 5, (12, 2)).astype(np.float32)
    moved = np.stack([ndimage.shift(b, t, order=3, mode="wrap") for b, t in zip(base, true)])
    est = phase_correlate(moved, base, device=device)
    assert est.shifts_px.shape == (12, 2) and est.shifts_px.dtype == np.float32
    assert np.abs(est.shifts_px - true).max() < 0.35
    assert (est.quality > 0.5).all()


@pytest.mark.parametrize("device", DEVICES)
def test_shift_bscans_round_trip_and_inputs_untouched(device):
    rng = np.random.default_rng(2)
    vol = ndimage.gaussian_filter(rng.random((4, 40, 40)), 3).astype(np.float64)
    copy = vol.copy()
    shifts = np.array([[1.5, -2.25], [0, 0], [-3, 0.5], [0.25, 4]], np.float32)
    out = to_host(shift_bscans(vol, shifts, device=device))
    back = to_host(shift_bscans(out, -shifts, device=device))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(vol, copy)
    np.testing.assert_allclose(back[:, 6:-6, 6:-6], vol[:, 6:-6, 6:-6], atol=0.02 * vol.max())
    np.testing.assert_allclose(out[1], vol[1], rtol=1e-6)


def test_input_validation_messages():
    with pytest.raises(ValueError, match="4-D"):
        estimate_motion(np.zeros((8, 32, 32)), GEOM)
    with pytest.raises(ValueError, match="reference"):
        estimate_motion(np.ones((2, 8, 32, 32)), GEOM, reference=5)
    with pytest.raises(ValueError, match="device"):
        phase_correlate(np.ones((2, 8, 8)), np.ones((2, 8, 8)), device="tpu")
    with pytest.raises(ValueError, match="volume\\[None\\]"):
        preprocess_case(np.ones((8, 32, 32)), GEOM)


def test_db_round_trip():
    x = np.array([1e-3, 1.0, 250.0], np.float32)
    np.testing.assert_allclose(from_db(to_db(x)), x, rtol=1e-5)
    np.testing.assert_allclose(to_db(np.array([10.0, 100.0])), [10.0, 20.0], rtol=1e-6)


def test_dim_bscans_flags_blink():
    vols, _, _ = make_synthetic(seed=3, n_repeats=1, blink=(0, 7))
    flags = dim_bscans(vols[0])
    assert flags[7] and flags.sum() == 1


@pytest.mark.parametrize("device", DEVICES)
def test_motion_correction_accuracy_small_phantom(device):
    phantom = pytest.importorskip("aooct_core.phantom")
    ph = phantom.make_phantom(seed=3, n_repeats=3, shape_px=(32, 256, 64))
    before = _residual_rms(np.zeros_like(ph.motion_px), ph.motion_px)
    report = estimate_motion(ph.volumes, ph.geometry, device=device)
    after = _residual_rms(report.shifts_px, ph.motion_px)
    assert report.shifts_px.shape == ph.motion_px.shape and report.shifts_px.dtype == np.float32
    assert after[0] < 1.0 and after[0] < 0.7 * before[0], (before, after)   # axial px
    assert after[1] < 0.7 * before[1], (before, after)                         # lateral px
    assert np.isfinite(report.residual_lateral_um_rms)


def test_a_repeat_with_a_saccade_larger_than_the_search_is_matched_on_both_sides():
    # Family member 172 (tuning range): repeat 1 jumps ~10 px at B-scan 20 after sitting
    # 13-18 px from the reference; one lateral centre for all B-scans (the median, -5 px)
    # left B-scans 0-19 on a cone-lattice alias, 8-13 px off. Each B-scan's search is now
    # centred on the running median of its neighbours' wide peaks.
    family = pytest.importorskip("aooct_core.phantom.family")
    from aooct_core.phantom import make_phantom

    ph = make_phantom(**family.family_member(172))
    report = estimate_motion(ph.volumes, ph.geometry, reference=0)
    est = report.shifts_px[1, :, 1] - report.shifts_px[0, :, 1]
    true = ph.motion_px[1, :, 1] - ph.motion_px[0, :, 1]
    err = est - true
    err -= np.median(err)
    assert np.mean(np.abs(err) <= 2.0) >= 0.9, np.round(err, 1)


def test_a_match_that_does_not_stand_out_of_its_surface_is_not_averaged():
    # B-scans 10-14 of repeat 1 mirrored along the A-lines: same layers and statistics, no
    # lateral structure in common with the reference. Their peaks clear min_quality but not
    # the peak-to-sidelobe floor: left out of the average (weak, or rejected at the run's
    # ends), the rest of the case still registered.
    phantom = pytest.importorskip("aooct_core.phantom")
    ph = phantom.make_phantom(seed=3, n_repeats=3, shape_px=(32, 256, 64))
    vols = ph.volumes.copy()
    vols[1, 10:15] = ph.volumes[1, 10:15, :, ::-1]
    report = estimate_motion(vols, ph.geometry, reference=0)
    assert np.all(report.weights[1, 10:15] == 0), report.weights[1]
    weak = {b for r, b in report.weak_bscans if r == 1}
    assert {11, 12, 13} <= weak and not weak & {b for _, b in report.rejected_bscans}
    assert report.registration_ok
    assert np.mean(report.weights[1:] > 0) >= 0.8       # the right matches are kept
    # Without the floor the same mirrored B-scans are averaged at a made-up shift.
    floorless = estimate_motion(vols, ph.geometry, reference=0, min_significance=0.0)
    assert np.all(floorless.weights[1, 11:14] == 1) and not floorless.weak_bscans


def test_peak_significance_separates_a_peak_from_noise():
    from aooct_core.preprocessing.backend import get_backend
    from aooct_core.preprocessing.motion import peak_significance

    rng = np.random.default_rng(0)
    x = np.arange(96)
    noise = rng.normal(0, 1, (200, 96)).astype(np.float32)
    peaked = noise * 0.1 + np.exp(-0.5 * ((x - 30) / 1.5) ** 2).astype(np.float32)[None]
    backend = get_backend("cpu")
    at = np.full(200, 30.0, np.float32)
    strong = peak_significance(peaked, at, exclude_px=4.5, backend=backend)
    flat = peak_significance(noise, noise.argmax(axis=1).astype(np.float32), exclude_px=4.5, backend=backend)
    assert strong.min() > 6 and np.median(flat) < 3.5, (strong.min(), np.median(flat))


@pytest.mark.parametrize("reference", [0, None])
def test_estimate_motion_thread_pool_matches_one_thread(reference):
    # The CPU thread pool only splits the work (per repeat / halves of B-scans); the row
    # means by sgemv and the kept-bin reference spectra differ from the one-thread path by
    # float32 rounding only.
    vols, _, _ = make_synthetic(seed=2, n_repeats=3, blink=(2, 5))
    one = estimate_motion(vols, GEOM, reference=reference, cpu_threads=1)
    two = estimate_motion(vols, GEOM, reference=reference, cpu_threads=2)
    assert one.reference == two.reference
    np.testing.assert_allclose(two.shifts_px, one.shifts_px, atol=1e-4)
    np.testing.assert_allclose(two.quality, one.quality, atol=1e-4)
    np.testing.assert_array_equal(two.weights, one.weights)
    assert one.rejected_bscans == two.rejected_bscans
    # Integer input (row means convert one repeat at a time): same as the one-thread path.
    ints = np.round(vols / vols.max() * 60000).astype(np.uint16)
    u16 = estimate_motion(ints, GEOM, reference=reference, cpu_threads=2)
    u16_one = estimate_motion(ints, GEOM, reference=reference, cpu_threads=1)
    np.testing.assert_allclose(u16.shifts_px, u16_one.shifts_px, atol=1e-4)


def test_estimate_motion_rejects_bad_cpu_threads():
    vols, _, _ = make_synthetic(seed=2, n_repeats=2)
    with pytest.raises(ValueError, match="cpu_threads"):
        estimate_motion(vols, GEOM, cpu_threads=0)


def test_blinked_bscan_is_rejected_and_reported():
    vols, _, _ = make_synthetic(seed=5, n_repeats=3, blink=(1, 10))
    report = estimate_motion(vols, GEOM)
    assert (1, 10) in report.rejected_bscans
    assert report.weights[1, 10] == 0
    assert report.registration_ok


def test_average_repeats_lowers_speckle_and_decorrelation():
    vols, motion, _ = make_synthetic(seed=6, n_repeats=3, motion_um=0.0)
    mean, decor = average_repeats(vols, motion, decorrelation=True)
    one = vols[0]
    band = np.zeros(one.shape, bool)
    band[:, 30:45, 8:-8] = True
    c1 = speckle_contrast(one, mask=band)
    c3 = speckle_contrast(mean, mask=band)
    assert c3 < 0.8 * c1
    assert decor.shape == one.shape and np.nanmax(decor) <= 1.0 + 1e-6 and np.nanmin(decor) >= -1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_windowed_decorrelation_separates_flow_from_static_speckle(device):
    """Half the field decorrelates between repeats (flow), half keeps its speckle; the
    3x3 window (SSADA-style) separates them with far less per-pixel scatter."""
    rng = np.random.default_rng(3)
    shape = (4, 40, 64)
    static = rng.exponential(size=shape).astype(np.float32)
    vols = np.stack([static.copy() for _ in range(3)])
    vols[:, :, :, 32:] = rng.exponential(size=(3, 4, 40, 32)).astype(np.float32)   # "flow"
    vols *= rng.gamma(50.0, 1 / 50.0, size=vols.shape).astype(np.float32)          # a little noise
    shifts = np.zeros((3, 4, 2), np.float32)
    _, per_pixel = average_repeats(vols, shifts, decorrelation=True, decorrelation_window_px=(1, 1),
                                   device=device)
    _, windowed = average_repeats(vols, shifts, decorrelation=True, device=device)
    per_pixel, windowed = (np.asarray(to_host(d))[:, 2:-2, 2:-2] for d in (per_pixel, windowed))
    for d in (per_pixel, windowed):
        assert d[..., 32:].mean() > 3 * d[..., :28].mean()
    # Flow pixels: the window cuts the scatter of the decorrelation estimate.
    assert windowed[..., 34:].std() < 0.6 * per_pixel[..., 34:].std()


@pytest.mark.parametrize("window", [(1, 1), (3, 3), (5, 3), (1, 5)])
def test_window_sum_equals_a_uniform_filter(window):
    from aooct_core.preprocessing.averaging import _window_sum
    x = np.random.default_rng(0).random((3, 20, 17)).astype(np.float32)
    expected = ndimage.uniform_filter(x, (1, *window), mode="nearest") * (window[0] * window[1])
    np.testing.assert_allclose(_window_sum(x, window, np), expected, rtol=1e-5, atol=1e-5)


def test_decorrelation_window_must_be_odd_sizes():
    vols = np.ones((2, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="odd"):
        average_repeats(vols, np.zeros((2, 2, 2)), decorrelation=True, decorrelation_window_px=(2, 3))


def test_normalize_volume_scale_and_drift():
    vols, _, _ = make_synthetic(seed=7, n_repeats=1)
    vol = vols[0] * np.linspace(0.5, 1.5, vols.shape[1])[:, None, None]
    out, gain = normalize_volume(vol, drift_sigma_bscans=0)
    means = out.mean(axis=(1, 2))
    assert means.std() / means.mean() < 0.05
    assert 0.5 < np.percentile(out, 99.5) < 2.0
    assert out.dtype == np.float32 and gain.shape == (vols.shape[1],)


@pytest.mark.parametrize("device", DEVICES)
def test_layers_on_motion_free_phantom(device):
    phantom = pytest.importorskip("aooct_core.phantom")
    ph = phantom.make_phantom(seed=5, n_repeats=3, shape_px=(16, 256, 64), motion_scale=0.0)
    mean = ph.volumes.mean(axis=0)
    found = {k: to_host(v) for k, v in segment_layers(mean, depth_um_per_px=2.0, device=device).items()}
    for name in ("ILM", "ISOS", "COST", "RPE"):
        err = np.abs(found[name] - ph.surfaces_px[name])
        assert found[name].dtype == np.float32
        assert np.sqrt(np.mean(err ** 2)) < 2.0 and np.percentile(err, 95) < 3.0, (name, np.median(err))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_in_the_window_band_equals_the_full_depth_search(seed):
    # segment_layers searches only the rows that hold every window; the path must be the
    # one the full-depth cost volume gives (windows that drift with the surface, as in use).
    from aooct_core.preprocessing.backend import get_backend
    from aooct_core.preprocessing.layers import _depth_band, _window_cost, dp_surface

    rng = np.random.default_rng(seed)
    n_b, n_z, n_c = 6, 120, 40
    feature = ndimage.gaussian_filter(rng.standard_normal((n_b, n_z, n_c)), (0, 1, 2)).astype(np.float32)
    centre = 60 + np.cumsum(rng.integers(-1, 2, size=(n_b, n_c)), axis=1).astype(np.float32)
    lo, hi = centre - 9.5, centre + 7.0
    backend = get_backend("cpu")
    full = dp_surface(_window_cost(feature, lo, hi, np), backend=backend)
    z0, z1 = _depth_band(lo, hi, n_z)
    assert 0 < z0 and z1 < n_z and z1 - z0 < n_z // 2
    banded = dp_surface(_window_cost(feature[:, z0:z1], lo - z0, hi - z0, np), backend=backend) + z0
    np.testing.assert_array_equal(banded, full)
    assert _depth_band(np.full((2, 3), 50.0), np.full((2, 3), 40.0), n_z) == (0, n_z)  # empty: all rows


def test_dp_surface_refuses_an_empty_cost_volume():
    # An empty depth band would make the CUDA kernel read outside its shared memory.
    from aooct_core.preprocessing.layers import dp_surface

    with pytest.raises(ValueError, match="every size >= 1"):
        dp_surface(np.zeros((4, 0, 9), np.float32))


def test_flatten_puts_surface_at_one_depth():
    vols, _, surfaces = make_synthetic(seed=9, n_repeats=1, motion_um=0.0)
    flat = flatten_volume(vols[0], surfaces["RPE"], target_depth_px=70)
    profile = flat[:, 60:80].mean(axis=(0, 2))
    assert 9 <= int(np.argmax(profile)) <= 11


def test_preprocess_case_contract():
    vols, _, _ = make_synthetic(seed=10, n_repeats=2)
    vols_u16 = np.clip(vols, 0, 65535).astype(np.uint16)
    copy = vols_u16.copy()
    out = preprocess_case(vols_u16, GEOM)
    np.testing.assert_array_equal(vols_u16, copy)
    assert out.volume.shape == vols.shape[1:] and out.volume.dtype == np.float32
    assert set(out.surfaces_px) >= {"ILM", "ISOS", "COST", "RPE"}
    assert set(out.enface) == {"isos", "cost", "isos_cost", "rpe", "nfl", "svp", "dvp", "octa_svp", "octa_dvp"}
    np.testing.assert_allclose(out.enface["isos_cost"], np.sqrt(out.enface["isos"] * out.enface["cost"]), rtol=1e-5)
    assert 0.0 <= out.padded_fraction <= 1.0
    for img in out.enface.values():
        assert img.shape == (vols.shape[1], vols.shape[3]) and img.dtype == np.float32
    assert np.isfinite(out.enface["octa_svp"]).all()
    assert out.motion.shifts_px.shape == (2, vols.shape[1], 2)
    assert 0 < out.speckle_contrast < 2 and np.isfinite(out.snr_db) and out.snr_db > 3
    assert isinstance(out.registration_ok, bool)


def test_single_volume_has_nan_octa():
    vols, _, _ = make_synthetic(seed=11, n_repeats=1)
    out = preprocess_case(vols[:1], GEOM)
    assert np.isnan(out.enface["octa_dvp"]).all() and np.isfinite(out.enface["isos"]).all()


@pytest.mark.skipif(not _CUDA, reason="needs a CUDA device")
@pytest.mark.gpu
def test_cpu_and_gpu_agree():
    vols, _, _ = make_synthetic(seed=12, n_repeats=2)
    cpu = preprocess_case(vols, GEOM, device="cpu")
    gpu = preprocess_case(vols, GEOM, device="cuda")
    np.testing.assert_allclose(gpu.motion.shifts_px, cpu.motion.shifts_px, atol=0.02)
    np.testing.assert_allclose(gpu.volume, cpu.volume, rtol=1e-3, atol=1e-3)
    for name in cpu.surfaces_px:
        assert np.mean(np.abs(gpu.surfaces_px[name] - cpu.surfaces_px[name]) <= 0.5) >= 0.98


def test_enface_slabs_pick_the_right_band():
    vols, motion, surfaces = make_synthetic(seed=13, n_repeats=2, motion_um=0.0)
    mean, _ = average_repeats(vols, motion)
    imgs = enface_slabs(mean, surfaces, depth_um_per_px=2.0)
    assert imgs["rpe"].mean() > imgs["isos"].mean() > imgs["svp"].mean() * 0.5
    assert np.isnan(imgs["octa_svp"]).all()


def _lattice_image(shape, spacing_px, theta, shear_px_per_row=0.0, sigma_px=0.8):
    # Gaussian spots on a triangular lattice; row r's content displaced by shear · r.
    rows, cols = shape
    a1 = spacing_px * np.array([np.cos(theta), np.sin(theta)])
    a2 = spacing_px * np.array([np.cos(theta + np.pi / 3), np.sin(theta + np.pi / 3)])
    n = int(2 * max(shape) / spacing_px) + 2
    i, j = np.meshgrid(np.arange(-n, n), np.arange(-n, n), indexing="ij")
    pts = i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2 + np.array(shape) / 2
    pts[:, 1] += shear_px_per_row * pts[:, 0]
    img = np.zeros(shape)
    keep = (pts[:, 0] >= 0) & (pts[:, 0] < rows - 1) & (pts[:, 1] >= 0) & (pts[:, 1] < cols - 1)
    base = np.floor(pts[keep]).astype(int)
    frac = pts[keep] - base
    for dr in (0, 1):        # bilinear splatting keeps the sub-pixel positions
        for dc in (0, 1):
            w = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            np.add.at(img, (base[:, 0] + dr, base[:, 1] + dc), w)
    return ndimage.gaussian_filter(img, sigma_px)


@pytest.mark.parametrize("theta", [0.1, 0.6])
def test_lattice_shear_recovers_linear_drift(theta):
    from aooct_core.preprocessing.lattice import lattice_shear

    for shear in (0.0, 0.03, -0.02):
        img = _lattice_image((128, 128), 3.0, theta, shear)
        est, ok = lattice_shear(img, um_per_px=(2.0, 2.0))
        assert ok
        assert abs(est - shear) < 0.005, (theta, shear, est)
    noise = np.random.default_rng(0).random((128, 128))
    assert lattice_shear(ndimage.gaussian_filter(noise, 3), um_per_px=(2.0, 2.0)) == (0.0, False)


@pytest.mark.parametrize("shape", [(32, 40), (33, 41)])
def test_full_columns_rebuild_the_periodic_spectrum_from_its_real_half(shape):
    from scipy import fft

    from aooct_core.preprocessing.lattice import _full_columns

    img = np.random.default_rng(1).random(shape)
    full = np.abs(fft.fft2(img)) ** 2
    half = np.abs(fft.rfft2(img)) ** 2
    cols = np.arange(-3, shape[1] // 2 + 4)
    np.testing.assert_allclose(_full_columns(half, shape[1], cols), full[:, cols % shape[1]], rtol=1e-9)


def test_lattice_row_shifts_recover_row_jitter():
    """Smooth per-row jitter of a cone-like lattice comes back (linear trend and mean removed)."""
    from aooct_core.preprocessing.lattice import lattice_row_shifts

    n = 192
    rows = np.arange(n)
    truth = 0.8 * np.sin(2 * np.pi * rows / 70) + 0.5 * np.sin(2 * np.pi * rows / 23 + 1)
    r, c = np.mgrid[0:n, 0:n].astype(float)
    cc = c - truth[:, None]  # row b's content displaced by +truth[b] along the A-lines
    img = sum(np.cos(2 * np.pi / 6.0 * (np.cos(t) * cc + np.sin(t) * r))
              for t in np.radians([10, 70, 130])) + 3.0
    img += np.random.default_rng(0).normal(0, 0.3, img.shape)
    est, agreement = lattice_row_shifts(img)
    expected = truth - np.polyval(np.polyfit(rows, truth, 1), rows)
    assert agreement > 0.9
    inner = slice(10, n - 10)  # the Hann window leaves the first/last rows weakly determined
    assert np.sqrt(np.mean((est[inner] - expected[inner]) ** 2)) < 0.1


def test_saccade_steps_trimmed_mean_when_another_repeat_drifts():
    from aooct_core.preprocessing.tracking import saccade_steps as _saccade_steps

    # Repeat 1 saccades by -4.2 px at B-scan 5 while repeat 2 drifts by -1 px there.
    m = np.zeros((3, 10))
    m[1, 6:] -= 4.2
    m[2, 6:] -= 1.0
    m[0, 6:] += 0.5
    e = m - m.mean(axis=0)
    steps = _saccade_steps(e, 2.0)
    mean_frame = steps.mean(axis=0)
    # The common part recovered from the two drifting repeats: within their drift, not the median's 1 px.
    assert abs((mean_frame[-1] - mean_frame[0]) - m.mean(axis=0)[-1]) < 0.4
    assert np.all(_saccade_steps(e[:2], 2.0) == 0)


def test_isolated_outliers_keeps_steps_and_short_plateaus():
    from aooct_core.preprocessing.tracking import isolated_outliers

    d = np.zeros((1, 14, 2))
    d[0, 2, 1] = 5.0            # a lone false peak
    d[0, 6:8, 1] = 4.6          # two saccades 2 B-scans apart: a real 2-B-scan plateau
    d[0, 11:, 0] = 3.0          # a step
    flagged = isolated_outliers(d, 2.0)[0]
    assert flagged.tolist() == [b == 2 for b in range(14)]


def test_fast_residual_brackets_tremor_and_noise():
    from scipy.ndimage import gaussian_filter1d

    from aooct_core.preprocessing.lattice import ROW_PHASE_SIGMA_ROWS
    from aooct_core.preprocessing.tracking import fast_residual

    rng = np.random.default_rng(0)
    n_rep, n_b = 3, 4096
    usable = np.ones((n_rep, n_b), bool)
    drift = np.cumsum(rng.normal(0, 0.3, (n_rep, n_b)), axis=1)
    # All eye motion (drift + white tremor): the lattice takes the slow part of the mean
    # frame M, leaving its fast part; the estimate is over by ~sqrt(R).
    m = drift + rng.normal(0, 0.5, (n_rep, n_b))
    mean = m.mean(axis=0)
    left = mean - gaussian_filter1d(mean, ROW_PHASE_SIGMA_ROWS, mode="nearest")
    truth = np.sqrt(np.mean(left ** 2))
    est = fast_residual(m - mean, usable, sigma_px=ROW_PHASE_SIGMA_ROWS)
    assert 1.3 < est / truth < 2.1, (est, truth)
    # All matching noise: every repeat keeps its own noise; the estimate is under by ~0.85.
    n = rng.normal(0, 0.3, (n_rep, n_b))
    e = n - n.mean(axis=0)
    truth = np.sqrt(np.mean(e ** 2))
    est = fast_residual(e, usable, sigma_px=ROW_PHASE_SIGMA_ROWS)
    assert 0.75 < est / truth < 1.0, (est, truth)
    # Slow motion only (what the lattice corrects): nearly nothing left.
    slow = np.sin(np.linspace(0, 3, n_b))[None] * np.array([[1.0], [-0.5], [-0.5]])
    assert fast_residual(slow, usable, sigma_px=ROW_PHASE_SIGMA_ROWS) < 1e-3
    assert np.isnan(fast_residual(e[:1], usable[:1], sigma_px=1.0))


def test_polynomial_residual_sees_only_the_detrended_part():
    from aooct_core.preprocessing.tracking import polynomial_residual

    b = np.linspace(-1, 1, 128)
    q = 0.8 * b ** 2 + 0.3 * b
    usable = np.ones((2, 128), bool)
    # Two repeats: e = ±q, so E|P M|² = Σ|P e|² / (R) = |q - mean q|².
    est = polynomial_residual(np.stack([q, -q]), usable, degree=2)
    assert est == pytest.approx(np.sqrt(np.mean((q - q.mean()) ** 2)), rel=1e-6)
    fast = np.where(np.arange(128) % 2, 1.0, -1.0)
    assert polynomial_residual(np.stack([fast, -fast]), usable, degree=2) < 0.05
    assert np.isnan(polynomial_residual(q[None], usable[:1], degree=2))


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_fast_cpu_average_equals_reference_shift_and_sum(dtype):
    # The fused CPU path (cpu_resample) must equal shift_bscans + weighted sum within the
    # documented tolerance (float32 rounding of the per-pixel fractions: < 1e-5 of max).
    from aooct_core.preprocessing.cpu_resample import average_repeats_cpu

    rng = np.random.default_rng(5)
    vols = (rng.random((3, 37, 50, 30)) * 1000).astype(dtype)
    before = vols.copy()
    shifts = rng.uniform(-6.0, 6.0, (3, 37, 2)).astype(np.float32)
    shifts[0, :3] = [[0.0, 0.0], [2.0, -3.0], [-0.5, 0.25]]     # integer and half-pixel shifts too
    weights = rng.random((3, 37)).astype(np.float32)
    weights[:, 4] = 0.0                                          # a B-scan rejected in every repeat
    weights[1, 7] = 0.0
    w = np.where((weights.sum(0) <= 0)[None], 1.0, weights)
    w = (w / w.sum(0, keepdims=True)).astype(np.float32)
    ref = sum(shift_bscans(vols[r], -shifts[r]) * w[r][:, None, None] for r in range(3))
    fast = average_repeats_cpu(vols, shifts, w)
    assert fast is not None and fast.dtype == np.float32
    scale = float(np.abs(ref).max())
    assert np.abs(fast - ref).max() <= 1e-5 * scale
    mean, decor = average_repeats(vols, shifts, weights=weights)
    assert decor is None
    np.testing.assert_array_equal(mean, fast)
    np.testing.assert_array_equal(average_repeats(vols, shifts, weights=weights, cpu_threads=1)[0], fast)
    np.testing.assert_array_equal(vols, before)
    # Shifts beyond the padding limit take the reference path (None here).
    assert average_repeats_cpu(vols, np.full_like(shifts, 100.0), w) is None


def test_two_repeat_saccades_are_attributed_by_the_adjacent_tracks():
    from aooct_core.preprocessing.tracking import two_repeat_saccades

    rng = np.random.default_rng(0)
    n = 40
    m = np.zeros((2, n))
    m[0, 10:] -= 3.0          # the reference (repeat 0) saccades at B-scan 10
    m[1, 25:] += 4.0          # the other repeat at B-scan 25
    m[1, 33:] += 2.6          # a third jump that neither track sees
    d = m - m[0]
    gain = 0.4                # adjacent-B-scan steps see only part of a jump
    noise = lambda: rng.normal(0, 0.2, n)  # noqa: E731
    ref_track = gain * m[0] + noise()
    other_track = gain * np.where(np.arange(n) >= 33, m[1] - 2.6, m[1]) + noise()
    saccades, ambiguity = two_repeat_saccades(d, ref_track, other_track, reference=0, threshold_px=2.0)
    np.testing.assert_allclose(saccades[0], np.where(np.arange(n) >= 10, -3.0, 0.0), atol=1e-5)
    np.testing.assert_allclose(saccades[1], np.where(np.arange(n) >= 25, 4.0, 0.0), atol=1e-5)
    assert ambiguity == pytest.approx(1.3, abs=1e-5)   # half the unattributed 2.6 px jump
    # Drift below the threshold is never a saccade; with 1 or 3 repeats the rule does not apply.
    quiet, none = two_repeat_saccades(d * 0.1, ref_track, other_track, reference=0, threshold_px=2.0)
    assert not quiet.any() and none == 0.0
    assert two_repeat_saccades(np.zeros((3, n)), ref_track, other_track, reference=0, threshold_px=2.0)[1] == 0.0
