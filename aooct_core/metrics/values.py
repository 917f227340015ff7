"""The value type every metric is reported in: a number, its unit, its 95 % CI and its method."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["MetricValue", "as_um_per_px"]


@dataclass(frozen=True)
class MetricValue:
    """One summary measurement, ready to publish.

    Attributes
    ----------
    value : float
        Point estimate in ``unit``. May be ``inf`` where the quantity is
        mathematically unbounded (e.g. the regularity index of a perfect lattice)
        and ``nan`` where it cannot be estimated from the data (e.g. no bounded
        Voronoi cell); ``method`` then says why.
    unit : str
        Physical unit ("cells/mm²", "µm", "µm²", "mm/mm²", "mm²", "deg") or "1"
        for dimensionless numbers and fractions.
    ci_low, ci_high : float or None
        Bounds of the 95 % confidence interval, ``None`` where no sampling
        uncertainty applies (e.g. an observed count).
    method : str
        How the value and its CI were obtained, specific enough to reproduce
        (estimator, bootstrap scheme, block size, number of resamples, seed).
    """

    value: float
    unit: str
    ci_low: float | None
    ci_high: float | None
    method: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, (int, float, np.floating, np.integer)) or isinstance(self.value, bool):
            raise ValueError(f"MetricValue.value must be a real number, got {self.value!r}")
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("give both ci_low and ci_high, or neither")
        # Store plain Python floats so the value serialises anywhere (JSON, Parquet, SQL).
        object.__setattr__(self, "value", float(self.value))
        if self.ci_low is not None:
            object.__setattr__(self, "ci_low", float(self.ci_low))
            object.__setattr__(self, "ci_high", float(self.ci_high))

    def to_dict(self) -> dict:
        """JSON-friendly dict; non-finite numbers become ``None`` (JSON has no inf)."""
        out = asdict(self)
        for key in ("value", "ci_low", "ci_high"):
            if out[key] is not None and not math.isfinite(out[key]):
                out[key] = None
        return out


def as_um_per_px(um_per_px: float | tuple[float, float]) -> tuple[float, float]:
    """Normalise a scalar or ``(row, col)`` pixel size to a validated ``(row, col)`` tuple in µm."""
    if np.ndim(um_per_px) == 0:  # Python or NumPy scalar
        pair = (float(um_per_px), float(um_per_px))
    else:
        try:
            row_um, col_um = um_per_px
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"um_per_px must be a positive number or a (row, col) pair of µm; got {um_per_px!r}"
            ) from exc
        pair = (float(row_um), float(col_um))
    if not all(math.isfinite(v) and v > 0 for v in pair):
        raise ValueError(
            f"um_per_px must be positive and finite (µm per pixel); got {um_per_px!r} — "
            "take it from Geometry.enface_um_per_px"
        )
    return pair
