"""Block size of the fused CPU shift-and-average (``cpu_resample._BLOCK``): time and equality.

``_accumulate`` processes the B-scans in blocks; every multiply/add runs over a block's
buffers, so smaller blocks keep them in the core's cache and larger ones cut per-call
overhead. This times ``average_repeats`` on the 3 × 128×256×128 phantom for several block
sizes, interleaved round by round (this machine's speed drifts), with the default 2-thread
pool and with one thread, and checks that every block size gives the same average bit for bit.

    nice -n 0 .venv/bin/python bench/bench_average_block.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import aooct_core.preprocessing.cpu_resample as cpu_resample  # noqa: E402
from aooct_core.phantom import make_phantom  # noqa: E402
from aooct_core.preprocessing import average_repeats, estimate_motion  # noqa: E402

BLOCKS = (16, 8, 4, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    ph = make_phantom(seed=0, shape_px=(128, 256, 128))
    vols, geom = ph.volumes, ph.geometry
    rep = estimate_motion(vols, geom, reference=0)
    default = cpu_resample._BLOCK
    reference = average_repeats(vols, rep.shifts_px, weights=rep.weights)[0]
    times: dict = {}
    try:
        for _ in range(args.rounds):
            for block in BLOCKS:
                cpu_resample._BLOCK = block
                for threads in (None, 1):
                    t0 = time.perf_counter()
                    mean = average_repeats(vols, rep.shifts_px, weights=rep.weights, cpu_threads=threads)[0]
                    times.setdefault((block, threads), []).append(time.perf_counter() - t0)
                    if not np.array_equal(mean, reference):
                        raise AssertionError(f"block {block}, cpu_threads={threads}: average differs")
    finally:
        cpu_resample._BLOCK = default
    print(f"\n### average_repeats, 3 × 128×256×128, by block size (default now {default}; "
          f"{args.rounds} interleaved rounds; this CPU: {os.cpu_count()} cores)\n")
    print("| B-scans per block | 2 threads, median / best (ms) | 1 thread, median / best (ms) |")
    print("|---|---|---|")
    for block in BLOCKS:
        two, one = times[(block, None)], times[(block, 1)]
        print(f"| {block} | {1e3 * np.median(two):.1f} / {1e3 * min(two):.1f} | "
              f"{1e3 * np.median(one):.1f} / {1e3 * min(one):.1f} |")
    print("\nEvery block size gave the same average, bit for bit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
