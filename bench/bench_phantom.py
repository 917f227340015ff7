"""Speed of the phantom generator, and the two docs figures.

Usage::

    nice -n 10 .venv/bin/python bench/bench_phantom.py            # timings -> bench/results_phantom.md
    nice -n 10 .venv/bin/python bench/bench_phantom.py --figures  # also docs/phantom_*.png

Target (issue 2): a 3 x 128x256x128 case in seconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aooct_core.phantom import make_phantom, write_phantom  # noqa: E402


def _time(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def bench(n_runs: int) -> str:
    rows = []
    for label, kwargs in [("3 x 128x256x128 (default)", {}),
                          ("1 x 128x256x128", {"n_repeats": 1}),
                          ("3 x 128x512x256", {"shape_px": (128, 512, 256), "depth_um_per_px": 1.0})]:
        best, median = _time(lambda: make_phantom(seed=0, **kwargs), n_runs)
        rows.append(f"| make_phantom {label} | {best:.2f} | {median:.2f} |")
    ph = make_phantom(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1000))
        best, median = _time(lambda: write_phantom(Path(tmp) / f"c{next(counter)}", ph), n_runs)
    rows.append(f"| write_phantom 3 x 128x256x128 (TIFF + truth) | {best:.2f} | {median:.2f} |")
    machine = (f"this CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), no GPU, "
               f"numpy {np.__version__}; shared with other jobs, run under nice -n 10")
    return "\n".join([
        "# Phantom generator speed",
        "",
        f"Machine: {machine}. Best and median of {n_runs} runs, seconds.",
        "Target (issue 2): a 3 x 128x256x128 case in seconds.",
        "",
        "| what | best s | median s |",
        "|---|---|---|",
        *rows,
        "",
        "Reproduce: `nice -n 10 .venv/bin/python bench/bench_phantom.py`.",
        "",
    ])


# --- figures -------------------------------------------------------------------------------------

def _log8(x: np.ndarray, *, range_db: float = 35.0) -> np.ndarray:
    db = 10 * np.log10(np.maximum(x, 1e-12))
    hi = np.percentile(db, 99.9)
    return (np.clip((db - (hi - range_db)) / range_db, 0, 1) * 255).astype(np.uint8)


def _lin8(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [0.5, 99.7])
    return (np.clip((x - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _unmove(ph, r: int) -> np.ndarray:
    """Undo the true motion of repeat r (linear interpolation) — an ideal registration."""
    from scipy import ndimage
    out = np.empty_like(ph.volumes[r])
    for b in range(out.shape[0]):
        out[b] = ndimage.shift(ph.volumes[r, b], -ph.motion_px[r, b], order=1, mode="nearest")
    return out


def _isos_enface(vol: np.ndarray, isos_px: np.ndarray, half: int = 1) -> np.ndarray:
    z = np.rint(isos_px).astype(int)
    return sum(np.take_along_axis(vol, (z + d)[:, None, :], axis=1)[:, 0, :] for d in range(-half, half + 1))


def _panel(img8: np.ndarray, size: tuple[int, int], title: str):
    from PIL import Image, ImageDraw
    im = Image.fromarray(img8).resize(size, Image.LANCZOS)
    canvas = Image.new("L", (size[0], size[1] + 18), 0)
    canvas.paste(im, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), title, fill=255)
    return canvas


def figures() -> None:
    from PIL import Image, ImageDraw

    ph = make_phantom(seed=0)
    g = ph.geometry
    b = ph.volumes.shape[1] // 2
    raw = ph.volumes[0, b]
    avg = np.mean([_unmove(ph, r)[b] for r in range(ph.volumes.shape[0])], axis=0)
    scale = 2
    w = int(round(raw.shape[1] * g.aline_um_per_px / g.depth_um_per_px * scale))
    h = raw.shape[0] * scale
    left = _panel(_log8(raw), (w, h), "one repeat (raw)")
    right = _panel(_log8(avg), (w, h), "3 repeats, motion removed")
    label_w = 70
    canvas = Image.new("L", (2 * w + 8 + label_w, h + 18), 0)
    canvas.paste(left, (0, 0))
    canvas.paste(right, (w + 8, 0))
    draw = ImageDraw.Draw(canvas)
    surf = {k: float(v[b].mean()) for k, v in ph.surfaces_px.items()}
    labels = {"NFL": (surf["ILM"] + surf["NFL_GCL"]) / 2, "GCL/IPL": (surf["NFL_GCL"] + surf["IPL_INL"]) / 2,
              "INL": (surf["IPL_INL"] + surf["INL_OPL"]) / 2, "OPL": (surf["INL_OPL"] + surf["OPL_ONL"]) / 2,
              "ONL": (surf["OPL_ONL"] + surf["ELM"]) / 2, "ELM": surf["ELM"] - 2, "IS/OS": surf["ISOS"],
              "COST": surf["COST"] - 1, "RPE": surf["RPE"] + 2, "choroid": surf["BM"] + 20}
    for name, z in labels.items():
        y = 18 + int(z * scale) - 5
        draw.text((2 * w + 14, y), name, fill=255)
    draw.text((2 * w + 14, h + 2), f"{raw.shape[1] * g.aline_um_per_px:.0f} um", fill=160)
    canvas.save(REPO / "docs" / "phantom_bscan.png", optimize=True)

    # IS/OS en face: the default 1 deg field (2.26 um/px) and a 0.5 deg field (1.13 um/px).
    fine = make_phantom(seed=0, scan_field_deg=(0.5, 0.5))
    panels = []
    for p, title in ((ph, "1.0 deg, 2.26 um/px"), (fine, "0.5 deg, 1.13 um/px")):
        mean = np.mean([_unmove(p, r) for r in range(p.volumes.shape[0])], axis=0)
        en = _isos_enface(mean, p.surfaces_px["ISOS"])
        panels.append(_panel(_lin8(en), (320, 320), f"IS/OS, 2 deg temporal, {title}"))
    raw_en = _isos_enface(fine.volumes[0], fine.surfaces_px["ISOS"] + fine.motion_px[0, :, :1])
    panels.append(_panel(_lin8(raw_en), (320, 320), "0.5 deg, one raw repeat (motion)"))
    canvas = Image.new("L", (3 * 320 + 16, 320 + 18), 0)
    for i, panel in enumerate(panels):
        canvas.paste(panel, (i * (320 + 8), 0))
    canvas.save(REPO / "docs" / "phantom_isos_enface.png", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--figures", action="store_true", help="also write docs/phantom_*.png")
    parser.add_argument("--no-bench", action="store_true", help="skip the timings")
    args = parser.parse_args()
    if not args.no_bench:
        text = bench(args.runs)
        (REPO / "bench" / "results_phantom.md").write_text(text)
        print(text)
    if args.figures:
        figures()
        print("wrote docs/phantom_bscan.png and docs/phantom_isos_enface.png")


if __name__ == "__main__":
    main()
