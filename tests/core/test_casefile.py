"""case.json schema: valid files parse, and every kind of mistake names the field and the fix."""
from __future__ import annotations

import json

import pytest

from aooct_core.casefile import (
    CaseSpec, case_json_dict, parse_case_bytes, parse_case_json, validate_case_dict,
    write_case_json,
)
from aooct_core.geometry import Acquisition
from aooct_core.io import InputError


def _valid() -> dict:
    return {
        "schema_version": 1,
        "case_id": "S001_OD_T2",
        "subject_id": "S001",
        "eye": "OD",
        "location_deg": {"horizontal": 2.0, "vertical": -1.5},
        "axial_length_mm": 24.0,
        "scan_field_deg": {"bscan": 1.0, "aline": 1.5},
        "depth_um_per_px": 2.0,
        "volumes": ["vol_00.tif", "vol_01.tif"],
    }


def _write(folder, data, *, touch=True):
    (folder / "case.json").write_text(json.dumps(data))
    if touch:
        for name in data.get("volumes", []):
            if isinstance(name, str):
                (folder / name).write_bytes(b"x")
    return folder / "case.json"


def _problem(data, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        validate_case_dict(data, **kwargs)
    return str(info.value)


def test_valid_case_parses(tmp_path):
    data = _valid() | {"um_per_px": {"bscan": 2.0, "aline": 2.5}, "acquired_at": "2026-01-31",
                       "notes": "fixation good"}
    spec = parse_case_json(_write(tmp_path, data))
    assert spec == CaseSpec(
        case_id="S001_OD_T2", subject_id="S001", eye="OD", location_deg=(2.0, -1.5),
        axial_length_mm=24.0, scan_field_deg=(1.0, 1.5), depth_um_per_px=2.0,
        volume_files=("vol_00.tif", "vol_01.tif"), um_per_px_override=(2.0, 2.5),
        acquired_at="2026-01-31", notes="fixation good")
    acq = spec.acquisition((8, 16, 4))
    assert acq.sampling_px == (8, 16, 4)
    assert acq.extra == {"acquired_at": "2026-01-31", "notes": "fixation good"}
    # the folder itself is accepted too
    assert parse_case_json(tmp_path) == spec


def test_round_trip_through_case_json_dict(tmp_path):
    acq = Acquisition("c1", "s1", "OS", (-3.0, 1.0), 23.5, (1.0, 2.0), (4, 5, 6), 1.5,
                      um_per_px_override=(1.1, 1.2), extra={"notes": "n"})
    data = case_json_dict(acq, ["a.npy"])
    json.dumps(data)  # JSON-serialisable
    (tmp_path / "a.npy").write_bytes(b"x")
    write_case_json(tmp_path / "case.json", data)
    back = parse_case_json(tmp_path / "case.json").acquisition((4, 5, 6))
    assert back == acq and back.extra == acq.extra


def test_eye_message_names_field_and_fix():
    msg = _problem(_valid() | {"eye": "right"})
    assert "field 'eye' must be \"OD\" or \"OS\"; got \"right\" — use OD for the right eye" in msg
    assert msg.startswith("case.json: ")


def test_unknown_field_is_named_with_suggestion():
    data = _valid()
    data["axial_lenght_mm"] = data.pop("axial_length_mm")
    msg = _problem(data)
    assert "unknown field 'axial_lenght_mm'" in msg and "did you mean 'axial_length_mm'" in msg
    assert "field 'axial_length_mm' is missing" in msg


def test_unknown_nested_field_is_named():
    msg = _problem(_valid() | {"location_deg": {"horizontal": 1.0, "vertical": 0.0, "vert": 0}})
    assert "unknown field 'location_deg.vert'" in msg


@pytest.mark.parametrize("value", [17.9, 35.1, 24000.0, float("nan")])
def test_axial_length_range(value):
    msg = _problem(_valid() | {"axial_length_mm": value})
    assert "field 'axial_length_mm' must be >= 18 and <= 35" in msg and "in mm" in msg


@pytest.mark.parametrize("key", ["horizontal", "vertical"])
def test_location_within_40_deg(key):
    data = _valid()
    data["location_deg"][key] = 41.0
    assert f"field 'location_deg.{key}' must be >= -40 and <= 40" in _problem(data)


@pytest.mark.parametrize("path,value,bounds", [
    (("depth_um_per_px",), 0.0, ">= 0.1 and <= 20"), (("depth_um_per_px",), -2.0, ">= 0.1"),
    (("scan_field_deg", "bscan"), 0.0, "> 0 and <= 30"), (("um_per_px", "aline"), -1.0, ">= 0.1"),
])
def test_positive_fields(path, value, bounds):
    data = _valid() | {"um_per_px": {"bscan": 1.0, "aline": 1.0}}
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert f"field '{'.'.join(path)}' must be {bounds}" in _problem(data)


def test_number_given_as_string_says_remove_quotes():
    assert "write it without quotes" in _problem(_valid() | {"axial_length_mm": "24.0"})


def test_bool_is_not_a_number():
    assert "field 'depth_um_per_px' must be a number" in _problem(_valid() | {"depth_um_per_px": True})


def test_schema_version():
    assert "field 'schema_version' must be 1" in _problem(_valid() | {"schema_version": 2})


@pytest.mark.parametrize("volumes", [[], "vol_00.tif", None])
def test_volumes_must_be_non_empty_list(volumes):
    assert "field 'volumes' must be a non-empty list" in _problem(_valid() | {"volumes": volumes})


@pytest.mark.parametrize("name,text", [
    ("../outside.tif", "relative to the case folder"),
    ("/abs/vol.tif", "relative to the case folder"),
    ("vol.jpg", "unsupported extension"),
])
def test_volume_names(name, text):
    assert text in _problem(_valid() | {"volumes": [name]})


def test_duplicate_volume():
    assert "more than once" in _problem(_valid() | {"volumes": ["a.tif", "a.tif"]})


def test_listed_volume_must_exist(tmp_path):
    path = _write(tmp_path, _valid(), touch=False)
    (tmp_path / "vol_00.tif").write_bytes(b"x")
    with pytest.raises(InputError) as info:
        parse_case_json(path)
    assert "\"vol_01.tif\"" in str(info.value) and "does not exist" in str(info.value)
    parse_case_json(path, check_files=False)  # header-only validation still possible


@pytest.mark.parametrize("case_id", ["", "has space", "a/b", "../x", 7])
def test_ids_are_plain(case_id):
    assert "field 'case_id' must be 1-128 characters" in _problem(_valid() | {"case_id": case_id})


def test_acquired_at_must_be_iso():
    assert "field 'acquired_at' must be an ISO 8601" in _problem(_valid() | {"acquired_at": "31/01/2026"})
    validate_case_dict(_valid() | {"acquired_at": "2026-01-31T09:30:00"})


def test_all_problems_reported_at_once():
    with pytest.raises(InputError) as info:
        validate_case_dict(_valid() | {"eye": "L", "axial_length_mm": 5})
    assert len(info.value.problems) == 2


def test_invalid_json_file(tmp_path):
    (tmp_path / "case.json").write_text('{"case_id": "a",}')
    with pytest.raises(InputError, match=r"case\.json: is not valid JSON.*line 1"):
        parse_case_json(tmp_path)


def test_missing_and_empty_case_json(tmp_path):
    with pytest.raises(InputError, match="case.json not found"):
        parse_case_json(tmp_path)
    (tmp_path / "case.json").write_text("  ")
    with pytest.raises(InputError, match="is empty"):
        parse_case_json(tmp_path)


def test_top_level_must_be_object():
    with pytest.raises(InputError, match="must hold a JSON object"):
        validate_case_dict([1, 2])


def test_case_json_dict_rejects_bad_acquisition():
    acq = Acquisition("c1", "s1", "left", (0.0, 0.0), 24.0, (1.0, 1.0), (2, 2, 2), 2.0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="field 'eye'"):
        case_json_dict(acq, ["v.tif"])


def test_write_case_json_is_atomic_and_validates(tmp_path):
    target = tmp_path / "case.json"
    target.write_text("old")
    with pytest.raises(InputError):
        write_case_json(target, _valid() | {"eye": "X"})
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.json"]


# ----------------------------------------------------------------------------- issue 17
@pytest.mark.parametrize("field,value,bounds", [
    ("um_per_px", {"bscan": 1000.0, "aline": 1000.0}, ">= 0.1 and <= 20"),  # mm given as µm
    ("um_per_px", {"bscan": 0.001, "aline": 1.0}, ">= 0.1 and <= 20"),      # px/µm
    ("depth_um_per_px", 100.0, ">= 0.1 and <= 20"),
    ("scan_field_deg", {"bscan": 40.0, "aline": 1.0}, "> 0 and <= 30"),
])
def test_physically_implausible_sampling_refused(field, value, bounds):
    problem = _problem(_valid() | {field: value})
    assert f"must be {bounds}" in problem


def test_um_per_px_1000_refused_at_validation(tmp_path):
    path = _write(tmp_path, _valid() | {"um_per_px": {"bscan": 1000, "aline": 1000}})
    with pytest.raises(InputError, match=r"um_per_px\.bscan' must be >= 0\.1 and <= 20; got 1000"):
        parse_case_json(path)


def test_deep_nesting_is_an_input_error(tmp_path):
    (tmp_path / "case.json").write_text('{"notes": ' + "[" * 10_000 + "]" * 10_000 + "}")
    with pytest.raises(InputError, match="10001 levels deep"):
        parse_case_json(tmp_path)


def test_5000_digit_number_is_an_input_error(tmp_path):
    text = json.dumps(_valid()).replace('"axial_length_mm": 24.0', '"axial_length_mm": ' + "2" * 5000)
    (tmp_path / "case.json").write_text(text)
    with pytest.raises(InputError, match="number of 5000 characters"):
        parse_case_json(tmp_path, check_files=False)


def test_huge_values_in_a_dict_do_not_break_messages():
    # validate_case_dict may get a dict parsed elsewhere (an upload, the drop sensor)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    problem = _problem(_valid() | {"notes": deep, "axial_length_mm": 10 ** 400,
                                   "case_id": "x" * 10_000})
    assert "field 'notes' must be a string; got [[[…]]]" in problem
    assert "axial_length_mm' must be >= 18 and <= 35; got inf" in problem
    assert len(problem) < 2000


