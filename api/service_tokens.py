"""Service tokens for scanners and scripts: long-lived, scoped, revocable, hashed at rest.

A token is ``aooct_st_`` + 256 random bits, shown once when an Admin creates it; the
metadata DB keeps only its SHA-256 (:meth:`resources.metadata_db.MetadataDB.create_service_token`).
Its scopes are permission names of :mod:`api.policy` (``upload_case`` for a scanner's ingest,
``view_cases`` for a dashboard); the token is allowed exactly those, whatever the roles say.
Every use stamps ``last_used_at`` (at most once a minute); a revoked token is refused at once.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from api.auth import AuthError
from api.policy import PERMISSIONS, Principal

__all__ = ["PREFIX", "ServiceTokens", "is_service_token"]

PREFIX = "aooct_st_"
_TOUCH_EVERY = timedelta(seconds=60)


def is_service_token(token: str) -> bool:
    return token.startswith(PREFIX)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ServiceTokens:
    """Create, check and revoke service tokens in ``db``."""

    def __init__(self, db):
        self.db = db

    def create(self, name: str, scopes: list[str], *, created_by: str) -> tuple[int, str]:
        """A new token ``(id, token)``; the token is not stored and cannot be shown again."""
        name = name.strip()
        if not name or len(name) > 64:
            raise ValueError("a service token needs a name of 1-64 characters (what it is for)")
        unknown = sorted(set(scopes) - set(PERMISSIONS))
        if unknown or not scopes:
            raise ValueError(f"scopes must be permission names from {sorted(PERMISSIONS)}; got {sorted(scopes)}")
        token = PREFIX + secrets.token_urlsafe(32)
        token_id = self.db.create_service_token(name, _hash(token), scopes=sorted(set(scopes)),
                                                created_by=created_by)
        return token_id, token

    def verify(self, token: str) -> Principal:
        row = self.db.get_service_token(_hash(token))
        if row is None:
            raise AuthError("unknown service token")
        if row["revoked_at"]:
            raise AuthError("the service token was revoked; ask an Admin for a new one")
        now = datetime.now(timezone.utc)
        last = row["last_used_at"]
        if last is None or now - datetime.fromisoformat(last) >= _TOUCH_EVERY:
            self.db.touch_service_token(row["id"], now=now)
        return Principal(subject=f"service:{row['name']}", roles=frozenset(), via="service",
                         scopes=frozenset(row["scopes"]))
