"""Issue 17 regressions: fresh roles, revocable sessions, sign-in lockout, bombs on the upload page,
and (against a started server) security headers and the HttpOnly session cookie."""
from __future__ import annotations

import http.client
import io
import os
from urllib.parse import quote
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from api import sessions
from ui.seed import DEMO_PASSWORD
from ui_helpers import APP, open_page, served_app

CHROMIUM = "/usr/bin/chromium"


class FakeClock:
    def __init__(self):
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(sessions, "clock", c)
    return c


def _texts(at) -> str:
    return " ".join(str(e.value) for kind in ("error", "success", "warning", "info") for e in getattr(at, kind))


def _login(at, username, password):
    at.text_input(key="aooct_login_username").input(username)
    at.text_input(key="aooct_login_password").input(password)
    next(b for b in at.button if b.label == "Login").click().run()
    return at


def _on_sign_in_page(at) -> bool:
    return [t.label for t in at.text_input] == ["Username", "Password"]


def _submit_create_user(at, username, role):
    at.text_input(key="new_username").input(username)
    at.text_input(key="new_name").input(username)
    at.text_input(key="new_password").input("long-enough-pw")
    at.selectbox(key="new_role").set_value(role)
    next(b for b in at.button if b.label == "Create user").click().run()


# --- roles are read on every run ------------------------------------------------------

def test_demoted_admin_cannot_create_an_admin(ui_env):
    """set_role revokes the session: the open admin tab is signed out at its next click."""
    db = ui_env[0]
    at = open_page("admin", "Admin")
    assert [t.value for t in at.title] == ["Admin"]
    db.set_role("admin", "Researcher")
    _submit_create_user(at, "mallory", "Admin")
    assert db.get_user("mallory") is None
    assert _on_sign_in_page(at)
    ended = db.list_audit(actor="admin", action="session_ended")
    assert ended and ended[0]["detail"]["reason"] == "revoked:role_changed"


def test_role_is_reread_even_if_the_db_is_edited_directly(ui_env):
    """No revocation (a raw UPDATE): the fresh role still decides, at the very next run."""
    db = ui_env[0]
    at = open_page("admin", "Admin")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'Researcher' WHERE username = 'admin'"))
    _submit_create_user(at, "mallory", "Admin")
    assert db.get_user("mallory") is None
    assert any("Access denied" in str(e.value) for e in at.error)
    denied = db.list_audit(actor="admin", action="open_admin")[0]
    assert not denied["allowed"] and denied["detail"]["role"] == "Researcher"
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'Admin' WHERE username = 'admin'"))
    at = open_page("dashboards", "Admin")
    assert not at.error
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'Labeler' WHERE username = 'admin'"))
    at.run()
    assert any("you are signed in as Labeler" in str(e.value) for e in at.error)


@pytest.mark.parametrize("how", ["set_active", "raw_sql"])
def test_deactivated_user_is_signed_out(ui_env, how):
    db = ui_env[0]
    at = open_page("cases", "Tech")
    assert [t.value for t in at.title] == ["Cases"]
    if how == "set_active":
        db.set_active("tech", False)
    else:
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE users SET active = false WHERE username = 'tech'"))
    at.run()
    assert _on_sign_in_page(at)
    _login(at, "tech", DEMO_PASSWORD)  # and cannot come back
    assert _on_sign_in_page(at) and "incorrect" in _texts(at)


def test_admin_page_deactivates_and_revokes(ui_env):
    db = ui_env[0]
    tech = open_page("cases", "Tech")
    admin = open_page("admin", "Admin")
    admin.selectbox(key="active_user").set_value("tech")
    admin.checkbox(key="active_flag").set_value(False)
    next(b for b in admin.button if b.label == "Save account").click().run()
    assert db.get_user("tech")["active"] is False
    tech.run()
    assert _on_sign_in_page(tech)
    assert db.list_audit(actor="admin", action="set_active")[0]["detail"] == {
        "username": "tech", "active": False, "via": "review app"}


# --- sessions ---------------------------------------------------------------------------

def test_sign_out_revokes_the_session_for_good(ui_env):
    db = ui_env[0]
    at = _login(AppTest.from_file(APP, default_timeout=60).run(), "researcher", DEMO_PASSWORD)
    token = at.session_state["aooct_session"]
    assert db.get_session(sessions.token_hash(token))["username"] == "researcher"
    at.button(key="sign_out").click().run()
    assert _on_sign_in_page(at)
    row = db.get_session(sessions.token_hash(token))
    assert row["revoked_at"] and row["revoked_reason"] == "sign_out"
    replay = AppTest.from_file(APP, default_timeout=60)
    replay.session_state["aooct_session"] = token  # a stolen token is worthless now
    replay.run()
    assert _on_sign_in_page(replay)


