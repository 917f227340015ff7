"""Tidy table, atomic Parquet / JSON writers, analyze metrics.json."""
from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from aooct_core.metrics import (
    MetricValue, analyze_metrics_json, capillary_metrics, metrics_table, mosaic_metrics,
    write_json_atomic, write_parquet_atomic,
)
from aooct_core.qc import qc_flags


@pytest.fixture(scope="module")
def metrics():
    rng = np.random.default_rng(0)
    cones = mosaic_metrics(rng.uniform(0, 99, (300, 2)), image_shape=(100, 100), um_per_px=1.0, n_boot=20)
    mask = np.zeros((64, 64), bool)
    mask[20:24, :] = True
    caps = capillary_metrics(mask, um_per_px=1.0, n_boot=20)
    return {"cones": cones, "capillaries": caps}


def test_table_is_tidy_and_typed(metrics):
    df = metrics_table("case-1", metrics, model_version="unet-1", code_version="0.1.0")
    assert df.columns == ["case_id", "structure", "metric", "value", "unit", "ci_low", "ci_high",
                          "method", "model_version", "code_version"]
    assert df.height == sum(len(v) for v in metrics.values())
    assert df["value"].dtype == pl.Float64
    row = df.filter((pl.col("structure") == "cones") & (pl.col("metric") == "density_cells_per_mm2"))
    assert row["value"][0] == pytest.approx(30000.0)
    assert row["unit"][0] == "cells/mm²"
    # NaN (not estimable) is stored as null, not as a number.
    nan_metric = next(k for k, v in metrics["capillaries"].items() if math.isnan(v.value))
    assert df.filter(pl.col("metric") == nan_metric)["value"][0] is None


def test_parquet_roundtrip_and_atomic_replace(tmp_path, metrics):
    df = metrics_table("case-1", metrics, model_version="m", code_version="c")
    path = write_parquet_atomic(df, tmp_path / "metrics.parquet")
    assert pl.read_parquet(path).equals(df)
    write_parquet_atomic(df.head(2), path)
    assert pl.read_parquet(path).height == 2
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.parquet"]  # no temp files left


def test_failed_write_keeps_the_old_file(tmp_path, metrics):
    df = metrics_table("case-1", metrics, model_version="m", code_version="c")
    path = write_parquet_atomic(df, tmp_path / "metrics.parquet")
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, tmp_path / "metrics.parquet")
    assert pl.read_parquet(path).equals(df)
    assert len(list(tmp_path.iterdir())) == 1


def test_missing_folder_and_wrong_types_raise(tmp_path, metrics):
    df = metrics_table("c", metrics, model_version="m", code_version="c")
    with pytest.raises(ValueError, match="does not exist"):
        write_parquet_atomic(df, tmp_path / "nope" / "m.parquet")
    with pytest.raises(ValueError, match="MetricValue"):
        metrics_table("c", {"cones": {"count": 3}}, model_version="m", code_version="c")
    with pytest.raises(ValueError, match="case_id"):
        metrics_table("", metrics, model_version="m", code_version="c")


def test_analyze_metrics_json_contract(tmp_path, metrics):
    flags = qc_flags(cell_count=int(metrics["cones"]["count"].value))
    payload = analyze_metrics_json(metrics, qc_flags=flags)
    for key in ("cone_count", "cone_density_cells_per_mm2", "cone_density_ci95", "nnd_um_mean",
                "capillary_area_density", "capillary_mean_diameter_um", "qc_flags"):
        assert key in payload
    assert "rpe_count" not in payload
    assert payload["cone_count"] == 300
    lo, hi = payload["cone_density_ci95"]
    assert lo <= payload["cone_density_cells_per_mm2"] <= hi
    path = write_json_atomic(payload, tmp_path / "metrics.json")
    back = json.loads(path.read_text(encoding="utf-8"))  # strict JSON: no NaN/Infinity tokens
    assert back["metrics"]["cones"]["count"]["unit"] == "cells"


def test_metric_value_validation():
    with pytest.raises(ValueError, match="both"):
        MetricValue(1.0, "µm", 0.5, None, "x")
    assert MetricValue(math.inf, "1", None, None, "x").to_dict()["value"] is None


def test_numpy_scalars_are_stored_as_python_floats():
    mv = MetricValue(np.float32(1.5), "µm", np.float64(1.0), np.float32(2.0), "x")
    assert type(mv.value) is float and type(mv.ci_high) is float
    json.dumps(mv.to_dict())
    m = mosaic_metrics(np.array([[1.0, 1.0], [5.0, 5.0]]), image_shape=(10, 10), um_per_px=np.float32(2.0))
    assert m["density_cells_per_mm2"].value == pytest.approx(2 / 400 * 1e6)
