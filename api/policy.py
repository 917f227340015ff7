"""Who may do what: the one role × action policy of the platform, deny by default.

The gateway (:mod:`api.application`) and the review app (``ui/roles.py`` re-exports this)
ask :func:`has_permission`; nothing else compares role names, so changing who may do what
is a one-line edit here. An unknown role grants nothing; an unknown permission is a
programming error (``ValueError``), so a typo cannot silently allow or deny everything.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ROLES",
    "PERMISSIONS",
    "ROLE_PERMISSIONS",
    "Principal",
    "has_permission",
    "permissions_of",
    "validate_role",
]

ROLES: tuple[str, ...] = ("Researcher", "Tech", "Labeler", "ML Engineer", "Admin")

# Every permission the platform checks, with what it guards.
PERMISSIONS: dict[str, str] = {
    "view_cases": "list cases with status, QC flags and metrics",
    "view_case": "open a case for review (images, overlays, metrics)",
    "review_case": "approve or reject a case with a comment",
    "upload_case": "upload a case folder or zip for ingest",
    "run_case": "start (or re-start) a case's pipeline run",
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
    "Tech": frozenset({"view_cases", "view_case", "review_case", "upload_case", "run_case"}),
    "Labeler": frozenset({"view_cases", "view_case", "label"}),
    "ML Engineer": frozenset({"view_cases", "view_case", "view_dashboards", "view_models", "run_case"}),
    "Admin": frozenset(PERMISSIONS),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes
    ----------
    subject : str
        Who: the username, or the identity provider's ``sub`` / e-mail (audited as is;
        never a patient identifier).
    roles : frozenset of str
        Of :data:`ROLES`; the permissions are their union. Empty (a token without a known
        role) grants nothing.
    via : str
        How the caller signed in (``"oidc"``, ``"password"``, ``"service"``).
    scopes : frozenset of str or None
        A service token's permissions: when set, the caller may exactly these, whatever
        ``roles`` says.
    """

    subject: str
    roles: frozenset[str]
    via: str
    scopes: frozenset[str] | None = None

    def may(self, permission: str) -> bool:
        """Whether the caller's scopes, or else any of its roles, grant ``permission``."""
        if permission not in PERMISSIONS:
            raise ValueError(
                f"unknown permission {permission!r}; use one of {', '.join(sorted(PERMISSIONS))}")
        if self.scopes is not None:
            return permission in self.scopes
        return any(permission in permissions_of(r) for r in self.roles)


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
    page or a route cannot silently deny (or allow) everything.
    """
    if permission not in PERMISSIONS:
        raise ValueError(
            f"unknown permission {permission!r}; use one of {', '.join(sorted(PERMISSIONS))}"
        )
    return permission in permissions_of(role)
