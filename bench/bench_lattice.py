"""Host part of the cone-lattice step of ``preprocess_case`` on one en face image.

On the GPU path this is the part that runs on the host (the en face image is downloaded,
analysed, and only the corrected shifts go back), so its time adds to the GPU figure.
Times ``lattice_row_shifts`` + ``dejitter_rows`` + ``lattice_shear`` on a cone-like
triangular lattice with smooth row jitter, a shear and noise (accuracy is unit-tested;
this is speed only).

Usage: ``python bench/bench_lattice.py [--size 512] [--rounds 9]``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aooct_core.preprocessing.lattice import dejitter_rows, lattice_row_shifts, lattice_shear  # noqa: E402


def cone_lattice(n: int, *, spacing_px: float = 3.5, seed: int = 0) -> np.ndarray:
    """Triangular-lattice en face image with row jitter (px), a shear and noise."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n, dtype=np.float64)
    jitter = np.cumsum(rng.normal(0, 0.05, n)) + 0.01 * (rows - n / 2)
    r, c = np.mgrid[0:n, 0:n].astype(np.float64)
    cc = c - jitter[:, None]
    img = sum(np.cos(2 * np.pi / spacing_px * (np.cos(t) * cc + np.sin(t) * r))
              for t in np.radians([12.0, 72.0, 132.0]))
    return (img + 3.0 + rng.normal(0, 0.7, img.shape)).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    img = cone_lattice(args.size)

    def step():
        shift, agreement = lattice_row_shifts(img)
        dejittered = dejitter_rows(img, shift)
        shear, ok = lattice_shear(dejittered, um_per_px=(1.5, 1.5))
        return agreement, ok

    parts = {"lattice_row_shifts": lambda: lattice_row_shifts(img),
             "lattice_shear": lambda: lattice_shear(img, um_per_px=(1.5, 1.5)),
             "whole host step": step}
    agreement, ok = step()
    print(f"en face {args.size}x{args.size}: agreement {agreement:.3f}, lattice found {ok}")
    for name, fn in parts.items():
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"{name:20s} min {1e3 * min(times):7.1f} ms  median {1e3 * np.median(times):7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
