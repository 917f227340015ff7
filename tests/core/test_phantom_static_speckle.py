"""Partly static speckle in the phantom: repeat-to-repeat correlation, the averaged
contrast law it predicts, and the OCTA contrast it gives the capillaries."""
from __future__ import annotations

import numpy as np
import pytest

from aooct_core.phantom import averaged_speckle_contrast, capillary_truth_mask, make_phantom, speckle_contrast
from aooct_core.phantom.speckle import partially_correlated_speckle, static_speckle_spectrum

FWHM = (1.2, 1.5, 1.2)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_repeats_share_the_requested_intensity_correlation(rho):
    shape = (8, 64, 64)
    spec = static_speckle_spectrum(shape, psf_fwhm_px=FWHM, rng=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    still = np.zeros((shape[0], 2))
    a, b = (partially_correlated_speckle(spec, still, correlation=rho, psf_fwhm_px=FWHM, rng=rng)
            for _ in range(2))
    assert speckle_contrast(a) == pytest.approx(1.0, abs=0.08)  # still fully developed
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] == pytest.approx(rho, abs=0.05)


def test_static_part_moves_with_the_eye():
    """Shifted by whole pixels, the static pattern is the same pattern rolled."""
    shape = (4, 64, 64)
    spec = static_speckle_spectrum(shape, psf_fwhm_px=FWHM, rng=np.random.default_rng(0))
    rng = np.random.default_rng(2)
    a = partially_correlated_speckle(spec, np.zeros((4, 2)), correlation=0.9, psf_fwhm_px=FWHM, rng=rng)
    moved = np.tile([[3.0, -5.0]], (4, 1))
    b = partially_correlated_speckle(spec, moved, correlation=0.9, psf_fwhm_px=FWHM, rng=rng)
    back = np.roll(b, (-3, 5), axis=(1, 2))
    assert np.corrcoef(a.ravel(), back.ravel())[0, 1] == pytest.approx(0.9, abs=0.05)
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.1


def test_average_contrast_follows_the_correlated_law():
    shape = (8, 64, 64)
    spec = static_speckle_spectrum(shape, psf_fwhm_px=FWHM, rng=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    fields = [partially_correlated_speckle(spec, np.zeros((8, 2)), correlation=0.3, psf_fwhm_px=FWHM, rng=rng)
              for _ in range(8)]
    c1 = speckle_contrast(fields[0])
    for n in (2, 4, 8):
        predicted = averaged_speckle_contrast(n, single_contrast=c1, correlation=0.3)
        assert speckle_contrast(np.mean(fields[:n], axis=0)) == pytest.approx(predicted, rel=0.08)


def test_bad_correlation_is_refused_with_its_range():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        make_phantom(seed=0, n_repeats=1, shape_px=(8, 240, 8), static_speckle_correlation=1.0)
    with pytest.raises(ValueError, match="n_repeats"):
        averaged_speckle_contrast(0, single_contrast=1.0)
    with pytest.raises(ValueError, match="static_speckle_spectrum"):
        partially_correlated_speckle(None, np.zeros((2, 2)), correlation=0.5, psf_fwhm_px=FWHM,
                                     rng=np.random.default_rng(0))


def test_default_phantom_is_unchanged_by_the_option():
    """ρ = 0 keeps the independent-speckle renderer: same volumes bit for bit."""
    a = make_phantom(seed=5, n_repeats=2, shape_px=(8, 240, 16))
    b = make_phantom(seed=5, n_repeats=2, shape_px=(8, 240, 16), static_speckle_correlation=0.0)
    assert np.array_equal(a.volumes, b.volumes)
    assert a.truth["static_speckle_correlation"] == 0.0


def _svp_decorrelation_slab(ph):
    """Per-pixel amplitude decorrelation of consecutive raw repeats, averaged over the SVP band."""
    amp = np.sqrt(ph.volumes)
    decor = np.mean([1 - 2 * amp[r] * amp[r + 1] / (amp[r] ** 2 + amp[r + 1] ** 2 + 1e-12)
                     for r in range(len(amp) - 1)], axis=0)
    n_b, n_d, n_a = decor.shape
    surfaces = ph.scene.retina.surfaces_px(np.arange(n_b)[:, None], np.arange(n_a, dtype=float)[None, :])
    depth = ph.scene.plexus_depth_px(surfaces, "SVP")
    band = np.abs(np.arange(n_d)[None, :, None] - depth[:, None, :]) <= 2
    return (decor * band).sum(1) / band.sum(1)


def test_octa_sees_the_capillaries_only_when_static_tissue_keeps_its_speckle():
    corr = {}
    for rho in (0.0, 0.9):
        ph = make_phantom(seed=1000, n_repeats=3, shape_px=(48, 256, 48), motion_scale=0.0,
                          static_speckle_correlation=rho)
        g = ph.geometry
        mask = capillary_truth_mask(ph.truth["vessels"], (48, 48), (g.bscan_um_per_px, g.aline_um_per_px))
        slab = _svp_decorrelation_slab(ph)
        corr[rho] = np.corrcoef(slab.ravel(), mask.ravel())[0, 1]
        if rho > 0:
            assert slab[mask].mean() > 1.8 * slab[~mask].mean()
    assert corr[0.9] > 0.35 and corr[0.9] > corr[0.0] + 0.15
