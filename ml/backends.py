"""Inference backends: torch (CPU, CUDA with bf16 autocast), ONNX Runtime, TensorRT.

Every backend is a callable ``batch (B, 1, H, W) float32 -> logits (B, C, H, W) float32``
on the CPU side, so tiling, test-time augmentation and peak finding are shared and the
backends can be compared number for number. TensorRT is reached through ONNX Runtime's
``TensorrtExecutionProvider`` when that provider is installed; asking for a backend or
provider that is not available raises — there is no silent fallback to another backend.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["TorchBackend", "OnnxBackend", "make_backend", "export_onnx", "BACKENDS"]

BACKENDS = ("torch", "onnx", "tensorrt")


class TorchBackend:
    """Run a torch model; on CUDA the forward pass uses bf16 autocast, outputs are float32."""

    name = "torch"

    def __init__(self, model, *, device: str = "cpu", bf16: bool | None = None) -> None:
        import torch
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but torch sees no CUDA device; "
                             "use device='cpu'")
        self.torch = torch
        self.device = device
        self.model = model.to(device).eval()
        self.bf16 = device.startswith("cuda") if bf16 is None else bf16
        self.multiple = model.multiple

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
            dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=self.bf16):
                y = self.model(x)
            return y.float().cpu().numpy()


class OnnxBackend:
    """Run an exported ONNX graph with ONNX Runtime on the given execution providers."""

    name = "onnx"

    def __init__(self, onnx_path: Path, *, providers: list[str], multiple: int) -> None:
        import onnxruntime as ort
        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"ONNX Runtime providers {missing} are not installed (available: "
                             f"{available}); install onnxruntime-gpu / TensorRT or choose "
                             "backend='torch'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("AOOCT_ORT_THREADS", "0"))
        self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.multiple = multiple

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out[0], np.float32)


def export_onnx(model, path: Path, *, metadata: dict[str, str] | None = None,
                opset: int = 17) -> Path:
    """Export ``model`` (eval mode, dynamic batch/height/width) to ``path`` atomically."""
    import onnx
    import torch
    path = Path(path)
    model = model.cpu().eval()
    dummy = torch.zeros(1, 1, 64, 64)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    torch.onnx.export(model, dummy, tmp, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                    "logits": {0: "batch", 2: "height", 3: "width"}},
                      opset_version=opset, dynamo=False)
    proto = onnx.load(tmp)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(proto, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def make_backend(backend: str, *, model, onnx_path: Path | None, device: str):
    """Build the backend named ``backend`` for a loaded torch ``model`` / its ONNX file."""
    if backend == "torch":
        return TorchBackend(model, device=device)
    if backend in ("onnx", "tensorrt"):
        if onnx_path is None or not Path(onnx_path).is_file():
            raise FileNotFoundError(f"ONNX file {onnx_path} not found — export it with "
                                    "ml.backends.export_onnx or use backend='torch'")
        if backend == "tensorrt":
            providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
        elif device.startswith("cuda"):
            providers = ["CUDAExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        return OnnxBackend(Path(onnx_path), providers=providers, multiple=model.multiple)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
