"""Issue 16: the same case gives the same numbers in ``aooct analyze`` and in the platform."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:  # tests/ml (no __init__.py) would shadow the `ml` package
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("ml"), "__file__", "") is None:
    del sys.modules["ml"]

from aooct_assets.testing import (copy_case_files, make_test_resources, run_case,  # noqa: E402
                                  weights_for_tests)

#: A phantom whose least-moving repeat is NOT repeat 0: both sides register to repeat 0 (the
#: frame of the first volume, aooct analyze's contract), so they share one en face frame.
SEED = 1
CASE = "ONE16"


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path) as fh:
        return list(csv.reader(fh))


def _as_csv_rows(points_rc: np.ndarray) -> list[list[str]]:
    """Stored points formatted as ``aooct analyze`` writes them (3 decimals)."""
    return [[f"{r:.3f}", f"{c:.3f}"] for r, c in np.asarray(points_rc, np.float64).reshape(-1, 2)]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from typer.testing import CliRunner

    from aooct.cli import app
    from aooct_core.phantom import make_phantom, write_phantom

    tmp = tmp_path_factory.mktemp("one_recipe")
    mp = pytest.MonkeyPatch()
    mp.setenv("AOOCT_WEIGHTS_DIR", str(weights_for_tests(tmp / "weights")))
    try:
        case = write_phantom(tmp / CASE, make_phantom(seed=SEED, shape_px=(48, 256, 64), case_id=CASE))
        out = tmp / "cli"
        res = CliRunner().invoke(app, ["analyze", str(case), "--out", str(out)])
        assert res.exit_code == 0, res.output
        resources = make_test_resources(tmp / "platform")
        copy_case_files(case, resources["drop_store"], f"incoming-{CASE}")
        result = run_case(CASE, resources, drop_prefix=f"incoming-{CASE}", checks=False)
        assert result.success
    finally:
        mp.undo()
    return out / CASE, resources["object_store"]


def _summary(store, key: str) -> dict:
    return json.loads(store.get_bytes(f"cases/{CASE}/{key}"))


def test_same_frame_and_slabs(both):
    _, store = both
    assert _summary(store, "corrected/summary.json")["reference_repeat"] == 0, (
        "the platform registered to another repeat than aooct analyze (repeat 0): pick a "
        "phantom seed whose least-moving repeat is 0")
    assert _summary(store, "masks/cones/summary.json")["slab"] == "isos_cost"
    assert _summary(store, "masks/capillaries/summary.json")["slab"] == "svp"


def test_same_detections(both):
    cli, store = both
    for csv_name, structure in (("detections.csv", "cones"), ("detections_rpe.csv", "rpe")):
        rows = _csv_rows(cli / csv_name)
        stored = np.load(store.local_path(f"cases/{CASE}/masks/{structure}/points_rc.npy"))
        assert rows[0] == ["row", "col"]
        assert len(rows) - 1 == len(stored) > 0, structure
        assert rows[1:] == _as_csv_rows(stored), f"{structure}: different points"


def test_same_metrics(both):
    cli, store = both
    m = json.loads((cli / "metrics.json").read_text())
    platform = _summary(store, "metrics/summary.json")["metrics"]
    cones, caps = platform["cones"], platform["capillaries"]
    density = cones["density_cells_per_mm2"]
    assert m["cone_count"] == cones["count"]["value"] > 10
    assert m["cone_density_cells_per_mm2"] == density["value"]
    assert m["cone_density_ci95"] == [density["ci_low"], density["ci_high"]]
    assert m["nnd_um_mean"] == cones["nnd_um_mean"]["value"]
    assert m["rpe_count"] == platform["rpe"]["count"]["value"]
    assert m["capillary_area_density"] == caps["area_density"]["value"]
    assert m["capillary_mean_diameter_um"] == caps["mean_diameter_um"]["value"]
    # the uncertainty the CLI judges QC on is the one the platform's check reads
    assert m["uncertainty"]["cones"]["uncertainty_fraction"] == \
        _summary(store, "masks/cones/summary.json")["uncertainty_fraction"]
    from PIL import Image

    cli_mask = np.asarray(Image.open(cli / "vessels.png")) > 0
    stored = np.load(store.local_path(f"cases/{CASE}/masks/capillaries/mask.npy"))
    assert np.array_equal(cli_mask, stored)


def test_device_contract():
    from ml.recipe import check_device

    assert check_device(" CPU ") == "cpu"
    for bad in ("gpu", "cuda:", "cuda:-1", "cpu:0", 0):
        with pytest.raises(ValueError, match="device"):
            check_device(bad)


def test_an_empty_result_is_fully_uncertain(monkeypatch):
    """One choice for 'nothing found': uncertainty 1.0, in the CLI's QC and the platform's."""
    import ml.inference as inference
    from ml.inference import CellDetections
    from ml.recipe import analyze_structure

    def nothing(image, **_):
        zeros = np.zeros(np.shape(image), np.float32)
        return CellDetections(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), zeros, zeros, "m")

    monkeypatch.setattr(inference, "detect_cells", nothing)
    res = analyze_structure("cones", np.zeros((32, 32)), um_per_px=1.0, eccentricity_deg=2.0)
    assert res.numbers["count"] == 0 and res.uncertainty["uncertainty_fraction"] == 1.0
    assert res.uncertainty["low_confidence_fraction"] == 1.0
