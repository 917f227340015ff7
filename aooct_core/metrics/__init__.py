"""Microstructure metrics in physical units, each with a 95 % CI and the method that produced it.

Public API (see docs/ARCHITECTURE.md and the shared contracts):
``MetricValue``, ``mosaic_metrics``, ``capillary_metrics``, ``nerve_fiber_metrics``,
``normative_cone_density``, ``cone_density_percentile``, ``metrics_table``,
``write_parquet_atomic``.
"""
from aooct_core.metrics.values import MetricValue
from aooct_core.metrics.mosaic import mosaic_metrics
from aooct_core.metrics.vessels import capillary_diameters_um, capillary_metrics
from aooct_core.metrics.spatial import density_recovery_profile, local_density_map
from aooct_core.metrics.nerve_fibers import nerve_fiber_metrics
from aooct_core.metrics.norms import (
    cone_density_percentile,
    normative_cone_density,
    normative_cone_spacing_um,
    plot_cone_density_norms,
)
from aooct_core.metrics.table import analyze_metrics_json, metrics_table, write_json_atomic, write_parquet_atomic

__all__ = [
    "MetricValue",
    "mosaic_metrics",
    "capillary_metrics",
    "capillary_diameters_um",
    "local_density_map",
    "density_recovery_profile",
    "nerve_fiber_metrics",
    "normative_cone_density",
    "normative_cone_spacing_um",
    "cone_density_percentile",
    "plot_cone_density_norms",
    "metrics_table",
    "write_parquet_atomic",
    "write_json_atomic",
    "analyze_metrics_json",
]
