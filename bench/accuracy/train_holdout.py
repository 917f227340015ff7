"""Train one task on its training subjects and save ``<out>/<task>.pt`` (no evaluation).

Usage: nice -n 10 .venv/bin/python bench/accuracy/train_holdout.py TASK OUT_DIR [--steps N]
Evaluation on the held-out subjects is ``bench/accuracy/evaluate_task.py``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ml.checkpoint import save_checkpoint  # noqa: E402
from ml.models import build_model, count_parameters  # noqa: E402
from ml.pipeline import training_metadata  # noqa: E402
from ml.tasks import MODALITY_DRAWS, cone_folds, default_config, load_task_data, training_draws  # noqa: E402
from ml.train import PrintCallback, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fold", type=int, default=None, help="cones: CV fold index (of 5)")
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    args = ap.parse_args()
    over = {"num_threads": args.threads}
    if args.steps:
        over["steps"] = args.steps
    if args.batch:
        over["batch_size"] = args.batch
    cfg = default_config(args.task, **over)
    if args.patch:
        from dataclasses import replace
        cfg = replace(cfg, augment=replace(cfg.augment, patch_px=args.patch, zoom=(0.9, 1.1)))
    holdout = cone_folds()[args.fold] if args.fold is not None else None
    train_set, held = load_task_data(args.task, holdout=holdout)
    model = build_model(cfg.kind)
    print(f"{args.task}: {len(train_set)} training images, {count_parameters(model)} parameters; "
          f"held out: { {k: len(v) for k, v in held.items()} }", flush=True)
    draws = MODALITY_DRAWS.get(args.task, {})
    result = train(model, training_draws(args.task, train_set, draws=draws), cfg, device=args.device,
                   callbacks=(PrintCallback(),))
    model.cpu()
    meta = training_metadata(args.task, cfg, model, result, train_set, draws=draws, device=args.device,
                             holdout_override={k: sorted(v) for k, v in holdout.items()} if holdout else None)
    save_checkpoint(args.out / f"{args.task}.pt", model, meta)
    (args.out / f"{args.task}.history.json").write_text(json.dumps(result.history))


if __name__ == "__main__":
    main()
