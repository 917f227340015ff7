"""Helpers for the review-app tests (a uniquely named module: several test folders have a conftest)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "ui" / "app.py")


def seeded_username(role: str) -> str:
    """The seeded demo user of ``role`` (ui/seed.py): 'ML Engineer' -> 'ml_engineer'."""
    return role.lower().replace(" ", "_")


def sign_in_as(at, username: str, *, db=None) -> str:
    """Give ``at`` a server-side session for ``username`` (as a password sign-in would); return the token."""
    from resources.metadata_db import SqlMetadataDB
    from api import sessions

    own = db is None
    db = db or SqlMetadataDB(os.environ["AOOCT_DB_URL"])
    try:
        token, _ = sessions.open_session(db, username, via="password")
    finally:
        if own:
            db.close()
    at.session_state["aooct_session"] = token
    return token


def open_page(page: str, role: str | None, *, case_id: str | None = None, timeout: float = 60):
    """Run the app signed in as the seeded user of ``role`` and switch to ``page``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    if role is not None:
        sign_in_as(at, seeded_username(role))
    if case_id is not None:
        at.session_state["case_id"] = case_id
    at.run()
    if page != "cases":
        at.switch_page(f"pages/{page}.py").run()
    return at


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class served_app:
    """``with served_app(env, cwd) as url:`` — ``streamlit run ui/<script>`` on a free port."""

    def __init__(self, env: dict, cwd: Path, *, script: str = "server.py", timeout_s: float = 90):
        self.env, self.cwd, self.script, self.timeout_s = env, Path(cwd), script, timeout_s

    def __enter__(self) -> str:
        import subprocess
        import sys
        import time
        import urllib.request

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(self.cwd / "streamlit.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "ui" / self.script),
             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            env=self.env, cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.cwd}/streamlit.log")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise TimeoutError(f"streamlit at {self.url} not healthy after {self.timeout_s:.0f} s")

    def __exit__(self, *exc) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
