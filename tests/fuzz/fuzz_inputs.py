"""The stream of fuzz inputs: hostile inputs as built, the seeds, then seeded mutants."""
from __future__ import annotations

import random
from collections.abc import Iterator

from fuzz_bombs import all_bombs
from fuzz_mutate import mutate
from fuzz_seeds import all_seeds

__all__ = ["fuzz_inputs"]

# Hostile inputs up to this size are mutated too; bigger ones (multi-megabyte bombs) are
# read as built only.
_MUTATE_MAX_BYTES = 512 << 10


def fuzz_inputs(n: int, seed: int, *, bombs: bool = True
                ) -> Iterator[tuple[int, str, str, bytes, int | None]]:
    """``n`` inputs ``(index, name, suffix, bytes, extend_to)``, reproducible from ``seed``."""
    rng = random.Random(seed)
    seeds = [(name, suffix, data, None) for name, suffix, data in all_seeds()]
    hostile = list(all_bombs()) if bombs else []
    i = 0
    for name, suffix, data, extend_to in hostile + seeds:
        if i >= n:
            return
        yield i, name, suffix, data, extend_to
        i += 1
    pool = seeds + [b for b in hostile if len(b[2]) <= _MUTATE_MAX_BYTES]
    while i < n:
        name, suffix, data, extend_to = rng.choice(pool)
        yield i, f"{name}~{i}", suffix, mutate(rng, data, suffix), extend_to
        i += 1
