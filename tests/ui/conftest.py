"""Fixtures for the review-app tests: a seeded SQLite DB and local object store in tmp_path."""
from __future__ import annotations

import shutil

import pytest

@pytest.fixture(scope="session")
def _seeded_template(tmp_path_factory):
    """Seed once per session (bcrypt, arrays); each test gets a copy."""
    from resources.metadata_db import SqlMetadataDB
    from resources.object_store import LocalObjectStore
    from ui.seed import seed_demo

    root = tmp_path_factory.mktemp("ui_seed")
    db = SqlMetadataDB(f"sqlite:///{root / 'aooct.db'}")
    ids = seed_demo(db, LocalObjectStore(root / "objects"), n_cases=6, with_volume_for=1)
    db.close()  # closing the last connection checkpoints the WAL into aooct.db
    return root, ids

@pytest.fixture
def ui_env(tmp_path, monkeypatch, _seeded_template):
    """Point the app at a fresh copy of the seeded deployment; returns (db, store, case_ids, tmp_path)."""
    from resources.metadata_db import SqlMetadataDB
    from resources.object_store import LocalObjectStore
    from ui.seed import local_env

    template, ids = _seeded_template
    shutil.copy2(template / "aooct.db", tmp_path / "aooct.db")
    shutil.copytree(template / "objects", tmp_path / "objects")
    env = local_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AOOCT_USERS_FILE", raising=False)
    db = SqlMetadataDB(env["AOOCT_DB_URL"])
    yield db, LocalObjectStore(env["AOOCT_OBJECT_STORE"]), ids, tmp_path
    db.close()