def test_idle_and_expired_sessions_end(ui_env, clock):
    at = open_page("cases", "Labeler")
    clock.advance(29 * 60)
    at.run()
    assert not _on_sign_in_page(at)
    clock.advance(31 * 60)  # idle for more than 30 min
    at.run()
    assert _on_sign_in_page(at)
    at = open_page("cases", "Labeler")
    for _ in range(17):  # busy, but past the 8 h absolute lifetime
        clock.advance(29 * 60)
        at.run()
    assert _on_sign_in_page(at)


# --- lockout ------------------------------------------------------------------------------

def test_twenty_wrong_passwords_then_the_right_one_is_refused_until_the_backoff_ends(ui_env, clock):
    db = ui_env[0]
    at = AppTest.from_file(APP, default_timeout=60).run()
    for _ in range(20):
        _login(at, "tech", "wrong-password")
    _login(at, "tech", DEMO_PASSWORD)
    assert _on_sign_in_page(at) and "Too many failed sign-ins" in _texts(at)
    failed = db.list_audit(actor="tech", action="sign_in_failed")
    locked = db.list_audit(actor="tech", action="sign_in_locked")
    assert len(failed) == 5 and len(locked) == 16  # 15 wrong + the right one, none checked
    assert failed[0]["detail"]["lock_s"] == 30
    clock.advance(29)
    _login(at, "tech", DEMO_PASSWORD)
    assert _on_sign_in_page(at)
    clock.advance(2)
    _login(at, "tech", DEMO_PASSWORD)
    assert [t.value for t in at.title] == ["Cases"]
    assert db.get_sign_in_failures([("user", "tech")]) == []  # success resets the counter


def test_backoff_doubles_and_is_capped(ui_env, clock):
    db = ui_env[0]
    at = AppTest.from_file(APP, default_timeout=60).run()
    locks = []
    for _ in range(12):
        _login(at, "tech", "wrong-password")
        lock = db.get_sign_in_failures([("user", "tech")])[0]["locked_until"]
        locks.append((datetime.fromisoformat(lock) - clock.now).total_seconds() if lock else 0)
        clock.advance(max(locks[-1], 0) + 1)  # wait out each lock, so every attempt is checked
    assert locks == [0, 0, 0, 0, 30, 60, 120, 240, 480, 900, 900, 900]


def test_unknown_usernames_lock_the_same_way_and_look_the_same(ui_env, clock):
    db = ui_env[0]
    at = AppTest.from_file(APP, default_timeout=60).run()
    _login(at, "nobody", "x")
    unknown_msg = _texts(at)
    _login(at, "tech", "x")
    assert _texts(at) == unknown_msg == "Username or password is incorrect."
    for _ in range(4):
        _login(at, "nobody", "x")
    _login(at, "nobody", "x")
    assert "Too many failed sign-ins" in _texts(at)
    rows = db.list_audit(actor="nobody")
    assert {r["action"] for r in rows} == {"sign_in_failed", "sign_in_locked"}
    assert all(r["detail"]["reason"] == "unknown_user" for r in rows if r["action"] == "sign_in_failed")
    _login(at, "tech", DEMO_PASSWORD)  # another username is not locked by it
    assert [t.value for t in at.title] == ["Cases"]


# --- uploads: bombs never reach the serving process ---------------------------------

def test_upload_page_refuses_a_zip_bomb(ui_env, tmp_path):
    db = ui_env[0]
    buf = io.BytesIO()
    chunk = bytes(16 << 20)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("B1/case.json", b"{}")
        with zf.open("B1/vol_00.npy", "w", force_zip64=True) as fh:
            for _ in range(64):  # 1 GiB of zeros
                fh.write(chunk)
    at = open_page("upload", "Tech")
    at.file_uploader(key="upload_zip").set_value(("bomb.zip", buf.getvalue(), "application/zip")).run()
    at.button(key="upload_zip_go").click().run()
    assert any("zip bomb" in str(e.value) for e in at.error)
    assert not (tmp_path / "drop").exists()
    assert db.list_audit(actor="tech", action="upload_rejected")[0]["detail"]["source"] == "bomb.zip"


