"""The missing-mosaic QC check (issue 16): a cone slab without cones fails, a good one passes."""
from __future__ import annotations

import numpy as np
import pytest

from aooct_core.metrics.mosaic_spectrum import cone_mosaic_strength, mosaic_ring_strength
from aooct_core.phantom import make_phantom
from aooct_core.preprocessing import preprocess_case, slab_projection
from aooct_core.qc import qc_checks


@pytest.fixture(scope="module")
def case():
    ph = make_phantom(seed=4, n_repeats=3, shape_px=(64, 200, 96), location_deg=(3.0, 0.0),
                      scan_field_deg=(0.4, 0.6))
    return ph, preprocess_case(ph.volumes, ph.geometry, reference=0)


def test_good_cone_slabs_pass_and_slabs_off_the_photoreceptors_fail(case):
    ph, pre = case
    ecc, um = ph.acquisition.eccentricity_deg, ph.geometry.enface_um_per_px
    good = cone_mosaic_strength((pre.enface["isos"], pre.enface["cost"]), eccentricity_deg=ecc, um_per_px=um)
    (check,) = qc_checks(mosaic_ring_strength=good)
    assert check.passed, check.message
    half = 3.0 / ph.geometry.depth_um_per_px
    for surface, offset_um in (("ELM", 0.0), ("ELM", -20.0), ("BM", 15.0)):
        centre = ph.surfaces_px[surface] + np.float32(offset_um / ph.geometry.depth_um_per_px)
        wrong = slab_projection(pre.volume, centre - half, centre + half)
        strength = cone_mosaic_strength((wrong,), eccentricity_deg=ecc, um_per_px=um)
        (check,) = qc_checks(mosaic_ring_strength=strength)
        assert check.severity == "fail", (surface, offset_um, strength)
        assert "layers" in check.message and "registration" in check.message and "focus" in check.message


def test_outside_its_range_the_check_says_it_cannot_judge():
    img = np.ones((64, 64))
    assert cone_mosaic_strength((img,), eccentricity_deg=None, um_per_px=1.0) is None
    assert cone_mosaic_strength((img,), eccentricity_deg=1.0, um_per_px=2.0) is None   # < 3 px
    with pytest.raises(ValueError, match="at least 16"):
        mosaic_ring_strength(np.ones((8, 8)), expected_spacing_px=3.0)
