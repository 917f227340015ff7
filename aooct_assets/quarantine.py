"""Refused drops: kept for the lab to fix under ``_quarantine/``, never as a copy of the
patient's identifiers; duplicates recorded under ``_duplicates/``.

A quarantined drop is de-identified in place (:func:`scrub_quarantined`). Its folder and
file names are screened against the identifiers the drop itself carries (``subject_id`` as
received, the DICOM patient names, IDs and birth date; :mod:`aooct_core.io.phi`): a name that
holds one is replaced by a neutral one (``drop-<keyed hash>``, ``file-<n>.<ext>``) and the
reason text is redacted, so ``REASON.txt`` never repeats what it refuses.
"""
from __future__ import annotations

import hashlib
import json
import re

from aooct_core.io.drop_layout import QUARANTINE
from aooct_core.io.phi import (REMOVED, Identifier, find_identifiers, identifiers_of_case, neutral_name,
                               redact_identifiers)
from resources.object_store import ObjectStore

__all__ = ["quarantine", "scrub_quarantined", "retire_duplicate", "drop_token"]


def drop_token(name: str, *, key: bytes | None = None) -> str:
    """``drop-<10 hex>``: the name a drop is logged and remembered by before (or instead of)
    its own name, which may identify the patient (a keyed hash: stable, not reversible)."""
    from resources.config import deid_uid_key

    return neutral_name(name, key=key if key is not None else deid_uid_key())


#: ``"subject_id": "..."`` in a case.json that is not valid JSON (a trailing comma, a cut).
_SUBJECT_IN_TEXT = re.compile(rb'"subject_id"\s*:\s*"((?:[^"\\\r\n]|\\.){1,256})"')


def _subjects_in_text(data: bytes) -> list[tuple[bytes, str]]:
    """Each ``subject_id`` string written in ``data`` (raw bytes, decoded value)."""
    out = []
    for m in _SUBJECT_IN_TEXT.finditer(data):
        try:
            value = json.loads(b'"' + m.group(1) + b'"')
        except ValueError:
            value = m.group(1).decode("utf-8", "replace")
        if value.strip():
            out.append((m.group(1), value))
    return out


def _case_identifiers(store: ObjectStore, prefix: str) -> list[Identifier]:
    """``subject_id`` of ``prefix/case.json``: parsed, or found in its text when it does not
    parse (a lab's half-written case.json still names its subject)."""
    from aooct_core.io import InputError
    from aooct_core.io.jsonsafe import loads_bounded

    key = f"{prefix}/case.json"
    if not store.exists(key):
        return []
    data = store.get_bytes(key)
    try:
        return identifiers_of_case(loads_bounded(data, source=store.uri(key)))
    except InputError:
        return [Identifier("subject_id", v.strip()) for _raw, v in _subjects_in_text(data)]


def quarantine(store: ObjectStore, name: str, reason: str, sig: str, *,
               identifiers: list[Identifier] | tuple[Identifier, ...] = ()) -> str:
    """Move drop ``name`` under ``_quarantine/`` with ``REASON.txt``; returns the new prefix.

    Its DICOM files are then de-identified in place and case.json's ``subject_id`` replaced by
    its pseudonym (:func:`scrub_quarantined`); a DICOM that cannot be de-identified is removed,
    listed in ``REASON.txt`` by size and sha256. ``identifiers`` (what the caller already read,
    e.g. the DICOM headers) are screened for with the drop's own: a folder name holding one
    becomes ``drop-<keyed hash>``, a file name ``file-<n>.<ext>``, and ``REASON.txt`` is
    redacted.
    """
    ids = [*identifiers, *_case_identifiers(store, name)]
    base = drop_token(name) if find_identifiers(name, ids) else name
    dest = f"{QUARANTINE}/{base}"
    if store.list_keys(dest + "/"):
        dest = f"{dest}-{sig[:8]}"
    # The reason is written first: if the move is interrupted, the half-moved drop is
    # still explained, and every file exists in exactly one of the two places.
    store.put_bytes(f"{dest}/REASON.txt", (redact_identifiers(reason, ids)[0].rstrip() + "\n").encode())
    store.move_prefix(name, dest)
    if name in store.refused_entries(name):  # the drop itself is a link or a FIFO
        store.move(name, f"{dest}/{base}")
    scrubbed, found = scrub_quarantined(store, dest)
    ids += found
    if base == name and find_identifiers(name, ids):   # only the DICOM headers told
        moved = f"{QUARANTINE}/{drop_token(name)}"
        moved = moved if not store.list_keys(moved + "/") else f"{moved}-{sig[:8]}"
        store.move_prefix(dest, moved, last=("REASON.txt",))
        dest = moved
    scrubbed += _neutral_file_names(store, dest, ids)
    text = reason.rstrip() + ("\n\n" + "\n".join(scrubbed) if scrubbed else "")
    redacted, kinds = redact_identifiers(text, ids)
    if kinds or base != name or dest.rsplit("/", 1)[1] != name:
        redacted += ("\n\nNames and text holding the patient's identifiers were replaced "
                     "(the folder by a keyed hash of its name, files by file-<n>): rename them "
                     "in your copy before dropping the case again.")
    store.put_bytes(f"{dest}/REASON.txt", (redacted.rstrip() + "\n").encode())
    return dest


