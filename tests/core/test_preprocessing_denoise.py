"""Single-volume speckle denoiser (``aooct_core.preprocessing.denoise``)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from aooct_core.preprocessing import denoise_volume, estimate_noise_sigma_db, preprocess_case
from aooct_core.preprocessing.denoise import DENOISED_SLABS


def _speckled(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.exponential(size=shape) * 50.0).astype(np.float32)


@pytest.mark.parametrize("shape", [(96, 80), (24, 48, 40)])
def test_lowers_speckle_contrast_and_keeps_the_mean(shape):
    image = _speckled(shape)
    before = image.copy()
    out = denoise_volume(image)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_array_equal(image, before)  # input untouched
    assert out.std() / out.mean() < 0.5 * image.std() / image.mean()
    assert out.mean() == pytest.approx(image.mean(), rel=1e-5)
    assert np.all(out > 0)


def test_thread_slabs_equal_the_whole_array():
    image = _speckled((64, 40, 48), seed=1)
    one = denoise_volume(image, cpu_threads=1)
    two = denoise_volume(image, cpu_threads=2)
    np.testing.assert_allclose(two, one, rtol=1e-4)


def test_estimated_sigma_of_white_noise():
    rng = np.random.default_rng(2)
    image_db = 20.0 + 3.0 * rng.standard_normal((128, 128)).astype(np.float32)
    assert estimate_noise_sigma_db(image_db) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="sigma_db"):
        estimate_noise_sigma_db(np.full((8, 8), 5.0, np.float32))


def test_phantom_single_volume_moves_towards_the_noise_free_volume():
    from aooct_core.phantom import make_phantom

    ph = make_phantom(seed=4, n_repeats=1, shape_px=(24, 256, 48))
    speckled = ph.motion_free(speckle_seed=7).astype(np.float32)
    clean = ph.motion_free().astype(np.float32)
    tissue = clean > 0.05 * clean.mean()

    def err_db(vol):  # RMS dB error in tissue, after removing the global offset
        d = (10 * np.log10(np.maximum(vol, 1e-6)) - 10 * np.log10(np.maximum(clean, 1e-6)))[tissue]
        return float(np.sqrt(np.mean((d - d.mean()) ** 2)))

    assert err_db(denoise_volume(speckled)) < 0.5 * err_db(speckled)


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "cuda"}, "CPU only"),
    ({"method": "median"}, "method must be one of"),
    ({"strength": 0}, "strength must be > 0"),
    ({"patch_size_px": 2.5}, "patch_size_px"),
    ({"search_radius_px": 0}, "search_radius_px"),
    ({"sigma_db": -1.0}, "sigma_db"),
    ({"cpu_threads": 0}, "cpu_threads"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        denoise_volume(_speckled((16, 16)), **kwargs)


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="2-D image"):
        denoise_volume(np.ones(16, np.float32))
    with pytest.raises(ValueError, match="at least 2 px"):
        denoise_volume(np.ones((1, 16), np.float32))
    bad = _speckled((16, 16))
    bad[3, 4] = np.nan
    bad[5, 5] = np.inf
    with pytest.raises(ValueError, match="2 non-finite"):
        denoise_volume(bad)
    with pytest.raises(ValueError, match="positive mean"):
        denoise_volume(np.full((16, 16), -3.0, np.float32))


def test_bm4d_missing_says_how_to_install_and_why_it_is_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm4d", None)  # import fails as if not installed
    with pytest.raises(ValueError, match="non-commercial"):
        denoise_volume(_speckled((16, 16, 16)), method="bm4d")


def test_bm4d_when_installed():
    pytest.importorskip("bm4d")
    image = _speckled((16, 24, 24))
    out = denoise_volume(image, method="bm4d")
    assert out.shape == image.shape and out.std() / out.mean() < 0.5 * image.std() / image.mean()


def test_pipeline_option_lowers_the_band_speckle_contrast():
    from aooct_core.phantom import make_phantom

    ph = make_phantom(seed=2, n_repeats=1, shape_px=(24, 256, 48))
    plain = preprocess_case(ph.volumes, ph.geometry)
    denoised = preprocess_case(ph.volumes, ph.geometry, denoise="nl_means")
    assert "denoise" in denoised.timings_s and "denoise" not in plain.timings_s
    assert denoised.speckle_contrast < 0.7 * plain.speckle_contrast
    # Layers and cone slabs come from the un-denoised average; the diffuse slabs do not.
    for name in plain.surfaces_px:
        np.testing.assert_array_equal(plain.surfaces_px[name], denoised.surfaces_px[name])
    for name in ("isos", "cost"):
        np.testing.assert_array_equal(plain.enface[name], denoised.enface[name])
    for name in DENOISED_SLABS:
        assert not np.array_equal(plain.enface[name], denoised.enface[name])
    with pytest.raises(ValueError, match="CPU only"):
        preprocess_case(ph.volumes, ph.geometry, denoise="nl_means", device="cuda")
    with pytest.raises(ValueError, match="denoise must be None"):
        preprocess_case(ph.volumes, ph.geometry, denoise="gaussian")
