"""``aooct ui`` builds the streamlit command line and can seed a demo deployment."""
from __future__ import annotations

import subprocess

from typer.testing import CliRunner

from aooct.cli import app


def test_ui_command_launches_streamlit_on_configured_data(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    monkeypatch.setenv("AOOCT_HOME", str(tmp_path))
    monkeypatch.setenv("AOOCT_DB_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("AOOCT_OBJECT_STORE", str(tmp_path / "objects"))
    result = CliRunner().invoke(app, ["ui", "--port", "8599", "--seed-demo"])
    assert result.exit_code == 0, result.output
    cmd, env = calls[0]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("ui/server.py")
    assert cmd[cmd.index("--server.port") + 1] == "8599"
    assert env["AOOCT_DB_URL"].endswith("a.db")
    assert "seeded 6 synthetic cases" in result.output
    from resources.metadata_db import SqlMetadataDB

    assert len(SqlMetadataDB(env["AOOCT_DB_URL"]).list_users()) == 5


def test_ui_command_rejects_bad_port():
    result = CliRunner().invoke(app, ["ui", "--port", "0"])
    assert result.exit_code != 0
