"""Tests of the ground-truth phantom (aooct_core.phantom)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aooct_core.phantom import (SURFACE_NAMES, cone_spacing_um, curcio_cone_density_cells_per_mm2,
                                make_phantom, sample_cone_mosaic, simulate_eye_motion_px,
                                speckle_contrast, speckle_field, write_phantom)

SMALL = (24, 240, 40)   # the smallest depth that holds the retina at 2 µm/px is 236 px


@pytest.fixture(scope="module")
def small():
    return make_phantom(seed=7, n_repeats=2, shape_px=SMALL)


@pytest.fixture(scope="module")
def still():
    """No motion, 4 repeats, for speckle and layer tests."""
    return make_phantom(seed=11, n_repeats=4, shape_px=(16, 240, 48), motion_scale=0.0, snr_db=50.0)


# --- shapes, dtypes, truth record ------------------------------------------------------------

def test_shapes_dtypes_and_truth_keys(small):
    n_b, n_d, n_a = SMALL
    assert small.volumes.shape == (2, n_b, n_d, n_a) and small.volumes.dtype == np.float32
    assert np.isfinite(small.volumes).all() and (small.volumes >= 0).all()
    assert small.motion_px.shape == (2, n_b, 2) and small.motion_px.dtype == np.float32
    assert tuple(small.surfaces_px) == SURFACE_NAMES
    for surf in small.surfaces_px.values():
        assert surf.shape == (n_b, n_a) and surf.dtype == np.float32
    truth = json.loads(json.dumps(small.truth))          # JSON-serialisable
    for key in ("seed", "shape_px", "geometry", "eccentricity_deg", "cones", "vessels",
                "nerve_fiber_bundles", "motion_px", "layers_mean_depth_px"):
        assert key in truth
    cones = truth["cones"]
    n = len(cones["positions_rc"])
    assert n > 50 and len(cones["reflectivity"]) == n and len(cones["missing"]) == n
    pos = np.array(cones["positions_rc"])
    assert pos[:, 0].min() >= -0.5 and pos[:, 0].max() < n_b - 0.5
    assert pos[:, 1].min() >= -0.5 and pos[:, 1].max() < n_a - 0.5
    assert np.allclose(truth["motion_px"], small.motion_px, atol=1e-4)
    assert small.acquisition.sampling_px == SMALL
    assert truth["geometry"]["aline_um_per_px"] == pytest.approx(small.geometry.aline_um_per_px)


def test_vessel_and_bundle_truth_ranges(small):
    vessels = small.truth["vessels"]
    assert {v["plexus"] for v in vessels} == {"SVP", "DVP"}
    assert all(4.0 <= v["diameter_um"] <= 6.0 for v in vessels)
    svp = np.mean([v["depth_px"] for v in vessels if v["plexus"] == "SVP"])
    dvp = np.mean([v["depth_px"] for v in vessels if v["plexus"] == "DVP"])
    layers = small.truth["layers_mean_depth_px"]
    assert layers["NFL_GCL"] < svp < layers["IPL_INL"]
    assert dvp == pytest.approx(layers["INL_OPL"], abs=1.5)
    bundles = small.truth["nerve_fiber_bundles"]
    assert bundles and all(3.0 <= b["width_um"] <= 30.0 for b in bundles)
    assert all(len(b["centerline_rc"]) >= 2 for b in bundles)


def test_shallow_window_keeps_outer_retina():
    ph = make_phantom(seed=2, n_repeats=1, shape_px=(8, 120, 16))
    assert ph.surfaces_px["ILM"].max() < 0                     # inner retina runs off the top
    for name in ("ELM", "ISOS", "COST", "RPE", "BM"):
        assert 5 < ph.surfaces_px[name].min() and ph.surfaces_px[name].max() < 120 - 10


def test_layer_order(small):
    surfaces = [small.surfaces_px[name] for name in SURFACE_NAMES]
    for upper, lower in zip(surfaces, surfaces[1:]):
        assert (lower > upper).all()


# --- determinism -----------------------------------------------------------------------------

def test_same_seed_identical_and_different_seed_differs(small):
    again = make_phantom(seed=7, n_repeats=2, shape_px=SMALL)
    assert np.array_equal(again.volumes, small.volumes)
    assert again.truth == small.truth
    other = make_phantom(seed=8, n_repeats=2, shape_px=SMALL)
    assert not np.array_equal(other.volumes, small.volumes)
    assert other.truth["cones"]["positions_rc"] != small.truth["cones"]["positions_rc"]


def test_anatomy_does_not_depend_on_repeat_count(small):
    one = make_phantom(seed=7, n_repeats=1, shape_px=SMALL)
    assert one.truth["cones"] == small.truth["cones"]
    assert np.array_equal(one.volumes[0], small.volumes[0])


# --- cone density (Curcio 1990) -----------------------------------------------------------------

def test_curcio_density_values():
    assert curcio_cone_density_cells_per_mm2(0.0) == pytest.approx(197000)
    d = [curcio_cone_density_cells_per_mm2(e) for e in (0.5, 1, 2, 4, 8, 16)]
    assert all(a > b for a, b in zip(d, d[1:]))
    assert 25000 < curcio_cone_density_cells_per_mm2(2.0) < 35000       # Curcio / Legras 2018 at 2 deg
    # Longer eyes put a given angle further out on the retina -> lower density.
    assert curcio_cone_density_cells_per_mm2(2.0, axial_length_mm=27) < curcio_cone_density_cells_per_mm2(2.0)
    with pytest.raises(ValueError, match="eccentricity_deg"):
        curcio_cone_density_cells_per_mm2(-1.0)
    with pytest.raises(ValueError, match="beyond"):
        curcio_cone_density_cells_per_mm2(60.0)


def test_spacing_formula():
    d = 30000.0
    assert cone_spacing_um(d) == pytest.approx(1000 * math.sqrt(2 / (math.sqrt(3) * d)))
    # A perfect lattice sampled over a big field has that nearest-neighbour distance.
    pts = sample_cone_mosaic((200.0, 200.0), density_cells_per_mm2=d, rng=np.random.default_rng(0), disorder=0.0)
    from scipy.spatial import cKDTree
    nnd = cKDTree(pts).query(pts, k=2)[0][:, 1]
    assert np.median(nnd) == pytest.approx(cone_spacing_um(d), rel=1e-6)


@pytest.mark.parametrize("density", [12000.0, 30000.0, 60000.0])
def test_sampled_mosaic_density_matches_target(density):
    rng = np.random.default_rng(1)
    field = (300.0, 250.0)
    counts = [len(sample_cone_mosaic(field, density_cells_per_mm2=density, rng=rng)) for _ in range(10)]
    measured = np.mean(counts) / (field[0] * field[1] * 1e-6)
    assert measured == pytest.approx(density, rel=0.02)


def test_phantom_true_density_matches_curcio():
    ph = make_phantom(seed=3, n_repeats=1, shape_px=(96, 240, 96), location_deg=(3.0, 1.0))
    cones = ph.truth["cones"]
    expected = curcio_cone_density_cells_per_mm2(math.hypot(3.0, 1.0))
    assert cones["curcio_density_cells_per_mm2"] == pytest.approx(expected)
    assert cones["true_density_cells_per_mm2"] == pytest.approx(expected, rel=0.04)
    assert cones["spacing_um"] == pytest.approx(cone_spacing_um(expected))
    missing = np.array(cones["missing"])
    assert 0.03 < missing.mean() < 0.15                      # 3 % absent + 5 % dim by default
    refl = np.array(cones["reflectivity"])
    assert refl[missing].max() < np.median(refl[~missing])


# --- speckle ------------------------------------------------------------------------------------

def test_speckle_field_is_fully_developed_and_averages_as_inverse_sqrt_n():
    rng = np.random.default_rng(0)
    fields = [speckle_field((32, 64, 64), psf_fwhm_px=(1.1, 1.5, 1.1), rng=rng) for _ in range(8)]
    assert speckle_contrast(fields[0]) == pytest.approx(1.0, abs=0.05)
    for n in (2, 4, 8):
        assert speckle_contrast(np.mean(fields[:n], axis=0)) == pytest.approx(1 / math.sqrt(n), rel=0.08)


def test_phantom_speckle_contrast_falls_as_inverse_sqrt_n(still):
    """Normalised by the speckle-free reflectivity, the ONL follows 1/sqrt(N)."""
    clean = still.motion_free()
    z = np.arange(clean.shape[1])[None, :, None]
    onl = (z > still.surfaces_px["OPL_ONL"][:, None, :] + 3) & (z < still.surfaces_px["ELM"][:, None, :] - 3)
    onl &= clean > 0
    contrasts = [speckle_contrast(still.volumes[:n].mean(axis=0) / np.maximum(clean, 1e-12), onl)
                 for n in (1, 2, 4)]
    assert contrasts[0] == pytest.approx(1.0, abs=0.1)
    assert contrasts[1] == pytest.approx(contrasts[0] / math.sqrt(2), rel=0.12)
    assert contrasts[2] == pytest.approx(contrasts[0] / 2, rel=0.12)


# --- layers ---------------------------------------------------------------------------------------

def test_mean_ascan_has_peaks_at_isos_cost_rpe(still):
    vol = still.volumes.mean(axis=0)
    ref = 120
    rpe = np.rint(still.surfaces_px["RPE"]).astype(int)
    # Flatten on the RPE so the mean A-scan is not smeared by curvature.
    n_b, n_d, n_a = vol.shape
    profile = np.zeros(n_d)
    for b in range(n_b):
        for a in range(n_a):
            profile += np.roll(vol[b, :, a], ref - rpe[b, a])
    profile /= n_b * n_a
    for name in ("ISOS", "COST", "RPE"):
        at = ref + int(round(float(np.mean(still.surfaces_px[name] - still.surfaces_px["RPE"]))))
        window = profile[at - 2: at + 3]
        assert window.max() == profile[at - 4: at + 5].max(), f"no peak at {name}"
        assert window.max() > 3 * np.median(profile[ref - 40: ref - 25]), f"{name} not brighter than ONL"
    assert profile[ref - 2: ref + 3].max() == profile[ref - 50: ref + 10].max()   # RPE brightest


# --- motion ----------------------------------------------------------------------------------------

def _phase_correlation(reference: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Plain phase correlation with parabolic sub-pixel peak: shift of `moved` vs `reference`."""
    win = np.outer(np.hanning(reference.shape[0]), np.hanning(reference.shape[1]))
    f = np.fft.fft2(moved * win) * np.conj(np.fft.fft2(reference * win))
    corr = np.real(np.fft.ifft2(f / np.maximum(np.abs(f), 1e-12)))
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape))
    shift = peak.astype(float)
    for ax in (0, 1):
        idx = [peak[0], peak[1]]
        vals = []
        for d in (-1, 0, 1):
            idx[ax] = (peak[ax] + d) % corr.shape[ax]
            vals.append(corr[tuple(idx)])
        denom = vals[0] - 2 * vals[1] + vals[2]
        shift[ax] += 0.5 * (vals[0] - vals[2]) / denom if denom != 0 else 0.0
    size = np.array(corr.shape)
    return np.where(shift > size / 2, shift - size, shift)


