"""``aooct ui`` builds the streamlit command line and can seed a demo deployment."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from typer.testing import CliRunner

from aooct.cli import app


def test_ui_command_launches_streamlit_on_configured_data(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, cmd, env: calls.append((cmd, env)))
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


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_stopping_the_pid_aooct_ui_printed_frees_the_port(tmp_path):
    """Issue 22 bug 7: the PID printed is the server's own, so SIGTERM to it frees the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AOOCT_HOME": str(tmp_path), "AOOCT_DB_URL": f"sqlite:///{tmp_path / 'a.db'}",
           "AOOCT_OBJECT_STORE": str(tmp_path / "objects")}
    proc = subprocess.Popen([sys.executable, "-m", "aooct.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while not _port_open(port):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the review app did not start in 90 s"
            time.sleep(0.5)
        proc.terminate()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _port_open(port), "something still holds the port after the PID was stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
