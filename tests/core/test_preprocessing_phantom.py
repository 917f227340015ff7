"""Accuracy of aooct_core.preprocessing against the ground-truth phantom (and real data).

Default tests use small phantoms (seconds); the full-size accuracy suite is ``slow``.
Targets (issue 3): residual lateral motion ≤ 1.0 µm RMS, axial ≤ 1 px, surface depth
error ≤ 2 px, speckle contrast falling with N as the phantom predicts (1/sqrt(N)).
Measured figures are in bench/results_preprocessing.md (20 seeds). The slow test checks
the lateral target on each of seeds 0-9; the whole axial error is checked as the median over
seeds and its observable part on every seed (single seeds sit at ~1 px whole: the degree-2
part of the across-repeat mean axial motion is the same signal as retinal tilt/curvature
along the slow axis and is removed with it, see tracking.py and
``aooct_core.phantom.motion_residual``).
"""
from __future__ import annotations

import numpy as np
import pytest

from aooct_core.preprocessing import preprocess_case, speckle_contrast

phantom = pytest.importorskip("aooct_core.phantom")


def _residual(est, true, um_per_px, common_axial_degree=None):
    return phantom.motion_residual(est, true, aline_um_per_px=um_per_px,
                                   common_axial_degree=common_axial_degree)


def test_speckle_contrast_falls_as_one_over_sqrt_n():
    ph = phantom.make_phantom(seed=2, n_repeats=4, shape_px=(32, 256, 64))
    c1 = preprocess_case(ph.volumes[:1], ph.geometry).speckle_contrast
    c4 = preprocess_case(ph.volumes, ph.geometry).speckle_contrast
    assert 0.4 < c4 / c1 < 0.6, (c1, c4)          # 1/sqrt(4) = 0.5


def test_pipeline_on_small_phantom_meets_surface_and_axial_targets():
    ph = phantom.make_phantom(seed=4, n_repeats=3, shape_px=(48, 256, 96))
    out = preprocess_case(ph.volumes, ph.geometry)
    axial, _ = _residual(out.motion.shifts_px, ph.motion_px, ph.geometry.aline_um_per_px)
    assert axial <= 1.0
    for name in ("ILM", "ISOS", "COST", "RPE"):
        err = out.surfaces_px[name] - ph.surfaces_px[name]
        assert np.sqrt(np.mean(err ** 2)) <= 2.0, name
    assert out.registration_ok
    # The cone slab is brighter where the truth has cones: en face mean of isos > svp.
    assert out.enface["isos"].mean() > out.enface["svp"].mean()


@pytest.mark.slow
def test_full_size_phantom_accuracy_over_seeds():
    axial, observable, lateral, surfaces = [], [], [], []
    for seed in range(10):
        ph = phantom.make_phantom(seed=seed, n_repeats=3)
        out = preprocess_case(ph.volumes, ph.geometry)
        ax, lat = _residual(out.motion.shifts_px, ph.motion_px, ph.geometry.aline_um_per_px)
        observable.append(_residual(out.motion.shifts_px, ph.motion_px, ph.geometry.aline_um_per_px,
                                    common_axial_degree=2)[0])
        assert np.isfinite(out.motion.residual_lateral_um_rms)
        axial.append(ax)
        lateral.append(lat)
        surfaces += [float(np.sqrt(np.mean((out.surfaces_px[k] - ph.surfaces_px[k]) ** 2)))
                     for k in ("ILM", "ISOS", "COST", "RPE")]
    assert max(lateral) <= 1.0, lateral
    assert np.median(axial) <= 1.0 and max(axial) <= 1.2, axial
    assert max(observable) <= 0.5, observable
    assert max(surfaces) <= 2.0, surfaces


@pytest.mark.slow
def test_real_aooct_series_speckle_falls_with_n(shared_data):
    tifffile = pytest.importorskip("tifffile")
    folder = shared_data / "aooct-rpe" / "full-fov" / "0201"
    if not folder.exists():
        pytest.skip(f"{folder} not found")
    curve = {}
    for path in folder.glob("average_N*.tif"):
        img = tifffile.imread(path).astype(np.float32)
        curve[int(path.stem.split("N")[-1])] = speckle_contrast(img, window_px=(9, 9))
    ns = sorted(curve)
    values = [curve[n] for n in ns]
    assert all(a > b for a, b in zip(values, values[1:])), curve


def _estimate_vs_truth(seed):
    ph = phantom.make_phantom(seed=seed, n_repeats=3)
    out = preprocess_case(ph.volumes, ph.geometry)
    axial, lateral = _residual(out.motion.shifts_px, ph.motion_px, ph.geometry.aline_um_per_px)
    return (out.motion.residual_lateral_um_rms / lateral, out.motion.residual_axial_px_rms / axial,
            out.motion.lattice_agreement)


def test_residual_estimate_tracks_truth_after_lattice_step():
    # The reported residual must describe the shifts after every correction (the QC
    # check reads it). Measured over 12 seeds (bench/results_preprocessing.md): lateral
    # estimate / truth 1.04-1.21; this default test checks two seeds within 0.7-1.6×.
    for seed in (0, 2):
        lat_ratio, _, agreement = _estimate_vs_truth(seed)
        assert agreement >= 0.5
        assert 0.7 <= lat_ratio <= 1.6, (seed, lat_ratio)


@pytest.mark.slow
def test_residual_estimate_within_stated_factor_over_seeds():
    lat, ax = [], []
    for seed in range(10):
        lat_ratio, ax_ratio, _ = _estimate_vs_truth(seed)
        lat.append(lat_ratio)
        ax.append(ax_ratio)
    # Lateral: within 0.7-1.6× on every seed. Axial: an expectation over 3 repeats of the
    # polynomial part of the mean-frame motion (one case scatters around it): median
    # within 0.7-2×, every seed within a factor 4.
    assert min(lat) >= 0.7 and max(lat) <= 1.6, lat
    assert 0.7 <= np.median(ax) <= 2.0, ax
    assert min(ax) >= 0.25 and max(ax) <= 4.0, ax


def test_two_repeats_attribute_saccades_and_flag_the_rest():
    # Seed 1 with two repeats: both repeats saccade (2-4 px); before the adjacent-track
    # attribution the mean frame kept their halves and the lateral error was 5.7 µm RMS.
    ph = phantom.make_phantom(seed=1, n_repeats=2)
    out = preprocess_case(ph.volumes, ph.geometry)
    _, lat = _residual(out.motion.shifts_px, ph.motion_px, ph.geometry.aline_um_per_px)
    assert lat <= 1.0, lat
    # Seed 6: the other repeat's two large saccades are not attributed; the result is off
    # (≈ 3 µm) and the report says the mean frame may be off, for the registration QC.
    ph = phantom.make_phantom(seed=6, n_repeats=2)
    out = preprocess_case(ph.volumes, ph.geometry)
    from aooct_core.qc import qc_flags

    assert out.motion.saccade_ambiguity_um > 3.0
    assert "unattributed_saccade" in {f.name for f in qc_flags(saccade_ambiguity_um=out.motion.saccade_ambiguity_um)}
