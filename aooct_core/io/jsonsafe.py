"""JSON from untrusted files, parsed within a :class:`~aooct_core.io.budget.ReadBudget`.

``json.loads`` recurses once per nesting level (a ``RecursionError`` past ~1000) and
turns a 5000-digit integer into a ``ValueError`` from Python's int-parsing limit; a
huge file is read whole. :func:`loads_bounded` refuses all three first, as
:class:`~aooct_core.io.InputError` naming the file: the size is checked before
decoding, the nesting depth by a scan of the text outside strings before
``json.loads`` sees it, and number length by ``parse_int``/``parse_float`` hooks.
"""
from __future__ import annotations

import json
import re
from itertools import accumulate
from pathlib import Path
from typing import Any

from aooct_core.io.budget import ENV_VARS, ReadBudget, default_budget, format_bytes
from aooct_core.io.errors import InputError

__all__ = ["loads_bounded", "load_json_file"]

# A JSON string literal (escapes included); brackets inside strings do not nest.
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


class _NumberTooLong(Exception):
    pass


def _depth(text: str) -> int:
    """Deepest array/object nesting of ``text``, ignoring brackets inside strings."""
    skeleton = re.sub(r"[^\[\]{}]", "", _STRING_RE.sub("", text))
    if not skeleton:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in skeleton))


def _too_big(source, size: int, budget: ReadBudget) -> InputError:
    return InputError(source, f"is {format_bytes(size)}, more than the "
                      f"{format_bytes(budget.max_json_bytes)} a JSON description may have — "
                      f"is this the right file? (raise {ENV_VARS['max_json_bytes']} if it is)")


def loads_bounded(data: bytes | str, *, source: str | Path, budget: ReadBudget | None = None,
                  example: str = "") -> Any:
    """Decode UTF-8 JSON ``data`` within ``budget``.

    Parameters
    ----------
    data : bytes or str
        The file's content.
    source : str or Path
        The file, for messages.
    budget : ReadBudget, optional
        Default :func:`~aooct_core.io.budget.default_budget`.
    example : str
        What the file should look like, appended to syntax-error messages.

    Returns
    -------
    Any
        The decoded value.

    Raises
    ------
    InputError
        Too large, not UTF-8, nested too deeply, a number too long, or not JSON.
    """
    budget = default_budget() if budget is None else budget
    if len(data) > budget.max_json_bytes:
        raise _too_big(source, len(data), budget)
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(source, f"is not UTF-8 text ({exc.reason} at byte {exc.start}) — "
                             "save it as UTF-8") from exc
    else:
        text = data
    if text.startswith("\ufeff"):  # a byte-order mark some editors write
        text = text[1:]
    if not text.strip():
        raise InputError(source, "is empty — write the fields as a JSON object" +
                         (f" like {example}" if example else ""))
    depth = _depth(text)
    if depth > budget.max_json_depth:
        raise InputError(source, f"nests arrays/objects {depth} levels deep; at most "
                         f"{budget.max_json_depth} are allowed (this file needs 2) — it is "
                         "corrupt or not the right file")
    limit = budget.max_json_number_chars

    def _number(kind):
        def parse(s: str):
            if len(s) > limit:
                raise _NumberTooLong(s)
            return kind(s)
        return parse

    try:
        return json.loads(text, parse_int=_number(int), parse_float=_number(float))
    except _NumberTooLong as exc:
        raise InputError(source, f"holds a number of {len(exc.args[0])} characters "
                         f"({exc.args[0][:12]}…); at most {limit} are allowed — write the "
                         "value with ordinary precision") from None
    except json.JSONDecodeError as exc:
        raise InputError(source, f"is not valid JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno} — fix the syntax (quotes, commas, braces)"
                         + (f"; it should look like {example}" if example else "")) from exc
    except RecursionError as exc:  # the depth scan makes this unreachable; kept as a guard
        raise InputError(source, "nests too deeply to parse — it is corrupt") from exc


def load_json_file(path: str | Path, *, budget: ReadBudget | None = None,
                   example: str = "") -> Any:
    """Read and decode a JSON file within ``budget`` (size checked before reading).

    Raises
    ------
    InputError
        Missing, unreadable, too large, or see :func:`loads_bounded`.
    """
    path = Path(path)
    budget = default_budget() if budget is None else budget
    try:
        size = path.stat().st_size
        if size > budget.max_json_bytes:
            raise _too_big(path, size, budget)
        with path.open("rb") as fh:
            data = fh.read(budget.max_json_bytes + 1)
    except FileNotFoundError as exc:
        raise InputError(path, "does not exist — check the path") from exc
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror}) — check its permissions") from exc
    return loads_bounded(data, source=path, budget=budget, example=example)
