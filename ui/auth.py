"""Sign-in, the signed-in user, and role checks that audit every denial.

Who is signed in is decided afresh on every script run: the session token (in this tab's
server-side state, or in the HttpOnly cookie that :mod:`ui.http_security` sets) must name a
live ``ui_sessions`` row (:mod:`api.sessions`), and the user's *current* row must be active;
the role is read from that row each time. So a demoted or deactivated user loses the rights
at their next click, in every open tab, and ``set_role`` / ``set_active`` also revoke their
sessions outright.

Two ways in:

* **Password**: a form checked against bcrypt hashes in the metadata DB ``users`` table
  (default) or, when ``AOOCT_USERS_FILE`` names one, a YAML file in streamlit-authenticator's
  format (``credentials.usernames.<name>: {name, email, password: <bcrypt>, roles: [<role>]}``).
  Repeated failures lock the username (and the client address) with exponential backoff;
  every failure and every locked attempt is audited (``sign_in_failed``, ``sign_in_locked``)
  and the message never says whether the username exists.
* **Single sign-on (OIDC)**: when ``.streamlit/secrets.toml`` has an ``[auth]`` section, a
  "Sign in with single sign-on" button calls ``st.login``. The identity provider proves who
  the user is; the role still comes from the DB user whose e-mail matches, so an unknown
  e-mail is refused (and audited).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import streamlit as st

from api import sessions
from api.sessions import check_password, hash_password  # noqa: F401  (re-exported: seed, admin page)
from ui import http_security
from ui.roles import PAGE_PERMISSIONS, ROLE_PERMISSIONS, has_permission

__all__ = [
    "User",
    "hash_password",
    "check_password",
    "load_users",
    "lookup_user",
    "oidc_configured",
    "current_user",
    "start_session",
    "sign_in",
    "sign_out",
    "authorize",
    "require_page",
    "audit",
]

_TOKEN_KEY = "aooct_session"
_ENDED_KEY = "_aooct_ended_sessions"


@dataclass(frozen=True)
class User:
    """The signed-in user, as the DB says now."""

    username: str
    name: str
    email: str | None
    role: str
    via: str = "password"  # "password" or "oidc"


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
                "active": u.get("active", True),
            }
            for name, u in creds.items()
        ]
    from ui.data import get_db

    return get_db().list_users()


def lookup_user(username: str) -> dict | None:
    """The current row of one user (from the users file or the DB), or None."""
    if os.environ.get("AOOCT_USERS_FILE"):
        return next((u for u in load_users() if u["username"] == username), None)
    from ui.data import get_db

    return get_db().get_user(username)


def oidc_configured() -> bool:
    """Whether ``[auth]`` is configured in Streamlit secrets (enables ``st.login``)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:
        return False


def audit(actor: str, action: str, *, case_id: str | None = None, model_version: str | None = None,
          detail: dict | None = None, allowed: bool = True) -> None:
    """Append one audit row (every write and every denial goes through here)."""
    from ui.data import get_db

    get_db().audit(actor[:128], action, case_id=case_id, model_version=model_version,
                   detail=detail, allowed=allowed)


def _db():
    from ui.data import get_db

    return get_db()


def _client_address() -> str | None:
    try:
        address = st.context.ip_address
    except (AttributeError, RuntimeError):
        return None
    return address if isinstance(address, str) and address else None


def _session_token() -> tuple[str | None, str | None]:
    """This tab's session token and where it came from ("state" or "cookie")."""
    token = st.session_state.get(_TOKEN_KEY)
    if token:
        return token, "state"
    try:
        token = st.context.cookies.get(http_security.cookie_name())
    except (AttributeError, RuntimeError):
        token = None
    if not isinstance(token, str):  # AppTest's context has no real cookies
        token = None
    if token and sessions.token_hash(token) not in st.session_state.get(_ENDED_KEY, ()):
        return token, "cookie"
    return None, None


def _end_session(token: str, source: str, row: dict | None, why: str) -> None:
    """Forget a dead session in this tab; audit its end once (when we know whose it was)."""
    h = sessions.token_hash(token)
    if source == "state":
        st.session_state.pop(_TOKEN_KEY, None)
    ended = st.session_state.setdefault(_ENDED_KEY, set())
    if row is not None and h not in ended:
        audit(row["username"], "session_ended", allowed=False, detail={"reason": why, "via": row["via"]})
    ended.add(h)


def current_user() -> User | None:
    """The signed-in user of this session as the DB says *now*, or None.

    None when there is no session, it is revoked, expired or idle, or the user is gone,
    inactive or has an unknown role; the session is then ended (and revoked where needed).
    """
    token, source = _session_token()
    if token is None:
        return None
    db = _db()
    row, why = sessions.resolve_session(db, token)
    if why == "ok":
        account = lookup_user(row["username"])
        if account is None or not account.get("active", True) \
                or account.get("role") not in ROLE_PERMISSIONS:
            why = "revoked:inactive_or_unknown_role"
            db.revoke_sessions(token_hash=sessions.token_hash(token), reason="inactive")
        else:
            return User(account["username"], account.get("name") or account["username"],
                        account.get("email") or None, account["role"], row["via"])
    _end_session(token, source, row, why)
    return None


def start_session(username: str, *, via: str, client: str | None = None,
                  handoff: bool = False) -> str | None:
    """Open a server-side session for ``username`` in this tab; return the handoff code if asked."""
    token, code = sessions.open_session(_db(), username, via=via, client=client, handoff=handoff)
    st.session_state[_TOKEN_KEY] = token
    return code