def test_upload_page_refuses_a_tiff_bomb_within_the_worker_budget(ui_env, tmp_path, monkeypatch):
    import resource

    from test_upload import _tiff_case

    monkeypatch.setenv("AOOCT_UPLOAD_ROOT", str(tmp_path))
    monkeypatch.setenv("AOOCT_UPLOAD_WORKER_MEMORY_MB", "1024")
    _tiff_case(tmp_path / "bomb", (4, 20000, 20000))
    at = open_page("upload", "Tech")
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    at.text_input(key="upload_folder").input("bomb")
    at.button(key="upload_folder_go").click().run()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb < 200 * 1024
    errors = " ".join(str(e.value) for e in at.error)
    assert "Rejected bomb" in errors and "vol_00.tif" in errors
    assert not (tmp_path / "drop").exists()


# --- over HTTP: headers and the cookie (streamlit run ui/server.py) ---------------------

def _request(url: str, path: str, headers: dict | None = None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.headers
    finally:
        conn.close()


@pytest.fixture
def server(ui_env):
    db, _store, _ids, tmp_path = ui_env
    with served_app(dict(os.environ), tmp_path) as url:
        yield url, db


def test_security_headers_on_every_response(server):
    url, _db = server
    for path in ("/", "/_stcore/health", "/aooct/session"):
        status, headers = _request(url, path)
        assert status in (200, 303), path
        csp = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
        assert csp["frame-ancestors"] == "'self'" and csp["object-src"] == "'none'"
        assert csp["script-src"].startswith("'self' 'sha256-")
        assert "unsafe" not in csp["script-src"] and "unsafe" not in csp["default-src"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "SAMEORIGIN"
        assert headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in headers  # plain http here
    _status, headers = _request(url, "/", {"X-Forwarded-Proto": "https"})
    assert headers["strict-transport-security"].startswith("max-age=")


def test_session_cookie_is_httponly_secure_strict_one_time_and_revocable(server):
    url, db = server
    status, headers = _request(url, "/aooct/session?code=made-up")
    assert status == 303 and "set-cookie" not in headers
    _token, code = sessions.open_session(db, "admin", via="password", handoff=True)
    status, headers = _request(url, f"/aooct/session?code={code}",
                               {"Sec-Fetch-Site": "cross-site"})
    assert status == 403  # another site cannot plant a session
    status, headers = _request(url, f"/aooct/session?code={code}")
    cookie = headers["set-cookie"]
    assert status == 303 and cookie.startswith("__Host-aooct_session=")
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert any(f.startswith("max-age=") for f in flags)
    cookie_token = cookie.split(";")[0].split("=", 1)[1]
    assert sessions.resolve_session(db, cookie_token)[1] == "ok"
    _status, headers = _request(url, f"/aooct/session?code={code}")
    assert "set-cookie" not in headers  # the code works once
    _status, headers = _request(url, "/aooct/signout",
                                {"Cookie": f"__Host-aooct_session={cookie_token}"})
    assert "max-age=0" in headers["set-cookie"].lower()
    assert sessions.resolve_session(db, cookie_token)[1] == "revoked:sign_out"


def _chromium(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--headless", "--no-sandbox", "--disable-gpu"])


def _page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    return page


def test_the_handoff_returns_to_the_page_asked_for_and_nowhere_else(server):
    """Issue 22 bug 6: a deep link survives sign-in; the target is only ever a page here."""
    url, db = server
    for asked, location in (("/admin", "/admin"), ("/review?case_id=S001_OD_T2", "/review?case_id=S001_OD_T2"),
                            ("//evil.example/x", "/"), ("https://evil.example/", "/"), ("/a/../b", "/")):
        _token, code = sessions.open_session(db, "admin", via="password", handoff=True)
        status, headers = _request(url, f"/aooct/session?code={code}&next={quote(asked, safe='')}")
        assert status == 303 and headers["location"] == location, (asked, headers["location"])


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found")
def test_browser_deep_link_survives_sign_in_and_reload(ui_env):
    from playwright.sync_api import expect, sync_playwright

    _db, _store, _ids, tmp_path = ui_env
    with served_app(dict(os.environ), tmp_path) as url, sync_playwright() as pw:
        browser = _chromium(pw)
        try:
            page = _page(browser)
            page.goto(f"{url}/admin")
            page.get_by_role("textbox", name="Username").fill("admin")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("heading", name="Admin")).to_be_visible()
            assert page.url.rstrip("/").endswith("/admin"), page.url
            page.reload()
            expect(page.get_by_role("heading", name="Admin")).to_be_visible()
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found")
def test_browser_sign_in_sets_httponly_cookie_survives_reload_and_csp_holds(ui_env):
    """Chromium: sign in, the cookie is HttpOnly (JS cannot read it), a reload stays signed in, the
    pages render under the CSP without violations, demotion signs the tab out, sign-out deletes it."""
    from playwright.sync_api import expect, sync_playwright

    db, _store, ids, tmp_path = ui_env
    with served_app(dict(os.environ), tmp_path) as url, sync_playwright() as pw:
        browser = _chromium(pw)
        try:
            page = _page(browser)
            violations = []
            page.on("console", lambda m: violations.append(m.text)
                    if "Content Security Policy" in m.text else None)
            page.add_init_script("window.__csp = []; document.addEventListener("
                                 "'securitypolicyviolation', e => window.__csp.push("
                                 "e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile))")
            page.goto(url)
            page.get_by_role("textbox", name="Username").fill("admin")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("heading", name="Cases")).to_be_visible()
            cookies = {c["name"]: c for c in page.context.cookies()}
            session = cookies["__Host-aooct_session"]
            assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
            assert "aooct_session" not in page.evaluate("document.cookie")
            page.reload()
            expect(page.get_by_role("heading", name="Cases")).to_be_visible()
            page.get_by_role("button", name="Open case review").click()
            expect(page.get_by_role("heading", name="Case review")).to_be_visible()
            page.wait_for_timeout(1500)
            expect(page.locator("[data-testid='stImage']").first).to_be_visible()
            for link, heading, widget in (("Labeling", "Labeling", "stPlotlyChart"),
                                          ("Dashboards", "Cohort dashboards", "stVegaLiteChart"),
                                          ("Admin", "Admin", "stDataFrame")):
                page.get_by_role("link", name=link).click()
                expect(page.get_by_role("heading", name=heading)).to_be_visible()
                expect(page.locator(f"[data-testid='{widget}']").first).to_be_visible()
                page.wait_for_timeout(1000)
            # protobuf.js's long.js probes WebAssembly and falls back to plain JS when the CSP
            # refuses it (script-src has no 'wasm-unsafe-eval'); nothing else may be blocked.
            blocked = [v for v in page.evaluate("window.__csp")
                       if not (v.startswith("script-src wasm-eval") and "/static/js/protobuf." in v)]
            assert violations == [] and blocked == []
            db.set_role("admin", "Researcher")
            page.get_by_role("link", name="Cases").click()
            expect(page.get_by_role("textbox", name="Username")).to_be_visible()
            db.set_role("admin", "Admin")
            page.get_by_role("textbox", name="Username").fill("admin")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("heading", name="Cases")).to_be_visible()
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("textbox", name="Username")).to_be_visible()
            assert "__Host-aooct_session" not in {c["name"] for c in page.context.cookies()}
        finally:
            browser.close()
    revoked = [r for r in db.list_audit(actor="admin", action="session_ended")]
    assert revoked and revoked[-1]["detail"]["reason"] == "revoked:role_changed"