def test_many_volumes_and_problems_are_bounded():
    problem = _problem(_valid() | {"volumes": ["a.txt"] * 1001})
    assert "lists 1001 files" in problem
    with pytest.raises(InputError) as info:
        validate_case_dict(_valid() | {"volumes": [f"v{i}.txt" for i in range(500)]})
    assert len(info.value.problems) == 21 and info.value.problems[-1] == "and 480 more problems"


def test_parse_case_bytes():
    data = json.dumps(_valid()).encode()
    assert parse_case_bytes(data, source="s3://drop/c1/case.json") == _valid()
    with pytest.raises(InputError, match=r"s3://drop/c1/case.json: .*more than the 1.0 MiB"):
        parse_case_bytes(b" " * (2 << 20), source="s3://drop/c1/case.json")
    with pytest.raises(InputError, match="field 'eye'"):
        parse_case_bytes(json.dumps(_valid() | {"eye": "L"}), source="x")


def test_intensity_scale_is_declared_or_refused_with_the_choices():
    """Issue 16: how the volumes are stored can be declared in case.json."""
    import json as _json

    from aooct_core.casefile import validate_case_dict
    from aooct_core.io import InputError as _InputError
    base = {"schema_version": 1, "case_id": "C1", "subject_id": "S1", "eye": "OD",
            "location_deg": {"horizontal": 2.0, "vertical": 0.0}, "axial_length_mm": 24.0,
            "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0,
            "volumes": ["v.tif"]}
    assert validate_case_dict({**base, "intensity_scale": "amplitude"}).intensity_scale == "amplitude"
    assert validate_case_dict(base).intensity_scale is None
    with pytest.raises(_InputError, match="intensity_scale.*'db'"):
        validate_case_dict(_json.loads(_json.dumps({**base, "intensity_scale": "linear"})))
