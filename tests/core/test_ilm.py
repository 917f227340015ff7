"""The ILM only where it is in view (issue 16): outer-retina crops have no vitreous to measure on."""
from __future__ import annotations

import numpy as np
import pytest

from aooct_core.preprocessing.ilm import MIN_RISE_DB, find_vitreous


def _profile(n=200, vitreous_px=40, floor_db=-10.0, retina_db=3.0, onl=(120, 150), onl_db=-4.0):
    z = np.arange(n)
    p = np.where(z < vitreous_px, floor_db, retina_db).astype(float)
    p[onl[0]:onl[1]] = onl_db
    return p


def test_vitreous_in_view_gives_the_mid_level_crossing():
    v = find_vitreous(_profile(), 160.0, depth_um_per_px=2.0)
    assert v.in_view and v.reason == "" and v.crossing_px == 40.0
    assert v.level_db == pytest.approx(-10 + 0.5 * 13)


@pytest.mark.parametrize("case, words", [
    ("starts in the retina", "dB darker"),
    ("starts in the ONL", "above the depth window"),
    ("dark retina on top", "brighter than the darkest retinal layer"),
    ("retina at the very top", "within 3 px"),
])
def test_no_vitreous_says_why(case, words):
    if case == "starts in the retina":
        p, isos = _profile()[60:], 100.0
    elif case == "starts in the ONL":
        p, isos = _profile()[125:], 30.0          # IS/OS only 30 px (60 µm) below the top
    elif case == "dark retina on top":
        p, isos = _profile(floor_db=-3.0, onl_db=-5.0), 160.0
    else:
        p, isos = _profile(vitreous_px=2), 160.0
    v = find_vitreous(p, isos, depth_um_per_px=2.0)
    assert not v.in_view and words in v.reason


def test_a_small_rise_is_not_a_vitreous():
    p = _profile(floor_db=0.0, retina_db=MIN_RISE_DB - 0.5, onl_db=0.5)
    assert not find_vitreous(p, 160.0, depth_um_per_px=2.0).in_view


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="1-D"):
        find_vitreous(np.zeros((3, 3)), 1.0, depth_um_per_px=2.0)
    with pytest.raises(ValueError, match="depth_um_per_px"):
        find_vitreous(np.zeros(10), 1.0, depth_um_per_px=0)


@pytest.mark.parametrize("seed", [0, 69])
def test_family_members_with_and_without_the_ilm(seed):
    # Family seed 0: ILM in view (true median 51.5 px); it was found at 6 px by the former
    # fixed -10 dB threshold, which the vitreous noise of this 21 dB case crossed. Seed 69:
    # a 204 µm window that starts in the ONL (true ILM -75 px); preprocess_case raised
    # "no vitreous above the ILM" in snr_db before.
    from aooct_core.phantom import make_phantom
    from aooct_core.phantom.family import family_member
    from aooct_core.preprocessing import preprocess_case

    ph = make_phantom(**family_member(seed))
    out = preprocess_case(ph.volumes, ph.geometry, reference=0)
    ilm, true = np.asarray(out.surfaces_px["ILM"]), ph.surfaces_px["ILM"]
    inner = ("nfl", "svp", "dvp", "octa_svp", "octa_dvp")
    if seed == 0:
        assert np.sqrt(np.mean((ilm - true) ** 2)) < 2.0
        assert not out.snr_is_lower_bound and np.isfinite(out.snr_db) and np.isfinite(out.speckle_contrast)
        assert all(np.isfinite(out.enface[k]).all() for k in ("nfl", "svp", "dvp"))
    else:
        assert float(true.max()) < 0 and np.isnan(ilm).all()
        # The SNR is bounded from below by the darkest retinal rows (truth: 16.5 dB).
        assert out.snr_is_lower_bound and np.isnan(out.speckle_contrast)
        assert 3.0 < out.snr_db < 16.5
        assert all(np.isnan(out.enface[k]).all() for k in inner)
    assert np.isfinite(out.enface["isos"]).all() and np.isfinite(out.enface["rpe"]).all()


def test_recipe_does_not_analyse_an_absent_slab():
    from ml.recipe import analyze_structure, measure_structure

    nan = np.full((32, 32), np.nan, np.float32)
    res = analyze_structure("capillaries", nan, um_per_px=1.0)
    assert "not in the volume" in res.not_analysed and not res.mask.any()
    assert np.isnan(res.uncertainty["uncertainty_fraction"])
    m = measure_structure("capillaries", res.arrays, image_shape=(32, 32), um_per_px=1.0,
                          not_analysed=res.not_analysed)
    assert "area_density" in m and all(np.isnan(v.value) for v in m.values())
    assert all(v.method.startswith("not measured: ") for v in m.values())
