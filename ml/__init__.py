"""Machine learning for aooct: compact U-Nets, training, inference backends, uncertainty.

Importing :mod:`ml` is cheap; torch is imported by the sub-modules that need it and
MLflow only by :mod:`ml.tracking` when a tracking callback is created, so ``ml`` runs on a
GPU box that has torch/onnxruntime but no platform packages.
"""
from __future__ import annotations

__all__ = ["TASKS", "WEIGHTS_DIR"]

from pathlib import Path

#: Folder with the committed weights ``<task>.pt``, ``<task>.onnx``, ``<task>.model_card.md``.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: Tasks and the kind of output each network head produces.
TASKS = {
    "cones": "cells",
    "rpe": "cells",
    "capillaries": "vessels",
    "nfl": "nfl",
}
