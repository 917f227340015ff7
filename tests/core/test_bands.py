"""Outer-band identification follows the anatomy, not brightness (issue 16)."""
from __future__ import annotations

import numpy as np
import pytest

from aooct_core.phantom import make_phantom
from aooct_core.phantom.retina import Anatomy
from aooct_core.preprocessing.bands import identify_bands
from aooct_core.preprocessing.layers import segment_layers

CASES = {
    # the project's own phantom: the RPE is the brightest band
    "nominal": dict(anatomy=None, depth_um_per_px=2.0),
    # a real research AO-OCT volume's ordering: COST > RPE > IS/OS (shared/notes)
    "cost_brightest": dict(depth_um_per_px=1.5, anatomy=Anatomy(
        spacing_um={"COST": 24.0, "RPE": 13.0},
        reflectivity_gain={"RPE": 0.3, "BM": 0.2, "COST": 3.0, "CONES_COST": 2.0, "ISOS": 0.6,
                           "CONES_ISOS": 0.6})),
    # the independent phantom of the issue: focus at IS/OS, visible ELM, OS 29 µm, COST 9 µm
    # above the RPE, at 1.5 µm/px
    "isos_focus_bright_elm": dict(depth_um_per_px=1.5, anatomy=Anatomy(
        spacing_um={"ISOS": 23.0, "COST": 29.0, "RPE": 9.0, "BM": 12.6},
        reflectivity_gain={"ELM": 2.5, "RPE": 0.35, "BM": 0.3, "ISOS": 2.0}, focus="ISOS",
        depth_of_focus_um=50.0, tilt_deg=(3.0, -4.0))),
    # coarse sampling, COST and RPE unresolved
    "coarse_merged": dict(depth_um_per_px=3.5, anatomy=Anatomy(spacing_um={"RPE": 4.0})),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bands_are_labelled_by_order_and_spacing(name):
    opts = CASES[name]
    n_depth = int(round(480 / opts["depth_um_per_px"]))
    ph = make_phantom(seed=7, n_repeats=3, shape_px=(32, n_depth, 64), motion_scale=0.0,
                      depth_um_per_px=opts["depth_um_per_px"], anatomy=opts["anatomy"])
    report: dict = {}
    found = segment_layers(ph.volumes.mean(0), depth_um_per_px=opts["depth_um_per_px"], report=report)
    for band in ("ISOS", "COST", "RPE"):
        err = float(np.median(np.abs(np.asarray(found[band]) - ph.surfaces_px[band])))
        assert err < 1.5, (name, band, err, report["band_model"].depth_px)
    model = report["band_model"]
    assert model.confidence > 0 and set(model.strength_sd) >= {"ISOS", "COST", "RPE"}


def test_a_volume_without_an_outer_retina_is_refused_with_the_reason():
    rng = np.random.default_rng(0)
    noise = rng.exponential(1.0, (8, 120, 64)).astype(np.float32)   # speckle, no tissue
    with pytest.raises(ValueError, match="outer retina"):
        segment_layers(noise, depth_um_per_px=2.0)
    db = np.zeros((4, 60, 8), np.float32)
    with pytest.raises(ValueError, match="outer retina"):
        identify_bands(db, db, depth_um_per_px=2.0)


def test_band_fit_undoes_the_pull_of_a_close_bright_neighbour():
    # A dim thin COST 10 µm above a bright thick RPE at 3.5 µm/px: the COST maximum of the
    # profile is pulled towards the RPE; the fitted band model puts it back.
    from aooct_core.preprocessing.band_fit import fit_outer_bands

    um = 3.5
    x = np.arange(-6.0, 20.0, 0.25)
    g = lambda mu, s: np.exp(-0.5 * ((x - mu) / s) ** 2)  # noqa: E731
    truth = {"ISOS": 0.0, "COST": 25.0 / um, "RPE": 35.0 / um}
    thin, thick = 1.3 / um, 4.5 / um
    prof = 0.02 + 0.6 * g(truth["ISOS"], thin) + 0.3 * g(truth["COST"], thin) + 1.0 * g(truth["RPE"], thick) \
        + 0.3 * g(truth["RPE"] + 9.0 / um, thin)
    near = np.abs(x - truth["COST"]) < 1.5
    peak = x[near][np.argmax(prof[near])]
    biased = {**truth, "COST": float(peak)}
    fit = fit_outer_bands(x, prof, np.ones_like(x), biased, depth_um_per_px=um)
    for band in ("ISOS", "COST", "RPE"):
        assert abs(fit[band] - truth[band]) < 0.2, (band, fit[band], truth[band])
