"""Cross-validation by subject for the cone task: train, calibrate and score each fold.

Fold k holds out every 5th subject of each modality (``ml.tasks.cone_folds``); the model of
fold k is trained on the other subjects only, its post-processing is calibrated on those
training images, and it is scored on the held-out subjects with the literature protocol.
The summary pools the held-out images of all folds (every image is scored exactly once, by
a model that never saw its subject).

Usage::

    nice -n 10 .venv/bin/python bench/accuracy/cross_validate.py OUT_DIR [--steps N] [--folds K]
        [--only-fold k] [--summary bench/accuracy/results/cones_cv.results.json]
        [--rescore-from PREVIOUS_OUT_DIR]

Per-fold results go to ``OUT_DIR/fold_<k>/cones.results.json``; a rerun skips folds whose
results exist, so an interrupted run can be continued. ``--rescore-from`` re-calibrates and
re-scores the fold models of an earlier run without training (for post-processing changes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ml.checkpoint import load_checkpoint  # noqa: E402
from ml.model_card import cross_validation_section, with_section  # noqa: E402
from ml.models import build_model  # noqa: E402
from ml.pipeline import finalize_task, training_metadata  # noqa: E402
from ml.tasks import MODALITY_DRAWS, cone_folds, default_config, load_task_data, training_draws  # noqa: E402
from ml.train import PrintCallback, train  # noqa: E402

TASK = "cones"


def run_fold(k: int, holdout: dict[str, set[str]], out: Path, *, steps: int | None, threads: int,
             split_detector_draws: int | None = None) -> dict:
    cfg = default_config(TASK, num_threads=threads, **({"steps": steps} if steps else {}))
    train_set, held = load_task_data(TASK, holdout=holdout)
    draws = dict(MODALITY_DRAWS[TASK])
    if split_detector_draws is not None:
        draws["split-detector"] = split_detector_draws
    model = build_model(cfg.kind)
    print(f"fold {k}: {len(train_set)} training images; held out "
          f"{ {m: sorted(s) for m, s in holdout.items()} }", flush=True)
    result = train(model, training_draws(TASK, train_set, draws=draws), cfg, callbacks=(PrintCallback(),))
    meta = training_metadata(TASK, cfg, model, result, train_set, draws=draws,
                             holdout_override={m: sorted(s) for m, s in holdout.items()})
    return dict(finalize_task(TASK, model, meta, train_set, held, out_dir=out),
                train_steps=result.steps_done, train_precision=cfg.precision,
                channels_last=cfg.channels_last, time_limited=result.time_limited)


def rescore_fold(k: int, previous: Path, out: Path) -> dict:
    """Re-calibrate and re-score fold k's saved model (same weights, current post-processing)."""
    model, meta = load_checkpoint(previous / f"fold_{k}" / f"{TASK}.pt")
    meta.pop("model_version", None)
    holdout = {m: set(s) for m, s in meta["holdout_override"].items()}
    train_set, held = load_task_data(TASK, holdout=holdout)
    return dict(finalize_task(TASK, model, meta, train_set, held, out_dir=out),
                train_steps=meta["train_steps"])


def summarize(fold_results: list[dict]) -> dict:
    """Image-weighted means over folds (each held-out image counted once) and fold spread."""
    out = {}
    for modality in ("confocal", "split-detector"):
        rows = [(r["scores"][modality]["network"], r["scores"][modality]["LoG baseline"])
                for r in fold_results if modality in r["scores"]]
        n = [net["n_images"] for net, _ in rows]
        summary = {"n_images": sum(n), "n_folds": len(rows)}
        for name, idx in (("network", 0), ("LoG baseline", 1)):
            for key in ("dice_mean", "sensitivity_mean", "fdr_mean", "count_error_pct_mean"):
                vals = [row[idx][key] for row in rows]
                summary.setdefault(name, {})[key] = round(
                    sum(v * w for v, w in zip(vals, n)) / sum(n), 4)
            summary[name]["dice_per_fold"] = [row[idx]["dice_mean"] for row in rows]
        out[modality] = summary
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=None, help="default: the task recipe (ml.tasks)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only-fold", type=int, default=None)
    ap.add_argument("--summary", type=Path, default=None)
    ap.add_argument("--rescore-from", type=Path, default=None)
    ap.add_argument("--split-detector-draws", type=int, default=None,
                    help="draw split-detector training images N times as often "
                         "(default: the recipe's ml.tasks.MODALITY_DRAWS)")
    ap.add_argument("--card", type=Path, default=None,
                    help="model card to add/replace the cross-validation section in")
    args = ap.parse_args()
    folds = cone_folds(args.folds)
    results = []
    for k, holdout in enumerate(folds):
        fold_dir = args.out / f"fold_{k}"
        done = fold_dir / f"{TASK}.results.json"
        if done.exists():
            results.append(json.loads(done.read_text()))
            continue
        if args.only_fold is not None and k != args.only_fold:
            continue
        t0 = time.perf_counter()
        if args.rescore_from:
            res = rescore_fold(k, args.rescore_from, fold_dir)
        else:
            res = run_fold(k, holdout, fold_dir, steps=args.steps, threads=args.threads,
                           split_detector_draws=args.split_detector_draws)
        res["fold"], res["fold_seconds"] = k, round(time.perf_counter() - t0, 1)
        done.write_text(json.dumps(res, indent=2, default=str))
        results.append(res)
    # Steps come from the fold results (a rescored run keeps its models' steps); result
    # files written before "train_steps" was recorded fall back to --steps.
    steps = sorted({r.get("train_steps", args.steps) for r in results} - {None})
    summary = {"task": TASK, "protocol": results[0]["protocol"] if results else None,
               "folds": args.folds, "folds_done": len(results),
               "steps_per_fold": steps[0] if len(steps) == 1 else (steps or None),
               "precision_per_fold": [r.get("train_precision", "fp32") for r in results],
               "time_limited_folds": [r["fold"] for r in results if r.get("time_limited")],
               "holdout_per_fold": [r["holdout"] for r in results],
               "model_versions": [r["model_version"] for r in results],
               "calibration_per_fold": [r["calibration"] for r in results],
               "scores": summarize(results) if results else {}}
    text = json.dumps(summary, indent=2, default=str)
    print(text)
    if args.summary:
        args.summary.write_text(text + "\n")
    if args.card and summary["scores"]:
        args.card.write_text(with_section(args.card.read_text(), cross_validation_section(summary)))


if __name__ == "__main__":
    main()
