"""Helpers for the review-app tests (a uniquely named module: several test folders have a conftest)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "ui" / "app.py")


def open_page(page: str, role: str | None, *, case_id: str | None = None, timeout: float = 60):
    """Run the app signed in as the seeded user of ``role`` and switch to ``page``."""
    from streamlit.testing.v1 import AppTest

    from ui.auth import User

    at = AppTest.from_file(APP, default_timeout=timeout)
    if role is not None:
        username = role.lower().replace(" ", "_")
        at.session_state["aooct_user"] = User(username, f"Demo {role}", f"{username}@example.org", role)
    if case_id is not None:
        at.session_state["case_id"] = case_id
    at.run()
    if page != "cases":
        at.switch_page(f"pages/{page}.py").run()
    return at