def _redirect(url: str) -> None:
    """Send the browser to ``url`` (a same-origin route of ui/http_security.py).

    Streamlit has no public redirect; this is the message ``st.login`` itself sends
    (``ForwardMsg.auth_redirect``), on the pinned Streamlit 1.67.
    """
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        raise RuntimeError("redirect outside a Streamlit script run")
    msg = ForwardMsg()
    msg.auth_redirect.url = url
    ctx.enqueue(msg)


def _signed_in(username: str, via: str, client: str | None) -> None:
    handoff = via == "password" and http_security.cookie_routes_enabled()
    code = start_session(username, via=via, client=client, handoff=handoff)
    audit(username, "sign_in", detail={"via": via, "client": client})
    if code:
        # The browser fetches its HttpOnly cookie and comes back — to the page it asked for
        # (a deep link such as /admin); this tab works meanwhile.
        from urllib.parse import quote, urlencode, urlsplit

        query = urlencode(st.query_params.to_dict())
        target = http_security.safe_next(urlsplit(st.context.url or "/").path + (f"?{query}" if query else ""))
        _redirect(f"{http_security.HANDOFF_PATH}?code={code}&next={quote(target, safe='')}")
        st.info("Signed in; loading…")
        return
    st.rerun()  # start over with the full navigation


def _user_from_oidc() -> dict | None:
    email = st.user.get("email")
    users = load_users()
    match = [u for u in users if email and (u.get("email") or "").lower() == email.lower()]
    if not match or not match[0].get("active", True) or match[0].get("role") not in ROLE_PERMISSIONS:
        if not st.session_state.get("_aooct_oidc_denied"):
            audit(email or "unknown-oidc-user", "sign_in", allowed=False,
                  detail={"via": "oidc", "reason": "no active user with this e-mail"})
            st.session_state["_aooct_oidc_denied"] = True
        st.error(f"{email} signed in with single sign-on, but has no account here. Ask an Admin.")
        st.button("Sign out of single sign-on", on_click=st.logout)
        return None
    return match[0]


def _wait_text(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 90 else f"{math.ceil(seconds / 60)} min"


def _password_sign_in(username: str, password: str) -> None:
    username = username.strip()
    if not username or not password:
        st.error("Enter your username and password.")
        return
    db, client = _db(), _client_address()
    result = sessions.password_sign_in(db, username, password, client=client, via="password",
                                       lookup=lookup_user)
    if result.ok:
        _signed_in(result.account["username"], "password", client)
    elif result.wait_s > 0:
        st.error(f"Too many failed sign-ins. Try again in {_wait_text(result.wait_s)}.")
    elif result.lock_s > 0:
        st.error(f"Username or password is incorrect. Too many failed sign-ins: "
                 f"try again in {_wait_text(result.lock_s)}.")
    else:
        st.error("Username or password is incorrect.")


def sign_in() -> None:
    """Render the sign-in page (the only page until someone is signed in)."""
    if oidc_configured() and st.user.is_logged_in:
        account = _user_from_oidc()
        if account is not None:
            _signed_in(account["username"], "oidc", _client_address())
        return
    st.title("aooct review")
    with st.form("aooct_login", clear_on_submit=True):
        username = st.text_input("Username", key="aooct_login_username")
        password = st.text_input("Password", type="password", key="aooct_login_password")
        submitted = st.form_submit_button("Login")
    if submitted:
        _password_sign_in(username, password)
    if oidc_configured():
        st.divider()
        if st.button("Sign in with single sign-on", key="aooct_sso"):
            st.login()


def sign_out() -> None:
    """Revoke this tab's session, drop the cookie and (if used) the OIDC session."""
    token, source = _session_token()
    user = current_user()
    if token is not None:
        _db().revoke_sessions(token_hash=sessions.token_hash(token), reason="sign_out")
        _end_session(token, source, None, "sign_out")
    if user is not None:
        audit(user.username, "sign_out")
    if user is not None and user.via == "oidc":
        st.logout()
    elif source == "cookie" and http_security.cookie_routes_enabled():
        _redirect(http_security.SIGNOUT_PATH)  # deletes the (already useless) cookie


def authorize(permission: str, *, action: str, case_id: str | None = None,
              detail: dict | None = None, show: bool = True) -> bool:
    """Check the signed-in user's *current* role for one action; audit and say so when denied."""
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
        # Reached when the session ended while this page was open: sign in right here.
        st.warning("You are not signed in (or your session has ended); please sign in.")
        sign_in()
        st.stop()
    if not authorize(permission, action=f"open_{page}", case_id=case_id, show=False):
        st.error(f"Access denied: the {page} page needs a role with '{permission}'; "
                 f"you are signed in as {user.role}.")
        st.stop()
    return user


def call_application(user: User, call, *args, **kwargs):
    """Run an :mod:`api.application` call as the signed-in ``user`` (the rules the gateway
    applies, decided there once); its refusal is shown as an error and None returned."""
    from api import application as appl
    from api.policy import Principal
    from api.problems import Problem
    from ui.data import get_db

    ctx = appl.Context(principal=Principal(user.username, frozenset({user.role}), via=user.via),
                       db=get_db(), client=_client_address(), channel="review app")
    try:
        return call(ctx, *args, **kwargs)
    except Problem as exc:
        st.error(exc.detail[:1].upper() + exc.detail[1:] + ".")
        return None
