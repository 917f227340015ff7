"""Sign-in, the signed-in user, and role checks that audit every denial.

Two ways in:

* **Password**: streamlit-authenticator's login form against users with bcrypt
  hashes, read from the metadata DB ``users`` table (default) or, when
  ``AOOCT_USERS_FILE`` names one, a streamlit-authenticator YAML config file
  (``credentials.usernames.<name>: {name, email, password: <bcrypt>, roles: [<role>]}``).
  The re-authentication cookie is signed with ``AOOCT_COOKIE_KEY``; without it
  a random per-process key is used, so cookies do not survive a restart.
* **Single sign-on (OIDC)**: when ``.streamlit/secrets.toml`` has an ``[auth]``
  section, a "Sign in with single sign-on" button calls ``st.login``. The
  identity provider proves who the user is; the role still comes from the DB
  user whose e-mail matches, so an unknown e-mail is refused (and audited).
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import bcrypt
import streamlit as st

from ui.roles import PAGE_PERMISSIONS, has_permission, validate_role

__all__ = [
    "User",
    "hash_password",
    "check_password",
    "credentials_from_users",
    "load_users",
    "oidc_configured",
    "current_user",
    "set_current_user",
    "sign_in",
    "sign_out",
    "authorize",
    "require_page",
    "audit",
]

_SESSION_KEY = "aooct_user"
_PROCESS_COOKIE_KEY = secrets.token_hex(32)


@dataclass(frozen=True)
class User:
    """The signed-in user."""

    username: str
    name: str
    email: str | None
    role: str
    via: str = "password"  # "password" or "oidc"


def hash_password(password: str, *, rounds: int = 12) -> str:
    """bcrypt hash of ``password`` as text (what the ``users`` table stores)."""
    if not password:
        raise ValueError("password must not be empty")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches the bcrypt ``password_hash``."""
    return bcrypt.checkpw(password.encode(), password_hash.encode())


def credentials_from_users(users: list[dict]) -> dict:
    """streamlit-authenticator credentials from ``users`` rows (active users only)."""
    out: dict[str, dict] = {}
    for u in users:
        if not u.get("active", True) or not u.get("password_hash"):
            continue
        out[u["username"]] = {
            "name": u.get("name") or u["username"],
            "email": u.get("email") or "",
            "password": u["password_hash"],
            "roles": [validate_role(u["role"])],
        }
    return {"usernames": out}


def load_users() -> list[dict]:
    """User rows from ``AOOCT_USERS_FILE`` when set, else from the metadata DB."""
    path = os.environ.get("AOOCT_USERS_FILE")
    if path:
        import yaml

        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
        creds = (config.get("credentials") or {}).get("usernames") or {}
        if not creds:
            raise ValueError(f"{path}: no credentials.usernames section; see ui/auth.py for the format")
        return [
            {
                "username": name,
                "name": u.get("name", name),
                "email": u.get("email"),
                "password_hash": u["password"],
                "role": (u.get("roles") or [None])[0],
                "active": True,
            }
            for name, u in creds.items()
        ]
    from ui.data import get_db

    return get_db().list_users()


