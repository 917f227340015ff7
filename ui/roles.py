"""Roles and the permissions they grant.

The five kinds of user and what each may do. Pages and actions ask
``has_permission(role, permission)``; nothing else in the UI compares role names,
so changing who may do what is a one-line edit here.
"""
from __future__ import annotations

__all__ = [
    "ROLES",
    "PERMISSIONS",
    "ROLE_PERMISSIONS",
    "PAGE_PERMISSIONS",
    "has_permission",
    "permissions_of",
    "validate_role",
]

ROLES: tuple[str, ...] = ("Researcher", "Tech", "Labeler", "ML Engineer", "Admin")

# Every permission the app checks, with what it guards.
PERMISSIONS: dict[str, str] = {
    "view_cases": "list cases with status, QC flags and metrics",
    "view_case": "open a case for review (images, overlays, metrics)",
    "review_case": "approve or reject a case with a comment",
    "upload_case": "upload a case folder or zip for ingest",
    "label": "add, remove and move points and correct vessel masks",
    "view_dashboards": "cohort plots and distributions",
    "export": "export metrics (CSV/Parquet) and reports to the export location",
    "view_models": "registered model versions, cards, metrics and aliases",
    "manage_users": "create users and change roles",
    "view_audit": "read the audit log",
    "look_up_subject": "look up the subject_id a subject pseudonym stands for (audited)",
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "Researcher": frozenset(
        {"view_cases", "view_case", "review_case", "view_dashboards", "export"}
    ),
    # Techs acquire and upload data and judge whether an acquisition is usable.
    "Tech": frozenset({"view_cases", "view_case", "review_case", "upload_case"}),
    "Labeler": frozenset({"view_cases", "view_case", "label"}),
    "ML Engineer": frozenset({"view_cases", "view_case", "view_dashboards", "view_models"}),
    "Admin": frozenset(PERMISSIONS),
}

# The permission each page needs before it renders anything.
PAGE_PERMISSIONS: dict[str, str] = {
    "cases": "view_cases",
    "upload": "upload_case",
    "review": "view_case",
    "labeling": "label",
    "dashboards": "view_dashboards",
    "models": "view_models",
    "admin": "manage_users",
}


def validate_role(role: str) -> str:
    """Return ``role`` if it is one of :data:`ROLES`, else raise ``ValueError``."""
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def permissions_of(role: str | None) -> frozenset[str]:
    """Permissions granted to ``role``; an unknown or missing role grants nothing."""
    if role is None:
        return frozenset()
    return ROLE_PERMISSIONS.get(role, frozenset())


def has_permission(role: str | None, permission: str) -> bool:
    """Whether ``role`` may do ``permission``.

    Raises ``ValueError`` for a permission name that does not exist, so a typo in a
    page cannot silently deny (or allow) everything.
    """
    if permission not in PERMISSIONS:
        raise ValueError(
            f"unknown permission {permission!r}; use one of {', '.join(sorted(PERMISSIONS))}"
        )
    return permission in permissions_of(role)
