"""The command line the phantom-family benchmarks share: which seeds to run.

``--n`` members from ``--start`` into the tuning seeds, or with ``--held-out`` into the
held-out ones (:mod:`aooct_core.phantom.family`); ``--json`` writes the per-case rows.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from aooct_core.phantom.family import HELD_OUT_SEEDS, TUNING_SEEDS

__all__ = ["family_seeds", "member_rows"]


def family_seeds(doc: str, argv=None, *, n_default: int = 10) -> tuple[argparse.Namespace, range]:
    """Parse ``argv`` → (arguments, the seed range to run)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--n", type=int, default=n_default)
    ap.add_argument("--start", type=int, default=0, help="offset into the seed range")
    ap.add_argument("--held-out", action="store_true", help="report on HELD_OUT_SEEDS")
    ap.add_argument("--json", type=Path, help="write per-case results here")
    args = ap.parse_args(argv)
    seeds = (HELD_OUT_SEEDS if args.held_out else TUNING_SEEDS)[args.start:args.start + args.n]
    return args, seeds


def member_rows(seeds, run_one):
    """``(seed, row)`` for each seed whose ``run_one(seed)`` scores the member (None: skipped)."""
    for seed in seeds:
        row = run_one(seed)
        if row is not None:
            yield seed, row
