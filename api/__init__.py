"""The platform's front door for scanners, PACS and outside tools.

Now: the DICOM receiver (:mod:`api.dicom_scp`, started by ``aooct dicom-scp``), which
de-identifies every instance as it arrives and assembles each series into a case in the
drop (:mod:`api.dicom_cases`). The REST gateway (FastAPI) joins it here.
"""
