"""Save/load task checkpoints (``<task>.pt``) with their post-processing settings.

Weights are stored in float16 to keep the committed files small (all tasks, torch + ONNX,
< 10 MB); they are cast back to float32 on load. The metadata dict travels with the
weights so that inference needs nothing but the file: task, head kind, widths,
peak threshold, minimum peak distance factor, and the model version string.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import torch

from ml.models import build_model

__all__ = ["save_checkpoint", "load_checkpoint", "model_version_of", "round_to_stored_precision"]


def _stored(value: torch.Tensor) -> torch.Tensor:
    """How a state-dict entry is stored on disk: floating point as float16, the rest as is."""
    return value.half() if value.is_floating_point() else value


def round_to_stored_precision(model: torch.nn.Module) -> torch.nn.Module:
    """Round ``model``'s floating-point weights and buffers in place to what
    :func:`save_checkpoint` stores (float16), keeping them float32.

    Call it before calibrating or exporting a freshly trained model, so that the
    calibration, the ONNX file and the checkpoint all describe the same weights (an ONNX
    export of the unrounded model differs from the checkpoint by up to ~0.01 in logits).
    """
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(_stored(value))
    return model


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict) -> Path:
    """Atomically write ``{"state_dict" (fp16), "meta"}`` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: _stored(v) for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"state_dict": state, "meta": dict(meta)}, buf)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; weights are shared, read-only data
    os.replace(tmp, path)
    return path


def model_version_of(path: Path) -> str:
    """``<task>-<first 12 hex of sha256 of the weights file>``: stable, content-addressed."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).stem}-{digest}"


def load_checkpoint(path: Path, *, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint into an eval-mode float32 model on ``device``; returns (model, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model weights not found — run `aooct train <task>` "
                                "or restore ml/weights from the repository")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = dict(blob["meta"])
    model = build_model(meta["kind"], widths=tuple(meta["widths"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in blob["state_dict"].items()})
    meta.setdefault("model_version", model_version_of(path))
    return model.to(device).eval(), meta
