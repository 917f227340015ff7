"""Upload validation: zip-slip, links, oversize files, bad volumes, atomic drop."""
from __future__ import annotations

import json
import stat
import zipfile

import numpy as np
import pytest

from aooct_core.io.errors import InputError
from api.uploads import (UploadLimits, check_zip_members, drop_for_ingest, extract_zip_safely,
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


# --- bombs and the limited validator process (issue 17) ---------------------------------

GIB = 1024**3


def _zip_bomb(path, *, n_bytes=GIB, name="C1/vol_00.npy"):
    """A zip whose one member is ``n_bytes`` of zeros, written in chunks (little memory)."""
    chunk = bytes(16 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("C1/case.json", b"{}")
        with zf.open(name, "w", force_zip64=True) as fh:
            for _ in range(n_bytes // len(chunk)):
                fh.write(chunk)
    return path


def _tiff_of_zeros(path, shape, *, tile=(1024, 1024)):
    """A deflate TIFF of zeros declaring ``shape`` (uint8): one tile encoded once, repeated."""
    import itertools
    import zlib

    import tifffile

    n_tiles = shape[0] * -(-shape[1] // tile[0]) * -(-shape[2] // tile[1])
    segment = zlib.compress(bytes(tile[0] * tile[1]), 9)
    tifffile.imwrite(path, data=itertools.repeat(segment, n_tiles), shape=shape, dtype="uint8",
                     tile=tile, compression="zlib", photometric="minisblack")
    return path


def _tiff_case(folder, shape):
    folder.mkdir(parents=True)
    _tiff_of_zeros(folder / "vol_00.tif", shape)
    (folder / "case.json").write_text(json.dumps({
        "schema_version": 1, "case_id": "BOMB", "subject_id": "S1", "eye": "OD",
        "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
        "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0,
        "volumes": ["vol_00.tif"]}))
    return folder


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    return _zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.zip")


def test_zip_bomb_is_refused_before_extraction(zip_bomb, tmp_path):
    assert zip_bomb.stat().st_size < 8 * 1024**2  # ~5 MB that would expand to 1 GiB
    with pytest.raises(InputError, match="zip bomb") as err:
        check_zip_members(zip_bomb)
    assert "1024.0 MB" in str(err.value)
    from api.upload_worker import validate_in_worker

    with pytest.raises(InputError, match="zip bomb"):
        validate_in_worker(zip_bomb, kind="zip", work_dir=tmp_path / "w")
    assert not (tmp_path / "w" / "x").exists()  # nothing was extracted


def test_zip_member_count_and_total_size_are_checked_before_extraction(tmp_path):
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(5):
            zf.writestr(f"C1/f{i}.bin", b"x" * 100)
    with pytest.raises(InputError) as err:
        check_zip_members(z, limits=UploadLimits(max_files=3, max_total_bytes=300))
    assert "5 files, over the limit of 3" in str(err.value) and "uncompressed" in str(err.value)


def test_ordinary_compression_is_not_mistaken_for_a_bomb(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.random(2 * 1024**2) * 16).astype(np.uint8).tobytes()  # 4 bits of entropy per byte
    z = tmp_path / "ok.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("C1/vol.bin", data)
    assert check_zip_members(z) == ["C1/vol.bin"]


def test_tiff_bomb_is_validated_in_the_worker_not_in_this_process(tmp_path):
    """0.5-2 MB declaring 4 x 20000 x 20000 px: refused within a 1 GB budget, this process stays small."""
    import resource

    from api.upload_worker import validate_in_worker

    folder = _tiff_case(tmp_path / "src", (4, 20000, 20000))
    assert (folder / "vol_00.tif").stat().st_size < 4 * 1024**2
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # RUSAGE_CHILDREN is the peak of every child this pytest process ever reaped (earlier
    # tests start whole `aooct` processes): it can only speak for the worker when lower.
    children_before_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with pytest.raises(InputError) as err:
        validate_in_worker(folder, kind="folder", work_dir=tmp_path / "w",
                           limits=UploadLimits(worker_memory_bytes=GIB))
    # Either the reader refuses the declared size or the worker runs out of its budget;
    # both name the file, and neither happens in this (the serving) process.
    assert err.value.path.name == "vol_00.tif"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb < 200 * 1024
    if children_before_kb < 1.1 * GIB / 1024:
        assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1.1 * GIB / 1024


def test_worker_memory_budget_gives_a_clear_error(tmp_path):
    """A plausible volume (4 x 4096 x 4096, 256 MB as float32) against a 256 MB budget, then the default."""
    from api.upload_worker import ValidationBudgetError, validate_in_worker

    folder = _tiff_case(tmp_path / "src", (4, 4096, 4096))
    with pytest.raises(ValidationBudgetError) as err:
        validate_in_worker(folder, kind="folder", work_dir=tmp_path / "w",
                           limits=UploadLimits(worker_memory_bytes=256 * 1024**2))
    assert "file too large to validate within the 0.25 GB memory budget" in str(err.value)
    assert err.value.path.name == "vol_00.tif"
    case = validate_in_worker(folder, kind="folder", work_dir=tmp_path / "w2")
    assert (case.case_id, case.volume_shape_px) == ("BOMB", (4, 4096, 4096))


def test_worker_time_budget_and_valid_zip_through_the_worker(tmp_path):
    from api.upload_worker import ValidationBudgetError, validate_in_worker

    z = _zip(tmp_path / "c.zip", _case_folder(tmp_path / "src"))
    with pytest.raises(ValidationBudgetError, match="0 s time budget|time budget"):
        validate_in_worker(z, kind="zip", work_dir=tmp_path / "slow",
                           limits=UploadLimits(worker_wall_s=0.01))
    case = validate_in_worker(z, kind="zip", work_dir=tmp_path / "w")
    assert (case.case_id, case.n_volumes) == ("C1", 2)
    assert case.folder == tmp_path / "w" / "x" / "C1"
    with pytest.raises(InputError, match="non-finite"):
        validate_in_worker(_case_folder(tmp_path / "nan", bad="nan"), kind="folder",
                           work_dir=tmp_path / "w3")
