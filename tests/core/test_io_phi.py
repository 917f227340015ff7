"""Screening a case's own names and notes for the identifiers it carries (aooct_core.io.phi)."""
from __future__ import annotations

import pytest

from aooct_core.io.phi import (Identifier, find_identifiers, identifiers_of_case, neutral_name,
                               redact_identifiers, screen_case_names)

NAME = Identifier("PatientName", "Doe^Jane")
MRN = Identifier("PatientID", "MRN-5550123")
BORN = Identifier("PatientBirthDate", "19610704")
SUBJECT = Identifier("subject_id", "S01")
ALL = [NAME, MRN, BORN, SUBJECT]


@pytest.mark.parametrize("text, kinds", [
    ("DOE_JANE_OD", ["PatientName"]),
    ("janedoe-visit2", ["PatientName"]),          # a long component inside a token
    ("doeville", []),                               # a short component only as a whole token
    ("mrn5550123", ["PatientID"]),                  # separators do not hide a long ID
    ("MRN 5550123 blinked", ["PatientID"]),
    ("5550123", []),                                # a part of the ID is not the ID
    ("born 1961-07-04", ["PatientBirthDate"]),
    ("04.07.1961", ["PatientBirthDate"]),           # DDMMYYYY
    ("07/04/1961", ["PatientBirthDate"]),           # MMDDYYYY
    ("S01_OD", ["subject_id"]),
    ("s01-od", ["subject_id"]),                     # case-folded
    ("S010_OD", []),                                # a short ID only as whole tokens
    ("CS01_OD", []),
    ("C17-OD-2T", []),
    ("", []),
])
def test_find_identifiers_matches_tokens_not_random_substrings(text, kinds):
    assert find_identifiers(text, ALL) == kinds


def test_redact_replaces_each_run_of_identifying_tokens_and_names_the_kinds():
    text, kinds = redact_identifiers("Jane Doe, MRN-5550123, born 1961-07-04, blinked a lot", ALL)
    assert text == "[removed], born [removed], blinked a lot"
    assert kinds == ["PatientBirthDate", "PatientID", "PatientName"]
    assert redact_identifiers("nothing here", ALL) == ("nothing here", [])


def test_screen_case_names_names_kind_and_position_never_the_value():
    problems = screen_case_names("DOE_JANE_OD", ["vol_00.dcm", "MRN5550123_1.dcm"], ALL)
    assert len(problems) == 2
    assert problems[0].startswith("case_id holds the patient's PatientName")
    assert problems[1].startswith("volume 2 of 2's file name holds the patient's PatientID")
    assert "repeat2.dcm" in problems[1]
    assert find_identifiers(" ".join(problems), ALL) == []     # the values are not repeated
    assert screen_case_names("C17_OD", ["vol_00.dcm"], ALL) == []


def test_identifiers_of_case_and_values_kept_out_of_repr():
    (ident,) = identifiers_of_case({"subject_id": " S01 "})
    assert ident == SUBJECT and "S01" not in repr(ident)
    assert identifiers_of_case({"subject_id": 7}) == [] and identifiers_of_case([1]) == []


def test_identifiers_of_dicom_reads_names_ids_sequence_and_birth_date():
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from aooct_core.io.phi import identifiers_of_dicom

    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-5550123", "19610704"
    ds.OtherPatientNames = ["Roe^Janet", "Doe^J"]
    item = Dataset()
    item.PatientID = "OLD-42"
    ds.OtherPatientIDsSequence = Sequence([item])
    got = {(i.kind, i.value) for i in identifiers_of_dicom(ds)}
    assert got == {("PatientName", "Doe^Jane"), ("PatientID", "MRN-5550123"),
                   ("PatientBirthDate", "19610704"), ("OtherPatientNames", "Roe^Janet"),
                   ("OtherPatientNames", "Doe^J"), ("OtherPatientIDs", "OLD-42")}


def test_neutral_name_is_stable_keyed_and_reveals_nothing():
    a = neutral_name("DOE_JANE", key=b"k" * 16)
    assert a == neutral_name("DOE_JANE", key=b"k" * 16) and a.startswith("drop-") and len(a) == 15
    assert a != neutral_name("DOE_JANE", key=b"q" * 16) != neutral_name("ROE_JANE", key=b"k" * 16)
    assert find_identifiers(a, ALL) == []
