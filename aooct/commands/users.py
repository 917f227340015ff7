"""``aooct users``: accounts of the configured metadata DB from the shell (first-run set-up).

Whoever can run this on the platform's host holds its configuration and DB already, so the
command acts as an Admin of its own (``cli:<OS user>`` in the audit log, ``via`` ``"cli"``).
It goes through the same application-layer calls as the gateway and the review app's Admin
page (:mod:`api.application`): the same password length, unique e-mail, no demotion of the
last active Admin. The password is read from a prompt (twice) or from standard input with
``--password-stdin``, never from the command line.
"""
from __future__ import annotations

import getpass
import sys

import typer

from aooct.errors import CliError


def _context():
    from api import application as appl
    from api.policy import Principal
    from resources.config import load_config
    from resources.metadata_db import SqlMetadataDB

    who = f"cli:{getpass.getuser()}"
    db = SqlMetadataDB(load_config().db_url)
    return appl, appl.Context(principal=Principal(who, frozenset({"Admin"}), via="cli"), db=db,
                              channel="cli")


def _call(fn, ctx, **kwargs):
    from api.problems import Problem

    try:
        return fn(ctx, **kwargs)
    except Problem as exc:
        raise CliError(exc.detail) from None


def register(app: typer.Typer) -> None:
    users = typer.Typer(help="Accounts of the configured metadata DB (first Admin, roles).",
                        no_args_is_help=True)
    app.add_typer(users, name="users")

    @users.command("add")
    def add(
        username: str = typer.Argument(..., help="Sign-in name."),
        role: str = typer.Option(..., "--role", help="Admin, Researcher, Tech, Labeler or ML Engineer."),
        email: str = typer.Option(..., "--email", help="E-mail (single sign-on matches users by it)."),
        name: str = typer.Option("", "--name", help="Display name (default: the username)."),
        password_stdin: bool = typer.Option(False, "--password-stdin",
                                            help="Read the password from standard input."),
    ) -> None:
        """Create a user (e.g. the first Admin of a new home)."""
        from api.policy import ROLES

        if role not in ROLES:
            raise CliError(f"--role must be one of {', '.join(ROLES)}; got {role!r}")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"Password for {username}: ")
            if getpass.getpass("Again: ") != password:
                raise CliError("the two passwords differ; run the command again")
        appl, ctx = _context()
        made = _call(appl.create_user, ctx, username=username, name=name, email=email,
                     password=password, role=role)
        print(f"aooct users: created {made['username']} ({made['role']})")

    @users.command("list")
    def list_() -> None:
        """List users: username, role, active, e-mail."""
        appl, ctx = _context()
        for u in _call(appl.list_users, ctx):
            print(f"{u['username']}\t{u['role']}\t{'active' if u['active'] else 'inactive'}\t{u.get('email') or ''}")

    @users.command("set-role")
    def set_role(username: str = typer.Argument(...), role: str = typer.Argument(...)) -> None:
        """Change a user's role (their open sessions end)."""
        appl, ctx = _context()
        made = _call(appl.update_user, ctx, username=username, role=role, active=None)
        print(f"aooct users: {made['username']} is now {made['role']}")
