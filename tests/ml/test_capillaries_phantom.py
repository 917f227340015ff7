"""Capillary segmenter on phantom AO-OCT slabs; scale handling of ``segment_vessels``."""
import numpy as np
import pytest

from ml import WEIGHTS_DIR
from ml.data import capillary_truth_mask, phantom_capillary_samples
from ml.evaluate import pixel_dice
from ml.inference import _vessel_zoom, segment_vessels

# Measured with the committed weights on this small phantom (seed 2024, 2.26 µm/px): Dice 0.78
# (the previous ROSSA-only weights: 0.30; see bench/results_ml.md). 0.6 leaves a margin for
# platform differences while still failing a model that misses the phantom's capillaries.
_MIN_DICE = 0.6


@pytest.fixture(scope="module")
def small_slab():
    pytest.importorskip("aooct_core.phantom")
    return phantom_capillary_samples([2024], slab="svp", vary=False, shape_px=(96, 256, 96),
                                     n_repeats=2, scan_field_deg=(0.75, 0.75))[0]


def test_phantom_slab_capillaries_overlap_truth(small_slab):
    before = small_slab.image.copy()
    seg = segment_vessels(small_slab.image, um_per_px=small_slab.um_per_px, uncertainty=None,
                          weights=WEIGHTS_DIR / "capillaries.pt")
    np.testing.assert_array_equal(small_slab.image, before)
    assert seg.mask.shape == small_slab.image.shape
    assert 0.02 < small_slab.mask.mean() < 0.4  # the truth mask itself is sane
    assert pixel_dice(seg.mask, small_slab.mask) > _MIN_DICE


def test_truth_mask_width_follows_diameter():
    vessels = [{"plexus": "SVP", "centerline_rc": [[10.0, c] for c in np.arange(0, 40, 0.4)],
                "depth_px": 0.0, "diameter_um": 6.0},
               {"plexus": "DVP", "centerline_rc": [[30.0, 5.0], [30.0, 35.0]], "depth_px": 0.0,
                "diameter_um": 6.0}]
    mask = capillary_truth_mask(vessels, (40, 40), (1.0, 1.0), plexus="SVP")
    assert mask[:, 20].sum() == 7  # |row - 10| <= 3 px
    assert not mask[30].any()  # other plexus ignored


def test_vessel_zoom_only_outside_trained_ranges():
    meta = {"train_um_per_px_ranges": [[1.1, 3.4], [9.375, 9.375]]}
    assert _vessel_zoom(None, meta) == (1.0, 1.0)
    assert _vessel_zoom(2.0, meta) == (1.0, 1.0)
    assert _vessel_zoom(9.0, meta) == (1.0, 1.0)
    assert _vessel_zoom(2.0, {}) == (1.0, 1.0)  # checkpoint without recorded scales
    zr, zc = _vessel_zoom((0.5, 30.0), meta)
    assert zr == pytest.approx(0.5 / 1.1 * 1.2) and zc == pytest.approx(30.0 / (9.375 * 1.2))


def test_segment_vessels_rejects_bad_scale():
    with pytest.raises(ValueError, match="um_per_px"):
        segment_vessels(np.zeros((32, 32)), um_per_px=-1.0)
