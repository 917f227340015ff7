"""HTTP side of the review app: security headers on every response and the session cookie.

Streamlit scripts talk to the browser over a websocket and cannot set cookies or response
headers; since 1.67 a script can be served as an ASGI app (``st.App``, see :mod:`ui.server`)
with extra routes and middleware, and this module supplies both:

* :class:`SecurityHeadersMiddleware` adds a Content-Security-Policy (scripts only from the
  app itself, no framing by other sites, no plugins), ``X-Content-Type-Options``, ``X-Frame-Options``,
  ``Referrer-Policy``, ``Permissions-Policy``, ``Cross-Origin-Opener-Policy`` and, on HTTPS,
  ``Strict-Transport-Security``, and marks Streamlit's own cookies ``Secure`` on HTTPS.
* ``GET /aooct/session?code=...`` exchanges the one-time code that a successful sign-in
  issues (:func:`api.sessions.open_session`) for a fresh session token in an
  ``HttpOnly; Secure; SameSite=Strict`` cookie, and ``GET /aooct/signout`` revokes the
  cookie's session and deletes the cookie. The cookie is an opaque token that is worthless
  without its live ``ui_sessions`` row, which every script run checks.

Set ``AOOCT_UI_INSECURE_COOKIES=1`` only to try the app over plain HTTP on a non-loopback
address (browsers refuse ``Secure`` cookies there); on localhost Secure cookies work.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from pathlib import Path

__all__ = [
    "HANDOFF_PATH",
    "SIGNOUT_PATH",
    "enable_cookie_routes",
    "cookie_routes_enabled",
    "cookie_secure",
    "cookie_name",
    "content_security_policy",
    "security_headers",
    "SecurityHeadersMiddleware",
    "routes",
    "safe_next",
]

HANDOFF_PATH = "/aooct/session"
SIGNOUT_PATH = "/aooct/signout"
#: A page of this app with its query (``/review?case_id=S001_OD_T2``): where a deep link asked
#: to go before sign-in. Nothing else — no scheme, host, ``//`` or ``..`` — is followed.
_NEXT = re.compile(r"/(?!/)[A-Za-z0-9_\-/]*(\?[A-Za-z0-9_\-.=&~%]*)?")
_state = {"cookie_routes": False}


def enable_cookie_routes() -> None:
    """Tell the sign-in code that the cookie routes are served (called by :mod:`ui.server`)."""
    _state["cookie_routes"] = True


def cookie_routes_enabled() -> bool:
    """Whether this process serves :data:`HANDOFF_PATH` (``streamlit run ui/server.py``)."""
    return _state["cookie_routes"]


def cookie_secure() -> bool:
    return os.environ.get("AOOCT_UI_INSECURE_COOKIES") != "1"


def cookie_name() -> str:
    # The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
    return "__Host-aooct_session" if cookie_secure() else "aooct_session"


@functools.lru_cache(maxsize=1)
def _inline_script_hashes() -> tuple[str, ...]:
    """CSP hashes of the inline scripts in Streamlit's index.html (one one-liner in 1.67)."""
    import streamlit

    html = (Path(streamlit.__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
    bodies = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, flags=re.S)
    return tuple(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
                 for b in bodies)


def content_security_policy() -> str:
    """The app's CSP. Styles need 'unsafe-inline' (Streamlit's CSS-in-JS), nothing else does."""
    script_src = " ".join(("'self'",) + _inline_script_hashes())
    return "; ".join((
        "default-src 'self'",
        f"script-src {script_src}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "media-src 'self' data: blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self'",
        "frame-ancestors 'self'",  # not 'none': Streamlit components are same-origin iframes
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ))


def security_headers(*, https: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        ("content-security-policy", content_security_policy()),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "no-referrer"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
        ("cross-origin-opener-policy", "same-origin"),
    ]
    if https:
        headers.append(("strict-transport-security", "max-age=31536000; includeSubDomains"))
    return [(k.encode(), v.encode()) for k, v in headers]


def _is_https(scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    forwarded = dict(scope.get("headers") or []).get(b"x-forwarded-proto", b"")
    return forwarded.split(b",")[0].strip().lower() == b"https"


class SecurityHeadersMiddleware:
    """Pure ASGI middleware: security headers on every HTTP response (see module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = _is_https(scope)
        extra = security_headers(https=https)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                if https:  # Streamlit marks its XSRF/session cookies Secure only with its own TLS
                    headers = [(k, v + b"; Secure") if k.lower() == b"set-cookie"
                               and b"secure" not in v.lower() else (k, v) for k, v in headers]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@functools.lru_cache(maxsize=4)
def _db(url: str):
    from resources.metadata_db import SqlMetadataDB

    return SqlMetadataDB(url)


def _get_db():
    from ui.data import ui_config

    return _db(ui_config().db_url)


def _cross_site(request) -> bool:
    # Fetch metadata: a navigation that another site started says so; old browsers send nothing.
    return request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


def _set_cookie(response, token: str, max_age: int) -> None:
    response.set_cookie(cookie_name(), token, max_age=max_age, path="/", httponly=True,
                        secure=cookie_secure(), samesite="strict")


async def _session_handoff(request):
    from datetime import datetime

    from starlette.concurrency import run_in_threadpool
    from starlette.responses import PlainTextResponse, RedirectResponse

    from api import sessions

    if _cross_site(request):
        return PlainTextResponse("sign-in handoff refused: started by another site", status_code=403)
    redeemed = await run_in_threadpool(sessions.redeem_handoff, _get_db(),
                                       request.query_params.get("code", ""))
    # Back to the page a deep link asked for before sign-in (only a page of this app).
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    response.headers["cache-control"] = "no-store"
    if redeemed is not None:
        token, row = redeemed
        left_s = (datetime.fromisoformat(row["expires_at"]) - sessions.clock()).total_seconds()
        _set_cookie(response, token, max(1, int(left_s)))
    return response


async def _sign_out(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import RedirectResponse

    from api import sessions

    token = request.cookies.get(cookie_name())
    if token and not _cross_site(request):
        await run_in_threadpool(_get_db().revoke_sessions, token_hash=sessions.token_hash(token),
                                reason="sign_out")
    response = RedirectResponse("/", status_code=303)
    response.headers["cache-control"] = "no-store"
    response.delete_cookie(cookie_name(), path="/", secure=cookie_secure(), httponly=True,
                           samesite="strict")
    return response


def safe_next(target: str | None) -> str:
    """``target`` when it is a same-origin page path of this app, else ``"/"``.

    >>> safe_next("/admin"), safe_next("/review?case_id=S001_OD_T2")
    ('/admin', '/review?case_id=S001_OD_T2')
    >>> safe_next("//evil.example/x"), safe_next("https://evil.example"), safe_next("/a/../b")
    ('/', '/', '/')
    """
    if not target or not _NEXT.fullmatch(target) or ".." in target or \
            target.split("?")[0] in (HANDOFF_PATH, SIGNOUT_PATH, "/signin"):
        return "/"
    return target


def routes() -> list:
    """The cookie routes, for ``st.App(routes=...)``."""
    from starlette.routing import Route

    return [Route(HANDOFF_PATH, _session_handoff, methods=["GET"]),
            Route(SIGNOUT_PATH, _sign_out, methods=["GET"])]
