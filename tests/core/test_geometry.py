"""Units math: Bennett magnification and µm/px from the acquisition (property-based)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aooct_core.geometry import (
    Acquisition, Geometry, eccentricity_deg, geometry_from_acquisition, retinal_mm_per_deg,
)

axial_lengths = st.floats(18.0, 35.0)
fields = st.floats(0.05, 40.0)
samples = st.integers(1, 4096)
positive_um = st.floats(0.01, 1000.0)


def _acq(al=24.0, field=(1.0, 1.0), sampling=(128, 256, 128), depth=2.0, override=None):
    return Acquisition("c", "s", "OD", (2.0, 0.0), al, field, sampling, depth,
                       um_per_px_override=override)


def test_bennett_reference_value():
    # Bennett 1994: q = 0.01306 (AL - 1.82) mm/deg; 24 mm -> 0.2897 mm/deg
    assert retinal_mm_per_deg(24.0) == pytest.approx(0.01306 * 22.18)


@given(a=axial_lengths, b=axial_lengths)
def test_q_monotone_in_axial_length(a, b):
    qa, qb = retinal_mm_per_deg(a), retinal_mm_per_deg(b)
    assert qa > 0 and qb > 0
    if a < b:
        assert qa < qb
    elif a == b:
        assert qa == qb


@given(al=axial_lengths, fb=fields, fa=fields, nb=samples, nd=samples, na=samples,
       depth=positive_um)
def test_um_per_px_times_samples_is_field_times_q(al, fb, fa, nb, nd, na, depth):
    g = geometry_from_acquisition(_acq(al, (fb, fa), (nb, nd, na), depth))
    q_um = retinal_mm_per_deg(al) * 1000.0
    assert g.bscan_um_per_px * nb == pytest.approx(fb * q_um, rel=1e-9)
    assert g.aline_um_per_px * na == pytest.approx(fa * q_um, rel=1e-9)
    assert g.depth_um_per_px == depth
    assert g.enface_um_per_px == (g.bscan_um_per_px, g.aline_um_per_px)
    assert g.enface_pixel_area_mm2 == pytest.approx(g.bscan_um_per_px * g.aline_um_per_px * 1e-6)


@given(al=axial_lengths, ob=positive_um, oa=positive_um, nb=samples, na=samples)
def test_override_wins(al, ob, oa, nb, na):
    g = geometry_from_acquisition(_acq(al, (1.0, 2.0), (nb, 64, na), override=(ob, oa)))
    assert (g.bscan_um_per_px, g.aline_um_per_px) == (ob, oa)


@given(al=st.one_of(st.floats(max_value=17.999), st.floats(min_value=35.001),
                    st.just(math.nan), st.just(math.inf)))
def test_invalid_axial_length_raises(al):
    with pytest.raises(ValueError, match="axial_length_mm"):
        retinal_mm_per_deg(al)
    with pytest.raises(ValueError, match="axial_length_mm"):
        geometry_from_acquisition(_acq(al=al))


@pytest.mark.parametrize("sampling", [(0, 10, 10), (10, 10, -1), (10.5, 10, 10), (10, 10)])
def test_invalid_sampling_raises(sampling):
    with pytest.raises(ValueError, match="sampling_px must be three positive integers"):
        geometry_from_acquisition(_acq(sampling=sampling))


@pytest.mark.parametrize("field", [(0.0, 1.0), (1.0, -1.0), (math.nan, 1.0), (True, 1.0)])
def test_invalid_scan_field_raises(field):
    with pytest.raises(ValueError, match="scan_field_deg"):
        geometry_from_acquisition(_acq(field=field))


@given(bad=st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf),
                     st.just(True), st.just("2.0"), st.none()))
def test_invalid_geometry_raises(bad):
    with pytest.raises(ValueError, match="must be a positive finite number of µm"):
        Geometry(bad, 1.0, 1.0)
    with pytest.raises(ValueError, match="depth_um_per_px"):
        geometry_from_acquisition(_acq(depth=bad))
    with pytest.raises(ValueError, match="aline_um_per_px"):
        geometry_from_acquisition(_acq(override=(1.0, bad)))


def test_numpy_scalars_accepted_as_plain_floats():
    g = Geometry(np.float32(2.0), np.int64(3), np.float64(1.5))
    assert g == Geometry(2.0, 3.0, 1.5) and type(g.bscan_um_per_px) is float
    acq = _acq(sampling=(np.int64(128), 256, np.int32(128)))
    assert geometry_from_acquisition(acq) == geometry_from_acquisition(_acq())


@given(h=st.floats(-40, 40), v=st.floats(-40, 40))
def test_eccentricity(h, v):
    e = eccentricity_deg((h, v))
    assert e >= 0 and e == pytest.approx(math.hypot(h, v))
    assert _acq().eccentricity_deg == 2.0
    assert dataclasses.replace(_acq(), location_deg=(h, v)).eccentricity_deg == e
