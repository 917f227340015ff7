"""Case folders: ``case.json`` + repeated volumes of one retinal location.

:func:`write_case` never leaves a half-written case visible: it writes into a
hidden temporary folder next to the destination and renames it into place.
:func:`load_case` validates ``case.json`` and the volume headers (existence,
completeness, identical shapes) without reading the samples; :meth:`Case.volumes`
reads them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Imported as a module (not names) because casefile imports aooct_core.io.errors,
# so either package may be imported first.
from aooct_core import casefile as _casefile
from aooct_core.geometry import Acquisition, Geometry, geometry_from_acquisition
from aooct_core.io.budget import ReadBudget, default_budget
from aooct_core.io.checks import check_dtype, check_finite, check_shape
from aooct_core.io.errors import CaseExistsError, InputError
from aooct_core.io.jsonsafe import load_json_file
from aooct_core.io.volume import probe_volume, read_volume, write_volume

__all__ = ["Case", "load_case", "write_case", "case_content_hash"]

_SUFFIX = {"tiff": ".tif", "npy": ".npy"}
_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Case:
    """A validated case folder.

    Attributes
    ----------
    folder : Path
    acquisition : Acquisition
        With ``sampling_px`` = the shape of each volume.
    geometry : Geometry
        µm/px on each axis (Bennett eye model unless ``um_per_px`` is given).
    volume_paths : tuple of Path
        One file per repeat, in ``case.json`` order.
    dropped_phi : list of str
        DICOM attribute keywords that identify the patient, present in the
        files and never read (empty for TIFF / ``.npy``).
    file_spacing_um : dict
        Sampling recorded in the first volume file (DICOM), µm/px; may be empty.
    mmap : bool
        Whether :meth:`volume` may return read-only memory maps.
    """

    folder: Path
    acquisition: Acquisition
    geometry: Geometry
    volume_paths: tuple[Path, ...]
    dropped_phi: list[str] = field(default_factory=list)
    file_spacing_um: dict = field(default_factory=dict)
    mmap: bool = True

    @property
    def case_id(self) -> str:
        return self.acquisition.case_id

    @property
    def n_repeats(self) -> int:
        return len(self.volume_paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n_repeats, n_bscans, n_depth, n_alines)``."""
        return (self.n_repeats, *self.acquisition.sampling_px)

    def volume(self, repeat: int) -> np.ndarray:
        """One repeat as float32 ``(n_bscans, n_depth, n_alines)`` (a memmap where possible)."""
        path = self.volume_paths[repeat]
        vol = read_volume(path, mmap=self.mmap)
        if vol.shape != tuple(self.acquisition.sampling_px):
            raise InputError(path, f"now has shape {vol.shape} but the case was loaded with "
                             f"{tuple(self.acquisition.sampling_px)} — the file changed; load the "
                             "case again")
        return vol

    def volumes(self) -> np.ndarray:
        """All repeats as float32 ``(n_repeats, n_bscans, n_depth, n_alines)``.

        Each file is read (memory-mapped where possible) straight into the
        stacked result, so peak memory is the result plus one B-scan chunk.
        """
        out = np.empty(self.shape, dtype=np.float32)
        for r in range(self.n_repeats):
            out[r] = self.volume(r)
        return out


def load_case(folder: str | Path, *, mmap: bool = True, budget: ReadBudget | None = None) -> Case:
    """Open and validate a case folder.

    Parameters
    ----------
    folder : str or Path
        The case folder (or its ``case.json``).
    mmap : bool
        Let :meth:`Case.volume` return read-only memory maps of float32 files.
    budget : ReadBudget, optional
        Limits checked on ``case.json`` and on every volume header
        (default :func:`~aooct_core.io.budget.default_budget`).

    Returns
    -------
    Case

    Raises
    ------
    InputError
        Missing folder, invalid ``case.json``, a missing / empty / truncated /
        corrupt / non-3-D volume, a volume over the read budget, or repeats of
        mismatched shape.
    """
    folder = Path(folder)
    if folder.name == "case.json" and folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(folder, "case folder does not exist — give a folder holding case.json "
                         "and its volumes")
    budget = default_budget() if budget is None else budget
    spec = _casefile.parse_case_json(folder / "case.json", budget=budget)
    infos = [probe_volume(folder / name, budget=budget) for name in spec.volume_files]
    first = infos[0]
    for info in infos[1:]:
        if info.shape != first.shape:
            raise InputError(info.path, f"has shape {info.shape} but {first.path.name} has "
                             f"{first.shape} — all repeats of a case must share one "
                             "(bscan, depth, aline) shape; re-export it or remove it from "
                             "case.json 'volumes'")
    acquisition = spec.acquisition(first.shape)
    try:
        geometry = geometry_from_acquisition(acquisition)
    except ValueError as exc:
        raise InputError(folder / "case.json", f"gives an impossible geometry: {exc}") from exc
    dropped = sorted({k for info in infos for k in info.dropped_phi})
    return Case(folder=folder, acquisition=acquisition, geometry=geometry,
                volume_paths=tuple(info.path for info in infos), dropped_phi=dropped,
                file_spacing_um=dict(first.spacing_um), mmap=mmap)


