"""Server-side sessions and sign-in lockout (policy; storage is the metadata DB), shared by the
review app and the gateway.

A session is a random token; the DB keeps only its SHA-256 (``ui_sessions``), with an absolute
expiry, an idle timeout and a revocation mark (sign-out, role change, deactivation — the last
two set by :meth:`resources.metadata_db.MetadataDB.set_role` / ``set_active``). Every script
run validates the token against its row (:func:`resolve_session`), so revoking the row ends
the session at the user's next click, in every open tab.

Lockout: consecutive failed sign-ins are counted per username (``scope="user"``, also for
usernames that do not exist, so a lock says nothing about who has an account) and per client
address (``scope="client"``). From the ``max_failures``-th failure on, the key is locked for
``base_s * 2**(failures - max_failures)`` seconds, at most ``max_s``. While locked, no
password is checked, so even the right one is refused.

Environment (all optional): ``AOOCT_SESSION_HOURS`` (8), ``AOOCT_SESSION_IDLE_MINUTES`` (30),
``AOOCT_SIGNIN_MAX_FAILURES`` (5), ``AOOCT_SIGNIN_CLIENT_MAX_FAILURES`` (30; 0 turns the
per-client lock off, e.g. behind a proxy that hides client addresses),
``AOOCT_SIGNIN_BACKOFF_S`` (30), ``AOOCT_SIGNIN_MAX_LOCK_S`` (900).

Time comes from :func:`clock`; tests replace it (``monkeypatch.setattr(sessions, "clock", ...)``)
instead of sleeping.
"""
from __future__ import annotations

import functools
import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import bcrypt

from api.policy import ROLE_PERMISSIONS

__all__ = [
    "clock",
    "SessionPolicy",
    "LockoutPolicy",
    "new_token",
    "token_hash",
    "open_session",
    "resolve_session",
    "redeem_handoff",
    "lock_remaining_s",
    "record_failure",
    "record_success",
    "lockout_keys",
    "hash_password",
    "check_password",
    "SignIn",
    "password_sign_in",
]


def clock() -> datetime:
    """Now, timezone-aware UTC (replaced in tests)."""
    return datetime.now(timezone.utc)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives (seconds)."""

    ttl_s: float = 8 * 3600
    idle_s: float = 30 * 60
    handoff_s: float = 60  # the one-time code that fetches the HttpOnly cookie
    touch_every_s: float = 60  # last_seen_at is written at most this often

    @classmethod
    def from_env(cls) -> "SessionPolicy":
        return cls(ttl_s=_env_float("AOOCT_SESSION_HOURS", cls.ttl_s / 3600) * 3600,
                   idle_s=_env_float("AOOCT_SESSION_IDLE_MINUTES", cls.idle_s / 60) * 60)


@dataclass(frozen=True)
class LockoutPolicy:
    """When repeated failed sign-ins lock a username or a client, and for how long."""

    max_failures: int = 5
    client_max_failures: int = 30
    base_s: float = 30
    max_s: float = 900
    reset_after_s: float = 3600  # a counter with no failure for this long starts again

    @classmethod
    def from_env(cls) -> "LockoutPolicy":
        return cls(
            max_failures=int(_env_float("AOOCT_SIGNIN_MAX_FAILURES", cls.max_failures)),
            client_max_failures=int(_env_float("AOOCT_SIGNIN_CLIENT_MAX_FAILURES",
                                               cls.client_max_failures)),
            base_s=_env_float("AOOCT_SIGNIN_BACKOFF_S", cls.base_s),
            max_s=_env_float("AOOCT_SIGNIN_MAX_LOCK_S", cls.max_s),
        )

    def lock_seconds(self, failures: int, *, threshold: int) -> float:
        """Lock after ``failures`` consecutive failures: 0 below ``threshold``, then doubling."""
        if threshold <= 0 or failures < threshold:
            return 0.0
        return float(min(self.max_s, self.base_s * 2 ** min(failures - threshold, 30)))


def new_token() -> str:
    """A 256-bit random URL-safe token."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the DB stores for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts) if ts else None


def open_session(db, username: str, *, via: str, client: str | None = None, handoff: bool = False,
                 policy: SessionPolicy | None = None) -> tuple[str, str | None]:
    """Create a session; return ``(token, handoff_code)`` (the code only when ``handoff``)."""
    policy = policy or SessionPolicy.from_env()
    now = clock()
    token = new_token()
    code = new_token() if handoff else None
    db.create_session(
        token_hash(token), username, via=via, client=client,
        expires_at=now + timedelta(seconds=policy.ttl_s),
        handoff_hash=token_hash(code) if code else None,
        handoff_expires_at=now + timedelta(seconds=policy.handoff_s) if code else None, now=now,
    )
    return token, code


def resolve_session(db, token: str, *, policy: SessionPolicy | None = None) -> tuple[dict | None, str]:
    """The live session row of ``token`` and ``"ok"``, or ``(row_or_None, why_not)``.

    ``why_not`` is ``"unknown"``, ``"revoked:<reason>"``, ``"expired"`` or ``"idle"``; an
    expired or idle session is revoked on the way, so it stays dead.
    """
    policy = policy or SessionPolicy.from_env()
    h = token_hash(token)
    row = db.get_session(h)
    if row is None:
        return None, "unknown"
    if row["revoked_at"]:
        return row, f"revoked:{row['revoked_reason']}"
    now = clock()
    if _parse(row["expires_at"]) <= now:
        db.revoke_sessions(token_hash=h, reason="expired")
        return row, "expired"
    last_seen = _parse(row["last_seen_at"])
    if last_seen + timedelta(seconds=policy.idle_s) <= now:
        db.revoke_sessions(token_hash=h, reason="idle")
        return row, "idle"
    if (now - last_seen).total_seconds() >= policy.touch_every_s:
        db.touch_session(h, now=now)
    return row, "ok"


