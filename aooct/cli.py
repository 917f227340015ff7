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

_COMMAND_MODULES = ("phantom", "analyze", "process", "train", "demo", "ui", "dicom_scp", "api", "users")


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


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every user error ends as one ``aooct: error: ...`` line and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except CliError as exc:
        print(f"aooct: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Abort:
        print("aooct: error: aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except typer.TyperException as exc:
        # Usage errors (bad option values, unknown commands) as one line, not a box.
        # typer >= 0.29 vendors click; its ClickException derives from TyperException.
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"aooct: error: {message}", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    if isinstance(result, int) and result != 0:
        raise SystemExit(result)


if __name__ == "__main__":
    main()
