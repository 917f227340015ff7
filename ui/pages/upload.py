"""Upload (Tech): a case zip or a folder on the server, validated before it is dropped for ingest."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import streamlit as st

from aooct_core.io.errors import InputError
from ui import data
from ui.auth import audit, authorize, require_page
from api.uploads import UploadLimits, drop_for_ingest
from api.upload_worker import validate_in_worker

user = require_page("upload")
st.title("Upload a case")
limits = UploadLimits.from_env()
cfg = data.ui_config()
st.caption(
    f"A case folder holds case.json and its volumes. Limits: "
    f"{limits.max_file_bytes / 1024**2:.0f} MB per file, {limits.max_total_bytes / 1024**2:.0f} MB "
    f"in total, {limits.max_files} files; validation may use "
    f"{limits.worker_memory_bytes / 1024**3:.3g} GB of memory. Valid cases go to {cfg.drop}."
)


def _shown(path: Path, work_dir: Path, name: str) -> str:
    """A file as the user knows it: inside their zip, not in the server's temporary folder."""
    extracted = work_dir / "x"
    if path.is_relative_to(extracted):
        return str(path.relative_to(extracted))
    return name if path.is_relative_to(work_dir) else str(path)


def _validate_and_drop(source: Path, *, kind: str, name: str, work_dir: Path) -> None:
    """Validate in the limited worker process (never here), then drop for ingest."""
    if not authorize("upload_case", action="upload", detail={"source": name}):
        return
    try:
        with st.spinner(f"Validating {name}…"):
            case = validate_in_worker(source, kind=kind, work_dir=work_dir, limits=limits)
        if cfg.drop.startswith("s3://"):
            where = drop_for_ingest(case, "", store=data.get_drop_store())
        else:
            where = drop_for_ingest(case, cfg.drop)
    except InputError as exc:
        audit(user.username, "upload_rejected", detail={"source": name, "problems": exc.problems})
        st.error(f"Rejected {name}: {_shown(exc.path, work_dir, name)}: {exc.problem}")
        return
    audit(user.username, "upload", case_id=case.case_id,
          detail={"source": name, "dropped_at": where, "n_volumes": case.n_volumes,
                  "volume_shape_px": list(case.volume_shape_px), "bytes": case.total_bytes})
    from resources.orchestrator import sensor_daemon_state

    daemon = sensor_daemon_state()
    if daemon.running:
        st.success(f"Case {case.case_id} ({case.n_volumes} volume(s) of {case.volume_shape_px}) "
                   f"is queued for ingest at {where}.")
    else:  # nothing would pick it up: say so instead of a "queued" that never moves
        st.warning(f"Case {case.case_id} ({case.n_volumes} volume(s) of {case.volume_shape_px}) is in "
                   f"the drop at {where}, but it will not be processed yet: {daemon.detail}.")


tab_zip, tab_folder = st.tabs(["Zip file", "Folder on the server"])
with tab_zip:
    uploaded = st.file_uploader("Case zip", type=["zip"], key="upload_zip")
    if uploaded is not None and st.button("Validate and queue", key="upload_zip_go"):
        with tempfile.TemporaryDirectory(prefix="aooct-upload-") as tmp:
            zip_path = Path(tmp) / "upload.zip"
            with open(zip_path, "wb") as fh:
                shutil.copyfileobj(uploaded, fh)
            _validate_and_drop(zip_path, kind="zip", name=uploaded.name, work_dir=Path(tmp))
with tab_folder:
    # Reading server folders is limited to AOOCT_UPLOAD_ROOT (e.g. the acquisition share),
    # so the upload page cannot be used to copy arbitrary server files into the pipeline.
    root = os.environ.get("AOOCT_UPLOAD_ROOT")
    if not root:
        st.info("Set AOOCT_UPLOAD_ROOT to the folder that holds acquisitions to queue cases "
                "straight from the server.")
    else:
        path = st.text_input(f"Case folder under {root}", key="upload_folder")
        if st.button("Validate and queue", key="upload_folder_go") and path:
            folder = Path(root, path).expanduser().resolve()
            if not folder.is_relative_to(Path(root).expanduser().resolve()):
                audit(user.username, "upload_rejected", allowed=False,
                      detail={"source": path, "problems": ["outside AOOCT_UPLOAD_ROOT"]})
                st.error(f"Rejected: {path} is outside {root}.")
            else:
                with tempfile.TemporaryDirectory(prefix="aooct-upload-") as tmp:
                    _validate_and_drop(folder, kind="folder", name=path, work_dir=Path(tmp))
