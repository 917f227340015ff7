"""Issue 17 regressions: bombs, sparse files, hostile case.json, and every saved crasher.

Each input is read in the capped worker (2 GiB address space), so a regression shows as
an ``oom`` outcome instead of taking the test machine's memory.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fuzz_bombs import (
    deep_json, deflate_zeros, long_number_json, npy_sparse, png_bytes, tiff_bytes,
    tiff_deflate_bomb, tiff_shared_strip_bomb, tiff_sparse, tiff_strip_bomb,
)
from fuzz_harness import READERS
from fuzz_seeds import CASE_DICT

CRASHERS = Path(__file__).with_name("crashers")


def _refused(capped, reader, suffix, data, extend_to=None, *, match: str) -> str:
    outcome = capped.read(reader, suffix, data, extend_to)
    assert outcome.kind == "input_error", outcome
    assert match in outcome.detail, outcome.detail
    return outcome.detail


# ----------------------------------------------------------------------------- TIFF
def test_deflate_tiff_bomb(capped):
    """A few hundred KB of deflate declaring 100 × 2000 × 2000 zeros (1.5 GiB as float32)."""
    data = tiff_deflate_bomb()
    assert 300_000 < len(data) < 500_000
    for reader in ("read_volume", "probe_volume"):
        detail = _refused(capped, reader, ".tif", data, match="decompression bomb")
        assert "AOOCT_MAX_EXPANSION" in detail


def test_deflate_tiff_bomb_single_page(capped):
    """The tester's case: one 20000 × 20000 page in ~390 KB, read as an en face image."""
    data = tiff_bytes([{"width": 20000, "height": 20000, "compression": 8, "strips": [0]}],
                      [deflate_zeros(20000 * 20000)])
    _refused(capped, "read_enface", ".tif", data, match="AOOCT_MAX_IMAGE_PIXELS")
    data = tiff_bytes([{"width": 9000, "height": 9000, "compression": 8, "strips": [0]}],
                      [deflate_zeros(9000 * 9000)])  # within the pixel budget: the ratio says no
    _refused(capped, "read_enface", ".tif", data, match="decompression bomb")


def test_pages_sharing_one_strip(capped):
    _refused(capped, "read_volume", ".tif", tiff_shared_strip_bomb(), match="read budget")


@pytest.mark.parametrize("compression", [8, 34925])
def test_strip_inflating_past_its_page(capped, compression):
    data = tiff_strip_bomb(compression, 64 << 20)  # 64 × 64 pages, a 64 MiB strip
    _refused(capped, "read_volume", ".tif", data, match="inflate to more than")


def test_lzma_bomb_behind_an_empty_stream(capped):
    """Found by the coverage-guided run: tifffile's decoder (``lzma.decompress``) inflates
    every stream of a concatenation, so the bomb check must count past the first one."""
    import lzma

    from fuzz_bombs import lzma_zeros

    blob = lzma.compress(b"") + lzma_zeros(64 << 20)
    data = tiff_bytes([{"width": 64, "height": 64, "compression": 34925, "strips": [0]}], [blob])
    _refused(capped, "read_enface", ".tif", data, match="inflate to more than")


def test_lzma_stream_declaring_a_huge_dictionary(capped):
    """An LZMA header asking for a 1.5 GiB dictionary (the format's largest): refused before
    the decoder allocates it (the crasher ``atheris_tiff_lzma_dictionary.tif`` hides one
    behind an empty stream)."""
    import lzma

    blob = lzma.compress(bytes(4096), format=lzma.FORMAT_ALONE,
                         filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 1536 << 20}])
    data = tiff_bytes([{"width": 64, "height": 64, "compression": 34925, "strips": [0]}], [blob])
    _refused(capped, "read_enface", ".tif", data, match="decoder memory")


def test_sparse_tiff(capped):
    data, size = tiff_sparse(n_pages=100)
    _refused(capped, "read_volume", ".tif", data, size, match="sparse file")


# ----------------------------------------------------------------------------- NPY
def test_sparse_npy(capped):
    """A 128-byte header declaring 1000 × 1000 × 1500 uint16, the rest a hole (2.8 GiB)."""
    head, size = npy_sparse()
    for reader in READERS[".npy"]:
        _refused(capped, reader, ".npy", head, size, match="sparse file")


# ----------------------------------------------------------------------------- PNG
def test_png_bombs(capped):
    _refused(capped, "read_enface", ".png", png_bytes(20000, 20000), match="AOOCT_MAX_IMAGE_PIXELS")
    _refused(capped, "read_enface", ".png", png_bytes(9000, 9000), match="decompression bomb")


def test_png_named_file_must_be_png(capped):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="BMP")
    _refused(capped, "read_enface", ".png", buf.getvalue(), match="not a readable PNG")


# ----------------------------------------------------------------------------- DICOM
def test_dicom_bombs(capped):
    from fuzz_bombs import _dicom_bomb

    data, size = _dicom_bomb("sparse")
    for reader in READERS[".dcm"]:
        _refused(capped, reader, ".dcm", data, size, match="sparse file")
    data, _ = _dicom_bomb("rle")
    _refused(capped, "read_volume", ".dcm", data, match="decompression bomb")


# ----------------------------------------------------------------------------- case.json
@pytest.mark.parametrize("data,match", [
    (deep_json(10_000), "10001 levels deep"),
    (long_number_json(5000), "number of 5000 characters"),
    (json.dumps(CASE_DICT | {"um_per_px": {"bscan": 1000, "aline": 1000}}).encode(),
     "must be >= 0.1 and <= 20; got 1000"),
    (json.dumps(CASE_DICT | {"scan_field_deg": {"bscan": 40, "aline": 1}}).encode(),
     "must be > 0 and <= 30; got 40"),
    (b'{"notes": "' + b"x" * (2 << 20) + b'"}', "more than the 1.0 MiB"),
])
def test_hostile_case_json(capped, data, match):
    for reader in READERS[".json"]:
        if reader != "enface_sidecar":
            _refused(capped, reader, ".json", data, match=match)


def test_cone_resampling_refused_before_allocation(monkeypatch):
    """um_per_px = 1000 once made detect_cells allocate 12.2 GiB for the resampled image."""
    from ml import inference

    def no_zoom(*args, **kwargs):
        raise AssertionError("ndi.zoom must not be reached")

    monkeypatch.setattr(inference.ndi, "zoom", no_zoom)
    image = np.random.default_rng(0).random((150, 150)).astype(np.float32)
    with pytest.raises(ValueError, match="AOOCT_MAX_RESAMPLE_PIXELS"):
        inference.detect_cells(image, um_per_px=1000.0, expected_spacing_um=5.0,
                               uncertainty=None)
    with pytest.raises(ValueError, match="um_per_px"):
        inference.segment_vessels(image, um_per_px=1e6, uncertainty=None)


# ----------------------------------------------------------------------------- saved crashers
def _crashers():
    return sorted(p for p in CRASHERS.iterdir() if p.suffix in READERS)


@pytest.mark.parametrize("path", _crashers(), ids=lambda p: p.name)
def test_saved_crasher(capped, path):
    extend = path.with_name(path.name + ".extend_to")
    extend_to = int(extend.read_text()) if extend.exists() else None
    for reader in READERS[path.suffix]:
        outcome = capped.read(reader, path.suffix, path.read_bytes(), extend_to)
        assert outcome.kind in ("ok", "input_error"), (reader, outcome)
