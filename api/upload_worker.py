"""Validate an upload in a child process with memory, CPU and time limits.

A few hundred kilobytes can declare gigabytes: a deflate TIFF of zeros with huge
dimensions, a zip of one zero-filled file. Decoding such a file inside the Streamlit
process would take the app down for every user, so :func:`validate_in_worker` runs
:func:`api.uploads.extract_zip_safely` and :func:`api.uploads.validate_case_folder` in
``python -m api.upload_worker``, which limits itself before importing any reader:

* address space (``RLIMIT_AS``) to ``limits.worker_memory_bytes`` — an allocation over it
  raises ``MemoryError`` in the child, which reports it;
* CPU time (``RLIMIT_CPU``) to ``limits.worker_cpu_s`` (the kernel stops it after that);
* wall-clock time to ``limits.worker_wall_s`` (the parent kills it).

Whatever stops the child, the user gets an :class:`InputError` that says which limit, in
numbers ("file too large to validate within the 4 GB memory budget").
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from aooct_core.io.errors import InputError

__all__ = ["ValidationBudgetError", "validate_in_worker", "main"]

_REPO = Path(__file__).resolve().parents[1]
_MEMORY_SIGNALS = (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT)


class ValidationBudgetError(InputError):
    """The upload needed more memory, CPU or time than the validating process may use."""


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:.3g} GB"


def _budget_message(what: str, limits) -> str:
    if what == "memory":
        return (f"file too large to validate within the {_gb(limits.worker_memory_bytes)} memory "
                "budget of the upload validator — it declares more image data than that; "
                "export it again or ask an Admin to raise AOOCT_UPLOAD_WORKER_MEMORY_MB")
    if what == "cpu":
        return (f"validation needed more than its {limits.worker_cpu_s} s CPU budget — "
                "ask an Admin to raise AOOCT_UPLOAD_WORKER_CPU_S")
    return (f"validation took longer than its {limits.worker_wall_s:.0f} s time budget — "
            "ask an Admin to raise AOOCT_UPLOAD_WORKER_WALL_S")


def validate_in_worker(source: str | Path, *, kind: str, work_dir: str | Path, limits=None):
    """Extract (``kind="zip"``) and validate an upload in a limited child process.

    Parameters
    ----------
    source : path
        The uploaded zip, or the case folder (``kind="folder"``).
    work_dir : path
        A private temporary folder; a zip is extracted under ``work_dir/x``.
    limits : api.uploads.UploadLimits, optional
        Sizes and the worker's budgets (default: from the environment).

    Returns
    -------
    api.uploads.ValidatedCase

    Raises
    ------
    InputError
        The upload is invalid (what the readers said), or — as
        :class:`ValidationBudgetError` — validating it needed more memory, CPU or time
        than the budget.
    RuntimeError
        The validator itself failed (a bug, not the upload): its stderr is in the message.
    """
    from api.uploads import UploadLimits, ValidatedCase

    limits = limits or UploadLimits.from_env()
    if kind not in ("zip", "folder"):
        raise ValueError(f"kind must be 'zip' or 'folder'; got {kind!r}")
    source, work_dir = Path(source), Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    result = work_dir / "validation-result.json"
    progress = work_dir / "validation-progress.txt"
    for p in (result, progress):
        p.unlink(missing_ok=True)
    request = {"kind": kind, "source": str(source), "work_dir": str(work_dir),
               "result": str(result), "progress": str(progress), "limits": asdict(limits)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
               [str(_REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    try:
        proc = subprocess.run([sys.executable, "-m", "api.upload_worker"], input=json.dumps(request),
                              capture_output=True, text=True, env=env, cwd=work_dir,
                              timeout=limits.worker_wall_s)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        raise ValidationBudgetError(_current(progress, source), _budget_message("time", limits)) from None
    if result.is_file():
        out = json.loads(result.read_text())
        if out["ok"]:
            c = out["case"]
            return ValidatedCase(folder=Path(c["folder"]), case_id=c["case_id"],
                                 subject_id=c["subject_id"], eye=c["eye"], n_volumes=c["n_volumes"],
                                 volume_shape_px=tuple(c["volume_shape_px"]), files=tuple(c["files"]),
                                 total_bytes=c["total_bytes"])
        err = out["error"]
        if err["type"] == "memory":
            raise ValidationBudgetError(_current(progress, source), _budget_message("memory", limits))
        raise InputError(err["path"], err["problem"], problems=err["problems"])
    code, stderr = proc.returncode, proc.stderr or ""
    if code < 0 and -code == signal.SIGXCPU:
        raise ValidationBudgetError(_current(progress, source), _budget_message("cpu", limits))
    if (code < 0 and -code in _MEMORY_SIGNALS) or "MemoryError" in stderr:
        raise ValidationBudgetError(_current(progress, source), _budget_message("memory", limits))
    raise RuntimeError(f"the upload validator failed (exit status {code}) on {source.name}:\n"
                       f"{stderr[-4000:]}")


def _current(progress: Path, source: Path) -> Path:
    """The file the child was decoding when it was stopped (else the upload itself)."""
    try:
        text = progress.read_text().strip()
    except FileNotFoundError:
        return source
    return Path(text) if text else source


def _limit_self(limits: dict) -> None:
    memory = int(limits["worker_memory_bytes"])
    cpu = int(limits["worker_cpu_s"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> int:
    """Child side: read the request from stdin, limit this process, validate, write the result."""
    request = json.loads(sys.stdin.read())
    _limit_self(request["limits"])  # first: the budget covers everything the readers do
    result, progress = Path(request["result"]), Path(request["progress"])
    from api.uploads import UploadLimits, extract_zip_safely, validate_case_folder

    limits = UploadLimits(**request["limits"])
    source = Path(request["source"])
    try:
        progress.write_text(str(source))
        if request["kind"] == "zip":
            folder = extract_zip_safely(source, Path(request["work_dir"]) / "x", limits=limits)
        else:
            folder = source
        case = validate_case_folder(folder, limits=limits,
                                    on_read=lambda p: progress.write_text(str(p)))
        out = {"ok": True, "case": {**asdict(case), "folder": str(case.folder)}}
    except MemoryError:
        out = {"ok": False, "error": {"type": "memory"}}
    except InputError as exc:
        out = {"ok": False, "error": {"type": "input", "path": str(exc.path), "problem": exc.problem,
                                      "problems": exc.problems}}
    result.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