def _as_repeats(volumes, case_id: str) -> list[np.ndarray]:
    where = Path(f"<volumes of case {case_id!r}>")
    if isinstance(volumes, np.ndarray):
        if volumes.ndim == 3:
            return [volumes]
        if volumes.ndim != 4:
            raise ValueError(f"volumes must be (n_repeats, n_bscans, n_depth, n_alines) or a list "
                             f"of 3-D volumes; got shape {volumes.shape} — add or drop an axis")
        repeats = list(volumes)
    elif isinstance(volumes, Sequence) and not isinstance(volumes, (str, bytes)):
        repeats = [np.asarray(v) for v in volumes]
    else:
        raise ValueError(f"volumes must be an ndarray or a list of ndarrays; got "
                         f"{type(volumes).__name__}")
    if not repeats:
        raise ValueError("volumes is empty — a case needs at least one volume")
    for r, vol in enumerate(repeats):
        check_dtype(vol.dtype, where)
        check_shape(vol.shape, where, f"repeat {r}")
        if vol.shape != repeats[0].shape:
            raise ValueError(f"repeat {r} has shape {vol.shape} but repeat 0 has "
                             f"{repeats[0].shape} — all repeats must share one shape")
        check_finite(vol, where)
    return repeats


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def write_case(folder: str | Path, acquisition: Acquisition, volumes, *, fmt: str = "tiff",
               overwrite: bool = False) -> Path:
    """Write a case folder atomically.

    Parameters
    ----------
    folder : str or Path
        Destination case folder (created; its parent is created if needed).
    acquisition : Acquisition
        ``sampling_px`` must equal the volume shape ``(n_bscans, n_depth, n_alines)``.
    volumes : ndarray (n_repeats, n_bscans, n_depth, n_alines) or list of 3-D ndarrays
        Any real dtype; stored as float32 ``vol_00.tif``, ``vol_01.tif``, ...
    fmt : {"tiff", "npy"}
        Multipage TIFF (one page per B-scan) or ``.npy``.
    overwrite : bool
        Replace an existing *different* case. Writing the same content again is a
        no-op either way.

    Returns
    -------
    Path
        ``folder``.

    Raises
    ------
    CaseExistsError
        ``folder`` holds something else and ``overwrite`` is False.
    ValueError
        Bad volumes or acquisition (message says how to fix it).
    """
    if fmt not in _SUFFIX:
        raise ValueError(f"fmt must be one of {sorted(_SUFFIX)}; got {fmt!r}")
    folder = Path(folder)
    repeats = _as_repeats(volumes, acquisition.case_id)
    if tuple(acquisition.sampling_px) != tuple(repeats[0].shape):
        raise ValueError(f"acquisition.sampling_px {tuple(acquisition.sampling_px)} differs from the "
                         f"volume shape {repeats[0].shape} — use dataclasses.replace(acquisition, "
                         f"sampling_px={repeats[0].shape}) so the geometry is right")
    width = max(2, len(str(len(repeats) - 1)))
    names = [f"vol_{r:0{width}d}{_SUFFIX[fmt]}" for r in range(len(repeats))]
    content = _casefile.case_json_dict(acquisition, names)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.writing-"))
    try:
        for name, vol in zip(names, repeats):
            write_volume(tmp / name, vol, fmt=fmt)
            _fsync_file(tmp / name)
        _casefile.write_case_json(tmp / "case.json", content)
        commit_case_folder(tmp, folder, overwrite=overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def commit_case_folder(tmp: str | Path, folder: str | Path, *, overwrite: bool,
                       same: Callable[[Path, Path], bool] | None = None,
                       overwrite_hint: str = "pass overwrite=True to replace it, or choose another folder",
                       ) -> bool:
    """Move a finished case folder ``tmp`` to ``folder`` atomically.

    ``rename(2)`` replaces an empty folder atomically and fails on a non-empty one, so a
    concurrent writer cannot be clobbered; a different existing case is swapped out via a
    hidden trash folder and put back if the final rename fails.

    Parameters
    ----------
    tmp, folder : path
        The finished case (same file system) and its destination.
    overwrite : bool, keyword-only
        Replace an existing, different case.
    same : callable ``(existing, new) -> bool``, keyword-only
        Whether the existing folder already holds this case (default: equal
        :func:`case_content_hash`); an unreadable existing folder counts as different.
    overwrite_hint : str, keyword-only
        How to get past :class:`CaseExistsError`, for the message.

    Returns
    -------
    bool
        False when an identical case was already there (``tmp`` is then left for the
        caller to remove), True when ``tmp`` was moved into place.
    """
    tmp, folder = Path(tmp), Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise CaseExistsError(folder, "exists and is not a folder — remove it or choose another "
                              "case folder")
    if folder.is_dir() and any(folder.iterdir()):
        same = same or (lambda old, new: case_content_hash(old) == case_content_hash(new))
        try:
            identical = same(folder, tmp)
        except (InputError, OSError):
            identical = False  # not a readable case: certainly different from the new one
        if identical:
            return False
        if not overwrite:
            raise CaseExistsError(folder, f"already holds a different case — {overwrite_hint}")
        trash = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex}"
        os.rename(folder, trash)
        try:
            os.rename(tmp, folder)
        except OSError:
            os.rename(trash, folder)  # put the old case back before reporting the failure
            raise
        shutil.rmtree(trash)
    else:
        os.rename(tmp, folder)
    dir_fd = os.open(folder.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def case_content_hash(folder: str | Path) -> str:
    """A stable sha256 (hex) of a case: canonical ``case.json`` + every listed volume's bytes.

    Whitespace and key order in ``case.json`` do not change the hash; the
    folder's name and unlisted files do not either.

    Raises
    ------
    InputError
        When the case is invalid (see :func:`aooct_core.casefile.parse_case_json`).
    """
    folder = Path(folder)
    _casefile.parse_case_json(folder / "case.json")
    data = load_json_file(folder / "case.json")  # validated just above, within the budget

    def read_volume_bytes(name: str) -> tuple[int, Iterable[bytes]]:
        path = folder / name

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(_HASH_CHUNK_BYTES):
                    yield chunk

        return path.stat().st_size, chunks()

    return content_hash_of_case(data, read_volume_bytes)


def content_hash_of_case(case_dict: dict,
                         read_volume_bytes: Callable[[str], tuple[int, Iterable[bytes]]]) -> str:
    """The content hash of :func:`case_content_hash`, wherever the bytes live.

    Parameters
    ----------
    case_dict : dict
        The parsed ``case.json`` (hashed in canonical form: sorted keys, no whitespace).
    read_volume_bytes : callable
        ``name -> (size_bytes, chunks)`` for every file listed in ``case_dict["volumes"]``;
        a local folder streams files, the drop sensor reads its object store.

    Returns
    -------
    str
        64 hex characters; equal for a case folder and the same case in a drop location,
        so the sensor's run key matches ``case_content_hash``.
    """
    h = hashlib.sha256(b"aooct-case-v1\0")

    def _put(chunk: bytes) -> None:  # length-prefixed, so boundaries cannot shift
        h.update(len(chunk).to_bytes(8, "little"))
        h.update(chunk)

    _put(json.dumps(case_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
    for name in case_dict["volumes"]:
        size, chunks = read_volume_bytes(name)
        _put(name.encode())
        h.update(int(size).to_bytes(8, "little"))
        for chunk in chunks:
            h.update(chunk)
    return h.hexdigest()
