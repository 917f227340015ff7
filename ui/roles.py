"""Roles and the permissions they grant, as the review app sees them.

The policy itself (roles, permissions, who has which) lives in :mod:`api.policy`, which the
gateway decides with; it is re-exported here so that pages keep asking
``has_permission(role, permission)``. What is the app's own is which permission each page
needs before it renders anything.
"""
from __future__ import annotations

from api.policy import PERMISSIONS, ROLE_PERMISSIONS, ROLES, has_permission, permissions_of, validate_role

__all__ = [
    "ROLES",
    "PERMISSIONS",
    "ROLE_PERMISSIONS",
    "PAGE_PERMISSIONS",
    "has_permission",
    "permissions_of",
    "validate_role",
]

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
