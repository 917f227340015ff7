"""CPU timing of the layer search and of the whole preprocessing of a phantom case.

Run (about 1 min on 2 cores)::

    .venv/bin/python bench/bench_layers.py [--size 512] [--rounds 2] [--cases 5]

Prints ``segment_layers`` on one size³ volume tiled from a phantom (the volume
``bench/gpu_preprocessing.py`` times on the GPU; best of ``--rounds``, with its
features / search.cost / search.dp / refine split) and ``preprocess_case`` on a
3 × 128×256×128 phantom (min and median of ``--cases`` runs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_preprocessing import make_volume  # noqa: E402

from aooct_core.phantom import make_phantom  # noqa: E402
from aooct_core.preprocessing import preprocess_case, segment_layers  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cases", type=int, default=5)
    args = parser.parse_args(argv)
    ph = make_phantom(seed=0, n_repeats=3, shape_px=(128, 256, 128))
    case_s = []
    for _ in range(args.cases):
        t0 = time.perf_counter()
        preprocess_case(ph.volumes, ph.geometry)
        case_s.append(time.perf_counter() - t0)
    print(f"preprocess_case 3x128x256x128: min {min(case_s) * 1e3:.0f} ms, "
          f"median {float(np.median(case_s)) * 1e3:.0f} ms ({args.cases} runs)")
    vol, geom = make_volume(args.size, 1)
    volume = vol[0].astype(np.float32)
    runs = []
    for _ in range(args.rounds):
        timings = {}
        t0 = time.perf_counter()
        segment_layers(volume, depth_um_per_px=geom.depth_um_per_px, timings=timings)
        runs.append((time.perf_counter() - t0, timings))
    total, timings = min(runs, key=lambda r: r[0])
    parts = ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
    print(f"segment_layers {args.size}^3: {total:.2f} s (best of {args.rounds}; {parts} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
