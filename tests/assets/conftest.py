"""Fixtures for the asset tests: a small phantom case, model weights, test resources."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/conftest.py puts tests/ on sys.path, where tests/ml/ (a folder without __init__.py)
# would shadow the real `ml` package as a namespace package: put the repository first.
_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[0] != _REPO:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("ml"), "__file__", "") is None:
    del sys.modules["ml"]


#: Small enough for a quick in-process run, large enough for every step to be meaningful.
SMALL_SHAPE_PX = (48, 256, 64)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    from aooct_assets.testing import weights_for_tests

    return weights_for_tests(tmp_path_factory.mktemp("weights"))


@pytest.fixture(autouse=True)
def _weights_env(weights_dir, monkeypatch):
    monkeypatch.setenv("AOOCT_WEIGHTS_DIR", str(weights_dir))


@pytest.fixture(scope="session")
def phantom_case(tmp_path_factory) -> Path:
    """A written phantom case folder (case_id ``PH1``)."""
    from aooct_core.phantom import make_phantom, write_phantom

    out = tmp_path_factory.mktemp("phantom") / "PH1"
    write_phantom(out, make_phantom(seed=3, shape_px=SMALL_SHAPE_PX, case_id="PH1"))
    return out
