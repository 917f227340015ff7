"""Train → calibrate → evaluate on held-out subjects → save weights, ONNX and model card.

``run_task`` is what ``aooct train TASK`` calls; ``finalize_task`` can also be run on a
checkpoint trained separately (``bench/accuracy/train_holdout.py``). Everything scored here
is scored on held-out subjects with the protocol of :mod:`ml.evaluate`, beside the
classical baseline of :mod:`ml.baselines`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ml.data import Sample

__all__ = ["run_task", "finalize_task", "training_metadata", "evaluate_cells", "evaluate_masks"]

_PROTOCOL_CELLS = ("one-to-one matching, closest pairs first, within 0.75 x median manual NND; "
                   "then pairs and unmatched points in the 7-px border band ignored (match first, "
                   "as in Cunefare 2017's evaluation code); mean per-image Dice, sensitivity, FDR, "
                   "|count error| %")
_PROTOCOL_MASKS = "pixel Dice per image (mean ± SD), mask = probability > calibrated threshold"


def _round(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def evaluate_cells(task: str, samples: list[Sample], *, weights: Path, uncertainty="tta",
                   baseline_threshold: float, polarity: str) -> dict:
    """Network and LoG-baseline scores on a set of annotated images."""
    from ml.baselines import log_cell_detector
    from ml.evaluate import evaluate_detections, summarize_scores
    from ml.inference import detect_cells
    net, base, seconds = [], [], []
    for s in samples:
        t0 = time.perf_counter()
        det = detect_cells(s.image, target=task, uncertainty=uncertainty, weights=weights)
        seconds.append(time.perf_counter() - t0)
        net.append(evaluate_detections(det.points_rc, s.points_rc, image_shape=s.image.shape))
        pts = log_cell_detector(s.image, polarity=polarity, threshold=baseline_threshold)
        base.append(evaluate_detections(pts, s.points_rc, image_shape=s.image.shape))
    return {"network": {**_round(summarize_scores(net)), "seconds_per_image": round(float(np.mean(seconds)), 4)},
            "LoG baseline": _round(summarize_scores(base))}


def evaluate_masks(task: str, samples: list[Sample], *, weights: Path, uncertainty="tta") -> dict:
    """Network and Frangi+Otsu scores (pixel Dice) on a set of annotated masks."""
    from ml.baselines import frangi_vessels
    from ml.evaluate import pixel_dice
    from ml.inference import segment_vessels
    net, base, ang = [], [], []
    for s in samples:
        seg = segment_vessels(s.image, target=task, uncertainty=uncertainty, weights=weights)
        net.append(pixel_dice(seg.mask, s.mask))
        base.append(pixel_dice(frangi_vessels(s.image)[0], s.mask))
        if task == "nfl" and s.orientation_rad is not None:
            d = np.abs(seg.orientation_rad - s.orientation_rad)[s.mask]
            ang.append(float(np.degrees(np.minimum(d, np.pi - d)).mean()))
    out = {"network": {"dice_mean": float(np.mean(net)), "dice_sd": float(np.std(net, ddof=1)),
                       "n_images": len(net)},
           "Frangi+Otsu baseline": {"dice_mean": float(np.mean(base)),
                                    "dice_sd": float(np.std(base, ddof=1)), "n_images": len(base)}}
    if ang:
        out["network"]["orientation_error_deg_mean"] = float(np.mean(ang))
    return {k: _round(v) for k, v in out.items()}


def training_metadata(task: str, cfg, model, result, train_set: list[Sample], *,
                      draws: dict[str, int], device: str = "cpu", **extra) -> dict:
    """Checkpoint metadata of a training run: recipe, budget used, data and subjects.

    ``draws`` are the per-modality sampler draws the run used (what was passed to
    ``ml.tasks.training_draws``); ``extra`` adds task-specific keys (e.g.
    ``holdout_override`` for a CV fold).
    """
    return {"task": task, "kind": cfg.kind, "widths": list(model.widths),
            "train_config": cfg.as_dict(), "train_seconds": result.seconds, "train_device": device,
            "train_steps": result.steps_done, "time_limited": result.time_limited,
            "n_train_images": len(train_set),
            # Capped so a large set cannot bloat the checkpoint's JSON header.
            "train_subjects": sorted({s.subject_id for s in train_set})[:50],
            "modality_draws": dict(draws),
            **extra}


def finalize_task(task: str, model, meta: dict, train_set: list[Sample],
                  held: dict[str, list[Sample]], *, out_dir: Path, n_calib: int = 60) -> dict:
    """Calibrate on training images, save ``<task>.pt/.onnx/.model_card.md``, evaluate."""
    from ml.backends import TorchBackend, export_onnx
    from ml.calibrate import calibrate_log_threshold, calibrate_mask_threshold, calibrate_peaks
    from ml.checkpoint import model_version_of, round_to_stored_precision, save_checkpoint
    from ml.inference import clear_model_cache, predict_maps
    from ml.models import count_parameters
    from ml.tasks import HOLDOUT

    out_dir = Path(out_dir)
    # Calibrate, export and score exactly the weights the checkpoint stores (float16).
    round_to_stored_precision(model.cpu())
    rng = np.random.default_rng(0)
    calib = [train_set[i] for i in sorted(rng.choice(len(train_set), min(n_calib, len(train_set)),
                                                      replace=False))]
    runner = TorchBackend(model, device="cpu")
    kind = meta["kind"]
    maps = [predict_maps(s.image, runner, kind=kind, uncertainty="tta")[0] for s in calib]
    meta = dict(meta, n_parameters=count_parameters(model))
    baseline = {}
    if kind == "cells":
        meta.update({k: v for k, v in calibrate_peaks(maps, [s.points_rc for s in calib]).items()
                     if k != "train_dice"})
        polarity = "dark" if task == "rpe" else "bright"
        baseline = calibrate_log_threshold([s.image for s in calib[:30]],
                                           [s.points_rc for s in calib[:30]], polarity=polarity)
    else:
        meta.update({k: v for k, v in calibrate_mask_threshold(maps, [s.mask for s in calib]).items()
                     if k != "train_dice"})
    meta.pop("model_version", None)
    pt = save_checkpoint(out_dir / f"{task}.pt", model, meta)
    version = model_version_of(pt)
    export_onnx(model, out_dir / f"{task}.onnx", metadata={"task": task, "model_version": version,
                                                           "meta": json.dumps(meta, default=str)})
    clear_model_cache()
    meta["model_version"] = version
    scores = {}
    for set_name, samples in held.items():
        if kind == "cells":
            scores[set_name] = evaluate_cells(task, samples, weights=pt, polarity=polarity,
                                              baseline_threshold=baseline["threshold"])
        else:
            scores[set_name] = evaluate_masks(task, samples, weights=pt)
    results = {"task": task, "model_version": version,
               "holdout": meta.get("holdout_override") or
               {k: sorted(v) if isinstance(v, set) else v for k, v in HOLDOUT[task].items()},
               "protocol": _PROTOCOL_CELLS if kind == "cells" else _PROTOCOL_MASKS,
               "calibration": {k: meta[k] for k in ("peak_threshold", "min_distance_factor",
                                                    "mask_threshold") if k in meta},
               "baseline_calibration": baseline, "scores": scores,
               "train_seconds": meta.get("train_seconds"), "n_parameters": meta["n_parameters"]}
    from ml.model_card import render_model_card
    (out_dir / f"{task}.model_card.md").write_text(render_model_card(task, meta, results))
    (out_dir / f"{task}.results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def run_task(task: str, *, out_dir: Path, steps: int | None = None, seed: int = 0,
             callbacks: tuple = (), num_threads: int = 2, root: Path | None = None) -> dict:
    """Train ``task`` on its training subjects, then :func:`finalize_task`."""
    from ml.models import build_model
    from ml.tasks import MODALITY_DRAWS, default_config, load_task_data, task_metadata, training_draws
    from ml.train import train
    over = {"seed": seed, "num_threads": num_threads}
    if steps is not None:
        over["steps"] = steps
    cfg = default_config(task, **over)
    train_set, held = load_task_data(task, root=root)
    model = build_model(cfg.kind)
    # One lookup of the recipe's draws for both the sampler and the metadata that records it.
    draws = MODALITY_DRAWS.get(task, {})
    result = train(model, training_draws(task, train_set, draws=draws), cfg, callbacks=callbacks)
    meta = training_metadata(task, cfg, model, result, train_set, draws=draws,
                             **task_metadata(task, train_set))
    results = finalize_task(task, model, meta, train_set, held, out_dir=out_dir)
    results["history"] = result.history
    results["modality_draws"] = meta["modality_draws"]   # for callbacks (MLflow params)
    for cb in callbacks:
        if hasattr(cb, "on_finalize"):
            cb.on_finalize(task, Path(out_dir), results)
    return results
