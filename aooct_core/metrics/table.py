"""Tidy long metrics table (polars), atomic Parquet/JSON writers and the ``analyze`` metrics.json.

One row per (case, structure, metric): the shape the metadata DB's ``metrics``
table, the Parquet artifact and the review UI all read.

polars is imported inside the functions that need it, so ``aooct_core`` still
imports on a GPU box that has only the numeric stack.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aooct_core.atomicfile import write_atomic
from aooct_core.metrics.values import MetricValue

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "TABLE_SCHEMA",
    "metrics_table",
    "write_parquet_atomic",
    "analyze_metrics_json",
    "write_json_atomic",
]

# Column → polars dtype name, in table order.
TABLE_SCHEMA: dict[str, str] = {
    "case_id": "String",
    "structure": "String",
    "metric": "String",
    "value": "Float64",
    "unit": "String",
    "ci_low": "Float64",
    "ci_high": "Float64",
    "method": "String",
    "model_version": "String",
    "code_version": "String",
}


def metrics_table(
    case_id: str,
    metrics_by_structure: Mapping[str, Mapping[str, MetricValue]],
    *,
    model_version: str,
    code_version: str,
) -> "pl.DataFrame":
    """Flatten ``{structure: {metric: MetricValue}}`` into a tidy long table.

    Parameters
    ----------
    case_id : str
        Case identifier (the Dagster partition key).
    metrics_by_structure : mapping
        E.g. ``{"cones": mosaic_metrics(...), "capillaries": capillary_metrics(...)}``.
    model_version, code_version : str
        Provenance stamped on every row.

    Returns
    -------
    polars.DataFrame
        Columns and dtypes of ``TABLE_SCHEMA``, sorted by structure then metric.
        Non-estimable values are stored as null rather than NaN.

    Examples
    --------
    >>> df = metrics_table("c1", {"cones": {"count": MetricValue(3.0, "cells", None, None, "observed")}},
    ...                    model_version="m1", code_version="0.1.0")
    >>> df.select("structure", "metric", "value").row(0)
    ('cones', 'count', 3.0)
    """
    import polars as pl

    if not isinstance(case_id, str) or not case_id:
        raise ValueError(f"case_id must be a non-empty string; got {case_id!r}")
    rows = []
    for structure, metrics in metrics_by_structure.items():
        for name, mv in metrics.items():
            if not isinstance(mv, MetricValue):
                raise ValueError(
                    f"metrics_by_structure[{structure!r}][{name!r}] must be a MetricValue; got {type(mv).__name__}"
                )
            rows.append({
                "case_id": case_id,
                "structure": str(structure),
                "metric": str(name),
                "value": None if math.isnan(mv.value) else float(mv.value),
                "unit": mv.unit,
                "ci_low": mv.ci_low,
                "ci_high": mv.ci_high,
                "method": mv.method,
                "model_version": str(model_version),
                "code_version": str(code_version),
            })
    schema = {name: getattr(pl, dtype) for name, dtype in TABLE_SCHEMA.items()}
    return pl.DataFrame(rows, schema=schema).sort(["structure", "metric"])


def _atomic_write(path: Path, write) -> Path:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist — create it first")
    return write_atomic(path, write)


def write_parquet_atomic(df: "pl.DataFrame", path: str | os.PathLike) -> Path:
    """Write ``df`` to Parquet at ``path`` so readers see the old file or the new, never half.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    import polars as pl

    if not isinstance(df, pl.DataFrame):
        raise ValueError(f"df must be a polars.DataFrame; got {type(df).__name__}")
    return _atomic_write(Path(path), lambda tmp: df.write_parquet(tmp))


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def write_json_atomic(payload: Mapping, path: str | os.PathLike) -> Path:
    """Write a JSON document atomically; NaN/inf become null (strict JSON has neither)."""
    text = json.dumps(_json_safe(dict(payload)), indent=2, ensure_ascii=False, allow_nan=False)
    return _atomic_write(Path(path), lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def _ci(mv: MetricValue | None) -> list[float | None] | None:
    return None if mv is None or mv.ci_low is None else [mv.ci_low, mv.ci_high]


def analyze_metrics_json(
    metrics_by_structure: Mapping[str, Mapping[str, MetricValue]],
    *,
    qc_flags: Iterable = (),
) -> dict:
    """The ``metrics.json`` of ``aooct analyze``: flat headline keys plus full detail.

    Structures are named as the ``--target`` values: ``"cones"``, ``"rpe"``,
    ``"capillaries"``, ``"nfl"``. Headline keys appear only where they apply:
    ``cone_count``, ``cone_density_cells_per_mm2``, ``cone_density_ci95`` [lo, hi],
    ``nnd_um_mean`` (cones, else RPE), ``rpe_count``, ``rpe_density_cells_per_mm2``,
    ``rpe_density_ci95``, ``capillary_area_density``, ``capillary_mean_diameter_um``,
    ``nfl_orientation_deg``, ``qc_flags`` (list of dicts). ``"metrics"`` holds every
    MetricValue as ``{structure: {metric: {value, unit, ci_low, ci_high, method}}}``.
    """
    out: dict = {}
    get = lambda s, m: metrics_by_structure.get(s, {}).get(m)  # noqa: E731
    for prefix, structure in (("cone", "cones"), ("rpe", "rpe")):
        if structure in metrics_by_structure:
            out[f"{prefix}_count"] = int(get(structure, "count").value)
            density = get(structure, "density_cells_per_mm2")
            out[f"{prefix}_density_cells_per_mm2"] = density.value
            out[f"{prefix}_density_ci95"] = _ci(density)
    for structure in ("cones", "rpe"):
        if get(structure, "nnd_um_mean") is not None:
            out["nnd_um_mean"] = get(structure, "nnd_um_mean").value
            break
    if "capillaries" in metrics_by_structure:
        out["capillary_area_density"] = get("capillaries", "area_density").value
        out["capillary_mean_diameter_um"] = get("capillaries", "mean_diameter_um").value
    if "nfl" in metrics_by_structure:
        out["nfl_orientation_deg"] = get("nfl", "orientation_deg").value
    out["qc_flags"] = [f.to_dict() if hasattr(f, "to_dict") else dict(f) for f in qc_flags]
    out["metrics"] = {
        s: {name: mv.to_dict() for name, mv in metrics.items()} for s, metrics in metrics_by_structure.items()
    }
    return _json_safe(out)
