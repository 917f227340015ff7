"""CPU inference speed: 150×150 and 512×512 images, peak finding included.

Usage: nice -n 10 .venv/bin/python bench/bench_inference.py [--threads 2] [--repeats 20]
Prints a Markdown table (median ms per image) for each backend and uncertainty mode, on a
synthetic confocal-like mosaic (7 px spacing), so that peak finding handles a realistic count.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ml.inference import detect_cells, segment_vessels


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (model load, ORT session, allocator)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1000)


def _mosaic(size: int, rng: np.random.Generator) -> np.ndarray:
    """A confocal-like 8-bit cone mosaic (7 px spacing, jitter, noise): realistic peak counts."""
    from ml.augment import render_heatmap
    pts = np.array([(r, c) for i, r in enumerate(np.arange(2, size - 2, 7 * 0.866))
                    for c in np.arange(2 + 3.5 * (i % 2), size - 2, 7.0)])
    pts = pts + rng.normal(0, 0.6, pts.shape)
    img = render_heatmap(pts, (size, size), 1.6) * 170 + 30 + rng.normal(0, 12, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="+", default=[150, 512])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import os
    os.environ["AOOCT_ORT_THREADS"] = str(args.threads)
    rng = np.random.default_rng(0)
    print(f"threads={args.threads}, torch {torch.__version__}")
    print("| task | size | backend | uncertainty | median ms |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        img = _mosaic(size, rng)
        for backend in ("torch", "onnx"):
            for unc, n in ((None, 1), ("tta", 4)):
                reps = args.repeats if size == 150 else max(3, args.repeats // 5)
                ms = _time(lambda: detect_cells(img, target="cones", backend=backend,
                                                uncertainty=unc, n_samples=n), reps)
                print(f"| cones | {size}×{size} | {backend} | {unc} | {ms:.1f} |", flush=True)
        ms = _time(lambda: segment_vessels(img, target="capillaries", uncertainty=None),
                   max(3, args.repeats // 5))
        print(f"| capillaries | {size}×{size} | torch | None | {ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
