"""Normative cone density: published points, z-scores, percentiles, plot."""
from __future__ import annotations

import math

import pytest

from aooct_core.metrics import cone_density_percentile, normative_cone_density, plot_cone_density_norms
from aooct_core.metrics.norms import CURCIO_1990_MEAN_DENSITY, has_norm, normative_source


def test_legras_points_are_reproduced_exactly():
    assert normative_cone_density(2.0) == (28884.0, 3692.0)
    mean, sd = normative_cone_density(6.0)
    assert mean == pytest.approx(15843.0) and sd == pytest.approx(1598.0)


def test_interpolation_is_monotone_and_between_the_points():
    values = [normative_cone_density(e)[0] for e in (2.0, 3.0, 4.0, 5.0, 6.0)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_curcio_outside_legras_range_and_continuity_at_2_deg():
    assert "Curcio" in normative_source(1.0)
    mean_below, _ = normative_cone_density(1.999)
    # Histology and AO agree to within ~5 % at 2° (30,100 vs 28,884 cells/mm²).
    assert mean_below == pytest.approx(28884.0, rel=0.06)
    assert normative_cone_density(0.0)[0] == pytest.approx(197000.0)
    assert not has_norm(60.0)


def test_the_auto_norm_has_no_step_at_either_end_of_the_legras_range():
    # Curcio's 6° value is 24 % below Legras's: without the scale the expected spacing
    # jumped by 12 % between 6.00° and 6.01° (found by bench/accuracy/independent_aooct.py).
    for end in (2.0, 6.0):
        below, _ = normative_cone_density(end - 1e-3)
        above, _ = normative_cone_density(end + 1e-3)
        assert above == pytest.approx(below, rel=0.002)
    assert "scaled to meet Legras" in normative_source(7.0)
    # far from the AO range the norm is Curcio's histology again
    assert normative_cone_density(10.5)[0] == pytest.approx(normative_cone_density(10.5, source="curcio1990")[0])


def test_percentile_and_z():
    p, z = cone_density_percentile(28884.0 - 3692.0, 2.0)
    assert z == pytest.approx(-1.0) and p == pytest.approx(15.87, abs=0.01)
    p, z = cone_density_percentile(28884.0, 2.0)
    assert p == pytest.approx(50.0)


def test_bad_input():
    with pytest.raises(ValueError, match="eccentricity"):
        normative_cone_density(-1.0)
    with pytest.raises(ValueError, match="beyond"):
        normative_cone_density(60.0)
    with pytest.raises(ValueError, match="Legras 2018 norm covers"):
        normative_cone_density(8.0, source="legras2018")
    with pytest.raises(ValueError, match="density"):
        cone_density_percentile(math.nan, 2.0)


def test_plot_returns_a_figure_with_the_case_point(tmp_path):
    from matplotlib.figure import Figure

    fig = plot_cone_density_norms(25000.0, 3.0, ci=(24000.0, 26000.0))
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "norms.png")
    assert (tmp_path / "norms.png").stat().st_size > 1000


def test_curcio_table_matches_the_phantom_ground_truth():
    cones = pytest.importorskip("aooct_core.phantom.cones")
    assert tuple(cones.CURCIO_1990_MEAN_DENSITY) == CURCIO_1990_MEAN_DENSITY
