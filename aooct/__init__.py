"""The `aooct` command-line entry point (see aooct/cli.py)."""
