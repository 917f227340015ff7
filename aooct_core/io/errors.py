"""Errors raised by the aooct readers and writers.

Every error names the file it is about and says what was wrong and how to fix
it, so the CLI can print it as one line and a user can act on it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["InputError", "CaseExistsError", "raised_by", "decoder_errors"]

# Our own packages: an exception raised in their code is a bug, never bad input.
_OURS = frozenset({"aooct_core", "aooct", "ml", "aooct_assets", "resources", "ui"})


class InputError(ValueError):
    """Bad input data: the message is ``"<file>: <problem>"``.

    Parameters
    ----------
    path : str or Path
        The file (or folder) the problem is in.
    problem : str
        What was wrong and how to fix it; several problems are joined by ``"; "``.
    problems : list of str, optional
        The individual problems when there are several (e.g. case.json fields).

    Attributes
    ----------
    path : Path
    problem : str
    problems : list of str
    """

    def __init__(self, path: str | Path, problem: str, *, problems: list[str] | None = None):
        self.path = Path(path)
        self.problem = problem
        self.problems = list(problems) if problems is not None else [problem]
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # keep pickling (multiprocessing, Dagster) working with keyword args
        return (_rebuild, (type(self), str(self.path), self.problem, self.problems))


def _rebuild(cls, path, problem, problems):
    return cls(path, problem, problems=problems)


class CaseExistsError(InputError):
    """A different case already exists where a case was to be written."""


def raised_by(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether ``exc`` was raised inside third-party code reached through ``packages``.

    True when the innermost frame of the traceback is not our code and some frame
    belongs to one of ``packages`` (top-level names, e.g. ``("tifffile",)``): the
    decoder, or a library it called, failed on the file. An exception raised in our
    own code — a bug — gives False and must propagate.
    """
    names = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0])
        tb = tb.tb_next
    if not names or names[-1] in _OURS:
        return False
    return any(name in packages for name in names)


@contextmanager
def decoder_errors(path: str | Path, packages: tuple[str, ...],
                   describe: Callable[[BaseException], str]) -> Iterator[None]:
    """Turn what a third-party decoder raises on a malformed file into :class:`InputError`.

    Whatever ``packages`` (and the libraries they call) raise becomes
    ``InputError(path, describe(exc))``, chained to the original; InputError passes
    through; ``MemoryError`` and exceptions raised by our own code propagate unchanged
    (see :func:`raised_by`), so bugs and exhausted budgets are never disguised as bad
    input.

    Parameters
    ----------
    path : str or Path
        The file being decoded.
    packages : tuple of str
        Top-level names of the decoders, e.g. ``("tifffile",)``.
    describe : callable
        ``exc -> problem`` text; it should name ``type(exc).__name__`` and the fix.
    """
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - filtered to third-party decoder failures below
        if isinstance(exc, MemoryError) or not raised_by(exc, packages):
            raise
        raise InputError(path, describe(exc)) from exc
