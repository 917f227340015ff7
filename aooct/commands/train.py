"""``aooct train TASK``: train, calibrate, evaluate on held-out subjects, export, register.

``aooct train cones|rpe|capillaries|nfl [--out DIR] [--steps N] [--seed S]
[--threads T] [--mlflow/--no-mlflow] [--tracking-uri URI]``

Trains on the task's training subjects (``ml.tasks.HOLDOUT`` lists the held-out ones),
calibrates the peak / mask threshold on training images, scores the held-out subjects with
the literature protocol beside the classical baseline, writes ``<task>.pt``, ``<task>.onnx``,
``<task>.model_card.md`` and ``<task>.results.json`` to ``--out`` (default
``$AOOCT_HOME/models``: the shipped ``ml/weights`` are replaced only when asked for
explicitly with ``--out ml/weights``) and, with MLflow, logs
the run and registers model ``aooct-<task>``. Needs the annotated data in
``$AOOCT_SHARED_DATA`` (default ``../shared/data``) except for ``nfl`` (synthetic).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from aooct.errors import CliError

_TASKS = ("cones", "rpe", "capillaries", "nfl")


def train(
    task: str = typer.Argument(..., help="cones | rpe | capillaries | nfl"),
    out: Path = typer.Option(None, "--out", help="Folder for the weights (default: $AOOCT_HOME/models; pass ml/weights to replace the shipped ones)."),
    steps: int = typer.Option(None, "--steps", help="Training steps (default: the task's budget)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    threads: int = typer.Option(2, "--threads", help="CPU threads for torch."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log an MLflow run and register the model."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: MLflow's)."),
) -> None:
    """Train one segmentation task on this machine (≤ 20 min on 2 CPU cores)."""
    if task not in _TASKS:
        raise CliError(f"task must be one of {', '.join(_TASKS)}; got {task!r}")
    if steps is not None and steps < 1:
        raise CliError(f"--steps must be >= 1; got {steps}")
    from ml.data import shared_data_root
    from ml.pipeline import run_task
    from ml.train import PrintCallback

    if task != "nfl" and not shared_data_root().is_dir():
        raise CliError(f"annotated data not found at {shared_data_root()}; set AOOCT_SHARED_DATA")
    callbacks: list = [PrintCallback()]
    if mlflow:
        from ml.tracking import MLflowCallback
        callbacks.append(MLflowCallback(tracking_uri=tracking_uri))
    # Not ml/weights by default: a training run must not silently replace the shipped models.
    out_dir = out or Path(os.environ.get("AOOCT_HOME") or ".aooct_home") / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = run_task(task, out_dir=out_dir, steps=steps, seed=seed, num_threads=threads,
                       callbacks=tuple(callbacks))
    results.pop("history", None)
    print(json.dumps(results["scores"], indent=2))
    print(f"wrote {out_dir / (task + '.pt')} ({results['model_version']})")


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the ``aooct`` app."""
    app.command(name="train")(train)
