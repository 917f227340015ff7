"""Write a file so that readers see either the old content or the whole new content.

Every artifact aooct stores goes through here: a killed process may leave a hidden
temporary file behind, never a half-written file under the real name.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object], *,
                 tmp_prefix: str | None = None) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it over ``path``.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    write : callable
        Writes the whole content to the temporary path it is given.
    tmp_prefix : str, keyword-only
        Name prefix of the temporary file (default ``.<name>.``), so that listings can
        recognise and skip in-flight files.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(p, lambda tmp: tmp.write_text("ok")).read_text()
    'ok'
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix or f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
