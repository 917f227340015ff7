"""Local density map and density recovery profile."""
from __future__ import annotations

import numpy as np
import pytest

from aooct_core.metrics.spatial import density_recovery_profile, local_density_map
from test_metrics_mosaic import hex_lattice_um, lattice_density, um_to_px


def test_density_map_of_uniform_lattice_is_flat_including_border_windows():
    pts = hex_lattice_um((300.0, 300.0), 8.0, rng=np.random.default_rng(0))
    dm = local_density_map(um_to_px(pts, 1.0), image_shape=(300, 300), um_per_px=1.0, window_um=60, step_um=20)
    assert dm.density_cells_per_mm2.shape == (15, 15)
    assert dm.density_cells_per_mm2.dtype == np.float32
    truth = lattice_density(8.0)
    # Clipped border windows are divided by their clipped area, so they match the interior.
    assert np.median(dm.density_cells_per_mm2) == pytest.approx(truth, rel=0.03)
    assert np.median(dm.density_cells_per_mm2[0]) == pytest.approx(truth, rel=0.08)


def test_density_map_follows_a_gradient():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 200, (20000, 2))
    keep = rng.uniform(size=len(pts)) < pts[:, 1] / 200  # density rises with col
    dm = local_density_map(pts[keep] - 0.5, image_shape=(200, 200), um_per_px=1.0, window_um=40, step_um=40)
    profile = dm.density_cells_per_mm2.mean(axis=0)
    assert np.all(np.diff(profile) > 0)


def test_drp_of_lattice_has_dead_space_and_poisson_is_flat():
    pts = hex_lattice_um((300.0, 300.0), 8.0, rng=np.random.default_rng(2), disorder=0.05)
    drp = density_recovery_profile(um_to_px(pts, 1.0), image_shape=(300, 300), um_per_px=1.0)
    assert drp.density_cells_per_mm2[:3].max() == 0  # nobody within 0.6 spacing
    assert drp.packing_factor > 0.6
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 300, (rng.poisson(0.02 * 300 * 300), 2))
    drp = density_recovery_profile(p - 0.5, image_shape=(300, 300), um_per_px=1.0)
    assert drp.density_cells_per_mm2.mean() == pytest.approx(drp.mean_density_cells_per_mm2, rel=0.1)
    assert drp.packing_factor < 0.1


def test_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        density_recovery_profile(np.zeros((1, 2)), image_shape=(10, 10), um_per_px=1.0)
    with pytest.raises(ValueError, match="positive"):
        local_density_map(np.zeros((1, 2)), image_shape=(10, 10), um_per_px=1.0, window_um=0)