def _neutral_file_names(store: ObjectStore, prefix: str, ids: list[Identifier]) -> list[str]:
    """Rename files under ``prefix/`` whose path below it holds an identifier."""
    lines = []
    n = 0
    for key in sorted(store.list_keys(prefix + "/")):
        rel = key[len(prefix) + 1:]
        if rel == "REASON.txt" or not find_identifiers(rel, ids):
            continue
        n += 1
        leaf = rel.rsplit("/", 1)[-1]
        ext = leaf[leaf.rfind("."):] if "." in leaf and not find_identifiers(leaf[leaf.rfind("."):], ids) else ""
        new = f"file-{n}{ext}"
        while store.exists(f"{prefix}/{new}"):
            n += 1
            new = f"file-{n}{ext}"
        store.move(key, f"{prefix}/{new}")
        lines.append(f"{rel}: renamed to {new}")   # redacted by the caller
    return lines


def scrub_quarantined(store: ObjectStore, prefix: str, *, uid_key: bytes | None = None
                      ) -> tuple[list[str], list[Identifier]]:
    """Take the identifiers out of a quarantined drop, in place.

    Every DICOM file is de-identified with the ingest's
    :func:`aooct_core.io.deid.deidentify_dicom_file`; one that cannot be (burned-in
    annotation, unreadable, over the read budget) is deleted. A ``case.json`` that parses
    to an object with a string ``subject_id`` gets the subject's pseudonym instead
    (:func:`aooct_core.io.deid.pseudonymize_subject`; the original is not kept: it is the
    lab's own, and the subject map only holds subjects of stored cases); one that does not
    parse keeps its text with each ``"subject_id": "..."`` in it pseudonymized and the
    drop's other identifiers replaced by ``[removed]``.

    Returns
    -------
    lines : list of str
        One line per file changed: what was removed from it, or that it was deleted, with
        its size and sha256 as received (so the lab can match it to its own copy).
    identifiers : list of Identifier
        What was found (``subject_id``, the DICOM headers' patient identifiers), for
        screening the drop's names; held in memory only.
    """
    import tempfile
    from pathlib import Path

    from aooct_core.io import InputError
    from aooct_core.io.deid import deidentify_dicom_file, dicom_identifiers, looks_like_dicom
    from resources.config import deid_uid_key

    lines: list[str] = []
    found: list[Identifier] = []
    key_bytes = uid_key

    def secret() -> bytes:   # read only when a file needs it
        nonlocal key_bytes
        key_bytes = key_bytes if key_bytes is not None else deid_uid_key()
        return key_bytes
    objects = store.list_objects(prefix + "/")
    case_key = f"{prefix}/case.json"
    for key, size in sorted(objects.items()):
        name = key[len(prefix) + 1:]
        if name == "REASON.txt" or key == case_key:
            continue     # case.json last: the DICOM headers' identifiers screen its text too
        with tempfile.TemporaryDirectory(prefix="aooct-scrub-") as tmp:
            path = store.get_file(key, Path(tmp) / "file")
            sha = hashlib.sha256()
            with open(path, "rb") as fh:
                head = fh.read(132)
                if not looks_like_dicom(name, head):
                    continue
                sha.update(head)
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
            digest = sha.hexdigest()
            try:
                res = deidentify_dicom_file(path, uid_key=secret(), source=store.uri(key))
            except InputError as exc:
                try:    # a burned-in image still has a readable header to screen names with
                    found += dicom_identifiers(path)
                except InputError:
                    pass   # unreadable: nothing to screen with; the file is deleted below
                store.delete(key)
                lines.append(f"{name}: deleted, it could not be de-identified ({exc.problem}); "
                             f"{size} bytes, sha256 {digest}")
                continue
        found += res.identifiers
        store.put_bytes(key, res.data)
        lines.append(f"{name}: de-identified in place ({', '.join(res.removed) or 'nothing to remove'}); "
                     f"as received {size} bytes, sha256 {digest}")
    if case_key in objects:
        data = store.get_bytes(case_key)
        changed = _scrub_case_json(data, found, secret, source=store.uri(case_key))
        if changed is not None:
            store.put_bytes(case_key, changed[0])
            lines.append(f"case.json: {changed[1]}; as received {objects[case_key]} bytes, "
                         f"sha256 {hashlib.sha256(data).hexdigest()}")
    return lines, found


