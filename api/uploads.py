"""Validate an uploaded case (folder or zip) before it is dropped for ingest.

The upload page never hands the pipeline something it will choke on: a zip is
checked member by member (zip-slip paths, links, oversize files, too many files,
total uncompressed size, compression ratio — a zip bomb) *before* anything is
extracted, the case folder is then validated with the same
readers the pipeline uses (:mod:`aooct_core.casefile`, :mod:`aooct_core.io`),
and only a fully valid case is copied to the drop location — into a temporary
name first and renamed (or, on S3, with ``case.json`` written last), so the
ingest sensor never sees half a case. The upload page runs the extraction and
validation in a separate process with memory, CPU and time limits
(:mod:`api.upload_worker`), never in the serving process.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aooct_core.io.errors import InputError

__all__ = [
    "STALE_UPLOAD_S",
    "new_staging",
    "sweep_stale_staging",
    "receive_body",
    "UploadLimits",
    "ValidatedCase",
    "check_zip_members",
    "extract_zip_safely",
    "validate_case_folder",
    "drop_for_ingest",
]


@dataclass(frozen=True)
class UploadLimits:
    """Limits for one upload. Defaults fit several 512³ float32 volumes.

    Sizes are bytes. ``max_ratio`` is the largest uncompressed/compressed size of a zip
    member of at least ``ratio_floor_bytes`` (image data compresses a few-fold; a bomb of
    zeros a thousand-fold). ``worker_*`` bound the validating process
    (:mod:`api.upload_worker`): address space, CPU seconds and wall-clock seconds.
    """

    max_file_bytes: int = 2 * 1024**3
    max_total_bytes: int = 8 * 1024**3
    max_files: int = 200
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1024**2
    worker_memory_bytes: int = 4 * 1024**3
    worker_cpu_s: int = 300
    worker_wall_s: float = 600.0

    @classmethod
    def from_env(cls) -> "UploadLimits":
        """Limits from the environment where set: ``AOOCT_UPLOAD_MAX_FILE_MB``,
        ``AOOCT_UPLOAD_MAX_TOTAL_MB``, ``AOOCT_UPLOAD_MAX_RATIO``,
        ``AOOCT_UPLOAD_WORKER_MEMORY_MB``, ``AOOCT_UPLOAD_WORKER_CPU_S``,
        ``AOOCT_UPLOAD_WORKER_WALL_S``."""
        mb = 1024**2

        def env(name, default, scale=1.0, cast=float):
            raw = os.environ.get(name)
            if not raw:
                return default
            try:
                return cast(float(raw) * scale)
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r} is not a number") from exc

        return cls(
            max_file_bytes=env("AOOCT_UPLOAD_MAX_FILE_MB", cls.max_file_bytes, mb, int),
            max_total_bytes=env("AOOCT_UPLOAD_MAX_TOTAL_MB", cls.max_total_bytes, mb, int),
            max_ratio=env("AOOCT_UPLOAD_MAX_RATIO", cls.max_ratio),
            worker_memory_bytes=env("AOOCT_UPLOAD_WORKER_MEMORY_MB", cls.worker_memory_bytes, mb, int),
            worker_cpu_s=env("AOOCT_UPLOAD_WORKER_CPU_S", cls.worker_cpu_s, cast=int),
            worker_wall_s=env("AOOCT_UPLOAD_WORKER_WALL_S", cls.worker_wall_s),
        )


@dataclass(frozen=True)
class ValidatedCase:
    """A case folder that passed validation."""

    folder: Path
    case_id: str
    subject_id: str
    eye: str
    n_volumes: int
    volume_shape_px: tuple[int, int, int]
    files: tuple[str, ...]
    total_bytes: int


def _member_problem(info: zipfile.ZipInfo, limits: UploadLimits) -> str | None:
    name = info.filename
    if "\\" in name:
        return f"member {name!r} uses backslashes; zip the folder with a standard zip tool"
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        return f"member {name!r} has an absolute path; zip-slip paths are refused"
    if ".." in path.parts:
        return f"member {name!r} climbs out of the folder with '..'; zip-slip paths are refused"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"member {name!r} is a symbolic link; links are refused, include the file itself"
    if info.file_size > limits.max_file_bytes:
        return (
            f"member {name!r} is {info.file_size / 1024**2:.1f} MB, over the "
            f"{limits.max_file_bytes / 1024**2:.0f} MB per-file limit"
        )
    if info.file_size >= limits.ratio_floor_bytes:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            return (
                f"member {name!r} expands {ratio:.0f}-fold ({info.compress_size / 1024**2:.1f} MB "
                f"to {info.file_size / 1024**2:.1f} MB), over the {limits.max_ratio:.0f}-fold "
                "limit; this looks like a zip bomb — zip the case files as they are"
            )
    return None


def check_zip_members(zip_path: str | Path, *, limits: UploadLimits = UploadLimits()) -> list[str]:
    """Check every member of a zip without extracting; return its file names.

    Raises
    ------
    InputError
        Naming the zip and *every* offending member (zip-slip, links, oversize,
        too many files or too many bytes in total).
    """
    zip_path = Path(zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise InputError(zip_path, f"not a readable zip file ({exc}); re-create the archive") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        problems = [p for p in (_member_problem(i, limits) for i in infos) if p]
        total = sum(i.file_size for i in infos)
    if len(infos) > limits.max_files:
        problems.append(f"{len(infos)} files, over the limit of {limits.max_files}")
    if total > limits.max_total_bytes:
        problems.append(
            f"{total / 1024**2:.1f} MB uncompressed, over the {limits.max_total_bytes / 1024**2:.0f} MB limit"
        )
    if not infos:
        problems.append("the zip is empty; zip the case folder (case.json + volumes)")
    if problems:
        raise InputError(zip_path, "; ".join(problems), problems=problems)
    return [i.filename for i in infos]


def extract_zip_safely(
    zip_path: str | Path, out_dir: str | Path, *, limits: UploadLimits = UploadLimits()
) -> Path:
    """Extract a checked zip into ``out_dir`` and return the case folder inside it.

    Members are streamed with a byte cap, so a zip whose headers lie about sizes
    (a zip bomb) is stopped at the limit. The case folder is the one directory
    that holds ``case.json`` (the zip root or a single top-level folder).
    """
    zip_path, out_dir = Path(zip_path), Path(out_dir)
    check_zip_members(zip_path, limits=limits)
    root = out_dir.resolve()
    written = 0
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = (root / info.filename).resolve()
            if root not in target.parents:  # belt and braces after the name check
                raise InputError(zip_path, f"member {info.filename!r} resolves outside the folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                file_bytes = 0
                while chunk := src.read(1 << 20):
                    file_bytes += len(chunk)
                    written += len(chunk)
                    if file_bytes > limits.max_file_bytes or written > limits.max_total_bytes:
                        raise InputError(
                            zip_path,
                            f"member {info.filename!r} expands beyond the size limits; "
                            "the archive's sizes are wrong or it is a zip bomb",
                        )
                    dst.write(chunk)
    candidates = sorted({p.parent for p in root.rglob("case.json")})
    if len(candidates) != 1:
        found = ", ".join(str(c.relative_to(root)) or "." for c in candidates) or "none"
        raise InputError(
            zip_path,
            f"expected exactly one case.json in the zip; found {len(candidates)} ({found}) — "
            "zip one case folder per upload",
        )
    return candidates[0]


def validate_case_folder(
    folder: str | Path, *, limits: UploadLimits = UploadLimits(),
    on_read: Callable[[Path], None] | None = None,
) -> ValidatedCase:
    """Validate a case folder with the pipeline's own readers.

    Checks ``case.json`` (schema), that every listed volume exists, is within the
    size limit, reads as a 3-D ``(bscan, depth, aline)`` volume of finite values,
    and that all repeats have the same shape. ``on_read(path)`` is called before each
    volume is decoded (the upload worker records which file a memory kill hit).

    Raises
    ------
    InputError
        Naming the file and the problem.
    """
    from aooct_core.io import load_case, read_volume

    folder = Path(folder)
    case_json = folder / "case.json"
    if not case_json.is_file():
        raise InputError(folder, "no case.json here; a case folder holds case.json and its volumes")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for p in files:
        if p.is_symlink():
            raise InputError(p, "symbolic links are refused; copy the file into the folder")
        if p.stat().st_size > limits.max_file_bytes:
            raise InputError(
                p, f"{p.stat().st_size / 1024**2:.1f} MB is over the "
                f"{limits.max_file_bytes / 1024**2:.0f} MB per-file limit",
            )
    if len(files) > limits.max_files:
        raise InputError(folder, f"{len(files)} files, over the limit of {limits.max_files}")
    total = sum(p.stat().st_size for p in files)
    if total > limits.max_total_bytes:
        raise InputError(folder, f"{total / 1024**2:.1f} MB in total is over the upload limit")
    # The pipeline's own loader: schema, geometry, every volume probed (exists, not
    # truncated, 3-D) and one shape across repeats; read_volume then rejects NaN/Inf.
    case = load_case(folder)
    for path in case.volume_paths:
        if on_read is not None:
            on_read(Path(path))
        read_volume(path)
    acq = case.acquisition
    _refuse_identifying_names(folder, acq.case_id, acq.subject_id, [Path(p) for p in case.volume_paths])
    return ValidatedCase(
        folder=folder,
        case_id=acq.case_id,
        subject_id=acq.subject_id,
        eye=acq.eye,
        n_volumes=len(case.volume_paths),
        volume_shape_px=tuple(int(n) for n in acq.sampling_px),
        files=tuple(str(p.relative_to(folder)) for p in files),
        total_bytes=total,
    )


def _refuse_identifying_names(folder: Path, case_id: str, subject_id: str, volumes: list[Path]) -> None:
    """Refuse a case whose ``case_id`` or a volume's file name holds its own identifiers
    (``subject_id`` as received, the DICOM headers' patient names, IDs and birth date;
    :func:`aooct_core.io.phi.names_refusal`): they would be stored as keys and rows. The
    error names the kind of identifier, never its value."""
    from aooct_core.io.deid import dicom_identifiers, looks_like_dicom
    from aooct_core.io.phi import identifiers_of_case, names_refusal

    ids = identifiers_of_case({"subject_id": subject_id})
    for path in volumes:
        with open(path, "rb") as fh:
            head = fh.read(132)
        if looks_like_dicom(path.name, head):
            ids += dicom_identifiers(path)
    refusal = names_refusal(case_id, [p.relative_to(folder).as_posix() for p in volumes], ids)
    if refusal is not None:
        raise InputError(folder / "case.json", refusal)


def drop_for_ingest(case: ValidatedCase, drop: str, *, store=None) -> str:
    """Copy a validated case to the drop location; return where it went.

    ``drop`` is a local folder (the case lands in ``<drop>/<case_id>/`` via a
    temporary folder and one atomic rename) or, with ``store`` (an
    :class:`resources.object_store.ObjectStore`), a key prefix (files are put one by
    one and ``case.json`` last, so a watcher that keys on ``case.json`` sees a
    complete case). An existing case of the same id is never overwritten.
    """
    if store is not None:
        prefix = f"{drop.rstrip('/')}/{case.case_id}" if drop else case.case_id
        if store.exists(f"{prefix}/case.json"):
            raise InputError(case.folder, f"case {case.case_id!r} is already waiting for ingest at {prefix}")
        names = sorted(case.files, key=lambda n: n == "case.json")
        for name in names:
            store.put_file(f"{prefix}/{name}", case.folder / name)
        return store.uri(f"{prefix}/case.json").rsplit("/", 1)[0]
    drop_dir = Path(drop)
    drop_dir.mkdir(parents=True, exist_ok=True)
    final = drop_dir / case.case_id
    if final.exists():
        raise InputError(final, f"case {case.case_id!r} is already in the drop folder; rename the case_id")
    # Stage next to (not inside) the drop folder so a watcher never sees a partial case;
    # same filesystem, so the final rename is atomic.
    tmp = Path(tempfile.mkdtemp(
        prefix=f".aooct-upload-{case.case_id}-{uuid.uuid4().hex[:6]}-", dir=drop_dir.resolve().parent
    ))
    try:
        for name in case.files:
            dst = tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(case.folder / name, dst)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(final)


#: A staging folder untouched this long is left from a gateway that died mid-upload.
STALE_UPLOAD_S = 3600


def new_staging(root: str | os.PathLike | None) -> Path:
    """A private ``upload-*`` staging folder under ``root`` (the system's temporary folder when None)."""
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upload-", dir=root))


def sweep_stale_staging(root: str | os.PathLike) -> list[str]:
    """Remove ``upload-*`` folders under ``root`` untouched for :data:`STALE_UPLOAD_S`; their names."""
    root, removed = Path(root), []
    if not root.is_dir():
        return removed
    for d in root.glob("upload-*"):
        try:
            if time.time() - d.stat().st_mtime > STALE_UPLOAD_S:
                shutil.rmtree(d)
                removed.append(d.name)
        except FileNotFoundError:
            continue
    return removed


async def receive_body(chunks, path: Path, *, declared_bytes: int) -> None:
    """Write an async stream of byte chunks to ``path``; ``ValueError`` when it is not exactly
    ``declared_bytes`` long (a longer body is cut off as soon as it overruns)."""
    received = 0
    with open(path, "wb") as fh:
        async for chunk in chunks:
            received += len(chunk)
            if received > declared_bytes:
                raise ValueError("the body is longer than its Content-Length")
            fh.write(chunk)
    if received != declared_bytes:
        raise ValueError(f"received {received} of {declared_bytes} bytes; send the upload again")
