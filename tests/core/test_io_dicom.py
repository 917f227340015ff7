"""DICOM Ophthalmic Tomography: frames are B-scans, PHI is never read, only reported."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.extra import numpy as hnp
from pydicom.datadict import keyword_dict
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from aooct_core.casefile import case_json_dict
from aooct_core.geometry import Acquisition
from aooct_core.io import (
    InputError, deidentify_dicom, load_case, probe_volume, read_dicom_volume, read_volume,
)
from aooct_core.io.dicom import OPT_SOP_CLASS_UID, PHI_KEYWORDS

PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-123456",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "PatientAddress": "1 Main Street, Springfield",
    "OtherPatientIDs": "OLD-987",
    "InstitutionName": "Eye Hospital",
    "ReferringPhysicianName": "Who^Doctor",
    "AccessionNumber": "ACC42",
    "StudyID": "STUDY7",
}


def make_opt_dicom(path: Path, volume: np.ndarray, *, phi: bool = True,
                   pixel_spacing_mm=(0.002, 0.0025), slice_thickness_mm=0.003,
                   functional_groups: bool = False, n_frames_tag: bool = True) -> Path:
    """Write ``volume`` (frames, rows, cols) uint16 as an uncompressed OPT file."""
    volume = np.asarray(volume, dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPT_SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = OPT_SOP_CLASS_UID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OPT"
    if phi:
        for key, value in PHI.items():
            setattr(ds, key, value)
        ref = Dataset()
        ref.PatientName = "Nested^Name"  # PHI hidden inside a sequence must be found too
        ds.ReferencedPatientSequence = Sequence([ref])
    if volume.ndim == 3:
        frames, rows, cols = volume.shape
        if n_frames_tag:
            ds.NumberOfFrames = frames
    else:
        rows, cols = volume.shape
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    measures = Dataset()
    measures.PixelSpacing = [f"{pixel_spacing_mm[0]:g}", f"{pixel_spacing_mm[1]:g}"]
    measures.SliceThickness = f"{slice_thickness_mm:g}"
    if functional_groups:
        group = Dataset()
        group.PixelMeasuresSequence = Sequence([measures])
        ds.SharedFunctionalGroupsSequence = Sequence([group])
    else:
        ds.PixelSpacing = measures.PixelSpacing
        ds.SliceThickness = measures.SliceThickness
    ds.PixelData = volume.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


VOL = (np.arange(3 * 6 * 5) * 37 % 4000).reshape(3, 6, 5).astype(np.uint16)


def test_phi_keywords_are_real_dicom_keywords():
    assert PHI_KEYWORDS <= set(keyword_dict)


def test_reads_frames_as_bscans_and_reports_dropped_phi(tmp_path):
    path = make_opt_dicom(tmp_path / "v.dcm", VOL)
    result = read_dicom_volume(path)
    assert result.volume.dtype == np.float32 and result.volume.shape == (3, 6, 5)
    np.testing.assert_array_equal(result.volume, VOL)
    assert set(result.dropped_phi) == set(PHI)
    # nothing identifying is carried in what we return
    text = repr(dataclasses.asdict(result)) + json.dumps(result.spacing_um)
    for value in list(PHI.values()) + ["Nested^Name"]:
        assert value not in text
    assert result.spacing_um == pytest.approx({"depth": 2.0, "aline": 2.5, "bscan": 3.0})
    np.testing.assert_array_equal(read_volume(path), VOL)
    info = probe_volume(path)
    assert info.shape == (3, 6, 5) and info.format == "dicom"
    assert set(info.dropped_phi) == set(PHI)


def test_phi_inside_sequences_is_found(tmp_path):
    path = make_opt_dicom(tmp_path / "v.dcm", VOL, phi=False)
    ds = pydicom.dcmread(path)
    ref = pydicom.Dataset()
    ref.PatientID = "hidden"
    ds.ReferencedPatientSequence = pydicom.Sequence([ref])
    ds.save_as(path)
    assert read_dicom_volume(path).dropped_phi == ("PatientID",)


def test_no_phi_reports_nothing(tmp_path):
    assert read_dicom_volume(make_opt_dicom(tmp_path / "v.dcm", VOL, phi=False)).dropped_phi == ()


def test_spacing_from_shared_functional_groups(tmp_path):
    path = make_opt_dicom(tmp_path / "v.dcm", VOL, functional_groups=True,
                          pixel_spacing_mm=(0.0015, 0.001), slice_thickness_mm=0.002)
    assert read_dicom_volume(path).spacing_um == pytest.approx(
        {"depth": 1.5, "aline": 1.0, "bscan": 2.0})


def test_case_of_dicom_volumes_records_dropped_phi(tmp_path):
    for i in range(2):
        make_opt_dicom(tmp_path / f"v{i}.dcm", VOL + i)
    acq = Acquisition("d1", "s1", "OS", (0.0, 3.0), 24.0, (1.0, 1.0), (3, 6, 5), 2.0)
    (tmp_path / "case.json").write_text(json.dumps(case_json_dict(acq, ["v0.dcm", "v1.dcm"])))
    case = load_case(tmp_path)
    assert case.dropped_phi == sorted(PHI)
    assert case.file_spacing_um == pytest.approx({"depth": 2.0, "aline": 2.5, "bscan": 3.0})
    np.testing.assert_array_equal(case.volumes(), np.stack([VOL, VOL + 1]))


def test_deidentify_writes_a_copy_without_phi(tmp_path):
    src = make_opt_dicom(tmp_path / "v.dcm", VOL)
    removed = deidentify_dicom(src, tmp_path / "clean.dcm")
    assert set(removed) == set(PHI)
    raw = (tmp_path / "clean.dcm").read_bytes()
    for value in list(PHI.values()) + ["Nested^Name"]:
        if len(value) > 2:  # one-letter values (PatientSex "F") occur in any binary
            assert value.encode() not in raw
    clean = read_dicom_volume(tmp_path / "clean.dcm")
    assert clean.dropped_phi == ()
    np.testing.assert_array_equal(clean.volume, VOL)


# ----------------------------------------------------------------------------- bad input
def test_truncated_dicom(tmp_path):
    path = make_opt_dicom(tmp_path / "v.dcm", np.ones((8, 40, 40)))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated") as info:
        probe_volume(path)
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match="truncated"):
        read_volume(path)


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter:UserWarning")
def test_corrupt_dicom(tmp_path):
    (tmp_path / "v.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    with pytest.raises(InputError, match="not a readable DICOM|no image"):
        read_volume(tmp_path / "v.dcm")


def test_not_dicom(tmp_path):
    (tmp_path / "v.dcm").write_bytes(b"just some text, not a DICOM file at all")
    with pytest.raises(InputError, match="not a readable DICOM"):
        read_volume(tmp_path / "v.dcm")


def test_single_frame_dicom_is_wrong_dimensionality(tmp_path):
    path = make_opt_dicom(tmp_path / "v.dcm", VOL[0], n_frames_tag=False)
    with pytest.raises(InputError, match="2-D"):
        read_volume(path)


def test_dicom_without_extension_is_recognised(tmp_path):
    path = make_opt_dicom(tmp_path / "IM0001", VOL)
    np.testing.assert_array_equal(read_volume(path), VOL)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vol=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=3, max_dims=3, min_side=2, max_side=6)))
def test_round_trip_arbitrary_volumes(tmp_path_factory, vol):
    path = make_opt_dicom(tmp_path_factory.mktemp("dcm") / "v.dcm", vol, phi=False)
    back = read_volume(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, vol.astype(np.float32))
    assert probe_volume(path).shape == vol.shape
