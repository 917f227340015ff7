"""The review page on artifacts written by the real pipeline (phantom → Dagster assets), not seeds."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# tests/ on sys.path lets the folder tests/ml/ shadow the real `ml` package (as in tests/assets).
_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("ml"), "__file__", "") is None:
    del sys.modules["ml"]

from ui_helpers import APP, sign_in_as

pytestmark = pytest.mark.slow


def test_review_and_labeling_pages_on_pipeline_output(tmp_path, monkeypatch):
    pytest.importorskip("dagster")
    from streamlit.testing.v1 import AppTest

    from aooct_assets.testing import make_test_resources, run_case, weights_for_tests
    from aooct_core.phantom import make_phantom, write_phantom
    from ui.auth import hash_password

    monkeypatch.setenv("AOOCT_WEIGHTS_DIR", str(weights_for_tests(tmp_path / "weights")))
    case_dir = tmp_path / "phantom" / "PHUI"
    write_phantom(case_dir, make_phantom(seed=5, shape_px=(48, 256, 64), case_id="PHUI"))
    (tmp_path / "drop" / "PHUI").mkdir(parents=True)
    for f in case_dir.iterdir():
        if f.name == "case.json" or f.suffix in (".tif", ".tiff", ".npy"):
            shutil.copy2(f, tmp_path / "drop" / "PHUI" / f.name)
    res = make_test_resources(tmp_path)
    assert run_case("PHUI", res, drop_prefix="PHUI", checks=False).success

    db = res["metadata_db"]
    monkeypatch.setenv("AOOCT_DB_URL", db.url)
    monkeypatch.setenv("AOOCT_OBJECT_STORE", str(tmp_path / "objects"))
    monkeypatch.setenv("AOOCT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AOOCT_EXPORT", str(tmp_path / "exports"))
    from ui import data

    art = data.case_artifacts("PHUI")
    assert {"cones", "rpe"} <= set(art.points) and {"capillaries", "nfl"} <= set(art.masks)
    assert art.volume and art.surfaces and art.report and "cost" in art.enface

    at = AppTest.from_file(APP, default_timeout=120)
    db.create_user("admin", name="Admin", email="admin@example.org",
                   password_hash=hash_password("pw-admin-1", rounds=4), role="Admin")
    sign_in_as(at, "admin", db=db)
    at.session_state["case_id"] = "PHUI"
    at.run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    for key in ("tog_rpe", "tog_capillaries", "tog_nfl"):
        at.toggle(key=key).set_value(True).run()
    at.selectbox(key="heat").set_value("cones").run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert any("percentile" in str(m.value) for m in at.metric)
    at.switch_page("pages/labeling.py").run()
    at.button(key="save_label").click().run()
    assert db.get_labels("PHUI", structure="cones")[0]["payload"]["source"] == "model"
    at.switch_page("pages/dashboards.py").run()
    assert not at.exception, at.exception