def test_the_only_admin_cannot_demote_or_deactivate_themselves(ui_env):
    """Issue 22 bug 2: the role form has no default role, and the application layer the
    gateway uses refuses a self-demotion (and leaving no active Admin)."""
    db = ui_env[0]
    at = open_page("admin", "Admin")
    at.selectbox(key="role_user").set_value("admin")
    next(b for b in at.button if b.label == "Set role").click().run()
    assert any("Choose the new role" in str(e.value) for e in at.error)
    at.selectbox(key="role_new").set_value("Researcher")
    next(b for b in at.button if b.label == "Set role").click().run()
    assert any("cannot deactivate or demote themselves" in str(e.value) for e in at.error)
    at.selectbox(key="active_user").set_value("admin")
    at.checkbox(key="active_flag").set_value(False)
    next(b for b in at.button if b.label == "Save account").click().run()
    admin = db.get_user("admin")
    assert admin["role"] == "Admin" and admin["active"]


def test_a_user_needs_a_unique_email(ui_env):
    """Issue 22 bug 9: single sign-on matches accounts by e-mail."""
    db = ui_env[0]
    at = open_page("admin", "Admin")
    _submit_create_user(at, "noemail", "Tech")
    assert db.get_user("noemail") is None and any("not an e-mail address" in str(e.value) for e in at.error)
    taken = db.get_user("tech")["email"]
    at.text_input(key="new_email").input(taken.upper())
    _submit_create_user(at, "twin", "Tech")
    assert db.get_user("twin") is None and any("already the e-mail of user 'tech'" in str(e.value)
                                               for e in at.error)
