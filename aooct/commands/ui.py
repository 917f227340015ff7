"""``aooct ui``: start the Streamlit review app on the configured data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from aooct.errors import CliError

# ui/server.py wraps ui/app.py in st.App: security headers and the HttpOnly session cookie.
APP_PATH = Path(__file__).resolve().parents[2] / "ui" / "server.py"


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui(
        port: int = typer.Option(8501, help="HTTP port of the app."),
        address: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for all)."),
        seed_demo: bool = typer.Option(
            False, "--seed-demo",
            help="First seed the configured DB/store with synthetic cases and one user per "
                 "role (password in ui/seed.py); only when the DB has no users yet."),
        max_upload_mb: int = typer.Option(2048, help="Largest browser upload in MB."),
    ) -> None:
        """Start the review app (reads AOOCT_DB_URL, AOOCT_OBJECT_STORE, AOOCT_EXPORT, ...)."""
        if not APP_PATH.is_file():
            raise CliError(f"{APP_PATH} is missing; reinstall aooct from the repository")
        if not 1 <= port <= 65535:
            raise CliError(f"--port must be 1..65535; got {port}")
        if seed_demo:
            from resources.config import load_config
            from resources.metadata_db import SqlMetadataDB
            from resources.object_store import make_object_store
            from ui.seed import DEMO_PASSWORD, seed_demo as _seed

            cfg = load_config()
            db = SqlMetadataDB(cfg.db_url)
            if db.list_users():
                print("aooct ui: the DB already has users; not seeding")
            else:
                store = make_object_store(cfg.object_store, **cfg.store_options())
                ids = _seed(db, store)
                print(f"aooct ui: seeded {len(ids)} synthetic cases; users admin, researcher, tech, "
                      f"labeler, ml_engineer with password {DEMO_PASSWORD!r}")
        cmd = [
            sys.executable, "-m", "streamlit", "run", str(APP_PATH),
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", str(max_upload_mb), "--client.toolbarMode", "viewer",
        ]
        from resources.orchestrator import sensor_daemon_state

        daemon = sensor_daemon_state()
        if not daemon.running:   # uploads would sit in the drop, shown as "queued", for ever
            print(f"aooct ui: warning: {daemon.detail}; until then uploaded cases wait in the drop",
                  flush=True)
        print(f"aooct ui: http://{address}:{port}  (Ctrl+C or kill {os.getpid()} to stop)", flush=True)
        # Streamlit replaces this process (same PID): stopping the PID `aooct ui` printed stops
        # the server and frees the port — a child left behind held it (issue 22 bug 7).
        os.execve(sys.executable, cmd, os.environ.copy())
