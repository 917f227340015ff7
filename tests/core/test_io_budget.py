"""Read budgets (aooct_core.io.budget) and bounded JSON (aooct_core.io.jsonsafe)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from aooct_core.io import InputError, ReadBudget, default_budget, read_enface, read_volume
from aooct_core.io.budget import (
    ENV_VARS, check_expansion, check_resample, check_sparse, check_volume_size, disk_bytes,
)
from aooct_core.io.errors import decoder_errors, raised_by
from aooct_core.io.jsonsafe import load_json_file, loads_bounded


# ----------------------------------------------------------------------------- budget
def test_defaults_fit_the_largest_real_volume():
    b = ReadBudget()
    check_volume_size("v.tif", (1000, 1000, 1500), 2, budget=b)  # 5.6 GiB as float32
    with pytest.raises(InputError, match="AOOCT_MAX_VOLUME_BYTES"):
        check_volume_size("v.tif", (2000, 1000, 1500), 2, budget=b)


@pytest.mark.parametrize("text,expected", [
    ("8GiB", 8 << 30), ("8G", 8 << 30), ("512 MiB", 512 << 20), ("1000000", 1_000_000),
    ("1.5GiB", int(1.5 * (1 << 30))), ("2e9", 2_000_000_000),
])
def test_env_sizes(text, expected):
    assert ReadBudget.from_env({"AOOCT_MAX_VOLUME_BYTES": text}).max_volume_bytes == expected


def test_env_overrides_every_configurable_field(monkeypatch):
    for field, name in ENV_VARS.items():
        monkeypatch.setenv(name, "7")
    b = default_budget()
    assert all(getattr(b, field) == 7 for field in ENV_VARS)


@pytest.mark.parametrize("text", ["abc", "-1", "0", "8TB", "nan"])
def test_bad_env_value_names_the_variable(text):
    with pytest.raises(InputError, match=r"\$AOOCT_MAX_EXPANSION.*not a positive size"):
        ReadBudget.from_env({"AOOCT_MAX_EXPANSION": text})


def test_expansion_small_results_are_free():
    b = ReadBudget()
    check_expansion("x", b.expansion_free_bytes, budget=b, on_disk=1)
    with pytest.raises(InputError, match=r"decompression bomb.*AOOCT_MAX_EXPANSION"):
        check_expansion("x", b.expansion_free_bytes + 1, budget=b, on_disk=1, compressed=True)
    with pytest.raises(InputError, match="sparse file"):
        check_expansion("x", 10 << 30, budget=b, on_disk=1 << 20)


def test_sparse_file_detected(tmp_path):
    path = tmp_path / "holes.bin"
    with path.open("wb") as fh:
        fh.write(b"x")
        fh.truncate(1 << 30)
    if disk_bytes(path) == path.stat().st_size:
        pytest.skip("this file system does not report sparse allocation")
    with pytest.raises(InputError, match=r"1\.0 GiB long but occupies only .* sparse file"):
        check_sparse(path, budget=ReadBudget())


def test_resample_budget():
    assert check_resample((150, 150), (2.0, 2.0)) == (300, 300)
    with pytest.raises(ValueError, match=r"um_per_px.*AOOCT_MAX_RESAMPLE_PIXELS"):
        check_resample((150, 150), (1600.0, 1600.0))
    with pytest.raises(ValueError, match="positive and finite"):
        check_resample((150, 150), (float("inf"), 1.0))


def test_readers_take_an_explicit_budget(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((4, 64, 64), np.uint16))
    np.save(tmp_path / "e.npy", np.zeros((64, 64), np.uint16))
    small = ReadBudget(max_volume_bytes=4 * 64 * 64 * 4 - 1, max_image_pixels=64 * 64 - 1)
    with pytest.raises(InputError, match="more than the read budget"):
        read_volume(tmp_path / "v.npy", budget=small)
    with pytest.raises(InputError, match="more than the read budget"):
        read_enface(tmp_path / "e.npy", budget=small)
    assert read_volume(tmp_path / "v.npy").shape == (4, 64, 64)


# ----------------------------------------------------------------------------- decoder errors
def test_decoder_errors_convert_only_third_party_failures(tmp_path):
    import json as stdlib_json

    with pytest.raises(InputError, match="bad file: JSONDecodeError") as info:
        with decoder_errors(tmp_path, ("json",), lambda e: f"bad file: {type(e).__name__}"):
            stdlib_json.loads("{")
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ZeroDivisionError):  # our own bug propagates unchanged
        with decoder_errors(tmp_path, ("json",), lambda e: "bad"):
            1 / 0
    with pytest.raises(MemoryError):
        with decoder_errors(tmp_path, ("json",), lambda e: "bad"):
            raise MemoryError


def test_raised_by_looks_at_the_innermost_frame():
    try:
        json.loads("[")
    except ValueError as exc:
        assert raised_by(exc, ("json",))
        assert not raised_by(exc, ("tifffile",))


# ----------------------------------------------------------------------------- JSON
def test_json_depth_checked_before_parsing():
    text = '{"notes": ' + "[" * 10_000 + "]" * 10_000 + "}"
    with pytest.raises(InputError, match="10001 levels deep; at most 32"):
        loads_bounded(text, source="case.json")
    assert loads_bounded('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', source="x") == {
        "a": "[" * 38}  # brackets inside strings do not nest


@pytest.mark.parametrize("number", ["1" * 5000, "0." + "1" * 5000, "1e" + "9" * 200])
def test_long_numbers_refused(number):
    with pytest.raises(InputError, match="number of .* characters"):
        loads_bounded('{"x": ' + number + "}", source="case.json")


def test_json_size_checked_before_reading(tmp_path):
    path = tmp_path / "case.json"
    path.write_bytes(b" " * (2 << 20))
    with pytest.raises(InputError, match=r"2\.0 MiB, more than the 1\.0 MiB.*AOOCT_MAX_JSON_BYTES"):
        load_json_file(path)


def test_json_bad_utf8_and_syntax():
    with pytest.raises(InputError, match="not UTF-8"):
        loads_bounded(b'{"a": "\xff"}', source="x")
    with pytest.raises(InputError, match="not valid JSON.*line 1"):
        loads_bounded(b'{"a": 1,}', source="x")
    assert loads_bounded("\ufeff{}", source="x") == {}
