"""Errors raised by the aooct readers and writers.

Every error names the file it is about and says what was wrong and how to fix
it, so the CLI can print it as one line and a user can act on it.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["InputError", "CaseExistsError"]


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
