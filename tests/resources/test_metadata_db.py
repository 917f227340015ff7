"""MetadataDB on SQLite (always) and on a real PostgreSQL server (marked ``postgres``)."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from resources.metadata_db import (HEAD_REVISION, SqlMetadataDB, hash_password, make_test_metadata_db,
                                   verify_password)

TABLES = {"cases", "runs", "artifacts", "metrics", "qc_results", "labels", "reviews", "users",
          "audit_log", "alembic_version"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        database = make_test_metadata_db(tmp_path)
    else:
        database = SqlMetadataDB(request.getfixturevalue("pg_url"))
    yield database
    database.close()


def _case(db, case_id="C1", **kw):
    return db.upsert_case(case_id=case_id, subject_id=kw.pop("subject_id", "S1"), eye=kw.pop("eye", "OD"),
                          location_h_deg=2.0, location_v_deg=0.0, eccentricity_deg=2.0,
                          axial_length_mm=24.0, **kw)


def test_head_revision_constant_matches_the_migrations():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from resources.metadata_db import HEAD_REVISION, MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrations_create_every_table_and_are_idempotent(db):
    assert TABLES <= set(inspect(db.engine).get_table_names())
    SqlMetadataDB(db.url).close()  # second upgrade on a migrated DB is a no-op
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION


def test_cases_filters_pagination_and_qc_status(db):
    for i in range(5):
        _case(db, f"C{i}", subject_id="S1" if i < 3 else "S2", eye="OD" if i % 2 else "OS")
    db.record_qc("C0", [{"check_name": "snr", "passed": False, "severity": "fail", "value": 3.0,
                         "threshold": 10.0, "detail": {"why": "dim"}}])
    db.record_qc("C1", [{"check_name": "snr", "passed": False, "severity": "warn"},
                        {"check_name": "registration_residual", "passed": True}])
    db.record_qc("C2", [{"check_name": "snr", "passed": True}])
    assert [c["case_id"] for c in db.list_cases(limit=2, offset=1)] == ["C1", "C2"]
    assert db.count_cases(subject_id="S2") == 2
    assert {c["case_id"] for c in db.list_cases(eye="OD")} == {"C1", "C3"}
    assert [c["case_id"] for c in db.list_cases(qc_status="fail")] == ["C0"]
    assert db.get_case("C1")["qc_status"] == "warn"
    assert db.get_case("C3")["qc_status"] is None
    db.set_case_status("C2", "processed")
    assert db.count_cases(status="processed") == 1
    with pytest.raises(ValueError, match="status must be one of"):
        db.set_case_status("C2", "done")
    with pytest.raises(KeyError, match="C9"):
        db.set_case_status("C9", "processed")
    db.record_qc("C0", [{"check_name": "snr", "passed": True}])  # a re-run replaces the result
    assert db.get_case("C0")["qc_status"] == "pass"
    assert db.get_qc("C0")[0]["passed"] is True


def test_runs_artifacts_metrics(db):
    _case(db)
    db.record_run("r1", "C1", status="running", code_version="v1")
    db.record_run("r1", "C1", status="success", model_versions={"cones": "cones-abc"})
    assert db.list_runs("C1")[0]["status"] == "success"
    assert db.list_runs("C1")[0]["model_versions"] == {"cones": "cones-abc"}
    db.record_artifact("C1", "report", "file:///x/report.html", content_hash="ab", size_bytes=3, run_id="r1")
    assert db.list_artifacts("C1")[0]["uri"] == "file:///x/report.html"
    row = {"structure": "cones", "metric": "density_cells_per_mm2", "value": 25000.0,
           "unit": "cells/mm²", "ci_low": 24000.0, "ci_high": 26000.0, "method": "m",
           "model_version": "cones-abc", "code_version": "v1", "run_id": "r1"}
    db.record_metrics("C1", [row])
    db.record_metrics("C1", [row | {"value": 25100.0}])  # re-analysis supersedes
    got = db.get_metrics("C1")
    assert len(got) == 1 and got[0]["value"] == 25100.0 and got[0]["unit"] == "cells/mm²"
    with pytest.raises(ValueError, match="extra"):
        db.record_metrics("C1", [row | {"bogus": 1}])


def test_labels_are_versioned_and_never_overwritten(db):
    _case(db)
    assert db.add_label("C1", "cones", "ann1", {"points_rc": [[1, 2]]}) == 1
    assert db.add_label("C1", "cones", "ann1", {"points_rc": [[1, 2], [3, 4]]}) == 2
    assert db.add_label("C1", "cones", "ann2", {"points_rc": []}) == 1
    assert len(db.get_labels("C1")) == 3
    latest = db.get_labels("C1", latest_only=True)
    assert {(r["annotator"], r["version"]) for r in latest} == {("ann1", 2), ("ann2", 1)}
    with pytest.raises(DBAPIError, match="append-only"):
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE labels SET payload = '{}'"))


def test_users_roles_reviews_and_append_only_audit(db):
    _case(db)
    h = hash_password("s3cret")
    assert verify_password("s3cret", h) and not verify_password("nope", h)
    db.create_user("alice", name="Alice", email="a@x.org", password_hash=h, role="Researcher")
    with pytest.raises(ValueError, match="already exists"):
        db.create_user("alice", name="A", email="a@x.org", password_hash=h, role="Admin")
    with pytest.raises(ValueError, match="role must be one of"):
        db.set_role("alice", "God")
    with pytest.raises(ValueError, match="bcrypt"):
        db.create_user("bob", name="B", email="b@x.org", password_hash="plain", role="Tech")
    db.set_role("alice", "Admin")
    assert db.get_user("alice")["role"] == "Admin" and db.get_user("nobody") is None
    assert [u["username"] for u in db.list_users()] == ["alice"]
    db.add_review("C1", "alice", "approve", "looks fine")
    with pytest.raises(ValueError, match="decision"):
        db.add_review("C1", "alice", "maybe", "")
    assert db.get_reviews("C1")[0]["decision"] == "approve"
    db.audit("alice", "review", case_id="C1", model_version="cones-abc", detail={"d": "approve"})
    db.audit("bob", "export", allowed=False)
    assert [a["action"] for a in db.list_audit()] == ["export", "review"]
    assert db.list_audit(actor="bob")[0]["allowed"] is False
    with pytest.raises(DBAPIError, match="append-only"):
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))
    assert len(db.list_audit()) == 2


def test_driverless_postgres_url_is_refused():
    with pytest.raises(ValueError, match="psycopg2"):
        SqlMetadataDB("postgresql://postgres@127.0.0.1/x")


def test_a_superseded_alembic_version_row_is_repaired(tmp_path):
    """Seen once after kill -9 of a run: alembic_version held 0001 and 0002 ("two heads")."""
    import sqlite3

    from resources.metadata_db import HEAD_REVISION, SqlMetadataDB
    path = tmp_path / "m.db"
    SqlMetadataDB(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO alembic_version VALUES ('0001')")
    SqlMetadataDB(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]


def test_subject_map_keeps_one_pseudonym_per_subject(tmp_path):
    db = make_test_metadata_db(tmp_path)
    assert db.map_subject("MRN-1", pseudonym="P-00000000000000a1") == "P-00000000000000a1"
    # a later ingest with another key (another pseudonym) keeps the subject's first one
    assert db.map_subject("MRN-1", pseudonym="P-00000000000000b2") == "P-00000000000000a1"
    assert db.subject_for("P-00000000000000a1") == "MRN-1"
    assert db.subject_for("P-00000000000000b2") is None
