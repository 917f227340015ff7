"""Case folders: atomic write, validated load, content hash."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import aooct_core.io.case as case_module
from aooct_core.geometry import Acquisition, geometry_from_acquisition
from aooct_core.io import (
    CaseExistsError, InputError, case_content_hash, load_case, write_case, write_volume,
)

SHAPE = (4, 6, 5)


def _acq(**changes) -> Acquisition:
    acq = Acquisition("case1", "subj1", "OD", (2.0, -1.0), 24.0, (1.0, 1.0), SHAPE, 2.0,
                      extra={"acquired_at": "2026-01-31"})
    return dataclasses.replace(acq, **changes)


def _vols(n=3, seed=0, dtype=np.float32):
    return (np.random.default_rng(seed).random((n, *SHAPE)) * 1000).astype(dtype)


def _listing(path):
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("fmt", ["tiff", "npy"])
def test_write_load_round_trip(tmp_path, fmt):
    vols = _vols()
    out = write_case(tmp_path / "c", _acq(), vols, fmt=fmt)
    assert out == tmp_path / "c"
    ext = ".tif" if fmt == "tiff" else ".npy"
    assert _listing(out) == ["case.json"] + [f"vol_0{i}{ext}" for i in range(3)]
    assert _listing(tmp_path) == ["c"]  # no temp folder left behind
    case = load_case(out)
    assert case.acquisition == _acq() and case.acquisition.extra == {"acquired_at": "2026-01-31"}
    assert case.geometry == geometry_from_acquisition(_acq())
    assert case.shape == (3, *SHAPE) and case.n_repeats == 3 and case.case_id == "case1"
    assert case.dropped_phi == []
    got = case.volumes()
    assert got.dtype == np.float32 and got.shape == (3, *SHAPE)
    np.testing.assert_array_equal(got, vols)
    assert isinstance(case.volume(1), np.memmap)
    assert not isinstance(load_case(out, mmap=False).volume(1), np.memmap)


def test_list_of_volumes_any_dtype_and_input_untouched(tmp_path):
    vols = [v for v in _vols(2, dtype=np.uint16)]
    before = [v.copy() for v in vols]
    write_case(tmp_path / "c", _acq(), vols)
    for v, b in zip(vols, before):
        np.testing.assert_array_equal(v, b)
    np.testing.assert_array_equal(load_case(tmp_path / "c").volumes(), np.stack(before))


def test_geometry_uses_first_volume_shape_and_override(tmp_path):
    acq = _acq(um_per_px_override=(1.5, 2.5))
    case = load_case(write_case(tmp_path / "c", acq, _vols(1)))
    assert (case.geometry.bscan_um_per_px, case.geometry.aline_um_per_px) == (1.5, 2.5)
    assert case.acquisition.sampling_px == SHAPE


def test_sampling_must_match_volumes(tmp_path):
    with pytest.raises(ValueError, match=r"sampling_px \(9, 9, 9\) differs.*dataclasses.replace"):
        write_case(tmp_path / "c", _acq(sampling_px=(9, 9, 9)), _vols())
    assert not (tmp_path / "c").exists()


def test_write_rejects_nan_and_mismatched_repeats(tmp_path):
    vols = _vols()
    vols[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        write_case(tmp_path / "c", _acq(), vols)
    with pytest.raises(ValueError, match="repeat 1 has shape"):
        write_case(tmp_path / "c", _acq(), [np.ones(SHAPE), np.ones((4, 6, 6))])
    with pytest.raises(ValueError, match="volumes is empty"):
        write_case(tmp_path / "c", _acq(), [])
    with pytest.raises(ValueError, match="fmt must be"):
        write_case(tmp_path / "c", _acq(), _vols(), fmt="png")
    assert _listing(tmp_path) == []


def test_same_case_again_is_a_no_op(tmp_path):
    write_case(tmp_path / "c", _acq(), _vols())
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").iterdir()}
    write_case(tmp_path / "c", _acq(), _vols())
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").iterdir()} == before
    assert _listing(tmp_path) == ["c"]


def test_refuses_to_overwrite_a_different_case(tmp_path):
    write_case(tmp_path / "c", _acq(), _vols(seed=0))
    with pytest.raises(CaseExistsError, match="already holds a different case.*overwrite=True"):
        write_case(tmp_path / "c", _acq(), _vols(seed=1))
    np.testing.assert_array_equal(load_case(tmp_path / "c").volumes(), _vols(seed=0))
    assert _listing(tmp_path) == ["c"]
    write_case(tmp_path / "c", _acq(), _vols(n=2, seed=1), overwrite=True)
    np.testing.assert_array_equal(load_case(tmp_path / "c").volumes(), _vols(n=2, seed=1))
    assert _listing(tmp_path) == ["c"] and len(_listing(tmp_path / "c")) == 3


def test_refuses_non_case_folder_and_file(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "precious.txt").write_text("keep me")
    with pytest.raises(CaseExistsError):
        write_case(tmp_path / "c", _acq(), _vols())
    assert _listing(tmp_path / "c") == ["precious.txt"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(CaseExistsError, match="not a folder"):
        write_case(tmp_path / "f", _acq(), _vols(), overwrite=True)
    (tmp_path / "empty").mkdir()
    write_case(tmp_path / "empty", _acq(), _vols())  # an empty folder is simply filled


def test_failure_mid_write_leaves_nothing_visible(tmp_path, monkeypatch):
    write_case(tmp_path / "c", _acq(), _vols(seed=0))
    calls = {"n": 0}

    def flaky(path, volume, *, fmt):
        calls["n"] += 1
        if calls["n"] % 2 == 0:  # the second volume of every write fails
            raise OSError("disk full")
        return write_volume(path, volume, fmt=fmt)

    monkeypatch.setattr(case_module, "write_volume", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_case(tmp_path / "c", _acq(), _vols(seed=1), overwrite=True)
    calls["n"] = 0
    with pytest.raises(OSError, match="disk full"):
        write_case(tmp_path / "new", _acq(), _vols(seed=1))
    assert _listing(tmp_path) == ["c"]  # no temp folder, no half-written "new"
    np.testing.assert_array_equal(load_case(tmp_path / "c").volumes(), _vols(seed=0))


def test_load_rejects_repeats_of_mismatched_shape(tmp_path):
    write_case(tmp_path / "c", _acq(), _vols())
    write_volume(tmp_path / "c" / "vol_02.tif", np.ones((4, 6, 7)))
    with pytest.raises(InputError, match=r"vol_02\.tif: has shape \(4, 6, 7\) but vol_00\.tif has "
                                         r"\(4, 6, 5\)"):
        load_case(tmp_path / "c")


def test_load_rejects_missing_volume_and_folder(tmp_path):
    write_case(tmp_path / "c", _acq(), _vols())
    (tmp_path / "c" / "vol_01.tif").unlink()
    with pytest.raises(InputError, match="vol_01.tif.*does not exist"):
        load_case(tmp_path / "c")
    with pytest.raises(InputError, match="case folder does not exist"):
        load_case(tmp_path / "nowhere")


def test_load_rejects_bad_case_json(tmp_path):
    write_case(tmp_path / "c", _acq(), _vols())
    data = json.loads((tmp_path / "c" / "case.json").read_text())
    data["eye"] = "right"
    (tmp_path / "c" / "case.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="field 'eye'"):
        load_case(tmp_path / "c" / "case.json")


def test_volume_changed_after_load(tmp_path):
    case = load_case(write_case(tmp_path / "c", _acq(), _vols()))
    write_volume(tmp_path / "c" / "vol_00.tif", np.ones((2, 2, 2)))
    with pytest.raises(InputError, match="the file changed"):
        case.volumes()


def test_content_hash_stable_and_sensitive(tmp_path):
    a = case_content_hash(write_case(tmp_path / "a", _acq(), _vols()))
    b = case_content_hash(write_case(tmp_path / "b", _acq(), _vols()))
    assert a == b and len(a) == 64 and int(a, 16) >= 0
    # reformatting case.json does not change the hash
    path = tmp_path / "b" / "case.json"
    path.write_text(json.dumps(dict(reversed(list(json.loads(path.read_text()).items()))), indent=7))
    assert case_content_hash(tmp_path / "b") == a
    (tmp_path / "b" / "unlisted.txt").write_text("ignored")
    assert case_content_hash(tmp_path / "b") == a
    c = case_content_hash(write_case(tmp_path / "c", _acq(), _vols(seed=5)))
    d = case_content_hash(write_case(tmp_path / "d", _acq(eye="OS"), _vols()))
    assert len({a, c, d}) == 3


def test_content_hash_of_invalid_case(tmp_path):
    with pytest.raises(InputError, match="case.json not found"):
        case_content_hash(tmp_path)


@pytest.mark.parametrize("first", ["aooct_core.casefile", "aooct_core.io", "aooct_core.io.case"])
def test_import_order_has_no_cycle(first):
    import subprocess
    import sys

    code = f"import {first}; from aooct_core.io import load_case; from aooct_core.casefile import parse_case_json"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_errors_pickle_and_read_as_one_line(tmp_path):
    import pickle

    err = CaseExistsError(tmp_path / "c", "already holds a different case", problems=["a", "b"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CaseExistsError and str(back) == str(err) and back.problems == ["a", "b"]
    assert isinstance(back, ValueError) and back.path == tmp_path / "c"
