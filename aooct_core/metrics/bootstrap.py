"""Seeded spatial block bootstrap for ratio estimators.

Every mosaic or vessel summary in this package is a ratio of sums over the
image (cells / area, Σ NND / number of NNDs, mask pixels / pixels ...). We tile
the field into rectangular blocks several structure-spacings wide, sum the
numerator and denominator inside each block once, and resample whole blocks
with replacement. Resampling blocks rather than cells keeps the short-range
dependence between neighbouring cells (a cone's NND is shared with its
neighbour; a regular mosaic has strongly negatively correlated counts), so the
interval is not anti-conservative the way an i.i.d. cell bootstrap is. For
hyperuniform (lattice-like) mosaics the block bootstrap over-states the count
variance — a conservative error, which we prefer for published numbers.

References
----------
.. [1] Künsch HR. "The jackknife and the bootstrap for general stationary
       observations." Ann Stat 17:1217-1241 (1989).
.. [2] Hall P. "Resampling a coverage pattern." Stoch Proc Appl 20:231-246 (1985).
.. [3] Loh JM. "A valid and fast spatial bootstrap for correlation functions."
       Astrophys J 681:726-734 (2008).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BlockGrid", "block_grid", "bootstrap_sums", "percentile_ci", "expansion_factor"]

# Fewer blocks than this and the bootstrap variance itself is too noisy to trust.
MIN_BLOCKS_PER_AXIS = 2
MAX_BLOCKS_PER_AXIS = 16


@dataclass(frozen=True)
class BlockGrid:
    """A tiling of a rectangular field ``[0, field_um[0]] × [0, field_um[1]]`` into blocks."""

    field_um: tuple[float, float]
    n_blocks_rc: tuple[int, int]

    @property
    def n_blocks(self) -> int:
        return self.n_blocks_rc[0] * self.n_blocks_rc[1]

    @property
    def block_um(self) -> tuple[float, float]:
        return (self.field_um[0] / self.n_blocks_rc[0], self.field_um[1] / self.n_blocks_rc[1])

    def block_of(self, points_um: np.ndarray) -> np.ndarray:
        """Flat block index (int64, shape (N,)) of each ``(row, col)`` point in µm."""
        pts = np.asarray(points_um, dtype=np.float64).reshape(-1, 2)
        br, bc = self.block_um
        ir = np.clip((pts[:, 0] // br).astype(np.int64), 0, self.n_blocks_rc[0] - 1)
        ic = np.clip((pts[:, 1] // bc).astype(np.int64), 0, self.n_blocks_rc[1] - 1)
        return ir * self.n_blocks_rc[1] + ic

    def describe(self) -> str:
        br, bc = self.block_um
        return f"{self.n_blocks_rc[0]}x{self.n_blocks_rc[1]} blocks of {br:.1f}x{bc:.1f} µm"


def block_grid(field_um: tuple[float, float], *, block_um: float) -> BlockGrid:
    """Tile ``field_um`` into near-square blocks about ``block_um`` wide (2 to 16 per axis)."""
    if not block_um > 0:
        raise ValueError(f"block_um must be a positive length in µm; got {block_um!r}")
    n = tuple(
        int(np.clip(round(extent / block_um), MIN_BLOCKS_PER_AXIS, MAX_BLOCKS_PER_AXIS))
        for extent in field_um
    )
    return BlockGrid(field_um=(float(field_um[0]), float(field_um[1])), n_blocks_rc=n)


def bootstrap_sums(block_sums: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """Resample blocks with replacement and return the resampled column sums.

    Parameters
    ----------
    block_sums : ndarray, shape (n_blocks, k)
        Per-block sums of ``k`` additive quantities.
    n_boot : int
        Number of bootstrap resamples.
    seed : int
        Seed of ``numpy.random.default_rng``; same seed, same intervals.

    Returns
    -------
    ndarray, float64, shape (n_boot, k)
        Sums over each resampled set of ``n_blocks`` blocks.
    """
    sums = np.asarray(block_sums, dtype=np.float64)
    if sums.ndim != 2 or sums.shape[0] < 1:
        raise ValueError(f"block_sums must be (n_blocks, k) with n_blocks ≥ 1; got {sums.shape}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be ≥ 10 for a percentile interval; got {n_boot}")
    rng = np.random.default_rng(seed)
    n_blocks = sums.shape[0]
    # Multiplicity of each block in each resample: one matrix product gives all sums.
    counts = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks), size=n_boot)
    return counts.astype(np.float64) @ sums


def percentile_ci(
    samples: np.ndarray, *, estimate: float, n_blocks: int, level: float = 0.95
) -> tuple[float, float] | None:
    """Expanded percentile interval of bootstrap replicates, or ``None`` if none is defined.

    With few blocks the plain percentile interval is too narrow: the bootstrap
    variance of a sum of ``n`` blocks is biased by ``(n - 1) / n`` and a normal
    quantile is used where a Student-t one belongs. Both sides of the interval
    are therefore stretched about ``estimate`` by
    ``sqrt(n / (n - 1)) * t_{n-1} / z`` (Hesterberg 2015); with 256 blocks the
    factor is 1.006, with 4 blocks 1.87.

    NaN replicates (a resample with an empty denominator) are dropped; ``+inf``
    replicates are kept because they are real (a resample of a perfect lattice
    has zero NND spread, so an infinite regularity index).

    References
    ----------
    .. [1] Hesterberg TC. "What teachers should know about the bootstrap:
           resampling in the undergraduate statistics curriculum." Am Stat
           69:371-386 (2015).
    """
    s = np.asarray(samples, dtype=np.float64)
    s = np.sort(s[~np.isnan(s)])
    if s.size == 0 or np.isnan(estimate):
        return None
    tail = (1.0 - level) / 2.0
    # Order statistics rather than interpolation, so infinite replicates stay well defined.
    lo = float(s[int(np.floor(tail * (s.size - 1)))])
    hi = float(s[int(np.ceil((1.0 - tail) * (s.size - 1)))])
    if not np.isfinite(estimate):
        return (lo, hi)
    factor = expansion_factor(n_blocks, level=level)
    with np.errstate(invalid="ignore"):
        lo_x = estimate - factor * (estimate - min(lo, estimate))
        hi_x = estimate + factor * (max(hi, estimate) - estimate)
    return (float(lo_x), float(hi_x))


def expansion_factor(n_blocks: int, *, level: float = 0.95) -> float:
    """``sqrt(n / (n - 1)) * t_{n-1} / z`` for ``n`` resampled blocks (see ``percentile_ci``)."""
    # scipy.special, not scipy.stats: same quantiles without a ~0.5 s import.
    from scipy.special import ndtri, stdtrit

    if n_blocks < 2:
        raise ValueError(f"a block bootstrap needs at least 2 blocks; got {n_blocks}")
    q = 0.5 + level / 2.0
    return float(np.sqrt(n_blocks / (n_blocks - 1)) * stdtrit(n_blocks - 1, q) / ndtri(q))
