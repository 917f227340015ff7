"""Single-volume speckle denoiser (issue 3): what it gains, what it costs, and in what time.

Run (≈ 3 min on 2 cores, ≈ 5 with ``--sweep``; ``--bm4d`` adds BM4D where the separately installed package is
present, ≈ 5 more minutes)::

    nice -n 10 .venv/bin/python bench/bench_denoise.py [--seeds 3] [--sweep] [--bm4d]

1. **Phantoms** (``make_phantom``, one 128×256×128 volume, no motion): one speckle
   realisation denoised, against the noise-free render and against the average of N
   independent speckle realisations of the same tissue (pure speckle averaging). Per row:
   correlation of each en face slab with the noise-free one, RMS dB error in tissue
   (global offset removed), worst RMS depth error of the four surfaces ``segment_layers``
   finds on that volume, and the speckle contrast in the mid inner retina. ``--sweep``
   adds other strengths: the default (1.3) is the one with the best mean correlation of
   the diffuse slabs (RPE, NFL, plexuses) among 0.5, 0.8, 1.3 and 2.0.
2. **Real AO-OCT** (``../shared/data/aooct-rpe/full-fov/0201``, same field averaged over
   N = 1…90 volumes; skipped when absent): the N = 1 image denoised in 2-D, against the
   N-volume averages: correlation with the N = 90 image (dB), local speckle contrast, and
   RPE-cell F1 of the committed detector against the N = 90 cell centres. The averages
   are nested (the N = 90 image contains the others), which favours them; and the RPE
   detector was trained on this eye (subject 0201), so the F1 column compares rows with
   each other only.
3. **Time** of ``denoise_volume`` on the 128×256×128 volume, one and two threads.

The denoiser's defaults were set on phantoms before the real series was scored; nothing
here is tuned to it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aooct_core.phantom import make_phantom  # noqa: E402
from aooct_core.preprocessing import denoise_volume, enface_slabs, segment_layers  # noqa: E402
from aooct_core.preprocessing.denoise import DENOISED_SLABS  # noqa: E402
from aooct_core.preprocessing.normalization import speckle_contrast  # noqa: E402
from aooct_core.preprocessing.pipeline import speckle_mask  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHAPE_PX = (128, 256, 128)
AVERAGES = (2, 4, 8)
SLABS = ("isos", "cost", "rpe", "nfl", "svp", "dvp")
SWEEP_STRENGTHS = (0.5, 0.8, 2.0)


def _have_bm4d() -> bool:
    try:
        import bm4d  # noqa: F401
    except ImportError:
        return False
    return True


def _corr(a, b) -> float:
    a = np.asarray(a, np.float64).ravel() - np.mean(a)
    b = np.asarray(b, np.float64).ravel() - np.mean(b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _db(x):
    x = np.asarray(x, np.float32)
    return 10 * np.log10(np.maximum(x, np.float32(1e-4) * x.mean()))


def _phantom_row(vol, clean, clean_enface, ph) -> dict:
    tissue = clean > 0.05 * clean.mean()
    d = (_db(vol) - _db(clean))[tissue]
    depth_um = ph.geometry.depth_um_per_px
    enface = enface_slabs(vol, ph.surfaces_px, depth_um_per_px=depth_um)
    found = segment_layers(vol, depth_um_per_px=depth_um)
    row = {f"corr_{k}": _corr(enface[k], clean_enface[k]) for k in SLABS}
    row["corr_diffuse"] = float(np.mean([row[f"corr_{k}"] for k in DENOISED_SLABS]))
    row.update(err_db=float(np.sqrt(np.mean((d - d.mean()) ** 2))),
               layer_rms_px=max(float(np.sqrt(np.mean((found[k] - ph.surfaces_px[k]) ** 2))) for k in found),
               contrast=speckle_contrast(vol, mask=speckle_mask(ph.surfaces_px, vol.shape)))
    return row


def bench_phantom(seeds: int, bm4d: bool, sweep: bool) -> None:
    print(f"\n### Phantom: one {SHAPE_PX} volume, no motion; mean over seeds 0..{seeds - 1}\n")
    print("Correlation of each en face slab with the noise-free one; 'diffuse' = mean of "
          f"{', '.join(DENOISED_SLABS)} (the slabs the pipeline takes from the denoised volume).\n")
    rows: dict[str, list[dict]] = {}
    times = {1: [], 2: []}
    for seed in range(seeds):
        ph = make_phantom(seed=seed, n_repeats=1, shape_px=SHAPE_PX)
        clean = ph.motion_free()
        clean_enface = enface_slabs(clean, ph.surfaces_px, depth_um_per_px=ph.geometry.depth_um_per_px)
        renders = [ph.motion_free(speckle_seed=1000 * seed + i) for i in range(max(AVERAGES))]
        single = renders[0]
        rows.setdefault("N = 1, raw", []).append(_phantom_row(single, clean, clean_enface, ph))
        for threads in (1, 2):
            t0 = time.perf_counter()
            den = denoise_volume(single, cpu_threads=threads)
            times[threads].append(time.perf_counter() - t0)
        rows.setdefault("N = 1, nl_means (default strength 1.3)", []).append(
            _phantom_row(den, clean, clean_enface, ph))
        for strength in SWEEP_STRENGTHS if sweep else ():
            rows.setdefault(f"N = 1, nl_means strength {strength}", []).append(
                _phantom_row(denoise_volume(single, strength=strength), clean, clean_enface, ph))
        if bm4d and seed == 0:
            t0 = time.perf_counter()
            den = denoise_volume(single, method="bm4d")
            print(f"(bm4d on seed 0: {time.perf_counter() - t0:.0f} s)")
            rows.setdefault("N = 1, bm4d (seed 0 only)", []).append(_phantom_row(den, clean, clean_enface, ph))
        for n in AVERAGES:
            rows.setdefault(f"N = {n}, average of independent speckle", []).append(
                _phantom_row(np.mean(renders[:n], axis=0), clean, clean_enface, ph))
    print("| input | " + " | ".join(SLABS) + " | diffuse | RMS dB error in tissue | worst layer RMS (px) "
          "| speckle contrast, inner retina |")
    print("|---|" + "---|" * (len(SLABS) + 4))
    for name, rs in rows.items():
        m = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        print(f"| {name} | " + " | ".join(f"{m[f'corr_{k}']:.3f}" for k in SLABS)
              + f" | **{m['corr_diffuse']:.3f}** | {m['err_db']:.2f} | {m['layer_rms_px']:.2f} | {m['contrast']:.3f} |")
    print(f"\nTime, denoise_volume nl_means on {SHAPE_PX} float32 (this CPU): "
          f"1 thread median {np.median(times[1]):.2f} s, 2 threads median {np.median(times[2]):.2f} s "
          f"({len(times[1])} volumes)")


def bench_real(bm4d: bool) -> None:
    folder = SHARED / "aooct-rpe" / "full-fov" / "0201"
    if not folder.exists():
        print(f"\n### Real AO-OCT: skipped ({folder} not found)")
        return
    import tifffile

    from ml.data import _read_points
    from ml.evaluate import evaluate_detections
    from ml.inference import detect_cells

    images = {int(p.stem.split("N")[-1]): tifffile.imread(p).astype(np.float32)
              for p in sorted(folder.glob("average_N*.tif"))}
    cells = _read_points(folder / "average_N90_cells.csv")
    ref_db = _db(images[90])
    rows = [(f"N = {n}, average", img) for n, img in sorted(images.items())]
    t0 = time.perf_counter()
    rows.insert(1, ("N = 1, nl_means (default)", denoise_volume(images[1])))
    t_nlm = time.perf_counter() - t0
    if bm4d:
        rows.insert(2, ("N = 1, bm4d", denoise_volume(images[1], method="bm4d")))
    print("\n### Real AO-OCT RPE en face (aooct-rpe/full-fov/0201), 500×490 px\n")
    print("| input | corr. with N = 90 (dB) | local speckle contrast (9×9, median) | RPE F1 vs N = 90 centres |")
    print("|---|---|---|---|")
    for name, img in rows:
        det = detect_cells(img, target="rpe", uncertainty=None)
        f1 = evaluate_detections(det.points_rc, cells, image_shape=img.shape).dice
        contrast = speckle_contrast(img, window_px=(9, 9))
        print(f"| {name} | {_corr(_db(img), ref_db):.3f} | {contrast:.3f} | {f1:.3f} |")
    print(f"\nnl_means on the 500×490 image: {t_nlm:.2f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bm4d", action="store_true", help="also BM4D (needs the bm4d package; slow)")
    parser.add_argument("--sweep", action="store_true",
                        help=f"also nl_means at strengths {SWEEP_STRENGTHS} (how the default was chosen)")
    args = parser.parse_args(argv)
    bm4d = args.bm4d and _have_bm4d()
    if args.bm4d and not bm4d:
        print("(--bm4d asked for but the bm4d package is not installed; skipped)")
    bench_phantom(args.seeds, bm4d, args.sweep)
    bench_real(bm4d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
