"""Short capillary-recipe ablation on ROSSA: train on ROSSA train only, score ROSSA val.

Each variant trains from the same seed for the same number of steps; the mask threshold is
calibrated on the training images (as ``finalize_task`` does) and val is scored without TTA,
so variants compare like with like. The full recipe's figures come from ``aooct train``.

Usage::

    nice -n 10 .venv/bin/python bench/accuracy/capillary_ablation.py NAME \
        [--widths 16,32,64,128] [--precision fp32|bf16] [--steps 1000] [--threads 2] \
        [--upsample 1] [--mask-loss bce+dice] [--seed 0] [--save-probs F.npy] [--out bench/accuracy/results/capillary_ablation.jsonl]

``--upsample F`` trains and predicts on images (and masks) resampled F× larger, then averages
the probabilities back over F×F blocks to score on the native masks (do vessels 2-3 px wide
gain from sub-pixel boundaries?).

``--train-images N`` trains on a seeded random subset of N ROSSA training images (a learning
curve: is the Dice limited by the number of labelled images?). ``--add-val-half H`` (0 or 1) adds
half H of ROSSA val (a seeded random half) to the training images and scores only the other
half; each row lists the per-image val Dice, so runs can be compared on the same half.

Appends one JSON line per run to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from ml.backends import TorchBackend  # noqa: E402
from ml.calibrate import calibrate_mask_threshold  # noqa: E402
from ml.data import load_rossa  # noqa: E402
from ml.evaluate import pixel_dice  # noqa: E402
from ml.inference import predict_maps  # noqa: E402
from ml.models import build_model, count_parameters  # noqa: E402
from ml.tasks import default_config  # noqa: E402
from ml.train import train  # noqa: E402


def upsampled(samples, factor: int):
    """Image and mask resampled ``factor``× larger on the pixel grid (pixel k covers
    sub-pixels k*factor .. k*factor+factor-1)."""
    if factor == 1:
        return samples
    out = []
    for s in samples:
        img = ndi.zoom(s.image, factor, order=1, grid_mode=True, mode="nearest").astype(np.float32)
        mask = ndi.zoom(s.mask.astype(np.float32), factor, order=1, grid_mode=True, mode="nearest") > 0.5
        out.append(replace(s, image=img, mask=mask))
    return out


def probabilities(model, samples, factor: int = 1) -> list[np.ndarray]:
    runner = TorchBackend(model, device="cpu", bf16=False)
    maps = []
    for s in upsampled(samples, factor):
        p = predict_maps(s.image, runner, kind="vessels", uncertainty=None)[0]
        h, w = p.shape[0] // factor, p.shape[1] // factor
        maps.append(p[:h * factor, :w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3)))
    return maps


def val_halves(val, *, seed: int = 0) -> tuple[list, list]:
    """ROSSA val split into two seeded random halves (the same halves in every run)."""
    order = np.random.default_rng(seed).permutation(len(val))
    first = set(order[: len(val) // 2].tolist())
    return ([s for i, s in enumerate(val) if i in first], [s for i, s in enumerate(val) if i not in first])


def subsets(train_set, val, *, train_images: int | None, add_val_half: int | None):
    """(training images, scored images) for the learning-curve and val-half options."""
    if train_images is not None:
        if not 1 <= train_images <= len(train_set):
            raise ValueError(f"--train-images must be in [1, {len(train_set)}]; got {train_images}")
        keep = np.sort(np.random.default_rng(0).permutation(len(train_set))[:train_images])
        train_set = [train_set[i] for i in keep]
    if add_val_half is not None:
        halves = val_halves(val)
        train_set, val = train_set + halves[add_val_half], halves[1 - add_val_half]
    return train_set, val


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--train-images", type=int, default=None)
    ap.add_argument("--mask-loss", default="bce+dice", help="one of ml.losses.MASK_LOSSES")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-probs", type=Path, default=None,
                    help="write the val probability maps (n, row, col) float16 .npy here")
    ap.add_argument("--add-val-half", type=int, choices=(0, 1), default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "capillary_ablation.jsonl")
    args = ap.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    over = {"steps": args.steps, "num_threads": args.threads, "max_minutes": 60.0,
            "precision": args.precision, "channels_last": args.precision == "bf16",
            "mask_loss": args.mask_loss, "seed": args.seed}
    if args.batch:
        over["batch_size"] = args.batch
    cfg = default_config("capillaries", **over)
    if args.patch:
        cfg = replace(cfg, augment=replace(cfg.augment, patch_px=args.patch))
    train_set, val = load_rossa("train"), load_rossa("val")
    train_set, val = subsets(train_set, val, train_images=args.train_images, add_val_half=args.add_val_half)
    model = build_model(cfg.kind, widths=widths)
    t0 = time.perf_counter()
    result = train(model, upsampled(train_set, args.upsample), cfg)
    train_s = time.perf_counter() - t0
    model.eval()
    cal = calibrate_mask_threshold(probabilities(model, train_set, args.upsample), [s.mask for s in train_set])
    val_p = probabilities(model, val, args.upsample)
    dice = [pixel_dice(p > cal["mask_threshold"], s.mask) for p, s in zip(val_p, val)]
    if args.save_probs is not None:
        np.save(args.save_probs, np.stack(val_p).astype(np.float16))
    row = {"name": args.name, "widths": list(widths), "n_parameters": count_parameters(model),
           "precision": args.precision, "steps": result.steps_done, "batch": cfg.batch_size,
           "patch_px": cfg.augment.patch_px, "upsample": args.upsample, "train_seconds": round(train_s, 1),
           "s_per_step": round(train_s / max(result.steps_done, 1), 3),
           "mask_threshold": cal["mask_threshold"], "train_dice": round(cal["train_dice"], 4),
           "val_dice_mean": round(float(np.mean(dice)), 4),
           "val_dice_median": round(float(np.median(dice)), 4), "tta": False,
           "mask_loss": cfg.mask_loss, "seed": cfg.seed, "train_images": len(train_set), "add_val_half": args.add_val_half, "val_images": len(val),
           "val_dice_per_image": {s.name: round(float(d), 4) for s, d in zip(val, dice)},
           "torch_threads": torch.get_num_threads()}
    print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
