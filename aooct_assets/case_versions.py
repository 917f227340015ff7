"""Case identity: a ``case_id`` dropped again with other content is a new version, never an overwrite.

The first content dropped for ``case_id`` S001 is partition ``S001``; different content
dropped later under the same ``case_id`` (a re-acquisition, a corrected export, a mistake)
becomes partition ``S001~v2``, then ``S001~v3`` … with its own raw data, results and
metadata-DB row, so nothing already stored for ``S001`` changes. ``~`` cannot occur in a
``case_id`` (``aooct_core.casefile`` allows ``[A-Za-z0-9._-]``), so the key is unambiguous.

What content a partition holds is read from the Dagster instance: the drop sensor and
``aooct process`` tag every run with ``aooct/content_hash``. With the policy
``quarantine`` (``AOOCT_CASE_ID_CONFLICT=quarantine``) a conflicting drop is refused
instead and moved to ``_quarantine/`` with the reason.
"""
from __future__ import annotations

import re

__all__ = ["VERSION_SEP", "CONFLICT_POLICIES", "base_case_id", "version_of", "resolve_partition",
           "CONTENT_HASH_TAG"]

VERSION_SEP = "~v"
CONFLICT_POLICIES = ("version", "quarantine")
#: Run tag with the content hash (Dagster tag values hold at most 63 characters).
CONTENT_HASH_TAG = "aooct/content_hash"
_KEY_RE = re.compile(r"^(?P<base>[A-Za-z0-9][A-Za-z0-9._-]*)(?:~v(?P<n>[2-9]|[1-9][0-9]+))?$")


def base_case_id(partition_key: str) -> str:
    """The ``case_id`` of ``case.json`` behind a partition key (``S001~v2`` → ``S001``)."""
    m = _KEY_RE.match(partition_key)
    if not m:
        raise ValueError(f"{partition_key!r} is not a case partition key (case_id or case_id~vN)")
    return m["base"]


def version_of(partition_key: str) -> int:
    """1 for ``S001``, N for ``S001~vN``."""
    m = _KEY_RE.match(partition_key)
    if not m:
        raise ValueError(f"{partition_key!r} is not a case partition key (case_id or case_id~vN)")
    return int(m["n"] or 1)


def _key(case_id: str, version: int) -> str:
    return case_id if version == 1 else f"{case_id}{VERSION_SEP}{version}"


def _hashes_of(instance, partition_key: str) -> set[str]:
    from dagster import RunsFilter

    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/partition": partition_key}))
    return {r.tags[CONTENT_HASH_TAG] for r in runs if r.tags.get(CONTENT_HASH_TAG)}


def resolve_partition(instance, case_id: str, content_hash: str, *, partitions_def_name: str = "cases",
                      pending: dict[str, str] | None = None,
                      existing: set[str] | None = None) -> tuple[str, bool]:
    """The partition for ``content_hash`` of ``case_id`` and whether it conflicts.

    Parameters
    ----------
    instance : DagsterInstance
    case_id : str
        From ``case.json``.
    content_hash : str
        sha256 of the case content (:func:`aooct_core.io.case_content_hash`).
    pending : dict, optional
        ``{partition_key: content_hash}`` already given out in this tick (not yet in the instance).
    existing : set of str, optional
        The partition keys of the instance, when the caller has them already (one query
        per tick instead of one per request).

    Returns
    -------
    partition_key : str
        The existing partition holding this content, or the first free version.
    conflict : bool
        True when ``case_id`` already holds other content (the key is then a new version).
    """
    tag = content_hash[:63]
    if existing is None:
        existing = set(instance.get_dynamic_partitions(partitions_def_name))
    pending = pending or {}
    version, conflict = 1, False
    while True:
        key = _key(case_id, version)
        if key in pending:
            if pending[key][:63] == tag:
                return key, conflict
        elif key in existing:
            hashes = _hashes_of(instance, key)
            if tag in hashes:  # (a partition without tagged runs holds unknown content: skipped)
                return key, conflict
        else:
            return key, conflict
        conflict = True
        version += 1
