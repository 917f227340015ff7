"""People-side records of the metadata DB: labels, reviews, users and roles, the audit log.

A mixin of :class:`resources.metadata_db.SqlMetadataDB` (kept apart so that each module stays
one idea): labels are versioned per annotator and never overwritten, the audit log is
append-only (both enforced by triggers in the migrations too).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from resources import db_models as m

__all__ = ["PeopleRecords", "plain_row", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def plain_row(row) -> dict[str, Any]:
    """A result row as a plain dict; datetimes as ISO-8601 UTC strings."""
    out = {}
    for key, value in row._mapping.items():
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
        out[key] = value
    return out


_now, _plain = utc_now, plain_row


class PeopleRecords:
    """Labels, reviews, users and audit methods; needs ``self.engine``."""

    def add_label(self, case_id: str, structure: str, annotator: str, payload: dict) -> int:
        """Save a new label version (1, 2, ...) for (case, structure, annotator); never overwrites."""
        t = m.labels.c
        for _attempt in range(3):  # two annotators saving at once: the loser takes the next number
            try:
                with self.engine.begin() as conn:
                    last = conn.execute(select(func.max(t.version)).where(and_(
                        t.case_id == case_id, t.structure == structure,
                        t.annotator == annotator))).scalar()
                    version = int(last or 0) + 1
                    conn.execute(insert(m.labels).values(
                        case_id=case_id, structure=structure, annotator=annotator,
                        version=version, payload=payload, created_at=_now()))
                return version
            except IntegrityError as exc:
                last_error = exc
        raise RuntimeError(f"could not save a label for case {case_id!r}: {last_error}") from last_error

    def get_labels(self, case_id: str, *, structure=None, annotator=None,
                   latest_only: bool = False) -> list[dict]:
        t = m.labels.c
        stmt = select(m.labels).where(t.case_id == case_id)
        if structure is not None:
            stmt = stmt.where(t.structure == structure)
        if annotator is not None:
            stmt = stmt.where(t.annotator == annotator)
        with self.engine.connect() as conn:
            rows = [_plain(r) for r in conn.execute(
                stmt.order_by(t.structure, t.annotator, t.version))]
        if latest_only:
            latest: dict[tuple, dict] = {}
            for r in rows:
                latest[(r["structure"], r["annotator"])] = r
            rows = list(latest.values())
        return rows

    def add_review(self, case_id: str, reviewer: str, decision: str, comment: str = "") -> int:
        if decision not in m.REVIEW_DECISIONS:
            raise ValueError(f"decision must be one of {m.REVIEW_DECISIONS}; got {decision!r}")
        with self.engine.begin() as conn:
            res = conn.execute(insert(m.reviews).values(
                case_id=case_id, reviewer=reviewer, decision=decision, comment=comment,
                created_at=_now()))
            return int(res.inserted_primary_key[0])

    def get_reviews(self, case_id: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(
                select(m.reviews).where(m.reviews.c.case_id == case_id).order_by(m.reviews.c.id))]

    def create_user(self, username: str, *, name: str, email: str, password_hash: str,
                    role: str) -> None:
        _check_role(role)
        if not password_hash.startswith("$2"):
            raise ValueError("password_hash must be a bcrypt hash ('$2b$...'); "
                             "use resources.metadata_db.hash_password(plain)")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(m.users).values(
                    username=username, name=name, email=email, password_hash=password_hash,
                    role=role, active=True, created_at=_now()))
        except IntegrityError as exc:
            raise ValueError(f"user {username!r} already exists; use set_role to change it") from exc

    def get_user(self, username: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(m.users).where(m.users.c.username == username)).first()
        return _plain(row) if row else None

    def list_users(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(select(m.users).order_by(m.users.c.username))]

    def set_role(self, username: str, role: str) -> None:
        _check_role(role)
        with self.engine.begin() as conn:
            res = conn.execute(update(m.users).where(m.users.c.username == username)
                               .values(role=role))
            if res.rowcount == 0:
                raise KeyError(f"user {username!r} does not exist")

    def set_active(self, username: str, active: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(m.users).where(m.users.c.username == username)
                         .values(active=bool(active)))

    def audit(self, actor: str, action: str, *, case_id=None, model_version=None, detail=None,
              allowed: bool = True) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(insert(m.audit_log).values(
                ts=_now(), actor=actor, action=action, case_id=case_id,
                model_version=model_version, detail=detail, allowed=bool(allowed)))
            return int(res.inserted_primary_key[0])

    def list_audit(self, *, actor=None, action=None, case_id=None, limit: int = 200) -> list[dict]:
        t = m.audit_log.c
        stmt = select(m.audit_log)
        for col, value in ((t.actor, actor), (t.action, action), (t.case_id, case_id)):
            if value is not None:
                stmt = stmt.where(col == value)
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(stmt.order_by(t.id.desc()).limit(limit))]



def _check_role(role: str) -> None:
    if role not in m.ROLES:
        raise ValueError(f"role must be one of {m.ROLES}; got {role!r}")


