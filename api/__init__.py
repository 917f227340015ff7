"""The platform's front door for scanners, PACS and outside tools.

* the DICOM receiver (:mod:`api.dicom_scp`, started by ``aooct dicom-scp``), which
  de-identifies every instance as it arrives and assembles each series into a case in the
  drop (:mod:`api.dicom_cases`);
* the REST gateway (:mod:`api.gateway`, started by ``aooct api``): thin FastAPI routes over
  the application layer (:mod:`api.application`), which decides with the one role × action
  policy (:mod:`api.policy`) the review app uses too; bearer tokens from the SSO provider
  (:mod:`api.auth`) or the gateway's own after password sign-in (:mod:`api.local_tokens`,
  :mod:`api.sessions`).
"""
