"""People-side records of the metadata DB: labels, reviews, users and roles, the audit log,
review-app sessions, sign-in failure counters, the subject map and the gateway's service tokens.

A mixin of :class:`resources.metadata_db.SqlMetadataDB` (kept apart so that each module stays
one idea): labels are versioned per annotator and never overwritten, the audit log is
append-only (both enforced by triggers in the migrations too). Changing a user's role or
deactivating them revokes their sessions in the same transaction, so no open session keeps
rights its user no longer has. The session and lockout *policy* (lifetimes, thresholds,
backoff) lives in :mod:`api.sessions`; this module only stores.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
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

    def save_label_draft(self, case_id: str, structure: str, annotator: str, payload: dict) -> None:
        """Replace the annotator's autosaved working copy of (case, structure)."""
        key = dict(case_id=case_id, structure=structure, annotator=annotator)
        t = m.label_drafts.c
        with self.engine.begin() as conn:
            conn.execute(delete(m.label_drafts).where(and_(
                t.case_id == case_id, t.structure == structure, t.annotator == annotator)))
            conn.execute(insert(m.label_drafts).values(**key, payload=payload, updated_at=_now()))

    def get_label_draft(self, case_id: str, structure: str, annotator: str) -> dict | None:
        t = m.label_drafts.c
        with self.engine.connect() as conn:
            row = conn.execute(select(m.label_drafts).where(and_(
                t.case_id == case_id, t.structure == structure, t.annotator == annotator))).first()
        return None if row is None else _plain(row)

    def delete_label_draft(self, case_id: str, structure: str, annotator: str) -> None:
        t = m.label_drafts.c
        with self.engine.begin() as conn:
            conn.execute(delete(m.label_drafts).where(and_(
                t.case_id == case_id, t.structure == structure, t.annotator == annotator)))

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

    def add_review(self, case_id: str, reviewer: str, decision: str, comment: str = "", *,
                   run_id: str | None = None, case_status: str | None = None,
                   only_from: str | None = None) -> int | None:
        """Append a review (about run ``run_id``); with ``case_status``, set the case's status
        in the same transaction — only while it is still ``only_from`` when that is given.
        Returns the review's id, or None (nothing written) when the status had changed."""
        if decision not in m.REVIEW_DECISIONS:
            raise ValueError(f"decision must be one of {m.REVIEW_DECISIONS}; got {decision!r}")
        if case_status not in (None, "approved", "rejected"):
            raise ValueError(f"a review sets the case approved or rejected; got {case_status!r}")
        now = _now()
        with self.engine.begin() as conn:
            if case_status is not None:
                where = m.cases.c.case_id == case_id
                if only_from is not None:
                    where = where & (m.cases.c.status == only_from)
                if conn.execute(update(m.cases).where(where).values(
                        status=case_status, updated_at=now)).rowcount == 0:
                    return None
            res = conn.execute(insert(m.reviews).values(
                case_id=case_id, reviewer=reviewer, decision=decision, comment=comment,
                run_id=run_id, created_at=now))
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
        """Change a user's role; a real change revokes the user's open sessions."""
        _check_role(role)
        with self.engine.begin() as conn:
            old = conn.execute(select(m.users.c.role).where(m.users.c.username == username)).first()
            if old is None:
                raise KeyError(f"user {username!r} does not exist")
            conn.execute(update(m.users).where(m.users.c.username == username).values(role=role))
            if old[0] != role:
                _revoke(conn, m.ui_sessions.c.username == username, "role_changed")

    def set_active(self, username: str, active: bool) -> None:
        """(De)activate a user; deactivation revokes the user's open sessions."""
        with self.engine.begin() as conn:
            res = conn.execute(update(m.users).where(m.users.c.username == username)
                               .values(active=bool(active)))
            if res.rowcount == 0:
                raise KeyError(f"user {username!r} does not exist")
            if not active:
                _revoke(conn, m.ui_sessions.c.username == username, "deactivated")

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

    # review-app sessions ---------------------------------------------------------
    def create_session(self, token_hash: str, username: str, *, via: str, expires_at: datetime,
                       client: str | None = None, handoff_hash: str | None = None,
                       handoff_expires_at: datetime | None = None,
                       now: datetime | None = None) -> None:
        """Store a new session by the SHA-256 of its token (the token itself is never stored)."""
        now = now or _now()
        with self.engine.begin() as conn:
            conn.execute(insert(m.ui_sessions).values(
                token_hash=token_hash, username=username, via=via, client=client,
                created_at=now, expires_at=expires_at, last_seen_at=now,
                handoff_hash=handoff_hash, handoff_expires_at=handoff_expires_at))

    def get_session(self, token_hash: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(m.ui_sessions)
                               .where(m.ui_sessions.c.token_hash == token_hash)).first()
        return _plain(row) if row else None

    def touch_session(self, token_hash: str, *, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(m.ui_sessions).where(m.ui_sessions.c.token_hash == token_hash)
                         .values(last_seen_at=now))

    def redeem_session_handoff(self, handoff_hash: str, new_token_hash: str, *,
                               now: datetime) -> dict | None:
        """Swap a live session's token for ``new_token_hash`` once, by its unexpired handoff code.

        Returns the session row, or None when the code is unknown, used, expired or the
        session is revoked or expired.
        """
        s = m.ui_sessions.c
        with self.engine.begin() as conn:
            res = conn.execute(update(m.ui_sessions).where(and_(
                s.handoff_hash == handoff_hash, s.handoff_expires_at > now,
                s.revoked_at.is_(None), s.expires_at > now,
            )).values(token_hash=new_token_hash, handoff_hash=None, handoff_expires_at=None,
                      last_seen_at=now))
            if res.rowcount != 1:
                return None
            row = conn.execute(select(m.ui_sessions).where(s.token_hash == new_token_hash)).first()
        return _plain(row)

    def revoke_sessions(self, *, reason: str, username: str | None = None,
                        token_hash: str | None = None) -> int:
        """Revoke the open sessions of ``username`` or the one session ``token_hash``; return how many."""
        if (username is None) == (token_hash is None):
            raise ValueError("revoke_sessions needs exactly one of username=... or token_hash=...")
        s = m.ui_sessions.c
        where = s.username == username if username is not None else s.token_hash == token_hash
        with self.engine.begin() as conn:
            return _revoke(conn, where, reason)

    # sign-in failures (lockout) ------------------------------------------------
    def get_sign_in_failures(self, keys: list[tuple[str, str]]) -> list[dict]:
        """The failure counters of ``(scope, key)`` pairs that have one."""
        f = m.sign_in_failures.c
        if not keys:
            return []
        cond = or_(*(and_(f.scope == scope, f.key == key) for scope, key in keys))
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(select(m.sign_in_failures).where(cond))]

    def record_sign_in_failure(self, scope: str, key: str, *, now: datetime, reset_after_s: float,
                               lock_seconds: Callable[[int], float]) -> dict:
        """Count one failed sign-in for ``(scope, key)`` and lock it for ``lock_seconds(failures)``.

        A counter whose last failure is older than ``reset_after_s`` starts again at one.
        Counters idle for a day are deleted, so failed guesses at made-up usernames do not
        pile up. Returns the updated row.
        """
        if scope not in m.SIGN_IN_SCOPES:
            raise ValueError(f"scope must be one of {m.SIGN_IN_SCOPES}; got {scope!r}")
        f = m.sign_in_failures.c
        key = key[:128]
        where = and_(f.scope == scope, f.key == key)
        for _attempt in range(3):  # two failures at once: the loser of the insert updates
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(m.sign_in_failures).where(
                        f.last_failure_at < now - timedelta(days=1)))
                    row = conn.execute(select(f.failures, f.last_failure_at).where(where)
                                       .with_for_update()).first()
                    if row is None:
                        failures = 1
                    else:
                        stale = _aware(row.last_failure_at) < now - timedelta(seconds=reset_after_s)
                        failures = 1 if stale else int(row.failures) + 1
                    lock_s = lock_seconds(failures)
                    values = {"failures": failures, "last_failure_at": now,
                              "locked_until": now + timedelta(seconds=lock_s) if lock_s > 0 else None}
                    if row is None:
                        conn.execute(insert(m.sign_in_failures).values(scope=scope, key=key, **values))
                    else:
                        conn.execute(update(m.sign_in_failures).where(where).values(**values))
                return {"scope": scope, "key": key, "failures": failures, "lock_s": lock_s}
            except IntegrityError as exc:
                last_error = exc
        raise RuntimeError(f"could not record a failed sign-in for {scope} {key!r}: {last_error}") \
            from last_error

    def clear_sign_in_failures(self, scope: str, key: str) -> None:
        f = m.sign_in_failures.c
        with self.engine.begin() as conn:
            conn.execute(delete(m.sign_in_failures).where(and_(f.scope == scope, f.key == key[:128])))

    # subject map ------------------------------------------------------------------
    def map_subject(self, subject_id: str, *, pseudonym: str) -> str:
        """Record that ``pseudonym`` stands for ``subject_id``; return the subject's pseudonym.

        A subject already mapped keeps the pseudonym it has (so a changed de-identification
        key never splits a subject in two); two ingests of one subject at once agree.
        """
        t = m.subject_map.c
        for _attempt in range(3):
            with self.engine.connect() as conn:
                held = conn.execute(select(t.pseudonym).where(t.subject_id == subject_id)).scalar()
            if held is not None:
                return str(held)
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(m.subject_map).values(
                        pseudonym=pseudonym, subject_id=subject_id, first_seen_at=_now()))
                return pseudonym
            except IntegrityError as exc:  # the other ingest won; read its row
                last_error = exc
        raise RuntimeError(f"could not map subject pseudonym {pseudonym!r}: {last_error}") from last_error

    def subject_for(self, pseudonym: str) -> str | None:
        """The subject_id a pseudonym stands for, or None.

        Only the review app's Admin lookup calls this (it authorizes and audits first);
        nothing else in the platform reads original subject identifiers.
        """
        with self.engine.connect() as conn:
            value = conn.execute(select(m.subject_map.c.subject_id)
                                 .where(m.subject_map.c.pseudonym == pseudonym)).scalar()
        return None if value is None else str(value)

    # gateway service tokens ------------------------------------------------------------
    def create_service_token(self, name: str, token_hash: str, *, scopes: list[str], created_by: str) -> int:
        """Store a service token by its SHA-256 (the token itself is never stored)."""
        with self.engine.begin() as conn:
            res = conn.execute(insert(m.service_tokens).values(
                name=name[:64], token_hash=token_hash, scopes=",".join(scopes), created_by=created_by[:128],
                created_at=utc_now()))
            return int(res.inserted_primary_key[0])

    def get_service_token(self, token_hash: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(m.service_tokens).where(m.service_tokens.c.token_hash == token_hash)).first()
        return _service_row(row) if row is not None else None

    def list_service_tokens(self) -> list[dict]:
        """Every service token (revoked ones too), without their hashes."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(m.service_tokens).order_by(m.service_tokens.c.id)).all()
        return [{k: v for k, v in _service_row(r).items() if k != "token_hash"} for r in rows]

    def revoke_service_token(self, token_id: int, *, by: str) -> bool:
        """End a token; False when there is no such live token."""
        t = m.service_tokens.c
        with self.engine.begin() as conn:
            res = conn.execute(update(m.service_tokens).where(and_(t.id == int(token_id), t.revoked_at.is_(None)))
                               .values(revoked_at=utc_now(), revoked_by=by[:128]))
            return res.rowcount == 1

    def touch_service_token(self, token_id: int, *, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(m.service_tokens).where(m.service_tokens.c.id == int(token_id))
                         .values(last_used_at=now))


def _revoke(conn, where, reason: str) -> int:
    s = m.ui_sessions.c
    res = conn.execute(update(m.ui_sessions).where(and_(where, s.revoked_at.is_(None)))
                       .values(revoked_at=_now(), revoked_reason=reason[:32], handoff_hash=None,
                               handoff_expires_at=None))
    return int(res.rowcount)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time in the DB is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _check_role(role: str) -> None:
    if role not in m.ROLES:
        raise ValueError(f"role must be one of {m.ROLES}; got {role!r}")


def _service_row(row) -> dict[str, Any]:
    out = plain_row(row)
    out["scopes"] = [s for s in (out.get("scopes") or "").split(",") if s]
    return out
