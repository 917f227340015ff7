"""``aooct users``: the first Admin of a new home, from the shell (issue 22 first-run set-up)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aooct.cli import app
from resources.metadata_db import SqlMetadataDB, verify_password


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AOOCT_HOME", str(tmp_path))
    monkeypatch.setenv("AOOCT_DB_URL", f"sqlite:///{tmp_path / 'a.db'}")
    return SqlMetadataDB(f"sqlite:///{tmp_path / 'a.db'}")


class _Ran:
    def __init__(self, result):
        self.exit_code = result.exit_code
        # a CliError is printed as one "aooct: error: ..." line by aooct.cli.main
        self.output = result.output + ("" if result.exception is None else str(result.exception))


def _run(*args, stdin=None):
    return _Ran(CliRunner().invoke(app, list(args), input=stdin))


def test_first_admin_is_created_listed_and_can_sign_in(home):
    r = _run("users", "add", "ada", "--role", "Admin", "--email", "ada@lab.example", "--password-stdin",
             stdin="correct horse battery\n")
    assert r.exit_code == 0, r.output
    user = home.get_user("ada")
    assert user["role"] == "Admin" and verify_password("correct horse battery", user["password_hash"])
    listed = _run("users", "list")
    assert "ada\tAdmin\tactive\tada@lab.example" in listed.output
    made = home.list_audit(action="create_user")[0]
    assert made["actor"].startswith("cli:") and made["detail"]["via"] == "cli"


def test_the_same_rules_as_the_gateway(home):
    assert _run("users", "add", "ada", "--role", "Admin", "--email", "ada@lab.example", "--password-stdin",
                stdin="correct horse battery\n").exit_code == 0
    short = _run("users", "add", "bob", "--role", "Tech", "--email", "bob@lab.example", "--password-stdin",
                 stdin="short\n")
    assert short.exit_code != 0 and "at least 8 characters" in short.output
    twin = _run("users", "add", "eve", "--role", "Tech", "--email", "ADA@lab.example", "--password-stdin",
                stdin="long enough pw\n")
    assert twin.exit_code != 0 and "already the e-mail of user 'ada'" in twin.output
    last = _run("users", "set-role", "ada", "Researcher")
    assert last.exit_code != 0 and "last active Admin" in last.output
    assert home.get_user("ada")["role"] == "Admin"
    bad = _run("users", "add", "x", "--role", "Boss", "--email", "x@lab.example", "--password-stdin", stdin="pw\n")
    assert bad.exit_code != 0 and "--role must be one of" in bad.output
