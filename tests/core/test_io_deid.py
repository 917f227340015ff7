"""De-identification of DICOM bytes: bounded reading, errors that name the file as received."""
from __future__ import annotations

import pytest

from aooct_core.io import InputError
from aooct_core.io.deid import deidentify_dicom_bytes

KEY = b"k" * 32


def test_bytes_that_are_not_dicom_are_refused_naming_the_file_as_received():
    with pytest.raises(InputError) as err:
        deidentify_dicom_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64, uid_key=KEY,
                               source="s3://drop/scan/vol_00.dcm")
    assert str(err.value).startswith("s3://drop/scan/vol_00.dcm: ")
    assert "aooct-deid-" not in str(err.value)


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        deidentify_dicom_bytes(b"", uid_key=b"short")