def test_motion_sign_convention_recovered_by_phase_correlation():
    ph = make_phantom(seed=5, n_repeats=1, shape_px=(8, 240, 96))
    clean = ph.motion_free()
    known = np.tile([[3.0, -4.0]], (8, 1))
    moved = ph.scene.render(known)
    for b in range(8):
        log_ref, log_mov = np.log(clean[b] + 1e-4), np.log(moved[b] + 1e-4)
        est = _phase_correlation(log_ref - log_ref.mean(), log_mov - log_mov.mean())
        assert est == pytest.approx(known[b], abs=0.3)     # content moved by +motion_px
    # The phantom's own motion truth, sub-pixel: render repeat 0's motion without speckle/noise.
    moved = ph.scene.render(ph.motion_px[0])
    errors = []
    for b in range(8):
        log_ref, log_mov = np.log(clean[b] + 1e-4), np.log(moved[b] + 1e-4)
        errors.append(_phase_correlation(log_ref - log_ref.mean(), log_mov - log_mov.mean()) - ph.motion_px[0, b])
    assert np.median(np.abs(errors)) < 0.2


def test_motion_model_magnitudes_and_zero_motion():
    rng = np.random.default_rng(0)
    m = simulate_eye_motion_px(20, 128, rng=rng, depth_um_per_px=2.0, aline_um_per_px=2.0)
    lateral_um = m[..., 1] * 2.0
    rms = np.sqrt((lateral_um ** 2).mean(axis=1))
    assert 0.5 < np.median(rms) < 8.0 and np.abs(lateral_um).max() <= 15.0 + 1e-4
    assert not np.allclose(m[0], m[1])                         # differs per repeat
    zero = simulate_eye_motion_px(2, 16, rng=rng, depth_um_per_px=2.0, aline_um_per_px=2.0, drift_um=0,
                                  tremor_um=0, microsaccades_per_volume=0, axial_um=0)
    assert not zero.any()
    ph = make_phantom(seed=1, n_repeats=1, shape_px=(8, 240, 16), motion_scale=0.0)
    assert not ph.motion_px.any()


