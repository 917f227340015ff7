"""I/O speed: write_case / load_case / Case.volumes / case_content_hash on phantom-sized cases.

Run: ``nice -n 10 .venv/bin/python bench/bench_io.py`` (writes nothing outside a temp folder).
Prints a markdown table; figures are recorded in ``bench/results_io.md``.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from aooct_core.geometry import Acquisition
from aooct_core.io import case_content_hash, load_case, read_volume, write_case


def _best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="aooct-bench-io-"))
    rows = []
    try:
        for shape, n_rep, fmt in [((128, 256, 128), 3, "tiff"), ((128, 256, 128), 3, "npy"),
                                  ((256, 512, 256), 3, "tiff")]:
            vols = np.random.default_rng(0).random((n_rep, *shape), dtype=np.float32)
            mb = vols.nbytes / 1e6
            acq = Acquisition("bench", "s", "OD", (2.0, 0.0), 24.0, (1.0, 1.0), shape, 2.0)

            def _write():
                write_case(root / "c", acq, vols, fmt=fmt, overwrite=True)
                shutil.rmtree(root / "c")

            t_write = _best(_write)
            write_case(root / "c", acq, vols, fmt=fmt)
            t_load = _best(lambda: load_case(root / "c"))
            case = load_case(root / "c")
            t_vols = _best(case.volumes)
            t_hash = _best(lambda: case_content_hash(root / "c"))
            t_one = _best(lambda: read_volume(case.volume_paths[0]))
            rows.append((f"{n_rep}×{'×'.join(map(str, shape))} {fmt}", mb, t_write, t_load,
                         t_one, t_vols, t_hash))
            shutil.rmtree(root / "c")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("| case | MB | write_case s | load_case s | read_volume (1 repeat, mmap + NaN scan) s "
          "| Case.volumes() s | case_content_hash s |")
    print("|---|---|---|---|---|---|---|")
    for name, mb, *ts in rows:
        print(f"| {name} | {mb:.0f} | " + " | ".join(f"{t:.3f}" for t in ts) + " |")


if __name__ == "__main__":
    main()
