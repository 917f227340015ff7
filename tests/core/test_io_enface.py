"""En face images (TIFF/PNG/.npy) with µm/px from the argument or a sidecar."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from aooct_core.io import EnFaceImage, InputError, read_enface


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(img=st.sampled_from([np.uint8, np.uint16]).flatmap(
           lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9))),
       fmt=st.sampled_from(["png", "tif", "npy"]))
def test_integer_round_trip(tmp_path_factory, img, fmt):
    path = tmp_path_factory.mktemp("e") / f"im.{fmt}"
    if fmt == "png":
        Image.fromarray(img).save(path)
    elif fmt == "tif":
        tifffile.imwrite(path, img)
    else:
        np.save(path, img)
    out = read_enface(path)
    assert isinstance(out, EnFaceImage) and out.source == path and out.um_per_px is None
    assert out.image.dtype == np.float32
    np.testing.assert_array_equal(out.image, img.astype(np.float32))


def test_float_tiff(tmp_path):
    img = np.random.default_rng(0).random((5, 7)).astype(np.float64)
    tifffile.imwrite(tmp_path / "a.tif", img)
    np.testing.assert_array_equal(read_enface(tmp_path / "a.tif").image, img.astype(np.float32))


def test_um_per_px_argument_scalar_and_pair(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 3)))
    assert read_enface(tmp_path / "a.npy", um_per_px=0.8).um_per_px == (0.8, 0.8)
    assert read_enface(tmp_path / "a.npy", um_per_px=(0.8, 0.9)).um_per_px == (0.8, 0.9)


@pytest.mark.parametrize("sidecar", ["a.json", "a.png.json"])
def test_sidecar(tmp_path, sidecar):
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / sidecar).write_text(json.dumps({"um_per_px": [0.5, 0.6], "device": "AOSLO"}))
    assert read_enface(tmp_path / "a.png").um_per_px == (0.5, 0.6)
    assert read_enface(tmp_path / "a.png", um_per_px=0.7).um_per_px == (0.7, 0.7)  # argument wins


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    (json.dumps({"scale": 1}), "no field 'um_per_px'"),
    (json.dumps({"um_per_px": -1}), "positive finite"),
    (json.dumps({"um_per_px": "0.8"}), "must be a number"),
])
def test_bad_sidecar(tmp_path, content, match):
    np.save(tmp_path / "a.npy", np.zeros((3, 3)))
    (tmp_path / "a.json").write_text(content)
    with pytest.raises(InputError, match=match) as info:
        read_enface(tmp_path / "a.npy")
    assert "a.json" in str(info.value)


@pytest.mark.parametrize("value", [0, -0.5, float("nan"), (1.0,), True])
def test_bad_um_per_px_argument(tmp_path, value):
    np.save(tmp_path / "a.npy", np.zeros((3, 3)))
    with pytest.raises(InputError, match="um_per_px"):
        read_enface(tmp_path / "a.npy", um_per_px=value)


def test_grayscale_saved_as_rgb_is_accepted(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_enface(tmp_path / "a.png").image, gray)


# ----------------------------------------------------------------------------- bad input
def _raises(path, match, **kwargs):
    with pytest.raises(InputError, match=match) as info:
        read_enface(path, **kwargs)
    assert str(path) in str(info.value)


def test_colour_is_refused(tmp_path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "a.png")
    _raises(tmp_path / "a.png", "colour image")


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    _raises(tmp_path / "a.png", "truncated")


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.ones((64, 64), np.uint16))
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "a.tif").write_bytes(data[: len(data) // 2])
    _raises(tmp_path / "a.tif", "truncated")


def test_corrupt_png(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    _raises(tmp_path / "a.png", "not a readable PNG")


def test_empty_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    _raises(tmp_path / "a.png", "is empty")


def test_zero_size_image(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((0, 5)))
    _raises(tmp_path / "a.npy", "no pixels")


def test_wrong_dimensionality(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 5)))
    _raises(tmp_path / "a.npy", "3-D.*project volumes first")
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
    _raises(tmp_path / "v.tif", "3 pages.*read_volume")


def test_non_finite(tmp_path):
    img = np.ones((3, 4), np.float32)
    img[1, 2] = np.inf
    tifffile.imwrite(tmp_path / "a.tif", img)
    _raises(tmp_path / "a.tif", "non-finite.*row 1, col 2")


def test_unknown_extension(tmp_path):
    (tmp_path / "a.bmp").write_bytes(b"BM" + b"\0" * 60)
    _raises(tmp_path / "a.bmp", "unknown en face image format '.bmp'")
