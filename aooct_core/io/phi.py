"""A case's own identifiers, found in the free text a lab writes: names, notes, folder names.

De-identification (:mod:`aooct_core.io.deid`) removes the attributes that identify a
patient and replaces the ``subject_id`` by a pseudonym. A lab's own text can still carry the
same identifiers: a ``case_id`` such as ``DOE_JANE_OD``, a drop folder a scanner named
``12345678_1970-01-01``, notes saying "MRN 12345678 blinked a lot". This module screens such
text against the identifiers the case itself supplies — its ``subject_id`` as received and,
for DICOM, the patient's names, IDs and birth date — before anything is stored.

It finds only what the case carries: a name the case does not hold (a relative's, a
physician's) is not guessed from a dictionary.

Matching is on alphanumeric tokens, case-folded, so separators do not hide a value:

* an ID (``subject_id``, ``PatientID``, ``OtherPatientIDs``, ``AccessionNumber`` …) matches
  where its tokens occur in a row (``S01`` in ``S01_OD``, not in ``S010_OD``), and, when it
  has 6 or more characters, anywhere in the text with separators removed (``MRN12345678``);
* a name matches component by component (``DOE^JANE``: ``DOE``, ``JANE``): a component of 4
  or more characters anywhere inside a token (``DoeJane``), a shorter one as a whole token;
* a birth date matches as YYYYMMDD, DDMMYYYY or MMDDYYYY with separators removed.

>>> ids = [Identifier("subject_id", "S01"), Identifier("PatientName", "DOE^JANE")]
>>> find_identifiers("S01_OD_visit2", ids)
['subject_id']
>>> find_identifiers("S010_OD", ids)
[]
>>> redact_identifiers("seen by JaneDoe, subject S01", ids)
('seen by [removed], subject [removed]', ['PatientName', 'subject_id'])
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Identifier", "identifiers_of_case", "identifiers_of_dicom", "find_identifiers",
           "redact_identifiers", "screen_case_names", "names_refusal", "neutral_name", "REMOVED"]

REMOVED = "[removed]"
#: DICOM attributes whose values identify the patient and may reappear in a lab's own text.
NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator")
DATE_KEYWORDS = ("PatientBirthDate",)
_TOKEN = re.compile(r"[^\W_]+")
_MIN_SUBSTRING_ID = 6
_MIN_SUBSTRING_NAME = 4


@dataclass(frozen=True)
class Identifier:
    """One identifying value and where it came from (``kind``: the attribute or field name).

    Held in memory only, while a case is screened; never stored or logged.
    """

    kind: str
    value: str

    def __repr__(self) -> str:   # a traceback or log line must not print the value
        return f"Identifier({self.kind!r}, <{len(self.value)} characters>)"


def identifiers_of_case(case_dict: object) -> list[Identifier]:
    """The identifiers a parsed ``case.json`` carries: its ``subject_id`` as received.

    Anything that is not a mapping with a string ``subject_id`` gives none (the case's own
    validation says what is wrong with it).
    """
    if isinstance(case_dict, dict) and isinstance(case_dict.get("subject_id"), str):
        subject = case_dict["subject_id"].strip()
        if subject:
            return [Identifier("subject_id", subject)]
    return []


def identifiers_of_dicom(ds) -> list[Identifier]:
    """The patient's names, IDs and birth date in a pydicom ``Dataset`` (top level and the
    ``OtherPatientIDsSequence``), read before the dataset is de-identified."""
    out: list[Identifier] = []

    def add(kind: str, value) -> None:
        values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
        for v in values:
            text = str(v or "").strip()
            if text:
                out.append(Identifier(kind, text))
    for kw in (*NAME_KEYWORDS, *ID_KEYWORDS, *DATE_KEYWORDS):
        if kw in ds:
            add(kw, ds[kw].value)
    for item in ds.get("OtherPatientIDsSequence", None) or []:
        if "PatientID" in item:
            add("OtherPatientIDs", item.PatientID)
    return out


def _tokens(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group().casefold()) for m in _TOKEN.finditer(text)]


def _compact_spans(tokens, needle: str) -> Iterable[tuple[int, int]]:
    """Token index ranges ``[i, j]`` whose joined text contains ``needle``."""
    joined = "".join(t for _, _, t in tokens)
    owner = [i for i, (_, _, t) in enumerate(tokens) for _ in t]
    start = joined.find(needle)
    while start >= 0:
        yield owner[start], owner[start + len(needle) - 1]
        start = joined.find(needle, start + 1)


def _date_variants(value: str) -> list[str]:
    digits = re.sub(r"\D", "", value)
    if len(digits) != 8:
        return []
    y, m, d = digits[:4], digits[4:6], digits[6:]
    return sorted({y + m + d, d + m + y, m + d + y})


def _hits(text: str, identifiers: Iterable[Identifier]) -> list[tuple[int, int, str]]:
    """``(first_token, last_token, kind)`` for every occurrence of an identifier in ``text``."""
    tokens = _tokens(text)
    words = [t for _, _, t in tokens]
    hits = []
    for ident in identifiers:
        if ident.kind in DATE_KEYWORDS:
            for variant in _date_variants(ident.value):
                hits += [(i, j, ident.kind) for i, j in _compact_spans(tokens, variant)]
        elif ident.kind in NAME_KEYWORDS:
            for part in {p for _, _, p in _tokens(ident.value)}:
                for i, w in enumerate(words):
                    if w == part or (len(part) >= _MIN_SUBSTRING_NAME and part in w):
                        hits.append((i, i, ident.kind))
        else:   # an ID: subject_id and the DICOM patient IDs
            parts = [p for _, _, p in _tokens(ident.value)]
            if not parts or len("".join(parts)) < 2:
                continue
            n = len(parts)
            hits += [(i, i + n - 1, ident.kind) for i in range(len(words) - n + 1)
                     if words[i:i + n] == parts]
            if len("".join(parts)) >= _MIN_SUBSTRING_ID:
                hits += [(i, j, ident.kind) for i, j in _compact_spans(tokens, "".join(parts))]
    return hits


def find_identifiers(text: str, identifiers: Iterable[Identifier]) -> list[str]:
    """The kinds of identifier (e.g. ``["PatientName", "subject_id"]``) found in ``text``, sorted.

    Parameters
    ----------
    text : str
        A case_id, a folder or file name, notes.
    identifiers : iterable of Identifier
        From :func:`identifiers_of_case` and :func:`identifiers_of_dicom`.

    Returns
    -------
    list of str
        Empty when ``text`` holds none. The values themselves are never returned, so a
        message built from the result cannot repeat them.
    """
    return sorted({kind for _, _, kind in _hits(text, identifiers)})


def redact_identifiers(text: str, identifiers: Iterable[Identifier], *, mark: str = REMOVED
                       ) -> tuple[str, list[str]]:
    """``text`` with every token that holds an identifier replaced by ``mark``.

    Returns
    -------
    text : str
        The redacted text (unchanged when nothing was found); adjacent redacted tokens
        and the separators between them become one ``mark``.
    kinds : list of str
        The kinds of identifier removed, sorted.
    """
    tokens = _tokens(text)
    hits = _hits(text, identifiers)
    if not hits:
        return text, []
    marked = sorted({k for i, j, _ in hits for k in range(i, j + 1)})
    runs: list[list[int]] = []
    for k in marked:
        if runs and runs[-1][1] == k - 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    out, pos = [], 0
    for i, j in runs:
        out += [text[pos:tokens[i][0]], mark]
        pos = tokens[j][1]
    out.append(text[pos:])
    return "".join(out), sorted({kind for _, _, kind in hits})


def screen_case_names(case_id: str, volume_files: Iterable[str],
                      identifiers: Iterable[Identifier]) -> list[str]:
    """Problems, one per name, when the ``case_id`` or a volume's file name holds an identifier.

    These names become object-store keys, partition names and database rows, so a case
    whose names identify its patient is refused rather than stored. The problems name the
    *kind* of identifier and the volume's position, never the value.

    Parameters
    ----------
    case_id : str
    volume_files : iterable of str
        case.json's ``volumes``, in order.
    identifiers : iterable of Identifier

    Returns
    -------
    list of str
        Empty when no name holds an identifier.

    >>> ids = [Identifier("PatientID", "12345678")]
    >>> screen_case_names("MRN12345678_OD", ["r1.dcm", "12345678_r2.dcm"], ids)  # doctest: +NORMALIZE_WHITESPACE
    ["case_id holds the patient's PatientID: give the case an id that does not identify the
    patient (a study code such as S07_OD)",
     "volume 2 of 2's file name holds the patient's PatientID: rename the file (e.g. repeat2.dcm)
     and list the new name in case.json"]
    """
    identifiers = list(identifiers)
    volume_files = list(volume_files)
    problems = []
    kinds = find_identifiers(case_id, identifiers)
    if kinds:
        problems.append(f"case_id holds the patient's {', '.join(kinds)}: give the case an id that "
                        "does not identify the patient (a study code such as S07_OD)")
    for i, name in enumerate(volume_files, start=1):
        kinds = find_identifiers(name, identifiers)
        if kinds:
            ext = "".join(c for c in name[name.rfind("."):] if c.isalnum() or c == ".") if "." in name else ""
            problems.append(f"volume {i} of {len(volume_files)}'s file name holds the patient's "
                            f"{', '.join(kinds)}: rename the file (e.g. repeat{i}{ext}) and list the "
                            "new name in case.json")
    return problems


def names_refusal(case_id: str, volume_files: Iterable[str],
                  identifiers: Iterable[Identifier]) -> str | None:
    """The one reason a case is refused for its names (:func:`screen_case_names`), or None.

    >>> names_refusal("C17_OD", ["vol_00.dcm"], [Identifier("subject_id", "S01")]) is None
    True
    """
    problems = screen_case_names(case_id, volume_files, identifiers)
    return ("names that identify the patient are never stored: " + "; ".join(problems)) if problems else None


def neutral_name(name: str, *, key: bytes, prefix: str = "drop-") -> str:
    """A stable name that does not reveal ``name``: ``prefix`` + 10 hex digits of a keyed
    HMAC-SHA256 (the same ``name`` and key always give the same result).

    >>> neutral_name("DOE_JANE", key=b"k" * 16)
    'drop-...'
    """
    return prefix + hmac.new(key, name.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:10]
