"""Calibrate + evaluate a checkpoint from train_holdout.py and write weights/ONNX/card.

Usage: nice -n 10 .venv/bin/python bench/accuracy/evaluate_task.py TASK CKPT_DIR OUT_DIR [THREADS]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ml.checkpoint import load_checkpoint
from ml.pipeline import finalize_task
from ml.tasks import load_task_data


def main() -> None:
    task, ckpt_dir, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    model, meta = load_checkpoint(ckpt_dir / f"{task}.pt")
    meta.pop("model_version", None)
    fold = meta.get("holdout_override")
    train_set, held = load_task_data(task, holdout={k: set(v) for k, v in fold.items()} if fold else None)
    results = finalize_task(task, model, meta, train_set, held, out_dir=out_dir)
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
