"""Real-browser test of the review app: Debian's chromium driven by Python Playwright.

Signs in, opens a case, toggles overlays, adds a label (typed and by clicking
on the chart), exports metrics, and
saves screenshots (to ``docs/ui_*.png`` when ``AOOCT_UPDATE_SCREENSHOTS=1``, else to a
temporary folder so a test run never dirties the checkout). Uses the system chromium
(``apt-get install -y chromium``); no browser is downloaded. Run with
``pytest -m browser tests/e2e/test_browser.py``.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# The committed screenshots in docs/ are refreshed only on request.
UPDATE_DOCS = os.environ.get("AOOCT_UPDATE_SCREENSHOTS") == "1"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STEP_TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Poll ``url`` (a health endpoint; a bare base URL means streamlit's) until it answers 200."""
    if "://" in url and url.count("/") == 2:
        url = f"{url}/_stcore/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {proc.args[:4]} exited early with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit at {url} not healthy after {timeout_s:.0f} s")


def _seeded_env(tmp_path: Path) -> tuple[dict, object]:
    from resources.metadata_db import SqlMetadataDB
    from resources.object_store import LocalObjectStore
    from ui.seed import local_env, seed_demo

    env = {**os.environ, **local_env(tmp_path),
           "AOOCT_COOKIE_KEY": "browser-test-cookie-key-0123456789abcdef"}
    env.pop("AOOCT_USERS_FILE", None)
    db = SqlMetadataDB(env["AOOCT_DB_URL"])
    seed_demo(db, LocalObjectStore(env["AOOCT_OBJECT_STORE"]), n_cases=4, with_volume_for=1)
    return env, db


