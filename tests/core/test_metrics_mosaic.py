"""Mosaic metrics against analytic truth: hexagonal lattice, Poisson process, CI coverage."""
from __future__ import annotations

import math

import numpy as np
import pytest

from aooct_core.metrics import MetricValue, mosaic_metrics
from aooct_core.metrics.bootstrap import expansion_factor
from aooct_core.phantom.cones import sample_point_process

KEYS = {
    "count", "density_cells_per_mm2", "nnd_um_mean", "nnd_um_sd", "icd_um_mean",
    "voronoi_area_um2_mean", "six_sided_fraction", "regularity_index",
}


def hex_lattice_um(field_um, spacing_um, *, rng, disorder=0.0):
    """Triangular lattice with random rotation/offset, cropped to [0, field) (µm)."""
    h, w = field_um
    n = int(math.hypot(h, w) / spacing_um) + 4
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    a = (i + 0.5 * j) * spacing_um
    b = j * spacing_um * math.sqrt(3) / 2
    th = rng.uniform(0, math.pi / 3)
    off = rng.uniform(0, spacing_um, 2)
    r = h / 2 + math.cos(th) * (a + off[0]) - math.sin(th) * (b + off[1])
    c = w / 2 + math.sin(th) * (a + off[0]) + math.cos(th) * (b + off[1])
    p = np.c_[r.ravel(), c.ravel()]
    p = p + rng.normal(0, disorder * spacing_um, p.shape)
    return p[(p[:, 0] >= 0) & (p[:, 0] < h) & (p[:, 1] >= 0) & (p[:, 1] < w)]


def um_to_px(points_um, um_per_px):
    return points_um / np.asarray(um_per_px) - 0.5


def lattice_density(spacing_um):
    return 2.0 / (math.sqrt(3) * spacing_um**2) * 1e6


def test_hexagonal_lattice_is_measured_exactly():
    rng = np.random.default_rng(3)
    spacing = 8.0
    pts = hex_lattice_um((400.0, 400.0), spacing, rng=rng)
    m = mosaic_metrics(um_to_px(pts, 1.0), image_shape=(400, 400), um_per_px=1.0)
    assert KEYS <= set(m)
    assert all(isinstance(v, MetricValue) for v in m.values())
    truth = lattice_density(spacing)
    assert m["density_cells_per_mm2"].value == pytest.approx(truth, rel=0.01)
    assert m["density_cells_per_mm2"].ci_low <= truth <= m["density_cells_per_mm2"].ci_high
    assert m["nnd_um_mean"].value == pytest.approx(spacing, abs=1e-9)
    assert m["nnd_um_sd"].value == 0.0
    assert m["icd_um_mean"].value == pytest.approx(spacing, abs=1e-9)
    assert m["voronoi_area_um2_mean"].value == pytest.approx(1e6 / truth, rel=1e-9)
    assert m["six_sided_fraction"].value == 1.0
    assert m["regularity_index"].value == math.inf
    assert m["count"].value == len(pts) and m["count"].ci_low is None


def test_anisotropic_pixels_give_same_physical_answer():
    rng = np.random.default_rng(4)
    pts = hex_lattice_um((300.0, 300.0), 7.0, rng=rng, disorder=0.1)
    a = mosaic_metrics(um_to_px(pts, (1.0, 1.0)), image_shape=(300, 300), um_per_px=1.0)
    b = mosaic_metrics(um_to_px(pts, (2.0, 1.5)), image_shape=(150, 200), um_per_px=(2.0, 1.5))
    for key in ("density_cells_per_mm2", "nnd_um_mean", "voronoi_area_um2_mean", "six_sided_fraction"):
        assert b[key].value == pytest.approx(a[key].value, rel=1e-9)


def test_poisson_nnd_matches_theory_with_border_correction():
    lam_per_um2 = 0.01
    means = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        n = rng.poisson(lam_per_um2 * 300 * 300)
        pts = rng.uniform(0, 300, (n, 2))
        m = mosaic_metrics(um_to_px(pts, 1.0), image_shape=(300, 300), um_per_px=1.0, n_boot=50)
        means.append(m["nnd_um_mean"].value)
    # E[NND] = 1 / (2 sqrt(λ)) = 5 µm; 5 fields of ~900 cells → SE ≈ 0.04 µm.
    assert np.mean(means) == pytest.approx(1 / (2 * math.sqrt(lam_per_um2)), rel=0.03)


def _phantom_sampler():
    try:
        from aooct_core.phantom.cones import sample_cone_mosaic
    except ImportError:
        return None
    return sample_cone_mosaic


@pytest.mark.parametrize("disorder", [0.1, 0.25])
def test_density_ci_covers_truth_in_95_percent_of_seeds(disorder):
    """Phantom geometry: 2 deg, 128x128 px at 2.263 µm/px, Curcio-like density."""
    sampler = _phantom_sampler()
    density, um = 30100.0, 2.263
    shape = (128, 128)
    hits = 0
    n_seeds = 60
    for seed in range(n_seeds):
        rng = np.random.default_rng(10_000 + seed)
        field = (shape[0] * um, shape[1] * um)
        if sampler is not None:
            pts = sampler(field, density_cells_per_mm2=density, rng=rng, disorder=disorder)
        else:
            spacing = 1000 * math.sqrt(2 / (math.sqrt(3) * density))
            pts = hex_lattice_um(field, spacing, rng=rng, disorder=disorder)
        m = mosaic_metrics(um_to_px(pts, um), image_shape=shape, um_per_px=um, seed=seed)
        d = m["density_cells_per_mm2"]
        hits += d.ci_low <= density <= d.ci_high
    assert hits / n_seeds >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize(("field_um", "clustered"), [(100.0, False), (300.0, False), (300.0, True)])