def _scrub_case_json(data: bytes, found: list[Identifier], secret, *, source: str
                     ) -> tuple[bytes, str] | None:
    """case.json without its identifiers, and what was changed; ``None`` when nothing was.

    One that parses gets the pseudonym in ``subject_id``. One that does not keeps its text
    for the lab to fix: each ``"subject_id": "..."`` written in it gets the pseudonym, then
    every identifier of the drop (``found``, extended in place) is replaced by ``[removed]``.
    """
    from aooct_core.io import InputError
    from aooct_core.io.deid import pseudonymize_subject
    from aooct_core.io.jsonsafe import loads_bounded

    try:
        spec = loads_bounded(data, source=source)
    except InputError:
        pass
    else:
        if not (isinstance(spec, dict) and isinstance(spec.get("subject_id"), str)):
            return None
        found += identifiers_of_case(spec)
        pseudonym = pseudonymize_subject(spec["subject_id"], key=secret())
        if pseudonym == spec["subject_id"]:
            return None
        return (json.dumps({**spec, "subject_id": pseudonym}, indent=2).encode(),
                f"subject_id replaced by its pseudonym {pseudonym}")
    text, whats = data, []
    for raw, value in _subjects_in_text(data):
        found.append(Identifier("subject_id", value.strip()))
        pseudonym = pseudonymize_subject(value.strip(), key=secret())
        if pseudonym != value.strip():
            text = text.replace(b'"' + raw + b'"', b'"' + pseudonym.encode() + b'"')
            whats.append(f"subject_id replaced by its pseudonym {pseudonym}")
    redacted, kinds = redact_identifiers(text.decode("utf-8", "surrogateescape"), found)
    if kinds:
        text = redacted.encode("utf-8", "surrogateescape")
        whats.append(f"the patient's {', '.join(kinds)} replaced by {REMOVED}")
    if not whats:
        return None
    return text, "not valid JSON, kept for you to fix: " + "; ".join(dict.fromkeys(whats))


def retire_duplicate(store: ObjectStore, name: str, dest: str, listing: dict, why: str) -> None:
    """Replace duplicate drop ``name`` by ``dest/REASON.txt``: why, and each file's size
    and sha256. Its bytes are those of the drop it duplicates, which keeps them (stored,
    de-identified where DICOM); a second verbatim copy would only keep identifiers."""
    ids = _case_identifiers(store, name)
    lines = [why, "", "files removed (the same bytes are held by that drop):"]
    for key in sorted(listing):
        lines.append(f"  {key[len(name) + 1:]}  {listing[key]} bytes  "
                     f"sha256 {hashlib.sha256(store.get_bytes(key)).hexdigest()}")
    text = redact_identifiers("\n".join(lines), ids)[0]
    store.put_bytes(f"{dest}/REASON.txt", (text + "\n").encode())
    store.delete_prefix(name, keys=listing)