def oidc_configured() -> bool:
    """Whether ``[auth]`` is configured in Streamlit secrets (enables ``st.login``)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:
        return False


def current_user() -> User | None:
    """The signed-in user of this session, or None."""
    return st.session_state.get(_SESSION_KEY)


def set_current_user(user: User | None) -> None:
    """Set (or clear) the signed-in user of this session."""
    if user is None:
        st.session_state.pop(_SESSION_KEY, None)
    else:
        st.session_state[_SESSION_KEY] = user


def audit(actor: str, action: str, *, case_id: str | None = None, model_version: str | None = None,
          detail: dict | None = None, allowed: bool = True) -> None:
    """Append one audit row (every write and every denial goes through here)."""
    from ui.data import get_db

    get_db().audit(actor, action, case_id=case_id, model_version=model_version,
                   detail=detail, allowed=allowed)


def _user_from_oidc(users: list[dict]) -> User | None:
    email = st.user.get("email")
    match = [u for u in users if email and (u.get("email") or "").lower() == email.lower()]
    if not match or not match[0].get("active", True):
        if not st.session_state.get("_aooct_oidc_denied"):
            audit(email or "unknown-oidc-user", "sign_in", allowed=False,
                  detail={"via": "oidc", "reason": "no active user with this e-mail"})
            st.session_state["_aooct_oidc_denied"] = True
        st.error(f"{email} signed in with single sign-on, but has no account here. Ask an Admin.")
        st.button("Sign out of single sign-on", on_click=st.logout)
        return None
    u = match[0]
    return User(u["username"], u.get("name") or u["username"], email, validate_role(u["role"]), "oidc")


def sign_in() -> User | None:
    """Render the sign-in UI until someone is signed in; return the user.

    Call once per run from ``app.py`` before navigation.
    """
    user = current_user()
    if user is not None:
        return user
    users = load_users()
    if oidc_configured() and st.user.is_logged_in:
        user = _user_from_oidc(users)
        if user is not None:
            set_current_user(user)
            audit(user.username, "sign_in", detail={"via": "oidc"})
            st.rerun()  # start over with the full navigation
        return user

    import streamlit_authenticator as stauth

    st.title("aooct review")
    credentials = credentials_from_users(users)
    authenticator = stauth.Authenticate(
        credentials,
        "aooct_auth",
        os.environ.get("AOOCT_COOKIE_KEY") or _PROCESS_COOKIE_KEY,
        1.0,
        auto_hash=False,
    )
    st.session_state["_aooct_authenticator"] = authenticator
    authenticator.login(location="main", key="aooct_login")
    status = st.session_state.get("authentication_status")
    if status:
        username = st.session_state["username"]
        row = next(u for u in users if u["username"] == username)
        user = User(username, row.get("name") or username, row.get("email"), validate_role(row["role"]))
        set_current_user(user)
        audit(username, "sign_in", detail={"via": "password"})
        st.rerun()  # start over without the login form on the page
    if status is False:
        # streamlit-authenticator counts a failed attempt on the (fresh, per-run) credentials
        # of a known user only in the run that submitted the form: audit exactly that attempt.
        failed = [u for u, c in credentials["usernames"].items() if c.get("failed_login_attempts")]
        for username in failed:
            audit(username, "sign_in", allowed=False, detail={"via": "password", "reason": "wrong password"})
        st.error("Username or password is incorrect.")
    if oidc_configured():
        st.divider()
        if st.button("Sign in with single sign-on", key="aooct_sso"):
            st.login()
    return None


def sign_out() -> None:
    """Forget the session's user, the password cookie and (if used) the OIDC session."""
    user = current_user()
    if user is not None:
        audit(user.username, "sign_out")
    authenticator = st.session_state.get("_aooct_authenticator")
    if authenticator is not None:
        authenticator.cookie_controller.delete_cookie()
    for key in ("authentication_status", "username", "name", "email", "roles"):
        st.session_state.pop(key, None)
    set_current_user(None)
    if user is not None and user.via == "oidc":
        st.logout()


def authorize(permission: str, *, action: str, case_id: str | None = None,
              detail: dict | None = None, show: bool = True) -> bool:
    """Check the signed-in user's role for one action; audit and say so when denied."""
    user = current_user()
    role = user.role if user else None
    if has_permission(role, permission):
        return True
    actor = user.username if user else "anonymous"
    audit(actor, action, case_id=case_id, allowed=False,
          detail={"permission": permission, "role": role, **(detail or {})})
    if show:
        st.error(f"Your role ({role or 'not signed in'}) may not {action.replace('_', ' ')}.")
    return False


def require_page(page: str, *, case_id: str | None = None) -> User:
    """Stop the page unless the signed-in user's role may open it (denials are audited)."""
    permission = PAGE_PERMISSIONS[page]
    user = current_user()
    if user is None:
        st.warning("Please sign in.")
        st.stop()
    if not authorize(permission, action=f"open_{page}", case_id=case_id, show=False):
        st.error(f"Access denied: the {page} page needs a role with '{permission}'; "
                 f"you are signed in as {user.role}.")
        st.stop()
    return user