def test_density_ci_coverage_poisson_and_clustered(field_um, clustered):
    """Without regularity to help (Poisson) or with clumping (Thomas), coverage stays nominal."""
    lam = 0.03
    hits, n_seeds = 0, 300
    for seed in range(n_seeds):
        pts = sample_point_process(field_um, density_cells_per_mm2=lam * 1e6,
                                   rng=np.random.default_rng(seed), clustered=clustered)
        n = int(field_um)
        d = mosaic_metrics(pts - 0.5, image_shape=(n, n), um_per_px=1.0, seed=seed)["density_cells_per_mm2"]
        hits += d.ci_low <= lam * 1e6 <= d.ci_high
    assert hits / n_seeds >= 0.92


def test_same_seed_same_interval_and_inputs_untouched():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 99, (400, 2)).astype(np.float32)
    before = pts.copy()
    a = mosaic_metrics(pts, image_shape=(100, 100), um_per_px=1.5, seed=7)
    b = mosaic_metrics(pts, image_shape=(100, 100), um_per_px=1.5, seed=7)
    c = mosaic_metrics(pts, image_shape=(100, 100), um_per_px=1.5, seed=8)
    assert a == b
    assert a["nnd_um_mean"].ci_low != c["nnd_um_mean"].ci_low
    np.testing.assert_array_equal(pts, before)
    assert "seed 7" in a["density_cells_per_mm2"].method
    assert "block bootstrap" in a["density_cells_per_mm2"].method


def test_integer_points_and_tiny_mosaics_do_not_crash():
    m = mosaic_metrics(np.array([[10, 10], [20, 30]]), image_shape=(50, 50), um_per_px=1.0)
    assert m["count"].value == 2
    assert m["density_cells_per_mm2"].value == pytest.approx(2 / 2500 * 1e6)
    assert math.isnan(m["six_sided_fraction"].value) and m["six_sided_fraction"].ci_low is None
    empty = mosaic_metrics(np.zeros((0, 2)), image_shape=(50, 50), um_per_px=1.0)
    assert empty["count"].value == 0 and empty["density_cells_per_mm2"].value == 0


@pytest.mark.parametrize(
    ("points", "shape", "um", "match"),
    [
        (np.zeros((5, 3)), (10, 10), 1.0, "shape"),
        (np.array([[0.0, 50.0]]), (10, 10), 1.0, "outside"),
        (np.array([[1.0, 1.0], [1.0, 1.0], [2, 2]]), (10, 10), 1.0, "duplicate"),
        (np.array([[1.0, np.nan]]), (10, 10), 1.0, "NaN"),
        (np.array([[1.0, 1.0]]), (10, 10), -1.0, "um_per_px"),
    ],
)
def test_bad_input_raises_clear_error(points, shape, um, match):
    with pytest.raises(ValueError, match=match):
        mosaic_metrics(points, image_shape=shape, um_per_px=um)


def test_expansion_factor_small_and_large_block_counts():
    assert expansion_factor(4) == pytest.approx(1.87, abs=0.01)
    assert expansion_factor(256) == pytest.approx(1.006, abs=0.002)


@pytest.mark.slow
def test_make_phantom_truth_end_to_end():
    """The phantom's truth positions (px, motion-free frame) measured in its own geometry."""
    phantom = pytest.importorskip("aooct_core.phantom")
    for seed in range(3):
        ph = phantom.make_phantom(seed=seed, n_repeats=1)
        cones = ph.truth["cones"]
        shape = (ph.volumes.shape[1], ph.volumes.shape[3])
        m = mosaic_metrics(np.asarray(cones["positions_rc"]), image_shape=shape,
                           um_per_px=ph.geometry.enface_um_per_px, seed=seed)
        d = m["density_cells_per_mm2"]
        assert d.ci_low <= cones["true_density_cells_per_mm2"] <= d.ci_high
        # Jitter of 0.1 spacing shortens the nearest of 6 neighbours by ~1.27 σ√2 ≈ 0.18 spacing.
        assert 0.75 * cones["spacing_um"] < m["nnd_um_mean"].value < 0.95 * cones["spacing_um"]
        assert m["icd_um_mean"].value == pytest.approx(cones["spacing_um"], rel=0.05)


@pytest.mark.parametrize("n_cells", [4, 5, 6, 8])
def test_few_cells_with_no_bound_voronoi_cell_give_nan_shape_metrics_not_a_crash(n_cells):
    # Regression: with a handful of cells none has a Voronoi cell inside the field, which
    # used to raise IndexError while closing the (empty) polygon list.
    points = np.random.default_rng(0).uniform(0, 99, (n_cells, 2))
    m = mosaic_metrics(points, image_shape=(100, 100), um_per_px=1.0)
    assert m["count"].value == n_cells
    assert np.isfinite(m["density_cells_per_mm2"].value)
