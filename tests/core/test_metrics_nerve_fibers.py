"""Nerve-fiber-bundle metrics on striped masks of known orientation, width and spacing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from aooct_core.metrics import nerve_fiber_metrics


def stripes(shape, *, angle_deg, width_px, period_px):
    """Bundles running at angle_deg (from +col towards +row), of given width and period."""
    rr, cc = np.indices(shape).astype(float)
    th = math.radians(angle_deg)
    across = -rr * math.cos(th) + cc * math.sin(th)
    return np.mod(across, period_px) < width_px


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 75.0, 120.0, 160.0])
def test_orientation_width_and_density_of_parallel_bundles(angle_deg):
    mask = stripes((256, 256), angle_deg=angle_deg, width_px=8, period_px=25)
    m = nerve_fiber_metrics(mask, um_per_px=1.0, n_boot=50)
    diff = (m["orientation_deg"].value - angle_deg + 90) % 180 - 90
    assert abs(diff) < 1.0
    assert m["orientation_dispersion_deg"].value < 5.0
    assert m["width_um_mean"].value == pytest.approx(8.0, abs=0.6)
    assert m["bundle_density_per_mm"].value == pytest.approx(1000 / 25, rel=0.06)
    assert m["bundle_count"].ci_low <= m["bundle_count"].value <= m["bundle_count"].ci_high


def test_given_orientation_map_is_used_and_agrees():
    mask = stripes((200, 200), angle_deg=40, width_px=6, period_px=20)
    given = nerve_fiber_metrics(mask, um_per_px=1.0, orientation_rad=math.radians(40), n_boot=20)
    estimated = nerve_fiber_metrics(mask, um_per_px=1.0, n_boot=20)
    assert given["orientation_deg"].value == pytest.approx(40.0, abs=1e-6)
    assert "given orientation map" in given["orientation_deg"].method
    assert estimated["width_um_mean"].value == pytest.approx(given["width_um_mean"].value, abs=0.3)


def test_crossing_bundles_have_larger_dispersion():
    a = stripes((200, 200), angle_deg=0, width_px=5, period_px=30)
    b = stripes((200, 200), angle_deg=60, width_px=5, period_px=30)
    straight = nerve_fiber_metrics(a, um_per_px=1.0, n_boot=20)
    crossed = nerve_fiber_metrics(a | b, um_per_px=1.0, n_boot=20)
    assert crossed["orientation_dispersion_deg"].value > straight["orientation_dispersion_deg"].value + 10


def test_physical_units_with_anisotropic_pixels():
    mask = np.zeros((100, 200), bool)
    for r in range(4, 100, 12):
        mask[r : r + 4, :] = True  # 4 px × 2 µm = 8 µm wide, horizontal
    m = nerve_fiber_metrics(mask, um_per_px=(2.0, 1.0), n_boot=20)
    assert m["width_um_mean"].value == pytest.approx(8.0, abs=0.5)
    assert m["orientation_deg"].value % 180 == pytest.approx(0.0, abs=1.0)


def test_empty_mask_and_bad_input():
    m = nerve_fiber_metrics(np.zeros((50, 50), bool), um_per_px=1.0)
    assert m["bundle_count"].value == 0 and math.isnan(m["width_um_mean"].value)
    with pytest.raises(ValueError, match="threshold"):
        nerve_fiber_metrics(np.full((50, 50), 0.3), um_per_px=1.0)
    with pytest.raises(ValueError, match="n_transects"):
        nerve_fiber_metrics(np.ones((50, 50), bool), um_per_px=1.0, n_transects=1)