def _serve(argv: list[str], env: dict, cwd: Path, log_path: Path, health_url: str):
    log = open(log_path, "wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        _wait_healthy(health_url, proc)
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _streamlit_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(REPO / "ui" / "app.py"),
            "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "viewer"]


@pytest.fixture
def app_server(tmp_path):
    """A seeded deployment and streamlit serving ui/app.py on a free port."""
    env, db = _seeded_env(tmp_path)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(_streamlit_argv(port), env, tmp_path, tmp_path / "streamlit.log", f"{url}/_stcore/health")
    try:
        yield url, db, tmp_path
    finally:
        _stop(proc)


def _wait_app_idle(page) -> None:
    """Wait until streamlit has finished the current script run."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=STEP_TIMEOUT_MS)


# Where the browser test clicks on the labeling chart: en face (row, col) px.
CLICK_RC = (30.0, 40.0)


def _click_image_px(page, rc: tuple[float, float], image_shape: tuple[int, int]) -> None:
    """Click the labeling chart at en face pixel ``rc`` (the chart's axes span the image exactly)."""
    plot_area = page.locator("[data-testid='stPlotlyChart'] .nsewdrag").first
    plot_area.wait_for()
    plot_area.scroll_into_view_if_needed()
    box = plot_area.bounding_box()
    x = box["x"] + (rc[1] + 0.5) / image_shape[1] * box["width"]
    y = box["y"] + (rc[0] + 0.5) / image_shape[0] * box["height"]
    # plotly picks the clicked point from the last hover, so hover first, then click.
    x, y = float(x), float(y)
    page.mouse.move(x, y)
    page.wait_for_timeout(150)
    page.mouse.click(x, y)


def test_sign_in_review_label_export(app_server):
    from playwright.sync_api import expect, sync_playwright

    from ui.seed import DEMO_PASSWORD

    url, db, tmp_path = app_server
    case_id = db.list_cases()[0]["case_id"]
    case_dir = tmp_path / "objects" / "cases" / case_id
    image_shape = np.load(case_dir / "enface" / "cost.npy").shape
    model_points = np.load(case_dir / "masks" / "cones" / "points_rc.npy")
    remove_index = int(np.argmin(np.hypot(*(model_points - (90.0, 60.0)).T)))  # one away from the border
    shots = REPO / "docs" if UPDATE_DOCS else tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(url)
            # Sign in with the streamlit-authenticator form.
            page.get_by_role("textbox", name="Username").wait_for()
            page.screenshot(path=str(shots / "ui_signin.png"))
            page.get_by_role("textbox", name="Username").fill("admin")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("heading", name="Cases")).to_be_visible()
            expect(page.get_by_text("case(s) match")).to_be_visible()
            _wait_app_idle(page)
            page.locator("[data-testid='stDataFrame'] canvas").first.wait_for()
            page.wait_for_timeout(1000)  # the data grid paints its canvas after mounting
            page.screenshot(path=str(shots / "ui_cases.png"), full_page=True)

            # Open the first case (selected by default) in the review page.
            page.get_by_role("button", name="Open case review").click()
            expect(page.get_by_role("heading", name="Case review")).to_be_visible()
            expect(page.get_by_role("img").first).to_be_visible()
            page.get_by_text("Capillaries", exact=True).click()
            _wait_app_idle(page)
            page.get_by_text("RPE cells", exact=True).click()
            _wait_app_idle(page)
            expect(page.get_by_text("cones", exact=False).first).to_be_visible()
            page.screenshot(path=str(shots / "ui_review.png"), full_page=True)
            # The uncertainty heat map of the cone detector, and the B-scan with its surfaces.
            page.locator("[data-testid='stSelectbox']").filter(has_text="Uncertainty heat map").click()
            page.get_by_role("option", name="cones").click()
            _wait_app_idle(page)
            images = page.locator("[data-testid='stImage']")
            expect(images).to_have_count(2)
            images.nth(0).screenshot(path=str(shots / "ui_uncertainty.png"))
            images.nth(1).scroll_into_view_if_needed()
            images.nth(1).screenshot(path=str(shots / "ui_bscan.png"))

            # Add a cone point and save a label version.
            page.get_by_role("link", name="Labeling").click()
            expect(page.get_by_role("heading", name="Labeling")).to_be_visible()
            page.get_by_role("button", name="Add point").click()
            _wait_app_idle(page)
            expect(page.get_by_text("unsaved edits: 1")).to_be_visible()
            # ...and one by clicking on the en face chart at a computed position.
            _click_image_px(page, CLICK_RC, image_shape)
            expect(page.get_by_text("unsaved edits: 2")).to_be_visible()
            _wait_app_idle(page)
            # Click an existing (model) point to select it, then remove it.
            _click_image_px(page, tuple(model_points[remove_index]), image_shape)
            page.get_by_role("button", name="Remove selected (1)").click()
            expect(page.get_by_text("unsaved edits: 3")).to_be_visible()
            _wait_app_idle(page)
            page.get_by_role("button", name="Save new version").click()
            expect(page.get_by_text("as version 1 for admin")).to_be_visible()
            _wait_app_idle(page)
            page.screenshot(path=str(shots / "ui_labeling.png"), full_page=True)

            # Export the cohort metrics.
            page.get_by_role("link", name="Dashboards").click()
            expect(page.get_by_role("heading", name="Cohort dashboards")).to_be_visible()
            page.get_by_role("button", name="Export metrics").click()
            expect(page.get_by_text("Exported", exact=False).first).to_be_visible()
            _wait_app_idle(page)
            page.screenshot(path=str(shots / "ui_dashboards.png"), full_page=True)
        finally:
            browser.close()

    labels = db.get_labels(case_id, structure="cones")
    assert [(l["annotator"], l["version"]) for l in labels] == [("admin", 1)]
    clicked = [e for e in labels[0]["payload"]["edits"] if e.get("via") == "click"]
    assert len(clicked) == 1 and clicked[0]["op"] == "add"
    points = np.asarray(labels[0]["payload"]["points_rc"])
    assert np.hypot(*(points - CLICK_RC).T).min() <= 2.0, "clicked point not saved where clicked"
    removed = [e for e in labels[0]["payload"]["edits"] if e.get("via") == "selection"]
    assert [e["indices"] for e in removed] == [[remove_index]]
    assert len(points) == len(model_points) + 1  # +typed +clicked -removed
    assert np.hypot(*(points - model_points[remove_index]).T).min() > 0.5
    exported = list((tmp_path / "exports").rglob("metrics.csv"))
    assert len(exported) == 1 and exported[0].stat().st_size > 0
    actions = {r["action"] for r in db.list_audit(actor="admin")}
    assert {"sign_in", "save_label", "export_metrics"} <= actions


def test_single_sign_on_with_local_oidc_provider(tmp_path):
    """st.login against oidc-provider-mock: a known e-mail signs in with its DB role, an unknown one is refused."""
    pytest.importorskip("oidc_provider_mock", reason="pip install oidc-provider-mock==0.3.4 for the SSO test")
    pytest.importorskip("authlib", reason="pip install Authlib (streamlit[auth]) for the SSO test")
    from playwright.sync_api import expect, sync_playwright

    env, db = _seeded_env(tmp_path)
    env["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on 127.0.0.1 in the test only
    idp_port, app_port = _free_port(), _free_port()
    idp = f"http://127.0.0.1:{idp_port}"
    app_url = f"http://127.0.0.1:{app_port}"
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "{app_url}/oauth2callback"\n'
        'cookie_secret = "oidc-test-cookie-secret-0123456789"\n'
        'client_id = "aooct-ui"\n'
        'client_secret = "aooct-ui-secret"\n'
        f'server_metadata_url = "{idp}/.well-known/openid-configuration"\n'
    )
    idp_proc = _serve([sys.executable, "-m", "oidc_provider_mock", "--port", str(idp_port)], env,
                      tmp_path, tmp_path / "idp.log", f"{idp}/.well-known/openid-configuration")
    try:
        app_proc = _serve(_streamlit_argv(app_port), env, tmp_path, tmp_path / "streamlit.log",
                          f"{app_url}/_stcore/health")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.set_default_timeout(STEP_TIMEOUT_MS)
                    page.goto(app_url)
                    page.get_by_role("button", name="Sign in with single sign-on").click()
                    page.locator("input[name=sub]").fill("researcher@example.org")
                    page.get_by_role("button", name="Authorize").click()
                    expect(page.get_by_role("heading", name="Cases")).to_be_visible()
                    expect(page.get_by_text("Demo Researcher")).to_be_visible()
                    page.get_by_role("button", name="Sign out").click()
                    # st.logout ends the provider session too (RP-initiated logout).
                    page.get_by_role("button", name="End session").click()
                    page.goto(app_url)
                    page.get_by_role("button", name="Sign in with single sign-on").click()
                    page.locator("input[name=sub]").fill("stranger@example.org")
                    page.get_by_role("button", name="Authorize").click()
                    expect(page.get_by_text("has no account here")).to_be_visible()
                finally:
                    browser.close()
        finally:
            _stop(app_proc)
    finally:
        _stop(idp_proc)
    rows = db.list_audit(action="sign_in")
    assert any(r["actor"] == "researcher" and r["allowed"] and r["detail"]["via"] == "oidc" for r in rows)
    assert any(r["actor"] == "stranger@example.org" and not r["allowed"] for r in rows)
