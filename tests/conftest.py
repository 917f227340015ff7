"""Shared test fixtures.

``shared_data`` points at the real annotated data sets (``../shared/data``, or
``$AOOCT_SHARED_DATA``); tests that use it skip cleanly when it is absent so the
project tests without it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("AOOCT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").exists():
        pytest.skip(f"real annotated data not found at {path} (set AOOCT_SHARED_DATA)")
    return path
