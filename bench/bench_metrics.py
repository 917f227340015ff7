"""Speed and CI-coverage benchmark of the metrics engine.

Usage::

    nice -n 10 .venv/bin/python bench/bench_metrics.py            # speed only (~10 s)
    nice -n 10 .venv/bin/python bench/bench_metrics.py --coverage # + coverage studies (~5 min)

Speed target: 10,000 cells plus a 512×512 vessel mask summarised with CIs in ≤ 2 s.
Coverage target: the phantom's true density inside its 95 % CI in ≥ 95 % of ≥ 50 seeds.
Prints a Markdown report (paste into bench/results_metrics.md).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aooct_core.metrics import (
    capillary_metrics, metrics_table, mosaic_metrics, nerve_fiber_metrics, write_parquet_atomic,
)
from aooct_core.phantom.cones import sample_cone_mosaic, sample_point_process


def vessel_network(shape=(512, 512), *, seed=0) -> np.ndarray:
    """A capillary-like mesh: jittered polylines in two directions, 4–8 px wide."""
    rng = np.random.default_rng(seed)
    rr, cc = np.indices(shape).astype(np.float32)
    mask = np.zeros(shape, bool)
    for k in range(16):
        base = (k + 0.5) * shape[0] / 16
        phase, amp = rng.uniform(0, 2 * math.pi), rng.uniform(2, 6)
        centre = base + amp * np.sin(cc / 40 + phase)
        mask |= np.abs(rr - centre) < rng.uniform(2, 4)
        centre = base + amp * np.sin(rr / 40 + phase)
        mask |= (np.abs(cc - centre) < rng.uniform(2, 4)) & (rng.uniform() < 0.8)
    return mask


def bench_speed(repeats: int = 5) -> list[str]:
    um = 1.0
    field = (1000.0, 1000.0)  # 10,000 cells at 10,000 cells/mm²
    pts_um = sample_cone_mosaic(field, density_cells_per_mm2=10_000, rng=np.random.default_rng(0), disorder=0.15)
    pts = pts_um / um - 0.5
    mask = vessel_network()
    nfl = vessel_network(seed=1)
    lines = []

    def run_once():
        t0 = time.perf_counter()
        m = mosaic_metrics(pts, image_shape=(1000, 1000), um_per_px=um, n_boot=200)
        t1 = time.perf_counter()
        c = capillary_metrics(mask, um_per_px=1.0, n_boot=200)
        t2 = time.perf_counter()
        df = metrics_table("bench", {"cones": m, "capillaries": c}, model_version="bench", code_version="bench")
        with tempfile.TemporaryDirectory() as tmp:
            write_parquet_atomic(df, Path(tmp) / "metrics.parquet")
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, t3 - t0

    first = run_once()
    warm = [run_once() for _ in range(repeats)]
    med = [statistics.median(x[i] for x in warm) for i in range(4)]
    t0 = time.perf_counter()
    nerve_fiber_metrics(nfl, um_per_px=1.0, n_boot=200)
    t_nfl = time.perf_counter() - t0
    lines += [
        f"- cells: {len(pts)} (jittered lattice, 1000×1000 µm), vessel mask 512×512 px, n_boot = 200",
        "",
        "| step | first call (s) | median of " + str(repeats) + " (s) |",
        "|---|---|---|",
        f"| mosaic_metrics (10k cells, CIs) | {first[0]:.3f} | {med[0]:.3f} |",
        f"| capillary_metrics (512², CIs) | {first[1]:.3f} | {med[1]:.3f} |",
        f"| metrics_table + Parquet | {first[2]:.3f} | {med[2]:.3f} |",
        f"| **total (target ≤ 2 s)** | **{first[3]:.3f}** | **{med[3]:.3f}** |",
        f"| nerve_fiber_metrics (512², CIs; not in target) | — | {t_nfl:.3f} |",
    ]
    return lines


def coverage_lattice(n_seeds: int, disorder: float, *, density=30_100.0, um=2.263, shape=(128, 128)):
    hits, widths = 0, []
    for seed in range(n_seeds):
        rng = np.random.default_rng(50_000 + seed)
        pts = sample_cone_mosaic((shape[0] * um, shape[1] * um), density_cells_per_mm2=density, rng=rng,
                                 disorder=disorder)
        d = mosaic_metrics(pts / um - 0.5, image_shape=shape, um_per_px=um, seed=seed)["density_cells_per_mm2"]
        hits += d.ci_low <= density <= d.ci_high
        widths.append((d.ci_high - d.ci_low) / density)
    return hits / n_seeds, float(np.mean(widths))


def coverage_point_process(n_seeds: int, field_um: float, *, lam_mm2=30_000.0, cluster=False):
    hits, widths = 0, []
    for seed in range(n_seeds):
        pts = sample_point_process(field_um, density_cells_per_mm2=lam_mm2,
                                   rng=np.random.default_rng(seed), clustered=cluster)
        n = int(field_um)
        d = mosaic_metrics(pts - 0.5, image_shape=(n, n), um_per_px=1.0, seed=seed)["density_cells_per_mm2"]
        hits += d.ci_low <= lam_mm2 <= d.ci_high
        widths.append((d.ci_high - d.ci_low) / lam_mm2)
    return hits / n_seeds, float(np.mean(widths))


def coverage_full_phantom(n_seeds: int):
    """make_phantom ground truth: all lattice cones (incl. missing/dim) vs true density."""
    from aooct_core.phantom import make_phantom

    hits, widths = 0, []
    for seed in range(n_seeds):
        ph = make_phantom(seed=seed, n_repeats=1)
        cones = ph.truth["cones"]
        truth = cones["true_density_cells_per_mm2"]
        pts = np.asarray(cones["positions_rc"], dtype=np.float64)
        shape = (ph.volumes.shape[1], ph.volumes.shape[3])
        d = mosaic_metrics(pts, image_shape=shape, um_per_px=ph.geometry.enface_um_per_px,
                           seed=seed)["density_cells_per_mm2"]
        hits += d.ci_low <= truth <= d.ci_high
        widths.append((d.ci_high - d.ci_low) / truth)
    return hits / n_seeds, float(np.mean(widths))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coverage", action="store_true", help="also run the CI coverage studies")
    ap.add_argument("--phantom-seeds", type=int, default=50)
    args = ap.parse_args()
    cpus = os.cpu_count()
    print(f"# Metrics engine benchmark\n\nMachine: this CPU ({platform.processor() or platform.machine()}, "
          f"{cpus} cores visible, no GPU), Python {sys.version.split()[0]}, numpy {np.__version__}\n")
    print("## Speed\n")
    print("\n".join(bench_speed()))
    if args.coverage:
        print("\n## 95 % CI coverage of the density\n")
        print("| generating process | field | seeds | coverage | mean CI width / truth |")
        print("|---|---|---|---|---|")
        for disorder in (0.0, 0.1, 0.25, 0.4):
            cov, w = coverage_lattice(200, disorder)
            print(f"| phantom sampler, jittered lattice, disorder {disorder} | 290×290 µm (128² px, 2°) | 200 | {cov:.3f} | {w:.4f} |")
        for shape, density in (((35, 35), 30_100.0), ((27, 27), 15_843.0)):
            cov, w = coverage_lattice(200, 0.1, density=density, shape=shape)
            side = shape[0] * 2.263
            print(f"| phantom sampler, disorder 0.1, {density:,.0f}/mm² (small field) | {side:.0f}×{side:.0f} µm | 200 | {cov:.3f} | {w:.4f} |")
        cov, w = coverage_full_phantom(args.phantom_seeds)
        print(f"| make_phantom truth (positions_rc, true_density) | 290×290 µm | {args.phantom_seeds} | {cov:.3f} | {w:.4f} |")
        for field in (100.0, 300.0):
            cov, w = coverage_point_process(400, field)
            print(f"| Poisson, 30,000/mm² | {field:.0f}×{field:.0f} µm | 400 | {cov:.3f} | {w:.4f} |")
        for field in (150.0, 300.0):
            cov, w = coverage_point_process(400, field, cluster=True)
            print(f"| Thomas cluster (σ 5 µm, 5/cluster) | {field:.0f}×{field:.0f} µm | 400 | {cov:.3f} | {w:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
