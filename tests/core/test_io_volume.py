"""Volume readers (TIFF, .npy): round trips, laziness, and one test per kind of bad input."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aooct_core.io import InputError, probe_volume, read_volume, write_volume

DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64]


def _raises(path, match):
    """Both the header probe and the reader name the file and the problem."""
    with pytest.raises(InputError, match=match) as info:
        read_volume(path)
    assert str(path) in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- round trips
def _elements(dtype):
    if np.dtype(dtype).kind == "f":  # finite values that float32 holds exactly
        return st.floats(-1e6, 1e6, width=32)
    return None


volumes = st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
    dtype=dt,
    shape=hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6),
    elements=_elements(dt),
))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vol=volumes, fmt=st.sampled_from(["tiff", "npy"]))
def test_write_read_round_trip(tmp_path_factory, vol, fmt):
    path = tmp_path_factory.mktemp("rt") / ("v.tif" if fmt == "tiff" else "v.npy")
    before = vol.copy()
    write_volume(path, vol, fmt=fmt)
    np.testing.assert_array_equal(vol, before)  # input untouched
    back = read_volume(path)
    assert back.dtype == np.float32 and back.shape == vol.shape
    np.testing.assert_array_equal(back, vol.astype(np.float32))
    assert probe_volume(path).shape == vol.shape


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vol=volumes)
def test_native_npy_and_page_by_page_tiff_round_trip(tmp_path_factory, vol):
    folder = tmp_path_factory.mktemp("native")
    np.save(folder / "v.npy", vol)  # stored in its own dtype
    np.testing.assert_array_equal(read_volume(folder / "v.npy"), vol.astype(np.float32))
    # tifffile pages from another writer: one page per B-scan (one 2-D page alone is an image)
    if vol.dtype != np.float64 and vol.shape[0] > 1:
        for page in vol:
            tifffile.imwrite(folder / "p.tif", page, append=True)
        back = read_volume(folder / "p.tif")
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, vol.astype(np.float32))


def test_float32_files_are_memory_mapped(tmp_path):
    vol = np.random.default_rng(0).random((3, 4, 5), dtype=np.float32)
    for name, fmt in (("v.tif", "tiff"), ("v.npy", "npy")):
        write_volume(tmp_path / name, vol, fmt=fmt)
        lazy = read_volume(tmp_path / name)
        assert isinstance(lazy, np.memmap) and not lazy.flags.writeable
        np.testing.assert_array_equal(lazy, vol)
        eager = read_volume(tmp_path / name, mmap=False)
        assert not isinstance(eager, np.memmap)


def test_single_3d_page_tiff(tmp_path):
    vol = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
    # one SGI-style 3-D page (ImageDepth = 2)
    tifffile.imwrite(tmp_path / "v.tif", vol, volumetric=True, tile=(16, 16),
                     photometric="minisblack")
    with tifffile.TiffFile(tmp_path / "v.tif") as tf:
        assert len(tf.pages) == 1
    np.testing.assert_array_equal(read_volume(tmp_path / "v.tif"), vol)


def test_big_endian_and_compressed_tiff(tmp_path):
    vol = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    tifffile.imwrite(tmp_path / "be.tif", vol, byteorder=">", photometric="minisblack")
    tifffile.imwrite(tmp_path / "z.tif", vol, compression="zlib", photometric="minisblack")
    for name in ("be.tif", "z.tif"):
        back = read_volume(tmp_path / name)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, vol)


# ----------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.tif", "does not exist")


def test_empty_file(tmp_path):
    (tmp_path / "v.tif").write_bytes(b"")
    _raises(tmp_path / "v.tif", r"is empty \(0 bytes\)")


def test_zero_size_array(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((0, 4, 5), np.float32))
    _raises(tmp_path / "v.npy", "zero-length axis")


def test_unknown_extension(tmp_path):
    (tmp_path / "v.raw").write_bytes(b"\0" * 16)
    _raises(tmp_path / "v.raw", "unknown volume format '.raw'.*supported")


def test_truncated_tiff(tmp_path):
    write_volume(tmp_path / "v.tif", np.ones((4, 8, 8)), fmt="tiff")
    data = (tmp_path / "v.tif").read_bytes()
    for keep in (len(data) - 100, len(data) // 2, 400):  # cut in the pixel data or the IFDs
        (tmp_path / "v.tif").write_bytes(data[:keep])
        _raises(tmp_path / "v.tif", "truncated")
        with pytest.raises(InputError, match="truncated"):
            probe_volume(tmp_path / "v.tif")


def test_corrupt_tiff(tmp_path):
    (tmp_path / "v.tif").write_bytes(b"II*\0" + b"\xff" * 64)
    _raises(tmp_path / "v.tif", "corrupt")


def test_not_a_tiff(tmp_path):
    (tmp_path / "v.tif").write_bytes(b"hello, this is text")
    _raises(tmp_path / "v.tif", "not a readable TIFF")


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((4, 8, 8), np.float32))
    data = (tmp_path / "v.npy").read_bytes()
    (tmp_path / "v.npy").write_bytes(data[:-10])
    _raises(tmp_path / "v.npy", r"is truncated: header says shape \(4, 8, 8\)")


def test_corrupt_npy(tmp_path):
    (tmp_path / "v.npy").write_bytes(b"\x93NUMPY garbage garbage")
    _raises(tmp_path / "v.npy", "not a valid .npy")
    (tmp_path / "v.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': garbage}  \n")
    _raises(tmp_path / "v.npy", "not a valid .npy")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "v.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _raises(tmp_path / "v.npy", "Python objects")


@pytest.mark.parametrize("shape", [(8, 8), (2, 3, 4, 5), (7,)])
def test_wrong_dimensionality_npy(tmp_path, shape):
    np.save(tmp_path / "v.npy", np.ones(shape, np.float32))
    _raises(tmp_path / "v.npy", f"{len(shape)}-D")


def test_wrong_dimensionality_tiff_single_page(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.ones((8, 8), np.uint16))
    _raises(tmp_path / "v.tif", "2-D.*read_enface")


def test_colour_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.ones((3, 8, 8, 3), np.uint8), photometric="rgb")
    _raises(tmp_path / "v.tif", "samples per pixel")


def test_three_bscans_saved_as_rgb_planes_get_a_hint(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.ones((3, 8, 8), np.uint8), photometric="rgb")
    _raises(tmp_path / "v.tif", "photometric='minisblack'")


def test_tiff_pages_of_mismatched_shape(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.ones((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "v.tif", np.ones((8, 9), np.uint16), append=True)
    _raises(tmp_path / "v.tif", r"page 1 has shape \(8, 9\) but page 0 has \(8, 8\)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fmt", ["tiff", "npy"])
def test_non_finite(tmp_path, bad, fmt):
    vol = np.ones((3, 4, 5), np.float32)
    vol[2, 1, 3] = bad
    path = tmp_path / ("v.tif" if fmt == "tiff" else "v.npy")
    if fmt == "tiff":
        tifffile.imwrite(path, vol, photometric="minisblack")
    else:
        np.save(path, vol)
    err = _raises(path, "non-finite")
    assert "B-scan 2, depth 1, A-line 3" in str(err)


def test_complex_dtype(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((2, 3, 4), np.complex64))
    _raises(tmp_path / "v.npy", r"complex.*np\.abs")


def test_write_volume_rejects_bad_fmt_and_shape(tmp_path):
    with pytest.raises(ValueError, match="fmt must be"):
        write_volume(tmp_path / "v.x", np.ones((2, 2, 2)), fmt="png")
    with pytest.raises(InputError, match="2-D"):
        write_volume(tmp_path / "v.tif", np.ones((2, 2)))
