"""Checkpoint round trip: the stored (float16) weights, the ONNX export and the in-memory
model after ``round_to_stored_precision`` are the same network."""
import numpy as np
import torch

from ml.backends import export_onnx
from ml.checkpoint import load_checkpoint, round_to_stored_precision, save_checkpoint
from ml.models import build_model


def _random_model():
    torch.manual_seed(0)
    model = build_model("cells", widths=(8, 16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # weights far from float16-representable values
    return model


def test_rounded_model_equals_its_checkpoint_and_onnx(tmp_path):
    import onnxruntime as ort

    model = _random_model()
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 48, 48)).astype(np.float32))
    with torch.no_grad():
        unrounded = model(x).numpy()
    round_to_stored_precision(model)
    pt = save_checkpoint(tmp_path / "cones.pt", model, {"task": "cones", "kind": "cells", "widths": [8, 16]})
    onnx_path = export_onnx(model, tmp_path / "cones.onnx")
    loaded, _ = load_checkpoint(pt)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # rounding is idempotent through save/load
    with torch.no_grad():
        stored = loaded(x).numpy()
    exported = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(exported, stored, atol=1e-4)
    assert np.abs(unrounded - stored).max() > 1e-4  # the test would catch an unrounded export
