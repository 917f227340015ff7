"""Model shapes, parameter counts, determinism, augmentation and peak finding."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from ml.augment import AugmentConfig, make_batch, render_heatmap, sample_patch
from ml.data import Sample, normalize_image, subject_id_from_name, synthetic_nfl_samples
from ml.inference import find_peaks
from ml.models import build_model, count_parameters
from ml.train import TrainConfig, train
from ml.uncertainty import DIHEDRAL, apply_transform, invert_angle, invert_transform

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("kind,channels", [("cells", 1), ("vessels", 1), ("nfl", 3)])
def test_shapes_and_size(kind, channels):
    m = build_model(kind).eval()
    with torch.no_grad():
        y = m(torch.zeros(2, 1, 40, 56))
    assert y.shape == (2, channels, 40, 56)
    assert 50_000 < count_parameters(m) < 2_000_000


def test_subject_ids():
    assert subject_id_from_name("JC_0007_BL_0.08_aligned") == "JC_0007"
    assert subject_id_from_name("AD_10253_790nm_OS__split") == "AD_10253"


def test_normalize_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        normalize_image(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        normalize_image(np.array([[np.nan, 1.0], [0.0, 1.0]]))


def test_heatmap_peaks_at_points_and_subpixel_peaks():
    pts = np.array([[20.3, 30.7], [40.0, 12.2], [50.6, 50.4]])
    heat = render_heatmap(pts, (64, 64), 1.5)
    assert heat.max() <= 1.0 and heat.dtype == np.float32
    found = find_peaks(heat, threshold=0.3, min_distance_px=3)
    found = found[np.lexsort((found[:, 1], found[:, 0]))]
    np.testing.assert_allclose(found, pts[np.lexsort((pts[:, 1], pts[:, 0]))], atol=0.2)


def test_dihedral_roundtrip_and_angles():
    a = np.arange(12.0).reshape(3, 4)
    for k, flip in DIHEDRAL:
        np.testing.assert_array_equal(invert_transform(apply_transform(a, k, flip), k, flip), a)
    # a horizontal line (angle 0) rotated 90° CCW becomes vertical; inverting gives 0 back
    assert invert_angle(np.array([np.pi / 2]), 1, False)[0] == pytest.approx(0.0) or \
        invert_angle(np.array([np.pi / 2]), 1, False)[0] == pytest.approx(np.pi)


def test_augmented_points_follow_image():
    rng = np.random.default_rng(0)
    pts = np.array([[r, c] for r in range(6, 120, 9) for c in range(6, 120, 9)], float)
    img = render_heatmap(pts, (128, 128), 1.5)
    s = Sample(image=img, subject_id="s", name="s", points_rc=pts.astype(np.float32))
    cfg = AugmentConfig(patch_px=64, gamma=(1, 1), contrast=(1, 1), noise_sd=0.0, blur_sd_max=0.0)
    for _ in range(5):
        x, y = sample_patch(s, "cells", cfg, rng)
        assert np.corrcoef(x[0].ravel(), y[0].ravel())[0, 1] > 0.8


def test_nfl_targets_rotate_consistently():
    rng = np.random.default_rng(0)
    s = synthetic_nfl_samples(1, seed=3, shape=(96, 96))[0]
    x, y = make_batch([s], "nfl", 4, AugmentConfig(patch_px=64), rng)
    assert y.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(y[:, 1] ** 2 + y[:, 2] ** 2, 1.0, atol=1e-5)


def test_training_is_deterministic():
    pts = np.array([[r, c] for r in range(5, 60, 8) for c in range(5, 60, 8)], np.float32)
    s = Sample(image=render_heatmap(pts, (64, 64), 1.5), subject_id="s", name="s", points_rc=pts)
    cfg = TrainConfig(task="cones", kind="cells", steps=3, batch_size=2, log_every=1,
                      num_threads=1, augment=AugmentConfig(patch_px=32))
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        m = build_model("cells", widths=(8, 16))
        res = train(m, [s], cfg)
        outs.append((res.history[-1]["loss"], [p.detach().clone() for p in m.parameters()]))
    assert outs[0][0] == outs[1][0]
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bf16_channels_last_training_is_deterministic_and_hands_back_nchw():
    """The fast CPU recipe (bf16 autocast + NHWC) learns, repeats exactly, and leaves a
    float32 NCHW model for inference and ONNX export."""
    pts = np.array([[r, c] for r in range(5, 60, 8) for c in range(5, 60, 8)], np.float32)
    s = Sample(image=render_heatmap(pts, (64, 64), 1.5), subject_id="s", name="s", points_rc=pts)
    cfg = TrainConfig(task="cones", kind="cells", steps=4, batch_size=2, log_every=1, num_threads=1,
                      augment=AugmentConfig(patch_px=32), precision="bf16", channels_last=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        m = build_model("cells", widths=(8, 16))
        res = train(m, [s], cfg)
        runs.append([h["loss"] for h in res.history])
        for p in m.parameters():
            assert p.dtype == torch.float32 and p.is_contiguous()
    assert runs[0] == runs[1] and all(np.isfinite(runs[0]))
    with pytest.raises(ValueError, match="precision"):
        train(build_model("cells", widths=(8, 16)), [s], replace(cfg, precision="fp16"))
