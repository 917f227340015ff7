"""Checking the fields of a decoded JSON description, collecting every problem at once.

:class:`FieldChecker` is what ``case.json`` validation (:mod:`aooct_core.casefile`) is
written with: each check appends ``"field '<name>' <what was wrong — the fix>"`` and
returns the value or None, so one :class:`~aooct_core.io.InputError` can list every bad
field. :func:`short_repr` shows a value in a message whatever its size or nesting
(``json.dumps`` of a value 10,000 levels deep raises ``RecursionError``, of a
5000-digit integer ``ValueError``).
"""
from __future__ import annotations

import difflib
import itertools
import json
import math
import re
from typing import Any

__all__ = ["FieldChecker", "short_repr", "MAX_PROBLEMS"]

#: Problems listed in one error; the rest are counted.
MAX_PROBLEMS = 20
# Ids become Dagster partition keys and object-store key segments, so keep them plain.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def short_repr(value: Any, depth: int = 0) -> str:
    """A short JSON-like rendering of ``value`` for messages, whatever its size or nesting."""
    if isinstance(value, str):
        return json.dumps(value[:60]) + ("…" if len(value) > 60 else "")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() < 100 else f"<a {value.bit_length()}-bit integer>"
    if isinstance(value, (list, tuple)):
        if depth >= 2:
            return "[…]"
        items = ", ".join(short_repr(v, depth + 1) for v in value[:4])
        return f"[{items}{', …' if len(value) > 4 else ''}]"
    if isinstance(value, dict):
        if depth >= 2:
            return "{…}"
        items = ", ".join(f"{short_repr(str(k))}: {short_repr(v, depth + 1)}"
                          for k, v in itertools.islice(value.items(), 4))
        return "{" + items + (", …" if len(value) > 4 else "") + "}"
    return f"<{type(value).__name__}>"


class FieldChecker:
    """Collects problems so one error reports every bad field at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.more = 0

    def add(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more += 1

    def fail(self, field: str, text: str) -> None:
        self.add(f"field '{field}' {text}")

    def unknown(self, data: dict, allowed: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in allowed:
                name = str(key)[:60]
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
                self.add(f"unknown field '{where}{name}' — {hint} (remove or rename it)")

    def number(self, value: Any, field: str, *, lo: float, hi: float,
               lo_open: bool = False, hint: str = "") -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            quoted = isinstance(value, str)
            self.fail(field, f"must be a number; got {short_repr(value)}"
                      + (" — write it without quotes" if quoted else ""))
            return None
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range
            value = math.inf
        too_low = value <= lo if lo_open else value < lo
        if not math.isfinite(value) or too_low or value > hi:
            lo_txt = f"> {lo:g}" if lo_open else f">= {lo:g}"
            self.fail(field, f"must be {lo_txt} and <= {hi:g}; got {value:g}"
                      + (f" — {hint}" if hint else ""))
            return None
        return value

    def pair(self, value: Any, field: str, keys: tuple[str, str], **limits) -> tuple | None:
        if not isinstance(value, dict):
            example = "{" + ", ".join(f'"{k}": 1.0' for k in keys) + "}"
            self.fail(field, f"must be an object like {example}; got {short_repr(value)}")
            return None
        self.unknown(value, keys, f"{field}.")
        out = []
        for key in keys:
            if key not in value:
                self.fail(f"{field}.{key}", "is missing — add it")
                out.append(None)
            else:
                out.append(self.number(value[key], f"{field}.{key}", **limits))
        return None if None in out else tuple(out)

    def ident(self, value: Any, field: str) -> str | None:
        if not isinstance(value, str) or not _ID_RE.match(value):
            self.fail(field, "must be 1-128 characters of letters, digits, '.', '_' or '-' "
                      f"starting with a letter or digit; got {short_repr(value)}")
            return None
        return value
