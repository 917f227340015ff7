"""Run aooct's readers on untrusted bytes in a child process with a 2 GiB address-space cap.

:class:`CappedReader` keeps one worker (``spawn``: a fresh interpreter, so its address
space holds only the readers and numpy) with ``RLIMIT_AS`` set; each input is sent as
bytes, written to a file with the right name and read. The outcome is one of

``"ok"``            the reader returned,
``"input_error"``   it raised :class:`aooct_core.io.InputError` (the contract),
``"oom"``           ``MemoryError``, or the worker was killed while reading,
``"timeout"``       the reader took longer than the per-input limit,
``"<Type> at <file>:<line>"`` anything else (a bug).

The worker is restarted after an OOM kill or a timeout.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CappedReader", "Outcome", "READERS", "run_reader", "place_input", "prepare_folder", "CAP_BYTES"]

CAP_BYTES = 2 << 30
#: Which readers are fuzzed for each file suffix.
READERS = {
    ".tif": ("read_volume", "probe_volume", "read_enface"),
    ".npy": ("read_volume", "probe_volume", "read_enface"),
    ".dcm": ("read_volume", "probe_volume", "deidentify_dicom"),
    ".png": ("read_enface",),
    ".json": ("parse_case_json", "load_case", "enface_sidecar"),
}


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str = ""


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    frame = tb[-1] if tb else None
    return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}" if frame \
        else type(exc).__name__


def run_reader(reader: str, path: Path) -> None:
    """Call one reader on ``path`` (a ``case.json`` for the case readers)."""
    from aooct_core import casefile
    from aooct_core.io import load_case, probe_volume, read_enface, read_volume
    from aooct_core.io.dicom import deidentify_dicom

    if reader == "read_volume":
        vol = read_volume(path)
        float(vol[0, 0, 0])
    elif reader == "probe_volume":
        probe_volume(path)
    elif reader == "read_enface":
        read_enface(path)
    elif reader == "deidentify_dicom":
        deidentify_dicom(path, path.with_name("deid.dcm"))
    elif reader == "parse_case_json":
        casefile.parse_case_json(path, check_files=False)
    elif reader == "load_case":
        load_case(path.parent)
    elif reader == "enface_sidecar":
        read_enface(path.with_name("enface.npy"))
    else:
        raise ValueError(f"unknown reader {reader!r}")


def place_input(folder: Path, reader: str, suffix: str, data: bytes, extend_to: int | None = None) -> Path:
    """Write ``data`` where ``reader`` reads it in ``folder`` (a case.json, an en face sidecar,
    or ``input<suffix>``), extended with a hole to ``extend_to`` bytes; earlier inputs'
    files are removed first."""
    if suffix == ".json":
        path = folder / ("enface.json" if reader == "enface_sidecar" else "case.json")
    else:
        path = folder / f"input{suffix}"
    for stale in (folder / "case.json", folder / "enface.json", folder / "deid.dcm"):
        stale.unlink(missing_ok=True)
    with path.open("wb") as fh:
        fh.write(data)
        if extend_to:
            fh.truncate(extend_to)
    return path


def prepare_folder(folder: Path) -> None:
    """The files a case.json and a sidecar refer to."""
    import numpy as np

    np.save(folder / "vol_00.npy", np.ones((2, 3, 4), np.float32))
    np.save(folder / "enface.npy", np.ones((4, 5), np.float32))


def _worker(conn, cap_bytes: int, timeout_s: float, folder: str) -> None:
    import logging
    import resource
    import signal
    import warnings

    # The decoders log and warn about every oddity they tolerate; the outcome is what counts.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")

    resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
    from aooct_core.io import InputError

    class _Timeout(BaseException):
        pass

    def _alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, _alarm)
    folder = Path(folder)
    prepare_folder(folder)
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            break
        reader, suffix, data, extend_to = job
        path = place_input(folder, reader, suffix, data, extend_to)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            run_reader(reader, path)
            outcome = Outcome("ok")
        except InputError as exc:
            outcome = Outcome("input_error", exc.problem[:500])
        except MemoryError:
            outcome = Outcome("oom", "MemoryError")
        except _Timeout:
            outcome = Outcome("timeout")
        except Exception as exc:  # noqa: BLE001 - the point is to see what leaks
            outcome = Outcome(_where(exc), f"{type(exc).__name__}: {str(exc)[:300]}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        path.unlink(missing_ok=True)
        conn.send(outcome)


class CappedReader:
    """A reader worker with an address-space cap; use as a context manager.

    Parameters
    ----------
    cap_bytes : int
        ``RLIMIT_AS`` of the worker.
    timeout_s : float
        Per input; a reader still running after ``3 × timeout_s`` is killed.
    """

    def __init__(self, *, cap_bytes: int = CAP_BYTES, timeout_s: float = 10.0):
        self.cap_bytes, self.timeout_s = cap_bytes, timeout_s
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None
        self._folder = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self._folder = self._folder or tempfile.mkdtemp(prefix="aooct-fuzz-")
            self._proc = self._ctx.Process(target=_worker, daemon=True, args=(
                child, self.cap_bytes, self.timeout_s, self._folder))
            self._proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self._conn = parent
        if not parent.poll(120) or parent.recv() != "ready":
            raise RuntimeError("fuzz worker did not start")

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(10)
        self._proc = None

    def __enter__(self) -> "CappedReader":
        self._start()
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(10)
            except (BrokenPipeError, OSError):
                pass
        self._kill()
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)

    def read(self, reader: str, suffix: str, data: bytes, extend_to: int | None = None) -> Outcome:
        """Outcome of ``reader`` on ``data`` saved with ``suffix`` (extended sparse to ``extend_to``)."""
        if self._proc is None or not self._proc.is_alive():
            self.restarts += 1
            self._start()
        try:
            self._conn.send((reader, suffix, data, extend_to))
            if self._conn.poll(3 * self.timeout_s + 5):
                return self._conn.recv()
            outcome = Outcome("timeout", "killed: no answer")
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._proc.join(5)
            code = self._proc.exitcode
            # SIGKILL is the kernel's OOM killer; any other death is a crash in native code.
            outcome = Outcome("oom" if code == -9 else f"crash (exit code {code})",
                              f"worker died (exit code {code})")
        self._kill()
        return outcome
