"""Where a case's artifacts live in the object store.

The Dagster assets write these keys, the review app and the gateway read them. The case prefix
(:func:`case_prefix`) and the artifact patterns the readers classify keys by are stated here;
the assets still spell the keys below the prefix themselves. Everything of case ``<id>`` is
under ``cases/<id>/``:

==============================================  ==========================================
``corrected/volume.npy``                        the corrected repeat average (bscan, depth, aline)
``corrected/surfaces/<surface>.npy``            layer depths (bscan, aline), px
``enface/<slab>.npy``                           en face slabs (bscan, aline)
``masks/<cones|rpe>/points_rc.npy``             cell centres (N, 2) in the slab's frame
``masks/<capillaries|nfl>/mask.npy``            vessel masks (bool)
``masks/<structure>/<heatmap|probability>_var.npy``  uncertainty maps
``report/report.html``                          the case report
==============================================  ==========================================
"""
from __future__ import annotations

import re

__all__ = ["case_prefix", "ARTIFACT_KINDS", "classify", "VOLUME", "REPORT", "enface_key"]

VOLUME = "corrected/volume.npy"
REPORT = "report/report.html"

#: (kind, pattern of the key relative to the case prefix, naming the artifact ``name``).
ARTIFACT_KINDS: tuple[tuple[str, re.Pattern], ...] = (
    ("enface", re.compile(r"^enface/(?P<name>[\w-]+)\.npy$")),
    ("points", re.compile(r"^masks/(?P<name>cones|rpe)/points_rc\.npy$")),
    ("masks", re.compile(r"^masks/(?P<name>capillaries|nfl)/mask\.npy$")),
    ("uncertainty", re.compile(r"^masks/(?P<name>[\w-]+)/(heatmap_var|probability_var)\.npy$")),
    ("surfaces", re.compile(r"^corrected/surfaces/(?P<name>[\w-]+)\.npy$")),
)

_CASE_ID = re.compile(r"^[\w.~-]{1,140}$")


def case_prefix(case_id: str) -> str:
    """``cases/<case_id>`` (no trailing slash); refuses ids that could leave the prefix.

    >>> case_prefix("DEMO-000")
    'cases/DEMO-000'
    """
    if not _CASE_ID.match(case_id) or case_id in (".", ".."):
        raise ValueError(f"case id {case_id!r} is not a store-safe name (letters, digits, . _ ~ -)")
    return f"cases/{case_id}"


def enface_key(case_id: str, slab: str) -> str:
    """The key of an en face slab, e.g. ``cases/C1/enface/isos_cost.npy``."""
    if not re.fullmatch(r"[\w-]+", slab):
        raise ValueError(f"slab name {slab!r} must be letters, digits, _ or -")
    return f"{case_prefix(case_id)}/enface/{slab}.npy"


def classify(relative_key: str) -> tuple[str, str] | None:
    """``(kind, name)`` of a key relative to the case prefix, ``("volume", "volume")`` /
    ``("report", "report")``, or None for keys that are no artifact of the review.

    >>> classify("masks/cones/points_rc.npy")
    ('points', 'cones')
    """
    if relative_key == VOLUME:
        return "volume", "volume"
    if relative_key == REPORT:
        return "report", "report"
    for kind, pattern in ARTIFACT_KINDS:
        m = pattern.match(relative_key)
        if m:
            return kind, m.group("name")
    return None
