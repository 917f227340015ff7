"""Upload validation: zip-slip, links, oversize files, bad volumes, atomic drop."""
from __future__ import annotations

import json
import stat
import zipfile

import numpy as np
import pytest

from aooct_core.io.errors import InputError
from ui.upload import (UploadLimits, check_zip_members, drop_for_ingest, extract_zip_safely,
                       validate_case_folder)


def _case_folder(folder, *, shape=(8, 16, 8), n=2, bad=None):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        vol = rng.random(shape).astype(np.float32)
        if bad == "nan" and i == 1:
            vol[0, 0, 0] = np.nan
        if bad == "shape" and i == 1:
            vol = rng.random((shape[0], shape[1], shape[2] + 1)).astype(np.float32)
        np.save(folder / f"vol_{i:02d}.npy", vol)
        names.append(f"vol_{i:02d}.npy")
    (folder / "case.json").write_text(json.dumps({
        "schema_version": 1, "case_id": "C1", "subject_id": "S1", "eye": "OD",
        "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
        "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0, "volumes": names}))
    return folder


def _zip(path, folder, extra=()):
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"C1/{p.name}")
        for name, data in extra:
            zf.writestr(name, data)
    return path


def test_valid_zip_is_extracted_validated_and_dropped(tmp_path):
    z = _zip(tmp_path / "c.zip", _case_folder(tmp_path / "src"))
    folder = extract_zip_safely(z, tmp_path / "x")
    case = validate_case_folder(folder)
    assert (case.case_id, case.n_volumes, case.volume_shape_px) == ("C1", 2, (8, 16, 8))
    where = drop_for_ingest(case, str(tmp_path / "drop"))
    assert sorted(p.name for p in (tmp_path / "drop" / "C1").iterdir()) == ["case.json", "vol_00.npy", "vol_01.npy"]
    assert where.endswith("C1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".aooct-upload")]
    with pytest.raises(InputError, match="already in the drop folder"):
        drop_for_ingest(case, str(tmp_path / "drop"))


@pytest.mark.parametrize("name, message", [
    ("../evil.txt", "zip-slip"), ("/etc/evil", "absolute"), ("C1/../../x", "zip-slip"),
    ("C:/x", "absolute"), ("a\\..\\b", "backslashes"),
])
def test_zip_slip_members_are_refused(tmp_path, name, message):
    z = _zip(tmp_path / "c.zip", _case_folder(tmp_path / "src"), extra=[(name, b"x")])
    with pytest.raises(InputError, match=message) as info:
        extract_zip_safely(z, tmp_path / "x")
    assert "c.zip" in str(info.value)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*"))


def test_symlink_and_oversize_members_are_refused(tmp_path):
    z = tmp_path / "l.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("C1/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("C1/big.bin", b"0" * 5000)
    with pytest.raises(InputError) as err:
        check_zip_members(z, limits=UploadLimits(max_file_bytes=1000))
    assert "symbolic link" in str(err.value) and "per-file limit" in str(err.value)
    assert len(err.value.problems) == 2


def test_not_a_zip_and_two_cases(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"nope")
    with pytest.raises(InputError, match="not a readable zip"):
        check_zip_members(tmp_path / "junk.zip")
    z = _zip(tmp_path / "c.zip", _case_folder(tmp_path / "src"), extra=[("other/case.json", b"{}")])
    with pytest.raises(InputError, match="exactly one case.json"):
        extract_zip_safely(z, tmp_path / "x")


@pytest.mark.parametrize("bad, message", [("nan", "non-finite"), ("shape", "share one")])
def test_bad_volumes_are_refused(tmp_path, bad, message):
    folder = _case_folder(tmp_path / "src", bad=bad)
    with pytest.raises(InputError, match=message):
        validate_case_folder(folder)


def test_missing_case_json_and_oversize_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no case.json"):
        validate_case_folder(tmp_path / "empty")
    folder = _case_folder(tmp_path / "src")
    with pytest.raises(InputError, match="per-file limit"):
        validate_case_folder(folder, limits=UploadLimits(max_file_bytes=100))


def test_drop_to_object_store_writes_case_json_last(tmp_path):
    from resources.object_store import InMemoryObjectStore

    case = validate_case_folder(_case_folder(tmp_path / "src"))
    order = []

    class Recording(InMemoryObjectStore):
        def put_bytes(self, key, data):
            order.append(key)
            super().put_bytes(key, data)

    store = Recording()
    drop_for_ingest(case, "drop", store=store)
    assert order[-1] == "drop/C1/case.json" and len(order) == 3
