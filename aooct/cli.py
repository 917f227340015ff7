"""The ``aooct`` command.

Each sub-command lives in ``aooct/commands/<name>.py`` and exposes ``register(app)``;
heavy imports (torch, dagster, streamlit) happen inside the command bodies so that
``aooct --help`` stays fast and a missing optional package only breaks its own command.
Errors print one clear line (``aooct: error: ...``) and exit non-zero.
"""
from __future__ import annotations

import importlib
import sys

import typer

from aooct.errors import CliError

app = typer.Typer(
    name="aooct",
    help="AO-OCT microstructure analytics: phantoms, preprocessing, segmentation, metrics, platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = ("phantom", "analyze", "train", "demo", "ui")


def _register_commands() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"aooct.commands.{name}")
        except ModuleNotFoundError as exc:
            # Only a command module that does not exist yet is skipped; a missing
            # dependency *inside* an existing module is a real error and propagates.
            if exc.name == f"aooct.commands.{name}":
                continue
            raise
        module.register(app)




@app.callback()
def _root() -> None:
    """AO-OCT microstructure analytics."""


@app.command()
def version() -> None:
    """Print the aooct version."""
    import aooct_core

    print(aooct_core.__version__)


_register_commands()


def main() -> None:
    try:
        app()
    except CliError as exc:
        print(f"aooct: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