def test_dim_bscans_are_recorded():
    ph = make_phantom(seed=2, n_repeats=2, shape_px=(32, 240, 16), dim_bscan_fraction=0.2)
    dim = ph.truth["dim_bscans"]
    assert dim
    means = ph.volumes.mean(axis=(2, 3))
    r, b = dim[0]
    assert means[r, b] < 0.5 * np.median(means[r])


# --- validation and writing ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"shape_px": (8, 60, 8)}, "too shallow"),
    ({"shape_px": (8, 240)}, "shape_px"),
    ({"n_repeats": 0}, "n_repeats"),
    ({"scan_field_deg": (0.0, 1.0)}, "scan_field_deg"),
    ({"axial_length_mm": 5.0}, "axial_length_mm"),
    ({"location_deg": (50.0, 0.0)}, "beyond"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_phantom(seed=0, **kwargs)


def test_write_phantom_round_trip(tmp_path):
    from aooct_core.io import CaseExistsError, load_case

    ph = make_phantom(seed=4, n_repeats=2, shape_px=(8, 240, 16))
    folder = write_phantom(tmp_path / "case", ph)
    case = load_case(folder)
    assert np.array_equal(np.asarray(case.volumes()), ph.volumes)
    assert case.geometry == ph.geometry
    assert json.loads((folder / "truth.json").read_text()) == json.loads(json.dumps(ph.truth))
    npz = np.load(folder / "truth_surfaces.npz")
    assert np.array_equal(npz["ISOS"], ph.surfaces_px["ISOS"])
    assert write_phantom(folder, ph) == folder               # identical: no-op
    other = make_phantom(seed=5, n_repeats=2, shape_px=(8, 240, 16))
    with pytest.raises(CaseExistsError):
        write_phantom(folder, other)
    write_phantom(folder, other, overwrite=True)
    assert json.loads((folder / "truth.json").read_text())["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]   # no temp folders left


def test_motion_residual_frees_per_repeat_offsets_and_only_the_common_polynomial():
    from aooct_core.phantom import motion_residual
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (3, 40, 2))
    t = np.linspace(-1, 1, 40)
    est = true + np.array([1.0, -2.0, 0.5])[:, None, None]          # per-repeat offsets are free
    assert motion_residual(est, true, aline_um_per_px=2.0) == pytest.approx((0.0, 0.0), abs=1e-12)
    est[:, :, 0] += 1.5 * t - 0.7 * t ** 2                            # common tilt/curvature
    whole, _ = motion_residual(est, true, aline_um_per_px=2.0)
    observable, _ = motion_residual(est, true, aline_um_per_px=2.0, common_axial_degree=2)
    assert whole > 0.5 and observable == pytest.approx(0.0, abs=1e-9)
    est[0, :, 0] += 0.6 * t                                           # one repeat differs: observable
    observable, _ = motion_residual(est, true, aline_um_per_px=2.0, common_axial_degree=2)
    assert observable > 0.1
    est[:, :, 1] += 0.5 * t                                           # lateral is never detrended
    assert motion_residual(est, true, aline_um_per_px=2.0, common_axial_degree=2)[1] > 0.5
    with pytest.raises(ValueError, match="n_repeats, n_bscans, 2"):
        motion_residual(est[:, :, :1], true[:, :, :1], aline_um_per_px=2.0)