def redeem_handoff(db, code: str) -> tuple[str, dict] | None:
    """Exchange a one-time handoff code for a fresh session token (rotated); None if invalid."""
    if not code:
        return None
    token = new_token()
    row = db.redeem_session_handoff(token_hash(code), token_hash(token), now=clock())
    return (token, row) if row else None


def lockout_keys(username: str, client: str | None) -> list[tuple[str, str]]:
    """The ``(scope, key)`` counters one sign-in attempt touches."""
    keys = [("user", username.strip().lower()[:128])]
    if client:
        keys.append(("client", client[:128]))
    return keys


def lock_remaining_s(db, username: str, client: str | None) -> tuple[float, str | None]:
    """Seconds until ``username`` / ``client`` may try again (0 if not locked), and which scope."""
    now = clock()
    remaining, scope = 0.0, None
    for row in db.get_sign_in_failures(lockout_keys(username, client)):
        until = _parse(row["locked_until"])
        if until is not None and (until - now).total_seconds() > remaining:
            remaining, scope = (until - now).total_seconds(), row["scope"]
    return remaining, scope


def record_failure(db, username: str, client: str | None, *,
                   policy: LockoutPolicy | None = None) -> dict:
    """Count a failed sign-in; return ``{"failures": n, "lock_s": seconds}`` for the username
    (and ``client_failures`` / ``client_lock_s`` when the client is known)."""
    policy = policy or LockoutPolicy.from_env()
    now = clock()
    out = {}
    for scope, key in lockout_keys(username, client):
        threshold = policy.max_failures if scope == "user" else policy.client_max_failures
        if scope == "client" and threshold <= 0:
            continue
        row = db.record_sign_in_failure(
            scope, key, now=now, reset_after_s=policy.reset_after_s,
            lock_seconds=lambda n, t=threshold: policy.lock_seconds(n, threshold=t))
        prefix = "" if scope == "user" else "client_"
        out[f"{prefix}failures"], out[f"{prefix}lock_s"] = row["failures"], row["lock_s"]
    return out


def record_success(db, username: str) -> None:
    """A successful sign-in clears the username's counter (not the client's: a password
    sprayer who owns one account must not reset their own lock with it)."""
    db.clear_sign_in_failures("user", username.strip().lower()[:128])


def hash_password(password: str, *, rounds: int = 12) -> str:
    """bcrypt hash of ``password`` as text (what the ``users`` table stores)."""
    if not password:
        raise ValueError("password must not be empty")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches the bcrypt ``password_hash``."""
    return bcrypt.checkpw(password.encode(), password_hash.encode())


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Checked for unknown usernames so that they take as long as known ones.
    return hash_password("not a password", rounds=12)


@dataclass(frozen=True)
class SignIn:
    """The outcome of one password sign-in (:func:`password_sign_in`).

    ``account`` is the user row when ``ok``; ``wait_s`` > 0 when the attempt was refused
    unchecked because the username or client is locked; ``lock_s`` the lock this failure
    started (0 when none); ``reason`` why it failed (audited, never shown: it would tell
    which usernames exist).
    """

    ok: bool
    account: dict | None = None
    reason: str = ""
    wait_s: float = 0.0
    lock_s: float = 0.0


def password_sign_in(db, username: str, password: str, *, client: str | None, via: str,
                     lookup: Callable[[str], dict | None] | None = None,
                     policy: LockoutPolicy | None = None) -> SignIn:
    """Check a username and password under the lockout policy, and audit the outcome.

    The one decision both the review app's form and the gateway's ``POST /auth/token``
    make: a locked username or client is refused without checking the password (the right
    one too); an unknown username costs a bcrypt check like a known one; the account must be
    active with a known role. Failures count against the username and the client; success
    clears the username's counter. ``lookup`` finds the user row (default ``db.get_user``).
    """
    username = username.strip()
    wait_s, scope = lock_remaining_s(db, username, client)
    if wait_s > 0:
        db.audit(username[:128], "sign_in_locked", allowed=False,
                 detail={"via": via, "scope": scope, "retry_after_s": int(wait_s + 0.999), "client": client})
        return SignIn(False, reason="locked", wait_s=wait_s)
    account = (lookup or db.get_user)(username)
    known = account is not None and bool(account.get("password_hash"))
    matches = check_password(password, account["password_hash"] if known else _dummy_hash())
    if known and matches and account.get("active", True) and account.get("role") in ROLE_PERMISSIONS:
        record_success(db, username)
        return SignIn(True, account=account)
    reason = ("unknown_user" if not known else "wrong_password" if not matches
              else "inactive_or_unknown_role")
    counts = record_failure(db, username, client, policy=policy)
    db.audit(username[:128], "sign_in_failed", allowed=False,
             detail={"via": via, "reason": reason, "client": client, **counts})
    return SignIn(False, reason=reason, lock_s=max(counts.get("lock_s", 0), counts.get("client_lock_s", 0)))
