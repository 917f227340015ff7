"""The review app as an ASGI app: ``streamlit run ui/server.py`` (what ``aooct ui`` starts).

``ui/app.py`` is the Streamlit script; this wraps it in ``st.App`` so that HTTP responses carry
security headers and sign-in can set an HttpOnly session cookie (:mod:`ui.http_security`).
Plain ``streamlit run ui/app.py`` still works (tests, development): headers are then
Streamlit's defaults and a signed-in session lasts only as long as the browser tab.
"""
from __future__ import annotations

import streamlit as st
from starlette.middleware import Middleware

from ui import http_security

http_security.enable_cookie_routes()

app = st.App(
    "app.py",
    routes=http_security.routes(),
    middleware=[Middleware(http_security.SecurityHeadersMiddleware)],
)
