"""One module per `aooct` sub-command, each exposing ``register(app: typer.Typer)``."""
