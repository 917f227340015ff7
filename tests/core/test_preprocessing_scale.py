"""Intensity, amplitude and dB volumes give the same surfaces, slabs and SNR (issue 16)."""
from __future__ import annotations

import numpy as np
import pytest

from aooct_core.phantom import make_phantom
from aooct_core.preprocessing import preprocess_case
from aooct_core.preprocessing.scale import detect_scale, to_intensity


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=5, n_repeats=2, shape_px=(32, 256, 64))


def _as(volumes, scale):
    if scale == "amplitude":
        return np.sqrt(volumes)
    if scale == "db":
        return 10 * np.log10(volumes) + 80.0   # an exporter's offset
    return volumes


@pytest.mark.parametrize("scale", ["intensity", "amplitude", "db"])
def test_the_scale_is_detected_from_the_speckle(phantom, scale):
    got, evidence = detect_scale(_as(phantom.volumes[0], scale))
    assert got == scale, evidence
    gain = 1.0 if scale == "db" else 1000.0   # uint16 exports: whole dB, or scaled linear values
    assert detect_scale(np.round(_as(phantom.volumes[0], scale) * gain).astype(np.uint16))[0] == scale


def test_every_scale_gives_the_same_surfaces_slabs_and_snr(phantom):
    ref = preprocess_case(phantom.volumes, phantom.geometry, reference=0)
    for scale in ("amplitude", "db"):
        out = preprocess_case(_as(phantom.volumes, scale), phantom.geometry, reference=0, scale="auto")
        assert out.input_scale == scale
        for k in ("ISOS", "COST", "RPE"):
            assert float(np.max(np.abs(np.asarray(out.surfaces_px[k]) - ref.surfaces_px[k]))) < 0.05
        assert abs(out.snr_db - ref.snr_db) < 0.05
        corr = np.corrcoef(np.ravel(out.enface["isos"]), np.ravel(ref.enface["isos"]))[0, 1]
        assert corr > 0.999


def test_an_averaged_export_is_refused_with_a_request_to_declare(phantom):
    smooth = np.full((8, 64, 64), 5.0, np.float32) + np.linspace(0, 1, 64)[None, :, None]
    with pytest.raises(ValueError, match="intensity_scale"):
        detect_scale(smooth * (1 + 0.3 * np.random.default_rng(0).standard_normal(smooth.shape)))
    with pytest.raises(ValueError, match="scale must be"):
        to_intensity(smooth, "log")
