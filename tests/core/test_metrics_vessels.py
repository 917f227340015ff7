"""Capillary metrics against drawn masks with known geometry."""
from __future__ import annotations

import math

import numpy as np
import pytest

from aooct_core.metrics import capillary_metrics

KEYS = {
    "area_density", "skeleton_length_density_mm_per_mm2", "mean_diameter_um", "tortuosity",
    "intercapillary_distance_um",
}


def tube(shape, p0, p1, diameter_px):
    """Pixels whose centre lies within diameter/2 of the segment p0–p1 (round caps)."""
    r, c = np.indices(shape).astype(float)
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    v = p1 - p0
    t = np.clip(((r - p0[0]) * v[0] + (c - p0[1]) * v[1]) / (v @ v), 0, 1)
    return np.hypot(r - p0[0] - t * v[0], c - p0[1] - t * v[1]) <= diameter_px / 2


@pytest.mark.parametrize("diameter_um", [3.0, 4.5, 6.2, 9.7])
def test_tube_diameter_within_half_micron_at_1um_per_px(diameter_um):
    rng = np.random.default_rng(int(diameter_um * 10))
    for angle in rng.uniform(0, math.pi, 6):
        centre = np.array([100.0, 100.0]) + rng.uniform(-0.5, 0.5, 2)
        u = np.array([math.sin(angle), math.cos(angle)])
        mask = tube((200, 200), centre - 70 * u, centre + 70 * u, diameter_um)
        m = capillary_metrics(mask, um_per_px=1.0, n_boot=20)
        assert abs(m["mean_diameter_um"].value - diameter_um) <= 0.5, angle


def test_axis_aligned_band_and_length_density_are_exact():
    mask = np.zeros((100, 100), bool)
    mask[40:46, :] = True  # 6 px = 12 µm wide at 2 µm/px, 200 µm long
    m = capillary_metrics(mask, um_per_px=2.0, n_boot=20)
    assert KEYS <= set(m)
    assert m["mean_diameter_um"].value == pytest.approx(12.0, abs=1e-6)
    assert m["area_density"].value == pytest.approx(0.06)
    # ~200 µm of centreline (skeletonize trims ≤ a radius at each cut end) in 0.04 mm².
    assert m["skeleton_length_density_mm_per_mm2"].value == pytest.approx(0.2 / 0.04, rel=0.08)
    assert m["tortuosity"].value == pytest.approx(1.0, abs=0.01)
    assert m["fragment_count"].value == 1
    assert "faz_area_mm2" not in m


def test_tortuosity_of_a_sine_wave():
    amp, period = 10.0, 80.0
    x = np.linspace(10, 250, 2000)
    y = 60 + amp * np.sin(2 * math.pi * x / period)
    rr, cc = np.indices((120, 260))
    # Vertical distance is close to the normal distance for this gentle wave.
    yy = 60 + amp * np.sin(2 * math.pi * cc / period)
    mask = (np.abs(rr - yy) <= 2.0) & (cc >= 10) & (cc <= 250)
    arc = np.sum(np.hypot(np.diff(x), np.diff(y)))
    chord = math.hypot(x[-1] - x[0], y[-1] - y[0])
    m = capillary_metrics(mask, um_per_px=1.0, n_boot=20)
    assert m["tortuosity"].value == pytest.approx(arc / chord, rel=0.04)


def test_intercapillary_distance_of_parallel_vessels():
    mask = np.zeros((200, 200), bool)
    for r in range(10, 200, 25):  # 5 px vessels, 20 px gaps
        mask[r : r + 5, :] = True
    m = capillary_metrics(mask, um_per_px=1.0, n_boot=20)
    assert m["intercapillary_distance_um"].value == pytest.approx(20.0, abs=1.0)
    lo, hi = m["area_density"].ci_low, m["area_density"].ci_high
    assert lo <= m["area_density"].value <= hi


def mesh(shape, step, width):
    mask = np.zeros(shape, bool)
    for k in range(3, shape[0], step):
        mask[k : k + width, :] = True
    for k in range(3, shape[1], step):
        mask[:, k : k + width] = True
    return mask


def test_faz_found_only_when_fovea_is_in_the_field():
    mask = mesh((300, 300), 30, 4)
    assert "faz_area_mm2" not in capillary_metrics(mask, um_per_px=1.0, n_boot=20)
    rr, cc = np.indices(mask.shape)
    radius = np.hypot(rr - 150, cc - 150)
    hole = radius < 100
    mask[hole] = False
    mask[(radius >= 100) & (radius < 104)] = True  # the capillary ring bounding the FAZ
    m = capillary_metrics(mask, um_per_px=1.0, n_boot=20)
    truth = hole.sum() * 1e-6
    faz = m["faz_area_mm2"]
    assert faz.value == pytest.approx(truth, rel=1e-9)
    assert faz.ci_low < faz.value < faz.ci_high


def test_input_untouched_dtypes_and_reproducible():
    mask = mesh((128, 128), 24, 3).astype(np.uint8)
    before = mask.copy()
    a = capillary_metrics(mask, um_per_px=(1.5, 1.0), seed=3)
    b = capillary_metrics(mask.astype(np.float32), um_per_px=(1.5, 1.0), seed=3)
    assert a == b
    np.testing.assert_array_equal(mask, before)
    assert "seed 3" in a["area_density"].method


def test_empty_mask_reports_not_estimable_instead_of_a_number():
    m = capillary_metrics(np.zeros((64, 64), bool), um_per_px=1.0, n_boot=20)
    assert m["area_density"].value == 0
    assert math.isnan(m["mean_diameter_um"].value)
    assert "not estimable" in m["mean_diameter_um"].method


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.zeros((4, 4, 4), bool), "2-D"),
        (np.full((16, 16), 0.7), "threshold"),
    ],
)
def test_bad_masks_raise(mask, match):
    with pytest.raises(ValueError, match=match):
        capillary_metrics(mask, um_per_px=1.0)


def test_diameter_distribution_separates_two_calibres():
    from aooct_core.metrics.vessels import capillary_diameters_um

    mask = tube((200, 200), (50.3, 20.0), (60.1, 180.0), 4.0) | tube((200, 200), (140.0, 20.0), (150.7, 180.0), 9.0)
    d = capillary_diameters_um(mask, um_per_px=1.0)
    assert d.dtype == np.float32
    small, large = d[d < 6.5], d[d >= 6.5]
    assert abs(np.median(small) - 4.0) < 0.5 and abs(np.median(large) - 9.0) < 0.5
    assert 0.3 < len(small) / len(d) < 0.7
    m = capillary_metrics(mask, um_per_px=1.0, n_boot=20)
    assert m["diameter_um_sd"].value == pytest.approx(2.5, abs=0.4)
