"""Standalone GPU check and benchmark of the aooct segmenter (torch + onnxruntime only).

Run from the repository root on a CUDA machine (no dagster/mlflow needed):

    python bench/gpu_inference.py [--repeats 20] [--batch 32]

Checks, per task, on synthetic images (and the real sets when ``$AOOCT_SHARED_DATA`` exists):
1. torch CUDA with bf16 autocast vs torch CPU float32: max |Δ probability| and, for cells,
   the Dice between the two detection sets (literature protocol) / mask agreement;
2. ONNX Runtime CUDAExecutionProvider (and TensorRT EP) vs torch CPU, when installed;
3. throughput: forward passes of 150×150 and 512×512 images (batched), and end-to-end
   ``detect_cells`` latency (with peak finding) on the GPU.
Prints a table; exits 1 if any agreement check fails, 2 if no CUDA device is visible.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without pip install

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Agreement tolerances: bf16 has an 8-bit mantissa, so probabilities may move by a few
# hundredths; detections must still be essentially the same cells.
TOL_BF16_PROB = 0.08
TOL_BF16_DICE = 0.97
TOL_ORT_PROB = 2e-3
TOL_MASK_AGREE = 0.98


def _test_images(rng):
    from ml.augment import render_heatmap
    imgs = []
    for size, spacing in ((150, 7.0), (192, 14.0), (320, 10.0)):
        pts = np.array([(r, c) for i, r in enumerate(np.arange(3, size - 3, spacing * 0.866))
                        for c in np.arange(3 + (spacing / 2) * (i % 2), size - 3, spacing)])
        pts = pts + rng.normal(0, 0.5, pts.shape)
        img = render_heatmap(pts, (size, size), spacing / 4.5) * 180 + 30
        imgs.append(np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.float32))
    try:
        from ml.data import load_cone_set, load_rossa
        imgs += [s.image for s in load_cone_set("confocal")[:3]]
        imgs += [s.image for s in load_rossa("val")[:2]]
    except FileNotFoundError:
        pass
    return imgs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device visible to torch; nothing to check", file=sys.stderr)
        return 2
    import onnxruntime as ort
    from ml.evaluate import evaluate_detections
    from ml.inference import detect_cells, load_task_model, segment_vessels
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
          f"onnxruntime {ort.__version__} providers {ort.get_available_providers()}")
    rng = np.random.default_rng(0)
    images = _test_images(rng)
    failures = []
    print("\n| task | comparison | worst max abs Δprob | worst Dice / mask agreement | ok |")
    print("|---|---|---|---|---|")
    providers = ort.get_available_providers()
    other = [("cuda", "torch")]
    if "CUDAExecutionProvider" in providers:
        other.append(("cuda", "onnx"))
    if "TensorrtExecutionProvider" in providers:
        other.append(("cuda", "tensorrt"))
    for task in ("cones", "rpe", "capillaries", "nfl"):
        for device, backend in other:
            worst_d, worst_a = 0.0, 1.0
            try:
                for img in images:
                    if task in ("cones", "rpe"):
                        ref = detect_cells(img, target=task, uncertainty=None)
                        got = detect_cells(img, target=task, uncertainty=None, backend=backend, device=device)
                        worst_d = max(worst_d, float(np.abs(ref.heatmap_mean - got.heatmap_mean).max()))
                        if len(ref.points_rc) >= 2:
                            s = evaluate_detections(got.points_rc, ref.points_rc, image_shape=img.shape)
                            worst_a = min(worst_a, s.dice)
                    else:
                        ref = segment_vessels(img, target=task, uncertainty=None)
                        got = segment_vessels(img, target=task, uncertainty=None, backend=backend, device=device)
                        worst_d = max(worst_d, float(np.abs(ref.probability_mean - got.probability_mean).max()))
                        worst_a = min(worst_a, float(np.mean(ref.mask == got.mask)))
            except Exception as exc:  # noqa: BLE001 - a failing backend is reported, counted, not hidden
                failures.append(f"{task} {backend}/{device}: {type(exc).__name__}: {exc}")
                print(f"| {task} | {backend}/{device} vs torch/cpu | error | {exc} | FAIL |")
                continue
            tol_p = TOL_BF16_PROB if backend == "torch" else TOL_ORT_PROB
            tol_a = TOL_BF16_DICE if task in ("cones", "rpe") else TOL_MASK_AGREE
            if backend == "tensorrt":
                tol_p = TOL_BF16_PROB  # TensorRT may pick reduced-precision kernels
            ok = worst_d <= tol_p and worst_a >= tol_a
            if not ok:
                failures.append(f"{task} {backend}/{device}: Δprob {worst_d:.4f} (tol {tol_p}), "
                                f"agreement {worst_a:.4f} (tol {tol_a})")
            print(f"| {task} | {backend}/{device} vs torch/cpu fp32 | {worst_d:.4f} | {worst_a:.4f} | "
                  f"{'ok' if ok else 'FAIL'} |", flush=True)

    print("\n| what | size | batch | backend | images/s | ms/image |")
    print("|---|---|---|---|---|---|")
    for size in (150, 512):
        for backend in [b for _, b in other]:
            _, runner, _ = load_task_model("cones", backend=backend, device="cuda")
            pad = (-size) % runner.multiple
            x = rng.random((args.batch, 1, size + pad, size + pad)).astype(np.float32)
            runner(x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                runner(x)  # includes host→device copy and the copy back, like real use
            torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / (args.repeats * args.batch)
            print(f"| forward (cones net) | {size}×{size} | {args.batch} | {backend} | {1 / dt:.0f} | {dt * 1000:.2f} |",
                  flush=True)
        img = (rng.random((size, size)) * 255).astype(np.float32)
        for unc in (None, "tta"):
            detect_cells(img, target="cones", device="cuda", uncertainty=unc)
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                detect_cells(img, target="cones", device="cuda", uncertainty=unc)
            dt = (time.perf_counter() - t0) / args.repeats
            print(f"| detect_cells end-to-end (peaks incl., unc={unc}) | {size}×{size} | 1 | torch | "
                  f"{1 / dt:.0f} | {dt * 1000:.2f} |", flush=True)
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("\nall GPU agreement checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
