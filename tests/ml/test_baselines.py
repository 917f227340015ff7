"""Classical baselines on synthetic mosaics and vessels."""
import numpy as np

from ml.augment import render_heatmap
from ml.baselines import estimate_spacing_px, frangi_vessels, log_cell_detector
from ml.evaluate import evaluate_detections, pixel_dice


def _mosaic(spacing=8.0, shape=(128, 128), seed=0):
    rng = np.random.default_rng(seed)
    pts = []
    for i, r in enumerate(np.arange(4, shape[0] - 4, spacing * np.sqrt(3) / 2)):
        for c in np.arange(4 + (spacing / 2) * (i % 2), shape[1] - 4, spacing):
            pts.append((r, c))
    pts = np.array(pts) + rng.normal(0, 0.4, (len(pts), 2))
    img = render_heatmap(pts, shape, spacing / 4) + rng.normal(0, 0.03, shape)
    return img.astype(np.float32), pts


def test_spacing_estimate_and_log_detector():
    img, pts = _mosaic()
    assert abs(estimate_spacing_px(img) - 8.0) < 1.5
    det = log_cell_detector(img)
    assert evaluate_detections(det, pts, image_shape=img.shape).dice > 0.9
    dark = log_cell_detector(-img, polarity="dark", spacing_px=8.0)
    assert evaluate_detections(dark, pts, image_shape=img.shape).dice > 0.9


def test_frangi_on_synthetic_vessels():
    img = np.zeros((96, 96), np.float32)
    truth = np.zeros((96, 96), bool)
    truth[20:23, :] = True
    truth[:, 60:63] = True
    img[truth] = 1.0
    img += np.random.default_rng(1).normal(0, 0.05, img.shape).astype(np.float32)
    mask, v = frangi_vessels(img)
    assert mask.dtype == bool and v.shape == img.shape
    assert pixel_dice(mask, truth) > 0.5


def test_inputs_not_modified():
    img, _ = _mosaic()
    before = img.copy()
    log_cell_detector(img)
    frangi_vessels(img)
    np.testing.assert_array_equal(img, before)
