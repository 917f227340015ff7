"""Time of one training step (forward, loss, backward, AdamW) per precision and layout.

Usage: ``python bench/bench_training_step.py [--kind cells] [--batch 12] [--patch 96] [--steps 15]``

Backs the choice of ``TrainConfig(precision="bf16", channels_last=True)`` for the cone task
(bench/results_ml.md). Times ``ml.train.train_step``, the step ``train`` runs. Batches are
random tensors: augmentation is timed separately (``make_batch``: ~12 ms per cone batch on
this CPU).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ml.models import build_model  # noqa: E402
from ml.train import train_step  # noqa: E402


def step_ms(kind: str, x: torch.Tensor, y: torch.Tensor, *, bf16: bool, channels_last: bool,
            steps: int, warmup: int = 3) -> float:
    """Median wall time of one training step in ms."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(kind).to(memory_format=layout).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = x.contiguous(memory_format=layout)
    times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        train_step(model, opt, x, y, kind=kind, bf16=bf16)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[warmup:]) * 1e3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="cells", choices=["cells", "vessels"])
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 1, args.patch, args.patch)
    y = torch.rand(args.batch, 1, args.patch, args.patch)
    print(f"{args.kind}: batch {args.batch} x {args.patch} px, {args.threads} threads, torch {torch.__version__}")
    for name, bf16, cl in (("float32 NCHW", False, False), ("float32 NHWC", False, True),
                           ("bf16 autocast NCHW", True, False), ("bf16 autocast NHWC", True, True)):
        print(f"{name:20s} {step_ms(args.kind, x, y, bf16=bf16, channels_last=cl, steps=args.steps):7.1f} ms/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
