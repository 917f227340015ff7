"""Errors shown to CLI users as one line."""


class CliError(Exception):
    """An error whose message is printed as ``aooct: error: <message>`` with exit code 2."""
